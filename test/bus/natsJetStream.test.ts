/**
 * The NATS driver's JetStream mode on a nats-server of the test's own: the stream created or
 * checked at start, the acknowledgement window, what seed clients see, and recovery when the
 * stream goes away or the broker is down at start.
 */
import { describe, expect, it } from "@effect/vitest"
import type { MsgHdrs } from "@nats-io/transport-node"
import { Effect, Exit, Fiber, Option, Scope, TestClock, TestServices } from "effect"
import { makeNatsBus, type NatsOptions } from "../../src/bus/nats/index.js"
import { waitUntil } from "./conformance.js"
import { captureLogs, jetStreamApi, makeNatsServer, rawConnection, readStream } from "./natsServer.js"
import { makeRelay } from "./relay.js"

const options = (url: string, more: Partial<NatsOptions> = {}): NatsOptions => ({
  servers: url,
  name: "jetstream",
  subjectPrefix: "ari.",
  reconnectTimeWaitMs: 100,
  connectRetryMaxMs: 500,
  jetstream: { stream: "TEST" },
  ...more
})

describe("NATS JetStream: the stream", () => {
  it.scopedLive("is created at start with the configured retention and duplicate window", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      yield* makeNatsBus(options(server.url, {
        jetstream: { stream: "TEST", maxAgeMs: 3_600_000, maxBytes: 10_000_000, duplicateWindowMs: 90_000 }
      }))
      const info = yield* jetStreamApi(yield* rawConnection(server.url), "$JS.API.STREAM.INFO.TEST")
      expect(info.config).toMatchObject({
        subjects: ["ari.>"],
        retention: "limits",
        storage: "file",
        max_age: 3_600_000 * 1_000_000,
        max_bytes: 10_000_000,
        duplicate_window: 90_000 * 1_000_000
      })
    }))

  it.scopedLive("an existing stream that does not capture the topics, or removes what is read, refuses the start", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const admin = yield* rawConnection(server.url)
      yield* jetStreamApi(admin, "$JS.API.STREAM.CREATE.OTHER", { name: "OTHER", subjects: ["other.>"], max_age: 1e12 })
      yield* jetStreamApi(admin, "$JS.API.STREAM.CREATE.QUEUE", {
        name: "QUEUE",
        subjects: ["ari.>"],
        retention: "workqueue",
        max_age: 1e12
      })
      const elsewhere = yield* Effect.flip(makeNatsBus(options(server.url, { jetstream: { stream: "OTHER" } })))
      expect(elsewhere.message).toBe(
        "JetStream stream \"OTHER\" exists, but its subjects [\"other.>\"] do not capture the proxy's topics " +
          "(\"ari.>\")"
      )
      const workQueue = yield* Effect.flip(makeNatsBus(options(server.url, { jetstream: { stream: "QUEUE" } })))
      expect(workQueue.message).toContain("its retention is \"workqueue\"")
    }))

  it.scopedLive("an existing stream whose subjects capture the topics is used as it is", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const admin = yield* rawConnection(server.url)
      yield* jetStreamApi(admin, "$JS.API.STREAM.CREATE.WIDE", { name: "WIDE", subjects: ["ari.>"], max_bytes: 1e6 })
      const bus = yield* makeNatsBus(options(server.url, { subjectPrefix: "ari.eu.", jetstream: { stream: "WIDE" } }))
      yield* bus.publish("ari.eu.events_1", "{\"seq\":1}")
      yield* waitUntil("acknowledged", () => bus.stats().acknowledged === 1)
      expect((yield* jetStreamApi(admin, "$JS.API.STREAM.INFO.WIDE")).config).toMatchObject({ max_bytes: 1e6 })
    }))

  it.scopedLive("a prefix a stream cannot capture is refused before connecting", () =>
    Effect.gen(function*() {
      const refused = yield* Effect.flip(makeNatsBus(options("nats://127.0.0.1:1", { subjectPrefix: "ari_" })))
      expect(refused.message).toContain("whole subject tokens ending in \".\"")
    }))
})

describe("NATS JetStream: publishing", () => {
  it.scopedLive("at most ack_window messages await their acknowledgement; publish waits for room, none lost", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const bus = yield* makeNatsBus(options(server.url, { jetstream: { stream: "TEST", ackWindow: 8 } }))
      let taken = 0
      while (bus.tryPublish("ari.events_w", `{"seq":${taken}}`)) taken++
      expect(taken).toBe(8)
      expect(bus.stats().awaitingAck).toBe(8)
      for (let seq = 8; seq < 500; seq++) yield* bus.publish("ari.events_w", `{"seq":${seq}}`)
      yield* waitUntil("every acknowledgement", () => bus.stats().acknowledged === 500)
      const stored = yield* readStream(yield* rawConnection(server.url), "TEST")
      expect(stored).toEqual(Array.from({ length: 500 }, (_, seq) => `{"seq":${seq}}`))
    }))

  it.scopedLive("the window is bounded in bytes too", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const bus = yield* makeNatsBus(options(server.url, { jetstream: { stream: "TEST", ackWindowBytes: 100 } }))
      const payload = "x".repeat(30)
      let taken = 0
      while (bus.tryPublish("ari.events_b", payload)) taken++
      expect(taken).toBe(3)
    }))

  it.scopedLive("seed clients receive the payload unchanged, live; the message carries its id", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const seed = yield* rawConnection(server.url)
      const seen: Array<{ data: Uint8Array; headers: MsgHdrs | undefined }> = []
      seed.subscribe("ari.events_seed", {
        callback: (_error, msg) => {
          seen.push({ data: msg.data, headers: msg.headers })
        }
      })
      yield* Effect.promise(() => seed.flush())
      const bus = yield* makeNatsBus(options(server.url))
      const payload = "{\"type\":\"StasisStart\",\"x\":\"\\u003c é\"}"
      yield* bus.publish("ari.events_seed", payload)
      yield* bus.publish("ari.events_seed", payload)
      yield* waitUntil("the seed client's messages", () => seen.length === 2)
      expect(Buffer.from(seen[0]!.data).equals(Buffer.from(payload, "utf8"))).toBe(true)
      const ids = seen.map((message) => message.headers?.get("Nats-Msg-Id"))
      expect(ids[0]).toMatch(/.+-1$/)
      expect(ids[1]).toMatch(/.+-2$/)
    }))

  it.scopedLive("topics outside the prefix (a reply_to of the application's) are plain publishes", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const seed = yield* rawConnection(server.url)
      const seen: Array<boolean> = []
      seed.subscribe("replies_app", {
        callback: (_error, msg) => {
          seen.push(msg.headers === undefined)
        }
      })
      yield* Effect.promise(() => seed.flush())
      const bus = yield* makeNatsBus(options(server.url))
      expect(bus.tryPublish("replies_app", "{}")).toBe(true)
      yield* waitUntil("the reply", () => seen.length === 1)
      expect(seen).toEqual([true])
      expect(bus.stats().awaitingAck).toBe(0)
    }))

  it.scopedLive("broadcasts under the prefix reach every broadcast subscriber and await no acknowledgement", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const bus = yield* makeNatsBus(options(server.url, { jetstream: { stream: "TEST", ackWindow: 1 } }))
      const other = yield* makeNatsBus(options(server.url))
      const received: Array<Array<string>> = [[], []]
      yield* bus.subscribe("ari.presence", (m) => Effect.sync(() => received[0]!.push(m)), { broadcast: true })
      yield* other.subscribe("ari.presence", (m) => Effect.sync(() => received[1]!.push(m)), { broadcast: true })
      // A window of one: broadcasts that waited for acknowledgements would stall behind the first.
      for (let i = 0; i < 20; i++) yield* bus.broadcast("ari.presence", String(i))
      yield* waitUntil("both subscribers have the 20", () => received.every((r) => r.length === 20))
      expect(received[1]).toEqual(Array.from({ length: 20 }, (_, i) => String(i)))
      expect(bus.stats()).toMatchObject({ awaitingAck: 0, acknowledged: 0 })
    }))

  it.scopedLive("a stream deleted under the proxy is created again; what it did not take is written again", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const admin = yield* rawConnection(server.url)
      const bus = yield* makeNatsBus(options(server.url))
      for (let seq = 0; seq < 100; seq++) yield* bus.publish("ari.events_d", `{"seq":${seq}}`)
      yield* waitUntil("the first acknowledgements", () => bus.stats().acknowledged === 100)
      yield* jetStreamApi(admin, "$JS.API.STREAM.DELETE.TEST")
      for (let seq = 100; seq < 200; seq++) yield* bus.publish("ari.events_d", `{"seq":${seq}}`)
      yield* waitUntil(() => `every acknowledgement (${JSON.stringify(bus.stats())})`, () =>
        bus.stats().acknowledged === 200)
      const stored = yield* readStream(admin, "TEST")
      expect(stored).toEqual(Array.from({ length: 100 }, (_, i) => `{"seq":${i + 100}}`))
      expect(bus.stats().lost).toBe(0)
    }))

  it.scopedLive("a broker down at start does not hold up the start; the stream is made once it is up", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const relay = yield* makeRelay(server.port, server.host)
      relay.refuse(true)
      const bus = yield* makeNatsBus(options(`nats://127.0.0.1:${relay.port}`))
      expect(yield* bus.state).toBe("reconnecting")
      for (let seq = 0; seq < 5; seq++) yield* bus.publish("ari.events_s", `{"seq":${seq}}`)
      expect(bus.stats().buffered).toBe(5)
      relay.refuse(false)
      yield* waitUntil("acknowledged", () => bus.stats().acknowledged === 5)
      expect(yield* readStream(yield* rawConnection(server.url), "TEST")).toHaveLength(5)
    }))

  it.scopedLive("a message the stream refuses is counted as lost and logged, the others go on", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const admin = yield* rawConnection(server.url)
      yield* jetStreamApi(admin, "$JS.API.STREAM.CREATE.FULL", {
        name: "FULL",
        subjects: ["ari.>"],
        max_msgs: 3,
        discard: "new"
      })
      const capture = captureLogs()
      const bus = yield* capture.capturing(makeNatsBus(options(server.url, { jetstream: { stream: "FULL" } })))
      for (let seq = 0; seq < 5; seq++) yield* bus.publish("ari.events_full", `{"seq":${seq}}`)
      yield* waitUntil("every answer", () => bus.stats().awaitingAck === 0)
      expect(bus.stats()).toMatchObject({ acknowledged: 3, rejected: 2, lost: 2 })
      expect(capture.lines.filter((line) => line.message.startsWith("NATS refused a message"))).toHaveLength(1)
    }))

  it.scopedLive("acknowledgements that stop coming: logged, the stream checked, each message stored once", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const capture = captureLogs()
      const bus = yield* capture.capturing(makeNatsBus(options(server.url, {
        jetstream: { stream: "TEST", ackTimeoutMs: 150 }
      })))
      yield* server.pause
      for (let seq = 0; seq < 20; seq++) yield* bus.publish("ari.events_p", `{"seq":${seq}}`)
      yield* waitUntil("the timeout noticed", () =>
        capture.lines.some((line) => line.message.includes("no acknowledgement for 150 ms")))
      yield* server.resume
      yield* waitUntil(() => `every acknowledgement (${JSON.stringify(bus.stats())})`, () =>
        bus.stats().acknowledged === 20)
      expect(bus.stats().lost).toBe(0)
      const stored = yield* readStream(yield* rawConnection(server.url), "TEST")
      expect(stored).toEqual(Array.from({ length: 20 }, (_, seq) => `{"seq":${seq}}`))
    }))
})

describe("NATS: closing", () => {
  // On TestClock: the close waits for the last acknowledgements and the drain 2 s at most each, then
  // closes (1 s): timeouts inside a finalizer, which runs uninterruptibly, so they must be made
  // interruptible to cut anything short. The paused broker answers nothing meanwhile.
  it.scoped("a broker that stopped answering does not hold up the close past its timeouts", () =>
    Effect.gen(function*() {
      const server = yield* makeNatsServer
      const scope = yield* Scope.make()
      const bus = yield* makeNatsBus(options(server.url)).pipe(Scope.extend(scope))
      yield* server.pause
      yield* bus.publish("ari.events_p", "{\"seq\":0}") // its acknowledgement never comes
      const closing = yield* Effect.forkDaemon(Scope.close(scope, Exit.void))
      const deadline = Date.now() + 15_000
      for (let advanced = 0; Option.isNone(yield* Fiber.poll(closing)) && Date.now() < deadline;) {
        if (advanced < 10_000) {
          yield* TestClock.adjust(500)
          advanced += 500
        }
        yield* TestServices.provideLive(Effect.sleep(10))
      }
      yield* server.resume
      expect(Option.isSome(yield* Fiber.poll(closing)), "still closing").toBe(true)
    }))
})
