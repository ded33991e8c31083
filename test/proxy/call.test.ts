/**
 * The proxy end to end: ARI simulator → proxy → in-memory bus → applications, with commands sent
 * over HTTP and over the event websocket (`ari_rest_transport`).
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Queue, TestClock, TestServices } from "effect"
import { startApp } from "../support/apps.js"
import { eventually, makeRig } from "../support/harness.js"

const types = (events: ReadonlyArray<{ type: string }>) => events.map((e) => e.type)

describe.each(["http", "websocket"] as const)("proxy with the simulator on the in-memory bus, REST over %s", (
  transport
) => {
  const rig = () => makeRig({ config: { ariRestTransport: transport } })

  it.scopedLive("carries a whole inbound call: AppStart, events in order, commands, DialogEnded", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* rig()
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app", caller: { name: "Alice", number: "1001" } })
      const dialog = yield* Queue.take(dialogs)
      yield* dialog.waitFor("StasisStart")

      const answered = yield* dialog.request("POST", `/channels/${channelId}/answer`)
      expect(answered.status_code).toBe(204)
      yield* dialog.waitFor("ChannelStateChange", (e) => e.ari.channel.state === "Up")
      const played = yield* dialog.request("POST", `/channels/${channelId}/play?media=sound:hello-world`)
      expect(played.status_code).toBe(201)
      const playbackId = JSON.parse(played.response_body).id
      yield* dialog.waitFor("PlaybackFinished", (e) => e.ari.playback.id === playbackId)
      const hungUp = yield* dialog.request("DELETE", `/channels/${channelId}`)
      expect(hungUp.status_code).toBe(204)
      yield* Deferred.await(dialog.ended)

      expect(types(dialog.events)).toEqual([
        "StasisStart",
        "ChannelStateChange",
        "PlaybackStarted",
        "PlaybackFinished",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelHangupRequest",
        "StasisEnd",
        "DialogEnded"
      ])
      expect(dialog.events.every((e) => e.server_id === "ast-test")).toBe(true)
      const ended = dialog.events.at(-1)!.ari
      expect(ended).toMatchObject({ type: "DialogEnded", dialog_id: dialog.dialogId, reason: "channels_left" })
      // ari_body is exactly the frame the simulator sent
      const sent = sim.events("app").find((e) => e.type === "StasisStart")
      expect(dialog.events[0]!.ari_body).toBe(JSON.stringify(sent))
    }))

  it.scopedLive("loses nothing of a DTMF burst that arrives right after StasisStart", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* rig()
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      sim.sendDtmf(channelId, "1234567890*#", 10)
      sim.hangup(channelId)
      const dialog = yield* Queue.take(dialogs)
      yield* Deferred.await(dialog.ended)
      const digits = dialog.events.filter((e) => e.type === "ChannelDtmfReceived").map((e) => e.ari.digit).join("")
      expect(digits).toBe("1234567890*#")
      expect(dialog.events[0]!.type).toBe("StasisStart")
      expect(types(dialog.events).slice(-2)).toEqual(["StasisEnd", "DialogEnded"])
    }))

  it.scopedLive("keeps 10 concurrent calls apart: each dialog gets only its own events, in order", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* rig()
      const dialogs = yield* startApp(bus, "app")
      const channels = Array.from({ length: 10 }, (_, i) => sim.placeCall({ app: "app", exten: String(100 + i) }))
      for (let round = 0; round < 5; round++) {
        channels.forEach((id, i) => sim.sendDtmf(id, String((i + round) % 10), 5))
      }
      for (const id of channels) sim.hangup(id)
      const received = []
      for (let i = 0; i < 10; i++) received.push(yield* Queue.take(dialogs))
      for (const dialog of received) yield* Deferred.await(dialog.ended)
      const byChannel = new Map(received.map((d) => [d.events[0]!.ari.channel.id as string, d]))
      expect([...byChannel.keys()].sort()).toEqual([...channels].sort())
      channels.forEach((id, i) => {
        const dialog = byChannel.get(id)!
        for (const event of dialog.events) {
          if (event.type !== "DialogEnded") expect(event.ari.channel.id).toBe(id)
        }
        const digits = dialog.events.filter((e) => e.type === "ChannelDtmfReceived").map((e) => e.ari.digit).join("")
        expect(digits).toBe([0, 1, 2, 3, 4].map((round) => String((i + round) % 10)).join(""))
      })
    }))

  it.scopedLive("binds an originated second leg and a bridge to the first dialog and tears them down with it", () =>
    Effect.gen(function*() {
      const { sim, bus, proxy } = yield* rig()
      const dialogs = yield* startApp(bus, "app")
      const caller = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      yield* dialog.request("POST", `/channels/${caller}/answer`)
      // the second leg's id travels in the JSON body, as the seed's clients send parameters
      const originated = yield* dialog.request("POST", "/channels", { endpoint: "PJSIP/bob", app: "app", channelId: "leg-b" })
      expect(originated.status_code).toBe(200)
      yield* dialog.waitFor("StasisStart", (e) => e.ari.channel.id === "leg-b")
      const bridge = yield* dialog.request("POST", "/bridges?type=mixing&bridgeId=br-1")
      expect(bridge.status_code).toBe(200)
      expect((yield* dialog.request("POST", `/bridges/br-1/addChannel?channel=${caller},leg-b`)).status_code).toBe(204)
      yield* dialog.waitFor("ChannelEnteredBridge", (e) => e.ari.channel.id === "leg-b")
      expect(proxy.dialogs()).toHaveLength(1) // no AppStart, no dialog for the second leg

      // the second leg hangs up: the dialog lives on (the seed killed it on any member's StasisEnd)
      sim.hangup("leg-b")
      yield* dialog.waitFor("StasisEnd", (e) => e.ari.channel.id === "leg-b")
      const stillThere = yield* dialog.request("GET", `/channels/${caller}`)
      expect(stillThere.status_code).toBe(200)
      expect((yield* dialog.request("DELETE", "/bridges/br-1")).status_code).toBe(204)
      yield* dialog.waitFor("BridgeDestroyed")
      sim.hangup(caller)
      yield* Deferred.await(dialog.ended)
      const stats = yield* proxy.stats
      expect(stats.boundEntities).toBe(0)
      expect(stats.router.dialogsStarted).toBe(1)
    }))

  it.scopedLive("executes concurrently sent commands one at a time, in order, answering each by its id", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* rig()
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      sim.clearRequests()
      const variables = Array.from({ length: 20 }, (_, i) => `V${i}`)
      const responses = yield* Effect.forEach(
        variables,
        (name, i) => dialog.request("POST", `/channels/${channelId}/variable?variable=${name}&value=${i}`),
        { concurrency: "unbounded" }
      )
      expect(responses.every((r) => r.status_code === 204)).toBe(true)
      const sent = sim.requests().filter((r) => r.path.endsWith("/variable"))
      expect(sent.map((r) => r.query.variable)).toEqual(variables)
      expect(sent.every((r) => r.transport === transport)).toBe(true)
      // responses on the bus came in the same order as the requests
      expect(dialog.responses.slice(-20).map((r) => r.unique_id)).toEqual(responses.map((r) => r.unique_id))
    }))

  it.scopedLive("answers a command sent after the dialog ended with 410, and a malformed one with 400", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* rig()
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      yield* dialog.sendRaw(JSON.stringify({ unique_id: "bad-1", url: 42, method: "POST" }))
      yield* eventually(() => dialog.responses.some((r) => r.unique_id === "bad-1"))
      const bad = dialog.responses.find((r) => r.unique_id === "bad-1")!
      expect(bad.status_code).toBe(400)
      expect(JSON.parse(bad.response_body).message).toContain("url must be a string")
      sim.hangup(channelId)
      yield* Deferred.await(dialog.ended)
      const late = yield* dialog.request("POST", `/channels/${channelId}/answer`)
      expect(late.status_code).toBe(410)
      expect(JSON.parse(late.response_body)).toMatchObject({ dialog_id: dialog.dialogId, source: "ari-proxy" })
    }))
})

describe("attach grace", () => {
  // On TestClock: the attach grace is a timer of the dialogs' actor system (Effect's Clock).
  it.scoped("an application that never attaches gets the held events once attach_grace_ms have passed", () =>
    Effect.gen(function*() {
      const { sim, bus, config } = yield* makeRig()
      const dialogs = yield* startApp(bus, "app", { attach: false })
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      yield* TestClock.adjust(config.attachGraceMs - 1)
      yield* TestServices.provideLive(Effect.sleep(20)) // released events would be here by now
      expect(dialog.events).toEqual([])
      yield* TestClock.adjust(1)
      const start = yield* dialog.waitFor("StasisStart")
      expect(start.ari.channel.id).toBe(channelId)
    }))
})
