/**
 * Asterisk dials the proxy (outbound_websocket): the simulator's outbound websockets, persistent and
 * per_call_config, against a proxy that listens, with commands going back over the socket the
 * events came from.
 */
import { describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { Deferred, Duration, Effect, Queue } from "effect"
import { makeMemoryBus } from "../../src/bus/memory.js"
import type { ProxyConfigInput } from "../../src/config/ProxyConfigService.js"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import type { OutboundWebsocketConfig } from "../../src/simulator/outboundWebsocket.js"
import { startApp, type TestDialog } from "../support/apps.js"
import { eventually, outboundCredentials, startProxy, startSim } from "../support/harness.js"

const within = <A, E, R>(ms: number, what: string) => (effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.timeoutFail({ duration: Duration.millis(ms), onTimeout: () => new Error(`timed out: ${what}`) }))

/** A proxy that listens for the simulators' outbound websockets, on an in-memory bus. */
const listeningProxy = (sim: SimulatorHandle, config: ProxyConfigInput) =>
  Effect.gen(function*() {
    const bus = yield* makeMemoryBus
    const { proxy } = yield* startProxy(sim, bus, {
      endedLingerMs: 100,
      ...config,
      outboundWebsocket: { enabled: true, port: 0, ...outboundCredentials, ...config.outboundWebsocket }
    })
    return { bus, proxy, uri: `ws://127.0.0.1:${proxy.outboundPort}/ari/out?node=ast1` }
  })

const dialOut = (sim: SimulatorHandle, config: OutboundWebsocketConfig) =>
  Effect.acquireRelease(Effect.sync(() => sim.outboundWebsocket(config)), (outbound) => Effect.sync(outbound.close))

/** What the simulator sent the application about `channelId`, exactly as sent. */
const sentAbout = (sim: SimulatorHandle, app: string, channelId: string) =>
  sim.events(app).filter((event) => (event.channel as { id?: string } | undefined)?.id === channelId)
    .map((event) => JSON.stringify(event))

/** The dialog's events as published (DialogEnded aside), and their seq numbers. */
const published = (dialog: TestDialog) => {
  const events = dialog.events.filter((event) => event.type !== "DialogEnded")
  return { bodies: events.map((event) => event.ari_body), seqs: dialog.events.map((event) => event.seq) }
}

describe("Asterisk dials the proxy (outbound_websocket)", () => {
  it.scopedLive("persistent: events queued during an outage arrive once, in order; commands go over the new socket", () =>
    Effect.gen(function*() {
      const app = "out-persistent"
      const sim = yield* startSim()
      const { bus, proxy, uri } = yield* listeningProxy(sim, {
        applications: [app],
        outboundWebsocket: { serverIds: new Map([[sim.asteriskId, "ast-out"]]) }
      })
      const outbound = yield* dialOut(sim, {
        uri,
        apps: [app],
        connectionType: "persistent",
        ...outboundCredentials,
        reconnectIntervalMs: 50
      })
      const dialogs = yield* startApp(bus, app)
      yield* eventually(() => outbound.connected())

      const first = sim.placeCall({ app })
      const firstDialog = yield* Queue.take(dialogs).pipe(within(5_000, "first AppStart"))
      expect(firstDialog.serverId).toBe("ast-out")
      yield* firstDialog.waitFor("StasisStart").pipe(within(5_000, "StasisStart"))
      expect((yield* firstDialog.request("POST", `/channels/${first}/answer`)).status_code).toBe(204)

      // The network goes away: what happens meanwhile waits in Asterisk's queue.
      outbound.outage(400)
      yield* eventually(() => !outbound.connected())
      sim.sendDtmf(first, "12")
      sim.hangup(first)
      const second = sim.placeCall({ app })
      sim.sendDtmf(second, "9")
      yield* eventually(() => outbound.connected()).pipe(within(10_000, "Asterisk dials again"))
      expect(outbound.connections()).toBe(2)
      expect(outbound.failedAttempts()).toBeGreaterThan(0)

      // The first call ended during the outage: its dialog gets the whole tail and ends as the call did.
      const firstEnd = yield* Deferred.await(firstDialog.ended).pipe(within(5_000, "first DialogEnded"))
      expect(firstEnd.ari.reason).toBe("channels_left")
      const secondDialog = yield* Queue.take(dialogs).pipe(within(5_000, "second AppStart"))
      yield* secondDialog.waitFor("ChannelDtmfReceived").pipe(within(5_000, "the digit pressed in the outage"))
      expect((yield* secondDialog.request("POST", `/channels/${second}/answer`)).status_code).toBe(204)
      expect((yield* secondDialog.request("DELETE", `/channels/${second}`)).status_code).toBe(204)
      const secondEnd = yield* Deferred.await(secondDialog.ended).pipe(within(5_000, "second DialogEnded"))
      expect(secondEnd.ari.reason).toBe("channels_left")

      // Exactly what Asterisk sent about each call, once each, in its order: nothing duplicated, nothing lost.
      for (const [dialog, channel] of [[firstDialog, first], [secondDialog, second]] as const) {
        const { bodies, seqs } = published(dialog)
        expect(bodies).toEqual(sentAbout(sim, app, channel))
        expect(seqs).toEqual(seqs.map((_, i) => i + 1))
      }
      expect(published(firstDialog).bodies.map((body) => JSON.parse(body).digit).filter(Boolean)).toEqual(["1", "2"])
      // Every command went over Asterisk's socket.
      expect(sim.requests().filter((r) => r.path.startsWith("/ari/channels")).every((r) => r.transport === "websocket"))
        .toBe(true)
      expect((yield* proxy.stats).ariReconnects).toBe(1)
    }), 30_000)

  it.scopedLive("per_call_config: a socket per call, a dialog per socket under the application's name", () =>
    Effect.gen(function*() {
      const app = "out-percall"
      const sim = yield* startSim()
      const { bus, proxy, uri } = yield* listeningProxy(sim, { applications: [app] })
      const outbound = yield* dialOut(sim, {
        uri,
        apps: [app],
        connectionType: "per_call_config",
        ...outboundCredentials,
        perCallStartDelayMs: 30,
        perCallCloseDelayMs: 60
      })
      const dialogs = yield* startApp(bus, app)
      const calls = [sim.placeCall({ app }), sim.placeCall({ app })]
      const handled = yield* Effect.forEach(calls, () =>
        Effect.gen(function*() {
          const dialog = yield* Queue.take(dialogs).pipe(within(5_000, "AppStart on the application's topic"))
          const start = yield* dialog.waitFor("StasisStart").pipe(within(5_000, "StasisStart"))
          const channel = start.ari.channel as { id: string; name: string }
          // Asterisk names the app of a per-call socket after the call
          expect(start.ari.application).toBe(`${app}:${channel.name}`)
          expect(dialog.serverId).toBe(sim.asteriskId) // no server_ids mapping: the entity id
          expect((yield* dialog.request("POST", `/channels/${channel.id}/answer`)).status_code).toBe(204)
          expect((yield* dialog.request("DELETE", `/channels/${channel.id}`)).status_code).toBe(204)
          const end = yield* Deferred.await(dialog.ended).pipe(within(5_000, "DialogEnded"))
          expect(end.ari.reason).toBe("channels_left")
          expect(published(dialog).bodies).toEqual(sentAbout(sim, `${app}:${channel.name}`, channel.id))
          return channel.id
        }), { concurrency: "unbounded" })
      expect([...handled].sort()).toEqual([...calls].sort())
      expect(outbound.connections()).toBe(2)
      // Asterisk closes each socket after the call; the proxy lets its session go once the dialog is released.
      yield* eventually(() => sim.connectedApps().length === 0 && proxy.dialogs().length === 0).pipe(
        within(5_000, "sockets closed and dialogs released")
      )
      expect((yield* proxy.stats).boundEntities).toBe(0)
    }), 30_000)

  it.scopedLive("per_call_config: a socket dropped mid-call is dialled again and the same dialog carries on", () =>
    Effect.gen(function*() {
      const app = "out-percall-drop"
      const sim = yield* startSim()
      const { bus, uri } = yield* listeningProxy(sim, { applications: [app] })
      const outbound = yield* dialOut(sim, {
        uri,
        apps: [app],
        connectionType: "per_call_config",
        ...outboundCredentials,
        perCallStartDelayMs: 30,
        perCallCloseDelayMs: 60
      })
      const dialogs = yield* startApp(bus, app)
      const channel = sim.placeCall({ app })
      const dialog = yield* Queue.take(dialogs).pipe(within(5_000, "AppStart"))
      yield* dialog.waitFor("StasisStart").pipe(within(5_000, "StasisStart"))
      expect(sim.dropWebsockets()).toBe(1)
      yield* eventually(() => outbound.connections() === 2).pipe(within(5_000, "Asterisk dials again"))
      yield* eventually(() => sim.connectedApps().length === 1)
      sim.sendDtmf(channel, "7")
      yield* dialog.waitFor("ChannelDtmfReceived").pipe(within(5_000, "an event on the new socket"))
      expect((yield* dialog.request("DELETE", `/channels/${channel}`)).status_code).toBe(204)
      const end = yield* Deferred.await(dialog.ended).pipe(within(5_000, "DialogEnded"))
      expect(end.ari.reason).toBe("channels_left")
    }), 30_000)

  it.scopedLive("per_call_config: a server that refuses sends the call on in the dialplan with STASISSTATUS=FAILED", () =>
    Effect.gen(function*() {
      const app = "out-percall-refused"
      const sim = yield* startSim()
      const { uri } = yield* listeningProxy(sim, { applications: [app] })
      const outbound = yield* dialOut(sim, {
        uri,
        apps: [app],
        connectionType: "per_call_config",
        username: outboundCredentials.username,
        password: "wrong",
        reconnectIntervalMs: 20,
        reconnectAttempts: 3
      })
      const channel = sim.placeCall({ app })
      const stasisStatus = Effect.promise(async () => {
        const { password, username } = sim.credentials
        const response = await fetch(`${sim.url}/channels/${channel}/variable?variable=STASISSTATUS`, {
          headers: { Authorization: `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}` }
        })
        return ((await response.json()) as { value?: string }).value
      })
      yield* Effect.gen(function*() {
        while ((yield* stasisStatus) !== "FAILED") yield* Effect.sleep(20)
      }).pipe(within(5_000, "STASISSTATUS=FAILED"))
      expect(outbound.failedAttempts()).toBe(3)
      expect(outbound.connections()).toBe(0)
      expect(sim.channels().find((c) => c.id === channel)?.dialplan.app_name).not.toBe("Stasis")
    }), 30_000)

  it.scopedLive("two Asterisks dial one proxy: each call's commands go back to the Asterisk it came from", () =>
    Effect.gen(function*() {
      const app = "out-two"
      const simA = yield* startSim({ asteriskId: "02:fc:00:00:00:0a" })
      const simB = yield* startSim({ asteriskId: "02:fc:00:00:00:0b" })
      const { bus, proxy, uri } = yield* listeningProxy(simA, {
        applications: [app],
        outboundWebsocket: { serverIds: new Map([["02:fc:00:00:00:0a", "ast-a"]]) }
      })
      const dialled = yield* Effect.forEach([simA, simB], (sim) =>
        dialOut(sim, { uri, apps: [app], connectionType: "persistent", ...outboundCredentials }))
      yield* eventually(() => dialled.every((outbound) => outbound.connected()))
      const dialogs = yield* startApp(bus, app)
      const perAsterisk = 4
      for (let i = 0; i < perAsterisk; i++) {
        simA.placeCall({ app, channelId: `a-${i}` })
        simB.placeCall({ app, channelId: `b-${i}` })
      }
      const served = yield* Effect.forEach(Array.from({ length: 2 * perAsterisk }), () =>
        Effect.gen(function*() {
          const dialog = yield* Queue.take(dialogs).pipe(within(5_000, "AppStart"))
          const start = yield* dialog.waitFor("StasisStart").pipe(within(5_000, "StasisStart"))
          const channelId = start.ari.channel.id as string
          expect((yield* dialog.request("POST", `/channels/${channelId}/answer`)).status_code).toBe(204)
          expect((yield* dialog.request("DELETE", `/channels/${channelId}`)).status_code).toBe(204)
          return { channelId, serverId: dialog.serverId }
        }), { concurrency: "unbounded" })
      for (const { channelId, serverId } of served) {
        expect(serverId).toBe(channelId.startsWith("a-") ? "ast-a" : "02:fc:00:00:00:0b")
      }
      for (const [sim, prefix] of [[simA, "a-"], [simB, "b-"]] as const) {
        const channelRequests = sim.requests().filter((r) => r.path.startsWith("/ari/channels/"))
        expect(channelRequests).toHaveLength(2 * perAsterisk)
        expect(channelRequests.filter((r) => !r.path.startsWith(`/ari/channels/${prefix}`))).toEqual([])
        expect(channelRequests.every((r) => r.transport === "websocket")).toBe(true)
      }
      yield* eventually(() => proxy.dialogs().length === 0)
    }), 30_000)

  it.scopedLive("with a key and certificate the listener speaks TLS (wss://)", () =>
    Effect.gen(function*() {
      const app = "out-tls"
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => mkdtempSync(path.join(tmpdir(), "ari-proxy-tls-"))),
        (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
      )
      const cert = path.join(dir, "cert.pem")
      const key = path.join(dir, "key.pem")
      const made = spawnSync("openssl", [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-keyout", key, "-out", cert
      ], { stdio: "ignore" })
      expect(made.status).toBe(0)
      const sim = yield* startSim()
      const { uri } = yield* listeningProxy(sim, { applications: [app], outboundWebsocket: { tls: { cert, key } } })
      const secure = uri.replace("ws://", "wss://")
      const plain = yield* dialOut(sim, { uri, apps: ["plain"], connectionType: "persistent", ...outboundCredentials })
      const outbound = yield* dialOut(sim, {
        uri: secure,
        apps: [app],
        connectionType: "persistent",
        ...outboundCredentials,
        verifyServerCert: false
      })
      yield* eventually(() => outbound.connected() && plain.failedAttempts() >= 1)
      expect(plain.connections()).toBe(0)
    }), 30_000)

  it.scopedLive("wrong credentials or a wrong path are refused before the upgrade; Asterisk keeps trying", () =>
    Effect.gen(function*() {
      const app = "out-refused"
      const sim = yield* startSim()
      const { proxy, uri } = yield* listeningProxy(sim, { applications: [app] })
      const wrongPassword = yield* dialOut(sim, {
        uri,
        apps: [app],
        connectionType: "persistent",
        username: outboundCredentials.username,
        password: "guess",
        reconnectIntervalMs: 20
      })
      const wrongPath = yield* dialOut(sim, {
        uri: uri.replace("/ari/out", "/elsewhere"),
        apps: ["other"],
        connectionType: "persistent",
        ...outboundCredentials,
        reconnectIntervalMs: 20
      })
      yield* eventually(() => wrongPassword.failedAttempts() >= 3 && wrongPath.failedAttempts() >= 3)
      expect([wrongPassword.connections(), wrongPath.connections()]).toEqual([0, 0])
      expect(proxy.dialogs()).toEqual([])
      wrongPassword.shutdown()
      const rightOne = yield* dialOut(sim, { uri, apps: [app], connectionType: "persistent", ...outboundCredentials })
      yield* eventually(() => rightOne.connected())
    }), 30_000)
})
