/**
 * Tracing of dialogs and their commands (docs/operations.md, "Tracing"), off unless a `ProxyTracer`
 * is provided (`otel_endpoint`: OpenTelemetry, exported over OTLP/HTTP).
 *
 * Spans are made on Effect's `Tracer` directly, in the dialog actor's synchronous hooks, without a
 * fiber: the dialog path runs in callbacks (docs/architecture.md, "What is a fiber"). A dialog
 * without tracing holds no `DialogTrace`: each hook is then one check of an undefined field.
 *
 * - `dialog`: from the StasisStart that opened the dialog (or the application's request) to its
 *   DialogEnded; AppStart, the DialogGrant and every event carry its `traceparent`.
 * - `command`: from a command's arrival to its answer handed to the bus; its parent is the
 *   command's `traceparent` (linked to the dialog span) or else the dialog span. Its children:
 *   `command queue` (waiting for its turn behind the dialog's earlier commands), the ARI request
 *   (`POST /channels/{channelId}/answer`: method, route template, status code) and
 *   `publish response` (from the answer's turn in the dialog's mailbox to the bus taking it).
 */
import * as OtelResource from "@effect/opentelemetry/Resource"
import * as OtelTracer from "@effect/opentelemetry/Tracer"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { type Clock, Context, Effect, Exit, FiberId, Layer, Option, Tracer } from "effect"
import { routeTemplate } from "../ari/routes.js"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import type { CommandDecoding, DecodedCommand } from "../protocol/codec.js"
import { formatTraceparent, parseTraceparent } from "../protocol/traceparent.js"
import { methodLabel } from "./metrics.js"
import { packageVersion } from "./processMetrics.js"

/** Where an OTLP/HTTP receiver at `endpoint` takes spans (as OTEL_EXPORTER_OTLP_ENDPOINT is read). */
const tracesUrl = (endpoint: string): string => `${endpoint.replace(/\/+$/, "")}/v1/traces`

/** The tracer of the proxy's dialog spans; absent, the proxy makes none. */
export class ProxyTracer extends Context.Tag("ari-proxy/ProxyTracer")<ProxyTracer, Tracer.Tracer>() {
  /**
   * OpenTelemetry spans exported in batches over OTLP/HTTP (JSON) to `<endpoint>/v1/traces`;
   * what is still buffered is flushed when the layer is released (within 3 s).
   */
  static readonly layerOtlp = (options: {
    readonly endpoint: string
    readonly serviceName: string
    readonly serviceInstanceId: string
  }): Layer.Layer<ProxyTracer> => {
    const provider = Layer.scoped(
      OtelTracer.OtelTracerProvider,
      Effect.flatMap(OtelResource.Resource, (resource) =>
        Effect.acquireRelease(
          Effect.sync(() =>
            new BasicTracerProvider({
              resource,
              spanProcessors: [
                new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl(options.endpoint) }))
              ]
            })
          ),
          (provider) =>
            Effect.promise(() => provider.forceFlush().then(() => provider.shutdown())).pipe(
              // A finalizer runs uninterruptibly: without this the timeout could not cut the wait short.
              Effect.interruptible,
              Effect.timeoutOption("3 seconds"),
              Effect.catchAllDefect(() => Effect.void)
            )
        ))
    )
    return Layer.effect(ProxyTracer, OtelTracer.make).pipe(
      Layer.provide(OtelTracer.layerTracer),
      Layer.provide(provider),
      Layer.provide(OtelResource.layer({
        serviceName: options.serviceName,
        serviceVersion: packageVersion,
        attributes: { "service.instance.id": options.serviceInstanceId }
      }))
    )
  }

  /** The tracer the host application installed (e.g. with @effect/opentelemetry's own layers). */
  static readonly layerCurrent: Layer.Layer<ProxyTracer> = Layer.effect(ProxyTracer, Effect.tracer)

  /** `layerOtlp` when `otel_endpoint` is set; otherwise nothing (no tracing). */
  static readonly layerFromConfig = (config: ProxyConfig): Layer.Layer<never> | Layer.Layer<ProxyTracer> =>
    config.otelEndpoint === "" ? Layer.empty : ProxyTracer.layerOtlp({
      endpoint: config.otelEndpoint,
      serviceName: config.otelServiceName,
      serviceInstanceId: config.serverId
    })
}

const noContext = Context.empty()
const noLinks: ReadonlyArray<Tracer.SpanLink> = []
/** A span without a parent starts a trace: never one of whatever OpenTelemetry context is active. */
const spanOptions: Tracer.SpanOptions = { root: true }

/** The parent a `traceparent` names, if it is a valid one. */
const remoteParent = (traceparent: string | undefined): Tracer.ExternalSpan | undefined => {
  const context = traceparent === undefined ? undefined : parseTraceparent(traceparent)
  return context === undefined ? undefined : Tracer.externalSpan(context)
}

/** Makes the dialogs' traces; one per proxy. */
export class DialogTracing {
  constructor(
    private readonly tracer: Tracer.Tracer,
    private readonly clock: Clock.Clock,
    readonly serverId: string
  ) {}

  /** The span of a new dialog; `parent`: the `traceparent` of the application's request for it. */
  open(dialog: {
    readonly id: string
    readonly application: string
    readonly channelId: string | undefined
    readonly responsesTopic: string
    readonly parent: string | undefined
  }): DialogTrace {
    const parent = remoteParent(dialog.parent)
    const span = this.start("dialog", parent === undefined ? Option.none() : Option.some(parent), noLinks, "internal")
    span.attribute("ari_proxy.dialog_id", dialog.id)
    span.attribute("ari_proxy.application", dialog.application)
    span.attribute("ari_proxy.server_id", this.serverId)
    if (dialog.channelId !== undefined) span.attribute("ari_proxy.channel_id", dialog.channelId)
    return new DialogTrace(this, span, dialog.id, dialog.responsesTopic)
  }

  start(
    name: string,
    parent: Option.Option<Tracer.AnySpan>,
    links: ReadonlyArray<Tracer.SpanLink>,
    kind: Tracer.SpanKind
  ): Tracer.Span {
    return this.tracer.span(name, parent, noContext, links, this.clock.unsafeCurrentTimeNanos(), kind, spanOptions)
  }

  end(span: Tracer.Span, exit: Exit.Exit<unknown, unknown> = Exit.void): void {
    span.end(this.clock.unsafeCurrentTimeNanos(), exit)
  }
}

/** A command between its arrival and its answer. */
interface TracedCommand {
  readonly uniqueId: string
  /** The decoded command (undefined for an invalid one): the machine hands the same object to Send. */
  readonly command: DecodedCommand | undefined
  readonly span: Tracer.Span
  /** Open until the command's turn: its ARI request, or the publication of the proxy's answer. */
  wait: Tracer.Span | undefined
  ari: Tracer.Span | undefined
  publish: Tracer.Span | undefined
}

/** One dialog's spans: its own, and those of its commands. Fed by the dialog actor's hooks. */
export class DialogTrace {
  /** The dialog span's identity, carried by AppStart, the DialogGrant and every event. */
  readonly traceparent: string | undefined
  private readonly self: Option.Option<Tracer.AnySpan>
  private readonly link: ReadonlyArray<Tracer.SpanLink>
  private readonly pending: Array<TracedCommand> = []
  /** The command whose ARI request runs (a dialog runs one at a time). */
  private inFlight: TracedCommand | undefined
  /** The answer being published (the mailbox publishes one at a time, in order). */
  private answering: TracedCommand | undefined
  private open = true
  /** The dialog stopped: a command still delivered while its subscription closed gets no answer, nor a span. */
  private closed = false

  constructor(
    private readonly tracing: DialogTracing,
    private readonly span: Tracer.Span,
    private readonly dialogId: string,
    private readonly responsesTopic: string
  ) {
    this.traceparent = formatTraceparent(span)
    this.self = Option.some(span)
    this.link = [{ _tag: "SpanLink", span, attributes: {} }]
  }

  /** A command (or an invalid one) arrived; `ahead`: commands of the dialog before it. */
  received(decoded: Exclude<CommandDecoding, { readonly _tag: "NotJson" }>, ahead: number): void {
    if (this.closed) return
    const command = decoded._tag === "Command" ? decoded.command : undefined
    const { traceparent, unique_id: uniqueId } = decoded._tag === "Command" ? decoded.command : decoded
    const remote = remoteParent(traceparent)
    const span = remote === undefined
      ? this.tracing.start("command", this.self, noLinks, "consumer")
      : this.tracing.start("command", Option.some(remote), this.link, "consumer")
    span.attribute("ari_proxy.dialog_id", this.dialogId)
    span.attribute("ari_proxy.unique_id", uniqueId)
    span.attribute("ari_proxy.method", command === undefined ? "INVALID" : methodLabel(command.method))
    const wait = this.tracing.start("command queue", Option.some(span), noLinks, "internal")
    wait.attribute("ari_proxy.commands_ahead", ahead)
    this.pending.push({ uniqueId, command, span, wait, ari: undefined, publish: undefined })
  }

  /** The command's turn: its ARI request is sent. */
  sending(command: DecodedCommand): void {
    const traced = this.pending.find((pending) => pending.command === command)
    if (traced === undefined) return
    this.endWait(traced)
    const method = command.method === "" ? "GET" : command.method.toUpperCase()
    const template = routeTemplate(method, command.url)
    const name = template === undefined ? method : `${method} ${template}`
    const ari = this.tracing.start(name, Option.some(traced.span), noLinks, "client")
    ari.attribute("http.request.method", method)
    if (template !== undefined) ari.attribute("url.template", template)
    traced.ari = ari
    this.inFlight = traced
  }

  /** ARI answered the request in flight (`proxyMade`: or the proxy did, ARI being unreachable or late). */
  replied(status: number, proxyMade: boolean): void {
    const traced = this.inFlight
    if (traced?.ari === undefined) return
    this.inFlight = undefined
    traced.ari.attribute("http.response.status_code", status)
    if (proxyMade) traced.ari.attribute("ari_proxy.proxy_answer", true)
    this.tracing.end(traced.ari, status >= 400 ? Exit.fail(`ARI request answered ${status}`) : Exit.void)
    traced.ari = undefined
  }

  /** An answer's turn to be published (matched by `unique_id`, else to the oldest command). */
  publishing(uniqueId: string): void {
    if (this.answering !== undefined) return // the same answer, tried again after the bus pushed back
    const index = this.pending.findIndex((pending) => pending.uniqueId === uniqueId)
    const traced = this.pending[index === -1 ? 0 : index]
    if (traced === undefined) return
    this.endWait(traced)
    const publish = this.tracing.start("publish response", Option.some(traced.span), noLinks, "producer")
    publish.attribute("messaging.destination.name", this.responsesTopic)
    traced.publish = publish
    this.answering = traced
  }

  /** The bus took the answer: the command is done. */
  answered(status: number): void {
    const traced = this.answering
    if (traced === undefined) return
    this.answering = undefined
    this.pending.splice(this.pending.indexOf(traced), 1)
    if (traced.publish !== undefined) this.tracing.end(traced.publish)
    traced.span.attribute("ari_proxy.status_code", status)
    this.tracing.end(traced.span)
  }

  /** DialogEnded was published. */
  ended(reason: string): void {
    if (!this.open) return
    this.open = false
    this.span.attribute("ari_proxy.end_reason", reason)
    this.tracing.end(this.span)
  }

  /** The dialog stopped: whatever is still open ends now (commands nobody will answer). */
  stopped(): void {
    this.closed = true
    for (const traced of this.pending) {
      for (const span of [traced.wait, traced.ari, traced.publish, traced.span]) {
        if (span !== undefined) this.tracing.end(span, Exit.interrupt(FiberId.none))
      }
    }
    this.pending.length = 0
    this.ended("stopped")
  }

  private endWait(traced: TracedCommand): void {
    if (traced.wait === undefined) return
    this.tracing.end(traced.wait)
    traced.wait = undefined
  }
}
