// Rewrites the settings tables of docs/configuration.md from the configuration's definition
// (src/config/settings.ts, as built into dist/ by `npm run docs:config`).
import { readFileSync, writeFileSync } from "node:fs"
import { withSettingsTables } from "../dist/config/docs.js"

const file = new URL("../docs/configuration.md", import.meta.url)
writeFileSync(file, withSettingsTables(readFileSync(file, "utf8")))
