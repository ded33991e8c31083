/**
 * The configuration, defined once. Everything else derives from this table: the ProxyConfig type,
 * the keys config.json and a host's ConfigProvider are read under, the `ARI_PROXY_*` variables,
 * defaults, validation, what the startup log line shows, and the tables of docs/configuration.md
 * (`npm run docs:config`). A new setting is one entry here, in the order the docs should list it.
 */
import { Redacted } from "effect"
import { hostname } from "node:os"
import { DEFAULT_STREAM, jetStreamPrefixProblem, streamNameProblem } from "../bus/nats/stream.js"
import { broadcastNameProblems } from "../ari/broadcast.js"
import { ariEventTypes } from "../client/generated/models.js"
import { redactUrl } from "./redact.js"
import {
  absoluteUrl,
  boolean,
  group,
  integer,
  names,
  namesFrom,
  oneOf,
  optionalGroup,
  pairs,
  parseUrl,
  secret,
  secretUrl,
  show,
  text,
  url
} from "./setting.js"

/** The bus drivers (`message_bus`) and the URLs each takes (MEMORY none). */
const BUS_URLS = {
  NATS: { schemes: ["nats:", "tls:"], example: "nats://127.0.0.1:4222" },
  RABBITMQ: { schemes: ["amqp:", "amqps:"], example: "amqp://127.0.0.1:5672/" },
  MEMORY: undefined
} as const

type MessageBus = keyof typeof BUS_URLS

const BUS_KINDS = Object.keys(BUS_URLS) as ReadonlyArray<MessageBus>

/** Problems of `bus_config.url` for the chosen bus: it depends on `message_bus`, so it is a rule of the whole. */
const busUrlProblems = (kind: MessageBus, url: string): Array<string> => {
  const rule = BUS_URLS[kind]
  if (rule === undefined) return []
  if (url === "") return [`required for message_bus ${kind}, e.g. ${rule.example} (no default is assumed)`]
  const problems: Array<string> = []
  const parts = url.split(",").map((p) => p.trim())
  if (kind === "RABBITMQ" && parts.length > 1) {
    problems.push(`RABBITMQ takes one URL (got ${parts.length}: ${show(redactUrl(url))})`)
  }
  for (const part of parts) {
    const parsed = parseUrl(part)
    // Echo only the redacted form: bus URLs carry credentials.
    if (parsed === undefined || parsed.hostname === "") {
      problems.push(`not a valid URL (got ${show(redactUrl(part))})`)
    } else if (!(rule.schemes as ReadonlyArray<string>).includes(parsed.protocol)) {
      const schemes = rule.schemes.map((s) => s + "//").join(" or ")
      problems.push(`a ${kind} URL must start with ${schemes} (got ${show(redactUrl(part))})`)
    }
  }
  return problems
}

/**
 * Events the proxy cannot do without (dialogs open on StasisStart and end on StasisEnd or
 * ChannelDestroyed); with REST over the websocket, the answers; with StasisBroadcast, the offers:
 * Asterisk's event filter drops RESTResponse and CallBroadcast frames too (Asterisk 23.4.1).
 */
const eventsTheProxyNeeds = (transport: "http" | "websocket", broadcast: boolean): ReadonlyArray<string> => [
  "StasisStart",
  "StasisEnd",
  "ChannelDestroyed",
  ...(transport === "websocket" ? ["RESTResponse"] : []),
  ...(broadcast ? ["CallBroadcast"] : [])
]

const MIB = 1024 * 1024
/** Byte sizes are not timers: they may exceed the integers' default bound. */
const MAX_BYTES = Number.MAX_SAFE_INTEGER

const path = (key: string, meaning: string) => text({ key, default: undefined, verbatim: true, type: "path", meaning })

export const settings = group("", {
  // go-ari-proxy's keys (seed-protocol §1.2)
  origin: absoluteUrl({
    key: "origin",
    seed: true,
    defaultDoc: "scheme + host of `stasis_url`",
    meaning: "`Origin` header of the ARI websocket."
  }),
  serverId: text({
    key: "server_id",
    seed: true,
    default: hostname(),
    defaultDoc: "the host name",
    meaning: "Copied into every Event and AppStart (`server_id`)."
  }),
  applications: names({
    key: "applications",
    seed: true,
    of: "ARI application names",
    meaning: "ARI Stasis applications; one signalling topic each (all share one websocket). Non-empty, distinct, " +
      "no whitespace (they become topic names)."
  }),
  websocketUrl: url({
    key: "websocket_url",
    seed: true,
    schemes: ["ws:", "wss:"],
    example: "ws://127.0.0.1:8088/ari/events",
    requiredByGroup: true,
    defaultDoc: "**required** unless `outbound_websocket.enabled`",
    meaning: "ARI events URL, e.g. `ws://127.0.0.1:8088/ari/events`. Unused when Asterisk dials the proxy."
  }),
  stasisUrl: url({
    key: "stasis_url",
    seed: true,
    schemes: ["http:", "https:"],
    example: "http://127.0.0.1:8088/ari",
    requiredByGroup: true,
    defaultDoc: "**required** unless `outbound_websocket.enabled`",
    meaning: "ARI REST base, e.g. `http://127.0.0.1:8088/ari`. Unused when Asterisk dials the proxy."
  }),
  wsUser: text({ key: "ws_user", seed: true, default: "", verbatim: true, meaning: "ARI user." }),
  wsPassword: secret({
    key: "ws_password",
    seed: true,
    default: Redacted.make(""),
    meaning: "ARI password. Never logged."
  }),
  // The seed was case-sensitive; any case is accepted here.
  messageBus: oneOf({
    key: "message_bus",
    seed: true,
    options: BUS_KINDS,
    required: true,
    default: "MEMORY",
    normalise: (text) => text.toUpperCase(),
    meaning: "Bus driver; any case. `MEMORY` is in-process (tests, demo)."
  }),
  bus: group("bus_config", {
    url: secretUrl({
      key: "url",
      seed: true,
      defaultDoc: "**required** for NATS and RABBITMQ; `\"\"` for MEMORY",
      meaning: "NATS: `nats://` or `tls://`, a comma-separated list allowed (no default such as " +
        "`nats://127.0.0.1:4222` is assumed). RabbitMQ: one `amqp://` or `amqps://` URI. Credentials inside it are " +
        "masked in logs."
    }),
    queue: text({
      key: "queue",
      seed: true,
      default: "",
      verbatim: true,
      noWhitespace: true,
      meaning: "NATS queue group for the subscriptions (`\"\"`: plain subscriptions)."
    }),
    // ours from here on
    subjectPrefix: text({
      key: "subject_prefix",
      default: "",
      verbatim: true,
      noWhitespace: true,
      meaning: "Prefix of every topic name; `\"\"` keeps the seed's names."
    }),
    user: text({ key: "user", default: undefined, verbatim: true, meaning: "Broker user." }),
    password: secret({ key: "password", default: undefined, meaning: "Broker password." }),
    token: secret({ key: "token", default: undefined, meaning: "NATS token." }),
    nkeySeed: secret({ key: "nkey_seed", default: undefined, meaning: "NATS nkey seed." }),
    credsFile: path("creds_file", "NATS credentials file (JWT + nkey)."),
    tls: optionalGroup("tls", {
      ca: path("ca", "CA bundle (PEM) for the broker."),
      cert: path("cert", "Client certificate (PEM); needs `key`."),
      key: path("key", "Client key (PEM); needs `cert`.")
    }, (tls, report) => {
      if ((tls.cert === undefined) !== (tls.key === undefined)) report("cert and key must be given together")
    }),
    publishBufferSize: integer({
      key: "publish_buffer_size",
      default: 10_000,
      min: 0,
      meaning: "Messages kept in order while the broker is unreachable; beyond that they are counted and dropped."
    }),
    publishBufferBytes: integer({
      key: "publish_buffer_bytes",
      default: 64 * 1024 * 1024,
      defaultDoc: "`67108864` (64 MiB)",
      min: 0,
      meaning: "The same buffer's bound in bytes (UTF-8 payloads); a message that does not fit is counted and dropped."
    }),
    jetstream: group("jetstream", {
      enabled: boolean({
        key: "enabled",
        default: false,
        meaning: "NATS: publish the proxy's topics into a JetStream stream, with acknowledgements and " +
          "republication after a reconnect (see below). Needs `subject_prefix`."
      }),
      stream: text({
        key: "stream",
        default: DEFAULT_STREAM,
        type: "name (letters, digits, `-`, `_`)",
        meaning: "The stream; created at start if missing, checked if it exists."
      }),
      maxAgeMs: integer({
        key: "max_age_ms",
        default: 24 * 60 * 60 * 1000,
        min: 1,
        defaultDoc: "`86400000` (24 h)",
        meaning: "Retention of a stream the proxy creates: messages older than this are removed."
      }),
      maxBytes: integer({
        key: "max_bytes",
        default: 1024 * MIB,
        min: 1,
        max: MAX_BYTES,
        type: "integer ≥ 1 (bytes)",
        defaultDoc: "`1073741824` (1 GiB)",
        meaning: "Retention of a stream the proxy creates: past this size the oldest messages are removed."
      }),
      duplicateWindowMs: integer({
        key: "duplicate_window_ms",
        default: 120_000,
        min: 1,
        type: "integer ≥ 1, ≤ `max_age_ms`",
        meaning: "How long the stream remembers a message id to drop a republished duplicate. Make it longer than " +
          "the broker outages you want to ride through without duplicates in the stream."
      }),
      ackWindow: integer({
        key: "ack_window",
        default: 4096,
        min: 1,
        meaning: "Messages written and awaiting their acknowledgement at most; beyond, publishing waits (the " +
          "dialogs' mailboxes take the pressure)."
      }),
      ackWindowBytes: integer({
        key: "ack_window_bytes",
        default: 16 * MIB,
        min: 1,
        max: MAX_BYTES,
        type: "integer ≥ 1 (bytes)",
        defaultDoc: "`16777216` (16 MiB)",
        meaning: "Payload bytes awaiting their acknowledgement at most."
      }),
      ackTimeoutMs: integer({
        key: "ack_timeout_ms",
        default: 5000,
        min: 1,
        meaning: "With no acknowledgement for this long (twice at most), the stream is checked and the " +
          "unacknowledged messages written again."
      })
    }, {
      check: (jetstream, report) => {
        if (!jetstream.enabled) return
        const nameProblem = streamNameProblem(jetstream.stream)
        if (nameProblem !== undefined) report(nameProblem, "stream")
        if (jetstream.duplicateWindowMs > jetstream.maxAgeMs) {
          const { duplicateWindowMs, maxAgeMs } = jetstream
          report(`must be at most bus_config.jetstream.max_age_ms (${maxAgeMs}), got ${duplicateWindowMs}`,
            "duplicate_window_ms")
        }
      }
    }),
    prefetch: integer({
      key: "prefetch",
      default: 256,
      min: 1,
      meaning: "RabbitMQ: unacknowledged deliveries per consumer channel."
    }),
    queueDeleteGraceMs: integer({
      key: "queue_delete_grace_ms",
      default: 60_000,
      min: 0,
      meaning: "RabbitMQ: delay after a dialog ends before its queues are deleted."
    })
  }),
  logLevel: oneOf({
    key: "log_level",
    options: ["debug", "info", "warning", "error"],
    default: "info",
    normalise: (text) => text.toLowerCase() === "warn" ? "warning" : text.toLowerCase(),
    meaning: "Minimum log level; `warn` is accepted for `warning`, any case."
  }),
  logFormat: oneOf({
    key: "log_format",
    options: ["json", "pretty", "auto"],
    default: "auto",
    normalise: (text) => text.toLowerCase(),
    meaning: "Log line format; `auto` leaves the choice to the logger (pretty on a terminal, JSON otherwise is " +
      "the intent)."
  }),
  httpPort: integer({
    key: "http_port",
    default: 0,
    min: 0,
    max: 65535,
    meaning: "Health/metrics HTTP server port; `0` disables it."
  }),
  httpHost: text({
    key: "http_host",
    default: "127.0.0.1",
    type: "host",
    meaning: "Address the health/metrics server listens on."
  }),
  otelEndpoint: absoluteUrl({
    key: "otel_endpoint",
    type: "`http://` / `https://` URL",
    defaultDoc: "unset: no tracing",
    meaning: "OpenTelemetry: base URL of an OTLP/HTTP receiver (a collector, e.g. `http://127.0.0.1:4318`); the " +
      "dialogs' and commands' spans go to `<otel_endpoint>/v1/traces` (JSON). See docs/operations.md, \"Tracing\"."
  }),
  otelServiceName: text({
    key: "otel_service_name",
    default: "ari-proxy",
    meaning: "OpenTelemetry `service.name` of the spans (`service.instance.id` is `server_id`)."
  }),
  commandTimeoutMs: integer({
    key: "command_timeout_ms",
    default: 10_000,
    min: 1,
    meaning: "Deadline of one ARI REST request (its answer's headers must come within it, and its body may not " +
      "stall longer); past it the command is answered 504 (undici checks it on a coarse timer: up to about a " +
      "second late)."
  }),
  ariRestTransport: oneOf({
    key: "ari_rest_transport",
    options: ["http", "websocket"],
    default: "http",
    normalise: (text) => text.toLowerCase(),
    meaning: "How commands reach ARI: `http` (requests to `stasis_url`), or `websocket` (`RESTRequest` frames on " +
      "the event websocket, as Asterisk 23 accepts them; see docs/asterisk.md)."
  }),
  restConnections: integer({
    key: "rest_connections",
    default: 16,
    min: 1,
    meaning: "Keep-alive connections to ARI REST."
  }),
  attachGraceMs: integer({
    key: "attach_grace_ms",
    default: 500,
    min: 0,
    meaning: "How long a new dialog holds its events back for an application that never attaches (seed clients)."
  }),
  maxHeldEvents: integer({
    key: "max_held_events",
    default: 1000,
    min: 0,
    meaning: "Events a dialog holds before attach at most; past it they are released at once."
  }),
  dialogLeaseMs: integer({
    key: "dialog_lease_ms",
    default: 5000,
    min: 1,
    meaning: "The lease an application takes on a dialog when it attaches with one (the typed client does): " +
      "if it is not renewed within this time (the instance died), the dialog is offered anew, as resumed."
  }),
  dialogReplaySize: integer({
    key: "dialog_replay_size",
    default: 1000,
    min: 0,
    meaning: "Publications (events and answers) a leased dialog keeps until its owner acknowledges them, " +
      "to replay to the instance that takes it over."
  }),
  endedLingerMs: integer({
    key: "ended_linger_ms",
    default: 5000,
    min: 0,
    meaning: "After DialogEnded, how long late commands still get a 410 answer."
  }),
  requestedDialogIdleMs: integer({
    key: "requested_dialog_idle_ms",
    default: 60_000,
    min: 1,
    meaning: "A dialog an application asked for (docs/protocol.md) ends with reason `unused` if it still has no " +
      "channel after this long."
  }),
  presenceIntervalMs: integer({
    key: "presence_interval_ms",
    default: 5000,
    min: 0,
    meaning: "How often the proxy announces itself on the presence topic (`ari_proxy_presence`, docs/protocol.md); " +
      "clients forget a proxy unheard of for 3 intervals. `0` turns presence off."
  }),
  dialogMailboxSize: integer({
    key: "dialog_mailbox_size",
    default: 10_000,
    min: 1,
    meaning: "Unpublished events a dialog holds at most (its bus publishes cannot keep up); beyond, that dialog " +
      "alone is ended as `overloaded`, its unpublished events dropped and counted. Also the bound of the " +
      "unrouted-event publisher."
  }),
  unroutedEvents: boolean({
    key: "unrouted_events",
    default: true,
    meaning: "Publish events no dialog owns on `unrouted_<app>`."
  }),
  subscribeAll: boolean({
    key: "subscribe_all",
    default: false,
    meaning: "Subscribe the ARI websocket to all events (`subscribeAll=true`)."
  }),
  ariEventFilter: optionalGroup("ari_event_filter", {
    allowed: namesFrom({
      key: "allowed",
      known: ariEventTypes,
      of: "ARI event types",
      type: "list of ARI event types",
      meaning: "The only event types Asterisk sends each application (its event filter, set after every " +
        "connect); unset: all. Must include StasisStart, StasisEnd, ChannelDestroyed (and RESTResponse with " +
        "`ari_rest_transport` `websocket`, CallBroadcast with `stasis_broadcast.enabled`)."
    }),
    disallowed: namesFrom({
      key: "disallowed",
      known: ariEventTypes,
      of: "ARI event types",
      type: "list of ARI event types",
      meaning: "Event types Asterisk never sends the applications (wins over `allowed`). With neither set, the " +
        "proxy leaves the applications' filters alone."
    })
  }),
  stasisBroadcast: group("stasis_broadcast", {
    enabled: boolean({
      key: "enabled",
      default: false,
      meaning: "Serve calls the dialplan offers with `StasisBroadcast` (several proxies per Asterisk): register " +
        "each application under `application_name`, claim the calls offered to it while ready, and open their " +
        "dialogs under the application's own name (docs/asterisk.md)."
    }),
    applicationName: text({
      key: "application_name",
      default: "{app}-{server_id}",
      verbatim: true,
      noWhitespace: true,
      type: "template",
      meaning: "The name each application is registered under at Asterisk when `enabled`: `{app}` is the " +
        "application, `{server_id}` this proxy's `server_id`. Must give each proxy of an Asterisk names of its own."
      })
    }),
  outboundWebsocket: group("outbound_websocket", {
    enabled: boolean({
      key: "enabled",
      default: false,
      meaning: "Asterisk dials the proxy (`ari.conf` `type=outbound_websocket`) instead of the proxy dialling " +
        "`websocket_url`: the proxy listens, and commands go over the same socket (REST over the websocket). " +
        "See docs/asterisk.md."
    }),
    host: text({ key: "host", default: "127.0.0.1", type: "host", meaning: "Address the proxy listens on for Asterisk." }),
    port: integer({
      key: "port",
      default: 8090,
      min: 0,
      max: 65535,
      meaning: "Port the proxy listens on for Asterisk; `0` takes any free port."
    }),
    path: text({
      key: "path",
      default: "/ari/out",
      verbatim: true,
      noWhitespace: true,
      type: "path",
      meaning: "The path of `websocket_client.conf`'s `uri` (its query is ignored); other paths are answered 404."
    }),
    username: text({
      key: "username",
      default: "",
      verbatim: true,
      meaning: "The `username` of `websocket_client.conf`: Asterisk's Basic credentials are checked against it."
    }),
    password: secret({
      key: "password",
      default: Redacted.make(""),
      meaning: "The `password` of `websocket_client.conf`. Never logged."
    }),
    tls: optionalGroup("tls", {
      cert: path("cert", "Certificate (PEM) the listener presents (`wss://`); needs `key`."),
      key: path("key", "Its private key (PEM); needs `cert`.")
    }, (tls, report) => {
      if ((tls.cert === undefined) !== (tls.key === undefined)) report("cert and key must be given together")
    }),
    serverIds: pairs({
      key: "server_ids",
      of: "`<asterisk_id>=<server_id>`",
      type: "list of `<asterisk_id>=<server_id>`",
      meaning: "The `server_id` of each Asterisk, by its entity id (`asterisk_id` in its frames); an Asterisk " +
        "not listed gets its entity id as `server_id`."
    }),
    perCallReconnectMs: integer({
      key: "per_call_reconnect_ms",
      default: 2500,
      min: 0,
      meaning: "`per_call_config`: how long a call whose socket dropped before its end waits for Asterisk to " +
        "dial again before its dialog is ended (`channels_vanished`)."
    })
  }),
  reconnectMinMs: integer({
    key: "reconnect_min_ms",
    default: 200,
    min: 1,
    meaning: "Shortest websocket reconnect delay."
  }),
  reconnectMaxMs: integer({
    key: "reconnect_max_ms",
    default: 10_000,
    min: 1,
    type: "integer ≥ `reconnect_min_ms`",
    meaning: "Largest reconnect delay."
  }),
  pingIntervalMs: integer({
    key: "ping_interval_ms",
    default: 15_000,
    min: 1,
    meaning: "Websocket ping period; a connection without a pong for this long is dead."
  }),
  shutdownTimeoutMs: integer({
    key: "shutdown_timeout_ms",
    default: 15_000,
    min: 1,
    meaning: "Deadline for in-flight commands and buffered publishes at shutdown."
  })
}, {
  check: (config, report) => {
    if (config.reconnectMaxMs < config.reconnectMinMs) {
      report(
        `must be at least reconnect_min_ms (${config.reconnectMinMs}), got ${config.reconnectMaxMs}`,
        "reconnect_max_ms"
      )
    }
    const outbound = config.outboundWebsocket
    if (outbound.enabled) {
      if (outbound.username === "" || Redacted.value(outbound.password) === "") {
        report("needs outbound_websocket.username and outbound_websocket.password (Asterisk's Basic credentials)",
          "outbound_websocket.enabled")
      }
      if (!outbound.path.startsWith("/")) report(`must start with / (got ${show(outbound.path)})`, "outbound_websocket.path")
    } else {
      if (config.websocketUrl === "") report("required, e.g. ws://127.0.0.1:8088/ari/events", "websocket_url")
      if (config.stasisUrl === "") report("required, e.g. http://127.0.0.1:8088/ari", "stasis_url")
    }
    // Asterisk's outbound socket is the only way to it: commands go over it whatever ari_rest_transport says.
    const commandsOverSocket = config.ariRestTransport === "websocket" || outbound.enabled
    const filter = config.ariEventFilter
    if (filter !== undefined) {
      const needs = eventsTheProxyNeeds(commandsOverSocket ? "websocket" : "http", config.stasisBroadcast.enabled)
      const transport = [
        ...(outbound.enabled
          ? ["outbound_websocket.enabled, whose commands go over Asterisk's socket"]
          : config.ariRestTransport === "websocket"
          ? ["ari_rest_transport websocket"]
          : []),
        ...(config.stasisBroadcast.enabled ? ["stasis_broadcast"] : [])
      ]
      const modes = transport.length === 0 ? "" : ` (with ${transport.join(" and ")})`
      const missing = filter.allowed === undefined ? [] : needs.filter((type) => !filter.allowed!.includes(type))
      if (missing.length > 0) {
        report(`must include ${missing.join(", ")}: the proxy needs ${needs.join(", ")}${modes}`,
          "ari_event_filter.allowed")
      }
      const refused = (filter.disallowed ?? []).filter((type) => needs.includes(type))
      if (refused.length > 0) {
        report(`must not include ${refused.join(", ")}: the proxy needs ${needs.join(", ")}${modes}`,
          "ari_event_filter.disallowed")
      }
    }
    if (config.stasisBroadcast.enabled && outbound.enabled) {
      report("cannot be combined with outbound_websocket.enabled (Asterisk's outbound_websocket names its apps " +
        "in ari.conf)", "stasis_broadcast.enabled")
    }
    if (config.stasisBroadcast.enabled) {
      for (const problem of broadcastNameProblems(config.stasisBroadcast.applicationName, config.applications,
        config.serverId)) report(problem, "stasis_broadcast.application_name")
    }
    const otel = config.otelEndpoint === "" ? undefined : parseUrl(config.otelEndpoint)
    if (otel !== undefined && otel.protocol !== "http:" && otel.protocol !== "https:") {
      report(`must be an http:// or https:// URL (got ${show(redactUrl(config.otelEndpoint))})`, "otel_endpoint")
    }
    for (const problem of busUrlProblems(config.messageBus, Redacted.value(config.bus.url))) {
      report(problem, "bus_config.url")
    }
    if (config.bus.jetstream.enabled) {
      if (config.messageBus !== "NATS") {
        report(`JetStream is an option of NATS (message_bus is ${config.messageBus})`, "bus_config.jetstream.enabled")
      } else {
        const prefixProblem = jetStreamPrefixProblem(config.bus.subjectPrefix)
        if (prefixProblem !== undefined) report(prefixProblem, "bus_config.subject_prefix")
      }
    }
  },
  // The seed needed origin for the websocket Origin header; the ARI server's own origin is a safe default.
  complete: (config) => config.origin === "" ? { ...config, origin: parseUrl(config.stasisUrl)?.origin ?? "" } : config
})
