/**
 * Raw values (strings, as every ConfigProvider delivers them) → a validated ProxyConfig, or the
 * list of every problem found. Pure, so each rule is tested without a provider.
 */
import { Either, Redacted } from "effect"
import type { BusConfig, LogFormat, LogLevelName, MessageBusKind, ProxyConfig, TlsConfig } from "./ProxyConfig.js"
import { redactUrl } from "./redact.js"

/** Values by dotted key (`bus_config.url`); absent keys are missing. */
export type RawValues = ReadonlyMap<string, string | ReadonlyArray<string>>

export interface Problem {
  readonly path: ReadonlyArray<string>
  readonly message: string
}

export const BUS_KINDS: ReadonlyArray<MessageBusKind> = ["NATS", "RABBITMQ", "MEMORY"]
export const LOG_LEVELS: ReadonlyArray<LogLevelName> = ["debug", "info", "warning", "error"]
export const LOG_FORMATS: ReadonlyArray<LogFormat> = ["json", "pretty", "auto"]

/** Timers beyond this overflow Node's setTimeout. */
const MAX_INT = 2_147_483_647

interface IntRule {
  readonly key: string
  readonly default: number
  readonly min: number
  readonly max?: number
}

/** Integer settings: their defaults and bounds (0 is excluded where it makes no sense). */
export const INT_RULES = {
  httpPort: { key: "http_port", default: 0, min: 0, max: 65535 },
  commandTimeoutMs: { key: "command_timeout_ms", default: 10_000, min: 1 },
  restConnections: { key: "rest_connections", default: 16, min: 1 },
  attachGraceMs: { key: "attach_grace_ms", default: 500, min: 0 },
  maxHeldEvents: { key: "max_held_events", default: 1000, min: 0 },
  endedLingerMs: { key: "ended_linger_ms", default: 5000, min: 0 },
  requestedDialogIdleMs: { key: "requested_dialog_idle_ms", default: 60000, min: 1 },
  dialogMailboxSize: { key: "dialog_mailbox_size", default: 10_000, min: 1 },
  reconnectMinMs: { key: "reconnect_min_ms", default: 200, min: 1 },
  reconnectMaxMs: { key: "reconnect_max_ms", default: 10_000, min: 1 },
  pingIntervalMs: { key: "ping_interval_ms", default: 15_000, min: 1 },
  shutdownTimeoutMs: { key: "shutdown_timeout_ms", default: 15_000, min: 1 },
  publishBufferSize: { key: "bus_config.publish_buffer_size", default: 10_000, min: 0 },
  prefetch: { key: "bus_config.prefetch", default: 256, min: 1 },
  queueDeleteGraceMs: { key: "bus_config.queue_delete_grace_ms", default: 60_000, min: 0 }
} as const satisfies Record<string, IntRule>

export const DEFAULTS = {
  logLevel: "info" as LogLevelName,
  logFormat: "auto" as LogFormat,
  httpHost: "127.0.0.1",
  unroutedEvents: true,
  subscribeAll: false
}

const MAX_ECHO = 80

/** Quotes a (non-secret) value for an error message, shortened so a pasted blob stays readable. */
const show = (value: string): string =>
  JSON.stringify(value.length > MAX_ECHO ? value.slice(0, MAX_ECHO) + "…" : value)

const parseUrl = (value: string): URL | undefined => {
  try {
    return new URL(value)
  } catch {
    return undefined
  }
}

const TRUE = new Set(["true", "yes", "on", "1"])
const FALSE = new Set(["false", "no", "off", "0"])

export const validate = (raw: RawValues, hostName: () => string): Either.Either<ProxyConfig, Array<Problem>> => {
  const problems: Array<Problem> = []
  const bad = (key: string, message: string) => problems.push({ path: key.split("."), message })

  // "" means unset everywhere: Go's zero value, and what `FOO=` in an env file gives.
  const get = (key: string): string | undefined => {
    const v = raw.get(key)
    const s = v === undefined ? undefined : typeof v === "string" ? v : v.join(",")
    return s === undefined || s.trim() === "" ? undefined : s
  }
  const text = (key: string): string | undefined => get(key)?.trim()

  const int = (rule: IntRule): number => {
    const s = text(rule.key)
    if (s === undefined) return rule.default
    const max = rule.max ?? MAX_INT
    if (!/^\d+$/.test(s)) {
      bad(rule.key, `must be a whole number ≥ ${rule.min} (got ${show(s)})`)
      return rule.default
    }
    const n = Number(s)
    if (n < rule.min) {
      bad(rule.key, `must be greater than 0 (got ${s})`)
    } else if (n > max) {
      bad(rule.key, `must be at most ${max} (got ${s})`)
    }
    return n
  }

  const bool = (key: string, fallback: boolean): boolean => {
    const s = text(key)?.toLowerCase()
    if (s === undefined) return fallback
    if (TRUE.has(s)) return true
    if (FALSE.has(s)) return false
    bad(key, `must be true or false (got ${show(s)})`)
    return fallback
  }

  const choice = <A extends string>(key: string, options: ReadonlyArray<A>, fallback: A, s: string | undefined): A => {
    if (s === undefined) return fallback
    const found = options.find((o) => o === s)
    if (found !== undefined) return found
    bad(key, `must be one of ${options.join(", ")} (got ${show(text(key) ?? s)})`)
    return fallback
  }

  const noSpace = (key: string): string => {
    const s = get(key) ?? ""
    if (/\s/.test(s)) bad(key, `must not contain whitespace (got ${show(s)})`)
    return s
  }

  const secret = (key: string): Redacted.Redacted<string> | undefined => {
    const s = get(key)
    return s === undefined ? undefined : Redacted.make(s)
  }

  // message_bus: the seed was case-sensitive; any case is accepted here.
  const busText = text("message_bus")
  let messageBus: MessageBusKind = "MEMORY"
  if (busText === undefined) {
    bad("message_bus", `required, one of ${BUS_KINDS.join(", ")}`)
  } else {
    messageBus = choice("message_bus", BUS_KINDS, "MEMORY", busText.toUpperCase())
  }

  // applications
  const appsRaw = raw.get("applications")
  const apps = appsRaw === undefined ? [] : typeof appsRaw === "string" ? appsRaw.split(",") : [...appsRaw]
  if (apps.length === 0 || (apps.length === 1 && apps[0]!.trim() === "")) {
    bad("applications", "required, a non-empty list of ARI application names")
  } else {
    const seen = new Set<string>()
    apps.forEach((name, i) => {
      if (name === "") bad(`applications[${i}]`, "must not be empty")
      else if (/\s/.test(name)) bad(`applications[${i}]`, `must not contain whitespace (got ${show(name)})`)
      else if (seen.has(name)) bad(`applications[${i}]`, `${show(name)} is listed twice`)
      seen.add(name)
    })
  }

  const url = (key: string, schemes: ReadonlyArray<string>, example: string): string => {
    const s = text(key)
    if (s === undefined) {
      bad(key, `required, e.g. ${example}`)
      return ""
    }
    const parsed = parseUrl(s)
    if (parsed === undefined || !schemes.includes(parsed.protocol) || parsed.hostname === "") {
      const names = schemes.map((p) => p + "//").join(" or ")
      bad(key, `must be a ${names} URL (got ${show(redactUrl(s))})`)
    }
    return s
  }
  const websocketUrl = url("websocket_url", ["ws:", "wss:"], "ws://127.0.0.1:8088/ari/events")
  const stasisUrl = url("stasis_url", ["http:", "https:"], "http://127.0.0.1:8088/ari")

  // origin: the seed needed it for the websocket Origin header; the ARI server's own origin is a safe default.
  let origin = text("origin")
  if (origin === undefined) {
    origin = parseUrl(stasisUrl)?.origin ?? ""
  } else if (parseUrl(origin) === undefined) {
    bad("origin", `must be an absolute URL such as http://localhost (got ${show(redactUrl(origin))})`)
  }

  const logText = text("log_level")?.toLowerCase()
  const logLevel = choice("log_level", LOG_LEVELS, DEFAULTS.logLevel, logText === "warn" ? "warning" : logText)
  const logFormat = choice("log_format", LOG_FORMATS, DEFAULTS.logFormat, text("log_format")?.toLowerCase())

  const ints = {
    httpPort: int(INT_RULES.httpPort),
    commandTimeoutMs: int(INT_RULES.commandTimeoutMs),
    restConnections: int(INT_RULES.restConnections),
    attachGraceMs: int(INT_RULES.attachGraceMs),
    maxHeldEvents: int(INT_RULES.maxHeldEvents),
    endedLingerMs: int(INT_RULES.endedLingerMs),
    requestedDialogIdleMs: int(INT_RULES.requestedDialogIdleMs),
    dialogMailboxSize: int(INT_RULES.dialogMailboxSize),
    reconnectMinMs: int(INT_RULES.reconnectMinMs),
    reconnectMaxMs: int(INT_RULES.reconnectMaxMs),
    pingIntervalMs: int(INT_RULES.pingIntervalMs),
    shutdownTimeoutMs: int(INT_RULES.shutdownTimeoutMs)
  }
  if (ints.reconnectMaxMs < ints.reconnectMinMs) {
    bad("reconnect_max_ms", `must be at least reconnect_min_ms (${ints.reconnectMinMs}), got ${ints.reconnectMaxMs}`)
  }

  const unroutedEvents = bool("unrouted_events", DEFAULTS.unroutedEvents)
  const subscribeAll = bool("subscribe_all", DEFAULTS.subscribeAll)
  const bus = validateBus(messageBus, get, bad, noSpace, secret, int)

  return problems.length > 0 ?
    Either.left(problems) :
    Either.right({
      origin,
      serverId: text("server_id") ?? hostName(),
      applications: apps,
      websocketUrl,
      stasisUrl,
      wsUser: get("ws_user") ?? "",
      wsPassword: Redacted.make(get("ws_password") ?? ""),
      messageBus,
      bus,
      logLevel,
      logFormat,
      httpHost: text("http_host") ?? DEFAULTS.httpHost,
      unroutedEvents,
      subscribeAll,
      ...ints
    })
}

const BUS_SCHEMES: Record<MessageBusKind, ReadonlyArray<string>> = {
  NATS: ["nats:", "tls:"],
  RABBITMQ: ["amqp:", "amqps:"],
  MEMORY: []
}

const BUS_EXAMPLE: Record<MessageBusKind, string> = {
  NATS: "nats://127.0.0.1:4222",
  RABBITMQ: "amqp://127.0.0.1:5672/",
  MEMORY: ""
}

const validateBus = (
  kind: MessageBusKind,
  get: (key: string) => string | undefined,
  bad: (key: string, message: string) => void,
  noSpace: (key: string) => string,
  secret: (key: string) => Redacted.Redacted<string> | undefined,
  int: (rule: IntRule) => number
): BusConfig => {
  const url = get("bus_config.url")?.trim() ?? ""
  if (kind !== "MEMORY") {
    const schemes = BUS_SCHEMES[kind]
    if (url === "") {
      bad("bus_config.url", `required for message_bus ${kind}, e.g. ${BUS_EXAMPLE[kind]} (no default is assumed)`)
    } else {
      const parts = url.split(",").map((p) => p.trim())
      if (kind === "RABBITMQ" && parts.length > 1) {
        bad("bus_config.url", `RABBITMQ takes one URL (got ${parts.length}: ${show(redactUrl(url))})`)
      }
      for (const part of parts) {
        const parsed = parseUrl(part)
        // Echo only the redacted form: bus URLs carry credentials.
        if (parsed === undefined || parsed.hostname === "") {
          bad("bus_config.url", `not a valid URL (got ${show(redactUrl(part))})`)
        } else if (!schemes.includes(parsed.protocol)) {
          const names = schemes.map((s) => s + "//").join(" or ")
          bad("bus_config.url", `a ${kind} URL must start with ${names} (got ${show(redactUrl(part))})`)
        }
      }
    }
  }
  const ca = get("bus_config.tls.ca")
  const cert = get("bus_config.tls.cert")
  const key = get("bus_config.tls.key")
  if ((cert === undefined) !== (key === undefined)) {
    bad("bus_config.tls", "cert and key must be given together")
  }
  const tls: TlsConfig | undefined = ca === undefined && cert === undefined && key === undefined ?
    undefined :
    { ca, cert, key }
  return {
    url: Redacted.make(url),
    queue: noSpace("bus_config.queue"),
    subjectPrefix: noSpace("bus_config.subject_prefix"),
    user: get("bus_config.user"),
    password: secret("bus_config.password"),
    token: secret("bus_config.token"),
    nkeySeed: secret("bus_config.nkey_seed"),
    credsFile: get("bus_config.creds_file"),
    tls,
    publishBufferSize: int(INT_RULES.publishBufferSize),
    prefetch: int(INT_RULES.prefetch),
    queueDeleteGraceMs: int(INT_RULES.queueDeleteGraceMs)
  }
}
