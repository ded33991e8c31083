/**
 * The control API over HTTP (`/_sim`), REST failure modes, the request log, and the Effect wrapper.
 */
import { it as effectIt } from "@effect/vitest"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { makeSimulator, Simulator, startSimulator } from "../../src/simulator/index.js"
import type { Json } from "./helpers.js"
import { ari, connectEvents } from "./helpers.js"

let sim: SimulatorHandle

beforeAll(async () => {
  sim = await startSimulator()
})
afterAll(async () => {
  await sim.close()
})

const control = async (method: string, path: string, body?: unknown) => {
  const response = await fetch(sim.controlUrl + path, {
    method,
    ...(body !== undefined ? { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } } : {})
  })
  const text = await response.text()
  return { status: response.status, body: text === "" ? undefined : (JSON.parse(text) as unknown) }
}

describe("control API over HTTP", () => {
  it("places a call, sends DTMF, hangs up remotely, and lists state and events", async () => {
    const client = await connectEvents(sim, "ctl-app")
    try {
      const placed = await control("POST", "/calls", {
        app: "ctl-app",
        endpoint: "PJSIP/alice",
        caller: { name: "Alice", number: "201" },
        exten: "555",
        args: ["one", "two"]
      })
      expect(placed.status).toBe(201)
      const channelId = (placed.body as Json).channelId as string
      const start = await client.waitForType("StasisStart")
      expect(start.args).toEqual(["one", "two"])
      expect(start.channel).toMatchObject({
        id: channelId,
        caller: { name: "Alice", number: "201" },
        dialplan: { exten: "555", app_data: "ctl-app,one,two" }
      })
      expect((start.channel as Json).name).toMatch(/^PJSIP\/alice-/)
      expect((await control("GET", "/channels")).body).toEqual([expect.objectContaining({ id: channelId })])
      expect((await control("POST", `/channels/${channelId}/dtmf`, { digits: "42", durationMs: 100 })).status)
        .toBe(204)
      const dtmf = await client.waitFor((e) => e.type === "ChannelDtmfReceived" && e.digit === "2")
      expect(dtmf.duration_ms).toBe(100)
      expect((await control("POST", `/channels/${channelId}/hangup`, {})).status).toBe(204)
      const end = await client.waitForType("StasisEnd")
      expect((end.channel as Json).id).toBe(channelId)
      const logged = (await control("GET", "/events?app=ctl-app")).body as Array<Json>
      expect(logged.map((e) => e.type)).toEqual(client.types())
      expect((await control("POST", "/channels/nope/hangup", {})).status).toBe(404)
      expect((await control("POST", "/calls", { app: "no-socket-app" })).status).toBe(409)
    } finally {
      await client.close()
    }
  })

  it("sets timings, floods, and drops websockets", async () => {
    const updated = await control("PUT", "/timings", { playbackDurationMs: 7, autoAnswer: true })
    expect(updated.body).toMatchObject({ playbackDurationMs: 7 })
    expect(sim.timings().playbackDurationMs).toBe(7)
    const client = await connectEvents(sim, "ctl-flood")
    const flood = await control("POST", "/flood", { app: "ctl-flood", count: 100 })
    expect(flood.body).toMatchObject({ sent: 100 })
    await client.waitFor((e) => e.x_seq === 100)
    expect(client.events.map((e) => e.x_seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
    const closed = new Promise<void>((resolve) => client.ws.once("close", () => resolve()))
    expect((await control("POST", "/websockets/drop")).body).toEqual({ dropped: 1 })
    await closed
    expect((await control("GET", "")).body).toMatchObject({ routes: expect.arrayContaining(["POST /_sim/calls"]) })
  })

  it("records the REST requests a client sent", async () => {
    sim.clearRequests()
    await ari(sim, "POST", "/channels/x/variable?variable=A&value=1", { body: "", contentType: "text/plain" })
    const requests = (await control("GET", "/requests")).body as Array<Json>
    expect(requests).toHaveLength(1)
    expect(requests[0]).toMatchObject({
      method: "POST",
      path: "/ari/channels/x/variable",
      query: { variable: "A", value: "1" },
      upgrade: false
    })
    expect((requests[0]?.headers as Json).authorization).toMatch(/^Basic /)
  })

  it("makes REST hang or refuse, and back", async () => {
    expect((await control("PUT", "/rest", { mode: "refuse" })).status).toBe(204)
    await expect(ari(sim, "GET", "/asterisk/ping")).rejects.toThrow()
    sim.setRestMode("hang")
    const hung = await Promise.race([
      ari(sim, "GET", "/asterisk/ping").then(() => "answered"),
      new Promise((resolve) => setTimeout(() => resolve("timeout"), 100))
    ])
    expect(hung).toBe("timeout")
    await control("PUT", "/rest", { mode: "normal" })
    sim.setTimings({ restResponseDelayMs: 60 })
    const started = Date.now()
    expect((await ari(sim, "GET", "/asterisk/ping")).status).toBe(200)
    expect(Date.now() - started).toBeGreaterThanOrEqual(55)
    sim.setTimings({ restResponseDelayMs: 0 })
  })
})

describe("Effect wrapper", () => {
  effectIt.scopedLive("Simulator layer starts and closes a simulator with the scope", () =>
    Effect.gen(function*() {
      const handle = yield* makeSimulator({ credentials: { username: "u", password: "p" } })
      const response = yield* Effect.promise(() => fetch(`${handle.url}/asterisk/ping?api_key=u:p`))
      expect(response.status).toBe(200)
      const viaLayer = yield* Effect.provide(Simulator, Simulator.layer({ asteriskId: "aa:bb" }))
      expect(viaLayer.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/ari$/)
    }))

  effectIt.effect("fails with SimulatorStartError when the port is taken", () =>
    Effect.gen(function*() {
      const error = yield* Effect.scoped(makeSimulator({ port: sim.port })).pipe(Effect.flip)
      expect(error._tag).toBe("SimulatorStartError")
      expect(error.message).toMatch(/EADDRINUSE/)
    }))
})
