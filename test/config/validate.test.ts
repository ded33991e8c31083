import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { loadConfigFile } from "../../src/config/index.js"
import { memoryFs } from "./helpers.js"

const base = {
  applications: ["app"],
  websocket_url: "ws://127.0.0.1:8088/ari/events",
  stasis_url: "http://127.0.0.1:8088/ari",
  message_bus: "NATS",
  bus_config: { url: "nats://127.0.0.1:4222" }
}

const run = (json: object) =>
  loadConfigFile("config.json", { env: {} }).pipe(Effect.provide(memoryFs({ "config.json": JSON.stringify(json) })))

const problems = (json: object) => Effect.map(Effect.flip(run(json)), (e) => e.problems)

describe("validation rules", () => {
  it.effect("message_bus: required, one of three, any case", () =>
    Effect.gen(function*() {
      const { message_bus: _, ...noBus } = base
      expect(yield* problems(noBus)).toEqual(["message_bus: required, one of NATS, RABBITMQ, MEMORY"])
      expect(yield* problems({ ...base, message_bus: "KAFKA" })).toEqual([
        "message_bus: must be one of NATS, RABBITMQ, MEMORY (got \"KAFKA\")"
      ])
      expect((yield* run({ ...base, message_bus: "Nats" })).config.messageBus).toBe("NATS")
    }))

  it.effect("applications: a non-empty list of distinct names without whitespace", () =>
    Effect.gen(function*() {
      const required = ["applications: required, a non-empty list of ARI application names"]
      expect(yield* problems({ ...base, applications: [] })).toEqual(required)
      expect(yield* problems({ ...base, applications: null })).toEqual(required)
      expect(yield* problems({ ...base, applications: ["ok", "", "a b", "ok"] })).toEqual([
        "applications[1]: must not be empty",
        "applications[2]: must not contain whitespace (got \"a b\")",
        "applications[3]: \"ok\" is listed twice"
      ])
    }))

  it.effect("websocket_url and stasis_url: required, with the right schemes", () =>
    Effect.gen(function*() {
      const { websocket_url: _w, stasis_url: _s, ...none } = base
      expect(yield* problems(none)).toEqual([
        "websocket_url: required, e.g. ws://127.0.0.1:8088/ari/events",
        "stasis_url: required, e.g. http://127.0.0.1:8088/ari"
      ])
      expect(yield* problems({ ...base, websocket_url: "http://x/ari/events", stasis_url: "ws://x/ari" })).toEqual([
        "websocket_url: must be a ws:// or wss:// URL (got \"http://x/ari/events\")",
        "stasis_url: must be a http:// or https:// URL (got \"ws://x/ari\")"
      ])
      expect(yield* problems({ ...base, stasis_url: "localhost:8088/ari" })).toHaveLength(1)
    }))

  it.effect("origin must be an absolute URL", () =>
    Effect.gen(function*() {
      expect(yield* problems({ ...base, origin: "foo.com" })).toEqual([
        "origin: must be an absolute URL such as http://localhost (got \"foo.com\")"
      ])
    }))

  it.effect("otel_endpoint: unset (no tracing), or an http(s) URL", () =>
    Effect.gen(function*() {
      expect((yield* run(base)).config).toMatchObject({ otelEndpoint: "", otelServiceName: "ari-proxy" })
      expect((yield* run({ ...base, otel_endpoint: "http://collector:4318" })).config.otelEndpoint)
        .toBe("http://collector:4318")
      expect(yield* problems({ ...base, otel_endpoint: "collector:4318" })).toEqual([
        "otel_endpoint: must be an http:// or https:// URL (got \"collector:4318\")"
      ])
      expect(yield* problems({ ...base, otel_endpoint: "grpc" })).toEqual([
        "otel_endpoint: must be an absolute URL such as http://localhost (got \"grpc\")"
      ])
    }))

  it.effect("bus_config.url: required for NATS and RABBITMQ, with their schemes; optional for MEMORY", () =>
    Effect.gen(function*() {
      expect(yield* problems({ ...base, bus_config: undefined })).toEqual([
        "bus_config.url: required for message_bus NATS, e.g. nats://127.0.0.1:4222 (no default is assumed)"
      ])
      expect(yield* problems({ ...base, message_bus: "RABBITMQ", bus_config: { url: "" } })).toEqual([
        "bus_config.url: required for message_bus RABBITMQ, e.g. amqp://127.0.0.1:5672/ (no default is assumed)"
      ])
      expect(yield* problems({ ...base, bus_config: { url: "amqp://h/" } })).toEqual([
        "bus_config.url: a NATS URL must start with nats:// or tls:// (got \"amqp://h/\")"
      ])
      expect(yield* problems({ ...base, message_bus: "RABBITMQ", bus_config: { url: "amqp://a/,amqp://b/" } }))
        .toEqual(["bus_config.url: RABBITMQ takes one URL (got 2: \"amqp://a/,amqp://b/\")"])
      expect(yield* problems({ ...base, bus_config: { url: "nats://u:pw@h:99999" } })).toEqual([
        "bus_config.url: not a valid URL (got \"nats://u:***@h:99999\")"
      ])
      const memory = yield* run({ ...base, message_bus: "MEMORY", bus_config: undefined })
      expect(Redacted.value(memory.config.bus.url)).toBe("")
      const list = yield* run({ ...base, bus_config: { url: "nats://a:4222, tls://b:4222" } })
      expect(Redacted.value(list.config.bus.url)).toBe("nats://a:4222, tls://b:4222")
    }))

  it.effect("numbers: whole, in range; 0 only where it means something", () =>
    Effect.gen(function*() {
      expect(yield* problems({ ...base, http_port: 70000 })).toEqual(["http_port: must be at most 65535 (got 70000)"])
      expect(yield* problems({ ...base, http_port: -1 }))
        .toEqual(["http_port: must be a whole number ≥ 0 (got \"-1\")"])
      expect(yield* problems({ ...base, command_timeout_ms: 1.5 })).toEqual([
        "command_timeout_ms: must be a whole number ≥ 1 (got \"1.5\")"
      ])
      expect(yield* problems({ ...base, command_timeout_ms: 0, rest_connections: 0 })).toEqual([
        "command_timeout_ms: must be greater than 0 (got 0)",
        "rest_connections: must be greater than 0 (got 0)"
      ])
      expect(yield* problems({ ...base, ping_interval_ms: 3_000_000_000 })).toEqual([
        "ping_interval_ms: must be at most 2147483647 (got 3000000000)"
      ])
      expect(yield* problems({ ...base, bus_config: { ...base.bus_config, prefetch: 0 } })).toEqual([
        "bus_config.prefetch: must be greater than 0 (got 0)"
      ])
      expect(yield* problems({ ...base, reconnect_min_ms: 5000, reconnect_max_ms: 1000 })).toEqual([
        "reconnect_max_ms: must be at least reconnect_min_ms (5000), got 1000"
      ])
      const zeros = yield* run({ ...base, attach_grace_ms: 0, max_held_events: 0, ended_linger_ms: "0" })
      expect([zeros.config.attachGraceMs, zeros.config.maxHeldEvents, zeros.config.endedLingerMs]).toEqual([0, 0, 0])
    }))

  it.effect("stasis_broadcast: off by default; names of the proxy's own; a filter must let CallBroadcast through", () =>
    Effect.gen(function*() {
      expect((yield* run(base)).config.stasisBroadcast).toEqual({ enabled: false, applicationName: "{app}-{server_id}" })
      const broadcast = { ...base, server_id: "ast1", stasis_broadcast: { enabled: true } }
      expect((yield* run(broadcast)).config.stasisBroadcast.enabled).toBe(true)
      const fromEnv = yield* loadConfigFile("config.json", {
        env: { ARI_PROXY_STASIS_BROADCAST_ENABLED: "true", ARI_PROXY_STASIS_BROADCAST_APPLICATION_NAME: "{app}-b" }
      }).pipe(Effect.provide(memoryFs({ "config.json": JSON.stringify(base) })))
      expect(fromEnv.config.stasisBroadcast).toEqual({ enabled: true, applicationName: "{app}-b" })
      // The application's own name: two proxies registering it would take it from each other.
      expect(yield* problems({ ...broadcast, stasis_broadcast: { enabled: true, application_name: "{app}" } }))
        .toEqual([
          "stasis_broadcast.application_name: gives app its own name: another proxy registering it would take it " +
          "over (use {server_id} or another suffix)"
        ])
      expect(yield* problems({
        ...broadcast,
        applications: ["a", "b"],
        stasis_broadcast: { enabled: true, application_name: "bc-{server_id}" }
      })).toEqual([
        "stasis_broadcast.application_name: must contain {app}: it names each of the 2 applications (got " +
        "bc-{server_id})"
      ])
      expect(yield* problems({ ...broadcast, server_id: "a,b" })).toEqual([
        "stasis_broadcast.application_name: gives \"app-a,b\" for app: an ARI application name has no commas or spaces"
      ])
      // Asterisk's event filter drops CallBroadcast frames too: the offers would never come.
      const needed = ["StasisStart", "StasisEnd", "ChannelDestroyed"]
      expect(yield* problems({ ...broadcast, ari_event_filter: { allowed: needed } })).toEqual([
        "ari_event_filter.allowed: must include CallBroadcast: the proxy needs StasisStart, StasisEnd, " +
        "ChannelDestroyed, CallBroadcast (with stasis_broadcast)"
      ])
      expect(yield* problems({ ...broadcast, ari_rest_transport: "websocket", ari_event_filter: { disallowed: ["CallBroadcast"] } }))
        .toEqual([
          "ari_event_filter.disallowed: must not include CallBroadcast: the proxy needs StasisStart, StasisEnd, " +
          "ChannelDestroyed, RESTResponse, CallBroadcast (with ari_rest_transport websocket and stasis_broadcast)"
        ])
      expect((yield* run({ ...broadcast, ari_event_filter: { allowed: [...needed, "CallBroadcast"] } })).config
        .ariEventFilter?.allowed).toEqual([...needed, "CallBroadcast"])
      // Off, nothing about broadcast is checked.
      expect((yield* run({ ...base, stasis_broadcast: { application_name: "{app}" } })).config.stasisBroadcast.enabled)
        .toBe(false)
    }))

  it.effect("outbound_websocket: off by default; on, it needs credentials and no ARI URLs, and keeps RESTResponse", () =>
    Effect.gen(function*() {
      const defaults = (yield* run(base)).config.outboundWebsocket
      expect(defaults).toMatchObject({ enabled: false, host: "127.0.0.1", port: 8090, path: "/ari/out" })
      expect(defaults.serverIds.size).toBe(0)
      const { stasis_url: _s, websocket_url: _w, ...noUrls } = base as Record<string, unknown>
      expect(yield* problems(noUrls)).toEqual([
        "websocket_url: required, e.g. ws://127.0.0.1:8088/ari/events",
        "stasis_url: required, e.g. http://127.0.0.1:8088/ari"
      ])
      const outbound = {
        ...noUrls,
        outbound_websocket: {
          enabled: true,
          port: 0,
          username: "asterisk",
          password: "s3cret",
          server_ids: ["02:fc:00:00:00:01=ast1", "02:fc:00:00:00:02=ast2"]
        }
      }
      const { config } = yield* run(outbound)
      expect(config.outboundWebsocket.enabled).toBe(true)
      expect([...config.outboundWebsocket.serverIds]).toEqual([
        ["02:fc:00:00:00:01", "ast1"],
        ["02:fc:00:00:00:02", "ast2"]
      ])
      expect(yield* problems({ ...outbound, outbound_websocket: { enabled: true, server_ids: ["ast1", "x=y", "x=z"] } }))
        .toEqual([
          "outbound_websocket.server_ids[0]: must be `<asterisk_id>=<server_id>` without whitespace (got \"ast1\")",
          "outbound_websocket.server_ids[2]: \"x\" is listed twice",
          "outbound_websocket.enabled: needs outbound_websocket.username and outbound_websocket.password " +
          "(Asterisk's Basic credentials)"
        ])
      // its commands go over Asterisk's socket, whose answers the filter would drop
      expect(yield* problems({ ...outbound, ari_event_filter: { disallowed: ["RESTResponse"] } })).toEqual([
        "ari_event_filter.disallowed: must not include RESTResponse: the proxy needs StasisStart, StasisEnd, " +
        "ChannelDestroyed, RESTResponse (with outbound_websocket.enabled, whose commands go over Asterisk's socket)"
      ])
      expect(yield* problems({ ...outbound, server_id: "ast1", stasis_broadcast: { enabled: true } })).toEqual([
        "stasis_broadcast.enabled: cannot be combined with outbound_websocket.enabled (Asterisk's " +
        "outbound_websocket names its apps in ari.conf)"
      ])
    }))

  it.effect("ari_rest_transport and ari_event_filter: a filter that drops what the proxy needs is refused", () =>
    Effect.gen(function*() {
      const websocket = { ...base, ari_rest_transport: "WebSocket" }
      const needed = ["StasisStart", "StasisEnd", "ChannelDestroyed"]
      const ok = yield* run({ ...websocket, ari_event_filter: { allowed: [...needed, "RESTResponse", "Dial"] } })
      expect(ok.config.ariRestTransport).toBe("websocket")
      expect(ok.config.ariEventFilter).toEqual({ allowed: [...needed, "RESTResponse", "Dial"], disallowed: undefined })
      expect((yield* run(base)).config).toMatchObject({ ariRestTransport: "http", ariEventFilter: undefined })
      // over websocket the answers are frames the filter drops too
      expect(yield* problems({ ...websocket, ari_event_filter: { allowed: needed } })).toEqual([
        "ari_event_filter.allowed: must include RESTResponse: the proxy needs StasisStart, StasisEnd, " +
        "ChannelDestroyed, RESTResponse (with ari_rest_transport websocket)"
      ])
      expect(yield* problems({ ...websocket, ari_event_filter: { disallowed: ["RESTResponse", "ChannelVarset"] } }))
        .toEqual([
          "ari_event_filter.disallowed: must not include RESTResponse: the proxy needs StasisStart, StasisEnd, " +
          "ChannelDestroyed, RESTResponse (with ari_rest_transport websocket)"
        ])
      expect((yield* run({ ...base, ari_event_filter: { allowed: needed } })).config.ariEventFilter?.allowed)
        .toEqual(needed)
      expect(yield* problems({ ...base, ari_event_filter: { disallowed: ["StasisEnd"], allowed: ["Dial"] } })).toEqual([
        "ari_event_filter.allowed: must include StasisStart, StasisEnd, ChannelDestroyed: the proxy needs " +
        "StasisStart, StasisEnd, ChannelDestroyed",
        "ari_event_filter.disallowed: must not include StasisEnd: the proxy needs StasisStart, StasisEnd, " +
        "ChannelDestroyed"
      ])
      // Asterisk would store a misspelt type unchecked, and then block every event
      expect(yield* problems({ ...base, ari_event_filter: { disallowed: ["ChannelDtmf", "Dial", "Dial"] } })).toEqual([
        "ari_event_filter.disallowed[0]: \"ChannelDtmf\" is not one of the ARI event types",
        "ari_event_filter.disallowed[2]: \"Dial\" is listed twice"
      ])
      expect(yield* problems({ ...base, ari_rest_transport: "grpc" })).toEqual([
        "ari_rest_transport: must be one of http, websocket (got \"grpc\")"
      ])
      const fromEnv = yield* loadConfigFile("config.json", {
        env: { ARI_PROXY_ARI_EVENT_FILTER_DISALLOWED: "ChannelVarset, ChannelDtmfReceived" }
      }).pipe(Effect.provide(memoryFs({ "config.json": JSON.stringify(base) })))
      expect(fromEnv.config.ariEventFilter?.disallowed).toEqual(["ChannelVarset", "ChannelDtmfReceived"])
    }))

  it.effect("log_level, log_format and booleans", () =>
    Effect.gen(function*() {
      expect(yield* problems({ ...base, log_level: "trace", log_format: "xml", subscribe_all: "maybe" })).toEqual([
        "log_level: must be one of debug, info, warning, error (got \"trace\")",
        "log_format: must be one of json, pretty, auto (got \"xml\")",
        "subscribe_all: must be true or false (got \"maybe\")"
      ])
      const ok = yield* run({ ...base, log_level: "Debug", log_format: "JSON", subscribe_all: "yes" })
      expect([ok.config.logLevel, ok.config.logFormat, ok.config.subscribeAll]).toEqual(["debug", "json", true])
    }))

  it.effect("queue and subject_prefix have no whitespace; tls cert and key go together", () =>
    Effect.gen(function*() {
      const bus = { ...base.bus_config, queue: "a b", subject_prefix: "p ", tls: { cert: "/c.pem" } }
      expect(yield* problems({ ...base, bus_config: bus })).toEqual([
        "bus_config.queue: must not contain whitespace (got \"a b\")",
        "bus_config.subject_prefix: must not contain whitespace (got \"p \")",
        "bus_config.tls: cert and key must be given together"
      ])
    }))

  it.effect("NATS JetStream: a prefix a stream can capture, a valid stream name, a duplicate window within the age", () =>
    Effect.gen(function*() {
      const jetstream = (more: object, bus: object = {}) =>
        ({ ...base, bus_config: { ...base.bus_config, ...bus, jetstream: { enabled: true, ...more } } })
      const rule = "with JetStream it must be whole subject tokens ending in \".\" (e.g. \"ari.\"), so that the stream " +
        "captures every topic as \"<prefix>>\" (NATS wildcards match whole tokens only)"
      expect(yield* problems(jetstream({}))).toEqual([`bus_config.subject_prefix: ${rule}; it is empty`])
      expect(yield* problems(jetstream({}, { subject_prefix: "ari_" }))).toEqual([
        `bus_config.subject_prefix: ${rule}; got "ari_"`
      ])
      expect(yield* problems(jetstream({}, { subject_prefix: "a..b." }))).toEqual([
        `bus_config.subject_prefix: ${rule}, without wildcards or empty tokens; got "a..b."`
      ])
      expect(yield* problems(jetstream({ stream: "a.b", max_age_ms: 1000, duplicate_window_ms: 2000 }, {
        subject_prefix: "ari."
      }))).toEqual([
        "bus_config.jetstream.stream: must be letters, digits, \"-\" or \"_\" (got \"a.b\")",
        "bus_config.jetstream.duplicate_window_ms: must be at most bus_config.jetstream.max_age_ms (1000), got 2000"
      ])
      expect(yield* problems({ ...jetstream({}, { subject_prefix: "ari." }), message_bus: "RABBITMQ",
        bus_config: { url: "amqp://127.0.0.1:5672/", subject_prefix: "ari.", jetstream: { enabled: true } } })).toEqual([
        "bus_config.jetstream.enabled: JetStream is an option of NATS (message_bus is RABBITMQ)"
      ])
      const { config } = yield* run(jetstream({ max_bytes: 8_589_934_592, ack_window: "64" }, {
        subject_prefix: "pbx.eu.",
        publish_buffer_bytes: 1024
      }))
      expect(config.bus.publishBufferBytes).toBe(1024)
      expect(config.bus.jetstream).toEqual({
        enabled: true,
        stream: "ARI_PROXY",
        maxAgeMs: 86_400_000,
        maxBytes: 8_589_934_592,
        duplicateWindowMs: 120_000,
        ackWindow: 64,
        ackWindowBytes: 16 * 1024 * 1024,
        ackTimeoutMs: 5000
      })
      // Off (the default), nothing about it is required.
      expect((yield* run(base)).config.bus.jetstream.enabled).toBe(false)
    }))

  it.effect("bus credentials are kept redacted", () =>
    Effect.gen(function*() {
      const bus = { ...base.bus_config, user: "u", password: "p", token: "t", nkey_seed: "SU", creds_file: "/n.creds" }
      const { config } = yield* run({ ...base, bus_config: bus })
      expect(config.bus.user).toBe("u")
      expect(Redacted.isRedacted(config.bus.password)).toBe(true)
      expect([config.bus.password, config.bus.token, config.bus.nkeySeed].map((r) => r && Redacted.value(r)))
        .toEqual(["p", "t", "SU"])
      expect(config.bus.credsFile).toBe("/n.creds")
    }))

  it.effect("every problem is reported in one message, in the order of the docs' tables", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(run({ message_bus: "KAFKA", http_port: "abc", websocket_url: "ws://x/e" }))
      expect(error.message).toBe([
        "Invalid configuration (config.json):",
        "  - applications: required, a non-empty list of ARI application names",
        "  - message_bus: must be one of NATS, RABBITMQ, MEMORY (got \"KAFKA\")",
        "  - http_port: must be a whole number ≥ 0 (got \"abc\")",
        // required unless Asterisk dials the proxy: a rule across keys, after the table's own problems
        "  - stasis_url: required, e.g. http://127.0.0.1:8088/ari"
      ].join("\n"))
    }))
})
