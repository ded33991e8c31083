/**
 * Helpers of the operations tests: a configuration with its HTTP endpoint on an address of its own,
 * a real proxy application built in a scope, an HTTP client, and a strict parser of the Prometheus
 * text format.
 */
import { Context, Effect, Layer, Logger, LogLevel } from "effect"
import type { Scope } from "effect"
import { Bus, type BusShape } from "../../src/bus/Bus.js"
import { makeProxyConfig, type ProxyConfigInput } from "../../src/config/ProxyConfigService.js"
import type { ProxyConfig } from "../../src/config/ProxyConfig.js"
import { proxyApplication } from "../../src/proxy/application.js"
import { Proxy, type ProxyShape } from "../../src/proxy/Proxy.js"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { quietAddress } from "../support/ports.js"

/**
 * A configuration for `sim`, its HTTP endpoint on an address held for the scope: the proxy cannot be
 * told to take any port and report it (`http_port` 0 means no endpoint), so it gets one nobody else
 * can take (test/support/ports.ts).
 */
export const proxyConfigFor = (
  sim: SimulatorHandle,
  input: ProxyConfigInput = {}
): Effect.Effect<ProxyConfig, never, Scope.Scope> =>
  Effect.map(quietAddress, (http) =>
    makeProxyConfig({
      applications: ["app"],
      stasisUrl: sim.url,
      websocketUrl: sim.wsUrl,
      wsUser: sim.credentials.username,
      wsPassword: sim.credentials.password,
      serverId: "ast-ops",
      messageBus: "MEMORY",
      httpPort: http.port,
      httpHost: http.host,
      attachGraceMs: 300,
      endedLingerMs: 500,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      ...input
    }))

export interface OpsProxy {
  readonly proxy: ProxyShape
  readonly bus: BusShape
  readonly config: ProxyConfig
  /** `http://<http_host>:<http_port>` */
  readonly base: string
}

/** The whole application as `main.ts` runs it (bus from the config, HTTP endpoint), in the scope. */
export const startOpsProxy = (
  config: ProxyConfig
): Effect.Effect<OpsProxy, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const level = LogLevel.fromLiteral((process.env.TEST_LOG_LEVEL ?? "Warning") as LogLevel.Literal)
    const context = yield* Layer.build(proxyApplication(config)).pipe(Logger.withMinimumLogLevel(level))
    return {
      proxy: Context.get(context, Proxy),
      bus: Context.get(context, Bus),
      config,
      base: `http://${config.httpHost}:${config.httpPort}`
    }
  })

export interface HttpAnswer {
  readonly status: number
  readonly contentType: string
  readonly body: string
}

export const httpGet = (url: string): Effect.Effect<HttpAnswer> =>
  Effect.promise(async () => {
    const response = await fetch(url)
    const contentType = response.headers.get("content-type") ?? ""
    return { status: response.status, contentType, body: await response.text() }
  })

/** Polls `url` until `accept` holds (or the test times out). */
export const pollUntil = (url: string, accept: (answer: HttpAnswer) => boolean, everyMs = 10) =>
  Effect.gen(function*() {
    while (true) {
      const answer = yield* httpGet(url).pipe(
        Effect.catchAllDefect(() => Effect.succeed({ status: 0, contentType: "", body: "" }))
      )
      if (accept(answer)) return answer
      yield* Effect.sleep(everyMs)
    }
  })

// ---------------------------------------------------------------------------------------------
// Prometheus text format

export interface PromSample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface PromFamily {
  readonly name: string
  readonly type: string
  readonly help: string
  readonly samples: Array<PromSample>
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/

const parseLabels = (text: string, line: string): Record<string, string> => {
  const labels: Record<string, string> = {}
  let rest = text
  while (rest.length > 0) {
    const match = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\["\\n])*)"(,|$)/.exec(rest)
    if (match === null) throw new Error(`bad labels in: ${line}`)
    if (match[1]! in labels) throw new Error(`duplicate label ${match[1]} in: ${line}`)
    labels[match[1]!] = match[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c))
    rest = rest.slice(match[0].length)
  }
  return labels
}

const parseValue = (text: string, line: string): number => {
  if (text === "+Inf") return Infinity
  if (text === "-Inf") return -Infinity
  if (text === "NaN") return NaN
  const value = Number(text)
  if (text === "" || Number.isNaN(value)) throw new Error(`bad value in: ${line}`)
  return value
}

/** The family a sample belongs to: itself, a histogram's `_bucket`/`_sum`/`_count`, a summary's `_sum`/`_count`. */
const familyOf = (families: Map<string, PromFamily>, name: string): PromFamily | undefined => {
  const own = families.get(name)
  if (own !== undefined) return own
  const suffix = /_(bucket|sum|count)$/.exec(name)?.[1]
  const family = suffix === undefined ? undefined : families.get(name.slice(0, -suffix.length - 1))
  if (family?.type === "histogram") return family
  return family?.type === "summary" && suffix !== "bucket" ? family : undefined
}

/** Parses and checks an exposition; throws on anything a Prometheus server would reject or misread. */
export const parsePrometheus = (text: string): Map<string, PromFamily> => {
  if (!text.endsWith("\n")) throw new Error("the exposition must end with a newline")
  const families = new Map<string, PromFamily>()
  const helps = new Map<string, string>()
  const seen = new Set<string>()
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("# HELP ")) {
      const [, name, help = ""] = /^# HELP (\S+) ?(.*)$/.exec(line) ?? []
      if (name === undefined || !metricName.test(name)) throw new Error(`bad HELP: ${line}`)
      helps.set(name, help)
      continue
    }
    if (line.startsWith("# TYPE ")) {
      const [, name, type] = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line) ?? []
      if (name === undefined || type === undefined || !metricName.test(name)) throw new Error(`bad TYPE: ${line}`)
      if (families.has(name)) throw new Error(`TYPE given twice for ${name}`)
      families.set(name, { name, type, help: helps.get(name) ?? "", samples: [] })
      continue
    }
    if (line.startsWith("#")) continue
    const match = sampleLine.exec(line)
    if (match === null) throw new Error(`bad sample line: ${JSON.stringify(line)}`)
    const name = match[1]!
    const labels = parseLabels(match[2] ?? "", line)
    const family = familyOf(families, name)
    if (family === undefined) throw new Error(`sample before its TYPE: ${line}`)
    const key = name + JSON.stringify(Object.entries(labels).sort())
    if (seen.has(key)) throw new Error(`duplicate sample: ${line}`)
    seen.add(key)
    family.samples.push({ name, labels, value: parseValue(match[3]!, line) })
  }
  for (const family of families.values()) {
    if (family.help === "") throw new Error(`no HELP for ${family.name}`)
    if (family.type === "counter" && !family.name.endsWith("_total")) throw new Error(`counter ${family.name}`)
    if (family.type === "histogram") checkHistogram(family)
    if (family.type === "summary") checkSummary(family)
  }
  return families
}

const checkHistogram = (family: PromFamily) => {
  const buckets = family.samples.filter((s) => s.name === `${family.name}_bucket`)
  const count = family.samples.find((s) => s.name === `${family.name}_count`)
  const sum = family.samples.find((s) => s.name === `${family.name}_sum`)
  if (count === undefined || sum === undefined || buckets.length === 0) throw new Error(`${family.name}: incomplete`)
  let previousBound = -Infinity
  let previousCount = 0
  for (const bucket of buckets) {
    const bound = parseValue(bucket.labels.le ?? "", `${family.name} le`)
    if (bound <= previousBound || bucket.value < previousCount) {
      throw new Error(`${family.name}: buckets not cumulative`)
    }
    previousBound = bound
    previousCount = bucket.value
  }
  if (previousBound !== Infinity || previousCount !== count.value) throw new Error(`${family.name}: +Inf != _count`)
}

const checkSummary = (family: PromFamily) => {
  const names = new Set(family.samples.map((s) => s.name))
  if (!names.has(`${family.name}_sum`) || !names.has(`${family.name}_count`)) {
    throw new Error(`${family.name}: incomplete`)
  }
  for (const sample of family.samples.filter((s) => s.name === family.name)) {
    const quantile = Number(sample.labels.quantile)
    if (!(quantile >= 0 && quantile <= 1)) throw new Error(`${family.name}: bad quantile ${sample.labels.quantile}`)
  }
}

/** The value of one sample (0 when absent: a labelled counter appears at its first increment). */
export const valueOf = (
  families: Map<string, PromFamily>,
  name: string,
  labels: Readonly<Record<string, string>> = {}
): number => {
  const family = familyOf(families, name)
  if (family === undefined) throw new Error(`no metric family for ${name}`)
  const sample = family.samples.find((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) &&
    Object.keys(s.labels).length === Object.keys(labels).length
  )
  return sample?.value ?? 0
}
