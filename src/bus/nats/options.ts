/**
 * The NATS driver's options, its stats, and what they become: nats.js's connection options (from
 * the driver's options) and the driver's options (from the proxy configuration).
 */
import {
  type Authenticator,
  credsAuthenticator,
  nkeyAuthenticator,
  type NodeConnectionOptions
} from "@nats-io/transport-node"
import { readFileSync } from "node:fs"
import { Redacted } from "effect"
import type { ProxyConfig } from "../../config/ProxyConfig.js"
import type { BusShape } from "../Bus.js"
import { reveal, type Secret } from "../internal.js"

export interface NatsTlsOptions {
  /** Paths of PEM files. */
  readonly ca?: string | undefined
  readonly cert?: string | undefined
  readonly key?: string | undefined
}

export interface NatsJetStreamOptions {
  /** Stream name. Default "ARI_PROXY". */
  readonly stream?: string | undefined
  /** Retention: messages older than this are removed. Default 24 hours. */
  readonly maxAgeMs?: number | undefined
  /** Retention: past this size the oldest messages are removed. Default 1 GiB. */
  readonly maxBytes?: number | undefined
  /** How long the stream remembers a message id; must outlast an outage. Default 2 minutes. */
  readonly duplicateWindowMs?: number | undefined
  /** Messages awaiting their acknowledgement at most. Default 4,096. */
  readonly ackWindow?: number | undefined
  /** Payload bytes awaiting their acknowledgement at most. Default 16 MiB. */
  readonly ackWindowBytes?: number | undefined
  /** With no acknowledgement for this long, the unacknowledged messages are written again. Default 5 s. */
  readonly ackTimeoutMs?: number | undefined
}

export interface NatsOptions {
  /**
   * Server URL(s): an array, or one string that may be a comma-separated list. A URL may carry
   * `user:password@` or `token@`; it is then used for authentication and never logged.
   */
  readonly servers: string | ReadonlyArray<string>
  /** Connection name shown by the server's monitoring (the proxy passes its server_id). */
  readonly name?: string | undefined
  readonly user?: string | undefined
  readonly password?: Secret | undefined
  readonly token?: Secret | undefined
  /** An nkey seed (`SU...`). */
  readonly nkeySeed?: Secret | undefined
  /** A credentials file (JWT + nkey seed). */
  readonly credsFile?: string | undefined
  readonly tls?: NatsTlsOptions | undefined
  /** The topic prefix in use; JetStream mode captures the topics under it. Default "". */
  readonly subjectPrefix?: string | undefined
  /** Messages kept in order while disconnected; beyond that they are counted and dropped. Default 10,000. */
  readonly publishBufferSize?: number | undefined
  /** Payload bytes kept while disconnected; beyond that messages are counted and dropped. Default 64 MiB. */
  readonly publishBufferBytes?: number | undefined
  /** Publish through a JetStream stream (undefined: core NATS only, the seed's way). */
  readonly jetstream?: NatsJetStreamOptions | undefined
  /** Outbound bytes at which the client writes to the socket inline. Default 256 KiB (nats.js: 32 KiB). */
  readonly flushThresholdBytes?: number | undefined
  /** Pause between the client's reconnect attempts to one server. Default 1 s. */
  readonly reconnectTimeWaitMs?: number | undefined
  /** Cap of the backoff between attempts of the first connection. Default 5 s. */
  readonly connectRetryMaxMs?: number | undefined
}

export interface NatsBusStats {
  /** Messages handed to the client, each once (written again after a reconnect: `republished`). */
  readonly published: number
  /** Messages accepted and not yet written (the reconnect buffer; JetStream: the window is full). */
  readonly buffered: number
  /** Their payload bytes. */
  readonly bufferedBytes: number
  /** Messages lost because the reconnect buffer was full (its count or its bytes). */
  readonly dropped: number
  /**
   * Core NATS: messages written to a connection that died before the server confirmed having read
   * them (a PONG after them) and that did not fit the reconnect buffer to be written again. Counted
   * as lost; the server may have read some of them.
   */
  readonly unconfirmedLost: number
  /** JetStream: messages the stream acknowledged (duplicates it dropped included). */
  readonly acknowledged: number
  /** JetStream: messages written and not yet acknowledged. */
  readonly awaitingAck: number
  /**
   * Messages written again: JetStream, the unacknowledged (after a reconnect, or acknowledgements that
   * stopped); core NATS, the unconfirmed writes into a connection that died.
   */
  readonly republished: number
  /** JetStream: messages the stream refused (an error acknowledgement); not retried. */
  readonly rejected: number
  /** Every message counted as lost: `dropped + unconfirmedLost + rejected`. */
  readonly lost: number
  /** Successful reconnects since the first connection. */
  readonly reconnects: number
  /** Live subscriptions made through this bus. */
  readonly subscriptions: number
}

export interface NatsBus extends BusShape {
  readonly driver: "nats"
  readonly stats: () => NatsBusStats
  /** Subscriptions the client itself holds (internal ones too: request inboxes, JetStream acknowledgements). */
  readonly clientSubscriptionCount: () => number
}

export const DRIVER = "nats"

interface ParsedServers {
  readonly servers: Array<string>
  readonly user?: string
  readonly password?: string
  readonly token?: string
}

/** Splits the server list and moves credentials out of the URLs (nats.js 3 ignores URL userinfo). */
export const parseServers = (servers: string | ReadonlyArray<string>): ParsedServers => {
  const list = (typeof servers === "string" ? servers.split(",") : [...servers]).map((s) => s.trim()).filter(
    (s) => s !== ""
  )
  let user: string | undefined
  let password: string | undefined
  let token: string | undefined
  const cleaned = list.map((server) => {
    const match = /^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@(.*)$/i.exec(server)
    if (match === null) return server
    const userinfo = match[2]!
    const colon = userinfo.indexOf(":")
    if (colon >= 0) {
      user = decodeURIComponent(userinfo.slice(0, colon))
      password = decodeURIComponent(userinfo.slice(colon + 1))
    } else {
      token = decodeURIComponent(userinfo)
    }
    return match[1]! + match[3]!
  })
  return {
    servers: cleaned,
    ...(user !== undefined ? { user } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(token !== undefined ? { token } : {})
  }
}

/** nats.js's connection options: credentials moved out of the URLs, reconnecting forever. */
export const clientOptions = (options: NatsOptions): NodeConnectionOptions => {
  const parsed = parseServers(options.servers)
  const user = options.user ?? parsed.user
  const password = reveal(options.password) ?? parsed.password
  const token = reveal(options.token) ?? parsed.token
  const nkeySeed = reveal(options.nkeySeed)
  const authenticators: Array<Authenticator> = []
  if (nkeySeed !== undefined) authenticators.push(nkeyAuthenticator(new TextEncoder().encode(nkeySeed)))
  if (options.credsFile !== undefined) {
    const credsFile = options.credsFile
    // Read on each (re)connect so a rotated credentials file is picked up.
    authenticators.push(credsAuthenticator(() => new Uint8Array(readFileSync(credsFile))))
  }
  const tls = options.tls
  const wantsTls = tls !== undefined && (tls.ca !== undefined || tls.cert !== undefined || tls.key !== undefined)
  const connectionOptions: NodeConnectionOptions & { pendingLimit: number } = {
    servers: parsed.servers,
    maxReconnectAttempts: -1,
    reconnectTimeWait: options.reconnectTimeWaitMs ?? 1000,
    // A half-open connection (NAT timeout, VM migration) is found in ~30 s rather than nats.js'
    // default of minutes, during which publishes would go into a dead socket.
    pingInterval: 15_000,
    maxPingOut: 2,
    // Hidden nats.js option: bytes of outbound data before an inline socket write (FLUSH_THRESHOLD).
    pendingLimit: options.flushThresholdBytes ?? 256 * 1024,
    ...(options.name !== undefined ? { name: options.name } : {}),
    ...(user !== undefined ? { user } : {}),
    ...(password !== undefined ? { pass: password } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(authenticators.length > 0 ? { authenticator: authenticators } : {}),
    ...(wantsTls ?
      {
        tls: {
          ...(tls.ca !== undefined ? { caFile: tls.ca } : {}),
          ...(tls.cert !== undefined ? { certFile: tls.cert } : {}),
          ...(tls.key !== undefined ? { keyFile: tls.key } : {})
        }
      } :
      {})
  }
  return connectionOptions
}

/** The driver's options from the proxy configuration. */
export const natsOptionsFromConfig = (config: ProxyConfig): NatsOptions => {
  const bus = config.bus
  return {
    servers: Redacted.value(bus.url),
    name: config.serverId,
    user: bus.user,
    password: bus.password,
    token: bus.token,
    nkeySeed: bus.nkeySeed,
    credsFile: bus.credsFile,
    tls: bus.tls,
    subjectPrefix: bus.subjectPrefix,
    publishBufferSize: bus.publishBufferSize,
    publishBufferBytes: bus.publishBufferBytes,
    jetstream: bus.jetstream.enabled ?
      {
        stream: bus.jetstream.stream,
        maxAgeMs: bus.jetstream.maxAgeMs,
        maxBytes: bus.jetstream.maxBytes,
        duplicateWindowMs: bus.jetstream.duplicateWindowMs,
        ackWindow: bus.jetstream.ackWindow,
        ackWindowBytes: bus.jetstream.ackWindowBytes,
        ackTimeoutMs: bus.jetstream.ackTimeoutMs
      } :
      undefined
  }
}
