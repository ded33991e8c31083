/**
 * The proxy when Asterisk dials it (`outbound_websocket.enabled`; docs/asterisk.md). The listener
 * (ari/outboundListener.ts) accepts Asterisk's sockets; each socket's frames feed a session
 * (session.ts) exactly as the dialled websocket's do, and the commands of the session's dialogs go
 * back as `RESTRequest` frames over the socket the session's events come from (ari/websocketRest.ts),
 * since Asterisk's HTTP may be out of reach.
 *
 * Which session a socket feeds is decided by its first frame (every ARI frame carries `asterisk_id`,
 * and the first one of a socket may be a queued event rather than ApplicationRegistered):
 *
 * - `persistent` sockets: one session per Asterisk, its `server_id` the configured one for the
 *   entity id (`outbound_websocket.server_ids`) or the entity id itself. The socket Asterisk opens
 *   after a drop is the same session's next connection: dialogs carry on. Asterisk queues the events
 *   of the gap and sends them first, then ApplicationRegistered for each app (ari-modes §1.4), so the
 *   reconciliation (`GET /channels`, ending the dialogs whose channels vanished) waits until every
 *   application registered before has registered again: it never ends a dialog whose StasisEnd is
 *   still queued.
 * - `per_call_config` sockets (application `<app>:<channel name>`, ari-modes §1.6): one session per
 *   call, its dialogs announced under `<app>`. When the socket closes before the call's dialog ended,
 *   the dialog waits `per_call_reconnect_ms` for Asterisk to dial again (it does at once after a
 *   drop), then ends as `channels_vanished`; the session is let go once its dialogs are released.
 *
 * A session has at most one socket: a new one from the same Asterisk replaces the previous (whose
 * commands in flight are answered 502, as after a reconnect).
 */
import { Effect, ExecutionStrategy, Exit, type Fiber, FiberId, Runtime, Scope } from "effect"
import { makeOutboundListener, type OutboundConnection, type OutboundConnectionHandler } from "../ari/outboundListener.js"
import { AriConnectionState } from "../ari/socket.js"
import { type AriWebsocketRestLinkShape, makeAriWebsocketRest } from "../ari/websocketRest.js"
import { describeConfig } from "../config/describe.js"
import { isJsonObject } from "../protocol/json.js"
import { retryingDialogRequests, serveDialogRequests } from "./dialogRequests.js"
import { ProxyMetricsService } from "../observability/metrics.js"
import { makeProxyCore } from "./core.js"
import type { ProxyShape } from "./Proxy.js"
import { type AriSession, makeSession } from "./session.js"

/** One session of Asterisk's sockets: the proxy's session, its REST link, the socket now carrying it. */
interface Served {
  readonly session: AriSession
  readonly link: AriWebsocketRestLinkShape
  /** Set for a per_call_config socket's session: the application the socket was opened for. */
  readonly perCallApplication: string | undefined
  /** Its sockets so far (the REST link's connection numbers). */
  connections: number
  current: OutboundConnection | undefined
  /** Applications Asterisk registered on this session's sockets (persistent). */
  readonly registered: Set<string>
  /** After a reconnect: the applications whose ApplicationRegistered comes before the reconciliation. */
  awaitingRegistration: Set<string> | undefined
  /** A per-call session whose socket dropped mid-call: the wait for Asterisk to dial again. */
  endTimer: Fiber.RuntimeFiber<void> | undefined
  readonly scope: Scope.CloseableScope
}

/** The first frame's `asterisk_id` and `application`; undefined when it has no `asterisk_id`. */
const identify = (frame: string): { readonly asteriskId: string; readonly application: string } | undefined => {
  try {
    const event: unknown = JSON.parse(frame)
    if (!isJsonObject(event) || typeof event.asterisk_id !== "string" || event.asterisk_id === "") return undefined
    return { asteriskId: event.asterisk_id, application: typeof event.application === "string" ? event.application : "" }
  } catch {
    return undefined
  }
}

/** The app of an ApplicationRegistered / ApplicationUnregistered frame (a cheap test first: most frames are neither). */
const applicationLifecycle = (frame: string): { readonly registered: boolean; readonly application: string } | undefined => {
  if (!frame.includes("\"ApplicationRegistered\"") && !frame.includes("\"ApplicationUnregistered\"")) return undefined
  try {
    const event: unknown = JSON.parse(frame)
    if (!isJsonObject(event) || typeof event.application !== "string") return undefined
    if (event.type === "ApplicationRegistered") return { registered: true, application: event.application }
    if (event.type === "ApplicationUnregistered") return { registered: false, application: event.application }
    return undefined
  } catch {
    return undefined
  }
}

export const makeOutboundProxy = Effect.gen(function*() {
  const { core, dialogs, drain, stats } = yield* makeProxyCore
  const { bus, config, topics } = core
  const outbound = config.outboundWebsocket
  const runtime = yield* Effect.runtime<never>()
  const runSync = Runtime.runSync(runtime)
  const runFork = Runtime.runFork(runtime)
  const proxyScope = yield* Effect.scope
  // The sessions' scopes (their REST links) close after the drain and the listener: made before both.
  const sessionsScope = yield* Scope.fork(proxyScope, ExecutionStrategy.sequential)
  const configured = new Set(config.applications)

  /** The configured application a per-call socket's `<app>:<channel name>` stands for, if it is one. */
  const perCallBase = (application: string): string | undefined => {
    if (configured.has(application)) return undefined
    const colon = application.indexOf(":")
    const base = colon > 0 ? application.slice(0, colon) : undefined
    return base !== undefined && configured.has(base) ? base : undefined
  }

  const sessions = new Map<string, Served>()
  /** The entity id a configured `server_id` belongs to, or the `server_id` itself (an unmapped entity id). */
  const identityOf = (serverId: string): string => {
    for (const [entityId, mapped] of outbound.serverIds) if (mapped === serverId) return entityId
    return serverId
  }
  let accepted = 0
  let ariReconnects = 0
  let listening = false

  const openSession = (key: string, serverId: string, perCallApplication: string | undefined): Served => {
    const scope = runSync(Scope.fork(sessionsScope, ExecutionStrategy.sequential))
    const { link, rest } = runSync(Scope.extend(
      makeAriWebsocketRest({ commandTimeoutMs: config.commandTimeoutMs }).pipe(
        Effect.provideService(ProxyMetricsService, core.metrics)
      ),
      scope
    ))
    const perCallBaseName = perCallApplication === undefined ? undefined : perCallBase(perCallApplication)
    const session = runSync(makeSession(core, {
      serverId,
      rest,
      onRestResponse: link.onResponse,
      applicationOf: perCallBaseName === undefined ? undefined : (application) => perCallBase(application) ?? application,
      // the filter is the application object's, which a per-call socket names `<app>:<channel>`
      filterApplications: perCallApplication === undefined ? undefined : [perCallApplication]
    }))
    const served: Served = {
      session,
      link,
      perCallApplication,
      connections: 0,
      current: undefined,
      registered: new Set(),
      awaitingRegistration: undefined,
      endTimer: undefined,
      scope
    }
    link.useSender((frame) => served.current?.send(frame) === true ? served.connections : undefined)
    sessions.set(key, served)
    if (perCallApplication === undefined) {
      if (!outbound.serverIds.has(identityOf(serverId))) runFork(serveOwnDialogRequests(serverId))
      runSync(Effect.logInfo("Asterisk dialled in", { server_id: serverId }))
    }
    return served
  }

  /** Lets a per-call session go: no new socket joins it, and it is forgotten once its dialogs are released. */
  const retire = (key: string, served: Served) => {
    if (sessions.get(key) === served) sessions.delete(key)
    runSync(
      served.session.router.awaitNoDialogs.pipe(
        Effect.zipRight(served.session.drainingCalls.awaitSent),
        Effect.zipRight(Effect.sync(() => {
          core.sessions.delete(served.session)
          served.session.drainingCalls.stop()
        })),
        Effect.zipRight(Scope.close(served.scope, Exit.void)),
        Effect.forkIn(proxyScope)
      )
    )
  }

  const liveDialogs = (served: Served) => [...served.session.router.dialogs.values()].filter((d) => !d.state.ended)

  const attach = (served: Served, connection: OutboundConnection) => {
    if (served.endTimer !== undefined) {
      served.endTimer.unsafeInterruptAsFork(FiberId.none)
      served.endTimer = undefined
    }
    if (served.current !== undefined) {
      runSync(Effect.logWarning("a second socket from the same Asterisk replaces the first", {
        server_id: served.session.serverId,
        connection: connection.id
      }))
    }
    served.current = connection
    served.connections++
    served.link.onConnectionState(AriConnectionState.Connected({ connections: served.connections }))
    const { session } = served
    if (served.connections === 1 || served.perCallApplication !== undefined) {
      if (served.connections === 1) runFork(session.applyEventFilter)
      return
    }
    ariReconnects++
    served.awaitingRegistration = new Set(served.registered)
    if (served.awaitingRegistration.size === 0) afterRegistration(served)
  }

  // Asterisk flushed what it queued during the gap: the reconciliation now sees only what was lost.
  const afterRegistration = (served: Served) => {
    served.awaitingRegistration = undefined
    runFork(Effect.zipRight(served.session.applyEventFilter, served.session.reconcile))
  }

  const onFrame = (served: Served, frame: string) => {
    if (served.perCallApplication === undefined) {
      const lifecycle = applicationLifecycle(frame)
      if (lifecycle !== undefined) {
        if (lifecycle.registered) served.registered.add(lifecycle.application)
        else served.registered.delete(lifecycle.application)
        const awaiting = served.awaitingRegistration
        if (awaiting !== undefined && awaiting.delete(lifecycle.application) && awaiting.size === 0) {
          afterRegistration(served)
        }
      }
    }
    served.session.onFrame(frame)
  }

  const detach = (key: string, served: Served, connection: OutboundConnection, reason: string) => {
    if (served.current !== connection) return // replaced already
    served.current = undefined
    served.link.onConnectionState(
      AriConnectionState.Disconnected({ reason, retryInMs: 0, failedAttempts: 0, connections: served.connections })
    )
    const serverId = served.session.serverId
    if (served.perCallApplication === undefined) {
      runSync(Effect.logWarning(`Asterisk's socket closed: ${reason}; waiting for it to dial again`, { server_id: serverId }))
      return
    }
    if (liveDialogs(served).length === 0) return retire(key, served)
    // Asterisk dials again at once after a drop (ari-modes §1.6); a call it never dials again for is over.
    served.endTimer = runSync(Effect.forkIn(
      Effect.sleep(outbound.perCallReconnectMs).pipe(
        Effect.zipRight(Effect.sync(() => {
          served.endTimer = undefined
          for (const dialog of liveDialogs(served)) {
            dialog.input({ _tag: "ChannelsVanished", channelIds: [...dialog.state.members] })
          }
          retire(key, served)
        })),
        Effect.zipRight(Effect.logWarning("a per-call socket did not come back; its dialog ended", {
          server_id: serverId,
          application: served.perCallApplication
        }))
      ),
      proxyScope
    ))
  }

  const accept = (connection: OutboundConnection): OutboundConnectionHandler => {
    accepted++
    let bound: { readonly key: string; readonly served: Served } | undefined
    return {
      onFrame: (frame) => {
        if (bound === undefined) {
          const identity = identify(frame)
          if (identity === undefined) {
            runSync(Effect.logWarning("ignored a frame before Asterisk's socket said who it is (no asterisk_id)"))
            return
          }
          const serverId = outbound.serverIds.get(identity.asteriskId) ?? identity.asteriskId
          const perCall = perCallBase(identity.application) === undefined ? undefined : identity.application
          const key = perCall === undefined ? serverId : `${serverId}\n${perCall}`
          const served = sessions.get(key) ?? openSession(key, serverId, perCall)
          bound = { key, served }
          attach(served, connection)
        }
        onFrame(bound.served, frame)
      },
      onClose: (reason) => {
        if (bound !== undefined) detach(bound.key, bound.served, connection, reason)
      }
    }
  }

  // Dialog requests: `dialogs_<app>@<server_id>` for each Asterisk that dialled in, `dialogs_<app>` for
  // any of them (the first connected; per-call sockets carry one call each and take none).
  const openRequested = (serverId: string | undefined): ProxyShapeOpen => (application, origin) => {
    const target = serverId === undefined
      ? [...sessions.values()].find((s) => s.perCallApplication === undefined && s.current !== undefined)
      : sessions.get(serverId)
    if (target === undefined || target.current === undefined) return "this proxy has no connection to Asterisk"
    target.session.router.open(application, undefined, origin).start()
    return undefined
  }
  const subscribeRetrying = retryingDialogRequests<Scope.Scope>
  const ownDialogRequests = (serverId: string) =>
    subscribeRetrying(serveDialogRequests({
      bus,
      topics,
      applications: config.applications,
      serverId,
      topicsServed: "own",
      accepting: () => !core.draining(),
      openDialog: openRequested(serverId)
    }))
  function serveOwnDialogRequests(serverId: string) {
    return ownDialogRequests(serverId).pipe(Scope.extend(proxyScope), Effect.forkIn(proxyScope))
  }
  let servingRequests = false
  // The Asterisks known by configuration are served from the start; others once they dial in.
  yield* Effect.forEach(new Set(outbound.serverIds.values()), ownDialogRequests, { discard: true }).pipe(
    Effect.zipRight(subscribeRetrying(serveDialogRequests({
    bus,
    topics,
    applications: config.applications,
    serverId: config.serverId,
    topicsServed: "shared",
    accepting: () => !core.draining(),
    openDialog: openRequested(undefined)
  }))),
    Effect.zipRight(Effect.sync(() => {
      servingRequests = true
    })),
    Effect.forkScoped
  )

  yield* Effect.logInfo("ari-proxy starting", describeConfig(config))
  const listener = yield* makeOutboundListener({
    host: outbound.host,
    port: outbound.port,
    path: outbound.path,
    username: outbound.username,
    password: outbound.password,
    tls: outbound.tls?.cert !== undefined && outbound.tls.key !== undefined
      ? { cert: outbound.tls.cert, key: outbound.tls.key }
      : undefined,
    pingIntervalMs: config.pingIntervalMs
  }, accept)
  listening = true
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      listening = false
    })
  )
  // Added after the listener: finalizers run in reverse, so the drain finishes while Asterisk's sockets
  // still carry the commands in flight, and only then are they closed.
  yield* Effect.addFinalizer(() => drain)

  // Asterisk dials in when it has something to say (per_call_config: only during calls), so the
  // proxy is connected for readiness's sake as long as it listens.
  const ariState = Effect.sync(() =>
    listening ? AriConnectionState.Connected({ connections: accepted }) : AriConnectionState.Closed({ connections: accepted })
  )
  const ready = Effect.gen(function*() {
    if (core.draining() || !listening) return false
    return (yield* bus.state) === "connected" && servingRequests
  })

  return {
    topics,
    stats: stats(() => ariReconnects),
    ready,
    ariState,
    draining: Effect.sync(core.draining),
    drain,
    dialogs,
    outboundPort: listener.port
  } satisfies ProxyShape
})

type ProxyShapeOpen = Parameters<typeof serveDialogRequests>[0]["openDialog"]
