/**
 * The Effect client against the simulator and the proxy on the in-memory bus: events, requests,
 * errors, handles and the release of subscriptions.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Option, Stream } from "effect"
import { type MemoryBus, makeMemoryBus } from "../../src/bus/memory.js"
import { makeAriClient } from "../../src/client/AriClient.js"
import type { AriDialog } from "../../src/client/dialog.js"
import { errorFromResponse } from "../../src/client/errors.js"
import { isUnknownAriEvent, UnknownAriEventTypeId } from "../../src/client/ari.js"
import { encodeWireEvent, goJsonString } from "../../src/protocol/codec.js"
import type { ProxyConfigInput } from "../../src/config/ProxyConfigService.js"
import { eventually, makeRig } from "../support/harness.js"

/** Simulator + proxy + a client for application "app"; `nextDialog` takes the next dialog this client joins. */
const clientRig = (
  options: {
    readonly requestTimeoutMs?: number
    readonly config?: ProxyConfigInput
    readonly transport?: "http" | "websocket"
  } = {}
) =>
  Effect.gen(function*() {
    const bus: MemoryBus = yield* makeMemoryBus
    const idle = bus.activeTopics()
    const rig = yield* makeRig({ bus, config: { ...options.config, ariRestTransport: options.transport ?? "http" } })
    const client = yield* makeAriClient(bus, {
      application: "app",
      ...(options.requestTimeoutMs ? { requestTimeoutMs: options.requestTimeoutMs } : {})
    })
    const pull = yield* Stream.toPull(client.dialogs)
    const nextDialog: Effect.Effect<AriDialog> = Effect.map(Effect.orDie(pull), (chunk) => Chunk.unsafeHead(chunk))
    /** Places a call and returns its dialog and caller channel id. */
    const callIn = Effect.gen(function*() {
      const channelId = rig.sim.placeCall({ app: "app" })
      return { channelId, dialog: yield* nextDialog, sim: rig.sim, client }
    })
    return { ...rig, bus, idle, client, callIn }
  })

describe("client: events", () => {
  it.scopedLive("decodes typed events; the stream replays from the start and completes on DialogEnded", () =>
    Effect.gen(function*() {
      const { dialog, channelId } = yield* (yield* clientRig()).callIn
      const start = yield* dialog.waitFor("StasisStart")
      expect(start.channel.id).toBe(channelId)
      expect(start.channel.state).toBe("Ring")
      const caller = yield* dialog.firstChannel
      expect(caller.id).toBe(channelId)
      yield* caller.answer()
      const playback = yield* caller.play({ media: "sound:hello-world" })
      const finished = yield* playback.finished
      expect(finished.playback.state).toBe("done")
      expect((yield* caller.get()).state).toBe("Up")
      yield* caller.hangup()
      expect((yield* dialog.ended).reason).toBe("channels_left")
      const events = Chunk.toReadonlyArray(yield* Stream.runCollect(dialog.events))
      const types = events.map((e) => e.type)
      expect(types[0]).toBe("StasisStart")
      expect(types).toContain("PlaybackFinished")
      expect(types.at(-1)).toBe("StasisEnd")
      expect(types).not.toContain("DialogEnded") // it ends the stream, it is not an ARI event
      expect(events.some(isUnknownAriEvent)).toBe(false)
    }))

  it.scopedLive("passes unknown and malformed events through untyped instead of failing", () =>
    Effect.gen(function*() {
      const { bus, sim, client } = yield* clientRig()
      const dialog = yield* client.createDialog()
      const topic = client.topics.events(dialog.id)
      const server = goJsonString("ast-test")
      yield* bus.publish(topic, encodeWireEvent(server, "FutureEvent", JSON.stringify({ type: "FutureEvent", x: 1 })))
      yield* bus.publish(topic, encodeWireEvent(server, "StasisStart", JSON.stringify({ type: "StasisStart" })))
      yield* bus.publish(topic, "not json at all") // ignored, as a seed client would
      yield* dialog.channels.originate({ endpoint: "PJSIP/alice", channelId: "typed-after" })
      yield* dialog.channel("typed-after").started
      const events = Chunk.toReadonlyArray(yield* dialog.events.pipe(Stream.take(3), Stream.runCollect))
      const [future, invalid] = events
      expect(future!.type).toBe("FutureEvent")
      expect(isUnknownAriEvent(future!) && future[UnknownAriEventTypeId].reason).toBe("unknown-type")
      expect((future as Record<string, unknown>).x).toBe(1)
      expect(isUnknownAriEvent(invalid!) && invalid[UnknownAriEventTypeId].reason).toBe("invalid")
      expect(isUnknownAriEvent(events[2]!)).toBe(false)
      sim.hangup("typed-after")
      yield* dialog.ended
    }))

  it.scopedLive("drops an event received twice and reports events lost on the way, by their seq", () =>
    Effect.gen(function*() {
      const { bus, client } = yield* clientRig()
      const dialog = yield* client.createDialog()
      const topic = client.topics.events(dialog.id)
      const server = goJsonString("ast-test")
      const event = (seq: number) => encodeWireEvent(server, "FutureEvent", JSON.stringify({ type: "FutureEvent", n: seq }), seq)
      for (const seq of [1, 2, 2, 3, 6]) yield* bus.publish(topic, event(seq))
      const ended = JSON.stringify({ type: "DialogEnded", dialog_id: dialog.id, reason: "channels_left" })
      yield* bus.publish(topic, encodeWireEvent(server, "DialogEnded", ended, 7))
      expect((yield* dialog.ended).reason).toBe("channels_left")
      const events = Chunk.toReadonlyArray(yield* Stream.runCollect(dialog.events))
      expect(events.map((e) => (e as Record<string, unknown>).n)).toEqual([1, 2, 3, 6])
      expect(yield* dialog.delivery).toEqual({ lastSeq: 7, duplicates: 1, gaps: [{ after: 3, missing: 2 }] })
    }))

  it.scopedLive("reads DTMF pressed during a prompt, one digit per waitForDtmf, None after a timeout", () =>
    Effect.gen(function*() {
      const rig = yield* clientRig()
      const { channelId, dialog } = yield* rig.callIn
      const caller = yield* dialog.firstChannel
      yield* caller.answer()
      rig.sim.sendDtmf(channelId, "42", 5)
      expect(yield* caller.waitForDtmf()).toEqual(Option.some("4"))
      expect(yield* caller.waitForDtmf()).toEqual(Option.some("2"))
      expect(yield* caller.waitForDtmf({ timeoutMs: 50 })).toEqual(Option.none())
      const digits = yield* caller.dtmf.pipe(Stream.take(2), Stream.runCollect)
      expect(Chunk.toReadonlyArray(digits).join("")).toBe("42")
      yield* caller.hangup()
      expect(yield* caller.waitForDtmf()).toEqual(Option.none()) // the dialog ended
    }))
})

describe.each(["http", "websocket"] as const)("client: requests (ARI REST over %s)", (transport) => {
  it.scopedLive("matches responses to requests by id under concurrency", () =>
    Effect.gen(function*() {
      const { dialog, channelId } = yield* (yield* clientRig({ transport })).callIn
      const names = Array.from({ length: 25 }, (_, i) => `V${i}`)
      yield* Effect.forEach(names, (variable, i) =>
        dialog.ari.channels.setChannelVar({ channelId, variable, value: String(i) }), { concurrency: "unbounded" })
      const values = yield* Effect.forEach(names, (variable) =>
        dialog.ari.channels.getChannelVar({ channelId, variable }), { concurrency: "unbounded" })
      expect(values.map((v) => v.value)).toEqual(names.map((_, i) => String(i)))
    }))

  it.scopedLive("fails with RequestTimeout when no response comes in time, and goes on afterwards", () =>
    Effect.gen(function*() {
      const rig = yield* clientRig({ requestTimeoutMs: 150, config: { commandTimeoutMs: 500 }, transport })
      const { dialog, channelId, sim } = yield* rig.callIn
      sim.setRestMode("hang")
      const error = yield* Effect.flip(dialog.channel(channelId).answer())
      expect(error._tag).toBe("RequestTimeout")
      expect(error).toMatchObject({ method: "POST", url: `/channels/${channelId}/answer`, timeoutMs: 150 })
      sim.setRestMode("normal")
      const quick = yield* Effect.flip(dialog.request("GET", `/channels/${channelId}`, "", { timeoutMs: 1 }))
      expect(quick._tag).toBe("RequestTimeout")
      // the proxy runs a dialog's commands in turn: this one waits for the hung one's 504 (ignored: too late)
      const after = yield* dialog.request("GET", `/channels/${channelId}`, "", { timeoutMs: 5_000 })
      expect(JSON.parse(after.body).id).toBe(channelId)
    }))

  it.scopedLive("maps status codes to typed errors: 404, 409, 422 from ARI; 410 after the end", () =>
    Effect.gen(function*() {
      const { dialog, channelId, sim } = yield* (yield* clientRig({ transport })).callIn
      const missing = yield* Effect.flip(dialog.channel("no-such-channel").answer())
      expect(missing).toMatchObject({ _tag: "NotFound", status: 404, message: "Channel not found" })
      // a second leg that leaves Stasis for the dialplan: ARI no longer lets the application control it
      const outside = yield* dialog.channels.originate({ endpoint: "PJSIP/bob" })
      yield* outside.started
      yield* dialog.ari.channels.continueInDialplan({ channelId: outside.id, context: "hold-test", extension: "wait" })
      yield* outside.ended
      const conflict = yield* Effect.flip(outside.answer())
      expect(conflict).toMatchObject({ _tag: "Conflict", status: 409, method: "POST" })
      const bridge = yield* dialog.bridges.create()
      const unprocessable = yield* Effect.flip(bridge.addChannel(outside))
      expect(unprocessable).toMatchObject({ _tag: "Unprocessable", status: 422 })
      yield* bridge.destroy()
      yield* outside.hangup()
      sim.hangup(channelId)
      yield* dialog.ended
      const gone = yield* Effect.flip(dialog.channel(channelId).answer())
      expect(gone).toMatchObject({ _tag: "Gone", status: 410, reason: "channels_left" })
      const neverStarted = yield* Effect.flip(dialog.channel("never").started)
      expect(neverStarted._tag).toBe("Gone")
    }))

  it.scopedLive("a 410 from the proxy: joining a dialog that has already ended", () =>
    Effect.gen(function*() {
      const { dialog, channelId, sim, client } = yield* (yield* clientRig({ transport })).callIn
      sim.hangup(channelId)
      yield* dialog.ended
      const error = yield* Effect.flip(client.joinDialog(dialog.id, dialog.serverId))
      expect(error).toMatchObject({ _tag: "Gone", status: 410, method: "ATTACH" })
      expect(JSON.parse((error as { body: string }).body)).toMatchObject({ dialog_id: dialog.id, source: "ari-proxy" })
    }))

  it("chooses the error by status code", () => {
    const request = { dialogId: "d", method: "POST", url: "/x", body: "{\"message\":\"why\"}" }
    const tags = [400, 401, 404, 409, 410, 412, 422, 500, 502, 503, 504].map((status) =>
      errorFromResponse({ ...request, status })._tag
    )
    expect(tags).toEqual([
      "BadRequest",
      "UnexpectedStatus",
      "NotFound",
      "Conflict",
      "Gone",
      "InvalidState",
      "Unprocessable",
      "ServerError",
      "ServerError",
      "ServerError",
      "ServerError"
    ])
    expect(errorFromResponse({ ...request, status: 404 }).message).toBe("why")
    expect(errorFromResponse({ ...request, status: 502, body: "" }).message).toBe("status 502")
  })
})

describe.each(["http", "websocket"] as const)("client: handles and lifetime (ARI REST over %s)", (transport) => {
  it.scopedLive("originates a second leg, bridges both, and the bridge handle tears it down", () =>
    Effect.gen(function*() {
      const { dialog, sim } = yield* (yield* clientRig({ transport })).callIn
      const caller = yield* dialog.firstChannel
      yield* caller.answer()
      const callee = yield* dialog.channels.originate({ endpoint: "PJSIP/bob" })
      const started = yield* callee.started
      expect(started.channel.id).toBe(callee.id)
      const bridge = yield* dialog.bridges.create({ name: "call" })
      yield* bridge.addChannel([caller, callee.id])
      yield* dialog.waitFor("ChannelEnteredBridge", (e) => e.channel?.id === callee.id)
      expect(sim.bridges().find((b) => b.id === bridge.id)?.channels).toEqual([caller.id, callee.id])
      const announcement = yield* bridge.play({ media: "sound:beep" })
      yield* announcement.finished
      yield* bridge.removeChannel(callee)
      yield* bridge.destroy()
      yield* callee.hangup()
      yield* callee.ended
      yield* caller.sendDtmf("1")
      yield* caller.hangup()
      yield* dialog.ended
      expect(sim.bridges()).toHaveLength(0)
    }))

  it.scopedLive("releases a dialog's subscriptions on DialogEnded, on close, and when the scope closes", () =>
    Effect.gen(function*() {
      // dialogs nobody puts a channel in end (unused) soon, so the proxy lets their topics go too
      const rig = yield* clientRig({ config: { requestedDialogIdleMs: 200, endedLingerMs: 100 }, transport })
      const { bus, idle, sim, client } = rig
      const withProxy = bus.activeTopics() // the proxy's own subscriptions
      const { dialog, channelId } = yield* Effect.scoped(Effect.gen(function*() {
        const rig = yield* Stream.toPull(client.dialogs)
        const id = sim.placeCall({ app: "app" })
        const joined = Chunk.unsafeHead(yield* Effect.orDie(rig))
        expect(bus.activeTopics()).toBeGreaterThan(withProxy)
        return { dialog: joined, channelId: id }
      }))
      // the stream's scope has closed: the app queue and the dialog are released
      expect(bus.activeTopics()).toBeLessThanOrEqual(withProxy + 1) // the proxy's commands topic of the dialog
      const gone = yield* Effect.flip(dialog.channel(channelId).answer())
      expect(gone._tag).toBe("Gone")
      sim.hangup(channelId)

      const created = yield* Effect.scoped(Effect.gen(function*() {
        const own = yield* client.createDialog()
        expect(bus.activeTopics()).toBeGreaterThan(withProxy)
        return own
      }))
      expect((yield* created.ended).reason).toBe("closed")
      const explicit = yield* client.createDialog()
      yield* explicit.close
      const ending = yield* client.createDialog()
      yield* ending.channels.originate({ endpoint: "PJSIP/alice", channelId: "short" })
      yield* ending.channel("short").started
      sim.hangup("short")
      yield* ending.ended
      // only the proxy's subscriptions remain, and they go when its dialogs linger out
      yield* eventually(() => bus.activeTopics() === withProxy, 20)
      expect(withProxy).toBeGreaterThan(idle)
    }), 20_000)

  it.scopedLive("serve runs a handler per dialog and closes each dialog when its handler returns", () =>
    Effect.gen(function*() {
      const { sim, client } = yield* clientRig({ transport })
      const handled: Array<string> = []
      const serving = yield* Effect.fork(client.serve((dialog) =>
        Effect.gen(function*() {
          const caller = yield* dialog.firstChannel
          yield* caller.answer()
          yield* caller.hangup()
          handled.push(caller.id)
          if (handled.length === 2) return yield* Effect.fail("a failing handler is logged, not fatal")
        })
      ))
      const calls = [sim.placeCall({ app: "app" }), sim.placeCall({ app: "app" }), sim.placeCall({ app: "app" })]
      yield* eventually(() => handled.length === 3)
      expect([...handled].sort()).toEqual([...calls].sort())
      yield* Fiber.interrupt(serving)
    }))
})
