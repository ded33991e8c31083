/**
 * An OTLP/HTTP trace receiver for tests: a server on 127.0.0.1 (port 0) that decodes what an
 * exporter POSTs to `/v1/traces` in the JSON encoding (ids in hex, times as nanosecond strings) and
 * keeps the spans, flattened, in the order they arrive.
 */
import { createServer } from "node:http"
import { Effect, type Scope } from "effect"

export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  /** "" for a root span. */
  readonly parentSpanId: string
  readonly name: string
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number
  readonly startNanos: bigint
  readonly endNanos: bigint
  readonly attributes: Readonly<Record<string, unknown>>
  readonly links: ReadonlyArray<{ readonly traceId: string; readonly spanId: string }>
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  readonly status: number
  /** The resource's attributes (service.name, ...). */
  readonly resource: Readonly<Record<string, unknown>>
}

export interface OtlpReceiver {
  /** The base URL to give as `otel_endpoint`. */
  readonly endpoint: string
  readonly spans: Array<ReceivedSpan>
  /** Requests to any other path, or bodies that were not OTLP JSON. */
  readonly rejected: Array<string>
}

interface AnyValue {
  readonly stringValue?: string
  readonly intValue?: string | number
  readonly doubleValue?: number
  readonly boolValue?: boolean
}

const valueOf = (value: AnyValue | undefined): unknown => {
  if (value === undefined) return undefined
  if (value.stringValue !== undefined) return value.stringValue
  if (value.intValue !== undefined) return Number(value.intValue)
  if (value.doubleValue !== undefined) return value.doubleValue
  return value.boolValue
}

const attributesOf = (list: ReadonlyArray<{ key: string; value?: AnyValue }> | undefined) =>
  Object.fromEntries((list ?? []).map(({ key, value }) => [key, valueOf(value)]))

const decode = (body: string): Array<ReceivedSpan> => {
  const request = JSON.parse(body) as { resourceSpans: Array<any> }
  const spans: Array<ReceivedSpan> = []
  for (const resourceSpans of request.resourceSpans) {
    const resource = attributesOf(resourceSpans.resource?.attributes)
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      for (const span of scopeSpans.spans ?? []) {
        spans.push({
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ?? "",
          name: span.name,
          kind: span.kind,
          startNanos: BigInt(span.startTimeUnixNano),
          endNanos: BigInt(span.endTimeUnixNano),
          attributes: attributesOf(span.attributes),
          links: (span.links ?? []).map((link: any) => ({ traceId: link.traceId, spanId: link.spanId })),
          status: span.status?.code ?? 0,
          resource
        })
      }
    }
  }
  return spans
}

/** Starts the receiver; it closes with the scope. */
export const startOtlpReceiver: Effect.Effect<OtlpReceiver, never, Scope.Scope> = Effect.acquireRelease(
  Effect.async<{ receiver: OtlpReceiver; close: () => Promise<void> }>((resume) => {
    const spans: Array<ReceivedSpan> = []
    const rejected: Array<string> = []
    const server = createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8")
        try {
          if (request.method !== "POST" || request.url !== "/v1/traces") throw new Error(`${request.method} ${request.url}`)
          spans.push(...decode(body))
          response.writeHead(200, { "content-type": "application/json" }).end("{}")
        } catch (error) {
          rejected.push(String(error))
          response.writeHead(400).end()
        }
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      resume(Effect.succeed({
        receiver: { endpoint: `http://127.0.0.1:${port}`, spans, rejected },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done())
            server.closeAllConnections() // the exporter keeps its connection alive
          })
      }))
    })
  }),
  ({ close }) => Effect.promise(close)
).pipe(Effect.map(({ receiver }) => receiver))
