/**
 * Consuming: a bounded prefetch per consumer; a delivery is acknowledged once its handler's effect
 * has completed. Deliveries received on a channel that has since died are skipped, not handled:
 * the broker requeues them and delivers them again after the reconnect.
 *
 * A broadcast subscription consumes a queue of its own instead of the topic's: server-named,
 * exclusive to the connection and auto-deleted with its consumer, bound to the broadcast exchange
 * with the topic as routing key; a new one on each connection (what was sent meanwhile is gone).
 */
import type { ConsumeMessage } from "amqplib"
import { Effect, Schedule } from "effect"
import type { ActorSystem } from "../../actor/ActorSystem.js"
import type { BusError, MessageHandler, SubscribeOptions, Subscription } from "../Bus.js"
import { SubscriptionInbox } from "../inbox.js"
import { busError } from "../internal.js"
import { type AmqpConnection, DRIVER, type Link, type RunLog } from "./connection.js"
import { BROADCAST_EXCHANGE } from "./publisher.js"
import type { Topology } from "./topology.js"

interface Delivery {
  readonly payload: string
  readonly message: ConsumeMessage
  readonly link: Link
}

/** What a subscription needs of its consumer: shared by all of them, so that each keeps one reference. */
interface ConsumerSide {
  readonly connection: AmqpConnection
  readonly acknowledge: (delivery: Delivery) => void
  readonly release: (subscription: AmqpSubscription) => Effect.Effect<void>
}

/** Done once the consumer is live: kept instead of the promise that said so (one less object per idle dialog). */
const STARTED: Promise<void> = Promise.resolve()

/**
 * One subscription (one per dialog) and its own inbox: a class whose `close` is made when asked
 * for, so that an idle subscription holds its state and no Effect.
 */
class AmqpSubscription extends SubscriptionInbox<Delivery> implements Subscription {
  /** Generation of the link the consumer was (or is being) started on. */
  consuming = -1
  started: Promise<void> | undefined = undefined
  consumerTag: string | undefined = undefined
  closed = false

  constructor(
    inboxes: ActorSystem,
    readonly topic: string,
    /** Consumes a queue of its own bound to the broadcast exchange, rather than the topic's queue. */
    readonly broadcast: boolean,
    private readonly handler: MessageHandler,
    private readonly side: ConsumerSide
  ) {
    super(inboxes, topic)
  }

  /** Acknowledged once its handler has handled it. */
  protected handle(delivery: Delivery): Effect.Effect<void> | void {
    // From a dead channel: the broker requeued it and delivers it again.
    if (delivery.link !== this.side.connection.link) return
    const handling = this.handler(delivery.payload)
    if (handling === undefined) return this.side.acknowledge(delivery)
    const { acknowledge } = this.side
    return Effect.tap(handling, () => acknowledge(delivery))
  }

  get close(): Effect.Effect<void> {
    return Effect.suspend(() => this.side.release(this))
  }
}

export const makeConsumer = (
  connection: AmqpConnection,
  topology: Topology,
  inboxes: ActorSystem,
  runLog: RunLog
) => {
  const { cancelRetire, declare, sideChannel } = topology
  const subscriptions = new Set<AmqpSubscription>()
  const subscribedTopics = new Map<string, number>()

  const onDelivery = (subscription: AmqpSubscription, current: Link) => (message: ConsumeMessage | null) => {
    if (message === null) {
      // Cancelled by the broker: the queue was deleted. Consume again after a reconnect only.
      subscription.consumerTag = undefined
      runLog(Effect.logWarning("RabbitMQ cancelled a consumer (queue deleted?)").pipe(
        Effect.annotateLogs({ topic: subscription.topic })
      ))
      return
    }
    subscription.offer({ payload: message.content.toString("utf8"), message, link: current })
  }

  /** The queue a subscription consumes on `current`: the topic's own, or (broadcast) a new one on the exchange. */
  const queueOf = (subscription: AmqpSubscription, current: Link): Promise<string> =>
    subscription.broadcast ?
      sideChannel(current, current.declarers).then(async (channel) => {
        const { queue } = await channel.assertQueue("", { exclusive: true, autoDelete: true, durable: false })
        await channel.bindQueue(queue, BROADCAST_EXCHANGE, subscription.topic)
        return queue
      }) :
      declare(subscription.topic, current).then(() => subscription.topic)

  const startConsuming = (subscription: AmqpSubscription, current: Link): Promise<void> => {
    subscription.consuming = current.generation
    const started = queueOf(subscription, current)
      .then((queue) => current.consumer.consume(queue, onDelivery(subscription, current), { noAck: false }))
      .then((ok) => {
        if (subscription.closed || connection.link !== current) {
          current.consumer.cancel(ok.consumerTag).catch(() => undefined)
          return
        }
        subscription.consumerTag = ok.consumerTag
        if (subscription.started === started) subscription.started = STARTED
      })
    subscription.started = started
    started.catch(() => undefined)
    return started
  }

  /** A new link: every open subscription consumes again on it. */
  const consumeAgain = (current: Link): Promise<unknown> =>
    Promise.all(
      [...subscriptions].filter((s) => !s.closed).map((s) => startConsuming(s, current).catch(() => undefined))
    )

  /** The link is gone, and its consumers with it. */
  const forgetConsumers = () => {
    for (const subscription of subscriptions) subscription.consumerTag = undefined
  }

  const awaitLink: Effect.Effect<Link, BusError> = Effect.suspend(() =>
    connection.link !== undefined ?
      Effect.succeed(connection.link) :
      Effect.fail(busError(DRIVER, "subscribe", connection.closing ? "the bus is closed" : "not connected"))
  ).pipe(Effect.retry({ schedule: Schedule.spaced("20 millis"), while: () => !connection.closing }))

  const acknowledge = (delivery: Delivery) => {
    if (delivery.link !== connection.link) return
    try {
      delivery.link.consumer.ack(delivery.message)
    } catch {
      // channel closed meanwhile: the message is redelivered
    }
  }

  /** Stops the subscription's inbox and cancels its consumer (bounded: the broker may not answer). */
  const release = (subscription: AmqpSubscription): Effect.Effect<void> => {
    if (subscription.closed) return Effect.void
    subscription.closed = true
    subscription.stopInbox()
    subscriptions.delete(subscription)
    const { topic } = subscription
    const count = (subscribedTopics.get(topic) ?? 1) - 1
    if (count === 0) subscribedTopics.delete(topic)
    else subscribedTopics.set(topic, count)
    const current = connection.link
    const tag = subscription.consumerTag
    subscription.consumerTag = undefined
    if (current === undefined || tag === undefined || subscription.consuming !== current.generation) {
      return Effect.void
    }
    return Effect.promise(() => current.consumer.cancel(tag).catch(() => undefined)).pipe(
      Effect.interruptible, // closed by a scope's finalizer, uninterruptibly: else the timeout could not cut it short
      Effect.timeout("2 seconds"),
      Effect.ignore
    )
  }

  const side: ConsumerSide = { connection, acknowledge, release }

  const listen = (
    topic: string,
    handler: MessageHandler,
    options?: SubscribeOptions
  ): Effect.Effect<Subscription, BusError> =>
    Effect.gen(function*() {
      cancelRetire(topic)
      const subscription = new AmqpSubscription(inboxes, topic, options?.broadcast === true, handler, side)
      subscriptions.add(subscription)
      subscribedTopics.set(topic, (subscribedTopics.get(topic) ?? 0) + 1)
      // Live once the broker has answered consume-ok; a connection lost meanwhile: wait and retry.
      yield* Effect.gen(function*() {
        const current = yield* awaitLink
        const started = subscription.consuming === current.generation && subscription.started !== undefined ?
          subscription.started :
          startConsuming(subscription, current)
        yield* Effect.tryPromise({ try: () => started, catch: (error) => busError(DRIVER, "subscribe", error) })
      }).pipe(
        Effect.retry({ schedule: Schedule.spaced("50 millis"), while: () => !connection.closing }),
        Effect.onError(() => subscription.close)
      )
      return subscription
    })

  return {
    listen,
    consumeAgain,
    forgetConsumers,
    /** Whether a subscription of ours consumes `topic` (its queue must not be deleted). */
    consumes: (topic: string) => (subscribedTopics.get(topic) ?? 0) > 0,
    subscriptionCount: () => subscriptions.size
  }
}
