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

/**
 * What one broker outage cost, by reason, told in one line when it ends (or at the close) rather
 * than a line per message: an outage can drop thousands. The line also says the buffer's bounds.
 */
export class OutageLosses<Reason extends string> {
  private readonly counts = new Map<Reason, number>()

  constructor(
    private readonly message: string,
    private readonly reasons: ReadonlyArray<Reason>,
    private readonly buffer: { readonly bufferSize: number; readonly bufferBytes: number }
  ) {}

  count(reason: Reason, lost = 1): void {
    if (lost > 0) this.counts.set(reason, (this.counts.get(reason) ?? 0) + lost)
  }

  /** The outage's line, if it lost anything; counting starts again. */
  readonly report: Effect.Effect<void> = Effect.suspend(() => {
    if (this.counts.size === 0) return Effect.void
    const lost: Record<string, number> = {}
    for (const reason of this.reasons) lost[reason] = this.counts.get(reason) ?? 0
    this.counts.clear()
    return Effect.logWarning(this.message).pipe(Effect.annotateLogs({ ...lost, ...this.buffer }))
  })
}

/**
 * A trouble that can repeat for every message (a broker refusing them) is logged the first time
 * only, until `rearm` (the next connection); the driver's stats count every one.
 */
export class FirstOnly {
  private logged = false

  constructor(private readonly runLog: (effect: Effect.Effect<void>) => void) {}

  log(line: Effect.Effect<void>): void {
    if (this.logged) return
    this.logged = true
    this.runLog(line)
  }

  rearm(): void {
    this.logged = false
  }
}

/** A message a `publish` may wait on until it is written (the broker's window was full). */
export interface AwaitedWrite {
  written: boolean
  /** Resumes the waiting `publish`; set while one waits. */
  resume: (() => void) | undefined
}

/** Suspends a `publish` until its message is written, unless `settled` says it need not wait. */
export const awaitWrite = (entry: AwaitedWrite, settled: () => boolean): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (settled()) return resume(Effect.void)
    entry.resume = () => resume(Effect.void)
    return Effect.sync(() => {
      entry.resume = undefined
    })
  })

/** Lets the `publish` waiting on `entry`, if any, go on (its message was written, or buffered). */
export const releaseWaiter = (entry: AwaitedWrite): void => {
  const resume = entry.resume
  if (resume === undefined) return
  entry.resume = undefined
  resume()
}

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
