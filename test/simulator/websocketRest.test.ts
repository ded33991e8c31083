/**
 * REST over the event websocket (RESTRequest / RESTResponse frames) and application event filters,
 * as Asterisk 23.4.1 was seen doing them (docs/asterisk.md).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { startSimulator } from "../../src/simulator/index.js"
import type { EventClient, Json } from "./helpers.js"
import { ari, connectEvents, keysOf, sleep } from "./helpers.js"

let sim: SimulatorHandle

beforeAll(async () => {
  sim = await startSimulator()
})
afterAll(async () => {
  await sim.close()
})
afterEach(() => {
  sim.setRestMode("normal")
  sim.setWebsocketRestResponsesFirst(false)
  sim.reset()
})

const send = (client: EventClient, frame: Json | string) =>
  client.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame))

const response = (client: EventClient, requestId: string) =>
  client.waitFor((e) => e.type === "RESTResponse" && e.request_id === requestId)

const restRequest = (requestId: string, method: string, uri: string, extra: Json = {}) => ({
  type: "RESTRequest",
  request_id: requestId,
  method,
  uri,
  ...extra
})

describe("REST over the websocket", () => {
  it("answers with the HTTP status and body as a string, the query as name/value pairs, no headers", async () => {
    const client = await connectEvents(sim, "ws-rest")
    const channelId = sim.placeCall({ app: "ws-rest" })
    await client.waitForType("StasisStart")
    send(client, restRequest("p1", "GET", "asterisk/ping", { transaction_id: "t1" }))
    const ping = await response(client, "p1")
    expect(keysOf(client.raw[client.events.indexOf(ping)]!)).toEqual([
      "type",
      "transaction_id",
      "request_id",
      "status_code",
      "reason_phrase",
      "uri",
      "content_type",
      "message_body",
      "application",
      "timestamp",
      "asterisk_id"
    ])
    expect(ping).toMatchObject({ transaction_id: "t1", status_code: 200, reason_phrase: "OK", application: "ws-rest" })
    expect(JSON.parse(ping.message_body as string)).toMatchObject({ ping: "pong" })

    send(client, restRequest("play", "POST", `channels/${channelId}/play`, {
      query_strings: [{ name: "media", value: "sound:beep" }, { name: "playbackId", value: "pb-1" }]
    }))
    const played = await response(client, "play")
    expect(played).toMatchObject({ transaction_id: "", status_code: 201, reason_phrase: "Created" })
    expect(played.uri).toBe(`channels/${channelId}/play`)
    expect(JSON.parse(played.message_body as string)).toMatchObject({ id: "pb-1", media_uri: "sound:beep" })
    expect(Object.keys(played)).not.toContain("headers")

    // a query inside uri works too, and is cut from the answer's uri; a JSON body is a string
    send(client, restRequest("set", "POST", "asterisk/variable?variable=X", {
      content_type: "application/json",
      message_body: JSON.stringify({ value: "42" })
    }))
    expect(await response(client, "set")).toMatchObject({ status_code: 204, uri: "asterisk/variable" })
    expect(Object.keys(await response(client, "set"))).not.toContain("message_body")
    const [recorded] = sim.requests().filter((r) => r.path === "/ari/asterisk/variable")
    expect(recorded).toMatchObject({ method: "POST", transport: "websocket", query: { variable: "X" } })
    send(client, restRequest("get", "GET", "asterisk/variable", { query_strings: [{ name: "variable", value: "X" }] }))
    expect(JSON.parse((await response(client, "get")).message_body as string)).toEqual({ value: "42" })
    await client.close()
  })

  it("refuses malformed requests as Asterisk does", async () => {
    const client = await connectEvents(sim, "ws-rest")
    const cases: ReadonlyArray<readonly [Json | string, number, string, string | undefined]> = [
      [restRequest("a", "GET", "/asterisk/ping"), 405, "Method Not Allowed", "Invalid method"],
      [restRequest("b", "GET", "ari/asterisk/ping"), 404, "Not Found", "Resource not found"],
      [restRequest("c", "PUT", "channels"), 405, "Method Not Allowed", "Invalid method"],
      [restRequest("d", "get", "asterisk/ping"), 400, "Bad request", "Unknown or missing 'method' property."],
      [{ type: "RESTRequest", request_id: "e", method: "GET" }, 400, "Bad request", "Empty or missing 'uri' property."],
      [{ type: "Foo", request_id: "f" }, 400, "Bad request", "Unknown request type."],
      [{ request_id: "g" }, 400, "Bad request", "No 'type' property."],
      [
        restRequest("h", "GET", "asterisk/variable", { query_strings: [{ name: "variable" }] }),
        400,
        "Bad request",
        "Unable to parse 'query_strings' array."
      ],
      [
        restRequest("i", "POST", "asterisk/variable", { message_body: "{}" }),
        400,
        "Bad request",
        "No 'content_type' for 'message_body'."
      ],
      [
        restRequest("j", "POST", "asterisk/variable", { content_type: "text/plain", message_body: "x" }),
        400,
        "Bad request",
        "Unknown content type."
      ],
      [restRequest("k", "GET", "events"), 400, "Bad request", "Can't upgrade to websocket from a websocket"],
      [restRequest("l", "POST", "channels/nope/answer"), 404, "Not Found", "Channel not found"]
    ]
    for (const [frame] of cases) send(client, frame)
    send(client, "not json")
    await client.waitFor((e) => e.type === "RESTResponse" && e.reason_phrase === "Failed to parse request message JSON")
    // answered one at a time, in request order
    const answers = client.events.filter((e) => e.type === "RESTResponse")
    expect(answers.map((a) => a.request_id)).toEqual([..."abcdefghijkl", ""])
    cases.forEach(([, status, reason, message], i) => {
      expect(answers[i]).toMatchObject({ status_code: status, reason_phrase: reason })
      expect(JSON.parse(answers[i]!.message_body as string)).toEqual({ message })
    })
    expect(answers.at(-1)).toMatchObject({ status_code: 400, uri: "" })
    expect(Object.keys(answers.at(-1)!)).not.toContain("message_body")
    await client.close()
  })

  it("sends the response after the events its request caused, or before them when asked", async () => {
    const client = await connectEvents(sim, "ws-rest")
    const first = sim.placeCall({ app: "ws-rest" })
    await client.waitForType("StasisStart")
    send(client, restRequest("hangup-1", "DELETE", `channels/${first}`))
    await client.waitForType("StasisEnd")
    await response(client, "hangup-1")
    const types = () => client.events.map((e) => e.type === "RESTResponse" ? `RESTResponse ${e.request_id}` : e.type)
    expect(types().indexOf("RESTResponse hangup-1")).toBeGreaterThan(types().indexOf("StasisEnd"))

    sim.setWebsocketRestResponsesFirst(true)
    const second = sim.placeCall({ app: "ws-rest" })
    await client.waitFor((e) => e.type === "StasisStart" && (e.channel as Json).id === second)
    send(client, restRequest("hangup-2", "DELETE", `channels/${second}`))
    await client.waitFor((e) => e.type === "StasisEnd" && (e.channel as Json).id === second)
    expect(types().indexOf("RESTResponse hangup-2")).toBeLessThan(types().lastIndexOf("ChannelHangupRequest"))
    await client.close()
  })

  it("leaves requests unanswered in rest mode hang", async () => {
    const client = await connectEvents(sim, "ws-rest")
    sim.setRestMode("hang")
    send(client, restRequest("lost", "GET", "asterisk/ping"))
    await sleep(50)
    expect(client.events.some((e) => e.type === "RESTResponse")).toBe(false)
    expect(sim.requests().filter((r) => r.transport === "websocket")).toHaveLength(1)
    await client.close()
  })
})

describe("application event filters", () => {
  const putFilter = (app: string, body?: string) =>
    ari(sim, "PUT", `/applications/${app}/eventFilter`, {
      ...(body === undefined ? {} : { body, contentType: "application/json" })
    })

  it("sets, keeps and clears the lists as Asterisk does", async () => {
    const client = await connectEvents(sim, "filt")
    const set = await putFilter("filt", JSON.stringify({ allowed: [{ type: "StasisStart" }, { type: "StasisEnd" }] }))
    expect(set.status).toBe(200)
    expect(set.json()).toMatchObject({
      name: "filt",
      events_allowed: [{ type: "StasisStart" }, { type: "StasisEnd" }],
      events_disallowed: []
    })
    // one list alone leaves the other as it was
    const both = await putFilter("filt", JSON.stringify({ disallowed: [{ type: "ChannelDtmfReceived" }] }))
    expect(both.json()).toMatchObject({
      events_allowed: [{ type: "StasisStart" }, { type: "StasisEnd" }],
      events_disallowed: [{ type: "ChannelDtmfReceived" }]
    })
    expect((await putFilter("filt", "{}")).json()).toMatchObject({ events_allowed: [], events_disallowed: [] })
    // a top-level array is both lists
    expect((await putFilter("filt", JSON.stringify([{ type: "Dial" }]))).json()).toMatchObject({
      events_allowed: [{ type: "Dial" }],
      events_disallowed: [{ type: "Dial" }]
    })
    expect((await putFilter("filt")).json()).toMatchObject({ events_allowed: [], events_disallowed: [] })
    const invalid = await putFilter("filt", JSON.stringify({ allowed: "StasisStart" }))
    expect([invalid.status, invalid.json()]).toEqual([400, { message: "Invalid format definition" }])
    const unnamed = await putFilter("filt", JSON.stringify({ allowed: [{ name: "x" }] }))
    expect(unnamed.status).toBe(400)
    expect((await putFilter("nobody")).json()).toEqual({ message: "Application not found" })
    expect((await ari(sim, "POST", "/applications/filt/eventFilter")).status).toBe(405)
    await client.close()
  })

  it("keeps filtered types off the wire, RESTResponse included", async () => {
    const client = await connectEvents(sim, "filt")
    await putFilter("filt", JSON.stringify({ disallowed: [{ type: "ChannelVarset" }, { type: "ChannelDtmfReceived" }] }))
    const channelId = sim.placeCall({ app: "filt" })
    sim.sendDtmf(channelId, "5#")
    sim.hangup(channelId)
    await client.waitForType("StasisEnd")
    expect(client.types()).toEqual(["StasisStart", "ChannelHangupRequest", "StasisEnd"])

    // a request is executed, but its answer is filtered like any event
    await putFilter("filt", JSON.stringify({ allowed: [{ type: "StasisStart" }] }))
    send(client, restRequest("unseen", "POST", "asterisk/variable?variable=Y&value=1"))
    send(client, restRequest("cleared", "PUT", "applications/filt/eventFilter", {
      content_type: "application/json",
      message_body: "{}"
    }))
    // the filter that PUT sets is in force for its own answer
    await response(client, "cleared")
    expect(client.events.some((e) => e.request_id === "unseen")).toBe(false)
    const value = await ari(sim, "GET", "/asterisk/variable?variable=Y")
    expect(value.json()).toEqual({ value: "1" })
    await client.close()
  })

  it("lives with the application: forgotten when its socket goes and nothing holds it", async () => {
    const first = await connectEvents(sim, "filt")
    await putFilter("filt", JSON.stringify({ disallowed: [{ type: "Dial" }] }))
    await first.close()
    await sleep(20)
    const second = await connectEvents(sim, "filt")
    expect((await ari(sim, "GET", "/applications/filt")).json()).toMatchObject({ events_disallowed: [] })
    // held by a channel in its Stasis, the application keeps its filter across a reconnect
    sim.placeCall({ app: "filt" })
    await putFilter("filt", JSON.stringify({ disallowed: [{ type: "Dial" }] }))
    await second.close()
    await sleep(20)
    const third = await connectEvents(sim, "filt")
    expect((await ari(sim, "GET", "/applications/filt")).json()).toMatchObject({
      events_disallowed: [{ type: "Dial" }]
    })
    await third.close()
  })
})
