/**
 * The stream of the NATS driver's JetStream mode: which subjects it captures, how it is defined,
 * and its creation or check at each (re)connection through the JetStream API (`$JS.API.*`, JSON
 * over request/reply). The driver speaks the API and the publish acknowledgement itself rather
 * than through @nats-io/jetstream: it needs two requests and the acknowledgement, and keeps its
 * window of unacknowledged messages itself (one subscription for every acknowledgement, no
 * promise or timer per message).
 */
import type { NatsConnection } from "@nats-io/transport-node"
import { Data, Effect } from "effect"
import { type RetryPolicy, retrySchedule } from "../../resilience/retry.js"
import type { NatsJetStreamOptions } from "./options.js"

export interface StreamSettings {
  /** Stream name: letters, digits, `-` and `_`. */
  readonly name: string
  /** The topic prefix; the stream captures `<prefix>>`, every topic of the proxy. */
  readonly subjectPrefix: string
  /** Messages older than this are removed. */
  readonly maxAgeMs: number
  /** Past this size the oldest messages are removed. */
  readonly maxBytes: number
  /** How long the stream remembers a message id, to drop a message published again. */
  readonly duplicateWindowMs: number
}

/** The stream cannot be used as it is (or created): an operator must act; retrying will not help. */
export class StreamUnusable extends Data.TaggedError("StreamUnusable")<{ readonly message: string }> {}

/** The JetStream API did not answer in time, or the connection dropped: try again. */
export class StreamUnreachable extends Data.TaggedError("StreamUnreachable")<{ readonly message: string }> {}

export const DEFAULT_STREAM = "ARI_PROXY"

/** The stream's subject for a topic prefix. */
export const streamSubject = (subjectPrefix: string): string => `${subjectPrefix}>`

/**
 * Why a stream could not capture every topic under `subjectPrefix`, or undefined. NATS wildcards
 * stand for whole tokens only (`ari.>` matches `ari.events_x`; `ari_>` is no subject at all), so
 * the prefix must be whole tokens followed by a ".".
 */
export const jetStreamPrefixProblem = (subjectPrefix: string): string | undefined => {
  const rule = "with JetStream it must be whole subject tokens ending in \".\" (e.g. \"ari.\"), so that the stream " +
    "captures every topic as \"<prefix>>\" (NATS wildcards match whole tokens only)"
  if (subjectPrefix === "") return `${rule}; it is empty`
  if (!subjectPrefix.endsWith(".")) return `${rule}; got ${JSON.stringify(subjectPrefix)}`
  if (/[*>\s]/.test(subjectPrefix) || subjectPrefix.slice(0, -1).split(".").some((token) => token === "")) {
    return `${rule}, without wildcards or empty tokens; got ${JSON.stringify(subjectPrefix)}`
  }
  return undefined
}

export const streamNameProblem = (name: string): string | undefined =>
  /^[A-Za-z0-9_-]+$/.test(name) ? undefined : `must be letters, digits, "-" or "_" (got ${JSON.stringify(name)})`

/** True when the stream subject `pattern` matches every subject under `<subjectPrefix>`. */
export const capturesPrefix = (pattern: string, subjectPrefix: string): boolean => {
  const patternTokens = pattern.split(".")
  const prefixTokens = subjectPrefix.slice(0, -1).split(".")
  for (let i = 0; i < patternTokens.length; i++) {
    const token = patternTokens[i]!
    if (token === ">") return true
    if (i >= prefixTokens.length) return false // `*` here would take one token of a topic, not all
    if (token !== "*" && token !== prefixTokens[i]) return false
  }
  return false
}

const NANOS_PER_MS = 1_000_000

/** The stream the driver creates when none exists. */
const streamDefinition = (settings: StreamSettings) => ({
  name: settings.name,
  subjects: [streamSubject(settings.subjectPrefix)],
  retention: "limits",
  storage: "file",
  discard: "old",
  num_replicas: 1,
  max_age: settings.maxAgeMs * NANOS_PER_MS,
  max_bytes: settings.maxBytes,
  duplicate_window: settings.duplicateWindowMs * NANOS_PER_MS
})

interface StreamConfigSeen {
  readonly subjects?: ReadonlyArray<string>
  readonly retention?: string
  readonly max_age?: number
  readonly max_bytes?: number
  readonly max_msgs?: number
  readonly duplicate_window?: number
  readonly no_ack?: boolean
  readonly sealed?: boolean
}

interface ApiAnswer {
  readonly config?: StreamConfigSeen
  readonly error?: { readonly code?: number; readonly err_code?: number; readonly description?: string }
}

const STREAM_NOT_FOUND = 10059
const STREAM_NAME_IN_USE = 10058

const API_TIMEOUT_MS = 5000

const apiRequest = (connection: NatsConnection, subject: string, body: unknown) =>
  Effect.tryPromise({
    try: () => connection.request(subject, body === undefined ? "" : JSON.stringify(body), { timeout: API_TIMEOUT_MS }),
    catch: (error) => {
      const noResponders = (error as { isNoResponders?: () => boolean }).isNoResponders?.() === true ||
        (error as { cause?: { name?: string } }).cause?.name === "NoRespondersError"
      return noResponders ?
        new StreamUnusable({ message: "JetStream does not answer on this server (no responders on $JS.API): " +
          "start nats-server with JetStream enabled (-js), or turn bus_config.jetstream off" }) :
        new StreamUnreachable({ message: error instanceof Error ? error.message : String(error) })
    }
  }).pipe(Effect.flatMap((message) =>
    Effect.try({
      try: () => JSON.parse(message.string()) as ApiAnswer,
      catch: () => new StreamUnreachable({ message: `unreadable JetStream API answer on ${subject}` })
    })
  ))

const describeError = ({ error }: ApiAnswer) =>
  `${error?.description ?? "error"} (code ${error?.code ?? "?"}, err_code ${error?.err_code ?? "?"})`

/** What makes an existing stream unusable for the proxy; the first reason found. */
const incompatibility = (config: StreamConfigSeen, settings: StreamSettings): string | undefined => {
  const required = streamSubject(settings.subjectPrefix)
  const subjects = config.subjects ?? []
  if (!subjects.some((subject) => capturesPrefix(subject, settings.subjectPrefix))) {
    return `its subjects ${JSON.stringify(subjects)} do not capture the proxy's topics ("${required}")`
  }
  if (config.retention !== undefined && config.retention !== "limits") {
    return `its retention is "${config.retention}": messages would be removed as consumers read them ` +
      "(the proxy needs \"limits\", bounded by age and size)"
  }
  const unbounded = (config.max_age ?? 0) <= 0 && (config.max_bytes ?? -1) <= 0 && (config.max_msgs ?? -1) <= 0
  if (unbounded) return "its retention is unbounded (no max_age, max_bytes or max_msgs)"
  if (config.no_ack === true) return "it does not acknowledge publishes (no_ack)"
  if (config.sealed === true) return "it is sealed"
  return undefined
}

/** Settings of an existing stream that differ from the configuration: reported, not changed. */
const differences = (config: StreamConfigSeen, settings: StreamSettings): Record<string, string> => {
  const found: Record<string, string> = {}
  const ms = (nanos: number | undefined) => `${Math.round((nanos ?? 0) / NANOS_PER_MS)} ms`
  if ((config.max_age ?? 0) !== settings.maxAgeMs * NANOS_PER_MS) {
    found.max_age = `${ms(config.max_age)} (configured ${settings.maxAgeMs} ms)`
  }
  if ((config.max_bytes ?? -1) !== settings.maxBytes) {
    found.max_bytes = `${config.max_bytes ?? -1} (configured ${settings.maxBytes})`
  }
  if ((config.duplicate_window ?? 0) < settings.duplicateWindowMs * NANOS_PER_MS) {
    found.duplicate_window = `${ms(config.duplicate_window)}, shorter than configured ` +
      `(${settings.duplicateWindowMs} ms)`
  }
  return found
}

const check = (config: StreamConfigSeen, settings: StreamSettings) => {
  const problem = incompatibility(config, settings)
  if (problem !== undefined) {
    return Effect.fail(new StreamUnusable({ message: `JetStream stream "${settings.name}" exists, but ${problem}` }))
  }
  const differing = differences(config, settings)
  return Object.keys(differing).length === 0 ?
    Effect.void :
    Effect.logWarning("JetStream stream exists with other settings than configured; using it as it is").pipe(
      Effect.annotateLogs({ stream: settings.name, ...differing })
    )
}

/**
 * Creates the stream if it is missing, or checks that the existing one captures the proxy's
 * topics with bounded retention. Other differences (age, size, duplicate window) are logged, not
 * changed: a stream someone created on purpose is theirs.
 */
export const ensureStream = (
  connection: NatsConnection,
  settings: StreamSettings
): Effect.Effect<"created" | "checked", StreamUnusable | StreamUnreachable> =>
  Effect.gen(function*() {
    const info = yield* apiRequest(connection, `$JS.API.STREAM.INFO.${settings.name}`, undefined)
    if (info.config !== undefined) {
      yield* check(info.config, settings)
      return "checked" as const
    }
    if (info.error?.err_code !== STREAM_NOT_FOUND) {
      return yield* new StreamUnusable({
        message: `JetStream stream "${settings.name}" cannot be looked up: ${describeError(info)}`
      })
    }
    const created = yield* apiRequest(connection, `$JS.API.STREAM.CREATE.${settings.name}`, streamDefinition(settings))
    if (created.config !== undefined) return "created" as const
    if (created.error?.err_code === STREAM_NAME_IN_USE) {
      // Another proxy created it meanwhile, with other settings: check theirs.
      const again = yield* apiRequest(connection, `$JS.API.STREAM.INFO.${settings.name}`, undefined)
      if (again.config !== undefined) {
        yield* check(again.config, settings)
        return "checked" as const
      }
    }
    return yield* new StreamUnusable({
      message: `JetStream stream "${settings.name}" cannot be created: ${describeError(created)}`
    })
  })

export interface JetStreamSettings extends StreamSettings {
  readonly ackWindow: number
  readonly ackWindowBytes: number
  readonly ackTimeoutMs: number
}

export const MIB = 1024 * 1024

/** The mode's settings, defaults applied; a string says what is wrong. */
export const jetStreamSettings = (subjectPrefix: string, options: NatsJetStreamOptions): JetStreamSettings | string => {
  const name = options.stream ?? DEFAULT_STREAM
  const prefixProblem = jetStreamPrefixProblem(subjectPrefix)
  if (prefixProblem !== undefined) return `subject prefix: ${prefixProblem}`
  const nameProblem = streamNameProblem(name)
  if (nameProblem !== undefined) return `stream name: ${nameProblem}`
  return {
    name,
    subjectPrefix,
    maxAgeMs: Math.max(1, options.maxAgeMs ?? 24 * 60 * 60 * 1000),
    maxBytes: Math.max(1, options.maxBytes ?? 1024 * MIB),
    duplicateWindowMs: Math.max(1, options.duplicateWindowMs ?? 120_000),
    ackWindow: Math.max(1, options.ackWindow ?? 4096),
    ackWindowBytes: Math.max(1, options.ackWindowBytes ?? 16 * MIB),
    ackTimeoutMs: Math.max(1, options.ackTimeoutMs ?? 5000)
  }
}

export type Acknowledgement = "stored" | { readonly errCode: number; readonly description: string }

/** JetStream's "temporarily unavailable" (a cluster electing a leader): worth writing again. */
export const TEMPORARILY_UNAVAILABLE = 10008

/** A publish acknowledgement: `{"stream":..,"seq":..}`, or `{"error":{..}}`; undefined if it is neither. */
export const readAcknowledgement = (text: string): Acknowledgement | undefined => {
  if (text.startsWith("{\"stream\"") && !text.includes("\"error\"")) return "stored"
  try {
    const answer = JSON.parse(text) as {
      readonly stream?: unknown
      readonly seq?: unknown
      readonly error?: { readonly err_code?: number; readonly description?: string }
    }
    if (answer.error !== undefined) {
      return { errCode: answer.error.err_code ?? 0, description: answer.error.description ?? "error" }
    }
    if (typeof answer.stream === "string" && typeof answer.seq === "number") return "stored"
  } catch {
    // not JSON: someone answered the message's reply subject
  }
  return undefined
}

/**
 * Creates or checks the stream at each (re)connection, retrying on `retry` while `stillWanted`;
 * succeeds with false if it stopped being wanted (the connection dropped, the bus closes). A
 * problem is logged once until the stream is usable again; an unusable stream is also handed to
 * `onUnusable` (the first connection fails the start with it).
 */
export const makeStreamCheck = (
  settings: JetStreamSettings,
  retry: RetryPolicy,
  onUnusable: (problem: StreamUnusable) => Effect.Effect<void>
) => {
  let problemLogged = false
  return (connection: NatsConnection, stillWanted: () => boolean): Effect.Effect<boolean> =>
    ensureStream(connection, settings).pipe(
      Effect.tap((outcome) => {
        const wasBroken = problemLogged
        problemLogged = false
        return outcome === "created" || wasBroken ?
          Effect.logInfo(`NATS JetStream stream ${outcome === "created" ? "created" : "usable"}`).pipe(
            Effect.annotateLogs({ stream: settings.name, subjects: `${settings.subjectPrefix}>` })
          ) :
          Effect.void
      }),
      Effect.tapError((problem) => {
        const first = !problemLogged
        problemLogged = true
        const log = problem._tag === "StreamUnusable" ?
          (first ? Effect.logError(problem.message) : Effect.logDebug(problem.message)) :
          (first ? Effect.logWarning : Effect.logDebug)("NATS JetStream API unreachable, retrying").pipe(
            Effect.annotateLogs({ error: problem.message })
          )
        return problem._tag === "StreamUnusable" ? Effect.zipRight(log, onUnusable(problem)) : log
      }),
      Effect.retry({ schedule: retrySchedule(retry), while: stillWanted }),
      Effect.as(true),
      Effect.orElseSucceed(() => false)
    )
}
