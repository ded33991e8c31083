/**
 * What the driver reads of nats.js's internals (its protocol handler), all here: whether the socket
 * is connected now, which socket it is, how many subscriptions the client holds. nats.js 3 has no
 * public view of them, so an upgrade of the client (pinned in package.json) starts by reading these.
 */
import type { NatsConnection } from "@nats-io/transport-node"

interface ClientInternals {
  readonly protocol?: {
    readonly connected?: boolean
    readonly transport?: object
    readonly subscriptions?: { size(): number }
  }
}

/** nats.js's own view of the socket; it turns false in the same tick as the disconnect status is queued. */
export const socketConnected = (nc: NatsConnection): boolean => (nc as ClientInternals).protocol?.connected !== false

/** The client's current socket: nats.js makes a new one for every dial, so a change means a new connection. */
export const transportOf = (nc: NatsConnection): object | undefined => (nc as ClientInternals).protocol?.transport

export const clientSubscriptions = (nc: NatsConnection | undefined): number =>
  nc === undefined ? 0 : (nc as ClientInternals).protocol?.subscriptions?.size() ?? 0
