/**
 * The event websocket: handshake errors, no subprotocol, one socket per app (ApplicationReplaced),
 * abrupt drops, and the flood writer's order (its rate: npm run bench).
 */
import { request as httpRequest } from "node:http"
import { spawn } from "node:child_process"
import { connect } from "node:net"
import WebSocket from "ws"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
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

/** Sends a raw upgrade request and returns the raw HTTP response. */
const rawUpgrade = (path: string, extraHeaders: ReadonlyArray<string> = []): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = connect(sim.port, "127.0.0.1", () => {
      socket.write(
        [
          `GET ${path} HTTP/1.1`,
          `Host: 127.0.0.1:${sim.port}`,
          "Upgrade: websocket",
          "Connection: Upgrade",
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
          "Sec-WebSocket-Version: 13",
          ...extraHeaders,
          "",
          ""
        ].join("\r\n")
      )
    })
    let text = ""
    socket.on("data", (chunk) => {
      text += chunk.toString()
    })
    socket.on("end", () => resolve(text))
    socket.on("error", reject)
    setTimeout(() => {
      socket.destroy()
      resolve(text)
    }, 500)
  })

describe("websocket handshake", () => {
  it("rejects a missing app with 400 text/html", async () => {
    const response = await rawUpgrade("/ari/events?api_key=asterisk:asterisk")
    expect(response.startsWith("HTTP/1.1 400 Bad Request\r\n")).toBe(true)
    expect(response).toContain("Content-type: text/html")
    expect(response).toContain("HTTP request is missing param: [app]")
  })

  it("rejects bad credentials with 401 JSON and the Basic realm", async () => {
    for (const path of ["/ari/events?app=a&api_key=asterisk:nope", "/ari/events?app=a"]) {
      const response = await rawUpgrade(path)
      expect(response.startsWith("HTTP/1.1 401 Unauthorized\r\n")).toBe(true)
      expect(response).toContain("WWW-Authenticate: Basic realm=\"Asterisk REST Interface\"")
      expect(response.endsWith("{\"message\":\"Authentication required\"}")).toBe(true)
    }
    const basic = Buffer.from("asterisk:asterisk").toString("base64")
    const accepted = await rawUpgrade("/ari/events?app=basic-app", [`Authorization: Basic ${basic}`])
    expect(accepted.startsWith("HTTP/1.1 101")).toBe(true)
  })

  it("answers a plain GET with 426", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      httpRequest(`${sim.wsUrl.replace("ws:", "http:")}?app=x&api_key=asterisk:asterisk`, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      }).on("error", reject).end()
    })
    expect(status).toBe(426)
  })

  it("selects no subprotocol even when the client offers ari", async () => {
    const ws = new WebSocket(sim.eventsUrl("proto-app"), ["ari"])
    const outcome = await new Promise<string>((resolve) => {
      ws.once("open", () => resolve(`open:${ws.protocol}`))
      // ws clients fail the handshake when a requested subprotocol is not echoed
      ws.once("error", (error) => resolve(`error:${error.message}`))
    })
    ws.terminate()
    expect(outcome).toMatch(/^error:Server sent no subprotocol|^open:$/)
    const plain = await connectEvents(sim, "proto-app-2")
    expect(plain.ws.protocol).toBe("")
    await plain.close()
  })
})

describe("one websocket per application", () => {
  it("sends ApplicationReplaced to the old socket and closes it", async () => {
    const first = await connectEvents(sim, "replaced-app")
    const closed = new Promise<void>((resolve) => first.ws.once("close", () => resolve()))
    const second = await connectEvents(sim, "replaced-app")
    await closed
    expect(first.types()).toEqual(["ApplicationReplaced"])
    expect(keysOf(first.raw[0] ?? "")).toEqual(["type", "timestamp", "application", "asterisk_id"])
    expect(first.events[0]?.application).toBe("replaced-app")
    const id = sim.placeCall({ app: "replaced-app" })
    await second.waitForType("StasisStart")
    expect(first.events).toHaveLength(1)
    sim.hangup(id)
    await second.close()
  })

  it("registers several apps on one socket and routes by app", async () => {
    const client = await connectEvents(sim, "multi-a,multi-b")
    expect(sim.connectedApps()).toEqual(expect.arrayContaining(["multi-a", "multi-b"]))
    sim.placeCall({ app: "multi-b" })
    const start = await client.waitForType("StasisStart")
    expect(start.application).toBe("multi-b")
    await client.close()
  })

  it("forgets an app when its socket closes: inbound calls to it fail", async () => {
    const client = await connectEvents(sim, "gone-app")
    await client.close()
    while (sim.connectedApps().includes("gone-app")) await sleep(5) // the server sees the close a moment later
    expect(() => sim.placeCall({ app: "gone-app" })).toThrow(/not registered/)
  })

  it("keeps an app, inactive, while a channel is in its Stasis; a reconnect replays nothing", async () => {
    // the server sees a close a moment after the client does
    const closed = async (client: EventClient) => {
      await client.close()
      while (sim.connectedApps().includes("held-app")) await sleep(5)
    }
    const first = await connectEvents(sim, "held-app")
    const channelId = sim.placeCall({ app: "held-app" })
    await first.waitForType("StasisStart")
    await closed(first)
    const application = await ari(sim, "GET", "/applications/held-app")
    expect(application.status).toBe(200)
    expect(application.json()).toMatchObject({ name: "held-app", channel_ids: [channelId] })
    const second = await connectEvents(sim, "held-app")
    sim.sendDtmf(channelId, "7")
    await second.waitForType("ChannelDtmfReceived")
    expect(second.types()).toEqual(["ChannelDtmfReceived"])
    await closed(second)
    // once the channel is gone, nothing holds the inactive app
    expect((await ari(sim, "DELETE", `/channels/${channelId}`)).status).toBe(204)
    expect((await ari(sim, "GET", "/applications/held-app")).status).toBe(404)
  })
})

describe("drops and refusals", () => {
  it("terminates every socket abruptly and can refuse reconnects", async () => {
    const client = await connectEvents(sim, "drop-app")
    const closed = new Promise<number>((resolve) => client.ws.once("close", (code) => resolve(code)))
    expect(sim.dropWebsockets()).toBeGreaterThanOrEqual(1)
    // 1006: closed without a close frame
    expect(await closed).toBe(1006)
    sim.setWebsocketMode("refuse")
    await expect(connectEvents(sim, "drop-app")).rejects.toThrow()
    sim.setWebsocketMode("accept")
    const again = await connectEvents(sim, "drop-app")
    await again.close()
  })
})

/** A receiver in its own process, as a proxy would be: counts frames and checks x_seq order. */
const receiverScript = `
import WebSocket from "ws"
const [url, count] = [process.argv[1], Number(process.argv[2])]
const ws = new WebSocket(url, { skipUTF8Validation: true, perMessageDeflate: false })
let received = 0, outOfOrder = 0, first = ""
ws.on("open", () => process.stdout.write("open\\n"))
ws.on("message", (data) => {
  const text = data.toString()
  if (received === 0) first = text
  received++
  const at = text.indexOf("\\"x_seq\\":")
  if (Number.parseInt(text.slice(at + 8), 10) !== received) outOfOrder++
  if (received === count) {
    process.stdout.write(JSON.stringify({ received, outOfOrder, first }) + "\\n")
    ws.terminate()
  }
})
`

// Its rate is measured by `npm run bench` (bench/simulatorFlood.ts), not here: a shared machine
// running the whole suite says nothing reliable about frames per second.
describe("flood", () => {
  it("delivers 20,000 frames whole and in order to a client in another process", async () => {
    const count = 20_000
    const args = ["--input-type=module", "-e", receiverScript, sim.eventsUrl("flood-app"), String(count)]
    const child = spawn(process.execPath, args, {
      cwd: process.cwd(),
      stdio: ["ignore", "pipe", "inherit"]
    })
    const lines: Array<string> = []
    let buffered = ""
    const lineWaiters: Array<() => void> = []
    child.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString()
      const parts = buffered.split("\n")
      buffered = parts.pop() ?? ""
      lines.push(...parts)
      for (const waiter of lineWaiters.splice(0)) waiter()
    })
    const nthLine = async (n: number) => {
      while (lines.length <= n) await new Promise<void>((resolve) => lineWaiters.push(resolve))
      return lines[n] ?? ""
    }
    try {
      expect(await nthLine(0)).toBe("open")
      const result = await sim.flood("flood-app", count)
      const report = JSON.parse(await nthLine(1)) as { received: number; outOfOrder: number; first: string }
      expect(result.sent).toBe(count)
      expect(report.received).toBe(count)
      expect(report.outOfOrder).toBe(0)
      const first = JSON.parse(report.first) as Json
      expect(first).toMatchObject({ type: "ChannelDtmfReceived", x_seq: 1, application: "flood-app" })
      expect(Object.keys(first)).toEqual([
        "type",
        "timestamp",
        "digit",
        "duration_ms",
        "x_seq",
        "channel",
        "asterisk_id",
        "application"
      ])
    } finally {
      child.kill()
    }
  })
})
