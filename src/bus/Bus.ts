/**
 * The message bus port. The proxy and the client talk to the bus only through this interface;
 * drivers (memory, NATS, RabbitMQ) implement it and know nothing of dialogs.
 *
 * Semantics every driver keeps (checked by the conformance suite in test/bus/):
 * - order: messages published to one topic by one publisher are delivered in that order;
 * - a subscription without a queue group receives every message published after it is live;
 *   subscriptions sharing a queue group receive each message once between them (NATS semantics;
 *   on RabbitMQ every subscription to a topic consumes its one queue, i.e. behaves as one group);
 * - `subscribe` completes only when the subscription is live at the broker, so a message published
 *   (by anyone) after that is delivered;
 * - a handler runs for one message at a time per subscription; a driver with acknowledgements
 *   acknowledges a message once its handler's effect has completed.
 */
import { Context, Schema } from "effect"
import type { Effect, Scope } from "effect"

export class BusError extends Schema.TaggedError<BusError>()("BusError", {
  driver: Schema.String,
  operation: Schema.String,
  message: Schema.String
}) {}

export interface SubscribeOptions {
  /** Queue group: each message goes to one member of the group. */
  readonly queue?: string | undefined
}

export type BusConnectionState = "connected" | "reconnecting" | "closed"

export interface BusShape {
  readonly driver: "memory" | "nats" | "rabbitmq"
  /**
   * True when a message published to a topic nobody consumes yet is kept until a consumer comes
   * (RabbitMQ's durable queues). The proxy then need not hold a new dialog's events back.
   */
  readonly retainsUnconsumed: boolean
  /**
   * Publishes one message. Completes once the driver has accepted it (written or buffered, in
   * order). A driver under pressure while connected (RabbitMQ's window of unconfirmed messages is
   * full) suspends here, which slows the publisher rather than losing the message. While the
   * broker is unreachable, messages wait in a bounded buffer (`publish_buffer_size`) and are sent
   * in order after the reconnect; past that bound they are dropped, counted and logged, so that
   * a long outage cannot stall the reading of ARI.
   */
  readonly publish: (topic: string, payload: string) => Effect.Effect<void, BusError>
  /**
   * Publishes one message now if the driver can do so without waiting (connected, nothing queued
   * before it, no backpressure), and says whether it did. The hot path of the proxy: no Effect
   * runs per message. On `false` nothing was published; use `publish`. A caller must not mix the
   * two on one topic while a `publish` of it is still pending, or order is lost.
   */
  readonly tryPublish: (topic: string, payload: string) => boolean
  /** Subscribes for the lifetime of the scope; closing the scope unsubscribes. */
  readonly subscribe: (
    topic: string,
    handler: (payload: string) => Effect.Effect<void>,
    options?: SubscribeOptions
  ) => Effect.Effect<void, BusError, Scope.Scope>
  /**
   * Declares that the proxy is done with a topic (a dialog ended). Drivers that keep state per
   * topic (RabbitMQ queues) delete it after their grace period; others do nothing.
   */
  readonly retire: (topic: string) => Effect.Effect<void>
  /** The connection state right now (readiness). */
  readonly state: Effect.Effect<BusConnectionState>
}

export class Bus extends Context.Tag("ari-proxy/Bus")<Bus, BusShape>() {}
