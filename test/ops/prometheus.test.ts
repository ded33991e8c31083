import { describe, expect, it } from "@effect/vitest"
import { CommandClock, Histogram, LabeledCounter, methodLabel, proxyMetrics } from "../../src/observability/metrics.js"
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

  it("the checker rejects what Prometheus would reject", () => {
    expect(() => parsePrometheus("x_total 1\n")).toThrow(/before its TYPE/)
    expect(() => parsePrometheus("# HELP x_total h\n# TYPE x_total counter\nx_total{a=b} 1\n")).toThrow(/labels/)
    expect(() => parsePrometheus("# HELP x h\n# TYPE x gauge\nx 1")).toThrow(/newline/)
    const notCumulative = "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n" +
      "h_sum 1\nh_count 1\n"
    expect(() => parsePrometheus(notCumulative)).toThrow(/cumulative/)
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
    const before = (method: "POST" | "ATTACH" | "GET", statusClass: number) =>
      proxyMetrics.commands.get(method)![statusClass]!
    const post2xx = before("POST", 2)
    const attach2xx = before("ATTACH", 2)
    const get4xx = before("GET", 4)
    const count = proxyMetrics.commandLatency.count
    const clock = new CommandClock()
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
