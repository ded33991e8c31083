/**
 * The proxy's configuration, after validation. The file format is the seed's config.json
 * (snake_case keys); this is its typed, camelCase form with every default applied.
 * docs/configuration.md lists each key, its environment variable and its default; src/config/ reads
 * and validates it (`proxyConfig`, `ProxyConfigService`).
 */
import type { Redacted } from "effect"

export type MessageBusKind = "NATS" | "RABBITMQ" | "MEMORY"
export type LogLevelName = "debug" | "info" | "warning" | "error"
export type LogFormat = "json" | "pretty" | "auto"

export interface TlsConfig {
  /** Paths of PEM files. */
  readonly ca?: string | undefined
  readonly cert?: string | undefined
  readonly key?: string | undefined
}

export interface BusConfig {
  /** Broker URL(s); NATS accepts a comma-separated list. May carry credentials, hence redacted. */
  readonly url: Redacted.Redacted<string>
  /** NATS queue group for every subscription of the application side (seed: `bus_config.queue`). */
  readonly queue: string
  /** Prefix for every topic name; "" (the default) keeps the seed's names. */
  readonly subjectPrefix: string
  readonly user?: string | undefined
  readonly password?: Redacted.Redacted<string> | undefined
  readonly token?: Redacted.Redacted<string> | undefined
  /** NATS nkey seed. */
  readonly nkeySeed?: Redacted.Redacted<string> | undefined
  /** NATS credentials file (JWT + nkey). */
  readonly credsFile?: string | undefined
  readonly tls?: TlsConfig | undefined
  /** Messages kept (in order) while the broker is unreachable; beyond that they are counted and dropped. */
  readonly publishBufferSize: number
  /** RabbitMQ: unacknowledged deliveries per consumer channel. */
  readonly prefetch: number
  /** RabbitMQ: how long after a dialog ends its queues are deleted. */
  readonly queueDeleteGraceMs: number
}

export interface ProxyConfig {
  readonly origin: string
  readonly serverId: string
  readonly applications: ReadonlyArray<string>
  readonly websocketUrl: string
  readonly stasisUrl: string
  readonly wsUser: string
  readonly wsPassword: Redacted.Redacted<string>
  readonly messageBus: MessageBusKind
  readonly bus: BusConfig

  readonly logLevel: LogLevelName
  readonly logFormat: LogFormat
  /** Port of the health/metrics HTTP server; 0 disables it. */
  readonly httpPort: number
  readonly httpHost: string

  /** Deadline of one ARI REST request; past it the command is answered 504. */
  readonly commandTimeoutMs: number
  /** Keep-alive connections to ARI REST. */
  readonly restConnections: number
  /** How long a new dialog holds its events back for an application that never attaches (seed clients). */
  readonly attachGraceMs: number
  /** Events a dialog holds before attach at most; past it they are released at once. */
  readonly maxHeldEvents: number
  /** After DialogEnded, how long late commands still get a 410 answer before the subscription closes. */
  readonly endedLingerMs: number
  /** A dialog an application asked for ends if it has had no channel for this long. */
  readonly requestedDialogIdleMs: number
  /** Unpublished events a dialog holds at most; beyond, that dialog alone is ended as overloaded. */
  readonly dialogMailboxSize: number
  /** Publish events that no dialog owns on `unrouted_<app>`. */
  readonly unroutedEvents: boolean
  /** Subscribe the ARI websocket to all events (`subscribeAll=true`). */
  readonly subscribeAll: boolean

  readonly reconnectMinMs: number
  readonly reconnectMaxMs: number
  /** Websocket ping period; a connection without a pong for this long is dead. */
  readonly pingIntervalMs: number
  /** Deadline for in-flight commands and buffered publishes at shutdown. */
  readonly shutdownTimeoutMs: number
}
