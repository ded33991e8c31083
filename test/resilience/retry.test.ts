/**
 * The proxy's one retry policy (ARI's websocket, NATS, RabbitMQ, subscriptions), on TestClock: the
 * delays are what the policy promises and nothing is tried a moment early.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber, Random, TestClock } from "effect"
import { makeBackoff, type RetryPolicy, retrySchedule } from "../../src/resilience/retry.js"

const policy: RetryPolicy = { firstDelayMs: 10, maxDelayMs: 160 }

/** The largest the n-th delay (from 0) may be: it doubles from the first up to the cap. */
const ceiling = (n: number) => Math.min(policy.firstDelayMs * 2 ** n, policy.maxDelayMs)

/** Every delay is within its step's upper half, and never below the first delay. */
const expectWithinPolicy = (delays: ReadonlyArray<number>) =>
  delays.forEach((delay, n) => {
    expect(delay).toBeGreaterThanOrEqual(Math.max(policy.firstDelayMs, ceiling(n) / 2))
    expect(delay).toBeLessThanOrEqual(ceiling(n))
  })

describe("the retry policy", () => {
  it.effect("retries a failing connect: after exactly the first delay, then growing, jittered and capped", () =>
    Effect.gen(function*() {
      const attempts: Array<number> = []
      const connect = Effect.flatMap(Clock.currentTimeMillis, (now) => {
        attempts.push(now)
        return Effect.fail("connection refused")
      })
      const retrying = yield* Effect.fork(Effect.retry(connect, retrySchedule(policy)))
      yield* TestClock.adjust(0)
      for (let n = 0; n < 11; n++) {
        const last = attempts.at(-1)!
        const earliest = Math.max(policy.firstDelayMs, ceiling(n) / 2)
        yield* TestClock.setTime(last + earliest - 1)
        expect(attempts.length).toBe(n + 1) // not a moment early
        yield* TestClock.setTime(last + ceiling(n))
        expect(attempts.length).toBe(n + 2) // nor late
      }
      yield* Fiber.interrupt(retrying)

      const delays = attempts.slice(1).map((at, i) => at - attempts[i]!)
      expect(delays[0]).toBe(policy.firstDelayMs)
      expectWithinPolicy(delays)
      const atCap = delays.slice(5)
      expect(atCap.every((delay) => delay >= policy.maxDelayMs / 2)).toBe(true)
      // Jitter: proxies that lost the same broker do not all come back at once.
      expect(new Set(atCap).size).toBeGreaterThan(1)
    }).pipe(Effect.withRandom(Random.make("retry-schedule"))))

  it.effect("one delay at a time for a loop that says it before waiting; reset starts again from the first", () =>
    Effect.gen(function*() {
      const backoff = yield* makeBackoff(policy)
      const delays: Array<number> = []
      for (let n = 0; n < 10; n++) {
        delays.push(yield* backoff.next)
        yield* TestClock.adjust(delays[n]!)
      }
      expect(delays.every(Number.isInteger)).toBe(true)
      expect(delays[0]).toBe(policy.firstDelayMs)
      expectWithinPolicy(delays)
      expect(delays.at(-1)).toBeGreaterThan(policy.firstDelayMs * 4)

      yield* backoff.reset
      expect(yield* backoff.next).toBe(policy.firstDelayMs)
      expect(yield* backoff.next).toBeGreaterThanOrEqual(policy.firstDelayMs)
    }).pipe(Effect.withRandom(Random.make("backoff"))))

  it.effect("a cap below the first delay waits the first delay every time", () =>
    Effect.gen(function*() {
      const backoff = yield* makeBackoff({ firstDelayMs: 50, maxDelayMs: 20 })
      for (let n = 0; n < 5; n++) expect(yield* backoff.next).toBe(50)
    }))
})
