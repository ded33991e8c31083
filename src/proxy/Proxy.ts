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
import { Context, Effect, Layer, Option, Stream } from "effect"
import { type AriConfigError, AriRest } from "../ari/rest.js"
import type { OutboundListenError } from "../ari/outboundListener.js"
import type { Bus } from "../bus/Bus.js"
import { AriConnectionState, AriSocketOptions, makeAriSocket } from "../ari/socket.js"
import { AriWebsocketRestLink } from "../ari/websocketRest.js"
import { type ClaimCounters, makeBroadcastNames } from "../ari/broadcast.js"
import { ProxyConfigService } from "../config/ProxyConfigService.js"
import { describeConfig } from "../config/describe.js"
import type { Dialog, DialogCounters } from "../dialog/actor.js"
import type { PresenceAnnouncement } from "../protocol/messages.js"
import type { Topics } from "../protocol/topics.js"
import { ProxyMetricsService } from "../observability/metrics.js"
import { makeProxyCore } from "./core.js"
import { makeOutboundProxy } from "./outbound.js"
import { retryingDialogRequests, serveDialogRequests } from "./dialogRequests.js"
import { startPresence } from "./presence.js"
import type { RouterCounters } from "./router.js"
import { makeSession } from "./session.js"

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
  /** The port Asterisk dials when `outbound_websocket.enabled`; undefined otherwise. */
  readonly outboundPort?: number | undefined
  /**
   * What the proxy announces of itself on the presence topic, as of now; undefined with
   * `outbound_websocket.enabled`, which has no presence yet.
   */
  readonly presence?: Effect.Effect<PresenceAnnouncement> | undefined
}

export class Proxy extends Context.Tag("ari-proxy/Proxy")<Proxy, ProxyShape>() {}

/** The proxy that dials ARI's websocket (`websocket_url`), with ARI REST in context. */
export const makeProxy = Effect.gen(function*() {
  const { core, dialogs, drain, stats } = yield* makeProxyCore
  const { bus, config, topics } = core
  const rest = yield* AriRest
  // Present when commands go over the event websocket (ari_rest_transport: websocket).
  const restLink = Option.getOrUndefined(yield* Effect.serviceOption(AriWebsocketRestLink))
  // With StasisBroadcast, the applications are registered at Asterisk under names of this proxy's own.
  const broadcastNames = config.stasisBroadcast.enabled
    ? makeBroadcastNames(config.stasisBroadcast.applicationName, config.applications, config.serverId)
    : undefined
  // Set once the socket exists: whether this proxy may take a call now.
  let isReady = () => false
  const session = yield* makeSession(core, {
    serverId: config.serverId,
    rest,
    onRestResponse: restLink?.onResponse,
    broadcast: broadcastNames === undefined ? undefined : { names: broadcastNames, ready: () => isReady() }
  })
  const router = session.router

  yield* Effect.logInfo("ari-proxy starting", describeConfig(config))
  const socket = yield* makeAriSocket(
    { ...AriSocketOptions.fromConfig(config), applications: broadcastNames?.registered ?? config.applications },
    session.onFrame
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

  let ariConnected = false
  // Set once the proxy serves dialog requests (below).
  let servingRequests = false
  const ready = Effect.gen(function*() {
    if (core.draining()) return false
    const ari = yield* socket.state
    const busState = yield* bus.state
    return ari._tag === "Connected" && busState === "connected" && servingRequests
  })
  isReady = () => Effect.runSync(ready)
  let drainStarted = false
  const presence = yield* startPresence({
    bus,
    topics,
    serverId: config.serverId,
    applications: config.applications,
    intervalMs: config.presenceIntervalMs,
    rest,
    ariChanges: socket.changes,
    ready,
    draining: () => drainStarted || core.draining(),
    activeDialogs: () => {
      let live = 0
      for (const dialog of router.dialogs.values()) if (!dialog.state.ended) live++
      return live
    },
    metrics: core.metrics
  })
  // The drain says so on the presence topic as it starts, and goodbye once it is over.
  const drainWithPresence = Effect.gen(function*() {
    if (!drainStarted) {
      drainStarted = true
      yield* presence.announce
    }
    yield* drain
    yield* presence.goodbye
  })

  // In the background: with the broker down at startup, subscribing waits for it, and the proxy
  // must come up meanwhile (it is not ready until then).
  yield* serveDialogRequests({
    bus,
    topics,
    applications: config.applications,
    serverId: config.serverId,
    accepting: () => router.accepting,
    openDialog: (application, origin) => {
      if (!ariConnected) return "this proxy has no connection to Asterisk"
      router.open(application, undefined, origin).start() // answers once its commands subscription is live
      return undefined
    }
  }).pipe(
    retryingDialogRequests,
    Effect.zipRight(Effect.suspend(() => {
      servingRequests = true
      return presence.announce // ready now
    })),
    Effect.forkScoped
  )
  let ariReconnects = 0
  yield* socket.changes.pipe(
    Stream.runForEach((state) => {
      ariConnected = state._tag === "Connected"
      if (state._tag !== "Connected") return Effect.void
      // Asterisk forgets an application's filter with the application (when no channel holds it).
      if (state.connections === 1) return session.applyEventFilter
      ariReconnects++
      // After a REconnect, events may have been missed: end the dialogs whose channels are gone.
      return Effect.zipRight(session.applyEventFilter, session.reconcile)
    }),
    Effect.forkScoped
  )

  yield* Effect.addFinalizer(() => drainWithPresence)

  return {
    topics,
    stats: stats(() => ariReconnects),
    ready,
    ariState: socket.state,
    draining: Effect.sync(core.draining),
    drain: drainWithPresence,
    dialogs,
    presence: presence.describe
  } satisfies ProxyShape
})

/** The proxy, given its configuration, a bus, ARI REST and the metrics ARI REST counts in. */
export const layer = Layer.scoped(Proxy, makeProxy)

/**
 * The proxy and the ARI REST client of `ari_rest_transport`, given its configuration and a bus; or,
 * with `outbound_websocket.enabled`, the proxy Asterisk dials, commands over Asterisk's sockets.
 * Either way with its metrics: its own, so another proxy in the process counts apart.
 */
export const layerWithAri: Layer.Layer<
  Proxy | ProxyMetricsService,
  AriConfigError | OutboundListenError,
  Bus | ProxyConfigService
> = Layer.unwrapEffect(
  Effect.map(ProxyConfigService, (config): Layer.Layer<
    Proxy,
    AriConfigError | OutboundListenError,
    Bus | ProxyConfigService | ProxyMetricsService
  > =>
    config.outboundWebsocket.enabled
      ? Layer.scoped(Proxy, makeOutboundProxy)
      : layer.pipe(Layer.provide(
        config.ariRestTransport === "websocket"
          ? AriWebsocketRestLink.layerFromConfig(config)
          : AriRest.layerFromConfig(config)
      )))
).pipe(Layer.provideMerge(ProxyMetricsService.layer))
