/**
 * ARI going away (websocket or REST) never stops the proxy, loses nothing it accepted, and every
 * command still gets an answer.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Queue, Scope, TestClock, TestServices } from "effect"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { startApp } from "../support/apps.js"
import { eventually, makeRig, startProxy, startSim, waitUntilReady } from "../support/harness.js"

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
      const hung = yield* dialog.request("POST", `/channels/${channelId}/answer`)
      expect(hung.status_code).toBe(504)
      // the configured deadline (test/ari/rest.test.ts checks that it is kept, neither early nor late)
      expect(JSON.parse(hung.response_body))
        .toMatchObject({ status: 504, source: "ari-proxy", message: "ARI did not answer within 300 ms" })

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
      yield* waitUntilReady(proxy)
      expect(sim.connectedApps()).toContain("app")
    }))
})

describe("shutdown", () => {
  // On TestClock: the drain's deadline and the REST client's close are Effect timeouts; the stuck
  // command's own deadline (60 s, undici's) is real time, which the test never waits for.
  it.scoped("dialogs busy at shutdown_timeout_ms do not hold the proxy up (nor a request ARI never answers)", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const bus = yield* makeMemoryBus
      const proxyScope = yield* Scope.make()
      yield* startProxy(sim, bus, { shutdownTimeoutMs: 300, commandTimeoutMs: 60_000 }).pipe(Scope.extend(proxyScope))
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      sim.setRestMode("hang")
      yield* Effect.fork(dialog.request("POST", `/channels/${channelId}/answer`))
      yield* eventually(() => sim.requests().some((request) => request.path.endsWith("/answer")))

      const stopping = yield* Effect.fork(Scope.close(proxyScope, Exit.void))
      yield* TestClock.adjust(299)
      expect(Option.isNone(yield* Fiber.poll(stopping)), "stopped before the drain's deadline").toBe(true)
      // Then time passes (the drain's deadline, the REST client's 1 s to close) while the sockets
      // close for real, until the proxy has stopped: long before the command's own 60 s.
      const deadline = Date.now() + 20_000
      for (let advanced = 299; Option.isNone(yield* Fiber.poll(stopping)) && Date.now() < deadline;) {
        if (advanced < 5_000) {
          yield* TestClock.adjust(100)
          advanced += 100
        }
        yield* TestServices.provideLive(Effect.sleep(10))
      }
      expect(Option.isSome(yield* Fiber.poll(stopping)), "the proxy did not stop").toBe(true)
    }))
})
