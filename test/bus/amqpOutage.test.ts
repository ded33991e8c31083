/**
 * RabbitMQ outages under load: a publisher floods one queue through a TCP relay (test/bus/relay.ts)
 * that is cut mid-flood and refuses connections for 1.5 s; a consumer on the broker itself checks
 * what arrived. What the outage buffer could not hold must be counted and logged, nothing else may
 * be missing, and the order must hold (a republished message may come twice, never late).
 * Then the same through the proxy: a flooded dialog read by the typed client.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import amqp from "amqplib"
import { Chunk, Effect, Fiber, HashMap, Logger, LogLevel, Option, Stream } from "effect"
import { type AmqpBus, type AmqpOptions, makeAmqpBus } from "../../src/bus/amqp/index.js"
import { makeAriClient } from "../../src/client/AriClient.js"
import { renderMetrics } from "../../src/proxy/http.js"
import { startProxy, startSim } from "../support/harness.js"
import { createdTopics, uniqueTopic, untilConnected, waitUntil } from "./conformance.js"
import { makeRelay, type Relay } from "./relay.js"

const AMQP_PORT = 5672
const options = (port = AMQP_PORT): AmqpOptions => ({
  url: `amqp://guest:guest@127.0.0.1:${port}`,
  name: "outage",
  queueDeleteGraceMs: 200,
  reconnectMaxMs: 300
})

afterAll(async () => {
  const connection = await amqp.connect(`amqp://guest:guest@127.0.0.1:${AMQP_PORT}`)
  const channel = await connection.createChannel()
  for (const topic of createdTopics) await channel.deleteQueue(topic).catch(() => undefined)
  await connection.close()
})

interface LogLine {
  readonly message: string
  readonly annotations: Record<string, unknown>
}

/** Makes `bus` with its log lines collected in `lines` (the driver's background fibers included). */
const withLogsIn = (lines: Array<LogLine>) => <A, E, R>(bus: Effect.Effect<A, E, R>) =>
  bus.pipe(Effect.provide(Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ annotations, message }) => {
      const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
      lines.push({ message: text, annotations: Object.fromEntries(HashMap.toEntries(annotations)) })
    })
  )))

/** The messages the driver's log lines say an outage dropped. */
const droppedLogged = (lines: ReadonlyArray<LogLine>) =>
  lines
    .filter((line) => line.message.includes("messages dropped"))
    .reduce((sum, line) => sum + Number(line.annotations.dropped), 0)

/** From ~100 ms on: the connection is cut and refused for `outageMs`, then let through again. */
const outage = (relay: Relay, outageMs: number) =>
  Effect.gen(function*() {
    yield* Effect.sleep("100 millis")
    relay.refuse(true)
    relay.cut()
    yield* Effect.sleep(outageMs)
    relay.refuse(false)
  })

/**
 * The most the publisher held at once while disconnected (connected, a publisher may wait with its
 * message beyond the bounds: that is backpressure, not the outage buffer).
 */
const watchOutageBuffer = (bus: AmqpBus) => {
  const most = { messages: 0, bytes: 0 }
  const watch = Effect.gen(function*() {
    for (;;) {
      if ((yield* bus.state) === "reconnecting") {
        const { buffered, bufferedBytes } = bus.stats()
        most.messages = Math.max(most.messages, buffered)
        most.bytes = Math.max(most.bytes, bufferedBytes)
      }
      yield* Effect.sleep("2 millis")
    }
  })
  return { most, watch }
}

/** A message of exactly 100 UTF-8 bytes (58 UTF-16 units: the budget counts bytes) carrying `n`. */
const messageOf = (n: number) => String(n).padStart(6, "0") + ":" + "é".repeat(42) + "!".repeat(9)
const MESSAGE_BYTES = 100

interface FloodOutcome {
  readonly sent: number
  /** Distinct messages the consumer got. */
  readonly received: number
  readonly duplicates: number
  /** Messages that arrived after a later one had (a duplicate aside): must be 0. */
  readonly late: number
  /** Counted as lost by the publisher (`stats().dropped`). */
  readonly dropped: number
  /** The sum of the `dropped` of its outage log lines. */
  readonly droppedLogged: number
  readonly republished: number
  readonly reconnects: number
  /** The most held in the outage buffer at once. */
  readonly mostBuffered: number
  readonly mostBufferedBytes: number
}

/**
 * 20,000 numbered messages at about 8 per millisecond (2.5 s) to one queue through the relay; the
 * connection is cut ~100 ms in and refused for 1.5 s. Waits for the publisher to be done and the
 * consumer to go quiet, then says what arrived.
 */
const floodThroughOutage = (budget: Pick<AmqpOptions, "publishBufferSize" | "publishBufferBytes">) =>
  Effect.gen(function*() {
    const total = 20_000
    const perMs = 8
    const lines: Array<LogLine> = []
    const relay = yield* makeRelay(AMQP_PORT)
    const publisher = yield* makeAmqpBus({ ...options(relay.port), ...budget }).pipe(withLogsIn(lines))
    const consumer = yield* makeAmqpBus(options()).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
    const topic = uniqueTopic("outage")
    const received: Array<number> = []
    yield* consumer.subscribe(topic, (message) => {
      received.push(Number(message.slice(0, 6)))
    })
    yield* untilConnected(publisher)
    const { most, watch } = watchOutageBuffer(publisher)
    const watching = yield* Effect.fork(watch)
    const cut = yield* Effect.fork(outage(relay, 1_500))
    const started = Date.now()
    let sent = 0
    while (sent < total) {
      const due = Math.min(total, (Date.now() - started) * perMs)
      while (sent < due) yield* publisher.publish(topic, messageOf(sent++))
      yield* Effect.sleep("1 millis")
    }
    yield* Fiber.join(cut)
    yield* waitUntil(() => `publisher done (${JSON.stringify(publisher.stats())})`, () => {
      const stats = publisher.stats()
      return Effect.runSync(publisher.state) === "connected" && stats.buffered === 0 && stats.unconfirmed === 0
    }, 20_000)
    yield* Fiber.interrupt(watching)
    // Every confirmed message is in the queue: wait for the consumer to go quiet.
    let heard = -1
    while (heard !== received.length) {
      heard = received.length
      yield* Effect.sleep("300 millis")
    }
    const seen = new Set<number>()
    let duplicates = 0
    let late = 0
    let highest = -1
    for (const n of received) {
      if (seen.has(n)) {
        duplicates++
        continue
      }
      seen.add(n)
      if (n < highest) late++
      highest = Math.max(highest, n)
    }
    const stats = publisher.stats()
    const outcome: FloodOutcome = {
      sent,
      received: seen.size,
      duplicates,
      late,
      dropped: stats.dropped,
      droppedLogged: droppedLogged(lines),
      republished: stats.republished,
      reconnects: stats.reconnects,
      mostBuffered: most.messages,
      mostBufferedBytes: most.bytes
    }
    console.info(`RabbitMQ outage flood ${JSON.stringify(budget)}: ${JSON.stringify(outcome)}`)
    return outcome
  })

/** What must hold whatever the budget: losses all counted and logged, order kept, the outage seen. */
const expectAccounted = (outcome: FloodOutcome) => {
  expect(outcome.reconnects).toBe(1)
  expect(outcome.mostBuffered).toBeGreaterThan(0) // the cut came mid-flood
  expect(outcome.late).toBe(0)
  expect(outcome.received + outcome.dropped).toBeGreaterThanOrEqual(outcome.sent) // nothing unaccounted
  expect(outcome.droppedLogged).toBe(outcome.dropped)
}

describe("rabbitmq: an outage during a flood", () => {
  it.scopedLive("with a buffer that covers the outage: nothing lost, order kept, only republished ones twice", () =>
    Effect.gen(function*() {
      const outcome = yield* floodThroughOutage({ publishBufferSize: 20_000 })
      expectAccounted(outcome)
      expect(outcome.dropped).toBe(0)
      expect(outcome.received).toBe(outcome.sent)
      expect(outcome.duplicates).toBeLessThanOrEqual(outcome.republished)
    }), 60_000)

  it.scopedLive("with a buffer of 2,000 messages: it holds no more, every message it could not hold is counted", () =>
    Effect.gen(function*() {
      const outcome = yield* floodThroughOutage({ publishBufferSize: 2_000 })
      expectAccounted(outcome)
      expect(outcome.mostBuffered).toBeLessThanOrEqual(2_000)
      expect(outcome.dropped).toBeGreaterThan(0)
    }), 60_000)

  it.scopedLive("with a budget of 150,000 bytes: the bytes bound the buffer, every message beyond is counted", () =>
    Effect.gen(function*() {
      const budget = 1_500 * MESSAGE_BYTES
      const outcome = yield* floodThroughOutage({ publishBufferSize: 100_000, publishBufferBytes: budget })
      expectAccounted(outcome)
      expect(outcome.mostBufferedBytes).toBeLessThanOrEqual(budget)
      expect(outcome.mostBuffered).toBeLessThanOrEqual(1_500)
      expect(outcome.dropped).toBeGreaterThan(0)
    }), 60_000)
})

/**
 * A call whose dialog gets a flood of 10,000 events while the proxy's bus connection is cut (the
 * client's is not) for 1.5 s; the typed client reads the dialog until it ends.
 */
const dialogFloodedThroughOutage = (publishBufferSize: number) =>
  Effect.gen(function*() {
    const application = uniqueTopic("app")
    const serverId = "ast-outage"
    const relay = yield* makeRelay(AMQP_PORT)
    const lines: Array<LogLine> = []
    const proxyBus = yield* makeAmqpBus({ ...options(relay.port), publishBufferSize }).pipe(withLogsIn(lines))
    const clientBus = yield* makeAmqpBus(options()).pipe(Logger.withMinimumLogLevel(LogLevel.Warning))
    yield* untilConnected(proxyBus)
    const sim = yield* startSim()
    const { proxy, metrics: proxyMetrics } = yield* startProxy(sim, proxyBus, {
      applications: [application],
      serverId,
      dialogMailboxSize: 50_000
    })
    const { topics } = proxy
    for (const topic of [topics.unrouted(application), topics.dialogRequests(application)]) createdTopics.add(topic)
    createdTopics.add(topics.dialogRequests(application, serverId))
    const client = yield* makeAriClient(clientBus, { application })
    const nextDialog = yield* Stream.toPull(client.dialogs)
    const channelId = sim.placeCall({ app: application })
    const dialog = Chunk.unsafeHead(yield* Effect.orDie(nextDialog))
    for (const topic of [topics.events(dialog.id), topics.commands(dialog.id), topics.responses(dialog.id)]) {
      createdTopics.add(topic)
    }
    yield* dialog.waitFor("StasisStart")
    let digits = 0
    yield* Effect.forkScoped(Stream.runForEach(dialog.events, (event) =>
      Effect.sync(() => {
        if (event.type === "ChannelDtmfReceived") digits++
      })))

    const flood = 10_000
    const before = proxyBus.stats().published
    const flooding = yield* Effect.fork(Effect.promise(() => sim.flood(application, flood, { channelId })))
    yield* waitUntil("the flood under way", () => proxyBus.stats().published >= before + 1_000)
    relay.refuse(true)
    relay.cut()
    yield* Effect.sleep("750 millis")
    // Mid-outage, /metrics shows what waits.
    const metrics = yield* renderMetrics({ proxy, bus: proxyBus, metrics: proxyMetrics })
    const sample = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(metrics)?.[1])
    expect(sample("ari_proxy_bus_connected")).toBe(0)
    expect(sample("ari_proxy_bus_buffered_messages")).toBe(proxyBus.stats().buffered)
    expect(sample("ari_proxy_bus_buffered_bytes")).toBe(proxyBus.stats().bufferedBytes)
    expect(sample("ari_proxy_bus_buffered_bytes")).toBeGreaterThan(0)
    expect(sample("ari_proxy_bus_dropped_messages_total")).toBe(proxyBus.stats().dropped)
    yield* Effect.sleep("750 millis")
    relay.refuse(false)
    yield* Fiber.join(flooding)

    // The call ends: its last events come after any gap, so the client sees every gap.
    yield* waitUntil("the flood published", () => proxyBus.stats().buffered === 0, 20_000)
    sim.hangup(channelId)
    // The end once failed to reach the client under heavy load (not reproduced since): if it
    // does not come, the failure says where it stopped.
    const ended = yield* Effect.timeout(dialog.ended, "30 seconds").pipe(Effect.option)
    if (Option.isNone(ended)) {
      const proxyDialogs = proxy.dialogs().map(({ depth, id, state }) => ({
        id,
        depth,
        ended: state.ended,
        ending: state.ending,
        announced: state.announced,
        holding: state.holding,
        released: state.released,
        queued: state.queue.length
      }))
      const seen = yield* dialog.delivery
      return yield* Effect.dieMessage(
        `the dialog's end never reached the client: ${
          JSON.stringify({ proxyDialogs, bus: proxyBus.stats(), client: seen, digits })
        }`
      )
    }
    const delivery = yield* dialog.delivery
    const stats = proxyBus.stats()
    const missing = delivery.gaps.reduce((sum, gap) => sum + gap.missing, 0)
    console.info(`RabbitMQ outage under the proxy: ${JSON.stringify({ flood, digits, missing, delivery, stats })}`)
    expect(stats.reconnects).toBe(1)
    expect(droppedLogged(lines)).toBe(stats.dropped)
    return { flood, digits, missing, duplicates: delivery.duplicates, dropped: stats.dropped }
  })

describe("rabbitmq: an outage under the proxy", () => {
  it.scopedLive("a buffer that covers the outage: the typed client gets every event of the flooded dialog once", () =>
    Effect.gen(function*() {
      const outcome = yield* dialogFloodedThroughOutage(50_000)
      expect(outcome.dropped).toBe(0)
      expect(outcome.missing).toBe(0)
      expect(outcome.digits).toBe(outcome.flood)
    }), 60_000)

  it.scopedLive("a buffer too small: the client's gaps are exactly the events the proxy counted as dropped", () =>
    Effect.gen(function*() {
      // Larger than the confirm window (4,096): every unconfirmed message is kept, so what is
      // dropped was never sent and the count is exact.
      const outcome = yield* dialogFloodedThroughOutage(5_000)
      expect(outcome.dropped).toBeGreaterThan(0)
      expect(outcome.missing).toBe(outcome.dropped)
      expect(outcome.digits + outcome.dropped).toBe(outcome.flood)
    }), 60_000)
})
