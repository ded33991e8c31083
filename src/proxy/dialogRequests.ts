/**
 * App-initiated dialogs (a protocol extension, docs/protocol.md): an application asks on
 * `dialogs_<app>` (any proxy serving the app: the proxies share a queue group) or on
 * `dialogs_<app>@<server_id>` (that proxy) for a dialog of its own, receives its id on its reply
 * topic, and originates into it. No AppStart is broadcast for such a dialog.
 */
import { Effect } from "effect"
import type { BusShape } from "../bus/Bus.js"
import { DialogGrant } from "../protocol/messages.js"
import type { DialogOrigin } from "../dialog/actor.js"
import type { Topics } from "../protocol/topics.js"
import { retrySchedule } from "../resilience/retry.js"

/** The queue group the proxies of one bus share for `dialogs_<app>`. */
export const proxiesQueueGroup = "ari-proxy"

interface ParsedRequest {
  readonly requestId: string
  readonly replyTo: string
  readonly traceparent: string | undefined
}

const parseRequest = (payload: string): ParsedRequest | string => {
  let parsed: unknown
  try {
    parsed = JSON.parse(payload)
  } catch {
    return "not JSON"
  }
  if (typeof parsed !== "object" || parsed === null) return "not a JSON object"
  const { request_id, reply_to, traceparent } = parsed as Record<string, unknown>
  if (typeof reply_to !== "string" || reply_to === "") return "reply_to must be a non-empty string"
  if (request_id !== undefined && typeof request_id !== "string") return "request_id must be a string"
  return {
    requestId: request_id ?? "",
    replyTo: reply_to,
    traceparent: typeof traceparent === "string" ? traceparent : undefined
  }
}

/**
 * Subscribes, for each application, to the request topics; lives as long as the scope. `openDialog`
 * opens and starts the dialog (it answers once its commands subscription is live), or says why it
 * cannot (answered 503).
 */
export const serveDialogRequests = (options: {
  readonly bus: BusShape
  readonly topics: Topics
  readonly applications: ReadonlyArray<string>
  readonly serverId: string
  /**
   * `dialogs_<app>` (shared by every proxy of the application, a queue group), `dialogs_<app>@<server_id>`
   * (this `server_id`), or both (the default).
   */
  readonly topicsServed?: "shared" | "own" | "both" | undefined
  readonly accepting: () => boolean
  readonly openDialog: (application: string, origin: DialogOrigin) => string | undefined
}) =>
  Effect.forEach(options.applications, (application) => {
    const refuse = (request: ParsedRequest, status: number, message: string) =>
      options.bus.publish(
        request.replyTo,
        JSON.stringify(new DialogGrant({ request_id: request.requestId, status_code: status, server_id: options.serverId, message }))
      ).pipe(Effect.catchAll((error) => Effect.logWarning("could not answer a dialog request", error.message)))
    const handle = (payload: string) =>
      Effect.suspend(() => {
        const request = parseRequest(payload)
        if (typeof request === "string") return Effect.logWarning("ignored a malformed dialog request", request)
        if (!options.accepting()) return refuse(request, 503, "this proxy is shutting down")
        const refusal = options.openDialog(application, {
          _tag: "Requested",
          requestId: request.requestId,
          replyTo: request.replyTo,
          traceparent: request.traceparent
        })
        return refusal === undefined ? Effect.void : refuse(request, 503, refusal)
      })
    const served = options.topicsServed ?? "both"
    const shared = served === "own"
      ? Effect.void
      : options.bus.subscribe(options.topics.dialogRequests(application), handle, { queue: proxiesQueueGroup })
    const own = served === "shared"
      ? Effect.void
      : options.bus.subscribe(options.topics.dialogRequests(application, options.serverId), handle)
    return Effect.zipRight(shared, own)
  }, { discard: true })

/**
 * Serving dialog requests needs the bus, which may be down (at startup too): subscribing is retried
 * forever on the proxy's retry policy, each failure logged.
 */
export const retryingDialogRequests = <R>(
  serving: Effect.Effect<void, { readonly message: string }, R>
): Effect.Effect<void, never, R> =>
  serving.pipe(
    Effect.tapError((error) => Effect.logWarning("could not subscribe to dialog requests, retrying", error.message)),
    Effect.retry(retrySchedule({ firstDelayMs: 200, maxDelayMs: 10_000 })),
    Effect.orDie
  )
