/**
 * The ARI REST client that executes bus commands.
 *
 * Every command becomes exactly one reply (`execute` never fails): a command the proxy refuses is
 * answered 400 without being sent, ARI trouble is answered 502/503/504, and a real ARI answer is
 * passed through unchanged. The seed's defects this fixes (seed-protocol §5, §8): credentials in
 * the URL (we send a Basic header), `?` doubling (a query in `url` is kept as given), bodies on
 * GET/DELETE, no deadline, and the process dying when ARI is down.
 *
 * GET and DELETE carry no body. For compatibility with seed clients, which put every parameter in
 * the JSON body, the top-level scalar fields of a GET/DELETE body object become query parameters
 * (as AsterNET-ARI-Proxy did): ARI reads the parameters of those methods from the query string.
 */
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { Pool } from "undici"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import { proxyErrorBody } from "../protocol/codec.js"
import { ProxyMetricsService, secondsSince } from "../observability/metrics.js"

export interface AriRequest {
  readonly method: string
  /** A path under `stasis_url`, starting with `/`; a query string is kept exactly as given. */
  readonly url: string
  /** JSON object text, or "". */
  readonly body: string
}

export interface AriReply {
  readonly status: number
  readonly body: string
}

/** A channel as `GET /channels` shows it: its id and the Stasis application it is in, if any. */
export interface ChannelPresence {
  readonly id: string
  readonly stasisApplication: string | undefined
}

/** How the proxy signs in to ARI, for REST and the event websocket alike (`ws_user`, `ws_password`). */
export interface AriCredentials {
  readonly user: string
  readonly password: Redacted.Redacted<string>
}

export const ariCredentials = (config: ProxyConfig): AriCredentials => ({
  user: config.wsUser,
  password: config.wsPassword
})

/** The `Authorization` header of every request to ARI: Basic, never credentials in a URL. */
export const basicAuthorization = (credentials: AriCredentials): string =>
  "Basic " + Buffer.from(`${credentials.user}:${Redacted.value(credentials.password)}`, "utf8").toString("base64")

export interface AriRestOptions extends AriCredentials {
  /** ARI REST base, e.g. `http://localhost:8088/ari`. */
  readonly stasisUrl: string
  /** Deadline of one request, headers and body included. */
  readonly commandTimeoutMs: number
  /** Keep-alive connections to ARI. */
  readonly connections: number
}

export const AriRestOptions = {
  fromConfig: (config: ProxyConfig): AriRestOptions => ({
    ...ariCredentials(config),
    stasisUrl: config.stasisUrl,
    commandTimeoutMs: config.commandTimeoutMs,
    connections: config.restConnections
  })
}

/** ARI could not be asked or gave no usable answer (used where a caller needs data, not a reply). */
export class AriUnavailable extends Schema.TaggedError<AriUnavailable>()("AriUnavailable", {
  status: Schema.Number,
  message: Schema.String
}) {}

/** `stasis_url` cannot be used; raised when the layer is built. */
export class AriConfigError extends Schema.TaggedError<AriConfigError>()("AriConfigError", {
  message: Schema.String
}) {}

/**
 * The one reply to a request. `trouble`: the proxy wrote the reply because ARI could not be asked
 * or gave no answer in time (502/503/504); a line for the debug log, which says so.
 */
export type OnAriReply = (reply: AriReply, trouble: string | undefined) => void

export interface AriRestShape {
  /**
   * Executes one command without a fiber (the dialogs' hot path): `onReply` is called exactly once,
   * later (a refusal: at once). Refusals, ARI trouble and timeouts are replies too. Nothing cancels
   * it: the deadline bounds it.
   */
  readonly request: (request: AriRequest, onReply: OnAriReply) => void
  /** Executes one command. Never fails: refusals, ARI trouble and timeouts are replies too. */
  readonly execute: (request: AriRequest) => Effect.Effect<AriReply>
  /** The channels ARI knows now (GET /channels), to reconcile dialogs after a reconnect. */
  readonly listChannels: () => Effect.Effect<ReadonlyArray<ChannelPresence>, AriUnavailable>
}

export class AriRest extends Context.Tag("ari-proxy/AriRest")<AriRest, AriRestShape>() {
  static readonly layer = (options: AriRestOptions): Layer.Layer<AriRest, AriConfigError, ProxyMetricsService> =>
    Layer.scoped(AriRest, makeAriRest(options))

  static readonly layerFromConfig = (
    config: ProxyConfig
  ): Layer.Layer<AriRest, AriConfigError, ProxyMetricsService> =>
    AriRest.layer(AriRestOptions.fromConfig(config))
}

// ---------------------------------------------------------------------------------------------
// Replies the proxy makes itself

/** A reply written by the proxy (not by ARI); the `source` field tells the two apart. */
export const proxyReply = (status: number, message: string): AriReply => ({
  status,
  body: proxyErrorBody(status, message)
})

// ---------------------------------------------------------------------------------------------
// Validation: what may be sent to ARI

const allowedMethods: ReadonlySet<string> = new Set(["GET", "POST", "PUT", "DELETE"])
const maxUrlLength = 8192
// Control characters, space and DEL: they could split the request line or a header.
const unsafeCharacter = /[\u0000-\u0020\u007f]/
// Characters a decoded path segment must not contain: separators and control characters.
const unsafeDecodedSegment = /[/\\\u0000-\u001f\u007f]/
const nonAscii = /[^\u0000-\u007f]+/g
const notUnderStasisUrl = "url must be a path under stasis_url"

/** A request that passed validation, ready for the wire. */
export interface PreparedRequest {
  readonly method: "GET" | "POST" | "PUT" | "DELETE"
  /** Path and query relative to `stasis_url`, starting with `/`. */
  readonly pathAndQuery: string
  /** Undefined when nothing is sent (empty body, or GET/DELETE). */
  readonly body: string | undefined
}

export type Validation =
  | { readonly ok: true; readonly request: PreparedRequest }
  | { readonly ok: false; readonly reason: string }

const refuse = (reason: string): Validation => ({ ok: false, reason })

const validateMethod = (method: unknown): PreparedRequest["method"] | undefined => {
  if (typeof method !== "string") return undefined
  if (method === "") return "GET" // the seed's rule: an empty method means GET
  // ASCII letters only before upper-casing: some non-ASCII letters upper-case to ASCII ones.
  if (!/^[A-Za-z]{1,16}$/.test(method)) return undefined
  const upper = method.toUpperCase()
  return allowedMethods.has(upper) ? upper as PreparedRequest["method"] : undefined
}

/** Decodes a path segment repeatedly, so `%252e%252e` is seen as `..` too; undefined when malformed. */
const segmentIsSafe = (segment: string): boolean | undefined => {
  let current = segment
  for (let round = 0; round < 4; round++) {
    if (current === "." || current === ".." || unsafeDecodedSegment.test(current)) return false
    if (!current.includes("%")) return true
    let decoded: string
    try {
      decoded = decodeURIComponent(current)
    } catch {
      return undefined
    }
    if (decoded === current) return true
    current = decoded
  }
  return false // still encoded after several rounds: nobody needs that
}

const validateUrl = (url: unknown): { ok: true; url: string } | { ok: false; reason: string } => {
  if (typeof url !== "string" || url === "") return { ok: false, reason: `${notUnderStasisUrl} (url is empty)` }
  if (url.length > maxUrlLength) return { ok: false, reason: `url is longer than ${maxUrlLength} characters` }
  if (unsafeCharacter.test(url)) return { ok: false, reason: "url must not contain control characters or spaces" }
  if (url.includes("#")) return { ok: false, reason: "url must not contain a # fragment" }
  if (url.includes("\\")) return { ok: false, reason: "url must not contain backslashes" }
  if (!url.startsWith("/") || url.startsWith("//")) {
    return { ok: false, reason: `${notUnderStasisUrl} (relative, starting with a single /)` }
  }
  const queryStart = url.indexOf("?")
  const path = queryStart === -1 ? url : url.slice(0, queryStart)
  for (const segment of path.split("/")) {
    const safe = segmentIsSafe(segment)
    if (safe === undefined) return { ok: false, reason: "url path has malformed percent-encoding" }
    if (!safe) return { ok: false, reason: `${notUnderStasisUrl} (no . or .. segments, no encoded separators)` }
  }
  // Non-ASCII text is percent-encoded as UTF-8 (the seed's Go client did the same for paths).
  try {
    return { ok: true, url: url.replace(nonAscii, (text) => encodeURIComponent(text)) }
  } catch {
    return { ok: false, reason: "url contains invalid Unicode" }
  }
}

const isJsonObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** The top-level scalar fields of a GET/DELETE body, as query parameters (`null` fields are left out). */
const bodyAsQuery = (fields: Record<string, unknown>): { ok: true; query: string } | { ok: false; reason: string } => {
  const parts: Array<string> = []
  try {
    for (const [key, value] of Object.entries(fields)) {
      if (value === null) continue
      if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") {
        parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`)
      } else {
        return { ok: false, reason: `body field "${key}" is not a scalar; GET and DELETE send parameters as a query` }
      }
    }
  } catch {
    return { ok: false, reason: "body contains invalid Unicode" }
  }
  return { ok: true, query: parts.join("&") }
}

const appendQuery = (url: string, query: string): string => {
  if (query === "") return url
  if (!url.includes("?")) return `${url}?${query}`
  return url.endsWith("?") || url.endsWith("&") ? `${url}${query}` : `${url}&${query}`
}

/**
 * Checks a command and turns it into what goes on the wire; pure, so it is tested on its own.
 * Refused: methods other than GET/POST/PUT/DELETE (any case; "" is GET), urls that are not a
 * plain path under `stasis_url` (absolute, `//host`, `.`/`..` segments also percent-encoded,
 * backslashes, fragments, control characters, spaces), and bodies that are not a JSON object.
 */
export const validateAriRequest = (request: AriRequest): Validation => {
  const method = validateMethod(request.method)
  if (method === undefined) return refuse("method must be one of GET, POST, PUT, DELETE")
  const url = validateUrl(request.url)
  if (!url.ok) return refuse(url.reason)
  const rawBody: unknown = request.body
  if (typeof rawBody !== "string") return refuse("body must be a string")
  if (rawBody.trim() === "") return { ok: true, request: { method, pathAndQuery: url.url, body: undefined } }
  let parsed: unknown
  try {
    parsed = JSON.parse(rawBody)
  } catch {
    return refuse("body must be empty or a JSON object")
  }
  if (!isJsonObject(parsed)) return refuse("body must be empty or a JSON object")
  if (method === "GET" || method === "DELETE") {
    const query = bodyAsQuery(parsed)
    if (!query.ok) return refuse(query.reason)
    return { ok: true, request: { method, pathAndQuery: appendQuery(url.url, query.query), body: undefined } }
  }
  return { ok: true, request: { method, pathAndQuery: url.url, body: rawBody } }
}

/**
 * A one-line description of a command for logs: method, url (api_key values masked, control
 * characters escaped, long urls cut) and body size. It never contains the proxy's credentials.
 */
export const describeRequest = (request: AriRequest): string => {
  const method = typeof request.method === "string" ? request.method : "?"
  const rawUrl = typeof request.url === "string" ? request.url : "?"
  const masked = rawUrl.replace(/(api_key=)[^&#]*/gi, "$1<redacted>")
  const shown = masked.length > 200 ? `${masked.slice(0, 200)}…` : masked
  const printable = unsafeCharacter.test(shown) || unsafeCharacter.test(method)
    ? `${JSON.stringify(method)} ${JSON.stringify(shown)}`
    : `${method === "" ? "GET" : method} ${shown}`
  const bodyLength = typeof request.body === "string" ? request.body.length : 0
  return bodyLength === 0 ? printable : `${printable} (body ${bodyLength} chars)`
}

// ---------------------------------------------------------------------------------------------
// The client

interface StasisBase {
  readonly origin: string
  /** Path prefix without a trailing slash, e.g. `/ari`. */
  readonly basePath: string
}

const parseStasisUrl = (stasisUrl: string): StasisBase | string => {
  let parsed: URL
  try {
    parsed = new URL(stasisUrl)
  } catch {
    return "stasis_url is not a valid URL"
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return "stasis_url must be an http(s) URL"
  if (parsed.search !== "" || parsed.hash !== "") return "stasis_url must not have a query or fragment"
  // Credentials embedded in stasis_url are ignored: the Basic header carries ws_user/ws_password.
  return { origin: parsed.origin, basePath: parsed.pathname.replace(/\/+$/, "") }
}

// Connection-level failures: ARI is not there (as opposed to a request that went wrong).
const unreachableCodes: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EPIPE: "connection reset",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ETIMEDOUT: "connection timed out",
  UND_ERR_CONNECT_TIMEOUT: "connection timed out",
  UND_ERR_SOCKET: "connection closed by ARI"
}

const errorCode = (error: unknown): string | undefined => {
  // undici sometimes wraps the socket error (AggregateError for several addresses, or `cause`).
  for (let current: unknown = error, depth = 0; current !== undefined && depth < 4; depth++) {
    if (typeof current !== "object" || current === null) return undefined
    const code = (current as { code?: unknown }).code
    if (typeof code === "string" && code !== "") return code
    const inner = (current as { errors?: ReadonlyArray<unknown>; cause?: unknown })
    current = inner.errors?.[0] ?? inner.cause
  }
  return undefined
}

export const makeAriRest = (options: AriRestOptions) =>
  Effect.gen(function*() {
    const base = parseStasisUrl(options.stasisUrl)
    if (typeof base === "string") return yield* new AriConfigError({ message: base })
    const metrics = yield* ProxyMetricsService

    const authorization = basicAuthorization(options)
    const headersWithBody = { authorization, "content-type": "application/json" }
    const headersWithoutBody = { authorization }
    const deadlineMs = options.commandTimeoutMs
    const timeoutReply = proxyReply(504, `ARI did not answer within ${deadlineMs} ms`)

    const pool = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Pool(base.origin, {
          connections: Math.max(1, options.connections),
          pipelining: 1,
          // Below Asterisk's 15 s session keep-alive, so we close idle sockets before it does.
          keepAliveTimeout: 4_000,
          keepAliveMaxTimeout: 10_000
        })
      ),
      (pool) =>
        Effect.promise(() => pool.close()).pipe(
          // A finalizer runs uninterruptibly: without this the timeout could not cut the wait short,
          // and closing would wait for the deadline of every request still in flight.
          Effect.interruptible,
          Effect.timeout("1 second"),
          Effect.catchAll(() => Effect.promise(() => pool.destroy())),
          Effect.catchAllDefect(() => Effect.void)
        )
    )

    // Set after a connection-level failure, cleared by any answer from ARI: later failures say 503.
    let ariDown = false

    const failureReply = (failure: unknown): AriReply => {
      const code = errorCode(failure)
      if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") return timeoutReply
      const what = code === undefined ? undefined : unreachableCodes[code]
      if (what === undefined) {
        return proxyReply(502, `ARI request failed${code === undefined ? "" : ` (${code})`}`)
      }
      const wasDown = ariDown
      ariDown = true
      return wasDown
        ? proxyReply(503, `ARI is unavailable: ${what}`)
        : proxyReply(502, `ARI is unreachable: ${what}`)
    }

    // No fiber per command: the request runs on undici's promise and answers through a callback
    // (a fiber to carry each request cost about 45 µs of CPU per command: docs/benchmarks.md). The
    // deadline is undici's own: the answer's headers must come within it, and the body may not
    // pause longer (ARI's bodies are small, so in practice the whole answer). An Effect race cost
    // about 0.3 ms per command, an AbortController with a timer about 20 µs; undici's timers cost
    // nothing measurable.
    const send = (request: PreparedRequest, original: AriRequest, onReply: OnAriReply): void => {
      const startedAt = performance.now()
      pool.request({
        method: request.method,
        path: base.basePath + request.pathAndQuery,
        headers: request.body === undefined ? headersWithoutBody : headersWithBody,
        body: request.body ?? null,
        headersTimeout: deadlineMs,
        bodyTimeout: deadlineMs
      })
        // Always read the whole body: an unread body keeps the socket from going back to the pool.
        .then((response) => response.body.text().then((body): AriReply => ({ status: response.statusCode, body })))
        .then(
          (reply) => {
            ariDown = false
            metrics.ariRestLatency.observe(secondsSince(startedAt))
            onReply(reply, undefined)
          },
          (failure: unknown) => {
            metrics.ariRestLatency.observe(secondsSince(startedAt))
            const reply = failureReply(failure)
            onReply(reply, `ARI request ${describeRequest(original)} answered ${reply.status}: ${reply.body}`)
          }
        )
    }

    const request = (ariRequest: AriRequest, onReply: OnAriReply): void => {
      const validation = validateAriRequest(ariRequest)
      if (validation.ok) send(validation.request, ariRequest, onReply)
      else onReply(proxyReply(400, validation.reason), undefined)
    }

    return restFromRequest(request)
  })

// ---------------------------------------------------------------------------------------------
// What every transport derives from its `request` primitive

/** The whole `AriRestShape` of a transport, given its callback primitive. */
export const restFromRequest = (request: AriRestShape["request"]): AriRestShape => {
  const execute = (ariRequest: AriRequest): Effect.Effect<AriReply> =>
    Effect.async<AriReply>((resume) =>
      request(ariRequest, (reply, trouble) =>
        resume(trouble === undefined ? Effect.succeed(reply) : Effect.as(Effect.logDebug(trouble), reply))
      )
    )

  const listChannels = (): Effect.Effect<ReadonlyArray<ChannelPresence>, AriUnavailable> =>
    Effect.gen(function*() {
      const reply = yield* execute({ method: "GET", url: "/channels", body: "" })
      if (reply.status !== 200) {
        return yield* new AriUnavailable({ status: reply.status, message: `GET /channels answered ${reply.status}` })
      }
      let parsed: unknown
      try {
        parsed = JSON.parse(reply.body)
      } catch {
        return yield* new AriUnavailable({ status: 502, message: "GET /channels answered invalid JSON" })
      }
      if (!Array.isArray(parsed)) {
        return yield* new AriUnavailable({ status: 502, message: "GET /channels did not answer an array" })
      }
      const channels: Array<ChannelPresence> = []
      for (const channel of parsed) {
        if (!isJsonObject(channel) || typeof channel.id !== "string" || channel.id === "") continue
        // In Stasis, the dialplan application is `Stasis` and its data starts with the app name.
        const dialplan = isJsonObject(channel.dialplan) ? channel.dialplan : undefined
        const inStasis = dialplan?.app_name === "Stasis" && typeof dialplan.app_data === "string"
        const stasisApplication = inStasis ? (dialplan.app_data as string).split(",")[0] : undefined
        channels.push({ id: channel.id, stasisApplication })
      }
      return channels
    })

  return { request, execute, listChannels }
}
