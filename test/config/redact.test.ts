import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck, Redacted } from "effect"
import { describeConfig, loadConfigFile, makeProxyConfig, redactUrl } from "../../src/config/index.js"
import { memoryFs } from "./helpers.js"

describe("redactUrl", () => {
  it("masks the userinfo password, keeps user, host and path", () => {
    expect(redactUrl("nats://user:pass@host:4222")).toBe("nats://user:***@host:4222")
    expect(redactUrl("amqp://guest:guest@rabbit:5672/vh")).toBe("amqp://guest:***@rabbit:5672/vh")
    expect(redactUrl("nats://a:4222")).toBe("nats://a:4222")
    expect(redactUrl("")).toBe("")
  })

  it("works on comma-separated NATS lists", () => {
    expect(redactUrl("nats://u:p1@a:4222,nats://b:4222,nats://v:p2@c:4222"))
      .toBe("nats://u:***@a:4222,nats://b:4222,nats://v:***@c:4222")
  })

  it("masks a user-only userinfo (a NATS token) and unencoded @ in passwords", () => {
    expect(redactUrl("nats://s3cr3tToken@host:4222")).toBe("nats://***@host:4222")
    expect(redactUrl("amqp://u:p@ss@host/")).toBe("amqp://u:***@host/")
  })

  it("masks a percent-encoded password and keeps an encoded vhost (the bus drivers log such URLs)", () => {
    expect(redactUrl("amqps://u:p%40ss@host/%2F")).toBe("amqps://u:***@host/%2F")
    expect(redactUrl("amqp://127.0.0.1:5672/%2F")).toBe("amqp://127.0.0.1:5672/%2F")
  })

  it("masks secret query parameters such as ARI's api_key", () => {
    expect(redactUrl("ws://h/ari/events?app=a&api_key=asterisk:pw"))
      .toBe("ws://h/ari/events?app=a&api_key=asterisk:***")
    expect(redactUrl("http://h/?token=abc")).toBe("http://h/?token=***")
  })
})

describe("describeConfig", () => {
  it("summarises every setting but no secret", () => {
    const config = makeProxyConfig({
      wsUser: "ari",
      wsPassword: "wspw",
      messageBus: "NATS",
      bus: { url: "nats://u:buspw@n:4222", user: "u", password: "bpw", token: "tok" }
    })
    const summary = describeConfig(config)
    expect(summary).toMatchObject({
      wsUser: "ari",
      wsPassword: "<set>",
      messageBus: "NATS",
      bus: { url: "nats://u:***@n:4222", password: "<set>", token: "<set>", nkeySeed: "<unset>" }
    })
    const text = JSON.stringify(summary)
    for (const secret of ["wspw", "buspw", "bpw", "tok\""]) expect(text).not.toContain(secret)
  })
})

// Characters that need percent-encoding in a URL are included on purpose.
const passwordArb = FastCheck.string({
  unit: FastCheck.constantFrom(..."abcXYZ0189_-.~!$&'()*+,;=:@/?#[]% \"\\é"),
  minLength: 6,
  maxLength: 24
})

/** Everything that may reach a log line or the terminal for a config holding `pw` everywhere. */
const exposures = (pw: string) =>
  Effect.gen(function*() {
    const enc = encodeURIComponent(pw)
    const json = {
      applications: ["app"],
      websocket_url: "ws://127.0.0.1:8088/ari/events",
      stasis_url: "http://127.0.0.1:8088/ari",
      ws_user: "ari",
      ws_password: pw,
      message_bus: "NATS",
      bus_config: { url: `nats://u:${enc}@a:4222,nats://${enc}@b:4222`, password: pw, token: pw, nkey_seed: pw }
    }
    const files = (j: object) => memoryFs({ "config.json": JSON.stringify(j) })
    const { config } = yield* loadConfigFile("config.json", { env: {} }).pipe(Effect.provide(files(json)))
    // Invalid variants: a bad bus URL carrying the password, and other bad fields around the secrets.
    const invalid = yield* Effect.flip(loadConfigFile("config.json", { env: {} }).pipe(Effect.provide(files({
      ...json,
      http_port: "x",
      bus_config: { ...json.bus_config, url: `nats://u:${enc}@:99999,amqp://u:${enc}@h/` }
    }))))
    const viaEnv = yield* Effect.flip(loadConfigFile("none.json", {
      env: { ARI_PROXY_MESSAGE_BUS: "nats", ARI_PROXY_WS_PASSWORD: pw, ARI_PROXY_BUS_CONFIG_URL: `nats://x:${enc}@` }
    }).pipe(Effect.provide(memoryFs({}))))
    return {
      enc,
      outputs: [
        JSON.stringify(describeConfig(config)),
        String(config),
        JSON.stringify(config),
        String(config.wsPassword),
        redactUrl(Redacted.value(config.bus.url)),
        invalid.message,
        JSON.stringify(invalid),
        String(invalid),
        viaEnv.message
      ]
    }
  })

const BASELINE_PW = "Zq7Zq7Zq7Zq7"
const baseline = Effect.runSync(exposures(BASELINE_PW)).outputs.join("\n")

// A password that already appears in the output for a different password is no leak (e.g. "******" in a mask).
const leakablePassword = passwordArb.filter((pw) =>
  !baseline.includes(pw) && !baseline.includes(encodeURIComponent(pw))
)

describe("secrets never leak", () => {
  it.effect.prop("describeConfig, redactUrl, String/JSON of the config, ConfigInvalid", [leakablePassword], ([pw]) =>
    Effect.gen(function*() {
      const { enc, outputs } = yield* exposures(pw)
      for (const out of outputs) {
        expect(out).not.toContain(pw)
        expect(out).not.toContain(enc)
      }
    }), { fastCheck: { numRuns: 60 } })

  it("the outputs checked do carry the secret-bearing fields, masked", () => {
    const [summary, , , , url, invalid, , , viaEnv] = Effect.runSync(exposures(BASELINE_PW)).outputs
    expect(summary).toContain("\"url\":\"nats://u:***@a:4222,nats://***@b:4222\"")
    expect(url).toBe("nats://u:***@a:4222,nats://***@b:4222")
    expect(invalid).toContain("bus_config.url: not a valid URL (got \"nats://u:***@:99999\")")
    expect(invalid).toContain("http_port: must be a whole number")
    expect(viaEnv).toContain("bus_config.url: not a valid URL (got \"nats://x:***@\")")
  })
})
