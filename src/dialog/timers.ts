/**
 * One timer queue for every dialog's grace and linger periods. Each delay is the same for all
 * dialogs, so the deadlines of one delay arrive in order and a FIFO per delay is a sorted queue;
 * a single Node timer is armed for the earliest deadline. (A setTimeout per dialog halved the
 * rate of dialog creation in measurements: see docs/benchmarks.md.)
 */
interface Entry {
  readonly deadline: number
  readonly callback: () => void
}

export class TimerQueue {
  private readonly lanes = new Map<number, Array<Entry>>()
  private timer: ReturnType<typeof setTimeout> | undefined
  private armedFor = Infinity
  private closed = false

  // A monotonic clock: a wall clock stepped back (NTP, a resumed VM) would delay every timer.
  constructor(private readonly now: () => number = () => performance.now()) {}

  schedule(delayMs: number, callback: () => void): void {
    if (this.closed) return
    let lane = this.lanes.get(delayMs)
    if (lane === undefined) {
      lane = []
      this.lanes.set(delayMs, lane)
    }
    const deadline = this.now() + delayMs
    lane.push({ deadline, callback })
    if (deadline < this.armedFor) this.arm(deadline)
  }

  /** Drops every pending timer (shutdown). */
  close(): void {
    this.closed = true
    this.lanes.clear()
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }

  get pending(): number {
    let count = 0
    for (const lane of this.lanes.values()) count += lane.length
    return count
  }

  private arm(deadline: number) {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.armedFor = deadline
    this.timer = setTimeout(() => this.fire(), Math.max(0, deadline - this.now()))
    this.timer.unref()
  }

  private fire() {
    this.timer = undefined
    this.armedFor = Infinity
    const now = this.now()
    const due: Array<Entry> = []
    for (const [delay, lane] of this.lanes) {
      let count = 0
      while (count < lane.length && lane[count]!.deadline <= now) count++
      for (const entry of lane.splice(0, count)) due.push(entry)
      if (lane.length === 0) this.lanes.delete(delay)
    }
    // Callbacks may schedule again; they arm the timer themselves when they come first.
    for (const entry of due) {
      try {
        entry.callback()
      } catch (error) {
        // one failing callback must not take the others (or the process) with it
        process.emitWarning(`ari-proxy timer callback failed: ${String(error)}`)
      }
    }
    if (this.closed) return
    let next = Infinity
    for (const lane of this.lanes.values()) next = Math.min(next, lane[0]!.deadline)
    if (next < this.armedFor) this.arm(next)
  }
}
