/**
 * The Prometheus text exposition format (version 0.0.4), written by hand: `# HELP` and `# TYPE`
 * once per family, then its samples; histograms as cumulative `_bucket{le=...}`, `_sum`, `_count`;
 * summaries as `{quantile=...}`, `_sum`, `_count`.
 */
import type { Histogram } from "./metrics.js"

export type Labels = Readonly<Record<string, string>>

export interface Sample {
  readonly labels?: Labels
  readonly value: number
}

/** A summary's reading: each quantile's value (NaN without observations), and the running sum and count. */
export interface Summary {
  readonly quantiles: ReadonlyArray<readonly [quantile: number, value: number]>
  readonly sum: number
  readonly count: number
}

export const contentType = "text/plain; version=0.0.4; charset=utf-8"

const escapeLabelValue = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")
const escapeHelp = (text: string) => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const formatValue = (value: number): string =>
  Number.isNaN(value) ? "NaN" : value === Infinity ? "+Inf" : value === -Infinity ? "-Inf" : String(value)

const formatLabels = (labels: Labels | undefined): string => {
  if (labels === undefined) return ""
  const pairs = Object.entries(labels).map(([name, value]) => `${name}="${escapeLabelValue(value)}"`)
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`
}

export class PrometheusText {
  private readonly lines: Array<string> = []

  private family(name: string, type: "counter" | "gauge" | "histogram" | "summary", help: string) {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`)
  }

  private samples(name: string, samples: number | Iterable<Sample>) {
    if (typeof samples === "number") {
      this.lines.push(`${name} ${formatValue(samples)}`)
      return
    }
    for (const sample of samples) this.lines.push(`${name}${formatLabels(sample.labels)} ${formatValue(sample.value)}`)
  }

  /** A counter; by convention its name ends in `_total`. */
  counter(name: string, help: string, samples: number | Iterable<Sample>): this {
    this.family(name, "counter", help)
    this.samples(name, samples)
    return this
  }

  gauge(name: string, help: string, samples: number | Iterable<Sample>): this {
    this.family(name, "gauge", help)
    this.samples(name, samples)
    return this
  }

  histogram(name: string, help: string, histogram: Histogram): this {
    this.family(name, "histogram", help)
    let cumulative = 0
    histogram.bounds.forEach((bound, i) => {
      cumulative += histogram.counts[i]!
      this.lines.push(`${name}_bucket{le="${formatValue(bound)}"} ${cumulative}`)
    })
    this.lines.push(
      `${name}_bucket{le="+Inf"} ${histogram.count}`,
      `${name}_sum ${formatValue(histogram.sum)}`,
      `${name}_count ${histogram.count}`
    )
    return this
  }

  summary(name: string, help: string, summary: Summary): this {
    this.family(name, "summary", help)
    for (const [quantile, value] of summary.quantiles) {
      this.lines.push(`${name}{quantile="${formatValue(quantile)}"} ${formatValue(value)}`)
    }
    this.lines.push(`${name}_sum ${formatValue(summary.sum)}`, `${name}_count ${summary.count}`)
    return this
  }

  toString(): string {
    return this.lines.join("\n") + "\n"
  }
}
