import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { CommandClock, Histogram, LabeledCounter, methodLabel, ProxyMetrics } from "../../src/observability/metrics.js"
import { cpuSeconds, monitorEventLoop } from "../../src/observability/processMetrics.js"
import { PrometheusText } from "../../src/observability/prometheus.js"
import { parsePrometheus, valueOf } from "./support.js"

describe("the Prometheus renderer", () => {
  it("writes HELP and TYPE once per family, escapes label values and help, and parses back", () => {
    const text = new PrometheusText()
      .counter("x_events_total", "Events\nby type \\ kind.", [
        { labels: { type: "A\"b\\c\nd" }, value: 3 },
        { labels: { type: "plain" }, value: 1 }
      ])
      .gauge("x_depth", "Depth.", 7)
      .toString()
    expect(text).toContain("# HELP x_events_total Events\\nby type \\\\ kind.\n# TYPE x_events_total counter\n")
    expect(text).toContain("x_events_total{type=\"A\\\"b\\\\c\\nd\"} 3\n")
    const families = parsePrometheus(text)
    expect(valueOf(families, "x_events_total", { type: "A\"b\\c\nd" })).toBe(3)
    expect(valueOf(families, "x_depth")).toBe(7)
  })

  it("renders histograms as cumulative buckets with +Inf, _sum and _count", () => {
    const histogram = new Histogram([0.01, 0.1, 1])
    for (const seconds of [0.005, 0.01, 0.05, 0.5, 3]) histogram.observe(seconds)
    const text = new PrometheusText().histogram("x_seconds", "Latency.", histogram).toString()
    expect(text).toContain([
      "x_seconds_bucket{le=\"0.01\"} 2",
      "x_seconds_bucket{le=\"0.1\"} 3",
      "x_seconds_bucket{le=\"1\"} 4",
      "x_seconds_bucket{le=\"+Inf\"} 5",
      "x_seconds_sum 3.565",
      "x_seconds_count 5"
    ].join("\n"))
    expect(() => parsePrometheus(text)).not.toThrow()
  })

  it("renders summaries as quantiles, _sum and _count (NaN for a quantile without observations)", () => {
    const text = new PrometheusText()
      .summary("x_delay_seconds", "Delay.", { quantiles: [[0.5, 0.001], [0.99, NaN]], sum: 0.25, count: 12 })
      .toString()
    expect(text).toContain([
      "# TYPE x_delay_seconds summary",
      "x_delay_seconds{quantile=\"0.5\"} 0.001",
      "x_delay_seconds{quantile=\"0.99\"} NaN",
      "x_delay_seconds_sum 0.25",
      "x_delay_seconds_count 12"
    ].join("\n"))
    const families = parsePrometheus(text)
    expect(valueOf(families, "x_delay_seconds", { quantile: "0.5" })).toBe(0.001)
    expect(valueOf(families, "x_delay_seconds_count")).toBe(12)
  })

  it("the checker rejects what Prometheus would reject", () => {
    expect(() => parsePrometheus("x_total 1\n")).toThrow(/before its TYPE/)
    expect(() => parsePrometheus("# HELP x_total h\n# TYPE x_total counter\nx_total{a=b} 1\n")).toThrow(/labels/)
    expect(() => parsePrometheus("# HELP x h\n# TYPE x gauge\nx 1")).toThrow(/newline/)
    const notCumulative = "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n" +
      "h_sum 1\nh_count 1\n"
    expect(() => parsePrometheus(notCumulative)).toThrow(/cumulative/)
    expect(() => parsePrometheus("# HELP s h\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_count 1\n"))
      .toThrow(/incomplete/)
    expect(() => parsePrometheus("# HELP s h\n# TYPE s summary\ns{quantile=\"2\"} 1\ns_sum 1\ns_count 1\n"))
      .toThrow(/quantile/)
    expect(() => parsePrometheus("# HELP s h\n# TYPE s summary\ns_bucket{le=\"1\"} 1\n")).toThrow(/before its TYPE/)
  })
})

describe("the hot-path metrics", () => {
  it("bound the number of label values", () => {
    const counter = new LabeledCounter()
    for (let i = 0; i < 300; i++) counter.inc(`type-${i}`)
    expect(counter.values.size).toBe(257)
    expect(counter.values.get("other")).toBe(44)
    expect(counter.total()).toBe(300)
  })

  it("label methods as the seed reads them", () => {
    expect(methodLabel("")).toBe("GET")
    expect(methodLabel("post")).toBe("POST")
    expect(methodLabel("attach")).toBe("ATTACH")
    expect(methodLabel("PATCH")).toBe("OTHER")
  })

  it("match an answer to its command by unique_id, else to the oldest", () => {
    const proxyMetrics = new ProxyMetrics()
    const before = (method: "POST" | "ATTACH" | "GET", statusClass: number) =>
      proxyMetrics.commands.get(method)![statusClass]!
    const post2xx = before("POST", 2)
    const attach2xx = before("ATTACH", 2)
    const get4xx = before("GET", 4)
    const count = proxyMetrics.commandLatency.count
    const clock = new CommandClock(proxyMetrics)
    clock.received("c-1", "POST")
    clock.received("a-1", "ATTACH")
    clock.received("", "GET")
    clock.answered("a-1", 200) // ATTACH is answered at once, before the POST in flight
    clock.answered("c-1", 204)
    clock.answered("", 404)
    clock.answered("unknown", 200) // nothing pending: ignored
    expect(before("POST", 2) - post2xx).toBe(1)
    expect(before("ATTACH", 2) - attach2xx).toBe(1)
    expect(before("GET", 4) - get4xx).toBe(1)
    expect(proxyMetrics.commandLatency.count - count).toBe(3)
  })
})

/** Keeps the event loop busy for `ms` (what a slow synchronous handler would do). */
const blockEventLoop = (ms: number) => {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // busy
  }
}

describe("the process metrics", () => {
  it("count the process's user and system CPU time in seconds", () => {
    const inSeconds = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1e6
    const before = process.cpuUsage()
    const reading = cpuSeconds()
    const after = process.cpuUsage()
    expect(reading).toBeGreaterThanOrEqual(inSeconds(before))
    expect(reading).toBeLessThanOrEqual(inSeconds(after))
    blockEventLoop(20)
    expect(cpuSeconds()).toBeGreaterThan(reading)
  })

  it.live("measure the event-loop delay while their scope is open: a blocked loop shows, an idle one reads ~0", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      // sampled every 50 ms: an idle reading that kept the interval would be >= 0.05
      const delay = yield* Scope.extend(monitorEventLoop(50), scope)
      yield* Effect.sleep("150 millis")
      delay.take() // start a window of our own
      yield* Effect.sleep("60 millis")
      blockEventLoop(200)
      yield* Effect.sleep("120 millis")
      const blocked = delay.take()
      expect(blocked.count).toBeGreaterThan(0)
      expect(blocked.quantiles.map(([quantile]) => quantile)).toEqual([0.5, 0.9, 0.99])
      expect(blocked.quantiles[2]![1]).toBeGreaterThanOrEqual(0.14)
      expect(blocked.sum).toBeGreaterThanOrEqual(0.14)

      yield* Effect.sleep("500 millis")
      const idle = delay.take()
      expect(idle.count).toBeGreaterThan(blocked.count)
      expect(idle.sum).toBeGreaterThanOrEqual(blocked.sum)
      expect(idle.quantiles[0]![1]).toBeLessThan(0.03)

      yield* Scope.close(scope, Exit.void)
      const atClose = delay.take().count
      yield* Effect.sleep("100 millis")
      expect(delay.take().count).toBe(atClose)
    }))
})
