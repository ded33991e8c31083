/**
 * Trace context across the bus, on the application's side (docs/client.md, "Tracing"): a request
 * made inside a span carries that span's `traceparent`, so the proxy's spans of the command
 * continue the application's trace; the proxy's dialog span comes back as an ExternalSpan to link to.
 */
import { Context, Effect, Option, Tracer } from "effect"
import { formatTraceparent, parseTraceparent } from "../protocol/traceparent.js"

/**
 * The `traceparent` of the span the caller runs in (an OpenTelemetry span, or Effect's own when
 * no tracer is installed: it has ids all the same); undefined outside any span, or when the span
 * disables propagation.
 */
export const currentTraceparent: Effect.Effect<string | undefined> = Effect.map(
  Effect.serviceOption(Tracer.ParentSpan),
  (span) =>
    Option.isNone(span) || Context.get(span.value.context, Tracer.DisablePropagation)
      ? undefined
      : formatTraceparent(span.value)
)

/** The span a `traceparent` names, as an ExternalSpan; undefined when there is none or it is not valid. */
export const externalSpanOf = (traceparent: unknown): Tracer.ExternalSpan | undefined => {
  const context = parseTraceparent(traceparent)
  return context === undefined ? undefined : Tracer.externalSpan(context)
}
