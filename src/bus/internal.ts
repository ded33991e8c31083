/**
 * Small helpers shared by the bus drivers: secrets, errors and the reconnect schedule.
 * Not part of the public API.
 */
import { Duration, Redacted, Schedule } from "effect"
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
