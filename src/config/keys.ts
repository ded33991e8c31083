/**
 * Every configuration key with its path and environment variable, flattened from the definition
 * (settings.ts) for the readers that go key by key: the file normaliser, the environment overlay,
 * the Config reader and the docs table.
 */
import type { Fields, Group, SettingInfo } from "./setting.js"
import { settings } from "./settings.js"

export interface KeySpec {
  /** Dotted snake_case key as written in config.json, e.g. `bus_config.url`. */
  readonly key: string
  readonly path: ReadonlyArray<string>
  /** `ARI_PROXY_` + the key in upper snake case, dots become underscores. */
  readonly env: string
  readonly setting: SettingInfo
}

export const ENV_PREFIX = "ARI_PROXY_"

export const envName = (key: string): string => ENV_PREFIX + key.replaceAll(".", "_").toUpperCase()

const flatten = (group: Group<Fields, unknown>, prefix: ReadonlyArray<string>): Array<KeySpec> =>
  Object.values(group.fields).flatMap((item) => {
    const path = [...prefix, item.key]
    if (item._tag === "Group") return flatten(item, path)
    const key = path.join(".")
    return [{ key, path, env: envName(key), setting: item }]
  })

/** In the definition's order, which is the docs'. */
export const KEYS: ReadonlyArray<KeySpec> = flatten(settings, [])
