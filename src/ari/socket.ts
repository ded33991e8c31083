/**
 * The ARI event websocket: one connection for every configured application, kept open forever.
 *
 * Why one socket for all apps (`?app=a,b`): ARI accepts several applications per socket, and a
 * single socket gives one global event order, which the proxy's router relies on (an event for a
 * channel moving between two apps' dialogs stays ordered). The seed opened one socket per app.
 *
 * Frames are handed to `onFrame` synchronously, in arrival order, on the `ws` callback: no queue,
 * no allocation besides the frame string. The consumer applies backpressure with `pause()`, which
 * stops reading the TCP socket (frames already read may still arrive). While paused the ping
 * check is suspended, since pongs cannot be read either.
 *
 * The connection is re-opened after ANY end (close, refusal, handshake error, 401, dead peer)
 * with the proxy's retry policy (src/resilience/retry.ts: capped exponential backoff and jitter,
 * from `reconnect_min_ms` to `reconnect_max_ms`); ARI going away never stops the process. A dead
 * peer is found by ping/pong: we ping every `pingIntervalMs`, and a connection from which nothing
 * (pong, ping or frame) arrived during one interval is terminated. Every delay (backoff, ping,
 * handshake deadline) is taken on Effect's Clock, so tests drive them with TestClock.
 *
 * Credentials travel only in the Authorization header; the URL (the one logged) has none.
 */
import {
  Context,
  Data,
  Effect,
  Equal,
  type Fiber,
  FiberId,
  Layer,
  Runtime,
  type Stream,
  SubscriptionRef
} from "effect"
import WebSocket from "ws"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import { makeBackoff } from "../resilience/retry.js"
import { AriConfigError, type AriCredentials, ariCredentials, basicAuthorization } from "./rest.js"

export interface AriSocketOptions extends AriCredentials {
  /** e.g. `ws://localhost:8088/ari/events`; a query already there is kept. */
  readonly websocketUrl: string
  readonly applications: ReadonlyArray<string>
  /** Adds `subscribeAll=true`: ARI then sends events for every object, not only those in Stasis. */
  readonly subscribeAll: boolean
  /** Value of the `Origin` header; "" sends none. */
  readonly origin: string
  readonly reconnectMinMs: number
  readonly reconnectMaxMs: number
  readonly pingIntervalMs: number
  readonly handshakeTimeoutMs: number
}

export const AriSocketOptions = {
  fromConfig: (config: ProxyConfig): AriSocketOptions => ({
    ...ariCredentials(config),
    websocketUrl: config.websocketUrl,
    applications: config.applications,
    subscribeAll: config.subscribeAll,
    origin: config.origin,
    reconnectMinMs: config.reconnectMinMs,
    reconnectMaxMs: config.reconnectMaxMs,
    pingIntervalMs: config.pingIntervalMs,
    // The same deadline a REST command gets.
    handshakeTimeoutMs: config.commandTimeoutMs
  })
}

/**
 * Where the socket is. `connections` counts successful connects so far: a `Connected` state with
 * `connections > 1` is a REconnect, after which the proxy reconciles its dialogs.
 */
export type AriConnectionState = Data.TaggedEnum<{
  Connecting: { readonly attempt: number; readonly connections: number }
  Connected: { readonly connections: number }
  Disconnected: {
    readonly reason: string
    readonly retryInMs: number
    /** Attempts in a row that failed to connect (0 when an open connection was lost). */
    readonly failedAttempts: number
    readonly connections: number
  }
  Closed: { readonly connections: number }
}>
export const AriConnectionState = Data.taggedEnum<AriConnectionState>()

/** A text frame as a string, however `ws` handed it over (one buffer, fragments, or an ArrayBuffer). */
export const frameText = (data: WebSocket.RawData): string =>
  Buffer.isBuffer(data)
    ? data.toString("utf8")
    : Array.isArray(data)
    ? Buffer.concat(data).toString("utf8")
    : Buffer.from(data).toString("utf8")

export interface AriFrameSinkShape {
  /** Called synchronously for each text frame, in order. Must not block; may call `pause()`. */
  readonly onFrame: (frame: string) => void
}

/** The consumer of ARI frames, for building the socket from layers (`AriSocket.layer`). */
export class AriFrameSink extends Context.Tag("ari-proxy/AriFrameSink")<AriFrameSink, AriFrameSinkShape>() {}

export interface AriSocketShape {
  /** The events URL without credentials, as logged. */
  readonly url: string
  readonly state: Effect.Effect<AriConnectionState>
  /** The current state, then every change. */
  readonly changes: Stream.Stream<AriConnectionState>
  /** Stops reading from ARI (TCP backpressure) until `resume`; kept across reconnects. */
  readonly pause: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
  /** Synchronous forms of `pause`/`resume`, for use inside `onFrame`. */
  readonly unsafePause: () => void
  readonly unsafeResume: () => void
  /**
   * Sends a text frame on the open connection: the number of that connection (as `connections`
   * counts them), or undefined when none is open. A write that fails ends the connection.
   */
  readonly unsafeSend: (frame: string) => number | undefined
}

export class AriSocket extends Context.Tag("ari-proxy/AriSocket")<AriSocket, AriSocketShape>() {
  /** The socket, delivering to the `AriFrameSink` in context. */
  static readonly layer = (options: AriSocketOptions): Layer.Layer<AriSocket, AriConfigError, AriFrameSink> =>
    Layer.scoped(AriSocket, Effect.flatMap(AriFrameSink, (sink) => makeAriSocket(options, sink.onFrame)))

  /** The socket, delivering to the given function. */
  static readonly layerWithSink = (
    options: AriSocketOptions,
    onFrame: (frame: string) => void
  ): Layer.Layer<AriSocket, AriConfigError> => Layer.scoped(AriSocket, makeAriSocket(options, onFrame))
}

// ---------------------------------------------------------------------------------------------
// URL

const keysWeSet: ReadonlySet<string> = new Set(["app", "subscribeAll", "api_key"])

const queryKey = (part: string): string => {
  const raw = part.split("=", 1)[0] ?? ""
  try {
    return decodeURIComponent(raw.replace(/\+/g, " "))
  } catch {
    return raw
  }
}

/**
 * The events URL: `websocket_url` without credentials or fragment, its own query kept (minus any
 * `app`, `subscribeAll` or `api_key`, which we set or refuse to send), then
 * `app=<each name URL-encoded, joined by literal commas>` and `subscribeAll=true` if configured.
 */
export const eventsUrl = (options: AriSocketOptions): string | AriConfigError => {
  let parsed: URL
  try {
    parsed = new URL(options.websocketUrl)
  } catch {
    return new AriConfigError({ message: "websocket_url is not a valid URL" })
  }
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    return new AriConfigError({ message: "websocket_url must be a ws:// or wss:// URL" })
  }
  if (options.applications.length === 0) {
    return new AriConfigError({ message: "no applications configured for the ARI websocket" })
  }
  const kept = parsed.search.slice(1).split("&").filter((part) => part !== "" && !keysWeSet.has(queryKey(part)))
  kept.push(`app=${options.applications.map((name) => encodeURIComponent(name)).join(",")}`)
  if (options.subscribeAll) kept.push("subscribeAll=true")
  parsed.username = ""
  parsed.password = ""
  parsed.hash = ""
  parsed.search = `?${kept.join("&")}`
  return parsed.toString()
}

// ---------------------------------------------------------------------------------------------
// Failure descriptions (never contain credentials: the URL has none, headers are never printed)

const socketErrorPhrases: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ETIMEDOUT: "connection timed out"
}

const describeError = (error: unknown): string => {
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined
  if (typeof code === "string" && socketErrorPhrases[code] !== undefined) return socketErrorPhrases[code]
  const message = error instanceof Error ? error.message : String(error)
  const status = /^Unexpected server response: (\d+)$/.exec(message)?.[1]
  if (status === "401") return "ARI refused the credentials (HTTP 401); check ws_user and ws_password"
  if (status !== undefined) return `ARI refused the websocket (HTTP ${status})`
  return message
}

const describeClose = (code: number, reason: Buffer): string => {
  const text = reason.length > 0 ? `: ${reason.toString("utf8").slice(0, 120)}` : ""
  if (code === 1006) return "connection lost (1006)"
  return `closed by ARI (${code}${text})`
}

// ---------------------------------------------------------------------------------------------
// The socket

interface ConnectionEnd {
  readonly opened: boolean
  readonly openedAt: number
  readonly reason: string
}

interface LiveConnection {
  readonly ws: WebSocket
  /** Something arrived since the last ping. */
  heardFrom: boolean
}

const closeTimeoutMs = 1_000

export const makeAriSocket = (options: AriSocketOptions, onFrame: (frame: string) => void) =>
  Effect.gen(function*() {
    const url = eventsUrl(options)
    if (typeof url !== "string") return yield* url

    const runtime = yield* Effect.runtime<never>()
    const runSync = Runtime.runSync(runtime)
    const runFork = Runtime.runFork(runtime)
    const clock = yield* Effect.clock
    /** Runs `action` every `ms` (or once, `after`), on Effect's Clock, until the fiber is interrupted. */
    const every = (ms: number, action: () => void): Fiber.RuntimeFiber<void> =>
      runFork(Effect.forever(Effect.zipRight(Effect.sleep(ms), Effect.sync(action))))
    const after = (ms: number, action: () => void): Fiber.RuntimeFiber<void> =>
      runFork(Effect.zipRight(Effect.sleep(ms), Effect.sync(action)))
    const cancel = (fiber: Fiber.RuntimeFiber<void> | undefined) => fiber?.unsafeInterruptAsFork(FiberId.none)
    const state = yield* SubscriptionRef.make<AriConnectionState>(
      AriConnectionState.Connecting({ attempt: 1, connections: 0 })
    )
    const headers: Record<string, string> = {
      Authorization: basicAuthorization(options),
      // Offered by hand: with `protocols`, ws would reject Asterisk's answer, which selects none.
      "Sec-WebSocket-Protocol": "ari"
    }
    // Repeating the same state would only wake the observers.
    const setState = (next: AriConnectionState) =>
      Effect.flatMap(SubscriptionRef.get(state), (current) =>
        Equal.equals(current, next) ? Effect.void : SubscriptionRef.set(state, next))
    const minMs = Math.max(1, options.reconnectMinMs)
    const maxMs = Math.max(minMs, options.reconnectMaxMs)

    let connections = 0
    let failedAttempts = 0
    let paused = false
    let live: LiveConnection | undefined

    const deliver = (data: WebSocket.RawData, isBinary: boolean) => {
      if (isBinary) return // ARI only sends text
      const frame = frameText(data)
      try {
        onFrame(frame)
      } catch (error) {
        runSync(Effect.logError("ARI frame consumer threw; frame skipped", error))
      }
    }

    const onOpen = () => {
      connections++
      const attempts = failedAttempts + 1
      failedAttempts = 0
      const afterAttempts = attempts === 1 ? "" : ` after ${attempts} attempts`
      const message = connections === 1
        ? `ARI websocket connected to ${url}${afterAttempts}`
        : `ARI websocket connected again to ${url}${afterAttempts}`
      runSync(
        setState(AriConnectionState.Connected({ connections })).pipe(
          Effect.zipRight(Effect.logInfo(message))
        )
      )
    }

    const closeGracefully = (ws: WebSocket) =>
      Effect.async<void>((done) => {
        if (ws.readyState === WebSocket.CLOSED) return done(Effect.void)
        ws.once("close", () => done(Effect.void))
        ws.resume() // the peer's close reply must be readable
        ws.close(1000, "ari-proxy shutting down")
      }).pipe(
        // This runs when the connection is interrupted, uninterruptibly: without this the timeout
        // could not cut short the wait for a peer that never answers the close.
        Effect.interruptible,
        Effect.timeout(closeTimeoutMs),
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => ws.terminate()))
      )

    /** One connection, from dial to close; never fails. */
    const connectOnce = Effect.async<ConnectionEnd>((resume) => {
      let ws: WebSocket
      try {
        ws = new WebSocket(url, {
          headers,
          ...(options.origin === "" ? {} : { origin: options.origin }),
          perMessageDeflate: false,
          skipUTF8Validation: true,
          followRedirects: false
        })
      } catch (error) {
        resume(Effect.succeed({ opened: false, openedAt: 0, reason: describeError(error) }))
        return
      }
      const connection: LiveConnection = { ws, heardFrom: true }
      let opened = false
      let openedAt = 0
      let failure: string | undefined
      let pinger: Fiber.RuntimeFiber<void> | undefined
      // ws's own handshakeTimeout would be a Node timer; this deadline is on Effect's Clock.
      const handshakeDeadline = after(options.handshakeTimeoutMs, () => {
        failure ??= "Opening handshake has timed out"
        ws.terminate()
      })

      const checkAlive = () => {
        if (paused) {
          connection.heardFrom = true // nothing can be read while paused; judge after resume
          return
        }
        if (!connection.heardFrom) {
          failure ??= `no answer to ping within ${options.pingIntervalMs} ms`
          ws.terminate()
          return
        }
        connection.heardFrom = false
        ws.ping()
      }

      // We offered "ari" by header, so ws thinks we offered nothing; accept a server that selects it.
      ws.on("upgrade", (response) => {
        if (response.headers["sec-websocket-protocol"] === "ari") delete response.headers["sec-websocket-protocol"]
      })
      ws.on("open", () => {
        cancel(handshakeDeadline)
        opened = true
        openedAt = clock.unsafeCurrentTimeMillis()
        live = connection
        if (paused) ws.pause()
        pinger = every(options.pingIntervalMs, checkAlive)
        onOpen()
      })
      ws.on("message", (data, isBinary) => {
        connection.heardFrom = true
        deliver(data, isBinary)
      })
      ws.on("pong", () => {
        connection.heardFrom = true
      })
      ws.on("ping", () => {
        connection.heardFrom = true
      })
      ws.on("error", (error) => {
        failure ??= describeError(error)
      })
      ws.on("close", (code, reason) => {
        cancel(handshakeDeadline)
        cancel(pinger)
        if (live === connection) live = undefined
        resume(Effect.succeed({ opened, openedAt, reason: failure ?? describeClose(code, reason) }))
      })
      return Effect.suspend(() => closeGracefully(ws))
    })

    const connectForever = Effect.gen(function*() {
      const backoff = yield* makeBackoff({ firstDelayMs: minMs, maxDelayMs: maxMs })
      let lastFailure: string | undefined
      while (true) {
        yield* setState(AriConnectionState.Connecting({ attempt: failedAttempts + 1, connections }))
        yield* Effect.logDebug(`ARI websocket connecting to ${url} (attempt ${failedAttempts + 1})`)
        const end = yield* connectOnce
        if (end.opened) {
          // A connection that stayed up long enough restarts the backoff; a flapping one does not.
          if (clock.unsafeCurrentTimeMillis() - end.openedAt >= maxMs) yield* backoff.reset
          lastFailure = undefined
        } else {
          failedAttempts++
        }
        const retryInMs = yield* backoff.next
        yield* setState(AriConnectionState.Disconnected({ reason: end.reason, retryInMs, failedAttempts, connections }))
        if (end.opened) {
          yield* Effect.logWarning(`ARI websocket disconnected: ${end.reason}; reconnecting in ${retryInMs} ms`)
        } else if (end.reason !== lastFailure) {
          lastFailure = end.reason
          yield* Effect.logWarning(
            `ARI websocket cannot connect to ${url}: ${end.reason}; retrying in ${retryInMs} ms ` +
              "(further failures like this are logged at debug level)"
          )
        } else {
          yield* Effect.logDebug(
            `ARI websocket still cannot connect (attempt ${failedAttempts}): ${end.reason}; retrying in ${retryInMs} ms`
          )
        }
        yield* Effect.sleep(retryInMs)
      }
    })

    // Registered before the fork, so it runs after the connection fiber is interrupted (finalizers
    // run in reverse): the socket is closed with 1000 first, then the state says Closed.
    yield* Effect.addFinalizer(() =>
      setState(AriConnectionState.Closed({ connections })).pipe(
        Effect.zipRight(Effect.logInfo("ARI websocket closed"))
      )
    )
    yield* Effect.forkScoped(connectForever)

    const unsafePause = () => {
      if (paused) return
      paused = true
      if (live !== undefined && live.ws.readyState === WebSocket.OPEN) live.ws.pause()
    }
    const unsafeResume = () => {
      if (!paused) return
      paused = false
      if (live !== undefined && live.ws.readyState === WebSocket.OPEN) {
        live.heardFrom = true
        live.ws.resume()
      }
    }

    const unsafeSend = (frame: string): number | undefined => {
      if (live === undefined || live.ws.readyState !== WebSocket.OPEN) return undefined
      live.ws.send(frame)
      return connections
    }

    return {
      url,
      state: SubscriptionRef.get(state),
      changes: state.changes,
      pause: Effect.sync(unsafePause),
      resume: Effect.sync(unsafeResume),
      unsafePause,
      unsafeResume,
      unsafeSend
    } satisfies AriSocketShape
  })
