/**
 * What the driver uses of nats.js's internals (its protocol handler), all here: whether the socket
 * is connected now, which socket it is, how many subscriptions the client holds, and the writing of
 * a plain publish the driver encoded itself (unconfirmedWrites.ts). nats.js 3 has no public view of
 * them, so an upgrade of the client (pinned in package.json) starts by reading these.
 */
import type { NatsConnection } from "@nats-io/transport-node"

interface ClientInternals {
  readonly protocol?: {
    readonly connected?: boolean
    readonly transport?: object
    readonly subscriptions?: { size(): number }
    readonly info?: { readonly max_payload?: number }
    readonly noMorePublishing?: boolean
    /** Queues protocol bytes behind what is queued already; flushed with them at the end of the tick. */
    sendCommand?(command: Uint8Array): void
  }
}

/** nats.js's own view of the socket; it turns false in the same tick as the disconnect status is queued. */
export const socketConnected = (nc: NatsConnection): boolean => (nc as ClientInternals).protocol?.connected !== false

/** The client's current socket: nats.js makes a new one for every dial, so a change means a new connection. */
export const transportOf = (nc: NatsConnection): object | undefined => (nc as ClientInternals).protocol?.transport

export const clientSubscriptions = (nc: NatsConnection | undefined): number =>
  nc === undefined ? 0 : (nc as ClientInternals).protocol?.subscriptions?.size() ?? 0

/** Subjects nats.js refuses: a space or line break would end the protocol line. */
const notASubject = /[ \n\r\t]/

/** The largest payload the server takes (its INFO), or Infinity before the first connect. */
export const maxPayload = (nc: NatsConnection): number => (nc as ClientInternals).protocol?.info?.max_payload ?? Infinity

/** Throws what nats.js's own publish would throw before writing to `topic` now (checked before encoding). */
export const checkPublishable = (nc: NatsConnection, topic: string): void => {
  const protocol = (nc as ClientInternals).protocol
  if (nc.isClosed() || protocol?.sendCommand === undefined) throw new Error("the NATS connection is closed")
  if (protocol.noMorePublishing === true) throw new Error("the NATS connection is draining")
  if (topic.length === 0 || notASubject.test(topic)) throw new Error(`invalid NATS subject: ${JSON.stringify(topic)}`)
}

/**
 * Writes an encoded `PUB` frame (unconfirmedWrites.ts), checked by `checkPublishable`, in order
 * with everything else the client sends. Unlike the client's publish, nothing is counted in
 * `nc.stats()`.
 */
export const writePublishFrame = (nc: NatsConnection, frame: Uint8Array): void => {
  const protocol = (nc as ClientInternals).protocol!
  protocol.sendCommand!(frame)
}
