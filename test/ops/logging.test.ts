/**
 * Logs: secrets never appear in a line at any level (ARI password, bus credentials: raw,
 * URL-encoded, base64 of user:password), every line of a dialog names its dialog and channel,
 * and nothing is logged per event at info level.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  Context,
  Deferred,
  Effect,
  Exit,
  Fiber,
  FiberRef,
  HashSet,
  Layer,
  Logger,
  LogLevel,
  Queue,
  Redacted,
  Scope
} from "effect"
import { Bus } from "../../src/bus/Bus.js"
import { makeNatsBus, type NatsBus } from "../../src/bus/nats/index.js"
import type { ProxyConfig } from "../../src/config/ProxyConfig.js"
import { makeTopics } from "../../src/protocol/topics.js"
import { proxyApplication } from "../../src/proxy/application.js"
import { flatJsonLogger } from "../../src/proxy/logging.js"
import { Proxy } from "../../src/proxy/Proxy.js"
import { makeRelay } from "../bus/relay.js"
import { startApp } from "../support/apps.js"
import { eventually, startSim, waitUntilReady } from "../support/harness.js"
import { quietAddress } from "../support/ports.js"
import { proxyConfigFor } from "./support.js"

interface Entry {
  readonly message: unknown
  readonly logLevel: string
  readonly annotations: Record<string, unknown>
}

/**
 * A logger that keeps every line in four formats (the production flat JSON, Effect's JSON, logfmt,
 * plain), Effect's JSON parsed, and the flat JSON parsed.
 */
const makeCapture = () => {
  const lines: Array<string> = []
  const entries: Array<Entry> = []
  const flat: Array<Record<string, unknown>> = []
  const logger = Logger.make<unknown, void>((options) => {
    const json = Logger.jsonLogger.log(options)
    const flatLine = flatJsonLogger.log(options)
    lines.push(flatLine, json, Logger.logfmtLogger.log(options), Logger.stringLogger.log(options))
    entries.push(JSON.parse(json) as Entry)
    flat.push(JSON.parse(flatLine) as Record<string, unknown>)
  })
  /** Runs `effect` (and every fiber it forks) at Debug level, logging only into the capture. */
  const capturing = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    effect.pipe(
      Effect.locally(FiberRef.currentLoggers, HashSet.make(logger)),
      Effect.locally(FiberRef.currentMinimumLogLevel, LogLevel.Debug)
    )
  return { lines, entries, flat, capturing }
}

const text = (entry: Entry) => (Array.isArray(entry.message) ? entry.message.join(" ") : String(entry.message))

/** The ways a secret could leak: as is, URL-encoded, and inside a Basic header. */
const secretForms = (user: string, password: string) => [
  password,
  encodeURIComponent(password),
  Buffer.from(`${user}:${password}`, "utf8").toString("base64"),
  Buffer.from(password, "utf8").toString("base64")
]

const expectNoSecrets = (lines: ReadonlyArray<string>, forms: ReadonlyArray<string>) => {
  for (const form of forms) {
    const leaks = lines.filter((line) => line.includes(form))
    expect(leaks, `a log line contains ${JSON.stringify(form)}`).toEqual([])
  }
}

/** Builds the application in its own scope, so that its shutdown lines are captured too. */
const runApplication = (config: ProxyConfig, capture: ReturnType<typeof makeCapture>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* capture.capturing(Layer.buildWithScope(proxyApplication(config), scope))
    return {
      proxy: Context.get(context, Proxy),
      bus: Context.get(context, Bus),
      close: capture.capturing(Scope.close(scope, Exit.void))
    }
  })

const ariUser = "ops-ari-user"
const ariPassword = "Ari$ecret/Pw:9"
const wrongPassword = "Wr0ng$Pw/x"
const busUser = "ops-bus-user"
const busPassword = "Nats/s3cret"
const busToken = "T0ken$ecret"
const busUrl = (port: number, host = "127.0.0.1") =>
  `nats://${busUser}:${encodeURIComponent(busPassword)}@${host}:${port}`

const allSecrets = [
  ...secretForms(ariUser, ariPassword),
  ...secretForms(ariUser, wrongPassword),
  ...secretForms(busUser, busPassword),
  ...secretForms(busUser, busToken)
]

const messages = (entries: ReadonlyArray<Entry>) => entries.map(text)

describe("logs", () => {
  it.scopedLive("never contain the ARI password or bus credentials: memory bus, debug, call, reconnect, failures", () =>
    Effect.gen(function*() {
      const capture = makeCapture()
      const sim = yield* startSim({ credentials: { username: ariUser, password: ariPassword } })
      const config = yield* proxyConfigFor(sim, {
        logLevel: "debug",
        commandTimeoutMs: 300,
        // not used by the memory bus, but logged (masked) with the configuration
        bus: { url: busUrl(4222), user: busUser, password: busPassword, token: busToken }
      })
      const { proxy, bus, close } = yield* runApplication(config, capture)
      yield* waitUntilReady(proxy)

      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      expect((yield* dialog.request("POST", `/channels/${channelId}/answer`)).status_code).toBe(204)
      expect((yield* dialog.request("GET", "/channels/nobody")).status_code).toBe(404)
      sim.setRestMode("refuse")
      expect([502, 503]).toContain((yield* dialog.request("POST", `/channels/${channelId}/ring`)).status_code)
      sim.setRestMode("hang")
      expect((yield* dialog.request("POST", `/channels/${channelId}/ring`)).status_code).toBe(504)
      sim.setRestMode("normal")

      // nothing per event at info level: a DTMF burst adds no line at info or above
      const infoLines = () => capture.entries.filter((entry) => entry.logLevel !== "DEBUG").length
      const infoBefore = infoLines()
      sim.sendDtmf(channelId, "0123456789*#0123456789", 2)
      yield* eventually(() => dialog.events.filter((event) => event.type === "ChannelDtmfReceived").length === 22)
      expect(infoLines()).toBe(infoBefore)

      // reconnect, then a failure to connect
      sim.dropWebsockets()
      yield* eventually(() => messages(capture.entries).some((m) => m.includes("ARI websocket connected again")))
      sim.setWebsocketMode("refuse")
      sim.dropWebsockets()
      yield* eventually(() => messages(capture.entries).some((m) => m.includes("ARI websocket cannot connect")))
      sim.setWebsocketMode("accept")
      yield* waitUntilReady(proxy)

      // a proxy with the wrong ARI password: 401s
      const wrong = yield* runApplication({ ...config, httpPort: 0, wsPassword: Redacted.make(wrongPassword) }, capture)
      yield* eventually(() => messages(capture.entries).some((m) => m.includes("HTTP 401")))
      yield* wrong.close

      sim.hangup(channelId)
      yield* Deferred.await(dialog.ended)
      yield* close

      const all = messages(capture.entries)
      for (const expected of ["ari-proxy starting", "dialog opened", "dialog ended", "answered 504", "draining"]) {
        expect(all.some((m) => m.includes(expected)), `a line with "${expected}"`).toBe(true)
      }
      expect(capture.entries.some((entry) => entry.logLevel === "DEBUG")).toBe(true)
      expectNoSecrets(capture.lines, allSecrets)

      // every line of the dialog names it and its channel
      const ofDialog = capture.entries.filter((entry) => /^dialog (opened|ended)|^ARI request/.test(text(entry)))
      expect(ofDialog.length).toBeGreaterThanOrEqual(4)
      for (const entry of ofDialog) {
        expect(entry.annotations, text(entry)).toMatchObject({ dialog_id: dialog.dialogId, channel_id: channelId })
      }
      const opened = capture.entries.filter((entry) => text(entry) === "dialog opened")
      const ended = capture.entries.filter((entry) => text(entry) === "dialog ended")
      expect([opened.length, ended.length]).toEqual([1, 1])
      expect(ended[0]!.annotations.reason).toBe("channels_left")

      // the production lines say the same, flat: msg always a string, the dialog's names at the top
      for (const line of capture.flat) expect(typeof line.msg, JSON.stringify(line)).toBe("string")
      expect(capture.flat.find((line) => line.msg === "dialog ended")).toMatchObject({
        level: "info",
        dialog_id: dialog.dialogId,
        channel_id: channelId,
        application: "app",
        reason: "channels_left"
      })
      expect(capture.flat.find((line) => line.msg === "ari-proxy starting")).toMatchObject({ wsPassword: "<set>" })
    }))

  it.scopedLive("never contain the bus credentials: NATS through a relay that is cut, and a refused port", () =>
    Effect.gen(function*() {
      const capture = makeCapture()
      const sim = yield* startSim({ credentials: { username: ariUser, password: ariPassword } })
      const relay = yield* makeRelay(4222)
      const prefix = `ops-log-${Date.now()}-${Math.floor(Math.random() * 1e6)}.`
      const config = yield* proxyConfigFor(sim, {
        logLevel: "debug",
        messageBus: "NATS",
        bus: { url: busUrl(relay.port), subjectPrefix: prefix }
      })
      const { proxy, bus, close } = yield* runApplication(config, capture)
      yield* waitUntilReady(proxy)
      const appBus = yield* makeNatsBus({ servers: "nats://127.0.0.1:4222", name: "ops-app" }).pipe(
        Logger.withMinimumLogLevel(LogLevel.Warning)
      )
      const dialogs = yield* startApp(appBus, "app", { topics: makeTopics(prefix) })
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      expect((yield* dialog.request("POST", `/channels/${channelId}/answer`)).status_code).toBe(204)

      relay.cut()
      yield* eventually(() => (bus as NatsBus).stats().reconnects >= 1, 20)
      // NATS core is at most once: a command sent before the proxy's subscription is back is lost,
      // so ask again until it is answered (a loaded machine can take a moment to resubscribe).
      const again = dialog.request("GET", `/channels/${channelId}`).pipe(
        Effect.timeoutFail({ duration: "2 seconds", onTimeout: () => "no answer yet" }),
        Effect.retry({ times: 10 })
      )
      expect((yield* again).status_code).toBe(200)
      sim.hangup(channelId)
      yield* Deferred.await(dialog.ended)
      yield* close

      // a broker that refuses connections from the start (the proxy waits for it: build in the background)
      const refused = yield* quietAddress
      const refusedPort = refused.port
      const refusedUrl = Redacted.make(busUrl(refused.port, refused.host))
      const refusedConfig = { ...config, httpPort: 0, bus: { ...config.bus, url: refusedUrl } }
      const scope = yield* Scope.make()
      const building = yield* Effect.fork(
        capture.capturing(Layer.buildWithScope(proxyApplication(refusedConfig), scope))
      )
      yield* eventually(() =>
        capture.lines.some((line) => line.includes("NATS connect failed") && line.includes(`:${refusedPort}`))
      )
      yield* Fiber.interrupt(building)
      yield* capture.capturing(Scope.close(scope, Exit.void))

      const all = messages(capture.entries)
      expect(all.some((m) => m.includes("NATS connection lost")), "a line about the cut").toBe(true)
      expect(all.some((m) => m.includes("NATS reconnected")), "a line about the reconnect").toBe(true)
      expectNoSecrets(capture.lines, allSecrets)
    }))
})
