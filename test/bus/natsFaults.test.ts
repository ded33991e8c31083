/**
 * A broker crash in the middle of a flood: the proxy side's NATS bus publishes 20,000 ordered
 * messages to one topic while the test's own nats-server is killed (SIGKILL) ~100 ms in and started
 * again ~1 s later on the same port and store. What readers got is compared with what was sent
 * and with what the driver counted as lost.
 */
import { describe, expect, it } from "@effect/vitest"
import type { NatsConnection } from "@nats-io/transport-node"
import { Effect, Fiber, Schedule } from "effect"
import { makeNatsBus, type NatsBus, type NatsOptions } from "../../src/bus/nats/index.js"
import { waitUntil } from "./conformance.js"
import { captureLogs, makeNatsServer, type NatsServerProcess, rawConnection, readStream } from "./natsServer.js"
import { makeRelay, type Relay } from "./relay.js"

const SENT = 20_000
const PREFIX = "ari."
const TOPIC = `${PREFIX}events_fault`

const busOptions = (url: string, more: Partial<NatsOptions> = {}): NatsOptions => ({
  servers: url,
  name: "fault",
  subjectPrefix: PREFIX,
  reconnectTimeWaitMs: 100,
  connectRetryMaxMs: 500,
  ...more
})

/** What a reader got of `{"seq":0}`..`{"seq":SENT-1}`. */
const analyse = (payloads: ReadonlyArray<string>) => {
  const seen = new Set<number>()
  let duplicates = 0
  let outOfOrder = 0
  let highest = -1
  for (const payload of payloads) {
    const seq = (JSON.parse(payload) as { seq: number }).seq
    if (seen.has(seq)) {
      duplicates++
      continue
    }
    if (seq < highest) outOfOrder++
    highest = Math.max(highest, seq)
    seen.add(seq)
  }
  const missing: Array<number> = []
  for (let seq = 0; seq < SENT; seq++) if (!seen.has(seq)) missing.push(seq)
  return { received: seen.size, duplicates, outOfOrder, missing }
}

const subscribeRaw = (nc: NatsConnection, topic: string) => {
  const payloads: Array<string> = []
  nc.subscribe(topic, {
    callback: (_error, msg) => {
      payloads.push(msg.string())
    }
  })
  return Effect.as(Effect.promise(() => nc.flush()), payloads)
}

/** Until the connection has made its way back to the server (its subscriptions re-sent and processed). */
const backOnline = (nc: NatsConnection) =>
  Effect.tryPromise(() => nc.flush()).pipe(
    Effect.timeout("200 millis"),
    Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo("10 seconds"))),
    Effect.orDie
  )

interface Crash {
  /** Messages the publisher held in its reconnect buffer just before the restart. */
  readonly bufferedAtRestart: number
}

/**
 * Publishes SENT messages as the dialog actor does (tryPublish, else publish) at about 10 per
 * millisecond, while the server is killed 100 ms in and started again 1 s later. `whileDown` runs
 * before the kill, `onRestart` after the start (a relay held shut, then opened).
 */
const floodThroughCrash = (
  bus: NatsBus,
  server: NatsServerProcess,
  hooks: { readonly whileDown?: Effect.Effect<void>; readonly onRestart?: Effect.Effect<void> } = {}
) =>
  Effect.gen(function*() {
    let bufferedAtRestart = 0
    const crash = yield* Effect.fork(Effect.gen(function*() {
      yield* Effect.sleep("100 millis")
      yield* hooks.whileDown ?? Effect.void
      yield* server.kill
      yield* Effect.sleep("1 second")
      bufferedAtRestart = bus.stats().buffered
      yield* server.start
      yield* hooks.onRestart ?? Effect.void
    }))
    for (let seq = 0; seq < SENT; seq++) {
      const payload = `{"seq":${seq}}`
      if (!bus.tryPublish(TOPIC, payload)) yield* bus.publish(TOPIC, payload)
      if (seq % 10 === 9) yield* Effect.sleep("1 millis")
    }
    yield* Fiber.join(crash)
    return { bufferedAtRestart } satisfies Crash
  })

/**
 * Core NATS: the publisher goes through a relay held shut until the subscriber is back, so that
 * nothing it writes after the restart precedes the subscription.
 */
const coreCrash = (more: Partial<NatsOptions>) =>
  Effect.gen(function*() {
    const server = yield* makeNatsServer
    const subscriber = yield* rawConnection(server.url)
    const payloads = yield* subscribeRaw(subscriber, TOPIC)
    const relay: Relay = yield* makeRelay(server.port, server.host)
    const capture = captureLogs()
    const bus = yield* capture.capturing(makeNatsBus(busOptions(`nats://127.0.0.1:${relay.port}`, more)))
    yield* waitUntil("connected", () => Effect.runSync(bus.state) === "connected")
    const crash = yield* floodThroughCrash(bus, server, {
      whileDown: Effect.sync(() => relay.refuse(true)),
      onRestart: Effect.zipRight(backOnline(subscriber), Effect.sync(() => relay.refuse(false)))
    })
    yield* waitUntil(() => `the flood delivered (${JSON.stringify(bus.stats())})`, () => {
      const stats = bus.stats()
      return Effect.runSync(bus.state) === "connected" && stats.buffered === 0 &&
        analyse(payloads).received + stats.lost >= SENT
    })
    yield* Effect.sleep("200 millis") // a duplicate would arrive now
    return { bus, payloads, crash, lines: capture.lines }
  })

describe("NATS: the broker killed in the middle of a flood", () => {
  it.scopedLive("JetStream: the stream has every message once, in order; nothing lost or unaccounted", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const subscriber = yield* rawConnection(server.url)
      const live = yield* subscribeRaw(subscriber, TOPIC)
      const bus = yield* makeNatsBus(busOptions(server.url, {
        publishBufferSize: 100_000,
        jetstream: { stream: "FAULT", duplicateWindowMs: 60_000 }
      }))
      const crash = yield* floodThroughCrash(bus, server)
      yield* waitUntil(() => `every message acknowledged (${JSON.stringify(bus.stats())})`, () => {
        const stats = bus.stats()
        return stats.buffered === 0 && stats.awaitingAck === 0 && stats.acknowledged + stats.lost >= SENT
      })
      const reader = yield* rawConnection(server.url)
      const stored = analyse(yield* readStream(reader, "FAULT"))
      const stats = bus.stats()
      const seen = analyse(live)
      yield* Effect.logInfo("JetStream crash figures").pipe(Effect.annotateLogs({
        stream: JSON.stringify({ ...stored, missing: stored.missing.length }),
        coreSubscriber: JSON.stringify({ ...seen, missing: seen.missing.length }),
        driver: JSON.stringify(stats)
      }))

      expect(crash.bufferedAtRestart).toBeGreaterThan(0) // the outage really came in the middle
      expect(stats.reconnects).toBeGreaterThanOrEqual(1)
      expect(stats.lost).toBe(0)
      expect(stats.acknowledged).toBe(SENT)
      expect(stored.missing).toEqual([])
      expect(stored.duplicates).toBe(0)
      expect(stored.outOfOrder).toBe(0)
      // Core subscribers still get the messages live; republished ones may come twice, never out of order.
      expect(seen.received).toBeGreaterThan(0)
      expect(seen.outOfOrder).toBe(0)
    }), 30_000)

  it.scopedLive("core NATS, a buffer that covers the outage: nothing lost, what the dying socket took written again", () =>
    Effect.gen(function*() {
      const { bus, payloads, crash, lines } = yield* coreCrash({ publishBufferSize: 100_000 })
      const seen = analyse(payloads)
      const stats = bus.stats()
      yield* Effect.logInfo("core NATS crash figures").pipe(Effect.annotateLogs({
        subscriber: JSON.stringify({ ...seen, missing: seen.missing.length }),
        driver: JSON.stringify(stats)
      }))

      expect(crash.bufferedAtRestart).toBeGreaterThan(0)
      expect(stats.lost).toBe(0)
      expect(seen.missing).toEqual([])
      expect(seen.outOfOrder).toBe(0)
      // The server had read some of what was written again: those come twice, recognisable by their number.
      expect(seen.duplicates).toBeLessThanOrEqual(stats.republished)
      expect(stats.published).toBe(SENT)
      expect(lines.filter((line) => line.message.startsWith("NATS outage: messages lost"))).toEqual([])
    }), 30_000)

  it.scopedLive("core NATS, a byte budget smaller than the outage: every drop counted, one line with the count", () =>
    Effect.gen(function*() {
      const { bus, payloads, lines } = yield* coreCrash({ publishBufferSize: 100_000, publishBufferBytes: 16 * 1024 })
      const seen = analyse(payloads)
      const stats = bus.stats()
      yield* Effect.logInfo("core NATS crash figures, small buffer").pipe(Effect.annotateLogs({
        subscriber: JSON.stringify({ ...seen, missing: seen.missing.length }),
        driver: JSON.stringify(stats)
      }))

      expect(stats.dropped).toBeGreaterThan(0)
      expect(seen.duplicates).toBeLessThanOrEqual(stats.republished)
      expect(seen.outOfOrder).toBe(0)
      expect(seen.missing.length).toBeLessThanOrEqual(stats.dropped + stats.unconfirmedLost)
      expect(seen.received + stats.lost).toBeGreaterThanOrEqual(SENT)
      const outageLines = lines.filter((line) => line.message.startsWith("NATS outage: messages lost"))
      expect(outageLines).toHaveLength(1)
      expect(outageLines[0]!.annotations).toMatchObject({
        dropped: stats.dropped,
        unconfirmed: stats.unconfirmedLost,
        bufferBytes: 16 * 1024
      })
    }), 30_000)
})
