/**
 * A clock for property tests that move time by hand, many times a run (see ManualClock).
 */
import { Clock, Duration, Effect, Scheduler } from "effect"

/**
 * A clock the test moves by hand: `advance` wakes the sleeps in deadline order, each at its own
 * time, and lets every fiber run (microtasks) before the next. The same as TestClock, minus its
 * polling for suspended fibers with real `setTimeout(0)`s, which costs ~5 ms a wake (measured:
 * 100 adjusts 500 ms), too much for properties that move time hundreds of times a run
 * (test/actor/runtime.property.test.ts runs its timer property on both).
 */
export class ManualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  private now = 0
  private sleeps: Array<{ readonly at: number; readonly wake: () => void }> = []
  unsafeCurrentTimeMillis(): number {
    return this.now
  }
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(this.now) * 1_000_000n
  }
  readonly currentTimeMillis = Effect.sync(() => this.now)
  readonly currentTimeNanos = Effect.sync(() => this.unsafeCurrentTimeNanos())
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const entry = { at: this.now + Duration.toMillis(duration), wake: () => resume(Effect.void) }
      if (entry.at <= this.now) return resume(Effect.void)
      this.sleeps.push(entry)
      return Effect.sync(() => {
        this.sleeps = this.sleeps.filter((e) => e !== entry)
      })
    })
  }
  advance(ms: number): Effect.Effect<void> {
    const flush = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this
    return Effect.gen(function*() {
      const end = self.now + ms
      yield* flush
      while (true) {
        const next = self.sleeps.reduce<{ readonly at: number; readonly wake: () => void } | undefined>(
          (min, e) => min === undefined || e.at < min.at ? e : min,
          undefined
        )
        if (next === undefined || next.at > end) break
        self.sleeps = self.sleeps.filter((e) => e !== next)
        self.now = next.at
        next.wake()
        yield* flush
      }
      self.now = end
      yield* flush
    })
  }
}

/** Microtask-only fibers on a ManualClock: a `setImmediate` runs everything that can run. */
export const onManualClock = <A>(body: (clock: ManualClock) => Effect.Effect<A>): Effect.Effect<A> => {
  const clock = new ManualClock()
  return body(clock).pipe(
    Effect.withClock(clock),
    Effect.withScheduler(Scheduler.make((task) => queueMicrotask(task)))
  )
}
