/**
 * The client's set of proxies (presence), fed with announcements by hand on the in-memory bus, on
 * TestClock: a proxy joins with its first heartbeat, is updated when what it says changes, leaves at
 * once with its goodbye, and leaves when unheard of for exactly 3 of its intervals.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Stream, TestClock } from "effect"
import { makeMemoryBus, type MemoryBus } from "../../src/bus/memory.js"
import { makeProxyDirectory, type ProxyChange } from "../../src/client/presence.js"
import { AsteriskSystem, PresenceAnnouncement } from "../../src/protocol/messages.js"
import { makeTopics } from "../../src/protocol/topics.js"
import { eventually } from "../support/harness.js"

const topics = makeTopics("site1.")

const announcement = (serverId: string, fields: Partial<PresenceAnnouncement> = {}) =>
  JSON.stringify(
    new PresenceAnnouncement({
      type: "heartbeat",
      server_id: serverId,
      asterisk: new AsteriskSystem({ version: "23.4.1", entity_id: "02:fc:00:00:00:01" }),
      applications: ["ivr"],
      ready: true,
      draining: false,
      active_dialogs: 0,
      proxy_version: "0.1.0",
      started_at: "2026-01-01T00:00:00.000Z",
      interval_ms: 1000,
      ...fields
    })
  )

/** The directory, once it listens (it probes then). */
const listeningDirectory = (bus: MemoryBus) =>
  Effect.gen(function*() {
    const probes: Array<string> = []
    yield* bus.subscribe(topics.presence, (payload) => Effect.sync(() => probes.push(payload)), { broadcast: true })
    const proxies = yield* makeProxyDirectory(bus, topics)
    yield* eventually(() => probes.includes("{\"type\":\"probe\"}"))
    return proxies
  })

const describeChange = (change: ProxyChange) =>
  change._tag === "Left" ? `Left ${change.proxy.serverId} ${change.reason}` : `${change._tag} ${change.proxy.serverId}`

describe("the client's set of proxies", () => {
  it.scoped("joins, updates, and leaves on a goodbye at once or after exactly 3 silent intervals", () =>
    Effect.gen(function*() {
      const bus = yield* makeMemoryBus
      const proxies = yield* listeningDirectory(bus)
      const seen: Array<string> = []
      const watching = yield* proxies.changes.pipe(
        Stream.runForEach((change) => Effect.sync(() => seen.push(describeChange(change)))),
        Effect.fork
      )
      const serverIds = Effect.map(proxies.current, (list) => list.map((proxy) => proxy.serverId).sort())

      yield* bus.broadcast(topics.presence, announcement("ast-a"))
      yield* bus.broadcast(topics.presence, announcement("ast-b", { interval_ms: 10_000 }))
      yield* eventually(() => seen.length === 2)
      expect(yield* serverIds).toEqual(["ast-a", "ast-b"])

      // A heartbeat that says the same again is no change; one that says something new is.
      yield* TestClock.adjust(1000)
      yield* bus.broadcast(topics.presence, announcement("ast-a"))
      yield* bus.broadcast(topics.presence, announcement("ast-a", { active_dialogs: 2 }))
      yield* eventually(() => seen.length === 3)
      expect((yield* proxies.current).find((proxy) => proxy.serverId === "ast-a")).toMatchObject({
        activeDialogs: 2,
        lastSeenAt: 1000,
        asterisk: { version: "23.4.1", entityId: "02:fc:00:00:00:01" }
      })

      // ast-a was last heard of at 1000 with an interval of 1000: it is gone at 4000, not before.
      yield* TestClock.adjust(2999)
      yield* Effect.yieldNow()
      expect(yield* serverIds).toEqual(["ast-a", "ast-b"])
      yield* TestClock.adjust(1)
      yield* eventually(() => seen.length === 4)
      expect(yield* serverIds).toEqual(["ast-b"])

      yield* bus.broadcast(topics.presence, announcement("ast-b", { type: "goodbye", draining: true }))
      yield* eventually(() => seen.length === 5)
      expect(yield* serverIds).toEqual([])
      expect(seen).toEqual(["Joined ast-a", "Joined ast-b", "Updated ast-a", "Left ast-a silent", "Left ast-b goodbye"])
      yield* Fiber.interrupt(watching)
    }))

  it.scoped("a stream started later begins with the proxies known then; malformed messages change nothing", () =>
    Effect.gen(function*() {
      const bus = yield* makeMemoryBus
      const proxies = yield* listeningDirectory(bus)
      yield* bus.broadcast(topics.presence, "not json")
      yield* bus.broadcast(topics.presence, "{\"type\":\"heartbeat\",\"server_id\":\"incomplete\"}")
      yield* bus.broadcast(topics.presence, announcement("ast-a"))
      yield* eventually(() => Effect.runSync(proxies.current).length === 1)
      const first = yield* proxies.changes.pipe(Stream.take(1), Stream.runCollect)
      expect(Chunk.toArray(first).map(describeChange)).toEqual(["Joined ast-a"])
    }))
})
