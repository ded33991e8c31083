/**
 * The NATS driver's subscriptions: each its own inbox (inbox.ts), handed every message in the
 * client's callback; live once the server has processed the SUB (one round trip shared by
 * the subscriptions of one tick). nats.js re-sends them by itself after a reconnect.
 */
import type { Msg, NatsConnection, Subscription as NatsSubscription } from "@nats-io/transport-node"
import { Deferred, Effect } from "effect"
import type { ActorSystem } from "../../actor/ActorSystem.js"
import type { BusError, MessageHandler, SubscribeOptions, Subscription } from "../Bus.js"
import { SubscriptionInbox } from "../inbox.js"
import { busError } from "../internal.js"
import { DRIVER } from "./options.js"
import type { NatsShared } from "./publisher.js"

export const makeSubscriber = (
  shared: NatsShared,
  /** Done with the first connection: a subscription asked for before it waits for it. */
  firstConnection: Deferred.Deferred<NatsConnection>,
  /** The driver's actor system: every subscription's inbox lives there. */
  inboxes: ActorSystem
) => {
  let subscriptions = 0
  /**
   * Completes once the server has processed everything sent so far (our SUB included). The
   * subscriptions made in one tick share one round trip: the flush is sent on a microtask,
   * after all their SUBs (a burst of new dialogs would otherwise cost a PING/PONG each).
   */
  let nextFlush: Promise<void> | undefined
  const flushSoon = (connection: NatsConnection): Promise<void> => {
    if (nextFlush === undefined) {
      nextFlush = new Promise<void>((resolve, reject) =>
        queueMicrotask(() => {
          nextFlush = undefined
          connection.flush().then(resolve, reject)
        })
      )
    }
    return nextFlush
  }
  /** Waits for the round trip; a flush lost to a disconnect is asked again (the client re-sends the SUB). */
  const awaitLive = (connection: NatsConnection): Effect.Effect<void, BusError> =>
    Effect.async<void, BusError>((resume) => {
      flushSoon(connection).then(
        () => resume(Effect.void),
        (error) =>
          resume(
            shared.closing || connection.isClosed()
              ? Effect.fail(busError(DRIVER, "subscribe", error))
              : Effect.zipRight(Effect.sleep("20 millis"), awaitLive(connection))
          )
      )
    })

  const onUnsubscribed = () => {
    subscriptions--
  }

  const listen = (
    topic: string,
    handler: MessageHandler,
    subscribeOptions?: SubscribeOptions
  ): Effect.Effect<Subscription, BusError> => {
    const current = shared.nc
    const connected = current === undefined ? Deferred.await(firstConnection) : Effect.succeed(current)
    // Per dialog, on the hot path of new calls: plain steps rather than a generator.
    return Effect.flatMap(connected, (connection) => {
      const listening = new Listening(inboxes, topic, handler, onUnsubscribed)
      const queue = subscribeOptions?.broadcast === true ? undefined : subscribeOptions?.queue
      try {
        listening.subscription = connection.subscribe(topic, {
          ...(queue !== undefined && queue !== "" ? { queue } : {}),
          callback: deliverTo(listening)
        })
      } catch (error) {
        listening.stopInbox()
        return Effect.fail(busError(DRIVER, "subscribe", error))
      }
      subscriptions++
      return awaitLive(connection).pipe(Effect.onError(() => listening.close), Effect.as<Subscription>(listening))
    })
  }

  return { listen, count: () => subscriptions }
}

/** The client's callback of a subscription (made apart, so that it keeps nothing else alive). */
const deliverTo = (listening: Listening) => (error: Error | null, msg: Msg) => {
  if (error === null) listening.offer(msg.string())
}

/** A live subscription and its own inbox: a class, so that 10,000 of them share their methods. */
class Listening extends SubscriptionInbox<string> implements Subscription {
  subscription: NatsSubscription | undefined = undefined

  constructor(
    inboxes: ActorSystem,
    topic: string,
    private readonly handler: MessageHandler,
    private readonly onUnsubscribed: () => void
  ) {
    super(inboxes, topic)
  }

  protected handle(payload: string): Effect.Effect<void> | void {
    return this.handler(payload)
  }

  get close(): Effect.Effect<void> {
    return Effect.sync(() => {
      if (this.stopped) return
      this.stopInbox()
      this.onUnsubscribed()
      if (this.subscription === undefined) return
      try {
        if (!this.subscription.isClosed()) this.subscription.unsubscribe()
      } catch {
        // the connection is closing: the subscription goes with it
      }
    })
  }
}
