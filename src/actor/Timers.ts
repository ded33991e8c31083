/**
 * One timer queue for every actor of a system (a dialog's attach grace and linger, a requested
 * dialog's idle check). Each delay is the same for all actors that use it, so the deadlines of one
 * delay arrive in order and a FIFO per delay is a sorted queue; one sleeping fiber waits for the
 * earliest deadline. A fiber per timer halved the rate at which dialogs could be opened.
 *
 * Time comes from Effect's `Clock` (monotonic in production, `TestClock` in tests).
 */
import { Cause, Effect, FiberId } from "effect"
import type { Clock, Fiber } from "effect"
import { Fifo } from "./Fifo.js"

interface Entry {
  readonly deadline: number
  readonly callback: () => void
}

export class Timers {
  private readonly lanes = new Map<number, Fifo<Entry>>()
  private sleeper: Fiber.RuntimeFiber<void> | undefined
  private armedFor = Infinity
  private closed = false

  constructor(
    private readonly clock: Clock.Clock,
    private readonly runFork: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>,
    /** A callback threw: reported, and the other callbacks still run. */
    private readonly onCallbackFailure: (cause: Cause.Cause<never>) => void
  ) {}

  /** Milliseconds on the clock's monotonic time line. */
  now(): number {
    return Number(this.clock.unsafeCurrentTimeNanos()) / 1e6
  }

  /** Calls `callback` once `delayMs` have passed (never after `close`). */
  schedule(delayMs: number, callback: () => void): void {
    if (this.closed) return
    let lane = this.lanes.get(delayMs)
    if (lane === undefined) {
      lane = new Fifo()
      this.lanes.set(delayMs, lane)
    }
    const deadline = this.now() + delayMs
    lane.push({ deadline, callback })
    if (deadline < this.armedFor) this.arm(deadline)
  }

  get pending(): number {
    let count = 0
    for (const lane of this.lanes.values()) count += lane.length
    return count
  }

  /** Drops every pending timer. */
  close(): void {
    this.closed = true
    this.lanes.clear()
    this.sleeper?.unsafeInterruptAsFork(FiberId.none)
    this.sleeper = undefined
  }

  private arm(deadline: number): void {
    this.sleeper?.unsafeInterruptAsFork(FiberId.none)
    this.armedFor = deadline
    this.sleeper = this.runFork(
      Effect.zipRight(Effect.sleep(Math.max(0, deadline - this.now())), Effect.sync(() => this.fire()))
    )
  }

  private fire(): void {
    this.sleeper = undefined
    this.armedFor = Infinity
    const now = this.now()
    const due: Array<Entry> = []
    for (const [delay, lane] of this.lanes) {
      while (lane.length > 0 && lane.peek()!.deadline <= now) due.push(lane.shift()!)
      if (lane.length === 0) this.lanes.delete(delay)
    }
    // Callbacks may schedule again; they arm the sleeper themselves when they come first.
    for (const entry of due) {
      if (this.closed) return
      try {
        entry.callback()
      } catch (error) {
        this.onCallbackFailure(Cause.die(error))
      }
    }
    if (this.closed) return
    let next = Infinity
    for (const lane of this.lanes.values()) next = Math.min(next, lane.peek()!.deadline)
    if (next < this.armedFor) this.arm(next)
  }
}
