/**
 * The startup log line's summary of the configuration: every setting, as its definition shows it
 * (secrets as `<set>`/`<unset>`, URLs with their credentials masked).
 */
import type { ProxyConfig } from "./ProxyConfig.js"
import type { Fields, Group } from "./setting.js"
import { settings } from "./settings.js"

const describeGroup = (
  group: Group<Fields, unknown>,
  values: Readonly<Record<string, unknown>>
): Record<string, unknown> =>
  Object.fromEntries(Object.entries(group.fields).map(([name, item]) => {
    const value = values[name]
    if (item._tag === "Setting") return [name, item.describe(value)]
    return [name, value === undefined ? undefined : describeGroup(item, value as Record<string, unknown>)]
  }))

export const describeConfig = (config: ProxyConfig): Record<string, unknown> =>
  describeGroup(settings, config as unknown as Record<string, unknown>)
