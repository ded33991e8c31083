/**
 * W3C Trace Context `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header), the
 * optional field by which a Command, an AppStart, an Event and a DialogGrant carry a span's identity
 * across the bus (docs/protocol.md, "Trace context").
 */

/** The identity of a span as `traceparent` carries it. */
export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string
  /** 16 lower-case hex digits, not all zero. */
  readonly spanId: string
  readonly sampled: boolean
}

// Version, trace id, span id, flags; a version after 00 may append fields after a dash.
const traceparentPattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/
const allZero = /^0+$/

/** The trace context a `traceparent` names; undefined when it is not a valid one (it is then ignored). */
export const parseTraceparent = (text: unknown): TraceContext | undefined => {
  if (typeof text !== "string") return undefined
  const match = traceparentPattern.exec(text)
  if (match === null) return undefined
  const [, version, traceId, spanId, flags, more] = match
  if (version === "ff" || (version === "00" && more !== undefined)) return undefined
  if (allZero.test(traceId) || allZero.test(spanId)) return undefined
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 }
}

/** `00-<trace id>-<span id>-<flags>`; undefined unless both ids are well-formed. */
export const formatTraceparent = (context: TraceContext): string | undefined => {
  const text = `00-${context.traceId}-${context.spanId}-${context.sampled ? "01" : "00"}`
  return parseTraceparent(text) === undefined ? undefined : text
}
