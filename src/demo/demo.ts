/**
 * `ari-proxy demo`: the whole product in one process, with no Asterisk and no broker. The ARI
 * simulator stands in for Asterisk, the proxy runs on the in-memory bus (or on the broker of the
 * `-config` file, if it names NATS or RabbitMQ), and the IVR (ivr.ts, beside this file) takes the
 * calls through the client library. A few callers ring in one after another and press their keys;
 * every message that crosses the bus is printed on one line; then a summary, and exit 0.
 */
import { FileSystem } from "@effect/platform"
import { Context, Effect, Either, Layer, Logger, LogLevel, Queue } from "effect"
import { Bus, type BusShape } from "../bus/Bus.js"
import { layerFromConfig } from "../bus/index.js"
import { makeMemoryBus } from "../bus/memory.js"
import { makeAriClient } from "../client/AriClient.js"
import { parseArgs } from "../config/args.js"
import { loadConfigFile, makeProxyConfig, ProxyConfigService } from "../config/ProxyConfigService.js"
import { layerWithAri, Proxy } from "../proxy/Proxy.js"
import type { SimEventRecord } from "../simulator/index.js"
import { makeSimulator } from "../simulator/effect.js"
import { ivr, type IvrOutcome } from "./ivr.js"

const application = "demo"
const agentEndpoint = "PJSIP/bob"

const say = (line: string) => Effect.sync(() => process.stdout.write(line + "\n"))

/** Ids are UUIDs: their first 8 characters tell the dialogs and channels of a demo apart. */
const uuid = /(?<![0-9a-f])([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-f])/g
const shorten = (text: string) => text.replace(uuid, "$1")

const clip = (text: string) => text.length > 24 ? text.slice(0, 24) + "…" : text

const parse = (text: string): Record<string, any> => {
  try {
    return JSON.parse(text)
  } catch {
    return {}
  }
}

/** What is worth a glance in an event, after its type. */
const eventDetail = (type: string, ari: Record<string, any>): string => {
  switch (type) {
    case "StasisStart":
      return `${ari.channel.id} (${ari.channel.name}, ${ari.channel.caller.name} <${ari.channel.caller.number}>)`
    case "ChannelStateChange":
      return `${ari.channel.id} ${ari.channel.state}`
    case "ChannelDtmfReceived":
      return `${ari.channel.id} digit ${ari.digit}`
    case "PlaybackStarted":
    case "PlaybackFinished":
      return `${ari.playback.media_uri} ${ari.playback.state}`
    case "Dial":
      return `${ari.peer.id} ${ari.dialstatus === "" ? "dialling" : ari.dialstatus}`
    case "ChannelEnteredBridge":
    case "ChannelLeftBridge":
      return `${ari.channel.id} bridge ${ari.bridge.id}`
    case "ChannelVarset":
      return `${ari.channel?.id ?? "global"} ${ari.variable}=${clip(String(ari.value))}`
    case "ChannelDestroyed":
      return `${ari.channel.id} ${ari.cause_txt}`
    case "DialogEnded":
      return `reason ${ari.reason}`
    default:
      return ari.channel?.id ?? ari.bridge?.id ?? ""
  }
}

interface Traffic {
  appStarts: number
  events: number
  commands: number
  responses: number
  ended: number
}

/**
 * The bus, with every publish printed: proxy and application share it, so each message that
 * crosses it appears once, as `[dialog] kind  detail`.
 */
const printing = (bus: BusShape, traffic: Traffic, ended: Queue.Queue<string>): BusShape => {
  const commands = new Map<string, string>()
  const describe = (topic: string, payload: string): string | undefined => {
    const message = parse(payload)
    const [, kind, dialog] = /^(events|commands|responses)_(.*)$/.exec(topic) ?? []
    if (kind === undefined) {
      if (topic !== application) return undefined
      traffic.appStarts++
      return `[${message.dialog_id}] AppStart     new call for "${message.application}" from ${message.server_id}`
    }
    const tag = `[${dialog}]`
    switch (kind) {
      case "events": {
        traffic.events++
        if (message.type === "DialogEnded") traffic.ended++
        const label = message.type === "DialogEnded" ? "DialogEnded " : "event       "
        const detail = message.type === "DialogEnded" ? "" : message.type + " "
        return `${tag} ${label} ${detail}${eventDetail(message.type, parse(message.ari_body))}`
      }
      case "commands": {
        traffic.commands++
        const attach = message.method === "ATTACH"
        const request = attach ? "ATTACH (subscribed: send what you held)" : `${message.method} ${message.url}`
        // answered later: the request, without its query string, tells which one an answer is for
        commands.set(message.unique_id, attach ? "ATTACH" : `${message.method} ${message.url.split("?")[0]}`)
        return `${tag} command      ${request}${message.body === "" ? "" : " " + message.body}`
      }
      default: {
        traffic.responses++
        const request = commands.get(message.unique_id) ?? "?"
        commands.delete(message.unique_id)
        const body = parse(message.response_body)
        const note = message.status_code >= 400 ? ` (${body.message})` :
          request === "ATTACH" ? ` (held events: ${body.held_events})` : ""
        return `${tag} response     ${message.status_code}${note} ← ${request}`
      }
    }
  }
  return {
    ...bus,
    // Everything goes through `publish`, so that every message is printed.
    tryPublish: () => false,
    publish: (topic, payload) =>
      Effect.gen(function*() {
        const line = describe(topic, payload)
        if (line !== undefined) yield* say(shorten(line))
        if (topic.startsWith("events_") && parse(payload).type === "DialogEnded") {
          yield* Queue.offer(ended, topic.slice("events_".length))
        }
        return yield* bus.publish(topic, payload)
      })
  }
}

/** The bus of the `-config` file when it names a broker; otherwise the in-memory bus. */
const chooseBus = Effect.gen(function*() {
  const args = parseArgs(process.argv.slice(2))
  const path = Either.isRight(args) ? args.right.configPath : undefined
  const fs = yield* FileSystem.FileSystem
  if (path === undefined || !(yield* Effect.orElseSucceed(fs.exists(path), () => false))) {
    return { bus: yield* makeMemoryBus, where: "the in-memory bus" }
  }
  const loaded = yield* Effect.either(loadConfigFile(path))
  if (Either.isLeft(loaded) || loaded.right.config.messageBus === "MEMORY") {
    return { bus: yield* makeMemoryBus, where: `the in-memory bus (${path} names no broker)` }
  }
  const config = loaded.right.config
  const context = yield* Layer.build(layerFromConfig(config))
  return { bus: Context.get(context, Bus), where: `${config.messageBus} from ${path}` }
})

interface DemoCall {
  readonly caller: { readonly name: string; readonly number: string }
  /** The key the caller presses while the menu plays; none: the IVR's key timeout. */
  readonly key?: string
  readonly story: string
}

const calls: ReadonlyArray<DemoCall> = [
  { caller: { name: "Alice", number: "1001" }, key: "1", story: "presses 1: bridged to an agent, who hangs up" },
  { caller: { name: "Bob", number: "1002" }, key: "2", story: "presses 2: goodbye" },
  { caller: { name: "Carol", number: "1003" }, story: "presses nothing: goodbye after the key timeout" }
]

export const runDemo = Effect.gen(function*() {
  const started = Date.now()
  const traffic: Traffic = { appStarts: 0, events: 0, commands: 0, responses: 0, ended: 0 }
  const ended = yield* Queue.unbounded<string>()
  const sim = yield* makeSimulator({ timings: { playbackDurationMs: 300 } })
  const chosen = yield* chooseBus
  const bus = printing(chosen.bus, traffic, ended)
  const config = makeProxyConfig({
    applications: [application],
    stasisUrl: sim.url,
    websocketUrl: sim.wsUrl,
    wsUser: sim.credentials.username,
    wsPassword: sim.credentials.password,
    serverId: "demo-asterisk",
    // ended dialogs answer late commands with 410 this long; the demo has none, and exits sooner
    endedLingerMs: 200
  })
  const context = yield* Layer.build(
    layerWithAri.pipe(Layer.provide(Layer.succeed(Bus, bus)), Layer.provide(ProxyConfigService.layerFrom(config)))
  ).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
  const proxy = Context.get(context, Proxy)
  while (!(yield* proxy.ready)) yield* Effect.sleep(10)

  // The application: the IVR example, served by the client library over the same bus.
  const outcomes = yield* Queue.unbounded<IvrOutcome>()
  const client = yield* makeAriClient(bus, { application })
  yield* client.serve((dialog) =>
    ivr(dialog, { agentEndpoint, keyTimeoutMs: 1_000 }).pipe(
      Effect.flatMap((outcome) => Queue.offer(outcomes, outcome))
    )
  ).pipe(Effect.forkScoped)
  yield* say(`ARI simulator on ${sim.url}; proxy "demo-asterisk" on ${chosen.where}; IVR application "${application}"`)
  yield* say(`(dialog and channel ids are shortened to 8 characters)`)

  const waitFor = (matches: (event: SimEventRecord) => boolean) =>
    Effect.promise(() => sim.waitForEvent(matches, { timeoutMs: 10_000 }))
  const tally: Record<IvrOutcome, number> = { connected: 0, goodbye: 0 }
  for (const [index, call] of calls.entries()) {
    yield* say(`\n--- call ${index + 1}: ${call.caller.name} <${call.caller.number}> ${call.story}`)
    const channelId = sim.placeCall({ app: application, caller: call.caller, exten: "100" })
    yield* waitFor((e) => e.type === "PlaybackStarted" && (e.playback as any)?.target_uri === `channel:${channelId}`)
    if (call.key !== undefined) sim.sendDtmf(channelId, call.key, 80)
    if (call.key === "1") {
      const joined = yield* waitFor((e) => e.type === "ChannelEnteredBridge" && (e.channel as any)?.id !== channelId)
      yield* Effect.sleep(200) // they talk
      sim.hangup((joined.channel as { id: string }).id)
    }
    tally[yield* Queue.take(outcomes)]++
    yield* Queue.take(ended)
  }

  const stats = yield* proxy.stats
  yield* say(
    `\nSummary: ${calls.length} calls (${tally.connected} bridged to an agent, ${tally.goodbye} goodbyes), ` +
      `${traffic.ended} dialogs ended; on the bus ${traffic.appStarts} AppStarts, ${traffic.events} events, ` +
      `${traffic.commands} commands, ${traffic.responses} responses; proxy: ` +
      `${stats.router.eventsReceived} ARI events in, ${stats.router.eventsUnrouted} unrouted, ` +
      `${stats.dialogs.commandsAnswered} commands answered; ` +
      `${Date.now() - started} ms.`
  )
}).pipe(Effect.scoped)
