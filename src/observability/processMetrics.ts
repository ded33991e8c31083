/**
 * What `/metrics` says about the Node.js process itself: CPU time, event-loop delay, and which
 * build runs. Read when scraped, except the event-loop monitor, which samples while the endpoint
 * is up.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { readFileSync } from "node:fs"
import { type IntervalHistogram, monitorEventLoopDelay } from "node:perf_hooks"
import type { Summary } from "./prometheus.js"

/** User and system CPU time of the process since it started, in seconds. */
export const cpuSeconds = (): number => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}

/**
 * The package's version, from its package.json: two levels above this module both in src/ (tests)
 * and in dist/ (the build, which ships package.json beside dist/).
 */
const readPackageVersion = (): string => {
  try {
    const manifest = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      readonly version?: unknown
    }
    return typeof manifest.version === "string" ? manifest.version : "unknown"
  } catch {
    // A bundler may have moved this module away from package.json: the metric still says which Node runs.
    return "unknown"
  }
}

export const packageVersion: string = readPackageVersion()

export const eventLoopDelayQuantiles: ReadonlyArray<number> = [0.5, 0.9, 0.99]

/**
 * The event-loop delay as a Prometheus summary. Node samples it with a timer every `resolutionMs`
 * and records the whole interval between ticks, so the resolution is taken off each reading: an
 * idle loop reads 0. The quantiles cover the interval since the previous scrape (the monitor is
 * reset then), `_sum` and `_count` the whole time the endpoint has been up.
 */
export class EventLoopDelay {
  private sumSeconds = 0
  private count = 0

  constructor(private readonly monitor: IntervalHistogram, private readonly resolutionMs: number) {}

  private delaySeconds(nanoseconds: number): number {
    return Math.max(0, nanoseconds / 1e6 - this.resolutionMs) / 1000
  }

  /** The summary now; starts the next quantile window. */
  take(): Summary {
    const monitor = this.monitor
    const empty = monitor.count === 0
    this.count += monitor.count
    if (!empty) this.sumSeconds += this.delaySeconds(monitor.mean) * monitor.count
    const quantiles = eventLoopDelayQuantiles.map((quantile) =>
      [quantile, empty ? NaN : this.delaySeconds(monitor.percentile(quantile * 100))] as const
    )
    monitor.reset()
    return { quantiles, sum: this.sumSeconds, count: this.count }
  }
}

/** Samples the event loop for as long as the scope is open. */
export const monitorEventLoop = (resolutionMs = 10): Effect.Effect<EventLoopDelay, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const monitor = monitorEventLoopDelay({ resolution: resolutionMs })
      monitor.enable()
      return monitor
    }),
    (monitor) => Effect.sync(() => monitor.disable())
  ).pipe(Effect.map((monitor) => new EventLoopDelay(monitor, resolutionMs)))
