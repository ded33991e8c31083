/**
 * Small helpers shared by the bus drivers: secrets, errors, connecting with retries.
 * Not part of the public API.
 */
import { Effect, Redacted } from "effect"
import { type RetryPolicy, retrySchedule } from "../resilience/retry.js"
import { BusError } from "./Bus.js"

/** A secret given either plainly (tests, embedding) or wrapped so it cannot be logged by accident. */
export type Secret = string | Redacted.Redacted<string>

export const reveal = (secret: Secret | undefined): string | undefined =>
  secret === undefined ? undefined : typeof secret === "string" ? secret : Redacted.value(secret)

export const busError = (driver: string, operation: string, cause: unknown): BusError =>
  new BusError({ driver, operation, message: cause instanceof Error ? cause.message : String(cause) })

/** The drivers' first reconnect delay; their options set the cap. */
export const busRetryPolicy = (maxDelayMs: number): RetryPolicy => ({ firstDelayMs: 100, maxDelayMs })

/**
 * Connects to a broker, trying again on `retry` until it can (down at startup, or after a loss):
 * each failure is logged, with `target` (redacted) and the error. A connection that completes after
 * the attempt was given up (interrupted: the bus is closing) is closed.
 */
export const connectRetrying = <C>(options: {
  readonly driver: string
  /** The broker's name in the log line: `NATS connect failed, retrying`. */
  readonly broker: string
  readonly target: Readonly<Record<string, string>>
  readonly connect: () => Promise<C>
  readonly close: (connection: C) => void
  readonly retry: RetryPolicy
  /** Also done after each failure. */
  readonly onFailure?: Effect.Effect<void> | undefined
}): Effect.Effect<C, BusError> =>
  Effect.async<C, BusError>((resume) => {
    let abandoned = false
    options.connect().then(
      (connection) => {
        if (abandoned) options.close(connection)
        else resume(Effect.succeed(connection))
      },
      (error) => resume(Effect.fail(busError(options.driver, "connect", error)))
    )
    return Effect.sync(() => {
      abandoned = true
    })
  }).pipe(
    Effect.tapError((error) =>
      Effect.zipRight(
        options.onFailure ?? Effect.void,
        Effect.logWarning(`${options.broker} connect failed, retrying`).pipe(
          Effect.annotateLogs({ ...options.target, error: error.message })
        )
      )
    ),
    Effect.retry(retrySchedule(options.retry))
  )
