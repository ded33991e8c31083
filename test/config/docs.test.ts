import { describe, expect, it } from "@effect/vitest"
import { NodeFileSystem } from "@effect/platform-node"
import { Effect, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { withSettingsTables } from "../../src/config/docs.js"
import { KEYS, loadConfigFile, makeProxyConfig } from "../../src/config/index.js"

const root = fileURLToPath(new URL("../../", import.meta.url))

describe("docs and example", () => {
  it("docs/configuration.md's settings tables are the ones generated from the definition", () => {
    const doc = readFileSync(root + "docs/configuration.md", "utf8")
    expect(doc, "docs/configuration.md is stale: run `npm run docs:config`").toBe(withSettingsTables(doc))
  })

  it("docs/configuration.md documents every key with its environment variable", () => {
    const doc = readFileSync(root + "docs/configuration.md", "utf8")
    for (const spec of KEYS) {
      expect(doc, spec.key).toContain(`| \`${spec.key}\` | \`${spec.env}\` |`)
    }
  })

  it.effect("config.example.json loads", () =>
    Effect.gen(function*() {
      const { config, warnings } = yield* loadConfigFile(root + "config.example.json", { env: {} })
      expect(warnings).toEqual([])
      expect(config.applications).toEqual(["demo-app"])
      expect(config.messageBus).toBe("NATS")
      expect(Redacted.value(config.bus.url)).toBe("nats://127.0.0.1:4222")
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})

describe("makeProxyConfig", () => {
  it("fills every default, derives origin, accepts plain-text secrets", () => {
    const config = makeProxyConfig({
      applications: ["a"],
      stasisUrl: "http://ari.test:8088/ari",
      wsPassword: "pw",
      bus: { url: "nats://x:4222", queue: "q" }
    })
    expect(config.origin).toBe("http://ari.test:8088")
    expect(config.messageBus).toBe("MEMORY")
    expect(config.commandTimeoutMs).toBe(10_000)
    expect(config.bus.prefetch).toBe(256)
    expect(config.bus.queue).toBe("q")
    expect(Redacted.value(config.wsPassword)).toBe("pw")
    expect(Redacted.value(config.bus.url)).toBe("nats://x:4222")
    expect(JSON.stringify(config)).not.toContain("pw\"")
  })
})
