/**
 * Small helpers shared by the broker drivers: a FIFO for buffered messages, secrets, URL redaction
 * and the reconnect schedule. Not part of the public API.
 */
import { Duration, Effect, Fiber, Redacted, Runtime, Schedule } from "effect"
import type { Scope } from "effect"
import { BusError } from "./Bus.js"

/** A secret given either plainly (tests, embedding) or wrapped so it cannot be logged by accident. */
export type Secret = string | Redacted.Redacted<string>

export const reveal = (secret: Secret | undefined): string | undefined =>
  secret === undefined ? undefined : typeof secret === "string" ? secret : Redacted.value(secret)

/** `scheme://user:pass@host/x` → `scheme://***@host/x`: URLs are logged, credentials never. */
export const redactUrl = (url: string): string => url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, "$1***@")

export const busError = (driver: string, operation: string, cause: unknown): BusError =>
  new BusError({ driver, operation, message: cause instanceof Error ? cause.message : String(cause) })

/**
 * Capped exponential backoff with jitter, forever: 100 ms, 200 ms, ... up to `maxDelay`.
 * `union` takes the shorter of the two delays, which is what caps it.
 */
export const reconnectSchedule = (maxDelay: Duration.DurationInput) =>
  Schedule.exponential("100 millis", 2).pipe(Schedule.jittered, Schedule.union(Schedule.spaced(maxDelay)))

/**
 * An array-backed FIFO with O(1) amortised shift (Array.prototype.shift is O(n) on large arrays).
 * Holds the messages published while a broker is unreachable, in order.
 */
export class Fifo<A> {
  private items: Array<A | undefined> = []
  private head = 0

  get length(): number {
    return this.items.length - this.head
  }

  push(item: A): void {
    this.items.push(item)
  }

  peek(): A | undefined {
    return this.items[this.head]
  }

  shift(): A | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head++
    // Compact once the consumed prefix dominates, so memory follows the live length.
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }

  /** Puts `items` (older messages, e.g. unconfirmed ones) in front of everything queued, keeping their order. */
  prependAll(items: ReadonlyArray<A>): void {
    if (items.length === 0) return
    this.items = [...items, ...this.items.slice(this.head)]
    this.head = 0
  }

  /** Removes and returns everything, oldest first. */
  takeAll(): Array<A> {
    const all = this.items.slice(this.head) as Array<A>
    this.items = []
    this.head = 0
    return all
  }
}

/**
 * The inbox of one subscription: `handle` runs for one item at a time, in arrival order, on a fiber
 * that exists only while items wait. An idle subscription then costs an array and a few closures
 * instead of a fiber parked on a Queue (about 8 KB of heap each, most of an idle dialog's cost).
 * Items are handled on the scheduler, never inside `offer`'s caller, as a woken fiber would be.
 * Closing the scope drops what waits and interrupts the handler that runs.
 */
export const makeInbox = <A>(
  handle: (item: A) => Effect.Effect<void>
): Effect.Effect<(item: A) => void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const waiting = new Fifo<A>()
    let running = false
    let closed = false
    let worker: Fiber.RuntimeFiber<void> | undefined
    const start = () => {
      running = true
      worker = runFork(drain, { immediate: false })
    }
    const drain: Effect.Effect<void> = Effect.gen(function*() {
      while (!closed && waiting.length > 0) yield* handle(waiting.shift()!)
    }).pipe(Effect.ensuring(Effect.sync(() => {
      running = false
      worker = undefined
      // The loop may have yielded to the scheduler after its last check: pick up what came meanwhile.
      if (!closed && waiting.length > 0) start()
    })))
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        waiting.takeAll()
        const current = worker
        worker = undefined
        return current === undefined ? Effect.void : Fiber.interrupt(current)
      })
    )
    return (item: A) => {
      if (closed) return
      waiting.push(item)
      if (!running) start()
    }
  })
