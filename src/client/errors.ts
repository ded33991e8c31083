/**
 * The client's errors. Every answer that is not 2xx becomes one typed error, chosen by its status
 * code, so an application can `Effect.catchTag("NotFound", ...)` (or `instanceof NotFound` with the
 * Promise facade). ARI's and the proxy's error bodies both carry a `message`; it becomes the error's.
 */
import { Schema } from "effect"
import type { BusError } from "../bus/Bus.js"

/** What every answered request error says: where it went and what came back. */
const answered = {
  dialogId: Schema.String,
  method: Schema.String,
  url: Schema.String,
  status: Schema.Number,
  message: Schema.String,
  /** The response body as received (ARI's or the proxy's JSON, or text). */
  body: Schema.String
}

/** 400: ARI found the request invalid, or the proxy refused it (a bad url or method). */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", answered) {}

/** 404: the channel, bridge, playback, ... does not exist (any more). */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", answered) {}

/** 409: the entity is in a state that forbids the request (e.g. a channel not in Stasis). */
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", answered) {}

/** 412: the channel is in a state that forbids the request (e.g. playing to a channel still ringing). */
export class InvalidState extends Schema.TaggedError<InvalidState>()("InvalidState", answered) {}

/** 422: a parameter names something that does not exist or cannot be used (e.g. a channel not in Stasis). */
export class Unprocessable extends Schema.TaggedError<Unprocessable>()("Unprocessable", answered) {}

/** 5xx: Asterisk failed, or the proxy could not reach it (502 refused, 503 unreachable, 504 too slow). */
export class ServerError extends Schema.TaggedError<ServerError>()("ServerError", answered) {}

/** Any other status (401, 403, ...). */
export class UnexpectedStatus extends Schema.TaggedError<UnexpectedStatus>()("UnexpectedStatus", answered) {}

/**
 * The dialog has ended: the proxy answered 410, or the client already saw DialogEnded (then the
 * request is not sent, `status` is 410 and `method`/`url` say what was asked), or an awaited event
 * can no longer come (`method` and `url` are then "").
 */
export class Gone extends Schema.TaggedError<Gone>()("Gone", {
  ...answered,
  /** The DialogEnded reason, when known (`channels_left`, `shutdown`, ...). */
  reason: Schema.optional(Schema.String)
}) {}

/** No response within the request timeout (the proxy's own ARI deadline answers 504 before this). */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()("RequestTimeout", {
  dialogId: Schema.String,
  method: Schema.String,
  url: Schema.String,
  timeoutMs: Schema.Number,
  message: Schema.String
}) {}

/** A proxy answered a dialog request with an error (503 while it shuts down or cannot reach Asterisk). */
export class DialogRequestRefused extends Schema.TaggedError<DialogRequestRefused>()("DialogRequestRefused", {
  status: Schema.Number,
  message: Schema.String,
  serverId: Schema.optional(Schema.String)
}) {}

/** No proxy answered a dialog request in time (none serves the application, or the server_id is unknown). */
export class DialogRequestTimeout extends Schema.TaggedError<DialogRequestTimeout>()("DialogRequestTimeout", {
  topic: Schema.String,
  timeoutMs: Schema.Number,
  message: Schema.String
}) {}

/**
 * `createDialog()` without a server id: no proxy that is ready, not draining and serving the
 * application announced itself in time. `proxies` says what each known proxy is instead.
 */
export class NoProxyAvailable extends Schema.TaggedError<NoProxyAvailable>()("NoProxyAvailable", {
  application: Schema.String,
  timeoutMs: Schema.Number,
  proxies: Schema.String,
  message: Schema.String
}) {}

/** What a request to ARI through a dialog can fail with. */
export type AriRequestError =
  | BadRequest
  | NotFound
  | Conflict
  | InvalidState
  | Unprocessable
  | ServerError
  | UnexpectedStatus
  | Gone
  | RequestTimeout
  | BusError

/** What asking for an app-initiated dialog can fail with (then joining it, as any dialog). */
export type CreateDialogError = NoProxyAvailable | DialogRequestRefused | DialogRequestTimeout | AriRequestError

/** The message of an error body: ARI's and the proxy's JSON carry `message`; anything else is used as text. */
const messageOf = (status: number, body: string): string => {
  try {
    const parsed: unknown = JSON.parse(body)
    const fields = typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {}
    if (typeof fields.message === "string") return fields.message
  } catch {
    // not JSON: the body itself says what went wrong
  }
  return body !== "" ? body : `status ${status}`
}

/** The typed error for a non-2xx response. */
export const errorFromResponse = (request: {
  readonly dialogId: string
  readonly method: string
  readonly url: string
  readonly status: number
  readonly body: string
}): Exclude<AriRequestError, RequestTimeout | BusError> => {
  const fields = { ...request, message: messageOf(request.status, request.body) }
  switch (request.status) {
    case 400:
      return new BadRequest(fields)
    case 404:
      return new NotFound(fields)
    case 409:
      return new Conflict(fields)
    case 410:
      return new Gone(fields)
    case 412:
      return new InvalidState(fields)
    case 422:
      return new Unprocessable(fields)
    default:
      return request.status >= 500 ? new ServerError(fields) : new UnexpectedStatus(fields)
  }
}
