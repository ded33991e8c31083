import { describe, expect, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Layer, Redacted } from "effect"
import { FileSystem } from "@effect/platform"
import { SystemError } from "@effect/platform/Error"
import { hostname } from "node:os"
import {
  ConfigInvalid,
  configErrorProblems,
  ConfigWarnings,
  loadConfigFile,
  proxyConfig,
  ProxyConfigService
} from "../../src/config/index.js"
import { memoryFs, seedConfig, seedJson } from "./helpers.js"

const load = (files: Record<string, string>, env: Record<string, string> = {}, path = "config.json") =>
  loadConfigFile(path, { env }).pipe(Effect.provide(memoryFs(files)))

const loadError = (files: Record<string, string>, env: Record<string, string> = {}, path = "config.json") =>
  Effect.flip(load(files, env, path))

describe("loading config.json", () => {
  it.effect("the seed README's config.json loads unchanged", () =>
    Effect.gen(function*() {
      const { config, warnings } = yield* load({ "config.json": seedJson })
      expect(warnings).toEqual([])
      expect(config.origin).toBe("http://foo.com")
      expect(config.serverId).toBe("bar")
      expect(config.applications).toEqual(["foo"])
      expect(config.websocketUrl).toBe("ws://localhost:8080/ari/events")
      expect(config.stasisUrl).toBe("http://localhost:8080/ari")
      expect(config.wsUser).toBe("user")
      expect(Redacted.value(config.wsPassword)).toBe("secret")
      expect(config.messageBus).toBe("NATS")
      expect(Redacted.value(config.bus.url)).toBe("nats://localhost:4222")
      expect(config.bus.queue).toBe("")
      // defaults of the settings the seed lacked
      expect(config.logLevel).toBe("info")
      expect(config.logFormat).toBe("auto")
      expect(config.httpPort).toBe(0)
      expect(config.httpHost).toBe("127.0.0.1")
      expect(config.commandTimeoutMs).toBe(10_000)
      expect(config.restConnections).toBe(16)
      expect(config.attachGraceMs).toBe(500)
      expect(config.maxHeldEvents).toBe(1000)
      expect(config.endedLingerMs).toBe(5000)
      expect(config.dialogMailboxSize).toBe(10_000)
      expect(config.unroutedEvents).toBe(true)
      expect(config.subscribeAll).toBe(false)
      expect(config.reconnectMinMs).toBe(200)
      expect(config.reconnectMaxMs).toBe(10_000)
      expect(config.pingIntervalMs).toBe(15_000)
      expect(config.shutdownTimeoutMs).toBe(15_000)
      expect(config.bus.subjectPrefix).toBe("")
      expect(config.bus.publishBufferSize).toBe(10_000)
      expect(config.bus.prefetch).toBe(256)
      expect(config.bus.queueDeleteGraceMs).toBe(60_000)
      expect(config.bus.user).toBeUndefined()
      expect(config.bus.password).toBeUndefined()
      expect(config.bus.tls).toBeUndefined()
    }))

  it.effect("the README's literal placeholders are rejected with a clear message", () =>
    Effect.gen(function*() {
      const literal = { ...seedConfig, message_bus: "RABBITMQ|NATS", bus_config: { url: "", queue: "" } }
      const error = yield* loadError({ "config.json": JSON.stringify(literal) })
      expect(error.problems).toEqual(["message_bus: must be one of NATS, RABBITMQ, MEMORY (got \"RABBITMQ|NATS\")"])
    }))

  it.effect("keys match case-insensitively, message_bus in any case; unknown keys are warnings", () =>
    Effect.gen(function*() {
      const json = {
        Origin: "http://foo.com",
        SERVER_ID: "bar",
        Applications: ["a1", "a2"],
        WebSocket_URL: "wss://pbx.example/ari/events",
        Stasis_Url: "https://pbx.example/ari",
        Message_Bus: "rabbitmq",
        Bus_Config: { URL: "amqp://pbx.example/", Queue: "q", Extra: 1 },
        HTTP_PORT: 8080,
        Log_Level: "WARN",
        Unrouted_Events: false,
        colour: "blue"
      }
      const { config, warnings } = yield* load({ "config.json": JSON.stringify(json) })
      expect(config.origin).toBe("http://foo.com")
      expect(config.serverId).toBe("bar")
      expect(config.applications).toEqual(["a1", "a2"])
      expect(config.websocketUrl).toBe("wss://pbx.example/ari/events")
      expect(config.messageBus).toBe("RABBITMQ")
      expect(Redacted.value(config.bus.url)).toBe("amqp://pbx.example/")
      expect(config.bus.queue).toBe("q")
      expect(config.httpPort).toBe(8080)
      expect(config.logLevel).toBe("warning")
      expect(config.unroutedEvents).toBe(false)
      expect(warnings).toEqual([
        "config.json: unknown key \"Bus_Config.Extra\" ignored",
        "config.json: unknown key \"colour\" ignored"
      ])
    }))

  it.effect("defaults: server_id is the host name, origin comes from stasis_url, MEMORY needs no bus_config", () =>
    Effect.gen(function*() {
      const json = {
        applications: ["app"],
        websocket_url: "ws://10.0.0.5:8088/ari/events",
        stasis_url: "http://ari:pw@10.0.0.5:8088/ari",
        message_bus: "memory"
      }
      const { config } = yield* load({ "config.json": JSON.stringify(json) })
      expect(config.serverId).toBe(hostname())
      expect(config.origin).toBe("http://10.0.0.5:8088")
      expect(config.messageBus).toBe("MEMORY")
      expect(Redacted.value(config.bus.url)).toBe("")
    }))

  it.effect("the environment overrides the file, lists are comma-separated", () =>
    Effect.gen(function*() {
      const { config, warnings } = yield* load({ "config.json": seedJson }, {
        ARI_PROXY_WS_PASSWORD: "from-env",
        ARI_PROXY_APPLICATIONS: "app1, app2",
        ARI_PROXY_BUS_CONFIG_URL: "nats://n1:4222,nats://n2:4222",
        ARI_PROXY_BUS_CONFIG_TLS_CA: "/etc/ca.pem",
        ARI_PROXY_HTTP_PORT: "9090",
        ARI_PROXY_BUS_CONFIG_SUBJECT_PREFIX: "ari.",
        ARI_PROXY_BUS_CONFIG_JETSTREAM_ENABLED: "true",
        ARI_PROXY_BUS_CONFIG_JETSTREAM_STREAM: "CALLS",
        ARI_PROXY_SERVER_ID: "", // empty counts as unset
        ARI_PROXY_WS_PASWORD: "typo",
        HOME: "/root"
      })
      expect(Redacted.value(config.wsPassword)).toBe("from-env")
      expect(config.applications).toEqual(["app1", "app2"])
      expect(Redacted.value(config.bus.url)).toBe("nats://n1:4222,nats://n2:4222")
      expect(config.bus.tls).toEqual({ ca: "/etc/ca.pem", cert: undefined, key: undefined })
      expect(config.httpPort).toBe(9090)
      expect(config.bus.jetstream).toMatchObject({ enabled: true, stream: "CALLS" })
      expect(config.serverId).toBe("bar")
      expect(config.wsUser).toBe("user")
      expect(warnings).toEqual(["environment: unknown variable ARI_PROXY_WS_PASWORD ignored"])
    }))

  it.effect("no file but a complete environment is fine", () =>
    Effect.gen(function*() {
      const { config, warnings } = yield* load({}, {
        ARI_PROXY_APPLICATIONS: "app",
        ARI_PROXY_WEBSOCKET_URL: "ws://127.0.0.1:8088/ari/events",
        ARI_PROXY_STASIS_URL: "http://127.0.0.1:8088/ari",
        ARI_PROXY_MESSAGE_BUS: "MEMORY"
      })
      expect(config.applications).toEqual(["app"])
      expect(warnings).toEqual(["config.json not found; configured from the environment only"])
    }))

  it.effect("neither file nor environment: the error names the file", () =>
    Effect.gen(function*() {
      const error = yield* loadError({}, {}, "/etc/ari-proxy/config.json")
      expect(error).toBeInstanceOf(ConfigInvalid)
      expect(error.source).toBe("/etc/ari-proxy/config.json")
      expect(error.problems[0]).toBe(
        "/etc/ari-proxy/config.json: file not found; put the settings there or in ARI_PROXY_* environment variables"
      )
      expect(error.message).toMatch(/^Invalid configuration \(\/etc\/ari-proxy\/config\.json\):\n {2}- /)
      expect(error.problems).toContain("applications: required, a non-empty list of ARI application names")
    }))

  it.effect("a JSON syntax error gives the file name and the position, not the text", () =>
    Effect.gen(function*() {
      const text = "{\n  \"ws_password\": \"hunter2\",\n  \"applications\": [\"a\" \"b\"]\n}"
      const error = yield* loadError({ "my.json": text }, {}, "my.json")
      expect(error.problems).toEqual([
        "my.json: not valid JSON at line 3, column 24 (offset 53): expected ',' or ']', unexpected character '\"'"
      ])
      expect(error.message).not.toContain("hunter2")
    }))

  it.effect("JSON values of the wrong type are reported with the other problems", () =>
    Effect.gen(function*() {
      const json = { ...seedConfig, bus_config: "nats://x", applications: ["ok", { name: "x" }], http_port: [1] }
      const error = yield* loadError({ "config.json": JSON.stringify(json) })
      expect(error.problems).toEqual([
        "applications[1]: must be a string (got object)",
        "bus_config: must be an object (got string)",
        "http_port: must be a string, number or boolean (got array)",
        "bus_config.url: required for message_bus NATS, e.g. nats://127.0.0.1:4222 (no default is assumed)"
      ])
    }))

  it.effect("an unreadable file is reported with the reason", () =>
    Effect.gen(function*() {
      const fs = FileSystem.layerNoop({
        readFileString: (path) =>
          Effect.fail(new SystemError({
            reason: "PermissionDenied",
            module: "FileSystem",
            method: "readFileString",
            pathOrDescriptor: path
          }))
      })
      const error = yield* Effect.flip(loadConfigFile("config.json", { env: {} }).pipe(Effect.provide(fs)))
      expect(error.problems).toEqual(["config.json: cannot be read (PermissionDenied)"])
    }))

  it.effect("a file that is not an object, or empty", () =>
    Effect.gen(function*() {
      expect((yield* loadError({ "config.json": "[1]" })).problems[0]).toBe(
        "config.json: must contain a JSON object (got array)"
      )
      expect((yield* loadError({ "config.json": "  \n" })).problems).toEqual(["config.json: the file is empty"])
    }))
})

describe("ProxyConfigService", () => {
  it.effect("layerFromFile provides the config and the warnings", () =>
    Effect.gen(function*() {
      const config = yield* ProxyConfigService
      const warnings = yield* ConfigWarnings
      expect(config.serverId).toBe("bar")
      expect(Redacted.value(config.wsPassword)).toBe("env")
      expect(warnings).toEqual(["c.json: unknown key \"extra\" ignored"])
    }).pipe(Effect.provide(
      ProxyConfigService.layerFromFile("c.json", { env: { ARI_PROXY_WS_PASSWORD: "env" } }).pipe(
        Layer.provide(memoryFs({ "c.json": JSON.stringify({ ...seedConfig, extra: true }) }))
      )
    )))

  it.effect("layerFromFile fails with ConfigInvalid", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(ProxyConfigService.layerFromFile("c.json", { env: {} }).pipe(
        Layer.provide(memoryFs({ "c.json": JSON.stringify({ ...seedConfig, message_bus: "KAFKA" }) }))
      )).pipe(Effect.scoped))
      expect(error._tag).toBe("ConfigInvalid")
      expect(error.message).toBe(
        "Invalid configuration (c.json):\n  - message_bus: must be one of NATS, RABBITMQ, MEMORY (got \"KAFKA\")"
      )
    }))

  it.effect("a host application supplies the config through its own ConfigProvider, no file", () =>
    Effect.gen(function*() {
      const config = yield* ProxyConfigService
      expect(config.applications).toEqual(["h1", "h2"])
      expect(config.messageBus).toBe("NATS")
      expect(Redacted.value(config.bus.url)).toBe("nats://broker:4222")
      expect(config.httpPort).toBe(8081)
      expect(config.subscribeAll).toBe(true)
    }).pipe(Effect.provide(ProxyConfigService.layer.pipe(Layer.provide(Layer.setConfigProvider(
      ConfigProvider.fromJson({
        applications: ["h1", "h2"],
        websocket_url: "ws://ari/ari/events",
        stasis_url: "http://ari/ari",
        message_bus: "NATS",
        bus_config: { url: "nats://broker:4222" },
        http_port: 8081,
        subscribe_all: true
      })
    ))))))

  it.effect("proxyConfig is an ordinary Config: it nests under a host prefix, problems carry the path", () =>
    Effect.gen(function*() {
      const host = {
        applications: ["a"],
        websocket_url: "ws://ari/ari/events",
        stasis_url: "http://ari/ari",
        message_bus: "memory"
      }
      const nested = Config.nested(proxyConfig, "ari_proxy")
      const ok = yield* Effect.withConfigProvider(nested, ConfigProvider.fromJson({ ari_proxy: host }))
      expect(ok.messageBus).toBe("MEMORY")
      const { message_bus: _, ...withoutBus } = host
      const error = yield* Effect.flip(
        Effect.withConfigProvider(nested, ConfigProvider.fromJson({ ari_proxy: { ...withoutBus, http_port: "x" } }))
      )
      expect(configErrorProblems(error)).toEqual([
        "ari_proxy.message_bus: required, one of NATS, RABBITMQ, MEMORY",
        "ari_proxy.http_port: must be a whole number ≥ 0 (got \"x\")"
      ])
    }))

  it.effect("ProxyConfigService.layer reports the host provider's problems as ConfigInvalid", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        ProxyConfigService.layer.pipe(
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromJson({ message_bus: "nats" }))),
          Layer.build,
          Effect.scoped
        )
      )
      expect(error.source).toBe("config provider")
      expect(error.problems).toEqual([
        "applications: required, a non-empty list of ARI application names",
        "websocket_url: required, e.g. ws://127.0.0.1:8088/ari/events",
        "stasis_url: required, e.g. http://127.0.0.1:8088/ari",
        "bus_config.url: required for message_bus NATS, e.g. nats://127.0.0.1:4222 (no default is assumed)"
      ])
    }))

  it.effect("layerTest / layerFrom give a value without reading anything", () =>
    Effect.gen(function*() {
      const config = yield* ProxyConfigService
      expect(config.applications).toEqual(["x"])
    }).pipe(Effect.provide(ProxyConfigService.layerTest({ applications: ["x"] }))))
})
