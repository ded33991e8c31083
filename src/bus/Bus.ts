/**
 * The message bus port. The proxy and the client talk to the bus only through this interface;
 * drivers (memory, NATS, RabbitMQ) implement it and know nothing of dialogs.
 *
 * Semantics every driver keeps (checked by the conformance suite in test/bus/):
 * - order: messages published to one topic by one publisher are delivered in that order;
 * - a subscription without a queue group receives every message published after it is live;
 *   subscriptions sharing a queue group receive each message once between them (NATS semantics;
 *   on RabbitMQ every subscription to a topic consumes its one queue, i.e. behaves as one group);
 * - fan-out on every driver: a message sent with `broadcast` reaches every subscription made with
 *   `{ broadcast: true }` that is live, and is kept for nobody (a topic is used either this way or
 *   the other, never both);
 * - `subscribe` completes only when the subscription is live at the broker, so a message published
 *   (by anyone) after that is delivered;
 * - a handler runs for one message at a time per subscription, in order (each subscription is an
 *   actor of the driver's actor system: src/actor); a driver with acknowledgements acknowledges a
 *   message once its handler has handled it.
 */
import { Context, Effect, Schema } from "effect"
import type { Scope } from "effect"

export class BusError extends Schema.TaggedError<BusError>()("BusError", {
  driver: Schema.String,
  operation: Schema.String,
  message: Schema.String
}) {}

export interface SubscribeOptions {
  /** Queue group: each message goes to one member of the group. */
  readonly queue?: string | undefined
  /**
   * Receive the messages sent on the topic with `broadcast`, as every other such subscription does
   * (RabbitMQ: a queue of the subscription's own, bound to the broadcast exchange). No queue group.
   */
  readonly broadcast?: boolean | undefined
}

export type BusConnectionState = "connected" | "reconnecting" | "closed"

/**
 * Handles one message. A handler that returns nothing has handled the message when it returns
 * (drivers may call it inside their own callbacks, never re-entrantly); one that returns an effect
 * has handled it when the effect completes, and the next message waits for that.
 */
export type MessageHandler = (payload: string) => Effect.Effect<void> | void

/** A live subscription, without a Scope: the cheap form for the proxy's many dialogs. */
export interface Subscription {
  /** Unsubscribes; messages not yet handled are dropped. */
  readonly close: Effect.Effect<void>
}

export interface BusShape {
  readonly driver: "memory" | "nats" | "rabbitmq"
  /**
   * True when a message published to a topic nobody consumes yet is kept until a consumer comes
   * (RabbitMQ's durable queues). The proxy then need not hold a new dialog's events back.
   */
  readonly retainsUnconsumed: boolean
  /**
   * Publishes one message. Completes once the driver has accepted it (written or buffered, in
   * order). A driver under pressure while connected (RabbitMQ's window of unconfirmed messages, or
   * NATS JetStream's of unacknowledged ones, is full) suspends here, which slows the publisher
   * rather than losing the message. While the broker is unreachable, messages wait in a bounded
   * buffer (`publish_buffer_size` messages, `publish_buffer_bytes` bytes) and are sent in order
   * after the reconnect; past that bound they are dropped, counted and logged, so that a long
   * outage cannot stall the reading of ARI.
   */
  readonly publish: (topic: string, payload: string) => Effect.Effect<void, BusError>
  /**
   * Publishes one message now if the driver can do so without waiting (connected, nothing queued
   * before it, no backpressure), and says whether it did. The hot path of the proxy: no Effect
   * runs per message. On `false` nothing was published; use `publish`. A caller must not mix the
   * two on one topic while a `publish` of it is still pending, or order is lost.
   */
  readonly tryPublish: (topic: string, payload: string) => boolean
  /**
   * Sends one message to every subscription of the topic made with `{ broadcast: true }` (fan-out,
   * live only: a message nobody listens to is gone). Ordered and buffered like `publish`; NATS
   * JetStream awaits no acknowledgement of it. RabbitMQ routes it through the `amq.direct` exchange,
   * with the topic as routing key.
   */
  readonly broadcast: (topic: string, payload: string) => Effect.Effect<void, BusError>
  /**
   * Subscribes until the returned subscription is closed (or the driver's scope closes).
   * Completes once the subscription is live at the broker.
   */
  readonly listen: (
    topic: string,
    handler: MessageHandler,
    options?: SubscribeOptions
  ) => Effect.Effect<Subscription, BusError>
  /** Subscribes for the lifetime of the scope; closing the scope unsubscribes. */
  readonly subscribe: (
    topic: string,
    handler: MessageHandler,
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

/**
 * `subscribe` from `listen`: the subscription is closed with the caller's scope. Subscribing may
 * wait for a broker that is down, so it stays interruptible (unlike `acquireRelease`'s acquire);
 * once it has succeeded, the close is registered before anything can interrupt.
 */
export const scopedSubscribe = (listen: BusShape["listen"]): BusShape["subscribe"] => (topic, handler, options) =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      restore(listen(topic, handler, options)),
      (subscription) => Effect.addFinalizer(() => subscription.close)
    )
  )
