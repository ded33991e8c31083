/**
 * Playbacks, bridges, Local channel pairs, snoop channels and live recordings.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { startSimulator } from "../../src/simulator/index.js"
import type { EventClient, Json } from "./helpers.js"
import { ari, connectEvents, sleep } from "./helpers.js"

let sim: SimulatorHandle
let client: EventClient

beforeAll(async () => {
  sim = await startSimulator({ timings: { playbackDurationMs: 10 } })
  client = await connectEvents(sim, "media-app")
})
afterAll(async () => {
  await client.close()
  await sim.close()
})
beforeEach(() => {
  client.events.length = 0
  client.raw.length = 0
})

const answeredCall = async () => {
  const id = sim.placeCall({ app: "media-app" })
  expect((await ari(sim, "POST", `/channels/${id}/answer`)).status).toBe(204)
  return id
}

const playbackEvents = (id: string) =>
  client.events
    .filter((e) => (e.playback as Json | undefined)?.id === id)
    .map((e) => `${e.type}:${(e.playback as Json).state}`)

describe("playbacks", () => {
  it("plays a known sound: PlaybackStarted then PlaybackFinished done after the configured duration", async () => {
    const id = await answeredCall()
    const response = await ari(sim, "POST", `/channels/${id}/play/pb-done?media=sound:hello-world`)
    expect(response.status).toBe(201)
    expect(response.header("Location")).toBe("/ari/playbacks/pb-done")
    await client.waitFor((e) => e.type === "PlaybackFinished")
    expect(playbackEvents("pb-done")).toEqual(["PlaybackStarted:playing", "PlaybackFinished:done"])
    expect((await ari(sim, "GET", "/playbacks/pb-done")).status).toBe(404)
  })

  it("fails a missing sound file", async () => {
    const id = await answeredCall()
    await ari(sim, "POST", `/channels/${id}/play?media=sound:no-such-sound-file&playbackId=pb-fail`)
    await client.waitFor((e) => e.type === "PlaybackFinished")
    expect(playbackEvents("pb-fail")).toEqual(["PlaybackStarted:playing", "PlaybackFinished:failed"])
  })

  it("never finishes an unknown scheme, until stopped with DELETE", async () => {
    const id = await answeredCall()
    await ari(sim, "POST", `/channels/${id}/play?media=bogus:xyz&playbackId=pb-never`)
    await client.waitFor((e) => e.type === "PlaybackStarted")
    await sleep(40)
    expect(playbackEvents("pb-never")).toEqual(["PlaybackStarted:playing"])
    expect((await ari(sim, "GET", "/playbacks/pb-never")).json()).toMatchObject({ state: "playing" })
    expect((await ari(sim, "DELETE", "/playbacks/pb-never")).status).toBe(204)
    expect(playbackEvents("pb-never")).toEqual(["PlaybackStarted:playing", "PlaybackFinished:done"])
  })

  it("queues playbacks on one channel", async () => {
    const id = await answeredCall()
    await ari(sim, "POST", `/channels/${id}/play?media=sound:beep&playbackId=q1`)
    const second = await ari(sim, "POST", `/channels/${id}/play?media=sound:beep&playbackId=q2`)
    expect((second.json() as Json).state).toBe("queued")
    await client.waitFor((e) => e.type === "PlaybackFinished" && (e.playback as Json).id === "q2")
    const order = client.events
      .filter((e) => String(e.type).startsWith("Playback"))
      .map((e) => `${e.type}:${(e.playback as Json).id}`)
    expect(order)
      .toEqual(["PlaybackStarted:q1", "PlaybackFinished:q1", "PlaybackStarted:q2", "PlaybackFinished:q2"])
  })
})

describe("bridges", () => {
  it("enters, leaves before StasisEnd on hangup, and destroys after its channels leave", async () => {
    const a = await answeredCall()
    const b = await answeredCall()
    await ari(sim, "POST", "/bridges?type=mixing&bridgeId=br-1&name=b1")
    expect((await ari(sim, "POST", `/bridges/br-1/addChannel?channel=${a},${b}`)).status).toBe(204)
    const entered = client.events.filter((e) => e.type === "ChannelEnteredBridge")
    expect(entered).toHaveLength(2)
    expect(Object.keys(entered[0] ?? {}))
      .toEqual(["type", "timestamp", "bridge", "channel", "asterisk_id", "application"])
    expect((entered[1]?.bridge as Json).channels).toEqual([a, b])
    const play = await ari(sim, "POST", "/bridges/br-1/play?media=sound:beep&playbackId=bp-1")
    expect((play.json() as Json).target_uri).toBe("bridge:br-1")
    await client.waitFor((e) => e.type === "PlaybackFinished" && (e.playback as Json).id === "bp-1")
    const before = client.events.length
    expect((await ari(sim, "DELETE", `/channels/${a}`)).status).toBe(204)
    expect(client.types().slice(before)).toEqual([
      "ChannelVarset",
      "ChannelVarset",
      "ChannelVarset",
      "ChannelVarset",
      "ChannelVarset",
      "ChannelHangupRequest",
      "ChannelLeftBridge",
      "StasisEnd"
    ])
    const middle = client.events.length
    expect((await ari(sim, "DELETE", "/bridges/br-1")).status).toBe(204)
    expect(client.types().slice(middle)).toEqual(["ChannelLeftBridge", "BridgeDestroyed"])
    expect((client.events.at(-1)?.bridge as Json).channels).toEqual([])
    expect((await ari(sim, "POST", `/bridges/br-1/addChannel?channel=${b}`)).status).toBe(404)
    const removed = await ari(sim, "POST", "/bridges?bridgeId=br-2")
    expect(removed.status).toBe(200)
    expect((await ari(sim, "POST", `/bridges/br-2/removeChannel?channel=${b}`)).json()).toEqual({
      message: "Channel not in this bridge"
    })
  })
})

describe("Local channels", () => {
  it("creates a ;1/;2 pair with the given ids; ;2 runs a Stasis dialplan and answering it answers ;1", async () => {
    const local = await startSimulator({
      dialplan: { "apps": { "200": [{ app: "NoOp", data: "to b" }, { app: "Stasis", data: "app-b,x" }] } }
    })
    const appA = await connectEvents(local, "app-a")
    const appB = await connectEvents(local, "app-b")
    try {
      const response = await ari(
        local,
        "POST",
        "/channels?endpoint=Local/200@apps&app=app-a&channelId=loc-1&otherChannelId=loc-2"
      )
      expect(response.status).toBe(200)
      expect((response.json() as Json).name).toMatch(/^Local\/200@apps-[0-9a-f]{8};1$/)
      const startB = await appB.waitForType("StasisStart")
      expect(startB.args).toEqual(["x"])
      expect((startB.channel as Json).id).toBe("loc-2")
      expect((startB.channel as Json).name).toMatch(/^Local\/200@apps-[0-9a-f]{8};2$/)
      expect(appA.types()).not.toContain("StasisStart")
      expect((await ari(local, "POST", "/channels/loc-2/answer")).status).toBe(204)
      const startA = await appA.waitFor((e) => e.type === "StasisStart")
      expect((startA.channel as Json).id).toBe("loc-1")
      expect((await ari(local, "DELETE", "/channels/loc-1")).status).toBe(204)
      await appB.waitForType("StasisEnd")
      expect(local.channels()).toEqual([])
    } finally {
      await appA.close()
      await appB.close()
      await local.close()
    }
  })
})

describe("snoop", () => {
  it("creates a snoop channel that enters Stasis and dies with its target", async () => {
    const id = await answeredCall()
    const bad = await ari(sim, "POST", `/channels/${id}/snoop?app=media-app`)
    expect(bad.json()).toEqual({ message: "Direction must be specified for at least spy or whisper" })
    const response = await ari(sim, "POST", `/channels/${id}/snoop/snoop-1?app=media-app&spy=both&appArgs=s1`)
    expect(response.status).toBe(200)
    expect(response.json()).toMatchObject({ id: "snoop-1", state: "Up" })
    expect((response.json() as Json).name).toMatch(new RegExp(`^Snoop/${id.replace(".", "\\.")}-[0-9a-f]{8}$`))
    const start = await client.waitFor((e) => e.type === "StasisStart" && (e.channel as Json).id === "snoop-1")
    expect(start.args).toEqual(["s1"])
    sim.hangup(id)
    await client.waitFor((e) => e.type === "StasisEnd" && (e.channel as Json).id === "snoop-1")
    expect((await ari(sim, "POST", `/channels/no-such/snoop?app=x&spy=in`)).status).toBe(404)
  })
})

describe("live recordings", () => {
  it("records, reports live state, stops into a stored recording", async () => {
    const id = await answeredCall()
    const response = await ari(sim, "POST", `/channels/${id}/record?name=rec-1&format=wav`)
    expect(response.status).toBe(201)
    expect(response.header("Location")).toBe("/ari/recordings/live/rec-1")
    expect(response.json()).toEqual({ name: "rec-1", format: "wav", state: "queued", target_uri: `channel:${id}` })
    const started = await client.waitForType("RecordingStarted")
    expect(started.recording).toEqual({ name: "rec-1", format: "wav", state: "recording", target_uri: `channel:${id}` })
    expect((await ari(sim, "GET", "/recordings/live/rec-1")).json()).toMatchObject({ state: "recording" })
    expect((await ari(sim, "POST", `/channels/${id}/record?name=rec-1&format=wav`)).status).toBe(409)
    expect((await ari(sim, "POST", `/channels/${id}/record?name=rec-2&format=nope`)).status).toBe(422)
    expect((await ari(sim, "POST", "/recordings/live/rec-1/stop")).status).toBe(204)
    const finished = await client.waitForType("RecordingFinished")
    expect(finished.recording).toMatchObject({ name: "rec-1", state: "done" })
    expect((await ari(sim, "GET", "/recordings/live/rec-1")).status).toBe(404)
    expect((await ari(sim, "GET", "/recordings/stored")).json()).toEqual([{ name: "rec-1", format: "wav" }])
    expect((await ari(sim, "POST", "/recordings/live/nope/stop")).json()).toEqual({ message: "Recording not found" })
  })
})
