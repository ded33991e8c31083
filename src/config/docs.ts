/**
 * The settings tables of docs/configuration.md, generated from the definition (settings.ts) by
 * `npm run docs:config`; a test checks that the checked-in docs are what this produces.
 */
import { KEYS } from "./keys.js"
import type { KeySpec } from "./keys.js"

export const BEGIN = "<!-- The tables below are generated from src/config/settings.ts: run `npm run docs:config`. -->"
export const END = "<!-- End of the generated tables. -->"

const HEADER = ["| File key | Environment variable | Type | Default | Meaning |", "|---|---|---|---|---|"]

const cell = (text: string): string => text.replaceAll("|", "\\|")

const row = ({ env, key, setting: { doc } }: KeySpec): string =>
  `| \`${key}\` | \`${env}\` | ${cell(doc.type)} | ${cell(doc.default)} | ${cell(doc.meaning)} |`

/** The two tables: go-ari-proxy's keys, then ours. */
export const settingsTables = (): string =>
  [
    "## The seed's keys",
    "",
    ...HEADER,
    ...KEYS.filter((spec) => spec.setting.seed).map(row),
    "",
    "## Settings the seed lacked (all optional)",
    "",
    ...HEADER,
    ...KEYS.filter((spec) => !spec.setting.seed).map(row)
  ].join("\n")

/** `doc` with the text between its BEGIN and END markers replaced by the generated tables. */
export const withSettingsTables = (doc: string): string => {
  const begin = doc.indexOf(BEGIN)
  const end = doc.indexOf(END)
  if (begin < 0 || end < begin) throw new Error(`the markers of the generated tables are missing: ${BEGIN} ... ${END}`)
  return `${doc.slice(0, begin + BEGIN.length)}\n\n${settingsTables()}\n\n${doc.slice(end)}`
}
