/**
 * Where raw values come from: the seed's config.json (keys matched case-insensitively, like Go's
 * decoder) with `ARI_PROXY_*` environment variables over it, as one ConfigProvider.
 */
import { ConfigProvider } from "effect"
import { KEYS, ENV_PREFIX } from "./keys.js"
import type { KeySpec } from "./keys.js"

export type Env = Readonly<Record<string, string | undefined>>

export interface ConfigSource {
  /** Serves the merged values under their snake_case keys (`bus_config.url`). */
  readonly provider: ConfigProvider.ConfigProvider
  /** Unknown keys, unknown `ARI_PROXY_*` variables: ignored, reported once. */
  readonly warnings: ReadonlyArray<string>
  /** Values of the wrong JSON type; they are dropped from the provider and reported with the rest. */
  readonly problems: ReadonlyArray<string>
}

interface Node {
  readonly leaf?: KeySpec
  readonly children: Map<string, Node>
}

// Key tree, lower-cased, to match config.json keys case-insensitively.
const TREE: Node = (() => {
  const root: Node = { children: new Map() }
  for (const spec of KEYS) {
    let node = root
    spec.path.forEach((segment, i) => {
      let next = node.children.get(segment)
      if (next === undefined) {
        next = i === spec.path.length - 1 ? { leaf: spec, children: new Map() } : { children: new Map() }
        node.children.set(segment, next)
      }
      node = next
    })
  }
  return root
})()

const typeOf = (value: unknown): string => value === null ? "null" : Array.isArray(value) ? "array" : typeof value

const scalar = (value: unknown): string | undefined =>
  typeof value === "string" ?
    value :
    typeof value === "number" || typeof value === "boolean" ?
    String(value) :
    undefined

/**
 * Flattens the parsed file into provider keys. `applications` becomes `applications[0]`, ... (the
 * provider's own list notation).
 */
const flattenJson = (json: unknown, label: string, values: Map<string, string>, warnings: Array<string>,
  problems: Array<string>): void => {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    problems.push(`${label}: must contain a JSON object (got ${typeOf(json)})`)
    return
  }
  // `shown` keeps the file's own spelling for messages about unknown keys.
  const walk = (object: object, node: Node, prefix: string, shown: string) => {
    const seen = new Map<string, string>()
    for (const [rawKey, value] of Object.entries(object)) {
      const name = shown + rawKey
      const child = node.children.get(rawKey.toLowerCase())
      if (child === undefined) {
        warnings.push(`${label}: unknown key "${name}" ignored`)
        continue
      }
      const canonical = prefix + rawKey.toLowerCase()
      const earlier = seen.get(rawKey.toLowerCase())
      if (earlier !== undefined) warnings.push(`${label}: "${name}" repeats "${earlier}"; the last one wins`)
      seen.set(rawKey.toLowerCase(), name)
      if (value === null) continue
      const leaf = child.leaf
      if (leaf === undefined) {
        if (typeof value !== "object" || Array.isArray(value)) {
          problems.push(`${canonical}: must be an object (got ${typeOf(value)})`)
        } else {
          walk(value, child, canonical + ".", name + ".")
        }
      } else if (leaf.setting.list) {
        for (const k of [...values.keys()]) if (k.startsWith(leaf.key + "[")) values.delete(k)
        const items: ReadonlyArray<unknown> = Array.isArray(value) ? value : [value]
        items.forEach((item, i) => {
          const s = scalar(item)
          if (s === undefined) problems.push(`${leaf.key}[${i}]: must be a string (got ${typeOf(item)})`)
          else values.set(`${leaf.key}[${i}]`, s)
        })
      } else {
        const s = scalar(value)
        if (s === undefined) problems.push(`${leaf.key}: must be a string, number or boolean (got ${typeOf(value)})`)
        else values.set(leaf.key, s)
      }
    }
  }
  walk(json, TREE, "", "")
}

const ENV_NAMES: ReadonlySet<string> = new Set(KEYS.map((k) => k.env))

/**
 * Builds the provider: the file's values (if any), each overridden by its environment variable.
 * An empty variable counts as unset. `ARI_PROXY_APPLICATIONS` is comma-separated.
 */
export const makeConfigSource = (options: {
  readonly json?: unknown
  /** Names the file in messages. */
  readonly label?: string
  readonly env?: Env
}): ConfigSource => {
  const values = new Map<string, string>()
  const warnings: Array<string> = []
  const problems: Array<string> = []
  if (options.json !== undefined) flattenJson(options.json, options.label ?? "config", values, warnings, problems)
  const env = options.env ?? {}
  for (const spec of KEYS) {
    const value = env[spec.env]
    if (value === undefined || value.trim() === "") continue
    if (spec.setting.list) {
      for (const k of [...values.keys()]) if (k.startsWith(spec.key + "[")) values.delete(k)
      values.set(spec.key, value.split(",").map((s) => s.trim()).join(","))
    } else {
      values.set(spec.key, value)
    }
  }
  for (const name of Object.keys(env)) {
    if (name.startsWith(ENV_PREFIX) && !ENV_NAMES.has(name)) {
      warnings.push(`environment: unknown variable ${name} ignored`)
    }
  }
  return {
    provider: ConfigProvider.fromMap(values, { pathDelim: ".", seqDelim: "," }),
    warnings,
    problems
  }
}

/** Parses JSON; on a syntax error, says where (line, column) without quoting the text around it. */
export const parseJson = (text: string): { readonly ok: true; readonly value: unknown } | {
  readonly ok: false
  readonly error: string
} => {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
  if (body.trim() === "") return { ok: false, error: "the file is empty" }
  try {
    return { ok: true, value: JSON.parse(body) }
  } catch {
    // V8's message can quote a slice of the input, a password included, so the position is found here.
    const found = locateJsonError(body)
    if (found === undefined) return { ok: false, error: "not valid JSON" }
    const before = body.slice(0, found.pos)
    const line = before.split("\n").length
    const column = found.pos - before.lastIndexOf("\n")
    const where = `line ${line}, column ${column} (offset ${found.pos})`
    return { ok: false, error: `not valid JSON at ${where}: ${found.reason}` }
  }
}

/** A small JSON scanner that stops at the first syntax error. Run only after JSON.parse has failed. */
export const locateJsonError = (text: string): { readonly pos: number; readonly reason: string } | undefined => {
  let i = 0
  class Stop {
    constructor(readonly pos: number, readonly reason: string) {}
  }
  const fail = (reason: string): never => {
    throw new Stop(i, reason)
  }
  const describe = (): string => {
    if (i >= text.length) return "unexpected end of input"
    const c = text[i]!
    return /[\x20-\x7e]/.test(c) ? `unexpected character '${c}'` : `unexpected character U+${
      c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")
    }`
  }
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++
  }
  /** After an object's member or an array's item: true past a ',', false past `close`. */
  const another = (close: "}" | "]"): boolean => {
    ws()
    if (text[i] === "," || text[i] === close) return text[i++] === ","
    return fail(`expected ',' or '${close}', ${describe()}`)
  }
  const literal = (word: string) => {
    for (const c of word) {
      if (text[i] !== c) fail(i >= text.length ? "unexpected end of input" : `invalid literal (expected ${word})`)
      i++
    }
  }
  const string = () => {
    i++ // opening quote
    for (;;) {
      if (i >= text.length) fail("unterminated string")
      const c = text.charCodeAt(i)
      if (c === 0x22) {
        i++
        return
      }
      if (c < 0x20) fail("control character in string (escape it)")
      if (c === 0x5c) {
        i++
        const e = text[i]
        if (e === "u") {
          for (let k = 1; k <= 4; k++) {
            if (!/[0-9a-fA-F]/.test(text[i + k] ?? "")) {
              i += k
              fail("invalid \\u escape")
            }
          }
          i += 5
          continue
        }
        if (e === undefined || !"\"\\/bfnrt".includes(e)) fail("invalid escape in string")
      }
      i++
    }
  }
  const digits = () => {
    if (!/[0-9]/.test(text[i] ?? "")) fail("invalid number")
    while (/[0-9]/.test(text[i] ?? "")) i++
  }
  const number = () => {
    if (text[i] === "-") i++
    if (text[i] === "0") i++
    else digits()
    if (text[i] === ".") {
      i++
      digits()
    }
    if (text[i] === "e" || text[i] === "E") {
      i++
      if (text[i] === "+" || text[i] === "-") i++
      digits()
    }
  }
  const value = (): void => {
    ws()
    const c = text[i]
    if (c === "{") {
      i++
      ws()
      if (text[i] === "}") {
        i++
        return
      }
      do {
        ws()
        if (text[i] !== "\"") fail(`expected a double-quoted property name, ${describe()}`)
        string()
        ws()
        if (text[i] !== ":") fail(`expected ':', ${describe()}`)
        i++
        value()
      } while (another("}"))
    } else if (c === "[") {
      i++
      ws()
      if (text[i] === "]") {
        i++
        return
      }
      do value()
      while (another("]"))
    } else if (c === "\"") string()
    else if (c === "t") literal("true")
    else if (c === "f") literal("false")
    else if (c === "n") literal("null")
    else if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) number()
    else fail(describe())
  }
  try {
    value()
    ws()
    if (i < text.length) fail(`unexpected content after the JSON value, ${describe()}`)
    return undefined
  } catch (e) {
    if (e instanceof Stop) return { pos: e.pos, reason: e.reason }
    throw e
  }
}
