/**
 * The parts of a proxy that do not depend on how ARI is reached: the actor system every dialog
 * lives in, the sessions (session.ts), the unrouted-event publisher, the drain and the stats.
 */
import { Effect, Option, Runtime } from "effect"
import { type ClaimCounters, makeClaimCounters } from "../ari/broadcast.js"
import { makeActorSystem } from "../actor/ActorSystem.js"
import { Bus } from "../bus/Bus.js"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import { ProxyConfigService } from "../config/ProxyConfigService.js"
import { makeDialogCounters } from "../dialog/actor.js"
import { ProxyMetricsService } from "../observability/metrics.js"
import { DialogTracing, ProxyTracer } from "../observability/tracing.js"
import { makeTopics } from "../protocol/topics.js"
import type { ProxyStats } from "./Proxy.js"
import { makeRouterCounters } from "./router.js"
import type { ProxyCore } from "./session.js"

/** The parts of a proxy that do not depend on how ARI is reached: its actor system, sessions, drain, stats. */
export const makeProxyCore = Effect.gen(function*() {
  const config: ProxyConfig = yield* ProxyConfigService
  const bus = yield* Bus
  const topics = makeTopics(config.bus.subjectPrefix)
  const runtime = yield* Effect.runtime<never>()
  const runSync = Runtime.runSync(runtime)
  // Present when the proxy traces (otel_endpoint, or a host's tracer): each dialog then has spans.
  const tracer = Option.getOrUndefined(yield* Effect.serviceOption(ProxyTracer))
  const clock = yield* Effect.clock
  const metrics = yield* ProxyMetricsService

  // Every dialog, the unrouted publisher and the calls sent back while draining are actors of
  // this system: closing the proxy's scope stops them and releases their subscriptions.
  const system = yield* makeActorSystem
  let draining = false

  // Unrouted events, in order: at once when the bus takes them, else through a bounded mailbox.
  let unroutedDropped = 0
  const unrouted = system.spawn<readonly [topic: string, payload: string]>(
    { id: "unrouted-publisher", capacity: config.dialogMailboxSize },
    {
      receiveNow: ([topic, payload]) => bus.tryPublish(topic, payload),
      receive: ([topic, payload]) =>
        bus.tryPublish(topic, payload) ? undefined : Effect.catchAll(
          bus.publish(topic, payload),
          (error) => Effect.logWarning("unrouted publish failed", error.message)
        )
    }
  )
  const publishUnrouted = (topic: string, payload: string) => {
    if (unrouted.offer([topic, payload])) return
    if (unroutedDropped++ === 0 || unroutedDropped % 10_000 === 0) {
      runSync(Effect.logWarning("the bus cannot keep up with unrouted events; dropping them", { dropped: unroutedDropped }))
    }
  }

  const core: ProxyCore = {
    config,
    bus,
    topics,
    system,
    routerCounters: makeRouterCounters(),
    dialogCounters: makeDialogCounters(),
    metrics,
    draining: () => draining,
    publishUnrouted,
    sessions: new Set(),
    tracing: tracer === undefined ? undefined : (serverId) => new DialogTracing(tracer, clock, serverId)
  }
  const allDialogs = () => [...core.sessions].flatMap((session) => [...session.router.dialogs.values()])

  /** Until no session has a dialog or a `continue` in flight (sessions may come and go meanwhile). */
  const awaitSessionsIdle: Effect.Effect<void> = Effect.gen(function*() {
    while (true) {
      const sessions = [...core.sessions]
      for (const session of sessions) {
        yield* session.drainingCalls.awaitSent
        yield* session.router.awaitNoDialogs
      }
      if (allDialogs().length === 0) return
    }
  })

  const drain = Effect.gen(function*() {
    if (!draining) {
      draining = true
      yield* Effect.logInfo("draining: no new dialogs; ending the live ones", { dialogs: allDialogs().length })
      for (const session of core.sessions) session.router.accepting = false
      // Each ends once its commands in flight are answered, and is then released at once rather
      // than after its linger (subscriptions closed, RabbitMQ queues retired).
      for (const dialog of allDialogs()) {
        if (dialog.state.ended) dialog.input({ _tag: "LingerOver" })
        else dialog.abort("shutdown")
      }
    }
    const finished = yield* awaitSessionsIdle.pipe(
      // The drain runs in a finalizer, uninterruptibly: without this the deadline could not end the wait.
      Effect.interruptible,
      Effect.timeoutOption(config.shutdownTimeoutMs)
    )
    if (Option.isNone(finished)) {
      yield* Effect.logWarning("shutdown deadline passed with dialogs still busy", { dialogs: allDialogs().length })
    }
  })

  const stats = (ariReconnects: () => number) =>
    Effect.sync((): ProxyStats => {
      let deepest = 0
      let boundEntities = 0
      const dialogs = allDialogs()
      for (const dialog of dialogs) deepest = Math.max(deepest, dialog.depth)
      const broadcastClaims: ClaimCounters = makeClaimCounters()
      for (const session of core.sessions) {
        boundEntities += session.router.boundEntities
        for (const [outcome, count] of Object.entries(session.claimer?.counters ?? {})) {
          broadcastClaims[outcome as keyof ClaimCounters] += count
        }
      }
      return {
        router: { ...core.routerCounters },
        dialogs: { ...core.dialogCounters },
        activeDialogs: dialogs.length,
        boundEntities,
        deepestMailbox: deepest,
        ariReconnects: ariReconnects(),
        unroutedDropped,
        broadcastClaims
      }
    })

  return { core, drain, stats, dialogs: allDialogs }
})

