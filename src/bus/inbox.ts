/**
 * The inbox of one bus subscription: it gives the handler one message at a time, in order.
 *
 * A NATS or RabbitMQ subscription is its own inbox (it extends `SubscriptionInbox`). While the
 * handler completes at once (a dialog's commands: the handler only feeds the dialog's actor), a
 * message is handled right in the driver's callback and the subscription holds no actor; the first
 * handling that returns an effect makes an actor of the driver's system, which runs that effect and
 * takes every later message, in order, one at a time. 10,000 idle dialogs: 10,000 small objects
 * rather than 10,000 actors and their mailboxes.
 *
 * The memory bus delivers inside the publisher's call and must never handle there (a handler that
 * publishes back would re-enter it): its subscriptions are actors from the start (`queuedInbox`).
 */
import type { Effect } from "effect"
import { Cause } from "effect"
import type { Actor, ActorSystem, Behaviour } from "../actor/ActorSystem.js"

/** An effect already started by a handler in the driver's callback: the actor's first message. */
class Started {
  constructor(readonly effect: Effect.Effect<void>) {}
}

export abstract class SubscriptionInbox<A> implements Behaviour<A | Started> {
  private actor: Actor<A | Started> | undefined = undefined
  private inboxStopped = false

  constructor(private readonly system: ActorSystem, readonly id: string) {}

  /** Handles one message: nothing more to do, or the effect to run before the next message. */
  protected abstract handle(item: A): Effect.Effect<void> | void

  get stopped(): boolean {
    return this.inboxStopped
  }

  offer(item: A): void {
    if (this.inboxStopped) return
    if (this.actor !== undefined) {
      this.actor.offer(item)
      return
    }
    let handling: Effect.Effect<void> | void
    try {
      handling = this.handle(item)
    } catch (error) {
      this.system.reportFailure(this.id, Cause.die(error))
      return
    }
    if (handling === undefined) return
    this.actor = this.system.spawn<A | Started>({ id: this.id }, this)
    this.actor.offer(new Started(handling))
  }

  /** No message is handled after this. */
  stopInbox(): void {
    this.inboxStopped = true
    this.actor?.stop()
    this.actor = undefined
  }

  receive(message: A | Started): Effect.Effect<void> | undefined {
    if (message instanceof Started) return message.effect
    return this.handle(message) ?? undefined
  }

  receiveNow(message: A | Started): boolean | Effect.Effect<void> {
    return this.receive(message) ?? true
  }
}

/** An inbox that is an actor from the start: its handler never runs inside `offer`'s caller. */
export const queuedInbox = <A>(
  system: ActorSystem,
  id: string,
  handle: (item: A) => Effect.Effect<void> | void
): Actor<A> => system.spawn<A>({ id }, new Queued(handle))

/** A class rather than closures: one small object per subscription. */
class Queued<A> implements Behaviour<A> {
  constructor(private readonly handle: (item: A) => Effect.Effect<void> | void) {}

  receive(item: A): Effect.Effect<void> | undefined {
    return this.handle(item) ?? undefined
  }
}
