/**
 * Small helpers shared by the broker drivers: a FIFO for buffered messages, secrets, URL redaction
 * and the reconnect schedule. Not part of the public API.
 */
import { Duration, Redacted, Schedule } from "effect"
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
