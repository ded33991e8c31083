/**
 * The building blocks of the configuration's definition (settings.ts). A setting knows its key, how
 * its raw text becomes a value (and what is wrong with it), how the startup log line shows it, and
 * what the docs table says about it; a group nests settings under a key, as `bus_config` does.
 */
import { Redacted } from "effect"
import { redactUrl } from "./redact.js"

/** What a ConfigProvider delivers for a key: text, or a list for a list setting. */
export type RawValue = string | ReadonlyArray<string>

/** Reports a problem with the setting being read; `suffix` narrows it to a list item (`[2]`). */
export type Report = (message: string, suffix?: string) => void

/** Reports a problem found by a group's own rule; `key` is relative to the group, absent for the group itself. */
export type GroupReport = (message: string, key?: string) => void

/** The docs table's columns for one key (docs/configuration.md is generated from them). */
export interface SettingDoc {
  readonly type: string
  readonly default: string
  readonly meaning: string
}

/** What is known about a setting whatever its value type. */
export interface SettingInfo {
  /** The key inside its group, as config.json spells it (`url` inside `bus_config`). */
  readonly key: string
  /** A JSON array in the file, comma-separated in the environment. */
  readonly list: boolean
  /** One of go-ari-proxy's own keys; the docs list those apart. */
  readonly seed: boolean
  /** Held as `Redacted`; makeProxyConfig wraps a plain string given for it. */
  readonly secret: boolean
  readonly doc: SettingDoc
}

export interface Setting<A> extends SettingInfo {
  readonly _tag: "Setting"
  /**
   * The value of the raw text (`undefined`: unset; the reader makes an empty or blank text unset).
   * A bad value is reported and replaced by the default, so that the rules after it still run.
   */
  readonly decode: (raw: RawValue | undefined, report: Report) => A
  /** The value as the startup log line shows it: never a secret. */
  readonly describe: (value: A) => unknown
}

export interface Fields {
  readonly [name: string]: Setting<any> | Group<any, any>
}

export interface Group<F extends Fields, V> {
  readonly _tag: "Group"
  /** The key of the nested object in config.json (`bus_config`); "" for the top level. */
  readonly key: string
  readonly fields: F
  // Methods rather than function properties, so that any group passes where `Group<Fields, unknown>` is expected.
  /** Rules that involve several of the group's settings; bad values arrive replaced by their defaults. */
  check(values: Values<F>, report: GroupReport): void
  /** Derived defaults, and the shape the group takes in the ProxyConfig. */
  complete(values: Values<F>): V
}

type ValueOf<S> = S extends Setting<infer A> ? A : S extends Group<any, infer V> ? V : never

type OptionalNames<F> = { [K in keyof F]: undefined extends ValueOf<F[K]> ? K : never }[keyof F]

/** The typed values of a group's fields; a setting that may be unset is an optional property. */
export type Values<F> =
  & { readonly [K in Exclude<keyof F, OptionalNames<F>>]: ValueOf<F[K]> }
  & { readonly [K in OptionalNames<F>]?: ValueOf<F[K]> }

const makeGroup = <F extends Fields, V>(
  key: string,
  fields: F,
  check: ((values: Values<F>, report: GroupReport) => void) | undefined,
  complete: (values: Values<F>) => V
): Group<F, V> => ({ _tag: "Group", key, fields, check: check ?? (() => {}), complete })

export const group = <F extends Fields>(
  key: string,
  fields: F,
  rules: {
    readonly check?: (values: Values<F>, report: GroupReport) => void
    readonly complete?: (values: Values<F>) => Values<F>
  } = {}
): Group<F, Values<F>> => makeGroup(key, fields, rules.check, rules.complete ?? ((values) => values))

/** A group that is absent (`undefined`) when none of its settings is set, as `bus_config.tls`. */
export const optionalGroup = <F extends Fields>(
  key: string,
  fields: F,
  check?: (values: Values<F>, report: GroupReport) => void
): Group<F, Values<F> | undefined> =>
  makeGroup(key, fields, check, (values) => Object.values(values).every((v) => v === undefined) ? undefined : values)

// ---------------------------------------------------------------------------------------------
// Kinds of setting

/** Options every kind takes. */
interface Common {
  readonly key: string
  readonly meaning: string
  readonly seed?: boolean
  /** The docs' Type column, when the kind's own wording is not precise enough. */
  readonly type?: string
  /** The docs' Default column, for a default that is derived rather than a constant. */
  readonly defaultDoc?: string
}

const MAX_ECHO = 80

/** Quotes a (non-secret) value for an error message, shortened so a pasted blob stays readable. */
export const show = (value: string): string =>
  JSON.stringify(value.length > MAX_ECHO ? value.slice(0, MAX_ECHO) + "…" : value)

export const parseUrl = (value: string): URL | undefined => {
  try {
    return new URL(value)
  } catch {
    return undefined
  }
}

const REQUIRED = "**required**"

/** The docs' rendering of a default value. */
const docDefault = (value: unknown): string => {
  if (value === undefined) return "unset"
  const plain = Redacted.isRedacted(value) ? Redacted.value(value) : value
  return plain === "" ? "`\"\"`" : `\`${String(plain)}\``
}

const asText = (raw: RawValue | undefined): string | undefined =>
  raw === undefined ? undefined : typeof raw === "string" ? raw : raw.join(",")

const identity = <A>(value: A): A => value

const make = <A>(
  common: Common,
  kind: { readonly type: string; readonly default: string; readonly list?: boolean; readonly secret?: boolean },
  decode: (raw: RawValue | undefined, report: Report) => A,
  describe: (value: A) => unknown = identity
): Setting<A> => ({
  _tag: "Setting",
  key: common.key,
  list: kind.list ?? false,
  seed: common.seed ?? false,
  secret: kind.secret ?? false,
  doc: { type: common.type ?? kind.type, default: common.defaultDoc ?? kind.default, meaning: common.meaning },
  decode,
  describe
})

/**
 * Free text. Trimmed, unless `verbatim`: credentials and paths are taken as written, and a name
 * that must not contain whitespace is rejected rather than quietly trimmed.
 */
export const text = <D extends string | undefined>(
  options: Common & {
    readonly default: D
    readonly verbatim?: boolean
    readonly noWhitespace?: boolean
  }
): Setting<string | D> =>
  make(options, { type: "string", default: docDefault(options.default) }, (raw, report) => {
    const value = options.verbatim === true ? asText(raw) : asText(raw)?.trim()
    if (value === undefined) return options.default
    if (options.noWhitespace === true && /\s/.test(value)) report(`must not contain whitespace (got ${show(value)})`)
    return value
  })

/** Held as `Redacted`, taken as written, never echoed; the log line says only whether it is set. */
export const secret = <D extends Redacted.Redacted<string> | undefined>(
  options: Common & { readonly default: D }
): Setting<Redacted.Redacted<string> | D> =>
  make(
    options,
    { type: "secret", default: docDefault(options.default), secret: true },
    (raw) => {
      const value = asText(raw)
      return value === undefined ? options.default : Redacted.make(value)
    },
    (value) => value !== undefined && Redacted.value(value) !== "" ? "<set>" : "<unset>"
  )

/** A secret URL (it may carry credentials): the log line shows it with them masked. */
export const secretUrl = (options: Common): Setting<Redacted.Redacted<string>> =>
  make(
    options,
    { type: "URL (secret)", default: docDefault(""), secret: true },
    (raw) => Redacted.make(asText(raw)?.trim() ?? ""),
    (value) => redactUrl(Redacted.value(value))
  )

/**
 * A URL with one of `schemes` (`"ws:"`); `example` goes into the message when it is missing. Unless
 * `requiredByGroup`, its absence is reported here; otherwise unset is "" and the group's rule decides.
 */
export const url = (
  options: Common & {
    readonly schemes: ReadonlyArray<string>
    readonly example: string
    readonly requiredByGroup?: boolean
  }
): Setting<string> => {
  const names = options.schemes.map((s) => s + "//")
  return make(
    options,
    { type: `${names.map((n) => `\`${n}\``).join(" / ")} URL`, default: REQUIRED },
    (raw, report) => {
      const value = asText(raw)?.trim()
      if (value === undefined) {
        if (options.requiredByGroup !== true) report(`required, e.g. ${options.example}`)
        return ""
      }
      const parsed = parseUrl(value)
      if (parsed === undefined || !options.schemes.includes(parsed.protocol) || parsed.hostname === "") {
        report(`must be a ${names.join(" or ")} URL (got ${show(redactUrl(value))})`)
      }
      return value
    },
    redactUrl
  )
}

/** An optional absolute URL; unset is "" (the group derives the real default). */
export const absoluteUrl = (options: Common): Setting<string> =>
  make(options, { type: "absolute URL", default: docDefault("") }, (raw, report) => {
    const value = asText(raw)?.trim()
    if (value === undefined) return ""
    if (parseUrl(value) === undefined) {
      report(`must be an absolute URL such as http://localhost (got ${show(redactUrl(value))})`)
    }
    return value
  }, redactUrl)

/** One of `options`, matched after `normalise` (e.g. any case); `required` ones report their absence. */
export const oneOf = <const A extends string>(
  options: Common & {
    readonly options: ReadonlyArray<A>
    /** The value when unset; for a required setting, the value assumed while the other rules run. */
    readonly default: A
    readonly required?: boolean
    readonly normalise: (text: string) => string
  }
): Setting<A> =>
  make(
    options,
    {
      type: options.options.map((o) => `\`${o}\``).join(" | "),
      default: options.required === true ? REQUIRED : docDefault(options.default)
    },
    (raw, report) => {
      const value = asText(raw)?.trim()
      if (value === undefined) {
        if (options.required === true) report(`required, one of ${options.options.join(", ")}`)
        return options.default
      }
      const found = options.options.find((o) => o === options.normalise(value))
      if (found !== undefined) return found
      report(`must be one of ${options.options.join(", ")} (got ${show(value)})`)
      return options.default
    }
  )

/** Timers beyond this overflow Node's setTimeout. */
const MAX_INT = 2_147_483_647

/** A whole number in `min`..`max` (`max` defaults to MAX_INT); 0 is allowed only where it means something. */
export const integer = (
  options: Common & { readonly default: number; readonly min: 0 | 1; readonly max?: number }
): Setting<number> => {
  const max = options.max ?? MAX_INT
  const type = options.max === undefined ? `integer ≥ ${options.min}` : `integer ${options.min}..${options.max}`
  return make(options, { type, default: docDefault(options.default) }, (raw, report) => {
    const value = asText(raw)?.trim()
    if (value === undefined) return options.default
    if (!/^\d+$/.test(value)) {
      report(`must be a whole number ≥ ${options.min} (got ${show(value)})`)
      return options.default
    }
    const n = Number(value)
    if (n < options.min) report(`must be greater than 0 (got ${value})`)
    else if (n > max) report(`must be at most ${max} (got ${value})`)
    return n
  })
}

const TRUE = new Set(["true", "yes", "on", "1"])
const FALSE = new Set(["false", "no", "off", "0"])

export const boolean = (options: Common & { readonly default: boolean }): Setting<boolean> =>
  make(options, { type: "boolean", default: docDefault(options.default) }, (raw, report) => {
    const value = asText(raw)?.trim().toLowerCase()
    if (value === undefined) return options.default
    if (TRUE.has(value)) return true
    if (FALSE.has(value)) return false
    report(`must be true or false (got ${show(value)})`)
    return options.default
  })

/** A required, non-empty list of distinct names without whitespace (they become topic names). */
export const names = (options: Common & { readonly of: string }): Setting<ReadonlyArray<string>> =>
  make<ReadonlyArray<string>>(options, { type: "list of names", default: REQUIRED, list: true }, (raw, report) => {
    const list = raw === undefined ? [] : typeof raw === "string" ? raw.split(",") : [...raw]
    if (list.length === 0 || (list.length === 1 && list[0]!.trim() === "")) {
      report(`required, a non-empty list of ${options.of}`)
      return list
    }
    const seen = new Set<string>()
    list.forEach((name, i) => {
      if (name === "") report("must not be empty", `[${i}]`)
      else if (/\s/.test(name)) report(`must not contain whitespace (got ${show(name)})`, `[${i}]`)
      else if (seen.has(name)) report(`${show(name)} is listed twice`, `[${i}]`)
      seen.add(name)
    })
    return list
  }, (list) => [...list])

/**
 * An optional list of names from `known` (ARI event types), none twice; unset or empty is `undefined`.
 * Unknown names are refused: Asterisk stores them unchecked, and a misspelt allowed type blocks every event.
 */
export const namesFrom = (
  options: Common & { readonly known: ReadonlyArray<string>; readonly of: string }
): Setting<ReadonlyArray<string> | undefined> =>
  make<ReadonlyArray<string> | undefined>(
    options,
    { type: options.type ?? "list of names", default: "unset", list: true },
    (raw, report) => {
      const list = (raw === undefined ? [] : typeof raw === "string" ? raw.split(",") : [...raw]).map((n) => n.trim())
      if (list.length === 0 || (list.length === 1 && list[0] === "")) return undefined
      const seen = new Set<string>()
      list.forEach((name, i) => {
        if (!options.known.includes(name)) report(`${show(name)} is not one of the ${options.of}`, `[${i}]`)
        else if (seen.has(name)) report(`${show(name)} is listed twice`, `[${i}]`)
        seen.add(name)
      })
      return list
    },
    (list) => list === undefined ? undefined : [...list]
  )

/**
 * An optional list of `name=value` pairs (`02:fc:00:00:00:01=ast1`), names distinct; unset or empty is
 * an empty map. Neither side may be empty or contain whitespace; the value may not contain `=`.
 */
export const pairs = (
  options: Common & { readonly of: string }
): Setting<ReadonlyMap<string, string>> =>
  make<ReadonlyMap<string, string>>(
    options,
    { type: options.type ?? "list of `name=value`", default: "empty", list: true },
    (raw, report) => {
      const list = (raw === undefined ? [] : typeof raw === "string" ? raw.split(",") : [...raw]).map((n) => n.trim())
      const map = new Map<string, string>()
      list.forEach((item, i) => {
        if (item === "" && list.length === 1) return
        const at = item.lastIndexOf("=")
        const name = item.slice(0, at)
        const value = item.slice(at + 1)
        if (at <= 0 || value === "" || /\s/.test(item)) {
          report(`must be ${options.of} without whitespace (got ${show(item)})`, `[${i}]`)
        } else if (map.has(name)) report(`${show(name)} is listed twice`, `[${i}]`)
        else map.set(name, value)
      })
      return map
    },
    (map) => Object.fromEntries(map)
  )
