/**
 * Small helpers shared by the bus drivers: subscription inboxes, secrets and the reconnect schedule.
 * Not part of the public API.
 */
import { Duration, Effect, Redacted, Schedule } from "effect"
import type { Actor, ActorSystem, Behaviour } from "../actor/ActorSystem.js"
import { BusError } from "./Bus.js"

/** A secret given either plainly (tests, embedding) or wrapped so it cannot be logged by accident. */
export type Secret = string | Redacted.Redacted<string>

export const reveal = (secret: Secret | undefined): string | undefined =>
  secret === undefined ? undefined : typeof secret === "string" ? secret : Redacted.value(secret)

export const busError = (driver: string, operation: string, cause: unknown): BusError =>
  new BusError({ driver, operation, message: cause instanceof Error ? cause.message : String(cause) })

/**
 * Capped exponential backoff with jitter, forever: 100 ms, 200 ms, ... up to `maxDelay`.
 * `union` takes the shorter of the two delays, which is what caps it.
 */
export const reconnectSchedule = (maxDelay: Duration.DurationInput) =>
  Schedule.exponential("100 millis", 2).pipe(Schedule.jittered, Schedule.union(Schedule.spaced(maxDelay)))

/**
 * The inbox of one subscription: an actor of the driver's system that gives the handler one
 * message at a time, in order; an idle subscription has no fiber. With `inline`, a message that
 * finds the inbox empty is handled right in the driver's callback (NATS, RabbitMQ: no hop through
 * the scheduler); the memory bus delivers within the publisher's call and must not (a handler
 * that publishes back would re-enter it). `handled` runs after each message (RabbitMQ's ack).
 */
export const spawnInbox = <A>(
  system: ActorSystem,
  id: string,
  options: { readonly inline: boolean },
  handle: (item: A) => Effect.Effect<void> | void
): Actor<A> => system.spawn<A>({ id }, options.inline ? new InlineInbox(handle) : new Inbox(handle))

/** A class rather than closures: one small object per subscription (10,000 dialogs, 10,000 inboxes). */
class Inbox<A> implements Behaviour<A> {
  constructor(private readonly handle: (item: A) => Effect.Effect<void> | void) {}

  receive(item: A): Effect.Effect<void> | undefined {
    const handling = this.handle(item)
    return handling === undefined ? undefined : handling
  }
}

class InlineInbox<A> extends Inbox<A> {
  receiveNow(item: A): boolean | Effect.Effect<void> {
    return this.receive(item) ?? true
  }
}
