/**
 * The proxies on the bus, as their presence announcements tell (docs/protocol.md, "Presence"): the
 * live set and its changes. A proxy joins with its first heartbeat, is updated when what it says
 * changes, and leaves with its goodbye (it stopped) or once unheard of for 3 of its intervals (it
 * died, or the bus between it and us did). Time is Effect's Clock: tests run it on TestClock.
 */
import { Clock, Data, Deferred, Effect, Option, Queue, Schedule, Schema, Stream, SubscriptionRef } from "effect"
import type { Scope } from "effect"
import type { BusShape } from "../bus/Bus.js"
import { type PresenceAnnouncement, PresenceMessage, PresenceProbe } from "../protocol/messages.js"
import type { Topics } from "../protocol/topics.js"

/** One proxy (one Asterisk), as it last announced itself. */
export interface ProxyInfo {
  readonly serverId: string
  /** The Asterisk behind it; undefined until the proxy has heard from ARI. */
  readonly asterisk: { readonly version: string; readonly entityId: string } | undefined
  readonly applications: ReadonlyArray<string>
  /** ARI connected, bus connected, taking dialogs. */
  readonly ready: boolean
  /** Shutting down: it takes no new dialog. */
  readonly draining: boolean
  readonly activeDialogs: number
  readonly proxyVersion: string
  /** RFC 3339. */
  readonly startedAt: string
  /** Its heartbeat period; it leaves the set once unheard of for 3 of them. */
  readonly intervalMs: number
  /** When it was last heard of (Clock milliseconds). */
  readonly lastSeenAt: number
}

export type ProxyChange = Data.TaggedEnum<{
  /** A proxy heard of for the first time (or again, after it left). */
  Joined: { readonly proxy: ProxyInfo }
  /** What a proxy says of itself changed (readiness, draining, dialogs, Asterisk...). */
  Updated: { readonly proxy: ProxyInfo; readonly previous: ProxyInfo }
  /** `goodbye`: it said so when it stopped; `silent`: unheard of for 3 of its intervals. */
  Left: { readonly proxy: ProxyInfo; readonly reason: "goodbye" | "silent" }
}>
export const ProxyChange = Data.taggedEnum<ProxyChange>()

export interface ProxyDirectory {
  /** The proxies heard of and not gone, now. */
  readonly current: Effect.Effect<ReadonlyArray<ProxyInfo>>
  /**
   * A `Joined` for each proxy known when the stream starts, then every change, as it happens; it
   * ends when the client's scope closes.
   */
  readonly changes: Stream.Stream<ProxyChange>
  /** The first proxy `choose` picks from the set, now or once the set changes so that it picks one. */
  readonly awaitChoice: (
    choose: (proxies: ReadonlyArray<ProxyInfo>) => ProxyInfo | undefined
  ) => Effect.Effect<ProxyInfo>
}

interface DirectoryState {
  readonly proxies: ReadonlyMap<string, ProxyInfo>
  /** What the last update changed; undefined when it only refreshed a `lastSeenAt`. */
  readonly change: ProxyChange | undefined
}

/** How many silent intervals make a proxy gone. */
export const SILENT_INTERVALS = 3

const infoOf = (announcement: PresenceAnnouncement, now: number): ProxyInfo => ({
  serverId: announcement.server_id,
  asterisk: announcement.asterisk === null ?
    undefined :
    { version: announcement.asterisk.version, entityId: announcement.asterisk.entity_id },
  applications: announcement.applications,
  ready: announcement.ready,
  draining: announcement.draining,
  activeDialogs: announcement.active_dialogs,
  proxyVersion: announcement.proxy_version,
  startedAt: announcement.started_at,
  intervalMs: announcement.interval_ms,
  lastSeenAt: now
})

const sameAnnouncement = (a: ProxyInfo, b: ProxyInfo) =>
  a.ready === b.ready && a.draining === b.draining && a.activeDialogs === b.activeDialogs &&
  a.asterisk?.version === b.asterisk?.version && a.asterisk?.entityId === b.asterisk?.entityId &&
  a.applications.join("\n") === b.applications.join("\n") && a.proxyVersion === b.proxyVersion &&
  a.startedAt === b.startedAt && a.intervalMs === b.intervalMs

const deadlineOf = (proxy: ProxyInfo) => proxy.lastSeenAt + SILENT_INTERVALS * proxy.intervalMs

const decodePresence = Schema.decodeUnknownOption(PresenceMessage)

/** Listens to presence for the lifetime of the scope; asks every proxy to announce itself once listening. */
export const makeProxyDirectory = (bus: BusShape, topics: Topics): Effect.Effect<ProxyDirectory, never, Scope.Scope> =>
  Effect.gen(function*() {
    const state = yield* SubscriptionRef.make<DirectoryState>({ proxies: new Map(), change: undefined })
    /** A proxy joined: its deadline may come before the one the sweeper sleeps towards. */
    const joined = yield* Queue.sliding<void>(1)

    const onAnnouncement = (announcement: PresenceAnnouncement) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        SubscriptionRef.modify(state, ({ proxies }): [boolean, DirectoryState] => {
          const previous = proxies.get(announcement.server_id)
          const next = new Map(proxies)
          if (announcement.type === "goodbye") {
            if (previous === undefined) return [false, { proxies, change: undefined }]
            next.delete(announcement.server_id)
            const change = ProxyChange.Left({ proxy: infoOf(announcement, now), reason: "goodbye" })
            return [false, { proxies: next, change }]
          }
          const proxy = infoOf(announcement, now)
          next.set(proxy.serverId, proxy)
          if (previous === undefined) return [true, { proxies: next, change: ProxyChange.Joined({ proxy }) }]
          const change = sameAnnouncement(previous, proxy) ? undefined : ProxyChange.Updated({ proxy, previous })
          return [false, { proxies: next, change }]
        }).pipe(Effect.flatMap((isNew) => isNew ? Queue.offer(joined, undefined) : Effect.void))
      )

    const onMessage = (payload: string) =>
      Option.match(decodePresence(payload), {
        onNone: () => Effect.void, // not ours to read: a newer proxy's message, or noise
        onSome: (message) => message.type === "probe" ? Effect.void : onAnnouncement(message)
      })

    /** Removes the proxies whose deadline has passed, one change each; then sleeps until the next deadline. */
    const sweep = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const { proxies } = yield* SubscriptionRef.get(state)
      let next: number | undefined
      for (const proxy of proxies.values()) {
        const deadline = deadlineOf(proxy)
        if (deadline <= now) {
          yield* SubscriptionRef.update(state, (current): DirectoryState => {
            const latest = current.proxies.get(proxy.serverId)
            // Heard of meanwhile: not silent after all.
            if (latest === undefined || deadlineOf(latest) > now) return { ...current, change: undefined }
            const remaining = new Map(current.proxies)
            remaining.delete(proxy.serverId)
            return { proxies: remaining, change: ProxyChange.Left({ proxy: latest, reason: "silent" }) }
          })
        } else if (next === undefined || deadline < next) {
          next = deadline
        }
      }
      yield* next === undefined ? Queue.take(joined) : Effect.raceFirst(Effect.sleep(next - now), Queue.take(joined))
    })
    yield* Effect.forkScoped(Effect.forever(sweep))

    yield* bus.subscribe(topics.presence, onMessage, { broadcast: true }).pipe(
      Effect.zipRight(bus.broadcast(topics.presence, JSON.stringify(new PresenceProbe({ type: "probe" })))),
      Effect.tapError((error) => Effect.logWarning("could not listen to proxy presence, retrying", error.message)),
      Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("10 seconds")))),
      Effect.orDie,
      Effect.forkScoped
    )

    const current = Effect.map(SubscriptionRef.get(state), ({ proxies }) => [...proxies.values()])

    // Streams of the set end with the directory (the client's scope).
    const closed = yield* Deferred.make<void>()
    yield* Effect.addFinalizer(() => Deferred.succeed(closed, undefined))
    const changes: Stream.Stream<ProxyChange> = state.changes.pipe(
      Stream.interruptWhenDeferred(closed),
      Stream.zipWithIndex,
      Stream.mapConcat(([{ change, proxies }, index]) =>
        index === 0 ?
          [...proxies.values()].map((proxy) => ProxyChange.Joined({ proxy })) :
          change === undefined ? [] : [change]
      )
    )

    const awaitChoice = (choose: (proxies: ReadonlyArray<ProxyInfo>) => ProxyInfo | undefined) =>
      state.changes.pipe(
        Stream.filterMap(({ proxies }) => Option.fromNullable(choose([...proxies.values()]))),
        Stream.runHead,
        Effect.flatMap(Option.match({ onNone: () => Effect.never, onSome: Effect.succeed }))
      )

    return { current, changes, awaitChoice }
  })

/**
 * The proxy a new dialog of `application` should go to: ready, not draining, serving it, and the
 * least busy of those (ties: the first heard of).
 */
export const chooseProxyFor = (application: string) => (proxies: ReadonlyArray<ProxyInfo>): ProxyInfo | undefined => {
  let best: ProxyInfo | undefined
  for (const proxy of proxies) {
    if (!proxy.ready || proxy.draining || !proxy.applications.includes(application)) continue
    if (best === undefined || proxy.activeDialogs < best.activeDialogs) best = proxy
  }
  return best
}

/** Why none of `proxies` can take a dialog of `application`, one phrase per proxy. */
export const describeUnsuitable = (application: string, proxies: ReadonlyArray<ProxyInfo>): string =>
  proxies.length === 0 ?
    "no proxy has announced itself on the presence topic" :
    proxies.map((proxy) =>
      `${proxy.serverId}: ${
        !proxy.applications.includes(application) ?
          `serves ${proxy.applications.join(", ") || "no application"}` :
          proxy.draining ? "draining" : "not ready"
      }`
    ).join("; ")
