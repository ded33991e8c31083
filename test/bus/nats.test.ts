import { connect } from "@nats-io/transport-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, TestServices } from "effect"
import { makeNatsBus, type NatsBus, type NatsOptions } from "../../src/bus/nats/index.js"
import { runBusConformance, uniqueTopic, untilConnected, waitUntil } from "./conformance.js"
import { proxyCases } from "./proxyCases.js"
import { makeRelay } from "./relay.js"

const NATS_PORT = 4222
const options = (port = NATS_PORT): NatsOptions => ({
  servers: `nats://127.0.0.1:${port}`,
  name: "conformance",
  reconnectTimeWaitMs: 100,
  connectRetryMaxMs: 500
})

runBusConformance("nats", {
  world: Effect.succeed({
    connect: makeNatsBus(options()),
    connectThrough: (port: number) => makeNatsBus(options(port))
  }),
  fanOut: true,
  brokerPort: NATS_PORT,
  instanceProcess: { bus: "nats", url: `nats://127.0.0.1:${NATS_PORT}` },
  leftBehind: (bus) =>
    Effect.sync(() => {
      const nats = bus as NatsBus
      const left: Array<string> = []
      if (nats.stats().subscriptions !== 0) left.push(`${nats.stats().subscriptions} bus subscriptions`)
      if (nats.clientSubscriptionCount() !== 0) left.push(`${nats.clientSubscriptionCount()} client subscriptions`)
      return left
    })
}, proxyCases)

describe("nats driver", () => {
  it.scopedLive("puts the seed's bytes on the wire: raw payload, no headers, no reply subject", () =>
    Effect.gen(function*() {
      const raw = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: `127.0.0.1:${NATS_PORT}` })),
        (nc) => Effect.promise(() => nc.close())
      )
      const topic = uniqueTopic("wire")
      const seen: Array<{ data: Uint8Array; reply: string | undefined; headers: boolean }> = []
      raw.subscribe(topic, {
        callback: (_error, msg) => {
          seen.push({ data: msg.data, reply: msg.reply, headers: msg.headers !== undefined })
        }
      })
      yield* Effect.promise(() => raw.flush())
      const bus = yield* makeNatsBus(options())
      const payload = `{"application":"foo","dialog_id":"d-1","server_id":"ast1","x":"\\u003c é"}`
      yield* bus.publish(topic, payload)
      yield* waitUntil("raw subscriber", () => seen.length === 1)
      expect(Buffer.from(seen[0]!.data).equals(Buffer.from(payload, "utf8"))).toBe(true)
      expect(seen[0]!.reply === undefined || seen[0]!.reply === "").toBe(true)
      expect(seen[0]!.headers).toBe(false)
    }))

  it.scopedLive("refuses a payload over the server's max_payload with a BusError, and goes on publishing", () =>
    Effect.gen(function*() {
      const bus = yield* makeNatsBus(options())
      yield* untilConnected(bus)
      const topic = uniqueTopic("max-payload")
      const received: Array<string> = []
      yield* bus.subscribe(topic, (m) => Effect.sync(() => received.push(m)))
      const probe = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: `127.0.0.1:${NATS_PORT}` })),
        (nc) => Effect.promise(() => nc.close())
      )
      const tooLarge = "x".repeat(probe.info!.max_payload + 1)
      const refused = yield* Effect.flip(bus.publish(topic, tooLarge))
      expect(refused).toMatchObject({ _tag: "BusError", driver: "nats", operation: "publish" })
      expect(refused.message).toMatch(/max_payload/)
      expect(bus.tryPublish(topic, tooLarge)).toBe(false)
      yield* bus.publish(topic, "after")
      yield* waitUntil("the next message", () => received.length === 1)
      expect(received).toEqual(["after"])
      expect(Effect.runSync(bus.state)).toBe("connected")
    }))

  it.scopedLive("starts while the server is unreachable, reports reconnecting, buffers, then connects", () =>
    Effect.gen(function*() {
      const relay = yield* makeRelay(NATS_PORT)
      relay.refuse(true)
      const bus = yield* makeNatsBus({ ...options(relay.port), publishBufferSize: 5 })
      expect(yield* bus.state).toBe("reconnecting")
      const topic = uniqueTopic("startup")
      const received: Array<string> = []
      const direct = yield* makeNatsBus(options())
      yield* direct.subscribe(topic, (m) => Effect.sync(() => received.push(m)))
      for (let i = 0; i < 8; i++) yield* bus.publish(topic, String(i))
      expect(bus.stats()).toMatchObject({ buffered: 5, dropped: 3 })
      relay.refuse(false)
      yield* waitUntil("connected", () => Effect.runSync(bus.state) === "connected")
      yield* waitUntil("buffered messages", () => received.length === 5)
      expect(received).toEqual(["0", "1", "2", "3", "4"])
    }))

  // On TestClock, which nothing advances: closing completes without waiting for any of the
  // driver's timeouts (its drain is cut at 2 s), whatever the machine's speed.
  it.scoped("closes without waiting for a timeout", () =>
    Effect.gen(function*() {
      const closing = yield* Effect.forkDaemon(Effect.scoped(Effect.gen(function*() {
        const bus = yield* makeNatsBus(options())
        yield* untilConnected(bus)
        yield* bus.subscribe(uniqueTopic("close"), () => Effect.void)
      })))
      yield* TestServices.provideLive(
        Fiber.join(closing).pipe(Effect.timeoutFail({ duration: 20_000, onTimeout: () => new Error("still closing") }))
      )
    }))
})
