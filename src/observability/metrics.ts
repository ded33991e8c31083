/**
 * The hot-path metrics: plain mutable counters and histogram buckets, updated synchronously where
 * events and commands pass (router, dialog actor, ARI REST). They run once per event, so they
 * allocate nothing there: a label value is a string the caller already holds (the event type),
 * and a count is a number in a Map or a typed array. `/metrics` (http.ts) renders them.
 *
 * They belong to one proxy: `ProxyMetricsService` is built with each proxy Layer, so two proxies
 * in one process count apart. Whoever counts takes the service once, when it is built, and keeps
 * the object: nothing looks the context up per event.
 */
import { Context, Layer } from "effect"

/** Distinct label values kept per family; beyond that they count as "other" (bounded cardinality). */
const maxLabelValues = 256

/** A counter with one label (e.g. the ARI event type). */
export class LabeledCounter {
  readonly values = new Map<string, number>()

  inc(label: string): void {
    const current = this.values.get(label)
    if (current !== undefined) this.values.set(label, current + 1)
    else if (this.values.size < maxLabelValues) this.values.set(label, 1)
    else this.values.set("other", (this.values.get("other") ?? 0) + 1)
  }

  total(): number {
    let sum = 0
    for (const value of this.values.values()) sum += value
    return sum
  }
}

/** Upper bounds (seconds) shared by the latency histograms: 0.5 ms to 10 s. */
export const latencyBucketsSeconds: ReadonlyArray<number> = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
]

/** A histogram with fixed buckets; `counts[i]` is NOT cumulative (the renderer sums them up). */
export class Histogram {
  readonly counts: Float64Array
  sum = 0
  count = 0

  constructor(readonly bounds: ReadonlyArray<number>) {
    // One more slot for observations above the last bound (+Inf).
    this.counts = new Float64Array(bounds.length + 1)
  }

  observe(value: number): void {
    let i = 0
    while (i < this.bounds.length && value > this.bounds[i]!) i++
    this.counts[i]!++
    this.sum += value
    this.count++
  }
}

export const commandMethods = ["GET", "POST", "PUT", "DELETE", "ATTACH", "RENEW", "OTHER", "INVALID"] as const
export type CommandMethod = typeof commandMethods[number]
/** Index = Math.floor(status / 100); 0 stands for anything outside 1xx..5xx. */
export const statusClasses = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"] as const

/** The method label of a command: the HTTP verb ("" is GET, as the seed reads it), else OTHER. */
export const methodLabel = (method: string): CommandMethod => {
  switch (method.length === 0 ? "GET" : method.toUpperCase()) {
    case "GET":
      return "GET"
    case "POST":
      return "POST"
    case "PUT":
      return "PUT"
    case "DELETE":
      return "DELETE"
    case "ATTACH":
      return "ATTACH"
    case "RENEW":
      return "RENEW"
    default:
      return "OTHER"
  }
}

const statusClassIndex = (status: number): number => {
  const index = Math.floor(status / 100)
  return index >= 1 && index <= 5 ? index : 0
}

/** One proxy's counts. A new metric: a field here, and its line in `renderMetrics` (proxy/http.ts). */
export class ProxyMetrics {
  /** ARI frames by event type, as they arrive (before routing). */
  readonly eventsReceived = new LabeledCounter()
  /** Events published on `events_<dialog>` by type (DialogEnded included). */
  readonly eventsPublished = new LabeledCounter()
  /** Events no dialog owned, by type. */
  readonly eventsUnrouted = new LabeledCounter()
  /** Dialogs ended (DialogEnded published), by reason. */
  readonly dialogsEnded = new LabeledCounter()
  /** Commands answered: method → counts by status class (index: see `statusClasses`). */
  readonly commands = new Map<CommandMethod, Float64Array>(
    commandMethods.map((method) => [method, new Float64Array(statusClasses.length)])
  )
  /** From a command's arrival on the bus to its response being handed to the bus. */
  readonly commandLatency = new Histogram(latencyBucketsSeconds)
  /** One ARI REST request, from sending to the whole answer read (or the failure). */
  readonly ariRestLatency = new Histogram(latencyBucketsSeconds)
  /** Calls that arrived while draining and were sent back to the dialplan (`continue`). */
  callsContinuedWhileDraining = 0
  /** Presence messages published, by type (`heartbeat`, `goodbye`). */
  readonly presenceAnnounced = new LabeledCounter()

  commandAnswered(method: CommandMethod, status: number, latencySeconds: number): void {
    this.commands.get(method)![statusClassIndex(status)]!++
    this.commandLatency.observe(latencySeconds)
  }
}

/** The metrics of one proxy, made anew each time a proxy Layer is built. */
export class ProxyMetricsService extends Context.Tag("ari-proxy/ProxyMetrics")<ProxyMetricsService, ProxyMetrics>() {
  static readonly layer: Layer.Layer<ProxyMetricsService> = Layer.sync(ProxyMetricsService, () => new ProxyMetrics())
}

/** Seconds since `startedAt` (a `performance.now()` reading). */
export const secondsSince = (startedAt: number): number => (performance.now() - startedAt) / 1000

interface PendingCommand {
  readonly uniqueId: string
  readonly method: CommandMethod
  readonly receivedAt: number
}

/**
 * A dialog's commands between their arrival and their answer, to label and time each answer.
 * Answers come in arrival order except the ones the dialog gives at once (ATTACH, 410 after the
 * end), so an answer is matched by `unique_id` first, then to the oldest command.
 */
export class CommandClock {
  private pending: Array<PendingCommand> | undefined

  constructor(private readonly metrics: ProxyMetrics) {}

  received(uniqueId: string, method: CommandMethod): void {
    const pending = this.pending ?? (this.pending = [])
    pending.push({ uniqueId, method, receivedAt: performance.now() })
  }

  answered(uniqueId: string, status: number): void {
    const pending = this.pending
    if (pending === undefined || pending.length === 0) return
    let index = pending.findIndex((command) => command.uniqueId === uniqueId)
    if (index === -1) index = 0
    const command = pending[index]!
    pending.splice(index, 1)
    this.metrics.commandAnswered(command.method, status, secondsSince(command.receivedAt))
  }
}
