/**
 * ARI REST over the event websocket (`ari_rest_transport: websocket`): each command goes out as a
 * `RESTRequest` frame on the socket that carries the events, and its answer is the `RESTResponse`
 * frame with the same `request_id` (docs/asterisk.md says what Asterisk does on the wire).
 *
 * The guarantees are the HTTP client's: every command gets exactly one reply; a command the proxy
 * refuses (`validateAriRequest`) is answered 400 and never sent; ARI's status and body are passed
 * through unchanged (`message_body` is the HTTP body as a string, so the dialog binds entities from
 * it as it does from an HTTP answer); a lost answer is a 504 after `command_timeout_ms`; while the
 * socket is down a command is answered 503, and one in flight when it drops 502.
 *
 * What the frame cannot carry: response headers (`Location`; the proxy never used them). A
 * response and the events its request caused are not ordered against each other (Asterisk writes
 * them from different threads): nothing here or in the dialogs assumes either order.
 *
 * No fiber per command: the request is one frame written on the socket, the answer arrives in the
 * socket's callback, and one timer (re-armed for the oldest request) enforces every deadline: all
 * requests have the same timeout, so the pending map's insertion order is deadline order.
 */
import { Context, Effect, Layer } from "effect"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import { ProxyMetricsService, secondsSince } from "../observability/metrics.js"
import type { AriConnectionState } from "./socket.js"
import {
  type AriReply,
  type AriRequest,
  AriRest,
  type AriRestShape,
  describeRequest,
  type OnAriReply,
  type PreparedRequest,
  proxyReply,
  restFromRequest,
  validateAriRequest
} from "./rest.js"

/** Sends one text frame on the event socket: the number of the connection it went out on, or undefined. */
export type FrameSender = (frame: string) => number | undefined

/** What the proxy connects between the event socket and the websocket REST client. */
export interface AriWebsocketRestLinkShape {
  /** The socket's `unsafeSend`; until it is given, commands are answered 503. */
  readonly useSender: (send: FrameSender) => void
  /** A `RESTResponse` frame, parsed (the router parses each frame once). */
  readonly onResponse: (response: Readonly<Record<string, unknown>>) => void
  /** Every state of the socket: commands sent on a connection that has ended are answered 502. */
  readonly onConnectionState: (state: AriConnectionState) => void
}

export interface AriWebsocketRestOptions {
  /** Deadline of one request: past it, the command is answered 504 and a late answer is ignored. */
  readonly commandTimeoutMs: number
}

interface Pending {
  readonly connection: number
  readonly deadline: number
  readonly startedAt: number
  readonly request: AriRequest
  readonly onReply: OnAriReply
}

/** The frame of one validated request: `uri` relative to `/ari/`, its query as name/value pairs. */
export const restRequestFrame = (requestId: string, request: PreparedRequest): string => {
  const queryStart = request.pathAndQuery.indexOf("?")
  const path = queryStart === -1 ? request.pathAndQuery : request.pathAndQuery.slice(0, queryStart)
  const frame: Record<string, unknown> = {
    type: "RESTRequest",
    request_id: requestId,
    method: request.method,
    // Asterisk answers a leading slash with 405
    uri: path.slice(1)
  }
  if (queryStart !== -1) {
    const pairs = [...new URLSearchParams(request.pathAndQuery.slice(queryStart + 1))]
    if (pairs.length > 0) frame.query_strings = pairs.map(([name, value]) => ({ name, value }))
  }
  if (request.body !== undefined) {
    // a string: a body given as a JSON object is silently ignored by Asterisk
    frame.content_type = "application/json"
    frame.message_body = request.body
  }
  return JSON.stringify(frame)
}

export const makeAriWebsocketRest = (options: AriWebsocketRestOptions) =>
  Effect.gen(function*() {
    const metrics = yield* ProxyMetricsService
    const deadlineMs = options.commandTimeoutMs
    const timeoutReply = proxyReply(504, `ARI did not answer within ${deadlineMs} ms`)
    const notConnectedReply = proxyReply(503, "ARI is unavailable: the ARI websocket is not connected")
    const lostReply = proxyReply(502, "ARI websocket closed before the answer came (the request may have run)")
    const pending = new Map<string, Pending>()
    let send: FrameSender | undefined
    let nextId = 0
    let timer: ReturnType<typeof setTimeout> | undefined

    const answer = (entry: Pending, reply: AriReply, fromAri: boolean) => {
      metrics.ariRestLatency.observe(secondsSince(entry.startedAt))
      entry.onReply(
        reply,
        fromAri ? undefined : `ARI request ${describeRequest(entry.request)} answered ${reply.status}: ${reply.body}`
      )
    }

    const armTimer = () => {
      if (timer !== undefined) return
      const oldest = pending.values().next()
      if (oldest.done === true) return
      timer = setTimeout(expire, Math.max(0, oldest.value.deadline - performance.now()))
    }

    function expire() {
      timer = undefined
      const now = performance.now()
      const expired: Array<Pending> = []
      for (const [id, entry] of pending) {
        if (entry.deadline > now) break
        pending.delete(id)
        expired.push(entry)
      }
      armTimer()
      for (const entry of expired) answer(entry, timeoutReply, false)
    }

    /** Answers the commands sent on connections up to `connection`, which have ended. */
    const connectionsEnded = (connection: number) => {
      const lost: Array<Pending> = []
      for (const [id, entry] of pending) {
        if (entry.connection > connection) continue
        pending.delete(id)
        lost.push(entry)
      }
      for (const entry of lost) answer(entry, lostReply, false)
    }

    const request = (ariRequest: AriRequest, onReply: OnAriReply): void => {
      const validation = validateAriRequest(ariRequest)
      if (!validation.ok) {
        onReply(proxyReply(400, validation.reason), undefined)
        return
      }
      const startedAt = performance.now()
      const requestId = `r${++nextId}`
      const connection = send?.(restRequestFrame(requestId, validation.request))
      if (connection === undefined) {
        onReply(notConnectedReply, `ARI request ${describeRequest(ariRequest)} answered 503: ${notConnectedReply.body}`)
        return
      }
      pending.set(requestId, { connection, deadline: startedAt + deadlineMs, startedAt, request: ariRequest, onReply })
      armTimer()
    }

    const onResponse = (response: Readonly<Record<string, unknown>>) => {
      const requestId = response.request_id
      // an answer after its deadline (already answered 504) is dropped, as undici drops one over HTTP
      const entry = typeof requestId === "string" ? pending.get(requestId) : undefined
      if (entry === undefined) return
      pending.delete(requestId as string)
      const status = response.status_code
      if (typeof status !== "number") {
        answer(entry, proxyReply(502, "ARI answered a RESTResponse without a status_code"), false)
        return
      }
      // a response without a body (204) has no message_body, as an HTTP 204 has an empty body
      const body = typeof response.message_body === "string" ? response.message_body : ""
      answer(entry, { status, body }, true)
    }

    const onConnectionState = (state: AriConnectionState) =>
      connectionsEnded(state._tag === "Connected" ? state.connections - 1 : state.connections)

    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (timer !== undefined) clearTimeout(timer)
        timer = undefined
        send = undefined
        connectionsEnded(Number.POSITIVE_INFINITY)
      })
    )

    const link: AriWebsocketRestLinkShape = {
      useSender: (sender) => {
        send = sender
      },
      onResponse,
      onConnectionState
    }
    return { rest: restFromRequest(request) satisfies AriRestShape, link }
  })

/** The link between the event socket and the websocket REST client; present only with that transport. */
export class AriWebsocketRestLink
  extends Context.Tag("ari-proxy/AriWebsocketRestLink")<AriWebsocketRestLink, AriWebsocketRestLinkShape>()
{
  /** `AriRest` over the event websocket, and the link the proxy connects to its socket. */
  static readonly layer = (
    options: AriWebsocketRestOptions
  ): Layer.Layer<AriRest | AriWebsocketRestLink, never, ProxyMetricsService> =>
    Layer.scopedContext(
      Effect.map(makeAriWebsocketRest(options), ({ link, rest }) =>
        Context.make(AriRest, rest).pipe(Context.add(AriWebsocketRestLink, link)))
    )

  static readonly layerFromConfig = (
    config: ProxyConfig
  ): Layer.Layer<AriRest | AriWebsocketRestLink, never, ProxyMetricsService> =>
    AriWebsocketRestLink.layer({ commandTimeoutMs: config.commandTimeoutMs })
}
