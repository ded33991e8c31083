/**
 * The operations endpoint (`http_port`, `http_host`; port 0 disables it):
 * - `GET /healthz`: 200 while the process serves requests (liveness);
 * - `GET /readyz`: 200 while ARI's websocket is up, the bus is connected and the proxy is not
 *   draining; otherwise 503. The JSON body says which;
 * - `GET /metrics`: Prometheus text (docs/operations.md lists every metric).
 *
 * The server starts BEFORE the bus and the proxy (so `/healthz` answers while the proxy waits for
 * a broker) and stops after them; at shutdown the proxy's drain starts while it still answers, so
 * `/readyz` says 503 for the whole drain instead of refusing connections.
 */
import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import type { ServeError } from "@effect/platform/HttpServerError"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import { createServer } from "node:http"
import { makeClaimCounters } from "../ari/broadcast.js"
import type { AriConnectionState } from "../ari/socket.js"
import { Bus, type BusConnectionState, type BusShape } from "../bus/Bus.js"
import { ProxyConfigService } from "../config/ProxyConfigService.js"
import { makeDialogCounters } from "../dialog/actor.js"
import {
  commandMethods,
  type LabeledCounter,
  ProxyMetrics,
  ProxyMetricsService,
  statusClasses
} from "../observability/metrics.js"
import { cpuSeconds, type EventLoopDelay, monitorEventLoop, packageVersion } from "../observability/processMetrics.js"
import { contentType, PrometheusText, type Sample } from "../observability/prometheus.js"
import { Proxy, type ProxyShape, type ProxyStats } from "./Proxy.js"
import { makeRouterCounters } from "./router.js"

export interface OpsHttpOptions {
  readonly port: number
  readonly host: string
}

/** What the endpoint reports on, once the proxy runs. */
export interface Observed {
  readonly proxy: ProxyShape
  readonly bus: BusShape
  readonly metrics: ProxyMetrics
}

export interface Readiness {
  readonly ready: boolean
  readonly ari: AriConnectionState["_tag"] | "unknown"
  readonly bus: BusConnectionState | "unknown"
  readonly draining: boolean
  /** Why the proxy is not ready, one phrase per cause; empty when ready. */
  readonly reasons: ReadonlyArray<string>
}

const starting: Readiness = {
  ready: false,
  ari: "unknown",
  bus: "unknown",
  draining: false,
  reasons: ["starting (the proxy is not running yet)"]
}

export const readiness = (observed: Observed | undefined): Effect.Effect<Readiness> =>
  Effect.gen(function*() {
    if (observed === undefined) return starting
    const ari = yield* observed.proxy.ariState
    const busState = yield* observed.bus.state
    const draining = yield* observed.proxy.draining
    const reasons: Array<string> = []
    if (ari._tag !== "Connected") {
      reasons.push(
        ari._tag === "Disconnected" ? `ARI websocket disconnected: ${ari.reason}` : `ARI websocket ${ari._tag}`
      )
    }
    if (busState !== "connected") reasons.push(`bus ${busState}`)
    if (draining) reasons.push("draining (shutting down)")
    // The proxy's own verdict also waits for its subscriptions (dialog requests) to be live.
    if (reasons.length === 0 && !(yield* observed.proxy.ready)) reasons.push("subscribing to the bus")
    return { ready: reasons.length === 0, ari: ari._tag, bus: busState, draining, reasons }
  })

/** What the drivers that buffer (NATS, RabbitMQ) count; a driver leaves out what it does not have. */
interface BusStats {
  readonly buffered: number
  /** Absent from a driver that does not measure its buffer in bytes. */
  readonly bufferedBytes?: number | undefined
  readonly dropped: number
  readonly reconnects: number
  readonly published?: number
  readonly acknowledged?: number
  readonly awaitingAck?: number
  readonly republished?: number
  readonly unconfirmedLost?: number
  /** NATS JetStream's error acknowledgements; RabbitMQ calls its refusals `nacked`. */
  readonly rejected?: number
  readonly nacked?: number
}

/** Memory has nothing to say. */
const busStatsOf = (bus: BusShape | undefined): BusStats => {
  const withStats = bus as (BusShape & { readonly stats?: () => BusStats }) | undefined
  return typeof withStats?.stats === "function" ? withStats.stats() : { buffered: 0, dropped: 0, reconnects: 0 }
}

/** Lost bus messages by reason: every one the driver knows of. */
const busLosses = (stats: BusStats): Array<Sample> => [
  { labels: { reason: "buffer_full" }, value: stats.dropped },
  { labels: { reason: "unconfirmed_at_disconnect" }, value: stats.unconfirmedLost ?? 0 },
  { labels: { reason: "rejected" }, value: (stats.rejected ?? 0) + (stats.nacked ?? 0) }
]

/** The stats of a proxy that has seen nothing (before one is observed; tests' idle proxies). */
export const noProxyStats: ProxyStats = {
  router: makeRouterCounters(),
  dialogs: makeDialogCounters(),
  activeDialogs: 0,
  boundEntities: 0,
  deepestMailbox: 0,
  ariReconnects: 0,
  unroutedDropped: 0,
  broadcastClaims: makeClaimCounters()
}

/** Before the proxy runs, nothing has been counted. */
const noMetrics = new ProxyMetrics()

const byLabel = (counter: LabeledCounter, label: string): Array<Sample> =>
  [...counter.values].map(([value, count]) => ({ labels: { [label]: value }, value: count }))

export const renderMetrics = (observed: Observed | undefined): Effect.Effect<string> =>
  Effect.gen(function*() {
    const stats = observed === undefined ? noProxyStats : yield* observed.proxy.stats
    const metrics = observed?.metrics ?? noMetrics
    const state = yield* readiness(observed)
    const busStats = busStatsOf(observed?.bus)
    const live = observed === undefined ? 0 : observed.proxy.dialogs().filter((dialog) => !dialog.state.ended).length
    const commands: Array<Sample> = []
    for (const method of commandMethods) {
      const counts = metrics.commands.get(method)!
      statusClasses.forEach((statusClass, i) => {
        if (counts[i]! > 0) commands.push({ labels: { method, status_class: statusClass }, value: counts[i]! })
      })
    }
    const memory = process.memoryUsage()
    const presence = observed?.proxy.presence === undefined ? undefined : yield* observed.proxy.presence
    const asterisk = presence?.asterisk ?? null
    return new PrometheusText()
      .counter("ari_proxy_events_received_total", "ARI events received on the websocket, by type.",
        byLabel(metrics.eventsReceived, "type"))
      .counter("ari_proxy_events_published_total", "Events published on events_<dialog>, by type.",
        byLabel(metrics.eventsPublished, "type"))
      .counter("ari_proxy_events_unrouted_total", "ARI events no dialog owned, by type.",
        byLabel(metrics.eventsUnrouted, "type"))
      .counter("ari_proxy_malformed_frames_total", "ARI frames that were not an ARI event.",
        stats.router.malformedFrames)
      .counter("ari_proxy_events_dropped_total", "Events of overloaded dialogs dropped unpublished.",
        stats.dialogs.eventsDropped)
      .counter("ari_proxy_unrouted_dropped_total", "Unrouted events dropped because the bus could not keep up.",
        stats.unroutedDropped)
      .counter("ari_proxy_dialogs_started_total", "Dialogs opened.", stats.router.dialogsStarted)
      .counter("ari_proxy_dialogs_ended_total", "Dialogs ended (DialogEnded published), by reason.",
        byLabel(metrics.dialogsEnded, "reason"))
      .gauge("ari_proxy_dialogs_active", "Dialogs open and not yet ended.", live)
      .counter("ari_proxy_commands_total", "Commands answered, by method and status class.", commands)
      .counter("ari_proxy_commands_ignored_total", "Command messages that were not JSON (dropped unanswered).",
        stats.dialogs.nonJsonCommands)
      .histogram("ari_proxy_command_duration_seconds", "From a command's arrival on the bus to its response.",
        metrics.commandLatency)
      .histogram("ari_proxy_ari_request_duration_seconds", "ARI REST requests, from sending to the answer read.",
        metrics.ariRestLatency)
      .counter("ari_proxy_broadcast_claims_total",
        "Calls StasisBroadcast offered this proxy, by outcome (won, lost, late, failed, declined).",
        Object.entries(stats.broadcastClaims).map(([outcome, value]) => ({ labels: { outcome }, value })))
      .counter("ari_proxy_calls_continued_total", "Calls that arrived while draining, sent back to the dialplan.",
        metrics.callsContinuedWhileDraining)
      .gauge("ari_proxy_ari_connected", "1 while ARI's event websocket is connected.",
        state.ari === "Connected" ? 1 : 0)
      .counter("ari_proxy_ari_reconnects_total", "ARI websocket reconnections.", stats.ariReconnects)
      .gauge("ari_proxy_bus_connected", "1 while the bus is connected.", state.bus === "connected" ? 1 : 0)
      .counter("ari_proxy_bus_reconnects_total", "Bus reconnections.", busStats.reconnects)
      .gauge("ari_proxy_bus_buffered_messages", "Messages the bus driver holds, not yet written.", busStats.buffered)
      .gauge("ari_proxy_bus_buffered_bytes", "Bytes of the messages the bus driver holds, not yet written.",
        busStats.bufferedBytes ?? 0)
      .counter("ari_proxy_bus_dropped_messages_total", "Messages lost because the bus buffer was full.",
        busStats.dropped)
      .counter("ari_proxy_bus_lost_messages_total", "Bus messages counted as lost, by reason.", busLosses(busStats))
      .counter("ari_proxy_bus_published_messages_total", "Messages the bus driver wrote (each once).",
        busStats.published ?? 0)
      .counter("ari_proxy_bus_republished_messages_total", "Unconfirmed or unacknowledged messages written again after a connection loss.",
        busStats.republished ?? 0)
      .counter("ari_proxy_bus_acknowledged_messages_total", "Messages the broker acknowledged (NATS JetStream).",
        busStats.acknowledged ?? 0)
      .gauge("ari_proxy_bus_awaiting_ack_messages",
        "Messages written and awaiting their acknowledgement (NATS JetStream).", busStats.awaitingAck ?? 0)
      .counter("ari_proxy_bus_publish_failures_total", "Publishes the bus refused.", stats.dialogs.publishFailures)
      .counter("ari_proxy_dialogs_reoffered_total", "Dialogs offered anew because their owner's lease lapsed.",
        stats.dialogs.dialogsReoffered)
      .counter("ari_proxy_events_replayed_total", "Publications sent again to the instance that took a dialog over.",
        stats.dialogs.eventsReplayed)
      .gauge("ari_proxy_mailbox_depth_max", "Pending outputs in the fullest dialog mailbox.", stats.deepestMailbox)
      .gauge("ari_proxy_bound_entities", "ARI entities (channels, bridges, ...) bound to a dialog.",
        stats.boundEntities)
      .gauge("ari_proxy_ready", "1 while /readyz answers 200.", state.ready ? 1 : 0)
      .gauge("ari_proxy_draining", "1 while shutting down.", state.draining ? 1 : 0)
      .gauge("ari_proxy_asterisk_info", "1, labelled with the version and entity id of the Asterisk behind the proxy.",
        asterisk === null ? [] : [{ labels: { version: asterisk.version, entity_id: asterisk.entity_id }, value: 1 }])
      .gauge("ari_proxy_start_time_seconds", "When the proxy started (its presence `started_at`), in Unix seconds.",
        presence === undefined ? [] : [{ value: Date.parse(presence.started_at) / 1000 }])
      .counter("ari_proxy_presence_messages_total", "Presence messages published, by type (heartbeat, goodbye).",
        byLabel(metrics.presenceAnnounced, "type"))
      .gauge("process_resident_memory_bytes", "Resident set size.", memory.rss)
      .gauge("nodejs_heap_used_bytes", "V8 heap in use.", memory.heapUsed)
      .counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.", cpuSeconds())
      .gauge("ari_proxy_build_info", "1, labelled with the ari-proxy version and the Node.js version.",
        [{ labels: { version: packageVersion, node: process.version }, value: 1 }])
      .toString()
  })

/** The event-loop delay, after the rest of /metrics: its monitor lives as long as the endpoint. */
const renderEventLoopDelay = (eventLoop: EventLoopDelay): string =>
  new PrometheusText()
    .summary("nodejs_eventloop_delay_seconds", "Event-loop delay; quantiles since the previous scrape.",
      eventLoop.take())
    .toString()

const noStore = { "cache-control": "no-store" }

export const opsRouter = (observed: () => Observed | undefined, eventLoop: EventLoopDelay) =>
  HttpRouter.empty.pipe(
    HttpRouter.get("/healthz", Effect.succeed(HttpServerResponse.text("ok\n", { headers: noStore }))),
    HttpRouter.get(
      "/readyz",
      Effect.suspend(() => readiness(observed())).pipe(Effect.map((state) =>
        HttpServerResponse.unsafeJson(state, { status: state.ready ? 200 : 503, headers: noStore })
      ))
    ),
    HttpRouter.get(
      "/metrics",
      Effect.suspend(() => renderMetrics(observed())).pipe(Effect.map((body) =>
        HttpServerResponse.text(body + renderEventLoopDelay(eventLoop), { contentType, headers: noStore })
      ))
    )
  )

/** The endpoint: it answers from the start, and reports on the proxy once `observe` was called. */
export class OpsEndpoint extends Context.Tag("ari-proxy/OpsEndpoint")<OpsEndpoint, {
  readonly observe: (observed: Observed) => void
}>() {}

const makeOpsEndpoint = Effect.gen(function*() {
  let observed: Observed | undefined
  const eventLoop = yield* monitorEventLoop()
  yield* HttpServer.serveEffect(opsRouter(() => observed, eventLoop))
  const address = yield* HttpServer.addressFormattedWith((address) => Effect.succeed(address))
  yield* Effect.logInfo(`health and metrics on ${address} (/healthz, /readyz, /metrics)`)
  return {
    observe: (next: Observed) => {
      observed = next
    }
  }
})

export const layerOpsHttp = (options: OpsHttpOptions): Layer.Layer<OpsEndpoint, ServeError> =>
  Layer.scoped(OpsEndpoint, makeOpsEndpoint).pipe(
    Layer.provide(NodeHttpServer.layer(createServer, { port: options.port, host: options.host }))
  )

/** The endpoint as configured: `http_port` 0 means none (observing then does nothing). */
export const layerOpsHttpFromConfig: Layer.Layer<OpsEndpoint, ServeError, ProxyConfigService> = Layer.unwrapEffect(
  Effect.map(ProxyConfigService, (config) =>
    config.httpPort === 0
      ? Layer.succeed(OpsEndpoint, { observe: () => {} })
      : layerOpsHttp({ port: config.httpPort, host: config.httpHost }))
)

/**
 * Points the endpoint at the running proxy. At shutdown its finalizer, the first to run, starts
 * the drain while the endpoint still answers (503 on /readyz).
 */
export const layerObserveProxy: Layer.Layer<never, never, OpsEndpoint | Proxy | Bus | ProxyMetricsService> =
  Layer.scopedDiscard(
    Effect.gen(function*() {
      const endpoint = yield* OpsEndpoint
      const proxy = yield* Proxy
      endpoint.observe({ proxy, bus: yield* Bus, metrics: yield* ProxyMetricsService })
      yield* Effect.addFinalizer(() => proxy.drain)
    })
  )
