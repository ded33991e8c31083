/**
 * The RabbitMQ driver's options, and the settings they resolve to (defaults applied).
 */
import type { Secret } from "../internal.js"

export interface AmqpTlsOptions {
  /** Paths of PEM files. */
  readonly ca?: string | undefined
  readonly cert?: string | undefined
  readonly key?: string | undefined
}

export interface AmqpOptions {
  /** `amqp://` or `amqps://` URL; the vhost is its path. May carry credentials: never logged. */
  readonly url: Secret
  /** Connection name shown by the broker (the proxy passes its server_id). */
  readonly name?: string | undefined
  /** Credentials that override the URL's. */
  readonly user?: string | undefined
  readonly password?: Secret | undefined
  readonly tls?: AmqpTlsOptions | undefined
  /** The topic prefix in use, to recognise `unrouted_<app>` topics. Default "". */
  readonly subjectPrefix?: string | undefined
  /** Messages kept in order while disconnected; beyond that they are counted and dropped. Default 10,000. */
  readonly publishBufferSize?: number | undefined
  /** The same buffer's bound in bytes (UTF-8 payloads). Default 64 MiB. */
  readonly publishBufferBytes?: number | undefined
  /** Unconfirmed messages at most; `publish` suspends beyond. Default 4,096. */
  readonly confirmWindow?: number | undefined
  /** Unacknowledged deliveries per consumer. Default 256. */
  readonly prefetch?: number | undefined
  /** Delay between `retire` and the queue's deletion. Default 60 s. */
  readonly queueDeleteGraceMs?: number | undefined
  /** Bound of an `unrouted_<app>` queue (oldest dropped first). Default 10,000. */
  readonly unroutedMaxLength?: number | undefined
  /** How long a `replies_<id>` queue may stay unused before the broker deletes it. Default 5 minutes. */
  readonly repliesExpireMs?: number | undefined
  /** Cap of the reconnect backoff. Default 5 s. */
  readonly reconnectMaxMs?: number | undefined
  /** AMQP heartbeat in seconds; 0 disables. Default 10. */
  readonly heartbeatSeconds?: number | undefined
  /** Channels for queue declarations, and as many for deletions. Default 4. */
  readonly sideChannels?: number | undefined
}

/** The sizes, delays and topic prefixes of the driver's parts (where to connect: `connectTarget`). */
export const resolveSettings = (options: AmqpOptions) => ({
  unroutedPrefix: (options.subjectPrefix ?? "") + "unrouted_",
  repliesPrefix: (options.subjectPrefix ?? "") + "replies_",
  repliesExpireMs: options.repliesExpireMs ?? 300_000,
  publishBufferSize: Math.max(0, options.publishBufferSize ?? 10_000),
  publishBufferBytes: Math.max(0, options.publishBufferBytes ?? 64 * 1024 * 1024),
  confirmWindow: Math.max(1, options.confirmWindow ?? 4096),
  prefetch: Math.max(1, options.prefetch ?? 256),
  graceMs: Math.max(0, options.queueDeleteGraceMs ?? 60_000),
  unroutedMaxLength: options.unroutedMaxLength ?? 10_000,
  sideChannels: Math.max(1, options.sideChannels ?? 4),
  reconnectMaxMs: options.reconnectMaxMs ?? 5000
})

export type AmqpSettings = ReturnType<typeof resolveSettings>
