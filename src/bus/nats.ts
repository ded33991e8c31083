/**
 * The NATS driver of the bus port (@nats-io/transport-node 3.x).
 *
 * Wire format is the seed's: subject = topic name, payload = the JSON string's bytes, no headers,
 * no reply subject; a subscription with a queue group is a NATS queue subscription.
 *
 * Connection loss: the client reconnects forever and re-sends its subscriptions by itself. What
 * is published meanwhile goes into a buffer of ours, bounded by a count and a byte budget (nats.js
 * discards its own outbound buffer when it redials), and is written in order once the driver has
 * resynchronised after the reconnect; overflow is counted (`stats().dropped`) and logged, one line
 * per outage. Messages written into a connection that then dies are not lost either: the driver
 * sends a PING behind each tick's writes and keeps every message until a PONG confirms the
 * server read it; what is unconfirmed when the connection dies goes back in front of the buffer and
 * is written again after the reconnect (`stats().republished`). The server may have read some of
 * them, so a subscriber can receive those twice: dialog events carry `seq` for that. What does not
 * fit the buffer's budget is counted as lost (`stats().unconfirmedLost`; the oldest first, being the
 * likeliest to have reached the server). A broker that is down at startup does not
 * fail the layer: the first connection is retried with backoff in the background and `state` says
 * "reconnecting" until it succeeds.
 *
 * JetStream mode (`jetstream`, off by default): topics under `subjectPrefix` are published with a
 * message id (`Nats-Msg-Id`) and a reply subject; the stream capturing `<prefix>>` (created or
 * checked at each connection: natsStream.ts) answers each with an acknowledgement on one
 * subscription of ours. At most `ackWindow` messages (and `ackWindowBytes`) await theirs; beyond,
 * `tryPublish` says false and `publish` suspends. After a reconnect (or when acknowledgements stop
 * coming for `ackTimeoutMs`) every unacknowledged message is written again, in order and with its
 * id, before anything newer: the stream drops the ones it already has. Core subscribers receive
 * the messages live as before (a JetStream publish is a subject publish), plus the header and reply
 * subject, and may see a republished message twice. Broadcasts (presence) are plain publishes in
 * either mode: live state, not history, they await no acknowledgement and take no room in the
 * window (the stream still captures them, as any subject under the prefix).
 */
import {
  connect,
  createInbox,
  credsAuthenticator,
  headers,
  nkeyAuthenticator,
  type Authenticator,
  type Msg,
  type NatsConnection,
  type NodeConnectionOptions,
  type Status,
  type Subscription as NatsSubscription
} from "@nats-io/transport-node"
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { Deferred, Duration, Effect, Layer, Queue, Redacted, Runtime, Stream, SubscriptionRef } from "effect"
import type { Scope } from "effect"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import { redactUrl } from "../config/redact.js"
import { type ActorSystem, makeActorSystem } from "../actor/ActorSystem.js"
import { Fifo } from "../actor/Fifo.js"
import { UnconfirmedWrites } from "./unconfirmedWrites.js"
import {
  Bus,
  type BusConnectionState,
  type BusError,
  type BusShape,
  type MessageHandler,
  scopedSubscribe,
  type SubscribeOptions,
  type Subscription
} from "./Bus.js"
import { retrySchedule } from "../resilience/retry.js"
import { SubscriptionInbox } from "./inbox.js"
import {
  busError,
  busRetryPolicy,
  connectRetrying,
  FirstOnly,
  OutageLosses,
  reveal,
  type Secret
} from "./internal.js"
import {
  DEFAULT_STREAM,
  ensureStream,
  jetStreamPrefixProblem,
  streamNameProblem,
  type StreamSettings
} from "./natsStream.js"

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

const DRIVER = "nats"

interface ParsedServers {
  readonly servers: Array<string>
  readonly user?: string
  readonly password?: string
  readonly token?: string
}

/** Splits the server list and moves credentials out of the URLs (nats.js 3 ignores URL userinfo). */
const parseServers = (servers: string | ReadonlyArray<string>): ParsedServers => {
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

const clientOptions = (options: NatsOptions): NodeConnectionOptions => {
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

interface ClientInternals {
  readonly protocol?: {
    readonly connected?: boolean
    readonly transport?: object
    readonly subscriptions?: { size(): number }
  }
}

/** nats.js's own view of the socket; it turns false in the same tick as the disconnect status is queued. */
const socketConnected = (nc: NatsConnection): boolean => (nc as ClientInternals).protocol?.connected !== false

/** The client's current socket: nats.js makes a new one for every dial, so a change means a new connection. */
const transportOf = (nc: NatsConnection): object | undefined => (nc as ClientInternals).protocol?.transport

const clientSubscriptions = (nc: NatsConnection | undefined): number =>
  nc === undefined ? 0 : (nc as ClientInternals).protocol?.subscriptions?.size() ?? 0


/** One message the driver holds: waiting to be written, or (JetStream) written and awaiting its acknowledgement. */
class Outgoing {
  /** Resumes the `publish` waiting for this message to be written (the JetStream window was full). */
  resume: (() => void) | undefined = undefined
  written = false
  /** Core NATS: written once already, into a connection that died before confirming it. */
  again = false
  /** JetStream: the resynchronisation after which it was last written; an answer to an older write is stale. */
  writtenIn = 0
  constructor(
    readonly topic: string,
    /** Text, or (a write of a dead connection taken back) the bytes already encoded. */
    readonly payload: string | Uint8Array,
    /** UTF-8 bytes of the payload: what the buffer and the window budgets count. */
    readonly bytes: number,
    /** JetStream: its message id and acknowledgement subject token; 0 for a plain subject publish. */
    readonly id: number
  ) {}
}

interface JetStreamSettings extends StreamSettings {
  readonly ackWindow: number
  readonly ackWindowBytes: number
  readonly ackTimeoutMs: number
}

const MIB = 1024 * 1024

const jetStreamSettings = (subjectPrefix: string, options: NatsJetStreamOptions): JetStreamSettings | string => {
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

type Acknowledgement = "stored" | { readonly errCode: number; readonly description: string }

/** JetStream's "temporarily unavailable" (a cluster electing a leader): worth writing again. */
const TEMPORARILY_UNAVAILABLE = 10008

/** A publish acknowledgement: `{"stream":..,"seq":..}`, or `{"error":{..}}`; undefined if it is neither. */
const readAcknowledgement = (text: string): Acknowledgement | undefined => {
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

export const makeNatsBus = (options: NatsOptions): Effect.Effect<NatsBus, BusError, Scope.Scope> =>
  Effect.gen(function*() {
    const connectionOptions = clientOptions(options)
    const serversForLog = parseServers(options.servers).servers.map(redactUrl).join(",")
    const publishBufferSize = Math.max(0, options.publishBufferSize ?? 10_000)
    const publishBufferBytes = Math.max(0, options.publishBufferBytes ?? 64 * MIB)
    const subjectPrefix = options.subjectPrefix ?? ""
    const reconnectPolicy = busRetryPolicy(options.connectRetryMaxMs ?? 5000)
    const settings = options.jetstream === undefined ? undefined : jetStreamSettings(subjectPrefix, options.jetstream)
    if (typeof settings === "string") return yield* Effect.fail(busError(DRIVER, "jetstream", settings))
    const jetstream = settings

    const runtime = yield* Effect.runtime<never>()
    const runLog = (effect: Effect.Effect<void>) =>
      Runtime.runFork(runtime)(effect.pipe(Effect.annotateLogs({ driver: DRIVER })))
    const state = yield* SubscriptionRef.make<BusConnectionState>("reconnecting")
    // Every subscription's inbox; made before the connection, so closed after its drain.
    const inboxes = yield* makeActorSystem
    const firstConnection = yield* Deferred.make<NatsConnection>()
    /** Done once the first connection is resynchronised or its first attempt failed; failed: the stream is unusable. */
    const started = yield* Deferred.make<void, BusError>()
    /** Resynchronisations asked for (connected, reconnected, acknowledgements stopped); one runs at a time. */
    const resyncRequests = yield* Queue.sliding<void>(1)

    let nc: NatsConnection | undefined
    /** The socket publishes go straight to, once resynchronised after (re)connecting; undefined meanwhile. */
    let link: object | undefined
    let resyncs = 0
    let closing = false
    /** Accepted, not yet written, oldest first: the reconnect buffer, or (JetStream) the queue for the window. */
    const waiting = new Fifo<Outgoing>()
    let waitingBytes = 0
    /** JetStream: written and not yet acknowledged, in the order written. */
    const unacked = new Map<number, Outgoing>()
    let unackedBytes = 0
    let lastId = 0
    // Per bus instance, so that a restarted proxy's ids never collide with its predecessor's in the duplicate window.
    const messageIdPrefix = randomBytes(9).toString("base64url") + "-"
    const ackPrefix = createInbox() + "."
    /** Called when nothing awaits an acknowledgement or waits any more (the close waits for it). */
    let onIdle: (() => void) | undefined

    let published = 0
    let dropped = 0
    let unconfirmedLost = 0
    let acknowledged = 0
    let republished = 0
    let rejected = 0
    let reconnects = 0
    let subscriptions = 0
    const rejectionLog = new FirstOnly(runLog)
    const outageLosses = new OutageLosses(
      "NATS outage: messages lost (the publish buffer full, or unconfirmed)",
      ["dropped", "unconfirmed"],
      { bufferSize: publishBufferSize, bufferBytes: publishBufferBytes }
    )

    // Core NATS writes are confirmed by a PONG: the server answers a PING after reading everything before it.
    let coreWritten = 0
    let coreConfirmed = 0
    /** The socket the unconfirmed core writes went to. */
    let coreTransport: object | undefined
    let pingQueued = false
    const unconfirmedWrites = new UnconfirmedWrites()

    /** The server read everything up to `mark`: forget those messages. */
    const confirmUpTo = (mark: number) => {
      if (mark <= coreConfirmed) return
      unconfirmedWrites.confirm(mark - coreConfirmed)
      coreConfirmed = mark
    }

    /**
     * The connection of the unconfirmed writes died: they go back in front of the buffer, to be written
     * again after the reconnect, as far as its count and bytes allow; the oldest beyond it are lost.
     */
    const reclaimUnconfirmed = () => {
      coreConfirmed = coreWritten
      if (unconfirmedWrites.length === 0) return
      const writes = unconfirmedWrites.takeAll()
      const reclaimed: Array<Outgoing> = []
      let count = waiting.length
      let bytes = waitingBytes
      let lost = 0
      for (let i = writes.length - 1; i >= 0; i--) {
        const { payload, topic } = writes[i]!
        const size = payload.byteLength
        if (count >= publishBufferSize || bytes + size > publishBufferBytes) {
          lost = i + 1
          break
        }
        const entry = new Outgoing(topic, payload, size, 0)
        entry.again = true
        reclaimed.push(entry)
        count++
        bytes += size
      }
      reclaimed.reverse()
      waiting.prependAll(reclaimed)
      waitingBytes = bytes
      unconfirmedLost += lost
      outageLosses.count("unconfirmed", lost)
    }

    /**
     * A PING behind the tick's core writes: its PONG confirms everything written before it. One per
     * tick that wrote, several may be in flight: a write is kept about one round trip, not two.
     */
    const confirmWrites = (connection: NatsConnection) => {
      pingQueued = false
      const transport = coreTransport
      if (transportOf(connection) !== transport || !socketConnected(connection)) return reclaimUnconfirmed()
      const mark = coreWritten
      connection.flush().then(
        () => {
          // Reclaimed already when the new socket was resynchronised.
          if (coreTransport !== transport) return
          // A PONG read on another socket says nothing of what went into this one.
          if (transportOf(connection) !== transport) return reclaimUnconfirmed()
          confirmUpTo(mark)
        },
        () => {
          // nats.js rejects the PINGs of a connection that died when it dials again
          if (coreTransport === transport) reclaimUnconfirmed()
        }
      )
    }

    // Queued before the client's own flush of the tick (see writeCore): the PING goes out in the same write.
    const confirmSoon = (connection: NatsConnection) => {
      if (pingQueued) return
      pingQueued = true
      queueMicrotask(() => confirmWrites(connection))
    }

    /** A plain subject publish (throws what the client throws). */
    const writeCore = (connection: NatsConnection, topic: string, payload: string | Uint8Array) => {
      const transport = transportOf(connection)
      if (transport !== coreTransport) {
        reclaimUnconfirmed()
        coreTransport = transport
      }
      confirmSoon(connection)
      // Encoded here rather than by the client (which would do the same), to be kept until confirmed.
      connection.publish(topic, unconfirmedWrites.add(topic, payload))
      coreWritten++
    }

    const captured = (topic: string) => jetstream !== undefined && topic.startsWith(subjectPrefix)

    const writeToStream = (connection: NatsConnection, entry: Outgoing) => {
      const messageHeaders = headers()
      messageHeaders.set("Nats-Msg-Id", messageIdPrefix + entry.id)
      connection.publish(entry.topic, entry.payload, { headers: messageHeaders, reply: ackPrefix + entry.id })
      entry.writtenIn = resyncs
    }

    const windowHasRoom = (bytes: number) =>
      jetstream !== undefined && unacked.size < jetstream.ackWindow &&
      (unackedBytes === 0 || unackedBytes + bytes <= jetstream.ackWindowBytes)

    /** Writes a new stream message; it awaits its acknowledgement from now on (throws what the client throws). */
    const sendToStream = (connection: NatsConnection, entry: Outgoing) => {
      writeToStream(connection, entry)
      unacked.set(entry.id, entry)
      unackedBytes += entry.bytes
    }

    /** The connection, if publishes may be written to it right now. */
    const usable = (): NatsConnection | undefined => {
      const connection = nc
      return link !== undefined && connection !== undefined && transportOf(connection) === link &&
          socketConnected(connection) ?
        connection :
        undefined
    }

    const reject = (entry: Outgoing, reason: string) => {
      rejected++
      rejectionLog.log(Effect.logError("NATS refused a message; it is lost (counted in stats().rejected)").pipe(
        Effect.annotateLogs({ topic: entry.topic, reason })
      ))
    }

    /** Writes what waits, in order, while the link is up (stream messages while the window has room). */
    const pump = () => {
      const connection = usable()
      if (connection === undefined) return
      while (waiting.length > 0) {
        const entry = waiting.peek()!
        if (entry.id !== 0 && !windowHasRoom(entry.bytes)) break
        waiting.shift()
        waitingBytes -= entry.bytes
        try {
          if (entry.id !== 0) sendToStream(connection, entry)
          else writeCore(connection, entry.topic, entry.payload)
          if (entry.again) republished++
          else published++
        } catch (error) {
          reject(entry, error instanceof Error ? error.message : String(error))
        }
        entry.written = true
        const resume = entry.resume
        if (resume !== undefined) {
          entry.resume = undefined
          resume()
        }
      }
    }

    /** Connected, but older messages wait or the window is full: queue behind them until written. */
    const awaitTurn = (entry: Outgoing): Effect.Effect<void> => {
      waiting.push(entry)
      waitingBytes += entry.bytes
      pump()
      if (entry.written) return Effect.void
      return Effect.async<void>((resume) => {
        if (entry.written || link === undefined) return resume(Effect.void)
        entry.resume = () => resume(Effect.void)
        return Effect.sync(() => {
          entry.resume = undefined
        })
      })
    }

    /** Disconnected or resynchronising: kept for after the reconnect, within the buffer's count and bytes. */
    const hold = (entry: Outgoing) => {
      if (waiting.length >= publishBufferSize || waitingBytes + entry.bytes > publishBufferBytes) {
        dropped++
        outageLosses.count("dropped")
        return
      }
      waiting.push(entry)
      waitingBytes += entry.bytes
    }

    /** `toStream`: published for the JetStream stream to acknowledge (topics under the prefix, broadcasts aside). */
    const publishNow = (topic: string, payload: string, toStream: boolean): Effect.Effect<void, BusError> => {
      if (closing) return Effect.fail(busError(DRIVER, "publish", "the bus is closed"))
      const connection = usable()
      if (connection !== undefined && waiting.length === 0) {
        try {
          if (!toStream) {
            writeCore(connection, topic, payload)
            published++
            return Effect.void
          }
          const bytes = Buffer.byteLength(payload)
          if (!windowHasRoom(bytes)) return awaitTurn(new Outgoing(topic, payload, bytes, ++lastId))
          sendToStream(connection, new Outgoing(topic, payload, bytes, ++lastId))
          published++
          return Effect.void
        } catch (error) {
          return Effect.fail(busError(DRIVER, "publish", error))
        }
      }
      const entry = new Outgoing(topic, payload, Buffer.byteLength(payload), toStream ? ++lastId : 0)
      if (connection !== undefined) return awaitTurn(entry)
      hold(entry)
      return Effect.void
    }

    // Hot path: one suspend per message, the client call itself is synchronous.
    const publish = (topic: string, payload: string): Effect.Effect<void, BusError> =>
      Effect.suspend(() => publishNow(topic, payload, captured(topic)))

    // A plain subscription gets every message: a broadcast is a plain publish, never awaiting an acknowledgement.
    const broadcast = (topic: string, payload: string): Effect.Effect<void, BusError> =>
      Effect.suspend(() => publishNow(topic, payload, false))

    const tryPublish = (topic: string, payload: string): boolean => {
      const connection = usable()
      if (connection === undefined || waiting.length > 0 || closing) return false
      try {
        if (!captured(topic)) {
          writeCore(connection, topic, payload)
        } else {
          const bytes = Buffer.byteLength(payload)
          if (!windowHasRoom(bytes)) return false
          sendToStream(connection, new Outgoing(topic, payload, bytes, ++lastId))
        }
        published++
        return true
      } catch {
        return false // `publish` reports the error
      }
    }

    const settle = (entry: Outgoing) => {
      unacked.delete(entry.id)
      unackedBytes -= entry.bytes
      if (waiting.length > 0) pump()
      if (onIdle !== undefined && unacked.size === 0 && waiting.length === 0) onIdle()
    }

    /** Closes the gate and asks for a resynchronisation (unless one is due already). */
    const requestResync = (reason: string) => {
      if (link === undefined) return
      link = undefined
      runLog(Effect.logWarning(`NATS JetStream: ${reason}; writing the unacknowledged messages again`).pipe(
        Effect.annotateLogs({ awaitingAck: unacked.size })
      ))
      Queue.unsafeOffer(resyncRequests, undefined)
    }

    const onAcknowledgement = (error: Error | null, msg: Msg) => {
      if (error !== null) return
      const entry = unacked.get(Number(msg.subject.slice(ackPrefix.length)))
      if (entry === undefined) return // answered already (it was written twice), or not an id of ours
      if (msg.data.length === 0) {
        // 503 "no responders": no stream took it (JetStream restarting, the stream deleted)
        if (msg.headers?.code === 503 && entry.writtenIn === resyncs) requestResync("the stream did not answer")
        return
      }
      const answer = readAcknowledgement(msg.string())
      if (answer === undefined) return
      if (answer === "stored") {
        acknowledged++
      } else if (answer.errCode === TEMPORARILY_UNAVAILABLE) {
        if (entry.writtenIn === resyncs) requestResync(`the stream is unavailable (${answer.description})`)
        return
      } else {
        reject(entry, answer.description)
      }
      settle(entry)
    }

    /** Acknowledgements that stop coming (lost in a cluster election, a stream recreated) are asked again. */
    const watchAcknowledgements = (settings: JetStreamSettings) => {
      let oldest: Outgoing | undefined
      let oldestWrittenIn = -1
      return Effect.sleep(Duration.millis(settings.ackTimeoutMs)).pipe(
        Effect.zipRight(Effect.sync(() => {
          const head: Outgoing | undefined = link === undefined ? undefined : unacked.values().next().value
          if (head !== undefined && head === oldest && head.writtenIn === oldestWrittenIn) {
            requestResync(`no acknowledgement for ${settings.ackTimeoutMs} ms`)
          }
          oldest = head
          oldestWrittenIn = head?.writtenIn ?? -1
        })),
        Effect.forever
      )
    }

    let streamProblemLogged = false
    /** Creates or checks the stream, retrying while the connection is up; false if it dropped meanwhile. */
    const streamReady = (connection: NatsConnection, settings: JetStreamSettings) =>
      ensureStream(connection, settings).pipe(
        Effect.tap((outcome) => {
          const wasBroken = streamProblemLogged
          streamProblemLogged = false
          return outcome === "created" || wasBroken ?
            Effect.logInfo(`NATS JetStream stream ${outcome === "created" ? "created" : "usable"}`).pipe(
              Effect.annotateLogs({ stream: settings.name, subjects: `${settings.subjectPrefix}>` })
            ) :
            Effect.void
        }),
        Effect.tapError((problem) => {
          const first = !streamProblemLogged
          streamProblemLogged = true
          const log = problem._tag === "StreamUnusable" ?
            (first ? Effect.logError(problem.message) : Effect.logDebug(problem.message)) :
            (first ? Effect.logWarning : Effect.logDebug)("NATS JetStream API unreachable, retrying").pipe(
              Effect.annotateLogs({ error: problem.message })
            )
          return problem._tag === "StreamUnusable" ?
            Effect.zipRight(log, Deferred.fail(started, busError(DRIVER, "jetstream", problem.message))) :
            log
        }),
        Effect.retry({
          schedule: retrySchedule(reconnectPolicy),
          while: () => socketConnected(connection) && !closing
        }),
        Effect.as(true),
        Effect.orElseSucceed(() => false)
      )

    /** After (re)connecting: the stream checked, the unacknowledged written again, then what waited; then open. */
    const resync = Effect.gen(function*() {
      const connection = nc!
      link = undefined
      if (jetstream !== undefined && !(yield* streamReady(connection, jetstream))) return
      if (!socketConnected(connection) || closing) return
      resyncs++
      rejectionLog.rearm()
      const transport = transportOf(connection)
      // What went into an earlier socket and was not confirmed is written again, whether or not its PING was answered.
      if (coreTransport !== transport) {
        reclaimUnconfirmed()
        coreTransport = transport
      }
      const again = unacked.size
      for (const entry of unacked.values()) writeToStream(connection, entry)
      republished += again
      link = transport
      const buffered = waiting.length
      pump()
      yield* SubscriptionRef.set(state, "connected")
      yield* Deferred.succeed(started, undefined)
      if (again > 0 || buffered > 0) {
        yield* Effect.logInfo("NATS: wrote the messages held during the interruption").pipe(
          Effect.annotateLogs({ republished: again, buffered, stillWaiting: waiting.length })
        )
      }
      yield* outageLosses.report
    }).pipe(Effect.catchAllDefect((defect) => Effect.logError("NATS resynchronisation failed", defect)))

    const onStatus = (status: Status): Effect.Effect<void> => {
      switch (status.type) {
        case "disconnect": {
          link = undefined
          // Publishers waiting for the window are accepted into the reconnect buffer.
          const held = waiting.takeAll()
          for (const entry of held) {
            const resume = entry.resume
            entry.resume = undefined
            if (resume !== undefined) resume()
          }
          waiting.prependAll(held)
          // Older still: what the dead socket took and the server never confirmed.
          reclaimUnconfirmed()
          return Effect.zipRight(
            SubscriptionRef.set(state, "reconnecting"),
            Effect.logWarning("NATS connection lost, reconnecting").pipe(Effect.annotateLogs({ server: status.server }))
          )
        }
        case "reconnect":
          reconnects++
          return Effect.zipRight(
            Queue.offer(resyncRequests, undefined),
            Effect.logInfo("NATS reconnected").pipe(Effect.annotateLogs({ server: status.server, reconnects }))
          )
        case "error":
          return Effect.logWarning("NATS server error").pipe(Effect.annotateLogs({ error: String(status.error) }))
        case "slowConsumer":
          return Effect.logWarning("NATS slow consumer").pipe(
            Effect.annotateLogs({ subscription: status.sub.getSubject() })
          )
        case "ldm":
          return Effect.logWarning("NATS server entering lame duck mode")
        case "close":
          link = undefined
          return SubscriptionRef.set(state, "closed")
        default:
          return Effect.void
      }
    }

    const connectAndWatch = Effect.gen(function*() {
      const connection = yield* connectRetrying({
        driver: DRIVER,
        broker: "NATS",
        target: { servers: serversForLog },
        connect: () => connect(connectionOptions),
        close: (connection: NatsConnection) => void connection.close(),
        retry: reconnectPolicy,
        onFailure: Deferred.succeed(started, undefined) // a broker down at startup does not hold up the start
      })
      nc = connection
      // Live before the first stream publish: the stream check's request follows this SUB on the socket.
      if (jetstream !== undefined) connection.subscribe(`${ackPrefix}*`, { callback: onAcknowledgement })
      yield* Deferred.succeed(firstConnection, connection)
      yield* Queue.offer(resyncRequests, undefined)
      yield* Effect.logInfo("NATS connected").pipe(Effect.annotateLogs({ server: redactUrl(connection.getServer()) }))
      // Ends when the connection closes (the drain finalizer below closes it first: effect-notes gotcha 1).
      yield* Stream.fromAsyncIterable(connection.status(), (error) => busError(DRIVER, "status", error)).pipe(
        Stream.runForEach(onStatus)
      )
    }).pipe(Effect.annotateLogs({ driver: DRIVER }))

    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Queue.take(resyncRequests), resync)).pipe(
      Effect.annotateLogs({ driver: DRIVER })
    ))
    if (jetstream !== undefined) {
      yield* Effect.forkScoped(watchAcknowledgements(jetstream))
    }
    yield* Effect.forkScoped(connectAndWatch)
    // Registered after the forks, so it runs before they are interrupted.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closing = true
        if (link !== undefined && (unacked.size > 0 || waiting.length > 0)) {
          // The last acknowledgements; bounded, so that a broker that stopped answering cannot hold up the stop.
          yield* Effect.async<void>((resume) => {
            onIdle = () => resume(Effect.void)
            return Effect.sync(() => {
              onIdle = undefined
            })
          }).pipe(Effect.interruptible, Effect.timeout("2 seconds"), Effect.ignore)
        }
        link = undefined
        const connection = nc
        if (waiting.length > 0 || unacked.size > 0) {
          yield* Effect.logWarning("NATS closing with undelivered messages").pipe(
            Effect.annotateLogs({ buffered: waiting.length, awaitingAck: unacked.size })
          )
        }
        yield* outageLosses.report
        if (connection === undefined || connection.isClosed()) return
        // Both bounded: a server that stopped answering (hung, or paused) would hold up the stop forever.
        // (Each wait is made interruptible: a finalizer runs uninterruptibly, where a timeout cuts nothing short.)
        yield* Effect.promise(() => connection.drain().catch(() => undefined)).pipe(
          Effect.interruptible, // a finalizer runs uninterruptibly: else the timeout could not cut the drain short
          Effect.timeoutTo({ duration: "2 seconds", onSuccess: () => true, onTimeout: () => false }),
          Effect.flatMap((drained) =>
            drained ? Effect.void : Effect.promise(() => connection.close()).pipe(
              Effect.interruptible,
              Effect.timeout("1 second"),
              Effect.catchTag("TimeoutException", () => Effect.logWarning("NATS connection did not close in time"))
            )
          )
        )
        yield* SubscriptionRef.set(state, "closed")
      }).pipe(Effect.annotateLogs({ driver: DRIVER }))
    )
    // JetStream: an unusable stream found at the first connection fails the start, with its reason.
    if (jetstream !== undefined) yield* Deferred.await(started)

    /**
     * Completes once the server has processed everything sent so far (our SUB included). The
     * subscriptions made in one tick share one round trip: the flush is sent on a microtask,
     * after all their SUBs (a burst of new dialogs would otherwise cost a PING/PONG each).
     */
    let nextFlush: Promise<void> | undefined
    const flushSoon = (connection: NatsConnection): Promise<void> => {
      if (nextFlush === undefined) {
        nextFlush = new Promise<void>((resolve, reject) =>
          queueMicrotask(() => {
            nextFlush = undefined
            connection.flush().then(resolve, reject)
          })
        )
      }
      return nextFlush
    }
    /** Waits for the round trip; a flush lost to a disconnect is asked again (the client re-sends the SUB). */
    const awaitLive = (connection: NatsConnection): Effect.Effect<void, BusError> =>
      Effect.async<void, BusError>((resume) => {
        flushSoon(connection).then(
          () => resume(Effect.void),
          (error) =>
            resume(
              closing || connection.isClosed()
                ? Effect.fail(busError(DRIVER, "subscribe", error))
                : Effect.zipRight(Effect.sleep("20 millis"), awaitLive(connection))
            )
        )
      })

    const onUnsubscribed = () => {
      subscriptions--
    }

    const listen = (
      topic: string,
      handler: MessageHandler,
      subscribeOptions?: SubscribeOptions
    ): Effect.Effect<Subscription, BusError> =>
      // Per dialog, on the hot path of new calls: plain steps rather than a generator.
      Effect.flatMap(nc === undefined ? Deferred.await(firstConnection) : Effect.succeed(nc), (connection) => {
        const listening = new Listening(inboxes, topic, handler, onUnsubscribed)
        const queue = subscribeOptions?.broadcast === true ? undefined : subscribeOptions?.queue
        try {
          listening.subscription = connection.subscribe(topic, {
            ...(queue !== undefined && queue !== "" ? { queue } : {}),
            callback: deliverTo(listening)
          })
        } catch (error) {
          listening.stopInbox()
          return Effect.fail(busError(DRIVER, "subscribe", error))
        }
        subscriptions++
        return awaitLive(connection).pipe(Effect.onError(() => listening.close), Effect.as<Subscription>(listening))
      })

    const bus: NatsBus = {
      driver: "nats",
      retainsUnconsumed: false,
      publish,
      tryPublish,
      broadcast,
      listen,
      subscribe: scopedSubscribe(listen),
      retire: () => Effect.void,
      state: SubscriptionRef.get(state),
      stats: () => ({
        published,
        buffered: waiting.length,
        bufferedBytes: waitingBytes,
        dropped,
        unconfirmedLost,
        acknowledged,
        awaitingAck: unacked.size,
        republished,
        rejected,
        lost: dropped + unconfirmedLost + rejected,
        reconnects,
        subscriptions
      }),
      clientSubscriptionCount: () => clientSubscriptions(nc)
    }
    return bus
  })

/** The client's callback of a subscription (made apart, so that it keeps nothing else alive). */
const deliverTo = (listening: Listening) => (error: Error | null, msg: Msg) => {
  if (error === null) listening.offer(msg.string())
}

/** A live subscription and its own inbox: a class, so that 10,000 of them share their methods. */
class Listening extends SubscriptionInbox<string> implements Subscription {
  subscription: NatsSubscription | undefined = undefined

  constructor(
    inboxes: ActorSystem,
    topic: string,
    private readonly handler: MessageHandler,
    private readonly onUnsubscribed: () => void
  ) {
    super(inboxes, topic)
  }

  protected handle(payload: string): Effect.Effect<void> | void {
    return this.handler(payload)
  }

  get close(): Effect.Effect<void> {
    return Effect.sync(() => {
      if (this.stopped) return
      this.stopInbox()
      this.onUnsubscribed()
      if (this.subscription === undefined) return
      try {
        if (!this.subscription.isClosed()) this.subscription.unsubscribe()
      } catch {
        // the connection is closing: the subscription goes with it
      }
    })
  }
}

export const layerNats = (options: NatsOptions): Layer.Layer<Bus, BusError> => Layer.scoped(Bus, makeNatsBus(options))

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

export const layerNatsFromConfig = (config: ProxyConfig): Layer.Layer<Bus, BusError> =>
  layerNats(natsOptionsFromConfig(config))
