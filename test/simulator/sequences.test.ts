/**
 * Event sequences of ari-behaviour.md samples A–E, checked type by type and key by key.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { startSimulator } from "../../src/simulator/index.js"
import type { EventClient, Json } from "./helpers.js"
import { ari, connectEvents, keysOf, sleep } from "./helpers.js"

const timestampPattern = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$/
const channelKeys = [
  "id",
  "name",
  "state",
  "protocol_id",
  "caller",
  "connected",
  "accountcode",
  "dialplan",
  "creationtime",
  "language"
]

let sim: SimulatorHandle

beforeAll(async () => {
  sim = await startSimulator()
})
afterAll(async () => {
  await sim.close()
})
beforeEach(() => {
  sim.reset()
})

const withClient = async (
  app: string,
  options: { readonly subscribeAll?: boolean },
  body: (client: EventClient) => Promise<void>
) => {
  const client = await connectEvents(sim, app, options)
  try {
    await body(client)
  } finally {
    await client.close()
  }
}

describe("sample A: inbound call, answer, DTMF, ARI DELETE", () => {
  it("gives exactly sample A's events in order, with Asterisk key order", () =>
    withClient("test-app", {}, async (client) => {
      const id = sim.placeCall({ app: "test-app", exten: "100" })
      expect(id).toMatch(/^\d{10}\.\d+$/)
      const answer = await ari(sim, "POST", `/channels/${id}/answer`)
      expect(answer.status).toBe(204)
      sim.sendDtmf(id, "5#")
      const hangup = await ari(sim, "DELETE", `/channels/${id}`)
      expect(hangup.status).toBe(204)
      await client.waitForType("StasisEnd")
      await sleep(20)
      expect(client.types()).toEqual([
        "StasisStart",
        "ChannelStateChange",
        "ChannelDtmfReceived",
        "ChannelDtmfReceived",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelHangupRequest",
        "StasisEnd"
      ])
      const [start, state, dtmf] = client.events as [Json, Json, Json]
      expect(keysOf(client.raw[0] ?? ""))
        .toEqual(["type", "timestamp", "args", "channel", "asterisk_id", "application"])
      expect(start.args).toEqual([])
      expect(start.asterisk_id).toBe("02:fc:00:00:00:01")
      expect(start.application).toBe("test-app")
      expect(start.timestamp).toMatch(timestampPattern)
      const channel = start.channel as Json
      expect(Object.keys(channel)).toEqual(channelKeys)
      expect(channel.state).toBe("Ring")
      expect(channel.name).toMatch(/^PJSIP\/sipp-[0-9a-f]{8}$/)
      expect(channel.protocol_id).not.toBe("")
      expect(channel.caller).toEqual({ name: "sipp", number: "sipp" })
      expect(channel.dialplan).toEqual({
        context: "from-sipp",
        exten: "100",
        priority: 2,
        app_name: "Stasis",
        app_data: "test-app"
      })
      expect((state.channel as Json).state).toBe("Up")
      expect(keysOf(client.raw[2] ?? "")).toEqual([
        "type",
        "timestamp",
        "digit",
        "duration_ms",
        "channel",
        "asterisk_id",
        "application"
      ])
      expect(dtmf.digit).toBe("5")
      expect(client.events[3]?.digit).toBe("#")
      const variables = client.events.slice(4, 9).map((e) => e.variable)
      expect(variables)
        .toEqual(["RTPAUDIOQOS", "RTPAUDIOQOSJITTER", "RTPAUDIOQOSLOSS", "RTPAUDIOQOSRTT", "RTPAUDIOQOSMES"])
      expect(keysOf(client.raw[4] ?? "")).toEqual([
        "variable",
        "value",
        "type",
        "timestamp",
        "channel",
        "asterisk_id",
        "application"
      ])
      expect(client.events[6]?.value).toBe(
        "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;  stdevrxlost=000.000000;" +
          "  mintxlost=000.000000;  maxtxlost=000.000000;  avgtxlost=000.000000;  stdevtxlost=000.000000;"
      )
      expect(keysOf(client.raw[9] ?? "")).toEqual([
        "cause",
        "soft",
        "type",
        "timestamp",
        "channel",
        "asterisk_id",
        "application"
      ])
      expect(client.events[9]).toMatchObject({ cause: 32, soft: true })
      // compact JSON, as Asterisk sends with pretty = no
      expect(client.raw[0]).not.toMatch(/\n|": /)
    }))
})

describe("sample B: remote hangup", () => {
  it("has no cause/soft on ChannelHangupRequest and no ChannelDestroyed", () =>
    withClient("test-app", {}, async (client) => {
      const id = sim.placeCall({ app: "test-app", exten: "300" })
      await ari(sim, "POST", `/channels/${id}/answer`)
      sim.hangup(id)
      await client.waitForType("StasisEnd")
      await sleep(20)
      const request = client.events.find((e) => e.type === "ChannelHangupRequest")
      expect(request).toBeDefined()
      expect(Object.keys(request ?? {})).toEqual(["type", "timestamp", "channel", "asterisk_id", "application"])
      expect(client.types().slice(-7)).toEqual([
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelHangupRequest",
        "StasisEnd"
      ])
      expect(client.types()).not.toContain("ChannelDestroyed")
      expect(sim.channels().find((c) => c.id === id)).toBeUndefined()
    }))
})

describe("sample C: subscribeAll=true with a playback", () => {
  it("gives the complete stream of sample C", () =>
    withClient("test-app", { subscribeAll: true }, async (client) => {
      await sim.setTimings({ playbackDurationMs: 5 })
      const id = sim.placeCall({ app: "test-app", exten: "200" })
      await client.waitForType("StasisStart")
      await ari(sim, "POST", `/channels/${id}/answer`)
      await ari(sim, "POST", `/channels/${id}/play?media=sound:hello-world&playbackId=pb-${id}`)
      await client.waitForType("PlaybackFinished")
      sim.sendDtmf(id, "5")
      sim.hangup(id)
      await client.waitFor((e) => e.type === "DeviceStateChanged" && (e.device_state as Json).state === "NOT_INUSE")
      expect(client.types()).toEqual([
        "ChannelCreated",
        "ChannelVarset",
        "ChannelDialplan",
        "ChannelDialplan",
        "ChannelVarset",
        "StasisStart",
        "ChannelStateChange",
        "DeviceStateChanged",
        "PlaybackStarted",
        "PlaybackFinished",
        "ChannelDtmfReceived",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelHangupRequest",
        "StasisEnd",
        "ChannelVarset",
        "ChannelHangupRequest",
        "ChannelDialplan",
        "ChannelDialplan",
        "ChannelDestroyed",
        "DeviceStateChanged"
      ])
      const created = client.events[0] as Json
      expect((created.channel as Json).protocol_id).toBe("")
      expect(client.events[1]).toMatchObject({ variable: "SIPDOMAIN", value: "127.0.0.1" })
      expect(client.events[2]).toMatchObject({
        dialplan_app: "NoOp",
        dialplan_app_data: "Incoming call to 200 from \"sipp\" <sipp>"
      })
      expect(keysOf(client.raw[2] ?? "")).toEqual([
        "type",
        "timestamp",
        "dialplan_app",
        "dialplan_app_data",
        "channel",
        "asterisk_id",
        "application"
      ])
      expect(client.events[4]).toMatchObject({ variable: "STASISSTATUS", value: "" })
      expect(keysOf(client.raw[7] ?? "")).toEqual(["type", "application", "timestamp", "device_state", "asterisk_id"])
      expect(client.events[7]?.device_state).toEqual({ name: "PJSIP/sipp", state: "INUSE" })
      expect(client.events[8]?.playback).toEqual({
        id: `pb-${id}`,
        media_uri: "sound:hello-world",
        target_uri: `channel:${id}`,
        language: "en",
        state: "playing"
      })
      expect(client.events[18]).toMatchObject({ variable: "STASISSTATUS", value: "SUCCESS" })
      expect(client.events[19]).toMatchObject({ cause: 16, soft: true })
      expect(client.events[20]).toMatchObject({ dialplan_app: "NoOp", dialplan_app_data: "hangup 0" })
      const destroyed = client.events[22] as Json
      expect(keysOf(client.raw[22] ?? "")).toEqual([
        "type",
        "timestamp",
        "cause",
        "cause_txt",
        "channel",
        "asterisk_id",
        "application"
      ])
      expect(destroyed).toMatchObject({ cause: 16, cause_txt: "Normal Clearing" })
      expect((destroyed.channel as Json).dialplan).toEqual({
        context: "from-sipp",
        exten: "h",
        priority: 2,
        app_name: "",
        app_data: ""
      })
    }))
})

describe("sample D: ARI-originated call", () => {
  it("returns Down/AppDial2, then Dial, state changes, StasisStart, and ChannelDestroyed after hangup", () =>
    withClient("test-app", {}, async (client) => {
      const response = await ari(
        sim,
        "POST",
        "/channels?endpoint=PJSIP/sipp&app=test-app&appArgs=a,b&callerId=ARI%20%3C1000%3E&timeout=10" +
          "&channelId=test-chan-1"
      )
      expect(response.status).toBe(200)
      const body = response.json() as Json
      expect(Object.keys(body)).toEqual(channelKeys)
      expect(body).toMatchObject({
        id: "test-chan-1",
        state: "Down",
        caller: { name: "ARI", number: "1000" },
        connected: { name: "ARI", number: "1000" },
        dialplan: { context: "from-sipp", exten: "s", priority: 1, app_name: "AppDial2", app_data: "(Outgoing Line)" }
      })
      expect(body.name).toMatch(/^PJSIP\/sipp-[0-9a-f]{8}$/)
      expect(body.protocol_id).toMatch(/^[0-9a-f-]{36}$/)
      const start = await client.waitForType("StasisStart")
      expect(start.args).toEqual(["a", "b"])
      expect((start.channel as Json).state).toBe("Up")
      expect((start.channel as Json).dialplan).toMatchObject({ app_name: "Stasis", app_data: "test-app,a,b" })
      expect(client.types()).toEqual([
        "Dial",
        "Dial",
        "ChannelStateChange",
        "ChannelStateChange",
        "Dial",
        "ChannelVarset",
        "StasisStart"
      ])
      expect(client.events.filter((e) => e.type === "Dial").map((e) => e.dialstatus)).toEqual(["", "RINGING", "ANSWER"])
      expect(keysOf(client.raw[0] ?? "")).toEqual([
        "type",
        "timestamp",
        "dialstatus",
        "forward",
        "dialstring",
        "peer",
        "asterisk_id",
        "application"
      ])
      expect(client.events[0]?.dialstring).toBe("sipp")
      expect(((client.events[2] as Json).channel as Json).state).toBe("Ringing")
      expect(await ari(sim, "DELETE", "/channels/test-chan-1")).toMatchObject({ status: 204 })
      const destroyed = await client.waitForType("ChannelDestroyed")
      expect(destroyed).toMatchObject({ cause: 16, cause_txt: "Normal Clearing" })
      expect((destroyed.channel as Json).dialplan).toMatchObject({ app_name: "AppDial2", app_data: "(Outgoing Line)" })
      expect(client.types().slice(7)).toEqual([
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelVarset",
        "ChannelHangupRequest",
        "StasisEnd",
        "ChannelVarset",
        "ChannelDestroyed"
      ])
    }))

  it("maps hangup reasons to causes in ChannelDestroyed", () =>
    withClient("test-app", {}, async (client) => {
      await ari(sim, "POST", "/channels?endpoint=PJSIP/alice&app=test-app&channelId=busy-1")
      await client.waitForType("StasisStart")
      expect((await ari(sim, "DELETE", "/channels/busy-1?reason=busy")).status).toBe(204)
      expect(await client.waitForType("ChannelDestroyed")).toMatchObject({ cause: 17, cause_txt: "User busy" })
    }))

  it("delivers nothing for an app without a websocket, but the originate works", async () => {
    const response = await ari(sim, "POST", "/channels?endpoint=PJSIP/sipp&app=unknown-app&channelId=lonely")
    expect(response.status).toBe(200)
    // answered after the simulator's ring and answer delays
    while (sim.channels().find((c) => c.id === "lonely")?.state !== "Up") await sleep(2)
    expect(sim.events("unknown-app")).toEqual([])
  })

  it("with autoAnswer off, the callee rings until the control API answers", () =>
    withClient("test-app", {}, async (client) => {
      sim.setAutoAnswer(false)
      try {
        await ari(sim, "POST", "/channels?endpoint=PJSIP/bob&app=test-app&channelId=ringing-1")
        await client.waitFor((e) => e.type === "Dial" && e.dialstatus === "RINGING")
        await sleep(20)
        expect(client.types()).not.toContain("StasisStart")
        sim.answer("ringing-1")
        await client.waitForType("StasisStart")
      } finally {
        sim.setAutoAnswer(true)
      }
    }))
})

describe("sample E: continue into the dialplan", () => {
  it("ends Stasis, runs the dialplan, and the app still gets the hangup of its originated channel", () =>
    withClient("test-app", {}, async (client) => {
      await ari(sim, "POST", "/channels?endpoint=PJSIP/sipp&app=test-app&channelId=st-chan-1")
      await client.waitForType("StasisStart")
      expect((await ari(sim, "POST", "/channels/st-chan-1/answer")).status).toBe(204)
      const before = client.events.length
      const cont = await ari(sim, "POST", "/channels/st-chan-1/continue?context=hold-test&extension=wait&priority=1")
      expect(cont.status).toBe(204)
      const got = await ari(sim, "GET", "/channels/st-chan-1")
      expect((got.json() as Json).dialplan).toEqual({
        context: "hold-test",
        exten: "wait",
        priority: 2,
        app_name: "Wait",
        app_data: "30"
      })
      expect((await ari(sim, "POST", "/channels/st-chan-1/answer")).json()).toEqual({
        message: "Channel not in Stasis application"
      })
      expect((await ari(sim, "DELETE", "/channels/st-chan-1")).status).toBe(204)
      await client.waitForType("ChannelDestroyed")
      expect(client.types().slice(before)).toEqual([
        "StasisEnd",
        "ChannelDialplan",
        "ChannelDialplan",
        "ChannelHangupRequest",
        "ChannelDestroyed"
      ])
      expect(client.events.at(-1)?.channel).toMatchObject({
        dialplan: { context: "hold-test", exten: "wait", priority: 2, app_name: "AppDial2" }
      })
    }))
})
