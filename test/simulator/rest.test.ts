/**
 * REST status codes, reason phrases, bodies and headers, following the "All REST samples" table of
 * ari-behaviour.md in order (later rows depend on earlier ones, as in the capture).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { startSimulator } from "../../src/simulator/index.js"
import type { EventClient, Json } from "./helpers.js"
import { ari, connectEvents, sleep } from "./helpers.js"

let sim: SimulatorHandle
let client: EventClient

beforeAll(async () => {
  // Playbacks last until the table stops them: with the default 20 ms one could finish before the
  // GET that reads it on a busy machine.
  sim = await startSimulator({ timings: { playbackDurationMs: 60_000 } })
  client = await connectEvents(sim, "test-app")
})
afterAll(async () => {
  await client.close()
  await sim.close()
})

/** Polls `condition` (no assumption on how fast the machine is; fails after 10 s). */
const until = async (condition: () => boolean, what: string): Promise<void> => {
  const deadline = Date.now() + 10_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not ${what} within 10 s`)
    await sleep(2)
  }
}

type Expected = Json | Array<unknown> | "empty" | ((body: unknown) => void)

interface Row {
  readonly method: string
  readonly path: string
  readonly status: number
  readonly reason?: string
  readonly body: Expected
  readonly json?: string
  readonly location?: string
  readonly allow?: string
}

const bridge1 = {
  id: "test-bridge-1",
  technology: "simple_bridge",
  bridge_type: "mixing",
  bridge_class: "stasis",
  creator: "Stasis",
  name: "tb1"
}

const rows: ReadonlyArray<Row> = [
  {
    method: "POST",
    path: "/channels?endpoint=PJSIP/sipp&app=test-app&appArgs=a,b&callerId=ARI%20%3C1000%3E&timeout=10" +
      "&channelId=test-chan-1",
    status: 200,
    body: { id: "test-chan-1", state: "Down", caller: { name: "ARI", number: "1000" } }
  },
  { method: "GET", path: "/channels/test-chan-1", status: 200, body: { id: "test-chan-1", state: "Up" } },
  { method: "POST", path: "/channels/test-chan-1/variable?variable=FOO&value=bar", status: 204, body: "empty" },
  { method: "GET", path: "/channels/test-chan-1/variable?variable=FOO", status: 200, body: { value: "bar" } },
  {
    method: "GET",
    path: "/channels/test-chan-1/variable?variable=NOPE_NOT_SET",
    status: 404,
    reason: "Variable Not Found",
    body: { message: "Provided variable was not found" }
  },
  {
    method: "GET",
    path: "/channels/test-chan-1/variable",
    status: 400,
    body: { message: "Variable name is required" }
  },
  { method: "POST", path: "/channels/test-chan-1/dtmf?dtmf=12", status: 204, body: "empty" },
  { method: "POST", path: "/channels/test-chan-1/dtmf", status: 400, body: { message: "DTMF is required" } },
  {
    method: "POST",
    path: "/channels/test-chan-1/play?media=sound:hello-world&playbackId=pb-1",
    status: 201,
    location: "/ari/playbacks/pb-1",
    body: {
      id: "pb-1",
      media_uri: "sound:hello-world",
      target_uri: "channel:test-chan-1",
      language: "en",
      state: "queued"
    }
  },
  {
    method: "GET",
    path: "/playbacks/pb-1",
    status: 200,
    body: {
      id: "pb-1",
      media_uri: "sound:hello-world",
      target_uri: "channel:test-chan-1",
      language: "en",
      state: "playing"
    }
  },
  { method: "DELETE", path: "/playbacks/pb-1", status: 204, body: "empty" },
  {
    method: "POST",
    path: "/channels/test-chan-1/play",
    status: 500,
    body: { message: "Failed to queue media for playback" }
  },
  {
    method: "POST",
    path: "/channels/test-chan-1/play?media=bogus:xyz",
    status: 201,
    body: (body) => {
      expect(body).toMatchObject({ media_uri: "bogus:xyz", state: "queued" })
      expect((body as Json).id).toMatch(/^[0-9a-f-]{36}$/)
    }
  },
  {
    method: "POST",
    path: "/bridges?type=mixing&bridgeId=test-bridge-1&name=tb1",
    status: 200,
    body: { ...bridge1, channels: [], video_mode: "talker" }
  },
  { method: "POST", path: "/bridges/test-bridge-1/addChannel?channel=test-chan-1", status: 204, body: "empty" },
  { method: "GET", path: "/bridges/test-bridge-1", status: 200, body: { ...bridge1, channels: ["test-chan-1"] } },
  { method: "GET", path: "/bridges", status: 200, body: [{ ...bridge1, channels: ["test-chan-1"] }] },
  {
    method: "POST",
    path: "/bridges/test-bridge-1/addChannel?channel=no-such-channel",
    status: 400,
    body: { message: "Channel not found" }
  },
  {
    method: "POST",
    path: "/bridges/no-such-bridge/addChannel?channel=test-chan-1",
    status: 404,
    reason: "Not found",
    body: { message: "Bridge not found" }
  },
  {
    method: "POST",
    path: "/bridges/test-bridge-1/addChannel",
    status: 400,
    body: { message: "Missing parameter channel" }
  },
  { method: "POST", path: "/bridges/test-bridge-1/removeChannel?channel=test-chan-1", status: 204, body: "empty" },
  { method: "DELETE", path: "/bridges/test-bridge-1", status: 204, body: "empty" },
  {
    method: "DELETE",
    path: "/bridges/test-bridge-1",
    status: 404,
    reason: "Not found",
    body: { message: "Bridge not found" }
  },
  { method: "POST", path: "/channels/test-chan-1/hold", status: 204, body: "empty" },
  { method: "DELETE", path: "/channels/test-chan-1/hold", status: 204, body: "empty" },
  { method: "POST", path: "/channels/test-chan-1/moh", status: 204, body: "empty" },
  { method: "DELETE", path: "/channels/test-chan-1/moh", status: 204, body: "empty" },
  { method: "POST", path: "/channels/test-chan-1/ring", status: 204, body: "empty" },
  { method: "DELETE", path: "/channels/test-chan-1/ring", status: 204, body: "empty" },
  {
    method: "DELETE",
    path: "/channels/test-chan-1?reason=bogus",
    status: 400,
    reason: "Invalid Reason",
    body: { message: "Invalid reason for hangup reason provided" }
  },
  { method: "DELETE", path: "/channels/test-chan-1?reason=normal", status: 204, body: "empty" },
  { method: "DELETE", path: "/channels/test-chan-1", status: 404, body: { message: "Channel not found" } },
  { method: "GET", path: "/channels/no-such-channel", status: 404, body: { message: "Channel not found" } },
  { method: "POST", path: "/channels/no-such-channel/answer", status: 404, body: { message: "Channel not found" } },
  { method: "POST", path: "/channels", status: 400, body: { message: "Endpoint must be specified" } },
  { method: "POST", path: "/channels?app=test-app", status: 400, body: { message: "Endpoint must be specified" } },
  {
    method: "POST",
    path: "/channels?endpoint=PJSIP/no-such-endpoint&app=test-app",
    status: 500,
    body: { error: "Allocation failed" }
  },
  {
    method: "POST",
    path: "/channels?endpoint=Bogus/foo&app=test-app",
    status: 500,
    body: { error: "Allocation failed" }
  },
  {
    method: "POST",
    path: "/channels?endpoint=PJSIP/sipp",
    status: 400,
    body: { message: "Application or extension must be specified" }
  },
  {
    method: "POST",
    path: "/channels?endpoint=PJSIP/sipp&app=test-app&timeout=notanumber",
    status: 200,
    body: { state: "Down", dialplan: { app_name: "AppDial2", app_data: "(Outgoing Line)" } }
  },
  {
    method: "POST",
    path: "/channels/create?endpoint=PJSIP/sipp",
    status: 200,
    body: { state: "Down", dialplan: { context: "from-sipp", exten: "s", priority: 1, app_name: "", app_data: "" } }
  },
  { method: "GET", path: "/no/such/resource", status: 404, body: { message: "Resource not found" } },
  { method: "PUT", path: "/channels", status: 405, allow: "OPTIONS,GET,POST", body: { message: "Invalid method" } },
  { method: "PATCH", path: "/asterisk/info", status: 405, allow: "OPTIONS,GET", body: { message: "Invalid method" } },
  {
    method: "GET",
    path: "/asterisk/info",
    status: 200,
    body: {
      build: {
        os: "Linux",
        kernel: "6.18.44-fc-v595",
        machine: "x86_64",
        options: "OPTIONAL_API",
        date: "2026-11-30 10:21:52 UTC",
        user: "root"
      },
      system: { version: "23.4.1", entity_id: "02:fc:00:00:00:01" }
    }
  },
  {
    method: "GET",
    path: "/asterisk/ping",
    status: 200,
    body: (body) => {
      expect(Object.keys(body as Json)).toEqual(["ping", "timestamp", "asterisk_id"])
      expect(body).toMatchObject({ ping: "pong", asterisk_id: "02:fc:00:00:00:01" })
    }
  },
  { method: "GET", path: "/asterisk/variable?variable=ASTERISK_VERSION_NUM", status: 200, body: { value: "" } },
  {
    method: "GET",
    path: "/asterisk/modules/res_ari.so",
    status: 200,
    body: {
      name: "res_ari.so",
      description: "Asterisk RESTful Interface",
      use_count: 12,
      status: "Running",
      support_level: "core"
    }
  },
  {
    method: "GET",
    path: "/asterisk/modules/no_such_module.so",
    status: 404,
    body: { message: "Module could not be found in running modules" }
  },
  {
    method: "GET",
    path: "/applications/test-app",
    status: 200,
    body: (body) => {
      expect(Object.keys(body as Json)).toEqual([
        "name",
        "channel_ids",
        "bridge_ids",
        "endpoint_ids",
        "device_names",
        "events_allowed",
        "events_disallowed"
      ])
      // the timeout=notanumber originate; the channel created without app is not subscribed
      expect((body as Json).channel_ids).toHaveLength(1)
    }
  },
  { method: "GET", path: "/applications/no-such-app", status: 404, body: { message: "Application not found" } },
  {
    method: "POST",
    path: "/applications/test-app/subscription?eventSource=channel:no-such-channel",
    status: 422,
    body: { message: "Event source does not exist" }
  },
  {
    method: "POST",
    path: "/applications/test-app/subscription",
    status: 400,
    body: { message: "Missing parameter eventSource" }
  },
  {
    method: "POST",
    path: "/applications/test-app/subscription?eventSource=endpoint:PJSIP/sipp",
    status: 200,
    body: { name: "test-app", endpoint_ids: ["PJSIP/sipp"] }
  },
  {
    method: "DELETE",
    path: "/applications/test-app/subscription?eventSource=endpoint:PJSIP/sipp",
    status: 200,
    body: { name: "test-app", endpoint_ids: [] }
  },
  {
    method: "GET",
    path: "/endpoints/PJSIP/sipp",
    status: 200,
    body: (body) => {
      expect(Object.keys(body as Json)).toEqual(["technology", "resource", "state", "channel_ids"])
      expect(body).toMatchObject({ technology: "PJSIP", resource: "sipp", state: "online" })
    }
  },
  { method: "GET", path: "/endpoints/PJSIP/nope", status: 404, body: { message: "Endpoint not found" } },
  {
    method: "GET",
    path: "/sounds/hello-world",
    status: 200,
    body: {
      id: "hello-world",
      formats: [
        { language: "en_US_f_Allison", format: "gsm" },
        { language: "en_US_f_Allison", format: "slin" },
        { language: "en_US", format: "gsm" },
        { language: "en_US", format: "slin" },
        { language: "en", format: "gsm" },
        { language: "en", format: "slin" }
      ]
    }
  },
  { method: "GET", path: "/sounds/no-such-sound", status: 404, body: { message: "Sound not found" } },
  { method: "GET", path: "/deviceStates", status: 200, body: [] },
  { method: "PUT", path: "/deviceStates/Stasis:test?deviceState=BUSY", status: 204, body: "empty" },
  {
    method: "PUT",
    path: "/deviceStates/Stasis:test?deviceState=WHATEVER",
    status: 500,
    body: { message: "Unknown device" }
  },
  { method: "GET", path: "/deviceStates/Stasis:test", status: 200, body: { name: "Stasis:test", state: "BUSY" } },
  { method: "DELETE", path: "/deviceStates/Stasis:test", status: 204, body: "empty" },
  { method: "GET", path: "/recordings/stored", status: 200, body: [] },
  { method: "GET", path: "/recordings/stored/nope", status: 404, body: { message: "Recording not found" } },
  {
    method: "POST",
    path: "/channels?endpoint=PJSIP/sipp&app=test-app",
    status: 400,
    json: "{\"variables\": {\"X\": 1",
    body: { message: "Error parsing request body" }
  },
  {
    method: "POST",
    path: "/channels?endpoint=PJSIP/sipp&app=test-app&channelId=test-chan-2",
    status: 200,
    json: "{\"variables\": {\"CALLERID(name)\": \"Json Body\", \"MYVAR\": \"v1\"}}",
    body: { id: "test-chan-2", caller: { name: "Json Body", number: "" } }
  },
  { method: "GET", path: "/channels/test-chan-2/variable?variable=MYVAR", status: 200, body: { value: "v1" } },
  {
    method: "POST",
    path: "/channels?endpoint=PJSIP/sipp&app=test-app&channelId=test-chan-2",
    status: 409,
    body: { message: "Channel with given unique ID already exists" }
  },
  { method: "DELETE", path: "/channels/test-chan-2", status: 204, body: "empty" },
  {
    method: "POST",
    path: "/channels?endpoint=PJSIP/sipp&extension=wait&context=hold-test&priority=1&channelId=dp-chan-1",
    status: 200,
    body: { id: "dp-chan-1", dialplan: { app_name: "AppDial2" } }
  },
  {
    method: "GET",
    path: "/channels/dp-chan-1",
    status: 200,
    body: {
      state: "Up",
      dialplan: { context: "hold-test", exten: "wait", priority: 2, app_name: "Wait", app_data: "30" }
    }
  },
  {
    method: "POST",
    path: "/channels/dp-chan-1/answer",
    status: 409,
    body: { message: "Channel not in Stasis application" }
  },
  {
    method: "POST",
    path: "/channels/dp-chan-1/play?media=sound:hello-world",
    status: 409,
    body: { message: "Channel not in Stasis application" }
  },
  {
    method: "POST",
    path: "/bridges?type=mixing&bridgeId=tb2",
    status: 200,
    body: { id: "tb2", name: "", channels: [] }
  },
  {
    method: "POST",
    path: "/bridges/tb2/addChannel?channel=dp-chan-1",
    status: 422,
    body: { message: "Channel not in Stasis application" }
  },
  { method: "DELETE", path: "/bridges/tb2", status: 204, body: "empty" },
  { method: "DELETE", path: "/channels/dp-chan-1", status: 204, body: "empty" }
]

describe("REST samples table", () => {
  it("answers every row like Asterisk 23.4.1", async () => {
    for (const row of rows) {
      const response = await ari(sim, row.method, row.path, {
        ...(row.json !== undefined ? { body: row.json, contentType: "application/json" } : {})
      })
      const where = `${row.method} ${row.path}`
      expect(response.status, where).toBe(row.status)
      if (row.reason !== undefined) expect(response.statusText, where).toBe(row.reason)
      if (row.location !== undefined) expect(response.header("Location"), where).toBe(row.location)
      if (row.allow !== undefined) expect(response.header("Allow"), where).toBe(row.allow)
      if (row.body === "empty") {
        expect(response.text, where).toBe("")
        expect(response.header("Content-Length"), where).toBe("0")
        expect(response.header("Content-type"), where).toBeUndefined()
      } else if (typeof row.body === "function") {
        row.body(response.json())
      } else if (Array.isArray(row.body)) {
        expect(response.json(), where).toMatchObject(row.body)
      } else {
        expect(response.json(), where).toMatchObject(row.body)
      }
      // originated channels are answered, and playbacks start, a moment later: the next rows expect that
      if (row.method === "POST" && row.path.startsWith("/channels?") && row.status === 200) {
        const id = (response.json() as Json).id
        await until(() => sim.channels().some((c) => c.id === id && c.state === "Up"), `${id} answered`)
      }
      if (row.method === "POST" && row.path.includes("/play?") && row.status === 201) {
        const id = (response.json() as Json).id
        await until(() => sim.playbacks().some((p) => p.id === id && p.state !== "queued"), `${id} started`)
      }
    }
  })

  it("uses Asterisk's headers: Server, Cache-Control, Content-type with a lower-case t", async () => {
    const response = await ari(sim, "GET", "/channels/no-such-channel")
    const names = response.rawHeaders.map(([name]) => name)
    expect(names.slice(0, 5)).toEqual(["Server", "Date", "Cache-Control", "Content-type", "Content-Length"])
    expect(response.header("Server")).toBe("Asterisk/23.4.1")
    expect(response.header("Cache-Control")).toBe("no-cache, no-store")
    expect(response.header("Content-type")).toBe("application/json")
    expect(response.text).toBe("{\"message\":\"Channel not found\"}")
  })

  it("accepts api_key and Basic credentials and refuses others with 401", async () => {
    expect((await ari(sim, "GET", "/asterisk/info", { auth: "query" })).status).toBe(200)
    expect((await ari(sim, "GET", "/asterisk/info", { auth: "basic" })).status).toBe(200)
    for (const auth of ["none", "bad"] as const) {
      const response = await ari(sim, "GET", "/asterisk/info", { auth })
      expect(response.status).toBe(401)
      expect(response.header("WWW-Authenticate")).toBe("Basic realm=\"Asterisk REST Interface\"")
      expect(response.json()).toEqual({ message: "Authentication required" })
    }
  })

  it("merges JSON body fields with query parameters", async () => {
    const response = await ari(sim, "POST", "/channels", {
      contentType: "application/json",
      body: JSON.stringify({ endpoint: "PJSIP/alice", app: "test-app", channelId: "json-chan" })
    })
    expect(response.status).toBe(200)
    expect((response.json() as Json).id).toBe("json-chan")
    await client.waitFor((e) => e.type === "StasisStart" && (e.channel as Json).id === "json-chan")
    expect((await ari(sim, "DELETE", "/channels/json-chan")).status).toBe(204)
  })

  it("refuses media operations on a channel that is not answered yet (412)", async () => {
    sim.setAutoAnswer(false)
    try {
      await ari(sim, "POST", "/channels?endpoint=PJSIP/bob&app=test-app&channelId=not-yet")
      await client.waitFor((e) => e.type === "Dial" && e.dialstatus === "RINGING" && (e.peer as Json).id === "not-yet")
      sim.answer("not-yet")
      await client.waitFor((e) => e.type === "StasisStart" && (e.channel as Json).id === "not-yet")
      await ari(sim, "POST", "/channels/create?endpoint=PJSIP/bob&app=test-app&channelId=created-1")
      await client.waitFor((e) => e.type === "StasisStart" && (e.channel as Json).id === "created-1")
      const play = await ari(sim, "POST", "/channels/created-1/play?media=sound:beep")
      expect(play.status).toBe(412)
      expect(play.json()).toEqual({ message: "Channel in invalid state" })
    } finally {
      sim.setAutoAnswer(true)
    }
  })

  it("dials a created channel with a caller: Dial events carry the caller snapshot", async () => {
    await ari(sim, "POST", "/channels?endpoint=PJSIP/alice&app=test-app&channelId=dial-caller")
    await client.waitFor((e) => e.type === "StasisStart" && (e.channel as Json).id === "dial-caller")
    await ari(sim, "POST", "/channels/create?endpoint=PJSIP/bob&app=test-app&channelId=dial-callee")
    await client.waitFor((e) => e.type === "StasisStart" && (e.channel as Json).id === "dial-callee")
    expect((await ari(sim, "POST", "/channels/dial-callee/dial?caller=dial-caller&timeout=10")).status).toBe(204)
    const answer = await client.waitFor((e) => e.type === "Dial" && e.dialstatus === "ANSWER" &&
      (e.peer as Json).id === "dial-callee")
    expect(Object.keys(answer)).toEqual([
      "type",
      "timestamp",
      "dialstatus",
      "forward",
      "dialstring",
      "caller",
      "peer",
      "asterisk_id",
      "application"
    ])
    expect((answer.caller as Json).id).toBe("dial-caller")
    expect((await ari(sim, "POST", "/channels/dial-callee/dial")).status).toBe(409)
  })
})
