/**
 * The simulator's own flood rate (the unit suite checks only that a flood arrives whole and in
 * order, test/simulator/websocket.test.ts): the simulator's CPU per frame sent, and the rate at which
 * a reader in another process (as a proxy would read) takes them. A warm-up round (both sides run
 * cold code the first time), then the best of three.
 */
import { spawn } from "node:child_process"
import { startSimulator } from "../src/simulator/index.js"

export interface SimulatorFloodFigure {
  readonly frames: number
  /** Frames per second of the simulator's own CPU (it writes each frame to the socket synchronously). */
  readonly cpuFramesPerSecond: number
  /** Frames per second from the first frame built to the last one written to the reader's socket. */
  readonly framesPerSecond: number
  readonly outOfOrder: number
}

const FRAMES = 20_000
const ROUNDS = 4

/** A receiver in its own process: counts frames, checks `x_seq` order, prints one line per round. */
const receiverScript = `
import WebSocket from "ws"
const [url, count, rounds] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])]
const ws = new WebSocket(url, { skipUTF8Validation: true, perMessageDeflate: false })
let received = 0, outOfOrder = 0, round = 0
ws.on("open", () => process.stdout.write("open\\n"))
ws.on("message", (data) => {
  const text = data.toString()
  received++
  const at = text.indexOf("\\"x_seq\\":")
  if (Number.parseInt(text.slice(at + 8), 10) !== received) outOfOrder++
  if (received === count) {
    process.stdout.write(JSON.stringify({ received, outOfOrder }) + "\\n")
    received = 0
    outOfOrder = 0
    if (++round === rounds) ws.terminate()
  }
})
`

export const simulatorFlood = async (): Promise<SimulatorFloodFigure> => {
  const sim = await startSimulator()
  const args = ["--input-type=module", "-e", receiverScript, sim.eventsUrl("flood-app"), String(FRAMES), String(ROUNDS)]
  const child = spawn(process.execPath, args, { cwd: process.cwd(), stdio: ["ignore", "pipe", "inherit"] })
  try {
    const lines: Array<string> = []
    let buffered = ""
    const waiters: Array<() => void> = []
    child.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString()
      const parts = buffered.split("\n")
      buffered = parts.pop() ?? ""
      lines.push(...parts)
      for (const waiter of waiters.splice(0)) waiter()
    })
    const nthLine = async (n: number) => {
      while (lines.length <= n) await new Promise<void>((resolve) => waiters.push(resolve))
      return lines[n]!
    }
    await nthLine(0) // open
    let bestMs = Number.POSITIVE_INFINITY
    let bestCpuMs = Number.POSITIVE_INFINITY
    let outOfOrder = 0
    for (let round = 1; round <= ROUNDS; round++) {
      const cpuBefore = process.cpuUsage()
      const pending = sim.flood("flood-app", FRAMES)
      const cpu = process.cpuUsage(cpuBefore)
      const result = await pending
      const report = JSON.parse(await nthLine(round)) as { received: number; outOfOrder: number }
      if (round === 1) continue // the warm-up
      bestCpuMs = Math.min(bestCpuMs, (cpu.user + cpu.system) / 1000)
      bestMs = Math.min(bestMs, result.elapsedMs)
      outOfOrder += report.outOfOrder + (FRAMES - report.received)
    }
    return {
      frames: FRAMES,
      cpuFramesPerSecond: FRAMES / (bestCpuMs / 1000),
      framesPerSecond: FRAMES / (bestMs / 1000),
      outOfOrder
    }
  } finally {
    child.kill()
    await sim.close()
  }
}
