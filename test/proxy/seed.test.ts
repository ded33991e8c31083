/**
 * Compatibility with the seed's clients and, for each defect of the seed (seed-protocol §8) that
 * applies to the proxy core, a test showing it does not happen here.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Option, Queue } from "effect"
import { startApp } from "../support/apps.js"
import { eventually, makeRig } from "../support/harness.js"
import { startSeedApp } from "../support/seedClient.js"

describe("seed-style clients", () => {
  it.scopedLive("a go-ari-library-like client (DUMMY first, no unique_id, takes the next response) gets the right answers", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig()
      const dialogs = yield* startSeedApp(bus, "app")
      sim.clearRequests()
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      const first = yield* Queue.take(dialog.events)
      expect(first.type).toBe("StasisStart")
      // parameters in the JSON body, as the Go helpers send them
      const setVar = yield* dialog.command("POST", `/channels/${channelId}/variable`, { variable: "FOO", value: "bar" })
      expect(Option.getOrThrow(setVar).status_code).toBe(204)
      const getVar = yield* dialog.command("GET", `/channels/${channelId}/variable`, { variable: "FOO" })
      expect(JSON.parse(Option.getOrThrow(getVar).response_body)).toEqual({ value: "bar" })
      const played = yield* dialog.command("POST", `/channels/${channelId}/play`, { media: "sound:hello-world" })
      const playback = JSON.parse(Option.getOrThrow(played).response_body)
      expect(playback.media_uri).toBe("sound:hello-world") // not the previous call's answer: no off-by-one
      // DUMMY never became an ARI request (the seed sent `GET /ari` for it)
      expect(sim.requests().some((r) => r.path === "/ari" || r.path === "/ari/")).toBe(false)
    }))
})

describe("the seed's defects (seed-protocol §8) do not happen", () => {
  it.scopedLive("§1 events of a dialog keep ARI's order; §2 none is lost at setup", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig()
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      sim.sendDtmf(channelId, "12345678", 0)
      sim.hangup(channelId)
      const dialog = yield* Queue.take(dialogs)
      yield* Deferred.await(dialog.ended)
      const sent = sim.events("app").filter((e) => (e.channel as { id?: string } | undefined)?.id === channelId)
      expect(dialog.events.slice(0, -1).map((e) => e.ari_body)).toEqual(sent.map((e) => JSON.stringify(e)))
    }))

  it.scopedLive("§10 a channel re-entering Stasis after its dialog ended gets a new dialog", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig({
        sim: { dialplan: { back: { s: [{ app: "NoOp" }, { app: "Stasis", data: "app" }] } } }
      })
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const first = yield* Queue.take(dialogs)
      const continued = yield* first.request("POST", `/channels/${channelId}/continue?context=back&extension=s&priority=1`)
      expect(continued.status_code).toBe(204)
      yield* Deferred.await(first.ended)
      const second = yield* Queue.take(dialogs)
      expect(second.dialogId).not.toBe(first.dialogId)
      const start = yield* second.waitFor("StasisStart")
      expect(start.ari.channel.id).toBe(channelId)
      // the old dialog's end did not take the channel away from the new one
      expect((yield* second.request("POST", `/channels/${channelId}/answer`)).status_code).toBe(204)
      sim.hangup(channelId)
      yield* Deferred.await(second.ended)
    }))

  it.scopedLive("§11 the StasisEnd of a second leg does not end the dialog; §12 Dial events reach it", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig()
      const dialogs = yield* startApp(bus, "app")
      const caller = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      yield* dialog.request("POST", `/channels?endpoint=PJSIP/bob&app=app&channelId=leg-2`)
      yield* dialog.waitFor("StasisStart", (e) => e.ari.channel.id === "leg-2")
      expect(dialog.events.some((e) => e.type === "Dial" && e.ari.peer.id === "leg-2")).toBe(true)
      yield* dialog.request("DELETE", "/channels/leg-2")
      yield* dialog.waitFor("StasisEnd", (e) => e.ari.channel.id === "leg-2")
      const answer = yield* dialog.request("POST", `/channels/${caller}/answer`)
      expect(answer.status_code).toBe(204)
      sim.hangup(caller)
      yield* Deferred.await(dialog.ended)
    }))

  it.scopedLive("§13 an originate without an id in the URL does not bind `create`; §14 a query string in url works", () =>
    Effect.gen(function*() {
      const { sim, bus, proxy } = yield* makeRig()
      const dialogs = yield* startApp(bus, "app")
      sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      const created = yield* dialog.request("POST", "/channels/create?endpoint=PJSIP/bob&app=app")
      expect(created.status_code).toBe(200)
      const id = JSON.parse(created.response_body).id
      const mine = proxy.dialogs()[0]!
      expect(mine.state.bound).not.toContain("c:create")
      expect(mine.state.bound).toContain("c:" + id)
      yield* dialog.request("DELETE", `/channels/${id}`)
    }))

  it.scopedLive("§16 dialog ids are RFC 4122 version 4 UUIDs", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig()
      const dialogs = yield* startApp(bus, "app")
      sim.placeCall({ app: "app" })
      sim.placeCall({ app: "app" })
      const a = yield* Queue.take(dialogs)
      const b = yield* Queue.take(dialogs)
      for (const id of [a.dialogId, b.dialogId]) {
        expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      }
      expect(a.dialogId).not.toBe(b.dialogId)
    }))

  it.scopedLive("§12 events that no dialog owns go to unrouted_<app> and a counter, not silently away", () =>
    Effect.gen(function*() {
      const { sim, bus, proxy } = yield* makeRig()
      const unrouted: Array<{ type: string; ari_body: string }> = []
      yield* Effect.orDie(bus.subscribe("unrouted_app", (payload) => Effect.sync(() => unrouted.push(JSON.parse(payload)))))
      const dialogs = yield* startApp(bus, "app")
      const caller = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      yield* dialog.request("POST", "/channels?endpoint=PJSIP/bob&app=app&channelId=leg-2")
      yield* dialog.waitFor("StasisStart", (e) => e.ari.channel.id === "leg-2")
      yield* dialog.request("DELETE", `/channels/${caller}`)
      sim.hangup("leg-2") // the far end hangs up: no command of the dialog is in flight
      yield* Deferred.await(dialog.ended)
      // an ARI-originated channel is destroyed after its StasisEnd: the dialog is over by then
      yield* eventually(() => unrouted.some((e) => e.type === "ChannelDestroyed"))
      expect(JSON.parse(unrouted.find((e) => e.type === "ChannelDestroyed")!.ari_body).channel.id).toBe("leg-2")
      expect(dialog.events.some((e) => e.type === "ChannelDestroyed" && e.ari.channel.id === "leg-2")).toBe(false)
      expect((yield* proxy.stats).router.eventsUnrouted).toBeGreaterThanOrEqual(1)
    }))
})
