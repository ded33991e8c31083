/**
 * Errors of the simulator core. They are plain classes because the core runs without Effect;
 * the Effect wrapper turns start failures into a `Schema.TaggedError` (see effect.ts).
 */

/** An ARI error response: status, reason phrase (Asterisk's, not always the standard one) and body. */
export class AriError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly body: Readonly<Record<string, unknown>>
  ) {
    super(typeof body.message === "string" ? body.message : reason)
  }
}

export const ariError = (status: number, reason: string, message: string) => new AriError(status, reason, { message })

export const channelNotFound = () => ariError(404, "Not Found", "Channel not found")
export const notInStasis = () => ariError(409, "Conflict", "Channel not in Stasis application")
export const invalidState = () => ariError(412, "Precondition Failed", "Channel in invalid state")
export const bridgeNotFound = () => ariError(404, "Not found", "Bridge not found")

/** A misuse of the control API (unknown channel, app without websocket…), mapped to an HTTP status. */
export class ControlError extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
  }
}
