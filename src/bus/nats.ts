/**
 * The NATS driver of the bus port (@nats-io/transport-node 3.x).
 *
 * Wire format is the seed's: subject = topic name, payload = the JSON string's bytes, no headers,
 * no reply subject; a subscription with a queue group is a NATS queue subscription.
 *
 * Connection loss: the client reconnects forever and re-sends its subscriptions by itself. What
 * is published meanwhile goes into a bounded buffer of ours (nats.js discards its own outbound
 * buffer when it redials) and is flushed in order as soon as the client reports the reconnect;
 * overflow is counted (`stats().dropped`) and logged once per outage. A broker that is down at
 * startup does not fail the layer: the first connection is retried with backoff in the background
 * and `state` says "reconnecting" until it succeeds.
 */
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type Authenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  type Status,
  type Subscription as NatsSubscription
} from "@nats-io/transport-node"
import { readFileSync } from "node:fs"
import { Deferred, Duration, Effect, Layer, Redacted, Stream, SubscriptionRef } from "effect"
import type { Scope } from "effect"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import { redactUrl } from "../config/redact.js"
import { type Actor, makeActorSystem } from "../actor/ActorSystem.js"
import { Fifo } from "../actor/Fifo.js"
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
import { busError, reconnectSchedule, reveal, type Secret, spawnInbox } from "./internal.js"

export interface NatsTlsOptions {
  /** Paths of PEM files. */
  readonly ca?: string | undefined
  readonly cert?: string | undefined
  readonly key?: string | undefined
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
  /** Messages kept in order while disconnected; beyond that they are counted and dropped. Default 10,000. */
  readonly publishBufferSize?: number | undefined
  /** Outbound bytes at which the client writes to the socket inline. Default 256 KiB (nats.js: 32 KiB). */
  readonly flushThresholdBytes?: number | undefined
  /** Pause between the client's reconnect attempts to one server. Default 1 s. */
  readonly reconnectTimeWaitMs?: number | undefined
  /** Cap of the backoff between attempts of the first connection. Default 5 s. */
  readonly connectRetryMaxMs?: number | undefined
}

export interface NatsBusStats {
  /** Messages handed to the client. */
  readonly published: number
  /** Messages in our reconnect buffer right now. */
  readonly buffered: number
  /** Messages lost because the reconnect buffer was full. */
  readonly dropped: number
  /** Successful reconnects since the first connection. */
  readonly reconnects: number
  /** Live subscriptions made through this bus. */
  readonly subscriptions: number
}

export interface NatsBus extends BusShape {
  readonly driver: "nats"
  readonly stats: () => NatsBusStats
  /** Subscriptions the client itself still holds (includes internal ones such as request inboxes). */
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

/** nats.js's own view of the socket; it turns false in the same tick as the disconnect status is queued. */
const socketConnected = (nc: NatsConnection): boolean =>
  (nc as unknown as { protocol?: { connected?: boolean } }).protocol?.connected !== false

const clientSubscriptions = (nc: NatsConnection | undefined): number =>
  nc === undefined ?
    0 :
    (nc as unknown as { protocol?: { subscriptions?: { size(): number } } }).protocol?.subscriptions?.size() ?? 0

export const makeNatsBus = (options: NatsOptions): Effect.Effect<NatsBus, BusError, Scope.Scope> =>
  Effect.gen(function*() {
    const connectionOptions = clientOptions(options)
    const serversForLog = parseServers(options.servers).servers.map(redactUrl).join(",")
    const publishBufferSize = Math.max(0, options.publishBufferSize ?? 10_000)
    const state = yield* SubscriptionRef.make<BusConnectionState>("reconnecting")
    // Every subscription's inbox; made before the connection, so closed after its drain.
    const inboxes = yield* makeActorSystem
    const firstConnection = yield* Deferred.make<NatsConnection>()

    let nc: NatsConnection | undefined
    /** True while we publish straight to the client; false while disconnected or flushing the buffer. */
    let linkUp = false
    let closing = false
    const buffer = new Fifo<readonly [string, string]>()
    let published = 0
    let dropped = 0
    let reconnects = 0
    let subscriptions = 0
    let overflowLogged = false

    const overflow = (topic: string) => {
      dropped++
      if (overflowLogged) return Effect.void
      overflowLogged = true
      return Effect.logWarning("NATS unreachable and the publish buffer is full: dropping messages").pipe(
        Effect.annotateLogs({ bufferSize: publishBufferSize, topic })
      )
    }

    const publishNow = (topic: string, payload: string): Effect.Effect<void, BusError> => {
      if (linkUp && nc !== undefined && socketConnected(nc)) {
        try {
          nc.publish(topic, payload)
          published++
          return Effect.void
        } catch (error) {
          return Effect.fail(busError(DRIVER, "publish", error))
        }
      }
      if (closing) return Effect.fail(busError(DRIVER, "publish", "the bus is closed"))
      // A socket that just dropped may not have been reported yet: from now on we buffer.
      linkUp = false
      if (buffer.length >= publishBufferSize) return overflow(topic)
      buffer.push([topic, payload])
      return Effect.void
    }

    // Hot path: one suspend per message, the client call itself is synchronous.
    const publish = (topic: string, payload: string): Effect.Effect<void, BusError> =>
      Effect.suspend(() => publishNow(topic, payload))

    const tryPublish = (topic: string, payload: string): boolean => {
      if (!linkUp || nc === undefined || !socketConnected(nc)) return false
      try {
        nc.publish(topic, payload)
        published++
        return true
      } catch {
        return false // `publish` reports the error
      }
    }

    /** Sends what was buffered during the outage, in order, then lets publishes through again. */
    const flushBuffer = (connection: NatsConnection) =>
      Effect.gen(function*() {
        const count = buffer.length
        let failed = 0
        while (buffer.length > 0 && socketConnected(connection)) {
          const [topic, payload] = buffer.shift()!
          try {
            connection.publish(topic, payload)
            published++
          } catch {
            failed++
          }
        }
        if (!socketConnected(connection)) return
        linkUp = true
        overflowLogged = false
        if (failed > 0) dropped += failed
        if (count > 0) yield* Effect.logInfo("NATS: flushed messages buffered while disconnected").pipe(
          Effect.annotateLogs({ count, failed })
        )
      })

    const onStatus = (connection: NatsConnection, status: Status): Effect.Effect<void> => {
      switch (status.type) {
        case "disconnect":
          linkUp = false
          return Effect.zipRight(
            SubscriptionRef.set(state, "reconnecting"),
            Effect.logWarning("NATS connection lost, reconnecting").pipe(Effect.annotateLogs({ server: status.server }))
          )
        case "reconnect":
          reconnects++
          return Effect.gen(function*() {
            yield* flushBuffer(connection)
            yield* SubscriptionRef.set(state, "connected")
            yield* Effect.logInfo("NATS reconnected").pipe(Effect.annotateLogs({ server: status.server, reconnects }))
          })
        case "error":
          return Effect.logWarning("NATS server error").pipe(Effect.annotateLogs({ error: String(status.error) }))
        case "slowConsumer":
          return Effect.logWarning("NATS slow consumer").pipe(
            Effect.annotateLogs({ subscription: status.sub.getSubject() })
          )
        case "ldm":
          return Effect.logWarning("NATS server entering lame duck mode")
        case "close":
          linkUp = false
          return SubscriptionRef.set(state, "closed")
        default:
          return Effect.void
      }
    }

    /** One connection attempt; a connection that completes after we gave up on it is closed. */
    const connectOnce = Effect.async<NatsConnection, BusError>((resume) => {
      let abandoned = false
      connect(connectionOptions).then(
        (connection) => {
          if (abandoned) void connection.close()
          else resume(Effect.succeed(connection))
        },
        (error) => resume(Effect.fail(busError(DRIVER, "connect", error)))
      )
      return Effect.sync(() => {
        abandoned = true
      })
    })

    const connectAndWatch = Effect.gen(function*() {
      const connection = yield* connectOnce.pipe(
        Effect.tapError((error) =>
          Effect.logWarning("NATS connect failed, retrying").pipe(
            Effect.annotateLogs({ servers: serversForLog, error: error.message })
          )
        ),
        Effect.retry(reconnectSchedule(Duration.millis(options.connectRetryMaxMs ?? 5000)))
      )
      nc = connection
      yield* flushBuffer(connection)
      yield* SubscriptionRef.set(state, "connected")
      yield* Deferred.succeed(firstConnection, connection)
      yield* Effect.logInfo("NATS connected").pipe(Effect.annotateLogs({ server: redactUrl(connection.getServer()) }))
      // Ends when the connection closes (the drain finalizer below closes it first: effect-notes gotcha 1).
      yield* Stream.fromAsyncIterable(connection.status(), (error) => busError(DRIVER, "status", error)).pipe(
        Stream.runForEach((status) => onStatus(connection, status))
      )
    }).pipe(Effect.annotateLogs({ driver: DRIVER }))

    yield* Effect.forkScoped(connectAndWatch)
    // Registered after the fork, so it runs before the watcher is interrupted.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closing = true
        linkUp = false
        const connection = nc
        if (buffer.length > 0) {
          yield* Effect.logWarning("NATS closing with undelivered buffered messages").pipe(
            Effect.annotateLogs({ count: buffer.length })
          )
        }
        if (connection === undefined || connection.isClosed()) return
        yield* Effect.promise(() => connection.drain().catch(() => undefined)).pipe(
          Effect.timeoutTo({ duration: "2 seconds", onSuccess: () => true, onTimeout: () => false }),
          Effect.flatMap((drained) => drained ? Effect.void : Effect.promise(() => connection.close()))
        )
        yield* SubscriptionRef.set(state, "closed")
      }).pipe(Effect.annotateLogs({ driver: DRIVER }))
    )

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
        const inbox = spawnInbox(inboxes, topic, { inline: true }, handler)
        const queue = subscribeOptions?.queue
        let subscription: NatsSubscription
        try {
          subscription = connection.subscribe(topic, {
            ...(queue !== undefined && queue !== "" ? { queue } : {}),
            callback: (error, msg) => {
              if (error === null) inbox.offer(msg.string())
            }
          })
        } catch (error) {
          inbox.stop()
          return Effect.fail(busError(DRIVER, "subscribe", error))
        }
        subscriptions++
        const listening = new Listening(inbox, subscription, onUnsubscribed)
        return awaitLive(connection).pipe(Effect.onError(() => listening.close), Effect.as<Subscription>(listening))
      })

    const bus: NatsBus = {
      driver: "nats",
      retainsUnconsumed: false,
      publish,
      tryPublish,
      listen,
      subscribe: scopedSubscribe(listen),
      retire: () => Effect.void,
      state: SubscriptionRef.get(state),
      stats: () => ({ published, buffered: buffer.length, dropped, reconnects, subscriptions }),
      clientSubscriptionCount: () => clientSubscriptions(nc)
    }
    return bus
  })

/** A live subscription: a class, so that 10,000 of them share their methods. */
class Listening implements Subscription {
  constructor(
    private readonly inbox: Actor<string>,
    private readonly subscription: NatsSubscription,
    private readonly onUnsubscribed: () => void
  ) {}

  get close(): Effect.Effect<void> {
    return Effect.sync(() => {
      if (this.inbox.stopped) return
      this.inbox.stop()
      this.onUnsubscribed()
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
    publishBufferSize: bus.publishBufferSize
  }
}

export const layerNatsFromConfig = (config: ProxyConfig): Layer.Layer<Bus, BusError> =>
  layerNats(natsOptionsFromConfig(config))
