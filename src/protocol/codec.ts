/**
 * Encoding and decoding of the wire messages. Encoding is hand-rolled string building because it
 * runs once per ARI event; the output is byte-compatible with Go's json.Marshal for these structs
 * (field order, `<` `>` `&` escaped as \u003c \u003e \u0026).
 */
import type { AppStart, CommandResponse } from "./messages.js"

const goUnsafe = /[<>&\u2028\u2029]/
const goUnsafeAll = /[<>&\u2028\u2029]/g
const goEscapes: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029"
}

/** JSON as Go's encoding/json writes it (compact, `<` `>` `&` escaped). */
const goJson = (value: unknown): string => {
  const json = JSON.stringify(value)
  return goUnsafe.test(json) ? json.replace(goUnsafeAll, (c) => goEscapes[c]!) : json
}

/** A JSON string literal as Go's encoding/json writes it. */
export const goJsonString: (value: string) => string = goJson

/** RFC 3339 time of the proxy, computed at most once per millisecond (it is stamped on every event). */
let cachedMillis = -1
let cachedStamp = ""
export const wireTimestamp = (now: number = Date.now()): string => {
  if (now !== cachedMillis) {
    cachedMillis = now
    cachedStamp = new Date(now).toISOString()
  }
  return cachedStamp
}

/**
 * Builds the Event wrapper around a raw ARI frame; `serverIdJson` is `goJsonString(server_id)`.
 * Extensions, after the seed's fields: `seq`, the event's number in its dialog, from 1 (events
 * outside a dialog, unrouted, have none); `traceparent`, the trace context of the dialog's span
 * (only while tracing: the proxy's own, hex digits, nothing to escape).
 */
export const encodeWireEvent = (
  serverIdJson: string,
  type: string,
  ariBody: string,
  seq?: number,
  traceparent?: string,
  timestamp = wireTimestamp()
): string =>
  "{\"server_id\":" + serverIdJson + ",\"timestamp\":\"" + timestamp + "\",\"type\":" + goJsonString(type) +
  ",\"ari_body\":" + goJsonString(ariBody) + (seq === undefined ? "" : ",\"seq\":" + seq) +
  (traceparent === undefined ? "}" : ",\"traceparent\":\"" + traceparent + "\"}")

export const encodeAppStart = (
  message: Pick<AppStart, "application" | "dialog_id" | "server_id" | "traceparent">
): string =>
  "{\"application\":" + goJsonString(message.application) + ",\"dialog_id\":" + goJsonString(message.dialog_id) +
  ",\"server_id\":" + goJsonString(message.server_id) +
  (message.traceparent === undefined ? "}" : ",\"traceparent\":" + goJsonString(message.traceparent) + "}")

/**
 * Extension: the AppStart of a dialog offered anew because its owner stopped renewing its lease:
 * the seed's fields, then `resumed`, the last `seq` the owner acknowledged and what the dialog
 * holds now (ARI's channels, bridges and playbacks).
 */
export const encodeResumedAppStart = (message: {
  readonly application: string
  readonly dialog_id: string
  readonly server_id: string
  readonly traceparent?: string | undefined
  readonly last_seq: number
  readonly state: { readonly channels: ReadonlyArray<unknown>; readonly bridges: ReadonlyArray<unknown>; readonly playbacks: ReadonlyArray<unknown> }
}): string =>
  encodeAppStart(message).slice(0, -1) + ",\"resumed\":true,\"last_seq\":" + message.last_seq + ",\"state\":" +
  goJson(message.state) + "}"

export const encodeCommandResponse = (response: Pick<CommandResponse, "unique_id" | "status_code" | "response_body">): string =>
  "{\"unique_id\":" + goJsonString(response.unique_id) + ",\"status_code\":" + String(response.status_code) +
  ",\"response_body\":" + goJsonString(response.response_body) + "}"

export const encodeCommand = (
  command: { unique_id: string; url: string; method: string; body: string; traceparent?: string | undefined }
): string =>
  "{\"unique_id\":" + goJsonString(command.unique_id) + ",\"url\":" + goJsonString(command.url) + ",\"method\":" +
  goJsonString(command.method) + ",\"body\":" + goJsonString(command.body) +
  (command.traceparent === undefined ? "" : ",\"traceparent\":" + goJsonString(command.traceparent)) + "}"

/** A command as the proxy accepted it from the bus. */
export interface DecodedCommand {
  readonly unique_id: string
  readonly url: string
  readonly method: string
  readonly body: string
  /** The caller's trace context (an extension); any string, checked only while tracing. */
  readonly traceparent?: string | undefined
}

/** What decoding a message from `commands_<dialog_id>` gives. */
export type CommandDecoding =
  | { readonly _tag: "Command"; readonly command: DecodedCommand }
  /** Not JSON at all (the Go client's `DUMMY`): dropped without an answer, as it never asked anything. */
  | { readonly _tag: "NotJson" }
  /** JSON, but not a valid Command; `unique_id` is "" when none could be recovered. */
  | {
    readonly _tag: "Invalid"
    readonly unique_id: string
    readonly reason: string
    readonly traceparent?: string | undefined
  }

const fields = ["unique_id", "url", "method", "body"] as const

export const decodeCommand = (payload: string): CommandDecoding => {
  let parsed: unknown
  try {
    parsed = JSON.parse(payload)
  } catch {
    return { _tag: "NotJson" }
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return { _tag: "Invalid", unique_id: "", reason: "a command must be a JSON object" }
  }
  const record = parsed as Record<string, unknown>
  const uniqueId = typeof record.unique_id === "string" ? record.unique_id : ""
  // An extension: not one of the seed's fields, so a value of another type is ignored, not refused.
  const traceparent = typeof record.traceparent === "string" ? record.traceparent : undefined
  const problems: Array<string> = []
  for (const field of fields) {
    const value = record[field]
    if (value !== undefined && value !== null && typeof value !== "string") {
      problems.push(`${field} must be a string, got ${Array.isArray(value) ? "array" : typeof value}`)
    }
  }
  if (problems.length > 0) return { _tag: "Invalid", unique_id: uniqueId, reason: problems.join("; "), traceparent }
  const text = (field: (typeof fields)[number]) => (typeof record[field] === "string" ? (record[field] as string) : "")
  return {
    _tag: "Command",
    command: { unique_id: uniqueId, url: text("url"), method: text("method"), body: text("body"), traceparent }
  }
}

/**
 * The JSON body of an answer the proxy makes up itself (docs/protocol.md): `source` tells it
 * from an answer of Asterisk's.
 */
export const proxyErrorBody = (status: number, message: string, detail?: Record<string, unknown>): string =>
  JSON.stringify({ message, status, source: "ari-proxy", ...detail })
