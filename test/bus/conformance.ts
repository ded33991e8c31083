/**
 * The bus conformance suite: the same cases run against every driver (memory, NATS, RabbitMQ),
 * so the drivers are proven to keep the port's semantics (src/bus/Bus.ts) the same way.
 *
 * A driver's test file calls `runBusConformance(name, target)`. More cases (proxy-level: two
 * proxies, app instances, a whole call) can be passed as `extraCases`; each case receives the
 * target and runs in its own scope with the real clock.
 */
import type { AriMode } from "../support/harness.js"
import { describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Scope, TestServices } from "effect"
import { randomBytes } from "node:crypto"
import type { BusError, BusShape } from "../../src/bus/Bus.js"
import type { SeedTransport } from "../support/seedClient.js"
import { makeRelay } from "./relay.js"

/** One isolated "world" for a test: connections opened from it talk to each other. */
export interface BusWorld {
  /** Opens a new connection (its own client) to the broker; closed with the scope. */
  readonly connect: Effect.Effect<BusShape, BusError, Scope.Scope>
  /** Opens a connection to the broker listening on 127.0.0.1:`port` (a relay in front of it). */
  readonly connectThrough?: (port: number) => Effect.Effect<BusShape, BusError, Scope.Scope>
}

export interface BusConformanceTarget {
  readonly world: Effect.Effect<BusWorld, BusError, Scope.Scope>
  /** Plain subscriptions (no queue group) each receive every message (NATS, memory; not RabbitMQ). */
  readonly fanOut: boolean
  /** The broker's port, for the relay of the reconnect case; absent: the case is skipped. */
  readonly brokerPort?: number
  /**
   * After `topics` were each subscribed, unsubscribed and retired on `bus`, describes what is left
   * (broker queues, client subscriptions...): an empty list means nothing. May wait (retire grace).
   */
  readonly leftBehind: (bus: BusShape, topics: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, unknown>
  /** Subscribe/retire cycles of the leak case. Default 10,000. */
  readonly cycles?: number
  /**
   * How a seed (go-ari-library) client reaches this broker, where it differs from our driver
   * (RabbitMQ: its own connections, channels and queue declarations). Default: a world connection.
   */
  readonly seedTransport?: Effect.Effect<SeedTransport, unknown, Scope.Scope>
  /**
   * How an application instance in another process reaches this broker (test/support/appInstance.ts);
   * absent (the memory bus): such an instance runs in this process instead.
   */
  readonly instanceProcess?: { readonly bus: "nats" | "rabbitmq"; readonly url: string }
  /** How proxies of the proxy cases reach the simulator (default: they dial its websocket). */
  readonly ariMode?: AriMode
}

export interface BusCase {
  readonly name: string
  readonly timeoutMs?: number
  readonly run: (target: BusConformanceTarget) => Effect.Effect<void, unknown, Scope.Scope>
}

/** Every topic made by `uniqueTopic`, so a broker's test file can delete what its cases left. */
export const createdTopics = new Set<string>()

/** A topic name nobody else uses: parallel runs and other test files cannot collide. */
export const uniqueTopic = (label: string): string => {
  const topic = `conf_${label}_${randomBytes(6).toString("hex")}`
  createdTopics.add(topic)
  return topic
}

/**
 * Polls `predicate` until true; fails with `description` after `timeoutMs`. A function as
 * description is evaluated at the failure, so it can report the state reached ("have 123").
 * Real time, also in a test on TestClock.
 */
export const waitUntil = (description: string | (() => string), predicate: () => boolean, timeoutMs = 10_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (!predicate()) {
      if (Date.now() > deadline) {
        const what = typeof description === "string" ? description : description()
        return yield* Effect.fail(new Error(`timed out waiting for: ${what}`))
      }
      yield* TestServices.provideLive(Effect.sleep(Duration.millis(5)))
    }
  })

/**
 * Waits until a connection reports "connected". Drivers return before their first connection is
 * up and buffer what is published meanwhile (bounded: beyond `publishBufferSize` it is dropped and
 * counted), so a case that floods right away must wait for this first.
 */
export const untilConnected = (bus: BusShape, timeoutMs = 15_000) =>
  waitUntil(() => `${bus.driver} connection up (state ${Effect.runSync(bus.state)})`, () =>
    Effect.runSync(bus.state) === "connected", timeoutMs)

/** Driver statistics for failure messages, where the driver has them. */
export const describeStats = (bus: BusShape): string => {
  const stats = (bus as { stats?: () => unknown }).stats
  return stats === undefined ? "" : JSON.stringify(stats())
}

/** A handler that records what it receives. */
export const recorder = () => {
  const received: Array<string> = []
  const handler = (payload: string) =>
    Effect.sync(() => {
      received.push(payload)
    })
  return { received, handler }
}

const expectEqual = <A>(actual: A, expected: A, what: string) =>
  JSON.stringify(actual) === JSON.stringify(expected) ?
    Effect.void :
    Effect.fail(new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`))

const expectTrue = (condition: boolean, what: string) => condition ? Effect.void : Effect.fail(new Error(what))

const range = (n: number) => Array.from({ length: n }, (_, i) => String(i))

export const standardCases: ReadonlyArray<BusCase> = [
  {
    name: "keeps the order of one publisher's messages on a topic under load (20,000)",
    timeoutMs: 60_000,
    run: (target) =>
      Effect.gen(function*() {
        const world = yield* target.world
        const subscriber = yield* world.connect
        const publisher = yield* world.connect
        const topic = uniqueTopic("order")
        const { received, handler } = recorder()
        yield* subscriber.subscribe(topic, handler)
        // Under load (the whole suite on 2 cores) the publisher's first connection may not be up
        // yet: 20,000 messages would overflow its reconnect buffer (10,000) and half be dropped.
        yield* untilConnected(publisher)
        const messages = range(20_000).map((i) => `{"seq":${i}}`)
        for (const message of messages) yield* publisher.publish(topic, message)
        yield* waitUntil(
          () => `20,000 messages (have ${received.length}; publisher ${describeStats(publisher)})`,
          () => received.length >= messages.length,
          45_000
        )
        yield* expectEqual(received.length, messages.length, "count")
        const firstOutOfOrder = received.findIndex((m, i) => m !== messages[i])
        yield* expectEqual(firstOutOfOrder, -1, "first message out of order")
      })
  },
  {
    name: "a queue group delivers each message to exactly one member, all of them delivered",
    run: (target) =>
      Effect.gen(function*() {
        const world = yield* target.world
        const publisher = yield* world.connect
        const topic = uniqueTopic("group")
        const members = [recorder(), recorder(), recorder()]
        for (const member of members) {
          const connection = yield* world.connect
          yield* connection.subscribe(topic, member.handler, { queue: "workers" })
        }
        const messages = range(3_000)
        for (const message of messages) yield* publisher.publish(topic, message)
        const total = () => members.reduce((sum, m) => sum + m.received.length, 0)
        yield* waitUntil("all messages delivered to the group", () => total() >= messages.length)
        yield* Effect.sleep("200 millis") // a duplicate would arrive now
        const all = members.flatMap((m) => m.received).sort((a, b) => Number(a) - Number(b))
        yield* expectEqual(all, messages, "each message exactly once")
        for (const member of members) {
          yield* expectTrue(member.received.length > 0, "every member received some messages")
          const inOrder = member.received.every((m, i) => i === 0 || Number(m) > Number(member.received[i - 1]))
          yield* expectTrue(inOrder, "each member sees its share in order")
        }
      })
  },
  {
    name: "plain subscriptions each receive every message (fan-out), where the driver has it",
    run: (target) =>
      Effect.gen(function*() {
        if (!target.fanOut) return
        const world = yield* target.world
        const publisher = yield* world.connect
        const topic = uniqueTopic("fanout")
        const first = recorder()
        const second = recorder()
        yield* (yield* world.connect).subscribe(topic, first.handler)
        yield* (yield* world.connect).subscribe(topic, second.handler)
        const messages = range(500)
        for (const message of messages) yield* publisher.publish(topic, message)
        yield* waitUntil("both subscribers have everything", () =>
          first.received.length >= 500 && second.received.length >= 500)
        yield* expectEqual(first.received, messages, "first subscriber")
        yield* expectEqual(second.received, messages, "second subscriber")
      })
  },
  {
    name: "broadcast: every broadcast subscription receives every message, in order, on every driver",
    run: (target) =>
      Effect.gen(function*() {
        const world = yield* target.world
        const publisher = yield* world.connect
        const topic = uniqueTopic("broadcast")
        const subscribers = [recorder(), recorder(), recorder()]
        // Two on connections of their own, one beside the publisher.
        yield* (yield* world.connect).subscribe(topic, subscribers[0]!.handler, { broadcast: true })
        yield* (yield* world.connect).subscribe(topic, subscribers[1]!.handler, { broadcast: true })
        yield* publisher.subscribe(topic, subscribers[2]!.handler, { broadcast: true })
        const late = recorder()
        const scope = yield* Scope.make()
        yield* (yield* world.connect).subscribe(topic, late.handler, { broadcast: true }).pipe(Scope.extend(scope))
        yield* untilConnected(publisher)
        const messages = range(300)
        for (const message of messages.slice(0, 150)) yield* publisher.broadcast(topic, message)
        yield* waitUntil("the first half, by the subscriber that leaves", () => late.received.length >= 150)
        yield* Scope.close(scope, Exit.void)
        for (const message of messages.slice(150)) yield* publisher.broadcast(topic, message)
        yield* waitUntil(
          () => `every subscriber has all 300 (have ${subscribers.map((s) => s.received.length).join(", ")})`,
          () => subscribers.every((s) => s.received.length >= 300)
        )
        for (const [i, subscriber] of subscribers.entries()) {
          yield* expectEqual(subscriber.received, messages, `subscriber ${i}`)
        }
        yield* Effect.sleep("200 millis") // a message after its unsubscription would arrive now
        yield* expectEqual(late.received, messages.slice(0, 150), "the subscriber that left")
      })
  },
  {
    name: "a subscription is live once subscribe completes (publish from another connection right after)",
    run: (target) =>
      Effect.gen(function*() {
        const world = yield* target.world
        const subscriber = yield* world.connect
        const publisher = yield* world.connect
        const topics = Array.from({ length: 50 }, () => uniqueTopic("live"))
        const recorders = topics.map(() => recorder())
        for (let i = 0; i < topics.length; i++) {
          yield* subscriber.subscribe(topics[i]!, recorders[i]!.handler, { queue: "q" })
          yield* publisher.publish(topics[i]!, "first")
        }
        yield* waitUntil("every first message", () => recorders.every((r) => r.received.length === 1))
      })
  },
  {
    name: "closing the subscription's scope stops delivery",
    run: (target) =>
      Effect.gen(function*() {
        const world = yield* target.world
        const subscriber = yield* world.connect
        const publisher = yield* world.connect
        const topic = uniqueTopic("unsub")
        const { received, handler } = recorder()
        const scope = yield* Scope.make()
        yield* subscriber.subscribe(topic, handler).pipe(Scope.extend(scope))
        yield* publisher.publish(topic, "before")
        yield* waitUntil("the message before closing", () => received.length === 1)
        yield* Scope.close(scope, Exit.void)
        for (let i = 0; i < 20; i++) yield* publisher.publish(topic, "after")
        yield* Effect.sleep("300 millis")
        yield* expectEqual(received, ["before"], "nothing after the scope closed")
      })
  },
  {
    name: "a handler runs for one message at a time, in order",
    run: (target) =>
      Effect.gen(function*() {
        const world = yield* target.world
        const subscriber = yield* world.connect
        const publisher = yield* world.connect
        const topic = uniqueTopic("sequential")
        let running = 0
        let maxRunning = 0
        const received: Array<string> = []
        const handler = (payload: string) =>
          Effect.gen(function*() {
            running++
            maxRunning = Math.max(maxRunning, running)
            yield* Effect.sleep(Duration.millis(payload.endsWith("0") ? 2 : 0))
            received.push(payload)
            running--
          })
        yield* subscriber.subscribe(topic, handler)
        const messages = range(200)
        for (const message of messages) yield* publisher.publish(topic, message)
        yield* waitUntil("all messages handled", () => received.length >= messages.length)
        yield* expectEqual(maxRunning, 1, "handlers running at once")
        yield* expectEqual(received, messages, "handling order")
      })
  },
  {
    name: "leaves nothing behind after many subscribe/unsubscribe/retire cycles",
    timeoutMs: 180_000,
    run: (target) =>
      Effect.gen(function*() {
        const world = yield* target.world
        const bus = yield* world.connect
        const cycles = target.cycles ?? 10_000
        const prefix = uniqueTopic("cycle")
        const topics = Array.from({ length: cycles }, (_, i) => `${prefix}_${i}`)
        // A few dialogs at a time, like a busy proxy opening and closing calls.
        yield* Effect.forEach(topics, (topic) =>
          Effect.scoped(bus.subscribe(topic, () => Effect.void, { queue: "q" })).pipe(
            Effect.zipRight(bus.retire(topic))
          ), { concurrency: 16, discard: true })
        const left = yield* target.leftBehind(bus, topics)
        yield* expectEqual(left, [], "left behind")
      })
  },
  {
    name: "after the connection is cut, subscriptions work again and messages published meanwhile arrive in order",
    timeoutMs: 60_000,
    run: (target) =>
      Effect.gen(function*() {
        const world = yield* target.world
        if (target.brokerPort === undefined || world.connectThrough === undefined) return
        const relay = yield* makeRelay(target.brokerPort)
        const cutOff = yield* world.connectThrough(relay.port)
        const direct = yield* world.connect
        const toCutOff = uniqueTopic("cut_in")
        const fromCutOff = uniqueTopic("cut_out")
        const inbound = recorder()
        const outbound = recorder()
        yield* cutOff.subscribe(toCutOff, inbound.handler, { queue: "q" })
        yield* direct.subscribe(fromCutOff, outbound.handler, { queue: "q" })
        yield* direct.publish(toCutOff, "before")
        yield* cutOff.publish(fromCutOff, "before")
        yield* waitUntil("delivery before the cut", () =>
          inbound.received.length === 1 && outbound.received.length === 1)

        relay.refuse(true)
        relay.cut()
        yield* waitUntil("the driver notices the cut", () => Effect.runSync(cutOff.state) === "reconnecting")
        const during = range(100).map((i) => `during-${i}`)
        for (const message of during) yield* cutOff.publish(fromCutOff, message)
        yield* Effect.sleep("300 millis")
        yield* expectEqual(Effect.runSync(cutOff.state), "reconnecting", "state during the outage")
        relay.refuse(false)
        yield* waitUntil("reconnected", () => Effect.runSync(cutOff.state) === "connected", 30_000)

        yield* waitUntil("messages published during the outage", () => outbound.received.length >= 101)
        yield* expectEqual(outbound.received, ["before", ...during], "outage messages, in order")
        // The subscription made before the cut is live again.
        yield* direct.publish(toCutOff, "after")
        yield* waitUntil("delivery to the old subscription after the reconnect", () =>
          inbound.received.includes("after"))
        yield* cutOff.publish(fromCutOff, "after")
        yield* waitUntil("publishing after the reconnect", () => outbound.received.length === 102)
        yield* expectEqual(inbound.received.filter((m) => m === "before").length, 1, "no duplicate before the cut")
      })
  }
]

export const runBusConformance = (
  name: string,
  target: BusConformanceTarget,
  extraCases: ReadonlyArray<BusCase> = []
) =>
  describe(`bus conformance: ${name}`, () => {
    for (const busCase of [...standardCases, ...extraCases]) {
      it.scopedLive(busCase.name, () => busCase.run(target), busCase.timeoutMs ?? 30_000)
    }
  })

/** Waits until a Deferred completes or fails after `ms` (handy for extra cases). */
export const awaitWithin = <A, E>(deferred: Deferred.Deferred<A, E>, ms: number, what: string) =>
  Deferred.await(deferred).pipe(
    Effect.timeoutFail({ duration: Duration.millis(ms), onTimeout: () => new Error(`timed out: ${what}`) })
  )
