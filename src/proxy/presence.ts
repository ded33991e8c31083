/**
 * Presence (a protocol extension, docs/protocol.md): the proxy says on the presence topic, a
 * broadcast every client receives, who it is and how it is: a heartbeat every
 * `presence_interval_ms`, at once when its readiness changes or a client probes, and a goodbye
 * once its drain is over. Clients forget a proxy unheard of for 3 intervals (one killed says
 * nothing). The Asterisk version and entity id come from ARI (`GET /asterisk/info`) after each
 * connect: a reconnect may find another Asterisk behind the same address.
 */
import { Clock, Effect, Schedule, Schema, Stream } from "effect"
import type { Scope } from "effect"
import type { AriRestShape } from "../ari/rest.js"
import type { AriConnectionState } from "../ari/socket.js"
import type { BusShape } from "../bus/Bus.js"
import type { ProxyMetrics } from "../observability/metrics.js"
import { packageVersion } from "../observability/processMetrics.js"
import { isJsonObject, parseJsonObject } from "../protocol/json.js"
import { AsteriskSystem, PresenceAnnouncement, PresenceMessage } from "../protocol/messages.js"
import type { Topics } from "../protocol/topics.js"

export interface PresenceOptions {
  readonly bus: BusShape
  readonly topics: Topics
  readonly serverId: string
  readonly applications: ReadonlyArray<string>
  /** 0: no presence at all (no heartbeat, no goodbye, no ARI request). */
  readonly intervalMs: number
  readonly rest: AriRestShape
  /** The ARI socket's state, then every change. */
  readonly ariChanges: Stream.Stream<AriConnectionState>
  readonly ready: Effect.Effect<boolean>
  readonly draining: () => boolean
  readonly activeDialogs: () => number
  /** The proxy's metrics, which count the messages published. */
  readonly metrics: ProxyMetrics
}

export interface Presence {
  /** What the proxy would announce now. */
  readonly describe: Effect.Effect<PresenceAnnouncement>
  /** A heartbeat now (readiness changed). */
  readonly announce: Effect.Effect<void>
  /** The goodbye, once; no heartbeat follows it. */
  readonly goodbye: Effect.Effect<void>
}

/** `system` of ARI's `GET /asterisk/info`, if the answer has one. */
const readSystem = (body: string): AsteriskSystem | undefined => {
  const system = parseJsonObject(body)?.system
  if (!isJsonObject(system) || typeof system.version !== "string" || typeof system.entity_id !== "string") {
    return undefined
  }
  return new AsteriskSystem({ version: system.version, entity_id: system.entity_id })
}

const decodePresence = Schema.decodeUnknownOption(PresenceMessage)

export const startPresence = (options: PresenceOptions): Effect.Effect<Presence, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { bus, topics } = options
    const startedAt = new Date(yield* Clock.currentTimeMillis).toISOString()
    let asterisk: AsteriskSystem | undefined
    let gone = false

    const describe = Effect.map(options.ready, (ready) => {
      const draining = options.draining()
      return new PresenceAnnouncement({
        type: "heartbeat",
        server_id: options.serverId,
        asterisk: asterisk ?? null,
        applications: options.applications,
        ready: ready && !draining,
        draining,
        active_dialogs: options.activeDialogs(),
        proxy_version: packageVersion,
        started_at: startedAt,
        interval_ms: options.intervalMs
      })
    })

    const send = (announcement: PresenceAnnouncement) =>
      bus.broadcast(topics.presence, JSON.stringify(announcement)).pipe(
        Effect.tap(() => options.metrics.presenceAnnounced.inc(announcement.type)),
        Effect.catchAll((error) => Effect.logWarning("could not publish presence", error.message))
      )

    // While the bus is down a heartbeat would only be stale when it finally went out.
    const announce = Effect.gen(function*() {
      if (gone || options.intervalMs === 0 || (yield* bus.state) !== "connected") return
      yield* send(yield* describe)
    })

    const goodbye = Effect.gen(function*() {
      if (gone || options.intervalMs === 0) return
      gone = true
      yield* send(new PresenceAnnouncement({ ...(yield* describe), type: "goodbye" }))
    })

    if (options.intervalMs === 0) return { describe, announce, goodbye }

    // Asked again a few times: a request sent as the socket comes up may find the transport not ready yet.
    const learnAsterisk = options.rest.execute({ method: "GET", url: "/asterisk/info?only=system", body: "" }).pipe(
      Effect.flatMap((reply) => {
        const system = reply.status === 200 ? readSystem(reply.body) : undefined
        if (system === undefined) return Effect.fail(reply.status)
        asterisk = system
        return Effect.void
      }),
      Effect.retry(Schedule.spaced("1 second").pipe(Schedule.intersect(Schedule.recurs(4)))),
      Effect.catchAll((status) =>
        Effect.logWarning("ARI did not say which Asterisk it is (GET /asterisk/info)", { status })
      )
    )
    yield* options.ariChanges.pipe(
      Stream.runForEach((state) =>
        state._tag === "Connected" ? Effect.zipRight(learnAsterisk, announce) : announce
      ),
      Effect.forkScoped
    )
    yield* announce.pipe(Effect.repeat(Schedule.spaced(options.intervalMs)), Effect.forkScoped)
    // Probes from clients that start listening: answered at once, so that they need not wait an interval.
    const onMessage = (payload: string) =>
      decodePresence(payload).pipe(
        Effect.flatMap((message) => message.type === "probe" ? announce : Effect.void),
        Effect.ignore
      )
    yield* bus.subscribe(topics.presence, onMessage, { broadcast: true }).pipe(
      Effect.tapError((error) => Effect.logWarning("could not subscribe to presence probes, retrying", error.message)),
      Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("10 seconds")))),
      Effect.orDie,
      Effect.forkScoped
    )
    return { describe, announce, goodbye }
  })
