/**
 * The files in deploy/: the alert rules pass their promtool unit tests, and every metric the
 * Grafana dashboard and the rules query is one the proxy exports.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { startSim } from "../support/harness.js"
import { httpGet, parsePrometheus, pollUntil, proxyConfigFor, startOpsProxy } from "./support.js"

const repoFile = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url))
const rulesPath = repoFile("deploy/prometheus/ari-proxy-rules.yml")
const rulesTestPath = repoFile("deploy/prometheus/ari-proxy-rules.test.yml")
const dashboardPath = repoFile("deploy/grafana/ari-proxy.json")

/** The `expr:` of each rule: one line, or a `|` / `>` block (the two forms the rules file uses). */
const ruleExpressions = (yaml: string): Array<string> => {
  const lines = yaml.split("\n")
  const expressions: Array<string> = []
  lines.forEach((line, i) => {
    const match = /^(\s*)expr:\s*(.*)$/.exec(line)
    if (match === null) return
    const [, indent, value] = match as unknown as [string, string, string]
    if (!/^[|>][-+]?$/.test(value)) {
      expressions.push(value.replace(/^'(.*)'$|^"(.*)"$/, "$1$2"))
      return
    }
    const block: Array<string> = []
    for (const next of lines.slice(i + 1)) {
      if (next.trim() !== "" && next.search(/\S/) <= indent.length) break
      block.push(next.trim())
    }
    expressions.push(block.join(" ").trim())
  })
  return expressions
}

const promqlKeywords = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan"])

/** The metric names a PromQL expression selects: identifiers that are not functions, keywords or labels. */
const metricNamesIn = (expression: string): Set<string> => {
  const bare = expression
    .replace(/"(?:[^"\\]|\\.)*"/g, "\"\"") // label values, $variables inside them included
    .replace(/\{[^}]*\}/g, " ") // label matchers
    .replace(/\[[^\]]*\]/g, " ") // ranges, $__rate_interval included
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ") // label lists
  const names = new Set<string>()
  for (const [name] of bare.matchAll(/\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()/g)) {
    if (!promqlKeywords.has(name.toLowerCase())) names.add(name)
  }
  return names
}

interface DashboardJson {
  readonly panels: ReadonlyArray<{ readonly targets?: ReadonlyArray<{ readonly expr: string }> }>
  readonly templating: { readonly list: ReadonlyArray<{ readonly definition?: string }> }
}

const dashboardExpressions = (dashboard: DashboardJson): Array<string> => [
  ...dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr)),
  // Grafana's label_values(metric, label): the metric is the first argument
  ...dashboard.templating.list.flatMap((variable) => {
    const metric = /^label_values\((\w+),/.exec(variable.definition ?? "")?.[1]
    return metric === undefined ? [] : [metric]
  })
]

/** Series Prometheus makes itself for every scrape target. */
const scrapeSeries = new Set(["up"])

describe("deploy/", () => {
  it("the alert rules pass their promtool unit tests", () => {
    const run = spawnSync("promtool", ["test", "rules", rulesTestPath], { encoding: "utf8" })
    if (run.error !== undefined) {
      throw new Error(
        `promtool could not run (${run.error.message}): install it with \`bash .ci/services.sh\` ` +
          "(it takes promtool from Debian's prometheus package)"
      )
    }
    expect(run.stdout + run.stderr).toContain("SUCCESS")
    expect(run.status, run.stdout + run.stderr).toBe(0)
  })

  it("the name extraction finds metrics and nothing else", () => {
    const expression = "histogram_quantile(0.99, sum by (job, le) " +
      "(rate(a_bucket{instance=~\"$instance\", x=\"y z\"}[$__rate_interval])))" +
      " / on (job) group_left (version) b > bool 0.5 and c offset 5m unless min_over_time(d[5m])"
    expect([...metricNamesIn(expression)].sort()).toEqual(["a_bucket", "b", "c", "d"])
    expect(ruleExpressions("      - alert: A\n        expr: x > 1\n        for: 1m\n      - alert: B\n" +
      "        expr: |\n          y\n            and z\n\n        labels:\n")).toEqual(["x > 1", "y and z"])
  })

  it.scopedLive("every metric the dashboard and the rules query is in /metrics", () =>
    Effect.gen(function*() {
      const rules = readFileSync(rulesPath, "utf8")
      const ruleExprs = ruleExpressions(rules)
      expect(ruleExprs).toHaveLength(rules.match(/^\s*- alert:/gm)?.length ?? 0)
      const dashboardExprs = dashboardExpressions(JSON.parse(readFileSync(dashboardPath, "utf8")) as DashboardJson)

      const sim = yield* startSim()
      const { base } = yield* startOpsProxy(yield* proxyConfigFor(sim))
      yield* pollUntil(`${base}/readyz`, (answer) => answer.status === 200)
      const families = parsePrometheus((yield* httpGet(`${base}/metrics`)).body)
      const exported = (name: string) =>
        families.get(name)?.type !== undefined ||
        ["histogram", "summary"].includes(families.get(name.replace(/_(sum|count)$/, ""))?.type ?? "") ||
        families.get(name.replace(/_bucket$/, ""))?.type === "histogram"

      for (const [source, expressions] of [["rules", ruleExprs], ["dashboard", dashboardExprs]] as const) {
        const names = new Set(expressions.flatMap((expression) => [...metricNamesIn(expression)]))
        expect(names.size, `${source} query metrics`).toBeGreaterThan(source === "rules" ? 8 : 20)
        const unknown = [...names].filter((name) => !exported(name) && !scrapeSeries.has(name))
        expect(unknown, `metrics the ${source} query that /metrics lacks`).toEqual([])
      }
    }))
})
