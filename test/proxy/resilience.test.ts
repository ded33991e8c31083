/**
 * ARI going away (websocket or REST) never stops the proxy, loses nothing it accepted, and every
 * command still gets an answer.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Queue } from "effect"
import { startApp } from "../support/apps.js"
import { eventually, makeRig } from "../support/harness.js"

describe("ARI outages", () => {
  it.scopedLive("the websocket dropped and restored mid-call: live dialogs continue, vanished ones end", () =>
    Effect.gen(function*() {
      const { sim, bus, proxy } = yield* makeRig()
      const dialogs = yield* startApp(bus, "app")
      const staying = sim.placeCall({ app: "app" })
      const leaving = sim.placeCall({ app: "app" })
      const a = yield* Queue.take(dialogs)
      const b = yield* Queue.take(dialogs)
      const [stay, leave] = a.events[0]!.ari.channel.id === staying ? [a, b] : [b, a]
      yield* stay.waitFor("StasisStart")
      yield* leave.waitFor("StasisStart")

      sim.setWebsocketMode("refuse")
      expect(sim.dropWebsockets()).toBe(1)
      yield* eventually(() => sim.connectedApps().length === 0)
      sim.hangup(leaving) // its StasisEnd is lost with the socket
      sim.setWebsocketMode("accept")
      yield* eventually(() => sim.connectedApps().includes("app"))

      const ended = yield* Deferred.await(leave.ended)
      expect(ended.ari.reason).toBe("channels_vanished")
      sim.sendDtmf(staying, "7", 5)
      const dtmf = yield* stay.waitFor("ChannelDtmfReceived")
      expect(dtmf.ari.digit).toBe("7")
      expect((yield* stay.request("POST", `/channels/${staying}/answer`)).status_code).toBe(204)
      expect((yield* proxy.stats).ariReconnects).toBe(1)
      expect(yield* proxy.ready).toBe(true)
    }))

  it.scopedLive("a channel that left Stasis while the websocket was down ends its dialog at reconnect", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig()
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      yield* dialog.waitFor("StasisStart")

      sim.setWebsocketMode("refuse")
      sim.dropWebsockets()
      yield* eventually(() => sim.connectedApps().length === 0)
      // someone sends the channel back to the dialplan meanwhile: its StasisEnd is lost
      const continued = yield* Effect.promise(() =>
        fetch(`${sim.url}/channels/${channelId}/continue?context=hold-test&extension=wait&priority=1`, {
          method: "POST",
          headers: { authorization: "Basic " + Buffer.from("asterisk:asterisk").toString("base64") }
        })
      )
      expect(continued.status).toBe(204)
      expect(sim.channels().some((c) => c.id === channelId)).toBe(true) // alive, in the dialplan
      sim.setWebsocketMode("accept")

      const ended = yield* Deferred.await(dialog.ended)
      expect(ended.ari.reason).toBe("channels_vanished")
    }))

  it.scopedLive("ARI REST stops answering mid-command: 504 within the deadline; refused: 502; back: normal", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig({ config: { commandTimeoutMs: 300 } })
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)

      sim.setRestMode("hang")
      const started = Date.now()
      const hung = yield* dialog.request("POST", `/channels/${channelId}/answer`)
      expect(hung.status_code).toBe(504)
      expect(Date.now() - started).toBeLessThan(2_000)
      expect(JSON.parse(hung.response_body)).toMatchObject({ status: 504, source: "ari-proxy" })

      sim.setRestMode("refuse")
      const refused = yield* dialog.request("POST", `/channels/${channelId}/answer`)
      expect([502, 503]).toContain(refused.status_code)
      expect(JSON.parse(refused.response_body).source).toBe("ari-proxy")

      sim.setRestMode("normal")
      const answered = yield* dialog.request("POST", `/channels/${channelId}/answer`)
      expect(answered.status_code).toBe(204)
      // the events kept flowing the whole time
      sim.sendDtmf(channelId, "5", 5)
      yield* dialog.waitFor("ChannelDtmfReceived")
    }))

  it.scopedLive("a refused url is answered 400 and never sent to ARI", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig()
      const dialogs = yield* startApp(bus, "app")
      sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      sim.clearRequests()
      for (const url of ["http://evil.example/ari/channels", "/channels/../../etc", "/channels/x\r\nHost: evil"]) {
        const response = yield* dialog.request("GET", url)
        expect(response.status_code).toBe(400)
      }
      expect(sim.requests()).toHaveLength(0)
    }))

  it.scopedLive("the proxy starts while ARI is down and connects when it comes up", () =>
    Effect.gen(function*() {
      const { sim, proxy } = yield* makeRig()
      sim.setWebsocketMode("refuse")
      sim.dropWebsockets()
      yield* eventually(() => sim.connectedApps().length === 0)
      yield* Effect.sleep(100)
      expect(yield* proxy.ready).toBe(false)
      sim.setWebsocketMode("accept")
      yield* eventually(() => sim.connectedApps().includes("app"))
      yield* Effect.sleep(20)
      expect(yield* proxy.ready).toBe(true)
    }))
})
