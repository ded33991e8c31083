/**
 * Two proxies for one Asterisk (`stasis_broadcast`), in one process on the in-memory bus: the
 * simulator offers each call with StasisBroadcast, both proxies claim it, one wins, and the bus
 * client sees one dialog under the application's own name, whichever proxy has it. A proxy that
 * goes away or drains claims nothing more, and the other takes every call.
 * In one process the race of the two claims is decided the same way every time (the event loop
 * reads the two sockets in the same order), so the split of calls between the proxies, and a
 * SIGKILL, are tested with one proxy in a process of its own: test/proxy/broadcastFailover.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Queue, Scope } from "effect"
import type { BusShape } from "../../src/bus/Bus.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { makeAriClient } from "../../src/client/AriClient.js"
import type { ProxyShape } from "../../src/proxy/Proxy.js"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { startApp, type TestDialog } from "../support/apps.js"
import { eventually, startProxy, startSim } from "../support/harness.js"

const APP = "sales"
/** As the dialplan would offer calls to every proxy of `sales`: `StasisBroadcast(5000,^sales-)`. */
const offer = (sim: SimulatorHandle) => sim.placeBroadcastCall({ appFilter: `^${APP}-`, timeoutMs: 5_000 })

/** A proxy of APP with broadcast on, in a scope of its own (closing it takes the proxy away). */
const broadcastProxy = (sim: SimulatorHandle, bus: BusShape, serverId: string, transport: "http" | "websocket") =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const { proxy } = yield* Scope.extend(
      startProxy(sim, bus, {
        applications: [APP],
        serverId,
        stasisBroadcast: { enabled: true },
        ariRestTransport: transport,
        endedLingerMs: 100
      }),
      scope
    )
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    return { proxy, stop: Scope.close(scope, Exit.void) }
  })

/** How the application handles a call: it hangs up at once; returns the proxy that had it and the channel. */
const handleCall = (dialog: TestDialog) =>
  Effect.gen(function*() {
    const start = yield* dialog.waitFor("StasisStart")
    const channelId: string = start.ari.channel.id
    const hangup = yield* dialog.request("DELETE", `/channels/${channelId}`)
    expect(hangup.status_code).toBe(204)
    yield* Deferred.await(dialog.ended)
    return { serverId: dialog.serverId, channelId, application: start.ari.application as string }
  })

const claims = (proxy: ProxyShape) => Effect.map(proxy.stats, (stats) => stats.broadcastClaims)

/** The StasisStarts each channel got, over every application. */
const stasisStarts = (sim: SimulatorHandle, channelId: string) =>
  sim.events().filter((e) => e.type === "StasisStart" && (e.channel as { id: string }).id === channelId)

describe.each(["http", "websocket"] as const)("two proxies on one Asterisk with StasisBroadcast, claims over %s", (
  transport
) => {
  it.scopedLive("each call is claimed by both, won by one, and is one dialog under the application's name", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const bus = yield* makeMemoryBus
      const a = yield* broadcastProxy(sim, bus, "ast-a", transport)
      const b = yield* broadcastProxy(sim, bus, "ast-b", transport)
      expect([...sim.connectedApps()].sort()).toEqual(["sales-ast-a", "sales-ast-b"])
      const dialogs = yield* startApp(bus, APP)

      const calls = 20
      const handled: Array<{ serverId: string; channelId: string; application: string }> = []
      for (let i = 0; i < calls; i++) {
        const channelId = offer(sim)
        const call = yield* handleCall(yield* Queue.take(dialogs))
        expect(call.channelId).toBe(channelId)
        handled.push(call)
      }
      const byServer = (serverId: string) => handled.filter((call) => call.serverId === serverId).length
      expect(byServer("ast-a") + byServer("ast-b")).toBe(calls)
      // The bus client knows the application by its own name, in AppStart and in ari_body.
      expect(handled.every((call) => call.application === APP)).toBe(true)
      for (const call of handled) expect(stasisStarts(sim, call.channelId)).toHaveLength(1)
      const [claimsA, claimsB] = [yield* claims(a.proxy), yield* claims(b.proxy)]
      expect(claimsA.won).toBe(byServer("ast-a"))
      expect(claimsB.won).toBe(byServer("ast-b"))
      // Every call was claimed by both: the loser heard 409.
      expect(claimsA.lost + claimsB.lost).toBe(calls)
      expect({ ...claimsA, won: 0, lost: 0 }).toEqual({ won: 0, lost: 0, late: 0, failed: 0, declined: 0 })
      expect(yield* Queue.size(dialogs)).toBe(0)
    }))

  it.scopedLive("once a proxy is gone, every later call is taken by the other", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const bus = yield* makeMemoryBus
      const a = yield* broadcastProxy(sim, bus, "ast-a", transport)
      const b = yield* broadcastProxy(sim, bus, "ast-b", transport)
      const dialogs = yield* startApp(bus, APP)
      yield* a.stop
      yield* eventually(() => !sim.connectedApps().includes("sales-ast-a"))

      for (let i = 0; i < 10; i++) {
        const channelId = offer(sim)
        const call = yield* handleCall(yield* Queue.take(dialogs))
        expect(call).toMatchObject({ serverId: "ast-b", channelId })
        expect(stasisStarts(sim, channelId)).toHaveLength(1)
      }
      expect(yield* claims(b.proxy)).toEqual({ won: 10, lost: 0, late: 0, failed: 0, declined: 0 })
    }))

  it.scopedLive("a draining proxy claims nothing; with both draining, the call times out back to the dialplan", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const bus = yield* makeMemoryBus
      const a = yield* broadcastProxy(sim, bus, "ast-a", transport)
      const b = yield* broadcastProxy(sim, bus, "ast-b", transport)
      const dialogs = yield* startApp(bus, APP)
      yield* a.proxy.drain
      expect(yield* a.proxy.draining).toBe(true)

      for (let i = 0; i < 5; i++) {
        offer(sim)
        expect((yield* handleCall(yield* Queue.take(dialogs))).serverId).toBe("ast-b")
      }
      expect(yield* claims(a.proxy)).toEqual({ won: 0, lost: 0, late: 0, failed: 0, declined: 5 })

      yield* b.proxy.drain
      const unclaimed = sim.placeBroadcastCall({ appFilter: `^${APP}-`, timeoutMs: 50 })
      // Nobody claims: the dialplan goes on past StasisBroadcast (here: the end of the extension, a hangup).
      yield* eventually(() => !sim.channels().some((channel) => channel.id === unclaimed))
      expect(stasisStarts(sim, unclaimed)).toHaveLength(0)
      expect((yield* claims(b.proxy)).declined).toBe(1)
      expect((yield* claims(a.proxy)).declined).toBe(6)
    }))

  it.scopedLive("an application's own dialog originates into the application's name and gets its channel", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const bus = yield* makeMemoryBus
      yield* broadcastProxy(sim, bus, "ast-a", transport)
      yield* broadcastProxy(sim, bus, "ast-b", transport)
      const client = yield* makeAriClient(bus, { application: APP })
      const dialog = yield* client.createDialog({ serverId: "ast-b" })
      const callee = yield* dialog.channels.originate({ endpoint: "PJSIP/bob" })
      const start = yield* callee.started
      expect(start.channel.id).toBe(callee.id)
      expect(start.application).toBe(APP)
      // At Asterisk the channel went to the registered name of the proxy the dialog is on.
      const originate = sim.events().find((e) =>
        e.type === "StasisStart" && (e.channel as { id: string }).id === callee.id
      )
      expect(originate?.application).toBe("sales-ast-b")
      yield* callee.hangup()
      expect((yield* dialog.ended).reason).toBe("channels_left")
    }))
})
