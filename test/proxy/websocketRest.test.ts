/**
 * Commands over the event websocket (`ari_rest_transport: websocket`) end to end: the HTTP path's
 * guarantees (deadline, refusals never sent, ARI unreachable), and no reliance on the order of an
 * answer against the events its request caused.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Queue, Schedule } from "effect"
import { restRequestFrame } from "../../src/ari/websocketRest.js"
import { startApp } from "../support/apps.js"
import { eventually, makeRig } from "../support/harness.js"

const websocket = { ariRestTransport: "websocket" } as const

const everyFewMs = Schedule.spaced("5 millis")

const authorization = "Basic " + Buffer.from("asterisk:asterisk").toString("base64")

/** Sets an application's event filter at the simulator directly, as another ARI user could. */
const putFilter = (url: string, app: string, body: object) =>
  Effect.promise(() =>
    fetch(`${url}/applications/${app}/eventFilter`, {
      method: "PUT",
      headers: { authorization, "content-type": "application/json" },
      body: JSON.stringify(body)
    })
  )

describe("REST over the event websocket", () => {
  it("writes the request as Asterisk reads it: uri relative to /ari/, query as pairs, body as a string", () => {
    const frame = JSON.parse(restRequestFrame("r7", {
      method: "POST",
      pathAndQuery: "/channels/1.2/play?media=sound%3Ahello&media=sound:beep&lang=en%20US",
      body: "{\"variables\":{\"a\":\"b\"}}"
    }))
    expect(frame).toEqual({
      type: "RESTRequest",
      request_id: "r7",
      method: "POST",
      uri: "channels/1.2/play",
      query_strings: [
        { name: "media", value: "sound:hello" },
        { name: "media", value: "sound:beep" },
        { name: "lang", value: "en US" }
      ],
      content_type: "application/json",
      message_body: "{\"variables\":{\"a\":\"b\"}}"
    })
    expect(JSON.parse(restRequestFrame("r8", { method: "DELETE", pathAndQuery: "/bridges/b1", body: undefined })))
      .toEqual({ type: "RESTRequest", request_id: "r8", method: "DELETE", uri: "bridges/b1" })
  })

  it.scopedLive("learns which Asterisk it is from GET /asterisk/info sent on the socket, for presence", () =>
    Effect.gen(function*() {
      const { sim, proxy } = yield* makeRig({ config: websocket, sim: { asteriskId: "02:fc:00:00:00:07" } })
      const presence = proxy.presence!
      yield* eventually(() => Effect.runSync(presence).asterisk !== null)
      expect(Effect.runSync(presence).asterisk).toEqual({ version: "23.4.1", entity_id: "02:fc:00:00:00:07" })
      const asked = sim.requests().filter((request) => request.path === "/ari/asterisk/info")
      expect(asked.map((request) => request.transport)).toEqual(["websocket"])
    }))

  it.scopedLive("a lost RESTResponse is a 504 within command_timeout_ms; the dialog goes on", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig({ config: { ...websocket, commandTimeoutMs: 300 } })
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      yield* dialog.waitFor("StasisStart")
      // Asterisk runs the request but its filter drops the answer (ari-modes §5.3)
      yield* putFilter(sim.url, "app", { disallowed: [{ type: "RESTResponse" }] })
      // Not before the deadline. The proxy starts it with the request, after this reading of the
      // same monotonic clock, and answers 504 only once that clock has passed it: no window that
      // depends on the machine's load (a timer of the test's own can fire after the answer's).
      const sent = performance.now()
      const lost = yield* dialog.request("POST", `/channels/${channelId}/variable?variable=LOST&value=1`)
      const waited = performance.now() - sent
      expect(lost.status_code).toBe(504)
      expect(JSON.parse(lost.response_body))
        .toMatchObject({ status: 504, source: "ari-proxy", message: "ARI did not answer within 300 ms" })
      expect(waited, "answered before the deadline").toBeGreaterThanOrEqual(300)
      expect(sim.requests().some((r) => r.transport === "websocket" && r.query.variable === "LOST")).toBe(true)

      yield* putFilter(sim.url, "app", {})
      const after = yield* dialog.request("GET", `/channels/${channelId}/variable?variable=LOST`)
      expect(after.status_code).toBe(200)
      expect(JSON.parse(after.response_body)).toEqual({ value: "1" })
    }))

  it.scopedLive("a command the proxy refuses is answered 400 and never sent", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig({ config: websocket })
      const dialogs = yield* startApp(bus, "app")
      sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      sim.clearRequests()
      for (const url of ["/channels/%2e%2e/asterisk/info", "http://evil.example/ari/channels", "//evil/x", "/a b"]) {
        const refused = yield* dialog.request("GET", url)
        expect(refused.status_code).toBe(400)
        expect(JSON.parse(refused.response_body)).toMatchObject({ source: "ari-proxy" })
      }
      expect((yield* dialog.request("TRACE", "/channels")).status_code).toBe(400)
      expect(sim.requests()).toEqual([])
    }))

  it.scopedLive("while the websocket is down commands are answered 503; after the reconnect they run again", () =>
    Effect.gen(function*() {
      const { sim, bus, proxy } = yield* makeRig({ config: websocket })
      const dialogs = yield* startApp(bus, "app")
      const staying = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      yield* dialog.waitFor("StasisStart")

      sim.setWebsocketMode("refuse")
      sim.dropWebsockets()
      yield* eventually(() => sim.connectedApps().length === 0)
      yield* Effect.repeat(proxy.ariState, { until: (state) => state._tag !== "Connected", schedule: everyFewMs })
      const down = yield* dialog.request("GET", `/channels/${staying}`)
      expect(down.status_code).toBe(503)
      expect(JSON.parse(down.response_body).message).toContain("websocket is not connected")

      sim.setWebsocketMode("accept")
      yield* eventually(() => sim.connectedApps().includes("app"))
      yield* Effect.repeat(proxy.ariState, { until: (state) => state._tag === "Connected", schedule: everyFewMs })
      // the reconcile after the reconnect asked ARI over the websocket too, and kept the dialog
      yield* eventually(() => sim.requests().some((r) => r.transport === "websocket" && r.path === "/ari/channels"))
      const back = yield* dialog.request("POST", `/channels/${staying}/answer`)
      expect(back.status_code).toBe(204)
      expect(proxy.dialogs()).toHaveLength(1)
    }))

  it.scopedLive("a command in flight when the websocket drops is answered 502 at once", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig({ config: { ...websocket, commandTimeoutMs: 5_000 } })
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      yield* dialog.waitFor("StasisStart")
      sim.setRestMode("hang")
      const inFlight = yield* Effect.fork(dialog.request("GET", `/channels/${channelId}`))
      yield* eventually(() => sim.requests().some((r) => r.transport === "websocket"))
      sim.dropWebsockets()
      const lost = yield* inFlight.await.pipe(Effect.flatten)
      expect(lost.status_code).toBe(502) // at the drop: the 5 s deadline would have answered 504
    }))

  it.scopedLive("answers that come before the events they caused change nothing", () =>
    Effect.gen(function*() {
      const { sim, bus, proxy } = yield* makeRig({ config: websocket })
      sim.setWebsocketRestResponsesFirst(true)
      const dialogs = yield* startApp(bus, "app")
      const caller = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      expect((yield* dialog.request("POST", `/channels/${caller}/answer`)).status_code).toBe(204)
      // the second leg is bound from its id in the request, the playback from the answer
      const originated = yield* dialog.request("POST", "/channels", { endpoint: "PJSIP/bob", app: "app" })
      expect(originated.status_code).toBe(200)
      const legId = JSON.parse(originated.response_body).id
      yield* dialog.waitFor("StasisStart", (e) => e.ari.channel.id === legId)
      const played = yield* dialog.request("POST", `/channels/${caller}/play?media=sound:beep`)
      const playbackId = JSON.parse(played.response_body).id
      yield* dialog.waitFor("PlaybackFinished", (e) => e.ari.playback.id === playbackId)
      expect((yield* dialog.request("DELETE", `/channels/${legId}`)).status_code).toBe(204)
      expect((yield* dialog.request("DELETE", `/channels/${caller}`)).status_code).toBe(204)
      const ended = yield* Deferred.await(dialog.ended)
      expect(ended.ari.reason).toBe("channels_left")
      expect((yield* proxy.stats).router.dialogsStarted).toBe(1)
      expect((yield* proxy.stats).router.eventsUnrouted).toBe(0)
    }))
})
