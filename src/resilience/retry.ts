/**
 * The one retry policy of the proxy: how it tries again after a connection is lost or cannot be
 * made (ARI's websocket, NATS, RabbitMQ) and after a subscription fails. Capped exponential
 * backoff with jitter, forever: the proxy never gives up on ARI or the bus, it only waits longer,
 * and the jitter keeps many proxies that lost the same broker from coming back at the same moment.
 *
 * Every delay is taken on Effect's `Clock` (a `TestClock` in tests).
 */
import { Clock, Duration, Effect, Schedule, ScheduleDecision, ScheduleIntervals } from "effect"

export interface RetryPolicy {
  /** The delay before the first retry; no delay is shorter. */
  readonly firstDelayMs: number
  /** No delay is longer: the backoff stops growing here. */
  readonly maxDelayMs: number
}

/**
 * The delays of `policy`: the n-th (from 0) is drawn between half and all of
 * `min(firstDelayMs × 2^n, maxDelayMs)`, and is never below `firstDelayMs`. So the first is exactly
 * `firstDelayMs`, and at the cap they spread over its upper half.
 */
export const retrySchedule = (policy: RetryPolicy): Schedule.Schedule<Duration.Duration, unknown> => {
  const first = Duration.millis(Math.max(1, policy.firstDelayMs))
  const cap = Duration.max(first, Duration.millis(policy.maxDelayMs))
  return Schedule.exponential(first, 2).pipe(
    Schedule.modifyDelay((_, delay) => Duration.min(delay, cap)),
    Schedule.jitteredWith({ min: 0.5, max: 1 }),
    Schedule.modifyDelay((_, delay) => Duration.max(delay, first))
  )
}

/**
 * The delays of a policy one at a time, for a loop that must know (and say) its next delay before
 * it waits, as the ARI websocket does in its `Disconnected` state.
 */
export interface Backoff {
  /** The next delay in whole milliseconds; the backoff grows. */
  readonly next: Effect.Effect<number>
  /** Starts again from the first delay (a connection that stayed up). */
  readonly reset: Effect.Effect<void>
}

export const makeBackoff = (policy: RetryPolicy): Effect.Effect<Backoff> =>
  Effect.sync(() => {
    const schedule = retrySchedule(policy)
    let state: unknown = schedule.initial
    const next = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.map(schedule.step(now, undefined, state), ([nextState, , decision]) => {
        state = nextState
        // The schedule runs forever; `Done` cannot happen, the cap is the sensible answer if it did.
        return ScheduleDecision.isDone(decision)
          ? policy.maxDelayMs
          : Math.round(ScheduleIntervals.start(decision.intervals) - now)
      }))
    const reset = Effect.sync(() => {
      state = schedule.initial
    })
    return { next, reset }
  })
