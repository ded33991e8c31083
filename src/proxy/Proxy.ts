/**
 * The proxy: ARI ↔ dialogs ↔ bus. It owns the actor system in which every dialog lives (and
 * through it their supervision and their release when the proxy's scope closes), the router, the
 * ARI event socket, and the unrouted-event publisher; it reconciles dialogs after an ARI
 * reconnect and drains them at shutdown.
 *
 * Frames are routed synchronously in the socket's callback (no hop through a queue): routing is a
 * few map lookups, and each dialog's mailbox is the queue that decouples ARI from the bus. The
 * socket is never paused: a dialog that cannot keep up is dealt with on its own (dialog/actor.ts).
 */
import { Context, Effect, Layer, Option, Runtime, Schedule, Stream } from "effect"
import { makeActorSystem } from "../actor/ActorSystem.js"
import { AriRest } from "../ari/rest.js"
import { AriConnectionState, AriSocketOptions, makeAriSocket } from "../ari/socket.js"
import { AriWebsocketRestLink } from "../ari/websocketRest.js"
import { applyEventFilter } from "../ari/eventFilter.js"
import { type ClaimCounters, makeBroadcastClaimer, makeBroadcastNames, makeClaimCounters } from "../ari/broadcast.js"
import { Bus } from "../bus/Bus.js"
import { ProxyConfigService } from "../config/ProxyConfigService.js"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import { describeConfig } from "../config/describe.js"
import { type Dialog, type DialogCounters, makeDialogCounters } from "../dialog/actor.js"
import { DialogTracing, ProxyTracer } from "../observability/tracing.js"
import { encodeWireEvent, goJsonString } from "../protocol/codec.js"
import { makeTopics, type Topics } from "../protocol/topics.js"
import { serveDialogRequests } from "./dialogRequests.js"
import { makeDrainingCalls } from "./drainingCalls.js"
import { makeRouterCounters, Router, type RouterCounters } from "./router.js"

export interface ProxyStats {
  readonly router: RouterCounters
  readonly dialogs: DialogCounters
  readonly activeDialogs: number
  readonly boundEntities: number
  readonly deepestMailbox: number
  readonly ariReconnects: number
  /** Unrouted events dropped because their publisher's mailbox was full. */
  readonly unroutedDropped: number
  /** What became of the calls StasisBroadcast offered (all zero unless `stasis_broadcast.enabled`). */
  readonly broadcastClaims: ClaimCounters
}

export interface ProxyShape {
  readonly topics: Topics
  readonly stats: Effect.Effect<ProxyStats>
  /** Ready while ARI's websocket is up, the bus is connected, and the proxy is not draining. */
  readonly ready: Effect.Effect<boolean>
  /** True from the start of the drain (shutdown) on. */
  readonly draining: Effect.Effect<boolean>
  readonly ariState: Effect.Effect<AriConnectionState>
  /** Stops taking new dialogs, ends the live ones and waits (up to shutdown_timeout_ms) for them. */
  readonly drain: Effect.Effect<void>
  /** The live dialogs (for tests and introspection). */
  readonly dialogs: () => ReadonlyArray<Dialog>
}

export class Proxy extends Context.Tag("ari-proxy/Proxy")<Proxy, ProxyShape>() {}

export const makeProxy = Effect.gen(function*() {
  const config: ProxyConfig = yield* ProxyConfigService
  const bus = yield* Bus
  const rest = yield* AriRest
  // Present when commands go over the event websocket (ari_rest_transport: websocket).
  const restLink = Option.getOrUndefined(yield* Effect.serviceOption(AriWebsocketRestLink))
  const topics = makeTopics(config.bus.subjectPrefix)
  const runtime = yield* Effect.runtime<never>()
  const runSync = Runtime.runSync(runtime)
  // Present when the proxy traces (otel_endpoint, or a host's tracer): each dialog then has spans.
  const tracer = Option.getOrUndefined(yield* Effect.serviceOption(ProxyTracer))
  const tracing = tracer === undefined ? undefined : new DialogTracing(tracer, yield* Effect.clock, config.serverId)

  // Every dialog, the unrouted publisher and the calls sent back while draining are actors of
  // this system: closing the proxy's scope stops them and releases their subscriptions.
  const system = yield* makeActorSystem
  let draining = false

  // With StasisBroadcast, the applications are registered at Asterisk under names of this proxy's own.
  const broadcastNames = config.stasisBroadcast.enabled
    ? makeBroadcastNames(config.stasisBroadcast.applicationName, config.applications, config.serverId)
    : undefined
  const ariApplications = broadcastNames?.registered ?? config.applications
  const execute: typeof rest.request = broadcastNames === undefined
    ? rest.request
    : (request, onReply) => rest.request(broadcastNames.commandAtAsterisk(request), onReply)

  const dialogCounters = makeDialogCounters()
  const routerCounters = makeRouterCounters()
  const router = new Router(
    {
      serverId: config.serverId,
      topics,
      bus,
      system,
      mailboxSize: config.dialogMailboxSize,
      machine: { holdEvents: !bus.retainsUnconsumed, maxHeldEvents: config.maxHeldEvents, leaseMs: config.dialogLeaseMs },
      replayLimit: config.dialogReplaySize,
      busConnected: () => Effect.runSync(bus.state) === "connected",
      attachGraceMs: config.attachGraceMs,
      endedLingerMs: config.endedLingerMs,
      requestedDialogIdleMs: config.requestedDialogIdleMs,
      releaseAtOnce: () => draining,
      execute,
      counters: dialogCounters,
      tracing
    },
    routerCounters,
    config.applications[0] ?? ""
  )

  const serverIdJson = goJsonString(config.serverId)
  const drainingCalls = makeDrainingCalls(rest, system)

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

  // Set once the socket exists: whether this proxy may take a call now.
  let isReady = () => false
  const claimer = broadcastNames === undefined ? undefined : makeBroadcastClaimer({
    names: broadcastNames,
    request: rest.request,
    ready: () => isReady(),
    log: runSync
  })

  const onFrame = (received: string) => {
    const frame = broadcastNames === undefined ? received : broadcastNames.frameOnBus(received)
    const outcome = router.route(frame)
    switch (outcome._tag) {
      case "Routed":
        return
      case "Unrouted":
        if (outcome.type === "StasisStart" && !router.accepting) drainingCalls.sendBack(frame)
        if (config.unroutedEvents) {
          publishUnrouted(topics.unrouted(outcome.application), encodeWireEvent(serverIdJson, outcome.type, frame))
        }
        if (outcome.type === "ApplicationReplaced") {
          runSync(Effect.logError(
            "another websocket took over the ARI application; this proxy receives no more events for it",
            outcome.application
          ))
        }
        return
      case "Malformed":
        runSync(Effect.logWarning("ignored an ARI frame", outcome.reason))
        return
      case "RestResponse":
        restLink?.onResponse(outcome.response)
        return
      case "Broadcast":
        if (claimer !== undefined) {
          if (outcome.type === "CallBroadcast") claimer.offered(outcome.application, outcome.channelId)
        } else if (config.unroutedEvents) {
          publishUnrouted(topics.unrouted(outcome.application), encodeWireEvent(serverIdJson, outcome.type, frame))
        }
    }
  }

  yield* Effect.logInfo("ari-proxy starting", describeConfig(config))
  const socket = yield* makeAriSocket(
    { ...AriSocketOptions.fromConfig(config), applications: ariApplications },
    onFrame
  )
  if (restLink !== undefined) {
    restLink.useSender(socket.unsafeSend)
    // On a stream of its own: the one below waits for ARI, and an answer lost with its connection
    // must be given up at once.
    yield* socket.changes.pipe(
      Stream.runForEach((state) => Effect.sync(() => restLink.onConnectionState(state))),
      Effect.forkScoped
    )
  }

  // After a REconnect, events may have been missed: end the dialogs whose channels are gone.
  const reconcile = Effect.gen(function*() {
    // What each dialog had before asking ARI: channels in Stasis, and channels being created.
    const before = new Map<Dialog, { readonly members: Array<string>; readonly entered: ReadonlyArray<string> }>()
    for (const dialog of router.dialogs.values()) {
      // Channels the command in flight is creating may not exist at ARI yet: not evidence of loss.
      const creating = dialog.state.inFlight?.newChannels ?? []
      if (dialog.state.ended) continue
      before.set(dialog, {
        members: dialog.state.members.filter((id) => !creating.includes(id)),
        entered: dialog.state.entered
      })
    }
    const live = yield* rest.listChannels()
    const stasisOf = new Map(live.map((channel) => [
      channel.id,
      broadcastNames === undefined || channel.stasisApplication === undefined
        ? channel.stasisApplication
        : broadcastNames.onBus(channel.stasisApplication)
    ]))
    let ended = 0
    for (const [dialog, { members, entered }] of before) {
      // Gone: no longer at ARI, or was in the dialog's Stasis and is not any more (its StasisEnd
      // was lost with the websocket: it went back to the dialplan, or to another application).
      const gone = members.filter((id) =>
        dialog.state.members.includes(id) &&
        (!stasisOf.has(id) || (entered.includes(id) && stasisOf.get(id) !== dialog.application))
      )
      if (gone.length === 0) continue
      dialog.input({ _tag: "ChannelsVanished", channelIds: gone })
      if (dialog.closing) ended++
    }
    yield* Effect.logInfo("reconciled dialogs after ARI reconnect", { dialogs: before.size, ended, channels: live.length })
  }).pipe(
    Effect.catchAll((error) => Effect.logWarning("could not reconcile dialogs after ARI reconnect", error.message))
  )
  let ariConnected = false
  // In the background: with the broker down at startup, subscribing waits for it, and the proxy
  // must come up meanwhile (it is not ready until then).
  let servingRequests = false
  yield* serveDialogRequests({
    bus,
    topics,
    router,
    applications: config.applications,
    serverId: config.serverId,
    ariConnected: () => ariConnected
  }).pipe(
    Effect.tapError((error) => Effect.logWarning("could not subscribe to dialog requests, retrying", error.message)),
    Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("10 seconds")))),
    Effect.orDie,
    Effect.zipRight(Effect.sync(() => {
      servingRequests = true
    })),
    Effect.forkScoped
  )
  let ariReconnects = 0
  yield* socket.changes.pipe(
    Stream.runForEach((state) => {
      ariConnected = state._tag === "Connected"
      if (state._tag !== "Connected") return Effect.void
      // Asterisk forgets an application's filter with the application (when no channel holds it).
      const filter = config.ariEventFilter === undefined
        ? Effect.void
        : applyEventFilter(rest, ariApplications, config.ariEventFilter)
      if (state.connections === 1) return filter
      ariReconnects++
      return Effect.zipRight(filter, reconcile)
    }),
    Effect.forkScoped
  )

  const drain = Effect.gen(function*() {
    if (!draining) {
      draining = true
      router.accepting = false
      yield* Effect.logInfo("draining: no new dialogs; ending the live ones", { dialogs: router.dialogs.size })
      // Each ends once its commands in flight are answered, and is then released at once rather
      // than after its linger (subscriptions closed, RabbitMQ queues retired).
      for (const dialog of router.dialogs.values()) {
        if (dialog.state.ended) dialog.input({ _tag: "LingerOver" })
        else dialog.abort("shutdown")
      }
    }
    const finished = yield* Effect.zipRight(drainingCalls.awaitSent, router.awaitNoDialogs).pipe(
      // The drain runs in a finalizer, uninterruptibly: without this the deadline could not end the wait.
      Effect.interruptible,
      Effect.timeoutOption(config.shutdownTimeoutMs)
    )
    if (Option.isNone(finished)) {
      yield* Effect.logWarning("shutdown deadline passed with dialogs still busy", { dialogs: router.dialogs.size })
    }
  })
  yield* Effect.addFinalizer(() => drain)

  const stats = Effect.sync((): ProxyStats => {
    let deepest = 0
    for (const dialog of router.dialogs.values()) deepest = Math.max(deepest, dialog.depth)
    return {
      router: { ...routerCounters },
      dialogs: { ...dialogCounters },
      activeDialogs: router.dialogs.size,
      boundEntities: router.boundEntities,
      deepestMailbox: deepest,
      ariReconnects,
      unroutedDropped,
      broadcastClaims: { ...(claimer?.counters ?? makeClaimCounters()) }
    }
  })

  const ready = Effect.gen(function*() {
    if (draining) return false
    const ari = yield* socket.state
    const busState = yield* bus.state
    return ari._tag === "Connected" && busState === "connected" && servingRequests
  })
  isReady = () => Effect.runSync(ready)

  return {
    topics,
    stats,
    ready,
    ariState: socket.state,
    draining: Effect.sync(() => draining),
    drain,
    dialogs: () => [...router.dialogs.values()]
  } satisfies ProxyShape
})

/** The proxy, given its configuration, a bus and ARI REST in context. */
export const layer = Layer.scoped(Proxy, makeProxy)

/** The proxy and the ARI REST client of `ari_rest_transport`, given its configuration and a bus. */
export const layerWithAri = Layer.unwrapEffect(
  Effect.map(ProxyConfigService, (config) =>
    layer.pipe(Layer.provide(
      config.ariRestTransport === "websocket"
        ? AriWebsocketRestLink.layerFromConfig(config)
        : AriRest.layerFromConfig(config)
    )))
)
