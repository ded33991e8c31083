/**
 * `npm run bench`: the proxy next to the raw pipe (bench/rawPipe.ts), on the in-memory bus, NATS
 * and RabbitMQ (publisher confirms on), in one run. For each driver and each system under test:
 *
 * - floods of 20,000 events on one dialog: events/s from the first frame sent to the last event
 *   received, the system's CPU per event, events lost and out of order (by `x_seq`); six warm-up
 *   floods, then repetitions alternating raw pipe and proxy (median reported);
 * - 1,000 sequential commands (`POST /channels/<id>/answer`), in turns of 100 alternating between
 *   the systems: round trip p50 and p99;
 * - a burst of new calls: new dialogs per second and the system's CPU per call (first call placed
 *   → last AppStart received), after a warm-up burst of half its size (at most 2,000) hung up;
 * - heap and RSS per idle dialog with the burst's dialogs open (after a full GC), and the heap after
 *   they ended, against before the burst;
 * - floods again with those dialogs open (routing must stay O(1));
 * - the simulator's own flood rate (bench/simulatorFlood.ts), against fixed targets;
 * - then each target (proxy against raw pipe, from this run's figures): met or MISSED.
 *
 * Broker-backed systems run in a child process, so their CPU and heap are their own; the in-memory
 * ones share this process with the simulator and the subscriber (their CPU includes both; no heap
 * nor RSS).
 * Options (environment): BENCH_REPS (default 5), BENCH_PROFILE=proxy|raw (a --cpu-prof of the
 * broker-backed workers, in dist-bench/profiles), BENCH_DRIVERS=memory,nats,rabbitmq, BENCH_BURST (calls
 * in the burst; default 10,000, RabbitMQ 2,000).
 */
import { type ChildProcess, execFileSync, type ExecFileSyncOptionsWithStringEncoding, fork } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, totalmem } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import amqp from "amqplib"
import { Effect, Exit, Scope } from "effect"
import type { BusShape } from "../src/bus/Bus.js"
import { makeAmqpBus } from "../src/bus/amqp/index.js"
import { makeNatsBus } from "../src/bus/nats/index.js"
import { type SimulatorHandle, startSimulator } from "../src/simulator/index.js"
import { type BenchClient, startBenchClient } from "./client.js"
import { type SimulatorFloodFigure, simulatorFlood } from "./simulatorFlood.js"
import { AMQP_URL, type Driver, NATS_URL, startSut, type SutKind, type SutTarget } from "./suts.js"
import type { MemoryFigure, WorkerRequest, WorkerSpec } from "./worker.js"

const FLOOD = 20_000
/** Floods per system before the measured ones: V8 optimises the proxy's larger code over several. */
const WARM_UP_FLOODS = 6
const COMMANDS = 1_000
const REPS = Number(process.env.BENCH_REPS ?? 5)
const BURST: Record<Driver, number> = { memory: 10_000, nats: 10_000, rabbitmq: 2_000 }
const KINDS: ReadonlyArray<SutKind> = ["raw", "proxy"]
const here = dirname(fileURLToPath(import.meta.url))

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/** Waits until `done()`; gives up when `progress()` has not moved for `stallMs`. */
const waitWithProgress = async (done: () => boolean, progress: () => number, stallMs: number) => {
  let last = progress()
  let lastMoved = performance.now()
  while (!done()) {
    await sleep(2)
    const now = progress()
    if (now !== last) {
      last = now
      lastMoved = performance.now()
    } else if (performance.now() - lastMoved > stallMs) {
      return false
    }
  }
  return true
}

/** The system under test, wherever it runs. */
interface SutControl {
  readonly cpuMicros: () => Promise<number>
  /** Heap and RSS after a full GC, or undefined when it shares this process. */
  readonly memory: () => Promise<MemoryFigure | undefined>
  readonly dialogs: () => Promise<number>
  readonly queuesToDelete: () => Promise<number>
  readonly bus: BusShape | undefined
  readonly close: () => Promise<void>
}

const inProcess = async (kind: SutKind, driver: Driver, target: SutTarget): Promise<SutControl> => {
  const sut = await startSut(kind, driver, target)
  return {
    cpuMicros: async () => {
      const usage = process.cpuUsage()
      return usage.user + usage.system
    },
    memory: async () => undefined,
    dialogs: async () => sut.dialogs(),
    queuesToDelete: async () => sut.queuesToDelete(),
    bus: sut.bus,
    close: sut.close
  }
}

const inWorker = async (spec: WorkerSpec): Promise<SutControl> => {
  const profile = process.env.BENCH_PROFILE === spec.kind
  const profileDir = join(here, "..", "profiles")
  if (profile) mkdirSync(profileDir, { recursive: true })
  const child: ChildProcess = fork(join(here, "worker.js"), [JSON.stringify(spec)], {
    execArgv: ["--expose-gc", ...(profile ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [])],
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const replies = new Map<number, (value: unknown) => void>()
  let nextId = 0
  await new Promise<void>((resolve, reject) => {
    child.once("error", reject)
    child.once("exit", (code) => reject(new Error(`worker exited (${code}) before it was ready`)))
    child.on("message", (message: { ready?: boolean; id?: number; value?: unknown }) => {
      if (message.ready === true) resolve()
      else if (message.id !== undefined) replies.get(message.id)?.(message.value)
    })
  })
  child.removeAllListeners("exit")
  const ask = <A>(op: WorkerRequest["op"]) =>
    new Promise<A>((resolve) => {
      const id = ++nextId
      replies.set(id, (value) => resolve(value as A))
      child.send({ id, op } satisfies WorkerRequest)
    })
  return {
    cpuMicros: () => ask<number>("cpu"),
    memory: () => ask<MemoryFigure>("memory"),
    dialogs: () => ask<number>("dialogs"),
    queuesToDelete: () => ask<number>("queuesToDelete"),
    bus: undefined,
    close: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve))
      await ask("close")
      await exited
    }
  }
}

/** One system under test with its own simulator, application name, client and flood dialog. */
interface Lane {
  readonly kind: SutKind
  readonly sim: SimulatorHandle
  readonly application: string
  readonly serverId: string
  readonly sut: SutControl
  readonly client: BenchClient
  readonly clientScope: Scope.CloseableScope
  readonly floodChannel: string
  readonly floodDialog: string
}

const clientBus = async (driver: Driver, sut: SutControl, scope: Scope.Scope): Promise<BusShape> => {
  if (driver === "memory") return sut.bus!
  const make: Effect.Effect<BusShape, unknown, Scope.Scope> = driver === "nats" ?
    makeNatsBus({ servers: NATS_URL, name: "bench-client" }) :
    makeAmqpBus({ url: AMQP_URL, name: "bench-client" })
  const bus = await Effect.runPromise(Scope.extend(make, scope))
  while (Effect.runSync(bus.state) !== "connected") await sleep(5)
  return bus
}

const openLane = async (driver: Driver, kind: SutKind): Promise<Lane> => {
  // A generous write timeout: the bench measures throughput on a shared machine, not the drop of
  // a stalled reader (tested in test/simulator/slowReader.test.ts and test/proxy/overload.test.ts).
  const sim = await startSimulator({ timings: { answerDelayMs: 0 }, recordLogs: false, websocketWriteTimeoutMs: 5_000 })
  const suffix = randomBytes(4).toString("hex")
  const application = `bench_${driver}_${kind}_${suffix}`
  const serverId = `bench-${kind}`
  const target: SutTarget = {
    wsUrl: sim.wsUrl,
    stasisUrl: sim.url,
    username: sim.credentials.username,
    password: sim.credentials.password,
    application,
    serverId
  }
  const sut = driver === "memory" ? await inProcess(kind, driver, target) : await inWorker({ kind, driver, target })
  const clientScope = Effect.runSync(Scope.make())
  const client = await startBenchClient(await clientBus(driver, sut, clientScope), application)
  const next = client.nextDialog()
  const floodChannel = sim.placeCall({ app: application })
  const floodDialog = await next
  await client.join(floodDialog)
  // A first command: it answers the call, and tells the proxy the application listens (attach).
  const answered = await client.request(floodDialog, "POST", `/channels/${floodChannel}/answer`)
  if (answered.status !== 204) throw new Error(`${kind}: answer gave ${answered.status} ${answered.body}`)
  return { kind, sim, application, serverId, sut, client, clientScope, floodChannel, floodDialog }
}

interface FloodFigure {
  readonly eventsPerSecond: number
  readonly cpuMicrosPerEvent: number
  readonly lost: number
  readonly outOfOrder: number
}

const floodOnce = async (lane: Lane): Promise<FloodFigure> => {
  const { client } = lane
  client.resetFlood()
  const cpuBefore = await lane.sut.cpuMicros()
  const started = performance.now()
  const sent = lane.sim.flood(lane.application, FLOOD, { channelId: lane.floodChannel })
  await waitWithProgress(() => client.flood.received >= FLOOD, () => client.flood.received, 5_000)
  await sent
  const cpuAfter = await lane.sut.cpuMicros()
  const elapsed = (client.flood.lastAt - started) / 1000
  return {
    eventsPerSecond: client.flood.received === 0 ? 0 : client.flood.received / elapsed,
    cpuMicrosPerEvent: (cpuAfter - cpuBefore) / FLOOD,
    lost: FLOOD - client.flood.received,
    outOfOrder: client.flood.outOfOrder
  }
}

/** Round trips of `count` sequential commands, in ms. */
const commandRoundTrips = async (lane: Lane, count: number) => {
  const rtts: Array<number> = []
  for (let i = 0; i < count; i++) {
    const started = performance.now()
    const response = await lane.client.request(lane.floodDialog, "POST", `/channels/${lane.floodChannel}/answer`)
    rtts.push(performance.now() - started)
    if (response.status !== 204) throw new Error(`${lane.kind}: answer gave ${response.status}`)
  }
  return rtts
}

/** Commands per system in turns of this many, alternating: both see the machine's same moments. */
const COMMAND_TURN = 100

const commandFigures = async (lanes: ReadonlyArray<Lane>) => {
  const rtts = new Map(lanes.map((lane) => [lane.kind, [] as Array<number>]))
  for (let done = 0; done < COMMANDS; done += COMMAND_TURN) {
    for (const lane of lanes) rtts.get(lane.kind)!.push(...await commandRoundTrips(lane, COMMAND_TURN))
  }
  const figures = {} as Record<SutKind, { p50: number; p99: number }>
  for (const [kind, values] of rtts) figures[kind] = { p50: percentile(values, 50), p99: percentile(values, 99) }
  return figures
}

interface BurstFigure {
  readonly dialogsPerSecond: number
  readonly placedPerSecond: number
  readonly received: number
  readonly cpuMicrosPerCall: number
  readonly heapPerDialog: number | undefined
  readonly rssPerDialog: number | undefined
  readonly channels: ReadonlyArray<string>
  readonly memoryBefore: MemoryFigure | undefined
}

/**
 * Memory once the dialogs are idle: on RabbitMQ the first events of a burst's dialogs may still
 * wait for their queues to be declared after every AppStart is out, so the heap is measured
 * again until it stops moving (within 1 %, 20 s at most).
 */
const settledMemory = async (lane: Lane): Promise<MemoryFigure | undefined> => {
  let last = await lane.sut.memory()
  const deadline = performance.now() + 20_000
  while (last !== undefined && performance.now() < deadline) {
    await sleep(500)
    const now = await lane.sut.memory()
    if (now === undefined || Math.abs(now.heap - last.heap) <= 0.01 * last.heap) return now
    last = now
  }
  return last
}

const burst = async (lane: Lane, count: number): Promise<BurstFigure> => {
  const memoryBefore = await lane.sut.memory()
  const before = lane.client.appStarts().count
  const channels: Array<string> = []
  const cpuBefore = await lane.sut.cpuMicros()
  const started = performance.now()
  for (let i = 0; i < count; i++) channels.push(lane.sim.placeCall({ app: lane.application }))
  // The simulator's own pace (it shares this process with the client): the ceiling of the figure.
  const placedPerSecond = count / ((performance.now() - started) / 1000)
  const appStarts = () => lane.client.appStarts().count
  await waitWithProgress(() => appStarts() - before >= count, appStarts, 10_000)
  const cpuAfter = await lane.sut.cpuMicros()
  const received = lane.client.appStarts().count - before
  const dialogsPerSecond = received / ((lane.client.appStarts().lastAt - started) / 1000)
  await sleep(1_500) // the attach grace passes: held events are published, mailboxes are empty
  const memoryOpen = await settledMemory(lane)
  const perDialog = (field: keyof MemoryFigure) =>
    memoryOpen === undefined || memoryBefore === undefined ?
      undefined :
      (memoryOpen[field] - memoryBefore[field]) / count
  return {
    dialogsPerSecond,
    placedPerSecond,
    received,
    cpuMicrosPerCall: (cpuAfter - cpuBefore) / count,
    heapPerDialog: perDialog("heap"),
    rssPerDialog: perDialog("rss"),
    channels,
    memoryBefore
  }
}

/** Hangs the burst up and measures once its dialogs are gone (linger over) and their queues deleted. */
const warmUpBurst = async (lane: Lane, count: number) => {
  const before = lane.client.appStarts().count
  const channels: Array<string> = []
  for (let i = 0; i < count; i++) channels.push(lane.sim.placeCall({ app: lane.application }))
  const appStarts = () => lane.client.appStarts().count
  await waitWithProgress(() => appStarts() - before >= count, appStarts, 10_000)
  await hangUpAll(lane, channels)
}

const hangUpAll = async (lane: Lane, channels: ReadonlyArray<string>) => {
  for (const channel of channels) lane.sim.hangup(channel)
  const settled = async () => (await lane.sut.dialogs()) <= 1 && (await lane.sut.queuesToDelete()) === 0
  const deadline = Date.now() + 60_000
  while (!(await settled()) && Date.now() < deadline) await sleep(50)
  await sleep(500)
  return {
    dialogsLeft: (await lane.sut.dialogs()) - 1,
    queuesLeft: await lane.sut.queuesToDelete(),
    memoryAfter: await lane.sut.memory()
  }
}

/** Queues a RabbitMQ run leaves (the raw pipe never deletes; the proxy's grace may not have passed). */
const deleteBenchQueues = async (lanes: ReadonlyArray<Lane>, dialogIds: ReadonlyArray<string>) => {
  const connection = await amqp.connect(AMQP_URL)
  connection.on("error", () => undefined)
  let channel = await connection.createChannel()
  const names = lanes.flatMap((lane) => [
    lane.application,
    `unrouted_${lane.application}`,
    `dialogs_${lane.application}`,
    `dialogs_${lane.application}@${lane.serverId}`
  ])
  for (const id of dialogIds) names.push(`events_${id}`, `commands_${id}`, `responses_${id}`)
  for (const name of names) {
    try {
      await channel.deleteQueue(name)
    } catch {
      channel = await connection.createChannel()
    }
  }
  await connection.close()
}

interface DriverResult {
  readonly driver: Driver
  readonly burstSize: number
  readonly rows: Record<SutKind, {
    floods: Array<FloodFigure>
    floodsOpen: Array<FloodFigure>
    commands: { p50: number; p99: number }
    burst: Omit<BurstFigure, "channels" | "memoryBefore">
    /** Heap after the burst ended against before it: bytes and fraction of before. */
    heapBack: { delta: number; fraction: number } | undefined
    dialogsLeft: number
    queuesLeft: number
  }>
}

const runDriver = async (driver: Driver): Promise<DriverResult> => {
  const burstSize = Number(process.env.BENCH_BURST ?? BURST[driver])
  const lanes: Array<Lane> = []
  for (const kind of KINDS) lanes.push(await openLane(driver, kind))
  const log = (what: string) => process.stderr.write(`[bench ${driver}] ${what}\n`)
  const floods: Record<SutKind, Array<FloodFigure>> = { raw: [], proxy: [] }
  log("warm-up")
  for (const lane of lanes) {
    for (let i = 0; i < WARM_UP_FLOODS; i++) await floodOnce(lane)
    await commandRoundTrips(lane, 200)
  }
  for (let rep = 0; rep < REPS; rep++) {
    for (const lane of lanes) floods[lane.kind].push(await floodOnce(lane))
  }
  log("commands")
  const commands = await commandFigures(lanes)
  // The code a burst compiles (V8's optimised code lives on the heap too) is paid once, not per
  // dialog: a smaller burst, hung up, runs those paths first.
  const warmUpSize = Math.min(2_000, Math.ceil(burstSize / 2))
  log(`warm-up burst of ${warmUpSize} calls, hung up`)
  for (const lane of lanes) await warmUpBurst(lane, warmUpSize)
  log(`burst of ${burstSize} calls`)
  const bursts = {} as Record<SutKind, BurstFigure>
  for (const lane of lanes) bursts[lane.kind] = await burst(lane, burstSize)
  log("floods with the burst's dialogs open")
  const floodsOpen: Record<SutKind, Array<FloodFigure>> = { raw: [], proxy: [] }
  for (let rep = 0; rep < Math.min(3, REPS); rep++) {
    for (const lane of lanes) floodsOpen[lane.kind].push(await floodOnce(lane))
  }
  log("hang-up")
  const after = {} as Record<SutKind, Awaited<ReturnType<typeof hangUpAll>>>
  for (const lane of lanes) after[lane.kind] = await hangUpAll(lane, bursts[lane.kind].channels)
  const rows = {} as DriverResult["rows"]
  for (const lane of lanes) {
    const { channels: _channels, memoryBefore, ...figure } = bursts[lane.kind]
    const { memoryAfter, dialogsLeft, queuesLeft } = after[lane.kind]
    const heapBack = memoryAfter === undefined || memoryBefore === undefined ? undefined : {
      delta: memoryAfter.heap - memoryBefore.heap,
      fraction: (memoryAfter.heap - memoryBefore.heap) / memoryBefore.heap
    }
    rows[lane.kind] = {
      floods: floods[lane.kind],
      floodsOpen: floodsOpen[lane.kind],
      commands: commands[lane.kind],
      burst: figure,
      heapBack,
      dialogsLeft,
      queuesLeft
    }
  }
  for (const lane of lanes) {
    await lane.client.close()
    await Effect.runPromise(Scope.close(lane.clientScope, Exit.void))
    await lane.sut.close()
    await lane.sim.close()
  }
  if (driver === "rabbitmq") await deleteBenchQueues(lanes, lanes.flatMap((lane) => lane.client.dialogIds()))
  return { driver, burstSize, rows }
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
const kb = (bytes: number | undefined) => bytes === undefined ? "n/a" : `${fmt(bytes / 1024, 2)} KB`
const signed = (n: number, digits: number) => `${n >= 0 ? "+" : ""}${fmt(n, digits)}`
const percent = (fraction: number) => `${signed(100 * fraction, 1)} %`
const total = (floods: ReadonlyArray<FloodFigure>, field: "lost" | "outOfOrder") =>
  floods.reduce((sum, f) => sum + f[field], 0)
const medianRate = (floods: ReadonlyArray<FloodFigure>) => median(floods.map((f) => f.eventsPerSecond))

const HEADER = [
  "bus",
  "system",
  "events/s (median)",
  "% of raw",
  "CPU µs/event",
  "lost (1 / burst open)",
  "out of order (1 / burst open)",
  "cmd RTT p50 / p99 ms",
  "new dialogs/s (calls placed/s)",
  "CPU µs/call (burst)",
  "heap per idle dialog",
  "RSS per idle dialog",
  "heap after hang-up vs before",
  "events/s with the burst open"
]

const tableOf = (results: ReadonlyArray<DriverResult>) => {
  const lines = [`| ${HEADER.join(" | ")} |`, `|${HEADER.map(() => "---").join("|")}|`]
  for (const result of results) {
    const raw = medianRate(result.rows.raw.floods)
    for (const kind of KINDS) {
      const row = result.rows[kind]
      const rate = medianRate(row.floods)
      const burstOf = `${fmt(row.burst.dialogsPerSecond)} (${fmt(row.burst.placedPerSecond)})` +
        (row.burst.received < result.burstSize ? ` ${fmt(row.burst.received)} of ${fmt(result.burstSize)}!` : "")
      const leftOver = [
        ...(row.dialogsLeft > 0 ? [`${row.dialogsLeft} dialogs left`] : []),
        ...(row.queuesLeft > 0 ? [`${row.queuesLeft} queues left`] : [])
      ]
      const back = row.heapBack === undefined ? "n/a" :
        `${percent(row.heapBack.fraction)} (${signed(row.heapBack.delta / result.burstSize, 0)} B/dialog)` +
        (leftOver.length > 0 ? ` (${leftOver.join(", ")})` : "")
      const cells = [
        result.driver,
        kind,
        fmt(rate),
        `${fmt((100 * rate) / raw)} %`,
        fmt(median(row.floods.map((f) => f.cpuMicrosPerEvent)), 1),
        `${total(row.floods, "lost")} / ${total(row.floodsOpen, "lost")}`,
        `${total(row.floods, "outOfOrder")} / ${total(row.floodsOpen, "outOfOrder")}`,
        `${fmt(row.commands.p50, 3)} / ${fmt(row.commands.p99, 3)}`,
        burstOf,
        fmt(row.burst.cpuMicrosPerCall, 1),
        kb(row.burst.heapPerDialog),
        kb(row.burst.rssPerDialog),
        back,
        fmt(medianRate(row.floodsOpen))
      ]
      lines.push(`| ${cells.join(" | ")} |`)
    }
  }
  return lines.join("\n")
}

/** A target judged on one bus: the proxy's figure against the raw pipe's, from this run. */
interface TargetResult {
  readonly bus: Driver | "simulator"
  readonly target: string
  /** The ratio, difference or count the target bounds; undefined when it cannot be computed. */
  readonly value: number | undefined
  readonly measured: string
  readonly verdict: "met" | "MISSED" | "n/a"
}

const targetsOf = (result: DriverResult): ReadonlyArray<TargetResult> => {
  const { driver, burstSize, rows: { raw, proxy } } = result
  const targets: Array<TargetResult> = []
  const judge = (target: string, value: number | undefined, met: (value: number) => boolean, measured: string) =>
    targets.push({
      bus: driver,
      target,
      value,
      measured,
      verdict: value === undefined || !Number.isFinite(value) ? "n/a" : met(value) ? "met" : "MISSED"
    })
  // A ratio only means something against a positive raw figure.
  const ratio = (ofProxy: number | undefined, ofRaw: number | undefined) =>
    ofProxy === undefined || ofRaw === undefined || ofRaw <= 0 ? undefined : ofProxy / ofRaw
  const times = (value: number | undefined) => value === undefined ? "n/a, raw figure ≤ 0" : `${fmt(value, 2)} × raw`
  const burstOf = `burst of ${fmt(burstSize)}`

  if (driver === "nats") {
    const rate = ratio(proxy.burst.dialogsPerSecond, raw.burst.dialogsPerSecond)
    judge("new dialogs/s ≥ 0.75 × raw", rate, (r) => r >= 0.75, `${times(rate)} ` +
      `(${fmt(proxy.burst.dialogsPerSecond)} vs ${fmt(raw.burst.dialogsPerSecond)}/s, ${burstOf})`)
    const cpu = ratio(proxy.burst.cpuMicrosPerCall, raw.burst.cpuMicrosPerCall)
    judge("CPU per new call ≤ 2 × raw", cpu, (r) => r <= 2, `${times(cpu)} ` +
      `(${fmt(proxy.burst.cpuMicrosPerCall, 1)} vs ${fmt(raw.burst.cpuMicrosPerCall, 1)} µs/call)`)
  }
  if (driver !== "memory") {
    const heap = ratio(proxy.burst.heapPerDialog, raw.burst.heapPerDialog)
    judge("heap per idle dialog ≤ 1.5 × raw", heap, (r) => r <= 1.5, `${times(heap)} ` +
      `(${kb(proxy.burst.heapPerDialog)} vs ${kb(raw.burst.heapPerDialog)}, ${burstOf})`)
    const rss = ratio(proxy.burst.rssPerDialog, raw.burst.rssPerDialog)
    judge("RSS per idle dialog ≤ 2 × raw", rss, (r) => r <= 2, `${times(rss)} ` +
      `(${kb(proxy.burst.rssPerDialog)} vs ${kb(raw.burst.rssPerDialog)}, ${burstOf})`)
    const back = proxy.heapBack?.fraction
    judge("heap after hang-up ≤ 5 % over before", back, (f) => f <= 0.05, back === undefined ? "n/a" :
      `${percent(back)} (raw ${raw.heapBack === undefined ? "n/a" : percent(raw.heapBack.fraction)})`)
    const p50 = proxy.commands.p50 - raw.commands.p50
    judge("cmd RTT p50 ≤ raw + 0.1 ms", p50, (d) => d <= 0.1, `${signed(p50, 3)} ms ` +
      `(${fmt(proxy.commands.p50, 3)} vs ${fmt(raw.commands.p50, 3)} ms)`)
    const p99 = ratio(proxy.commands.p99, raw.commands.p99)
    judge("cmd RTT p99 ≤ 1.3 × raw", p99, (r) => r <= 1.3, `${times(p99)} ` +
      `(${fmt(proxy.commands.p99, 3)} vs ${fmt(raw.commands.p99, 3)} ms)`)
    const floor = driver === "nats" ? 0.9 : 1
    const events = ratio(medianRate(proxy.floods), medianRate(raw.floods))
    judge(`events/s ≥ ${fmt(floor, 1)} × raw`, events, (r) => r >= floor, `${times(events)} ` +
      `(${fmt(medianRate(proxy.floods))} vs ${fmt(medianRate(raw.floods))}/s, medians)`)
  }
  const faults = (floods: ReadonlyArray<FloodFigure>, open: string) => {
    const lost = total(floods, "lost")
    const outOfOrder = total(floods, "outOfOrder")
    const inFloods = `in ${floods.length} flood${floods.length === 1 ? "" : "s"}`
    judge(`0 lost, 0 out of order, ${open} open`, lost + outOfOrder, (n) => n === 0,
      `${lost} lost, ${outOfOrder} out of order ${inFloods}`)
  }
  faults(proxy.floods, "1 dialog")
  faults(proxy.floodsOpen, `${fmt(burstSize + 1)} dialogs`)
  return targets
}

/** The simulator's flood: fast enough not to be what a benchmark of the proxy measures. */
const simulatorTargets = (flood: SimulatorFloodFigure): ReadonlyArray<TargetResult> => {
  const judge = (target: string, value: number, met: boolean, measured: string): TargetResult =>
    ({ bus: "simulator", target, value, measured, verdict: met ? "met" : "MISSED" })
  return [
    judge("flood CPU ≥ 150,000 frames/s", flood.cpuFramesPerSecond, flood.cpuFramesPerSecond >= 150_000,
      `${fmt(flood.cpuFramesPerSecond)} frames/s of its CPU`),
    judge("flood to another process ≥ 50,000 frames/s", flood.framesPerSecond, flood.framesPerSecond >= 50_000,
      `${fmt(flood.framesPerSecond)} frames/s`),
    judge("flood: 0 lost, 0 out of order", flood.outOfOrder, flood.outOfOrder === 0, `${flood.outOfOrder}`)
  ]
}

const targetLines = (targets: ReadonlyArray<TargetResult>) => {
  const width = (field: "target" | "measured") => Math.max(...targets.map((t) => t[field].length))
  return targets.map((t) =>
    `${t.bus.padEnd(9)} ${t.target.padEnd(width("target"))}  ${t.measured.padEnd(width("measured"))}  ${t.verdict}`
  ).join("\n")
}

const version = (command: string, args: ReadonlyArray<string>) => {
  try {
    const options: ExecFileSyncOptionsWithStringEncoding = { encoding: "utf8", stdio: "pipe", timeout: 20_000 }
    return execFileSync(command, args, options).trim()
  } catch {
    return "unknown"
  }
}

const main = async () => {
  const drivers = (process.env.BENCH_DRIVERS ?? "memory,nats,rabbitmq").split(",") as Array<Driver>
  const results: Array<DriverResult> = []
  for (const driver of drivers) results.push(await runDriver(driver))
  const simulator = await simulatorFlood()
  const machine = {
    date: new Date().toISOString(),
    cpus: `${cpus().length} × ${cpus()[0]?.model ?? "?"}`,
    memory: `${fmt(totalmem() / 2 ** 30, 1)} GiB`,
    node: process.version,
    nats: version("nats-server", ["--version"]),
    rabbitmq: version("rabbitmqctl", ["version"]),
    reps: REPS
  }
  const table = tableOf(results)
  const targets = [...results.flatMap(targetsOf), ...simulatorTargets(simulator)]
  const targetsSection = `Targets (the proxy against the raw pipe, this run):\n${targetLines(targets)}`
  process.stdout.write(`\n${JSON.stringify(machine)}\n\n${table}\n\n${targetsSection}\n`)
  mkdirSync(join(here, ".."), { recursive: true })
  writeFileSync(join(here, "..", "results.json"), JSON.stringify({ machine, results, simulator, targets }, null, 2))
  process.exit(0)
}

main().catch((error) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exit(1)
})
