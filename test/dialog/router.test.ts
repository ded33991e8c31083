import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { makeDialogCounters } from "../../src/dialog/actor.js"
import { ProxyMetrics } from "../../src/observability/metrics.js"
import { makeActorSystem } from "../../src/actor/ActorSystem.js"
import { makeTopics } from "../../src/protocol/topics.js"
import { makeRouterCounters, Router } from "../../src/proxy/router.js"

const channel = (id: string, name = `PJSIP/sipp-${id}`) => ({ id, name, state: "Up" })
const frame = (type: string, fields: Record<string, unknown>) =>
  JSON.stringify({ type, timestamp: "2026-11-30T10:28:16.331+0000", ...fields, asterisk_id: "a", application: "app" })

/** A router on the in-memory bus; ARI answers every command with `reply`. */
const makeRouter = (reply: (method: string, url: string) => { status: number; body: string } = () => ({ status: 204, body: "" })) =>
  Effect.gen(function*() {
    const bus = yield* makeMemoryBus
    const router = new Router(
      {
        serverId: "s",
        topics: makeTopics(),
        bus,
        system: yield* makeActorSystem,
        mailboxSize: 10_000,
        releaseAtOnce: () => false,
        machine: { holdEvents: false, maxHeldEvents: 100 },
        attachGraceMs: 1000,
        endedLingerMs: 1000,
        requestedDialogIdleMs: 1000,
        execute: (command, onReply) => onReply(reply(command.method, command.url), undefined),
        counters: makeDialogCounters(),
        metrics: new ProxyMetrics()
      },
      makeRouterCounters(),
      "app"
    )
    return { router, registry: router.registryOf("app") }
  })

const targetsOf = (outcome: ReturnType<Router["route"]>) => (outcome._tag === "Routed" ? outcome.targets.map((d) => d.id) : [])

describe("router", () => {
  it.scoped("opens a dialog per new channel and routes each channel's events to its own dialog", () =>
    Effect.gen(function*() {
      const { router } = yield* makeRouter()
      const a = router.route(frame("StasisStart", { args: [], channel: channel("A") }))
      const b = router.route(frame("StasisStart", { args: [], channel: channel("B") }))
      expect(targetsOf(a)).toHaveLength(1)
      expect(targetsOf(b)).toHaveLength(1)
      expect(targetsOf(a)).not.toEqual(targetsOf(b))
      expect(targetsOf(router.route(frame("ChannelDtmfReceived", { digit: "1", channel: channel("B") })))).toEqual(targetsOf(b))
      expect(router.route(frame("ChannelDtmfReceived", { digit: "1", channel: channel("X") }))._tag).toBe("Unrouted")
      expect(router.route(frame("DeviceStateChanged", { device_state: { name: "PJSIP/sipp", state: "INUSE" } }))._tag)
        .toBe("Unrouted")
    }))

  it.scoped("routes an event to every dialog that owns an entity it names", () =>
    Effect.gen(function*() {
      const { router } = yield* makeRouter((_method, url) =>
        url.startsWith("/bridges") ? { status: 200, body: JSON.stringify({ id: "BR", bridge_type: "mixing" }) } : { status: 204, body: "" }
      )
      const a = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("A") })))[0]!
      const b = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("B") })))[0]!
      router.dialogs.get(a)!.input({ _tag: "SubscriptionReady" })
      router.dialogs.get(a)!.input({ _tag: "Command", command: { unique_id: "1", method: "POST", url: "/bridges?bridgeId=BR", body: "" } })
      const entered = router.route(frame("ChannelEnteredBridge", { bridge: { id: "BR" }, channel: channel("B") }))
      expect(targetsOf(entered).sort()).toEqual([a, b].sort())
    }))

  it.scoped("a channel created by a dialog joins it on StasisStart; a Local half joins its pair's dialog", () =>
    Effect.gen(function*() {
      const { router } = yield* makeRouter(() => ({ status: 200, body: JSON.stringify({ id: "L1", name: "Local/100@ctx-00000001;1", dialplan: {} }) }))
      const a = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("A") })))[0]!
      const dialog = router.dialogs.get(a)!
      dialog.input({ _tag: "SubscriptionReady" })
      dialog.input({ _tag: "Command", command: { unique_id: "1", method: "POST", url: "/channels?endpoint=Local/100@ctx&app=app", body: "" } })
      yield* Effect.yieldNow()
      const l1 = router.route(frame("StasisStart", { args: [], channel: channel("L1", "Local/100@ctx-00000001;1") }))
      expect(targetsOf(l1)).toEqual([a])
      const l2 = router.route(frame("ChannelVarset", { variable: "X", value: "1", channel: channel("L2", "Local/100@ctx-00000001;2") }))
      expect(targetsOf(l2)).toEqual([a])
      const l2start = router.route(frame("StasisStart", { args: [], channel: channel("L2", "Local/100@ctx-00000001;2") }))
      expect(targetsOf(l2start)).toEqual([a])
      expect(router.dialogs.size).toBe(1)
    }))

  it.scoped("a playback is found by its target before the response that names it", () =>
    Effect.gen(function*() {
      const { router, registry } = yield* makeRouter()
      const a = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("A") })))[0]!
      const started = router.route(frame("PlaybackStarted", { playback: { id: "pb", target_uri: "channel:A", state: "playing" } }))
      expect(targetsOf(started)).toEqual([a])
      expect(registry.ownerOf("p:pb")?.id).toBe(a)
      router.route(frame("PlaybackFinished", { playback: { id: "pb", target_uri: "channel:A", state: "done" } }))
      expect(registry.ownerOf("p:pb")).toBeUndefined() // unbound once finished
    }))

  it.scoped("a Dial peer joins its caller's dialog", () =>
    Effect.gen(function*() {
      const { router } = yield* makeRouter()
      const a = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("A") })))[0]!
      expect(targetsOf(router.route(frame("Dial", { dialstatus: "", caller: channel("A"), peer: channel("P") })))).toEqual([a])
      expect(targetsOf(router.route(frame("ChannelStateChange", { channel: channel("P") })))).toEqual([a])
    }))

  it.scoped("an entity a dialog could not have (another live dialog owned it) joins it once it is free", () =>
    Effect.gen(function*() {
      const { router, registry } = yield* makeRouter()
      const a = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("A") })))[0]!
      const b = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("B") })))[0]!
      router.dialogs.get(b)!.input({ _tag: "SubscriptionReady" })
      const dialogA = router.dialogs.get(a)!
      dialogA.input({ _tag: "SubscriptionReady" })
      // A names B in a command while B's own dialog lives: B stays B's.
      const url = "/channels?endpoint=PJSIP/b&app=app&channelId=B"
      const originate = { unique_id: "1", method: "POST", url, body: "" }
      dialogA.input({ _tag: "Command", command: originate })
      expect(registry.ownerOf("c:B")?.id).toBe(b)
      router.route(frame("StasisEnd", { channel: channel("B") })) // B's dialog ends, B is free
      expect(targetsOf(router.route(frame("Dial", { dialstatus: "", caller: channel("A"), peer: channel("B") }))))
        .toEqual([a])
      expect(registry.ownerOf("c:B")?.id).toBe(a)
      expect(targetsOf(router.route(frame("ChannelStateChange", { channel: channel("B") })))).toEqual([a])
    }))

  it.scoped("a channel re-entering Stasis after its dialog ended opens a new dialog", () =>
    Effect.gen(function*() {
      const { router } = yield* makeRouter()
      const first = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("A") })))[0]!
      router.dialogs.get(first)!.input({ _tag: "SubscriptionReady" })
      router.route(frame("StasisEnd", { channel: channel("A") }))
      expect(router.dialogs.get(first)!.state.ended).toBe(true)
      const second = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("A") })))[0]!
      expect(second).not.toBe(first)
    }))

  it.scoped("a GET of another dialog's channel does not move it", () =>
    Effect.gen(function*() {
      const { router, registry } = yield* makeRouter(() => ({ status: 200, body: JSON.stringify({ id: "B", name: "PJSIP/x", dialplan: {} }) }))
      const a = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("A") })))[0]!
      const b = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("B") })))[0]!
      const dialogA = router.dialogs.get(a)!
      dialogA.input({ _tag: "SubscriptionReady" })
      dialogA.input({ _tag: "Command", command: { unique_id: "1", method: "GET", url: "/channels/B", body: "" } })
      dialogA.input({ _tag: "Command", command: { unique_id: "2", method: "POST", url: "/channels/B/answer", body: "" } })
      yield* Effect.yieldNow()
      expect(registry.ownerOf("c:B")?.id).toBe(b)
    }))
})

describe("several applications on one websocket", () => {
  it.scoped("an event is routed to the dialogs of the application it was sent for, once", () =>
    Effect.gen(function*() {
      const { router } = yield* makeRouter()
      const a = targetsOf(router.route(frame("StasisStart", { args: [], channel: channel("A") })))[0]!
      // ARI sends an event once per subscribed application: the copy for another app is not a duplicate here
      const forOther = JSON.stringify({ type: "ChannelDtmfReceived", digit: "1", channel: channel("A"), application: "other" })
      expect(router.route(forOther)._tag).toBe("Unrouted")
      expect(targetsOf(router.route(frame("ChannelDtmfReceived", { digit: "1", channel: channel("A") })))).toEqual([a])
      // a channel entering another application's Stasis opens a dialog of that application
      const startOther = JSON.stringify({ type: "StasisStart", args: [], channel: channel("A"), application: "other" })
      const b = targetsOf(router.route(startOther))[0]!
      expect(b).not.toBe(a)
      expect(router.dialogs.get(b)!.application).toBe("other")
    }))
})
