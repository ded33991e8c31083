/**
 * `npm run soak -- [--bus nats|rabbitmq] [--jetstream] [--calls 50] [--minutes 10] [--restart-every 60] [--down 2]
 * [--kill] [--lease-ms N] [--sample-every 10]`:
 * the proxy (its production composition, in a child process) under `calls` concurrent calls with
 * DTMF and commands for `minutes`, while its broker (a private one, see soak/broker.ts) is
 * restarted every `restart-every` seconds. A line every `sample-every` seconds, a summary at the
 * end, and the whole run in dist-bench/soak-results.json. docs/benchmarks.md, "Soak", says how to
 * read it.
 */
import { type ChildProcess, execFileSync, fork } from "node:child_process"
import { randomBytes } from "node:crypto"
import { createWriteStream, mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from "node:fs"
import { cpus, tmpdir, totalmem } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { Effect, Exit, Fiber, Logger, Scope } from "effect"
import { type BusShape, makeAmqpBus, makeAriClient, makeNatsBus } from "../src/client/index.js"
import { startSimulator } from "../src/simulator/index.js"
import { type Broker, type BusKind, freePort, startBroker } from "./broker.js"
import { makeCalls, type Tally } from "./calls.js"
import type { ProxyMemory, ProxyRequest, ProxySpec } from "./proxyWorker.js"

const USAGE = `npm run soak -- [options]
  --bus nats|rabbitmq    the broker (default nats)
  --jetstream            NATS: the proxy publishes into a JetStream stream (topics under "soak.")
  --calls N              concurrent calls (default 50)
  --minutes M            duration (default 10; fractions allowed)
  --restart-every S      restart the broker every S seconds (default 60; 0: never)
  --down S               seconds the broker stays down at each restart (default 2)
  --kill                 stop the broker with SIGKILL rather than SIGTERM
  --lease-ms MS          the proxy's dialog_lease_ms (default: its own, 5,000)
  --sample-every S       seconds between report lines (default 10)`

interface Options {
  readonly bus: BusKind
  readonly jetstream: boolean
  readonly calls: number
  readonly minutes: number
  readonly restartEverySeconds: number
  readonly downSeconds: number
  readonly kill: boolean
  readonly leaseMs: number | undefined
  readonly sampleEverySeconds: number
}

const parseOptions = (): Options => {
  const { values } = parseArgs({
    options: {
      bus: { type: "string", default: "nats" },
      jetstream: { type: "boolean", default: false },
      calls: { type: "string", default: "50" },
      minutes: { type: "string", default: "10" },
      "restart-every": { type: "string", default: "60" },
      down: { type: "string", default: "2" },
      kill: { type: "boolean", default: false },
      "lease-ms": { type: "string" },
      "sample-every": { type: "string", default: "10" },
      help: { type: "boolean", default: false }
    }
  })
  if (values.help) {
    process.stdout.write(USAGE + "\n")
    process.exit(0)
  }
  const number = (name: string, text: string, min: number) => {
    const value = Number(text)
    if (!Number.isFinite(value) || value < min) throw new Error(`--${name} must be a number ≥ ${min}\n${USAGE}`)
    return value
  }
  if (values.bus !== "nats" && values.bus !== "rabbitmq") throw new Error(`--bus must be nats or rabbitmq\n${USAGE}`)
  if (values.jetstream && values.bus !== "nats") throw new Error(`--jetstream is for --bus nats\n${USAGE}`)
  return {
    bus: values.bus,
    jetstream: values.jetstream,
    calls: Math.round(number("calls", values.calls, 1)),
    minutes: number("minutes", values.minutes, 0.1),
    restartEverySeconds: number("restart-every", values["restart-every"], 0),
    downSeconds: number("down", values.down, 0),
    kill: values.kill,
    leaseMs: values["lease-ms"] === undefined ? undefined : Math.round(number("lease-ms", values["lease-ms"], 1)),
    sampleEverySeconds: number("sample-every", values["sample-every"], 1)
  }
}

const here = dirname(fileURLToPath(import.meta.url))
const outDir = join(here, "..")
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The proxy's child process. */
interface ProxyProcess {
  readonly memory: () => Promise<ProxyMemory | undefined>
  readonly close: () => Promise<void>
  readonly killNow: () => void
}

const startProxy = async (spec: ProxySpec, logPath: string): Promise<ProxyProcess> => {
  const log = openSync(logPath, "w")
  const child: ChildProcess = fork(join(here, "proxyWorker.js"), [JSON.stringify(spec)], {
    execArgv: ["--expose-gc"],
    stdio: ["ignore", log, log, "ipc"]
  })
  closeSync(log)
  const replies = new Map<number, (value: unknown) => void>()
  let nextId = 0
  await new Promise<void>((resolve, reject) => {
    child.once("error", reject)
    child.once("exit", (code) => reject(new Error(`the proxy exited (${code}) before it was ready: see ${logPath}`)))
    child.on("message", (message: { ready?: boolean; id?: number; value?: unknown }) => {
      if (message.ready === true) resolve()
      else if (message.id !== undefined) replies.get(message.id)?.(message.value)
    })
  })
  child.removeAllListeners("exit")
  const alive = () => child.exitCode === null && child.signalCode === null
  /** Undefined when it does not answer within 10 s (or has died). */
  const ask = <A>(op: ProxyRequest["op"]) =>
    new Promise<A | undefined>((resolve) => {
      if (!alive()) return resolve(undefined)
      const id = ++nextId
      const timer = setTimeout(() => {
        replies.delete(id)
        resolve(undefined)
      }, 10_000)
      replies.set(id, (value) => {
        clearTimeout(timer)
        replies.delete(id)
        resolve(value as A)
      })
      child.send({ id, op } satisfies ProxyRequest)
    })
  return {
    memory: () => ask<ProxyMemory>("memory"),
    close: async () => {
      if (!alive()) return
      const exited = new Promise((resolve) => child.once("exit", resolve))
      await ask("close")
      if (alive()) child.kill("SIGKILL")
      await exited
    },
    killNow: () => {
      if (alive()) child.kill("SIGKILL")
    }
  }
}

/** The proxy's /metrics, or undefined when it does not answer. */
const scrape = async (port: number): Promise<string | undefined> => {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) })
    return await response.text()
  } catch {
    return undefined
  }
}

/** Each sample of one metric family: its label text and value. */
const metricSamples = (text: string | undefined, name: string) =>
  (text ?? "").split("\n").filter((line) => line.startsWith(name + "{") || line.startsWith(name + " ")).map(
    (line) => {
      const space = line.lastIndexOf(" ")
      return { labels: line.slice(name.length, space), value: Number(line.slice(space + 1)) }
    }
  )

const metricSum = (text: string | undefined, name: string) =>
  text === undefined ? undefined : metricSamples(text, name).reduce((sum, sample) => sum + sample.value, 0)

const waitReady = async (port: number, logPath: string) => {
  const deadline = Date.now() + 60_000
  for (;;) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2_000) })
      if (response.status === 200) return
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the proxy was not ready within 60 s: see ${logPath}`)
    await sleep(200)
  }
}

const percentile = (values: ReadonlyArray<number>, p: number) => {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

interface Sample {
  readonly seconds: number
  readonly callsUp: number
  readonly callsCompleted: number
  readonly callsFailed: number
  /** Resumed dialogs taken over (leases that lapsed). */
  readonly takeovers: number
  readonly events: number
  /** By `seq`, dialogs ended and open. */
  readonly eventsLost: number
  readonly eventsDuplicated: number
  readonly dtmfOutOfOrder: number
  readonly dtmfLost: number
  readonly commandsOk: number
  readonly commandErrors: number
  readonly commandsRacedHangup: number
  /** Of the commands answered since the previous sample (ms). */
  readonly commandP50: number | undefined
  readonly commandP99: number | undefined
  readonly brokerRestarts: number
  readonly proxyDialogs: number | undefined
  readonly proxyBusReconnects: number | undefined
  /** The proxy's, after a full GC (bytes). */
  readonly proxyRss: number | undefined
  readonly proxyHeap: number | undefined
}

const total = (counts: Record<string, number>) => Object.values(counts).reduce((sum, n) => sum + n, 0)
const fmt = (n: number | undefined, digits = 0) =>
  n === undefined ?
    "?" :
    n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
const mb = (bytes: number | undefined) => bytes === undefined ? "?" : fmt(bytes / 2 ** 20, 1)
const clock = (seconds: number) =>
  `${Math.floor(seconds / 60)}:${String(Math.floor(seconds % 60)).padStart(2, "0")}`
const breakdown = (counts: Record<string, number>) =>
  Object.entries(counts).filter(([, n]) => n > 0).sort(([, a], [, b]) => b - a).map(([kind, n]) => `${kind} ${fmt(n)}`)
    .join(", ")

const COLUMNS: ReadonlyArray<readonly [string, number, (sample: Sample) => string]> = [
  ["time", 6, (s) => clock(s.seconds)],
  ["up", 4, (s) => fmt(s.callsUp)],
  ["done", 6, (s) => fmt(s.callsCompleted)],
  ["failed", 6, (s) => fmt(s.callsFailed)],
  ["takeovers", 9, (s) => fmt(s.takeovers)],
  ["events", 8, (s) => fmt(s.events)],
  ["lost", 5, (s) => fmt(s.eventsLost)],
  ["dup", 5, (s) => fmt(s.eventsDuplicated)],
  ["order", 5, (s) => fmt(s.dtmfOutOfOrder)],
  ["dtmf lost", 9, (s) => fmt(s.dtmfLost)],
  ["cmd ok", 7, (s) => fmt(s.commandsOk)],
  ["cmd err", 7, (s) => fmt(s.commandErrors)],
  ["raced", 5, (s) => fmt(s.commandsRacedHangup)],
  ["p50 ms", 7, (s) => fmt(s.commandP50, 1)],
  ["p99 ms", 8, (s) => fmt(s.commandP99, 1)],
  ["restarts", 8, (s) => fmt(s.brokerRestarts)],
  ["dialogs", 7, (s) => fmt(s.proxyDialogs)],
  ["bus rc", 6, (s) => fmt(s.proxyBusReconnects)],
  ["RSS MB", 7, (s) => mb(s.proxyRss)],
  ["heap MB", 7, (s) => mb(s.proxyHeap)]
]
const header = () => COLUMNS.map(([title, width]) => title.padStart(width)).join(" ")
const lineOf = (sample: Sample) => COLUMNS.map(([, width, cell]) => cell(sample).padStart(width)).join(" ")

const version = (command: string, args: ReadonlyArray<string>) => {
  try {
    return execFileSync(command, args, { encoding: "utf8", stdio: "pipe", timeout: 20_000 }).trim()
  } catch {
    return "unknown"
  }
}

const say = (line: string) => process.stdout.write(line + "\n")

type Counts = Omit<Tally, "commandLatencies">
type MemoryRange = { readonly first: number; readonly last: number; readonly min: number; readonly max: number }

interface Summary {
  readonly seconds: number
  readonly counts: Counts
  readonly commandRtt: Record<"p50" | "p99" | "max", number | undefined>
  readonly restarts: ReadonlyArray<{ readonly seconds: number; readonly outageMs: number }>
  readonly proxy: {
    readonly rss: MemoryRange | undefined
    readonly heap: MemoryRange | undefined
    readonly busReconnects: number | undefined
    /** Messages the proxy's bus driver counted as lost, by reason (buffer full, unconfirmed at a disconnect, ...). */
    readonly busLost: Record<string, number>
    readonly busRepublished: number | undefined
    readonly busPublishFailures: number | undefined
    readonly eventsDropped: number | undefined
    readonly ariReconnects: number | undefined
    readonly dialogsEnded: Record<string, number>
  }
}

/** A count, and what it is made of when it is not zero. */
const countOf = (counts: Record<string, number>) =>
  total(counts) === 0 ? "0" : `${fmt(total(counts))} (${breakdown(counts)})`

const rangeOf = (range: MemoryRange | undefined) =>
  range === undefined ?
    "?" :
    `${mb(range.first)} → ${mb(range.last)} MB (min ${mb(range.min)}, max ${mb(range.max)})`

const summaryText = ({ seconds, counts: c, commandRtt, restarts, proxy }: Summary) => {
  const outages = restarts.map((restart) => restart.outageMs / 1000)
  const withoutBroker = outages.length === 0 ?
    "" :
    `, without broker ${fmt(Math.min(...outages), 1)}-${fmt(Math.max(...outages), 1)} s each`
  return [
    `summary (${clock(seconds)}):`,
    `  broker     restarts ${restarts.length}${withoutBroker}`,
    `  calls      placed ${fmt(c.callsPlaced)} (refused ${fmt(c.callsRefused)}), completed ${fmt(c.callsCompleted)}, ` +
    `failed ${countOf(c.callsFailed)}; taken over ${fmt(c.takeovers)} (leases lost ${fmt(c.leasesLost)}), ` +
    `duplicate dialogs ${fmt(c.duplicateDialogs)}, stray ${fmt(c.strayDialogs)}`,
    `  events     received ${fmt(c.events)}; lost by seq ${fmt(c.seqLost)} (in ${fmt(c.seqGaps)} gaps), ` +
    `duplicates dropped ${fmt(c.seqDuplicates)}`,
    `  DTMF       sent ${fmt(c.dtmfSent)}, received ${fmt(c.dtmfReceived)}, lost ${fmt(c.dtmfLost)}, ` +
    `out of order ${fmt(c.dtmfOutOfOrder)}, repeated ${fmt(c.dtmfRepeated)}, replayed ${fmt(c.dtmfReplayed)}; ` +
    `far-end errors ${fmt(c.farEndErrors)}`,
    `  commands   ok ${fmt(c.commandsOk)} (round trip p50 ${fmt(commandRtt.p50, 1)} ms, ` +
    `p99 ${fmt(commandRtt.p99, 1)} ms, max ${fmt(commandRtt.max)} ms), errors ${countOf(c.commandErrors)}; ` +
    `crossed the hangup ${countOf(c.commandsRacedHangup)}`,
    `  proxy      RSS ${rangeOf(proxy.rss)}, heap after GC ${rangeOf(proxy.heap)}`,
    `             bus reconnects ${fmt(proxy.busReconnects)}, bus lost ${countOf(proxy.busLost)}, ` +
    `republished ${fmt(proxy.busRepublished)}, publish failures ${fmt(proxy.busPublishFailures)}, ` +
    `events dropped ${fmt(proxy.eventsDropped)}, ` +
    `ARI reconnects ${fmt(proxy.ariReconnects)}; dialogs ended: ${breakdown(proxy.dialogsEnded)}`
  ].join("\n")
}

const main = async () => {
  const options = parseOptions()
  const durationMs = options.minutes * 60_000
  mkdirSync(outDir, { recursive: true })
  const proxyLogPath = join(outDir, "soak-proxy.log")
  const appLogPath = join(outDir, "soak-app.log")
  const workDir = mkdtempSync(join(tmpdir(), "ari-soak-"))
  const cleanups: Array<() => void> = []
  // Whatever happens to this process, its broker and proxy do not outlive it.
  process.on("exit", () => cleanups.forEach((cleanup) => cleanup()))

  const { kill, jetstream } = options
  const broker: Broker = await startBroker(options.bus, { dir: workDir, kill, jetstream })
  // JetStream needs a prefix of whole subject tokens; core NATS and RabbitMQ keep the seed's names.
  const prefix = options.jetstream ? "soak." : ""
  cleanups.push(broker.killNow)
  const sim = await startSimulator({ recordLogs: false, timings: { playbackDurationMs: 500 } })
  const application = `soak_${randomBytes(4).toString("hex")}`
  const httpPort = await freePort()
  const proxy = await startProxy({
    bus: options.bus,
    busUrl: broker.url,
    httpPort,
    application,
    stasisUrl: sim.url,
    websocketUrl: sim.wsUrl,
    username: sim.credentials.username,
    password: sim.credentials.password,
    leaseMs: options.leaseMs,
    jetstream: options.jetstream,
    subjectPrefix: prefix
  }, proxyLogPath)
  cleanups.push(proxy.killNow)
  await waitReady(httpPort, proxyLogPath)

  // The application side: its log lines (gaps, reconnects) go to a file, not between the report's.
  const appLog = createWriteStream(appLogPath)
  const appLogger = Logger.replace(
    Logger.defaultLogger,
    Logger.map(Logger.jsonLogger, (line) => void appLog.write(line + "\n"))
  )
  const clientScope = Effect.runSync(Scope.make())
  const makeBus: Effect.Effect<BusShape, unknown, Scope.Scope> = options.bus === "nats" ?
    makeNatsBus({ servers: broker.url, name: "soak-app" }) :
    makeAmqpBus({ url: broker.url, name: "soak-app" })
  const bus = await Effect.runPromise(Scope.extend(makeBus, clientScope).pipe(Effect.provide(appLogger)))
  while (Effect.runSync(bus.state) !== "connected") await sleep(20)
  const client = await Effect.runPromise(
    Scope.extend(makeAriClient(bus, { application, prefix }), clientScope).pipe(Effect.provide(appLogger))
  )
  const calls = makeCalls({ sim, client, calls: options.calls })
  let listening: () => void = () => undefined
  const listens = new Promise<void>((resolve) => {
    listening = resolve
  })
  const serving = Effect.runFork(calls.serve(Effect.sync(() => listening())).pipe(Effect.provide(appLogger)))
  await listens

  const stopMode = options.kill ? "SIGKILL" : "SIGTERM"
  const restartText = options.restartEverySeconds > 0 ?
    `restarted every ${options.restartEverySeconds} s (${stopMode}, ${options.downSeconds} s down)` :
    "never restarted"
  const leaseText = options.leaseMs === undefined ? "" : `; dialog_lease_ms ${options.leaseMs}`
  const busText = options.jetstream ? "nats (JetStream)" : options.bus
  say(`soak: ${busText}, ${options.calls} calls, ${options.minutes} min; broker ${restartText}${leaseText}`)
  say(`broker: ${broker.description}`)
  say(`logs: ${proxyLogPath} (proxy), ${appLogPath} (application); broker files in ${workDir}\n`)
  say(header())

  const began = Date.now()
  let ending = false
  let wakeAll: () => void = () => undefined
  const ended = new Promise<void>((resolve) => {
    wakeAll = resolve
  })
  const endNow = () => {
    ending = true
    wakeAll()
  }
  const until = (at: number) => Promise.race([sleep(Math.max(0, at - Date.now())), ended])
  let interrupts = 0
  process.on("SIGINT", () => {
    if (++interrupts > 1) process.exit(130)
    say("(interrupted: finishing the calls; again to quit at once)")
    endNow()
  })

  const restarts: Array<{ readonly seconds: number; readonly outageMs: number }> = []
  const restartLoop = async () => {
    if (options.restartEverySeconds <= 0) return
    for (let at = options.restartEverySeconds; at * 1000 < durationMs; at += options.restartEverySeconds) {
      await until(began + at * 1000)
      if (ending) return
      const outageMs = await broker.restart(options.downSeconds * 1000)
      restarts.push({ seconds: at, outageMs })
      say(`${clock(at).padStart(6)} broker restarted: ${fmt(outageMs / 1000, 1)} s without it`)
    }
  }

  const { tally } = calls
  let latencyMark = 0
  const samples: Array<Sample> = []
  const sample = async (): Promise<Sample> => {
    calls.sweep()
    const [memory, metrics] = await Promise.all([proxy.memory(), scrape(httpPort)])
    const live = calls.liveDelivery()
    const latencies = tally.commandLatencies.slice(latencyMark)
    latencyMark = tally.commandLatencies.length
    const taken: Sample = {
      seconds: (Date.now() - began) / 1000,
      callsUp: calls.up(),
      callsCompleted: tally.callsCompleted,
      callsFailed: total(tally.callsFailed),
      takeovers: tally.takeovers,
      events: tally.events,
      eventsLost: tally.seqLost + live.lost,
      eventsDuplicated: tally.seqDuplicates + live.duplicates,
      dtmfOutOfOrder: tally.dtmfOutOfOrder,
      dtmfLost: tally.dtmfLost,
      commandsOk: tally.commandsOk,
      commandErrors: total(tally.commandErrors),
      commandsRacedHangup: total(tally.commandsRacedHangup),
      commandP50: percentile(latencies, 50),
      commandP99: percentile(latencies, 99),
      brokerRestarts: restarts.length,
      proxyDialogs: metricSum(metrics, "ari_proxy_dialogs_active"),
      proxyBusReconnects: metricSum(metrics, "ari_proxy_bus_reconnects_total"),
      proxyRss: memory?.rss,
      proxyHeap: memory?.heap
    }
    samples.push(taken)
    say(lineOf(taken))
    return taken
  }
  const sampleLoop = async () => {
    // The last one is taken once the calls are over.
    for (let at = options.sampleEverySeconds; at * 1000 < durationMs; at += options.sampleEverySeconds) {
      await until(began + at * 1000)
      if (ending) return
      await sample()
    }
  }

  calls.start()
  const restarting = restartLoop()
  const sampling = sampleLoop()
  await until(began + durationMs)
  endNow()
  await Promise.all([restarting, sampling])
  say("(hanging up every call, waiting for their dialogs to end)")
  await calls.stop()
  const last = await sample()
  const metrics = await scrape(httpPort)

  await Effect.runPromise(Fiber.interrupt(serving))
  await Effect.runPromise(Scope.close(clientScope, Exit.void))
  await proxy.close()
  await sim.close()
  await broker.close()
  appLog.end()

  const memoryOf = (field: "proxyRss" | "proxyHeap") => {
    const values = samples.map((s) => s[field]).filter((value) => value !== undefined)
    return values.length === 0 ? undefined : {
      first: values[0]!,
      last: values.at(-1)!,
      min: Math.min(...values),
      max: Math.max(...values)
    }
  }
  const byLabel = (name: string, label: string) =>
    Object.fromEntries(metricSamples(metrics, name).map((sample) => [
      new RegExp(`${label}="([^"]*)"`).exec(sample.labels)?.[1] ?? "",
      sample.value
    ]))
  const proxyCounters = {
    busReconnects: metricSum(metrics, "ari_proxy_bus_reconnects_total"),
    busLost: byLabel("ari_proxy_bus_lost_messages_total", "reason"),
    busRepublished: metricSum(metrics, "ari_proxy_bus_republished_messages_total"),
    busPublishFailures: metricSum(metrics, "ari_proxy_bus_publish_failures_total"),
    eventsDropped: metricSum(metrics, "ari_proxy_events_dropped_total"),
    ariReconnects: metricSum(metrics, "ari_proxy_ari_reconnects_total"),
    dialogsEnded: byLabel("ari_proxy_dialogs_ended_total", "reason")
  }
  const { commandLatencies, ...counts } = tally
  const summary = {
    seconds: last.seconds,
    counts,
    commandRtt: {
      p50: percentile(commandLatencies, 50),
      p99: percentile(commandLatencies, 99),
      max: percentile(commandLatencies, 100)
    },
    restarts,
    proxy: { rss: memoryOf("proxyRss"), heap: memoryOf("proxyHeap"), ...proxyCounters }
  }
  say("\n" + summaryText(summary))

  const results = {
    date: new Date(began).toISOString(),
    options,
    broker: broker.description,
    machine: {
      cpus: `${cpus().length} × ${cpus()[0]?.model ?? "?"}`,
      memory: `${fmt(totalmem() / 2 ** 30, 1)} GiB`,
      node: process.version,
      broker: options.bus === "nats" ? version("nats-server", ["--version"]) : version("rabbitmqctl", ["version"])
    },
    ...summary,
    samples
  }
  const resultsPath = join(outDir, "soak-results.json")
  writeFileSync(resultsPath, JSON.stringify(results, null, 2))
  say(`\nresults: ${resultsPath}`)
  rmSync(workDir, { recursive: true, force: true })
  process.exit(0)
}

main().catch((error) => {
  process.stderr.write(`soak failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exit(1)
})
