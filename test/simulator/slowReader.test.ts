/**
 * A reader that stops reading, as Asterisk 23.4.1 treats it (`websocket_write_timeout`, docs ari-modes.md §4):
 * once the kernel buffers are full and a write cannot finish within the timeout the socket is dropped
 * without a close frame, the frames still waiting are lost, and the app is deactivated. Readers that
 * keep reading, or pause while the buffers still have room, are never dropped.
 */
import type { Socket } from "node:net"
import type WebSocket from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { SimulatorHandle, SlowReaderDrop } from "../../src/simulator/index.js"
import { startSimulator } from "../../src/simulator/index.js"
import { ari, connectEvents, sleep } from "./helpers.js"

let sim: SimulatorHandle

beforeAll(async () => {
  sim = await startSimulator()
})
afterAll(async () => {
  await sim.close()
})

// pausing the client's TCP socket stops reading from the kernel, as `ws._socket.pause()` did against Asterisk
const socketOf = (ws: WebSocket): Socket => (ws as unknown as { readonly _socket: Socket })._socket

const closeCode = (ws: WebSocket): Promise<number> =>
  new Promise((resolve) => ws.once("close", (code) => resolve(code)))

const dropOf = async (app: string): Promise<SlowReaderDrop> => {
  const deadline = Date.now() + 15_000
  for (;;) {
    const drop = sim.slowReaderDrops().find((d) => d.apps.includes(app))
    if (drop !== undefined) return drop
    if (Date.now() > deadline) throw new Error(`${app} was not dropped`)
    await sleep(10)
  }
}

// far more than the loopback kernel buffers hold for a reader that does not read (about 4 MB on Linux)
const floodCount = 40_000

describe("a reader that stops reading", () => {
  it("is dropped: it reads a gap-free prefix, then 1006 without a close frame; its app is gone", async () => {
    const app = "slow-idle"
    const client = await connectEvents(sim, app)
    socketOf(client.ws).pause()
    await expect(sim.flood(app, floodCount)).rejects.toThrow(/closed before the flood was written/)
    const drop = await dropOf(app)
    expect(drop.apps).toEqual([app])
    expect(drop.lostFrames).toBeGreaterThan(0)
    const listed = await fetch(`${sim.controlUrl}/websockets/slow-reader-drops`)
    expect(await listed.json()).toContainEqual(drop)
    expect(sim.connectedApps()).not.toContain(app)
    expect((await ari(sim, "GET", `/applications/${app}`)).status).toBe(404)
    expect(() => sim.placeCall({ app })).toThrow(/not registered/)

    const closed = closeCode(client.ws)
    socketOf(client.ws).resume()
    // 1006: the stream ended without a close frame
    expect(await closed).toBe(1006)
    const sequence = client.events.map((event) => event.x_seq)
    expect(sequence).toEqual(Array.from({ length: sequence.length }, (_, i) => i + 1))
    expect(sequence.length + drop.lostFrames).toBe(floodCount)
  })

  it("keeps an app a channel holds; after a reconnect nothing is replayed and new events arrive", async () => {
    const app = "slow-held"
    const first = await connectEvents(sim, app)
    const channelId = sim.placeCall({ app })
    await first.waitForType("StasisStart")
    expect((await ari(sim, "POST", `/channels/${channelId}/answer`)).status).toBe(204)
    socketOf(first.ws).pause()
    // one ChannelDtmfReceived per digit, through ordinary event delivery
    const digits = "0123456789".repeat(floodCount / 10)
    sim.sendDtmf(channelId, digits)
    const drop = await dropOf(app)
    expect(drop.lostFrames).toBeGreaterThan(0)
    expect(sim.connectedApps()).not.toContain(app)
    const application = await ari(sim, "GET", `/applications/${app}`)
    expect(application.status).toBe(200)
    expect(application.json()).toMatchObject({ name: app, channel_ids: [channelId] })
    const channel = await ari(sim, "GET", `/channels/${channelId}`)
    expect(channel.status).toBe(200)
    expect(channel.json()).toMatchObject({ state: "Up" })

    const closed = closeCode(first.ws)
    socketOf(first.ws).resume()
    expect(await closed).toBe(1006)
    const received = first.events.filter((e) => e.type === "ChannelDtmfReceived").map((e) => e.digit).join("")
    expect(digits.startsWith(received)).toBe(true)
    expect(received.length + drop.lostFrames).toBe(digits.length)

    const second = await connectEvents(sim, app)
    sim.sendDtmf(channelId, "#")
    await second.waitFor((e) => e.type === "ChannelDtmfReceived" && e.digit === "#", 10_000)
    // events on one socket are ordered: anything replayed would have come first
    expect(second.types()).toEqual(["ChannelDtmfReceived"])
    // still in Stasis: a Stasis-only request works and its events reach the new socket
    const play = await ari(sim, "POST", `/channels/${channelId}/play?media=sound:hello-world`)
    expect(play.status).toBe(201)
    await second.waitForType("PlaybackStarted", 10_000)
    expect((await ari(sim, "DELETE", `/channels/${channelId}`)).status).toBe(204)
    await second.waitForType("StasisEnd", 10_000)
    await second.close()
  })
})

describe("a reader that keeps up", () => {
  it("is never dropped, even by a flood of 20,000 frames in its own process, and gets them all in order", async () => {
    const app = "slow-busy"
    const client = await connectEvents(sim, app)
    const count = 20_000
    expect((await sim.flood(app, count)).sent).toBe(count)
    await client.waitFor((event) => event.x_seq === count, 30_000)
    const sequence = client.events.map((event) => event.x_seq)
    expect(sequence).toEqual(Array.from({ length: count }, (_, i) => i + 1))
    expect(sim.slowReaderDrops().filter((d) => d.apps.includes(app))).toEqual([])
    expect(sim.connectedApps()).toContain(app)
    await client.close()
  })

  it("is not dropped for a pause while the buffers still have room", async () => {
    const app = "slow-pause"
    const client = await connectEvents(sim, app)
    socketOf(client.ws).pause()
    // about 0.3 MB: the kernel takes it all
    const count = 500
    expect((await sim.flood(app, count)).sent).toBe(count)
    // a pause well past the 100 ms write timeout
    await sleep(500)
    socketOf(client.ws).resume()
    await client.waitFor((event) => event.x_seq === count, 10_000)
    expect(client.events.map((event) => event.x_seq)).toEqual(Array.from({ length: count }, (_, i) => i + 1))
    expect(sim.slowReaderDrops().filter((d) => d.apps.includes(app))).toEqual([])
    expect(sim.connectedApps()).toContain(app)
    await client.close()
  })
})
