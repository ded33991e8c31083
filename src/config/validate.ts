/**
 * Raw values (strings, as every ConfigProvider delivers them) → a validated ProxyConfig, or the
 * list of every problem found, by walking the definition (settings.ts). Pure, so each rule is
 * tested without a provider.
 */
import { Either, Redacted } from "effect"
import type { ConfigInput, ProxyConfig } from "./ProxyConfig.js"
import type { Fields, Group, RawValue } from "./setting.js"
import { settings } from "./settings.js"

/** Values by dotted key (`bus_config.url`); absent keys are unset. */
export type RawValues = ReadonlyMap<string, RawValue>

export interface Problem {
  readonly path: ReadonlyArray<string>
  readonly message: string
}

const join = (prefix: string, key: string): string => prefix === "" ? key : `${prefix}.${key}`

// "" means unset everywhere: Go's zero value, and what `FOO=` in an env file gives.
const unsetIfBlank = (raw: RawValue | undefined): RawValue | undefined =>
  typeof raw === "string" && raw.trim() === "" ? undefined : raw

/** Problems are listed in the definition's order; a group's own rules after its settings. */
const decodeGroup = (
  group: Group<Fields, unknown>,
  prefix: string,
  raw: RawValues,
  problems: Array<Problem>
): unknown => {
  const values: Record<string, unknown> = {}
  for (const [name, item] of Object.entries(group.fields)) {
    const key = join(prefix, item.key)
    values[name] = item._tag === "Group" ?
      decodeGroup(item, key, raw, problems) :
      item.decode(unsetIfBlank(raw.get(key)), (message, suffix = "") => {
        problems.push({ path: (key + suffix).split("."), message })
      })
  }
  group.check(values, (message, key) => {
    const at = key === undefined ? prefix : join(prefix, key)
    problems.push({ path: at.split("."), message })
  })
  return group.complete(values)
}

export const validate = (raw: RawValues): Either.Either<ProxyConfig, Array<Problem>> => {
  const problems: Array<Problem> = []
  const config = decodeGroup(settings, "", raw, problems) as ProxyConfig
  return problems.length > 0 ? Either.left(problems) : Either.right(config)
}

const ignore = () => {}

const fillGroup = (group: Group<Fields, unknown>, input: Readonly<Record<string, unknown>>): unknown => {
  const values: Record<string, unknown> = {}
  for (const [name, item] of Object.entries(group.fields)) {
    const given = input[name]
    if (item._tag === "Group") {
      values[name] = fillGroup(item, (given ?? {}) as Record<string, unknown>)
    } else if (given === undefined) {
      values[name] = item.decode(undefined, ignore)
    } else {
      values[name] = item.secret && typeof given === "string" ? Redacted.make(given) : given
    }
  }
  return group.complete(values)
}

/**
 * The given values with every other setting at its default (a required one at its placeholder:
 * "", [] or MEMORY), derived defaults filled in. No validation: for tests and embedding.
 */
export const withDefaults = (input: ConfigInput<ProxyConfig>): ProxyConfig =>
  fillGroup(settings, input as Record<string, unknown>) as ProxyConfig
