/**
 * The RabbitMQ driver of the bus port (amqplib 2.x, promise API).
 *
 * Topology is exactly the seed's, so unmodified seed clients interoperate: the default exchange
 * "", routing key = queue name = topic, queues declared durable / not auto-delete / not exclusive
 * with no arguments (any other declaration makes the broker answer 406 to one of the two sides),
 * messages with content type application/json and delivery mode 1. A queue is declared (once,
 * cached) before we publish to it or consume it, so what is published before any consumer exists
 * is kept (`retainsUnconsumed`). Exception: `unrouted_<app>` topics exist only in ari-proxy; they
 * are declared with `x-max-length` and `x-overflow: drop-head`, so one nobody consumes cannot grow
 * forever (the newest events are kept); `replies_<id>` topics (the answers to app-initiated dialog
 * requests, ours only too) with `x-expires`, so the broker deletes one its client no longer uses
 * even if the client stopped before deleting it.
 *
 * Channels: a small fixed number per connection, whatever the number of dialogs: a confirm channel
 * for publishing, one channel for every consumer, and two small pools (`sideChannels`, default 4
 * each) for queue declarations and deletions, which the broker serves in parallel across channels
 * (a durable queue costs it 2-3 ms to create or delete). A 406 closes only the side channel it
 * happened on; it is opened again on next use.
 *
 * Publishing: messages are written at once, in order, and their confirms are awaited in the
 * background; at most `confirmWindow` messages may be unconfirmed, beyond that `publish` suspends
 * until confirms come back (a slow broker slows the publisher down; nothing is lost). If the
 * connection or a channel is lost, every unconfirmed message is published again after the
 * reconnect, before anything newer and in order: delivery is at least once (a message the broker
 * had taken but not yet confirmed arrives twice). A nack (the broker could not take a message,
 * rare) is counted and logged, not retried, since a retry would reorder the topic.
 * While disconnected, publishes are accepted into a buffer of `publishBufferSize` messages, flushed
 * in order after the reconnect; beyond that they are counted (`stats().dropped`) and logged.
 *
 * Consuming: a bounded prefetch per consumer; a delivery is acknowledged once its handler's effect
 * has completed. Deliveries received on a channel that has since died are skipped, not handled:
 * the broker requeues them and delivers them again after the reconnect.
 *
 * Retiring: `retire(topic)` deletes the queue `queueDeleteGraceMs` later (one FIFO and one fiber
 * for every retired queue, not a timer each); using the topic again before then cancels it. The
 * delete is unconditional (not if-unused, not if-empty): seed clients never cancel their
 * consumers, so "if unused" would never happen, and a queue nobody drains would never be empty.
 * The grace period is what lets a slow consumer drain first.
 */
import amqp from "amqplib"
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Options } from "amqplib"
import { readFileSync } from "node:fs"
import type { Writable } from "node:stream"
import { Duration, Effect, Layer, Runtime, Schedule, SubscriptionRef } from "effect"
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

export interface AmqpBusStats {
  /** Messages written to the broker (re-publications included). */
  readonly published: number
  /** Messages written and not yet confirmed. */
  readonly unconfirmed: number
  /** Messages accepted and not yet written (waiting for the window, a declaration or the reconnect). */
  readonly buffered: number
  /** Messages lost because the reconnect buffer was full. */
  readonly dropped: number
  /** Messages the broker nacked. */
  readonly nacked: number
  /** Unconfirmed messages published again after a connection loss. */
  readonly republished: number
  readonly reconnects: number
  /** Live subscriptions made through this bus. */
  readonly subscriptions: number
  /** Queues declared and cached. */
  readonly declaredQueues: number
  /** Retired queues waiting for their deletion. */
  readonly retiring: number
  readonly deletedQueues: number
}

export interface AmqpBus extends BusShape {
  readonly driver: "rabbitmq"
  readonly stats: () => AmqpBusStats
}

const DRIVER = "rabbitmq"

/** The seed's message properties: nothing else is set (amqplib adds the empty headers table, as the seed). */
const PUBLISH_PROPERTIES: Options.Publish = { contentType: "application/json", deliveryMode: 1 }

/** The seed's queue declaration; must stay byte-for-byte compatible (no arguments at all). */
const SEED_QUEUE: Options.AssertQueue = { durable: true, autoDelete: false, exclusive: false }

const PENDING = 0
const CONFIRMED = 1
const NACKED = 2

/** One message on its way to the broker. */
class Outgoing {
  state = PENDING
  written = false
  /** Wakes the publisher waiting for room in the confirm window. */
  resume: (() => void) | undefined = undefined
  generation = -1
  constructor(readonly topic: string, readonly payload: string) {}
}

/** One live connection with its fixed channels. */
interface Link {
  readonly generation: number
  readonly model: ChannelModel
  readonly publisher: ConfirmChannel
  readonly consumer: Channel
  /** Writes the publisher's frames now rather than at amqplib's turn (see `writeAtOnce`). */
  readonly flushPublisher: () => void
  /** Small pools for declarations and deletions: the broker serves channels in parallel (3-6x faster). */
  readonly declarers: Array<Promise<Channel> | undefined>
  readonly deleters: Array<Promise<Channel> | undefined>
  nextSide: number
}

interface Delivery {
  readonly payload: string
  readonly message: ConsumeMessage
  readonly link: Link
}

interface AmqpSubscription {
  readonly topic: string
  /** Hands deliveries to the subscription's handler (one at a time, in order). */
  readonly inbox: Actor<Delivery>
  /** Generation of the link the consumer was (or is being) started on. */
  consuming: number
  started: Promise<void> | undefined
  consumerTag: string | undefined
  closed: boolean
}

const errorCode = (error: unknown): number | undefined =>
  typeof error === "object" && error !== null && typeof (error as { code?: unknown }).code === "number" ?
    (error as { code: number }).code :
    undefined

const errorMessage = (error: unknown) => error instanceof Error ? error.message : String(error)

/**
 * amqplib writes every frame to the socket separately; corking the socket while its multiplexer
 * writes one batch turns a burst of publishes into one writev (10-20 % less CPU, see
 * performance-notes). Relies on amqplib 2.x internals, so it checks their shape and does nothing
 * if they differ.
 */
const corkBatchedWrites = (model: ChannelModel): boolean => {
  const connection = model.connection as unknown as { muxer?: { _readIncoming?: () => void; out?: Writable } }
  const muxer = connection.muxer
  const out = muxer?.out
  const readIncoming = muxer?._readIncoming
  if (muxer === undefined || out === undefined || typeof readIncoming !== "function") return false
  if (typeof out.cork !== "function" || typeof out.uncork !== "function") return false
  muxer._readIncoming = function(this: unknown) {
    out.cork()
    try {
      readIncoming.call(this)
    } finally {
      out.uncork()
    }
  }
  return true
}

/**
 * amqplib writes a channel's frames on a later setImmediate (its multiplexer's turn), which comes
 * after the rest of the tick's work: 20-110 µs after `publish` in the benchmark, on every command's
 * response. The function returned writes what `channel` holds at once, through the multiplexer (so
 * its backpressure and the cork above still apply). Only its first call in a tick writes: what is
 * published later in the same tick goes out in one batch at amqplib's turn, as before. Relies on
 * amqplib 2.x internals; returns undefined (frames wait for amqplib's turn) if their shape differs.
 * @internal exported for tests.
 */
export const writeAtOnce = (model: ChannelModel, channel: Channel): (() => void) | undefined => {
  const connection = model.connection as unknown as {
    muxer?: { newStreams?: Array<unknown>; blocked?: boolean; _readIncoming?: () => void }
    channels?: Array<{ buffer?: unknown } | null>
  }
  const muxer = connection.muxer
  const channelNumber = (channel as unknown as { ch?: unknown }).ch
  const stream = typeof channelNumber === "number" ? connection.channels?.[channelNumber]?.buffer : undefined
  if (muxer === undefined || stream === undefined || !Array.isArray(muxer.newStreams)) return undefined
  if (typeof muxer.blocked !== "boolean" || typeof muxer._readIncoming !== "function") return undefined
  let wroteThisTick = false
  const endTick = () => {
    wroteThisTick = false
  }
  return () => {
    if (wroteThisTick || muxer.blocked) return // a batch this tick, or the socket is full: amqplib's turn
    wroteThisTick = true
    process.nextTick(endTick)
    // The channel's stream joins the multiplexer's round only on its 'readable' event, a tick later.
    // (The multiplexer replaces its array when the socket fills: look it up each time.)
    const newStreams = muxer.newStreams!
    if (!newStreams.includes(stream)) newStreams.push(stream)
    muxer._readIncoming!()
  }
}

export const makeAmqpBus = (options: AmqpOptions): Effect.Effect<AmqpBus, BusError, Scope.Scope> =>
  Effect.gen(function*() {
    const url = reveal(options.url)!
    const urlForLog = redactUrl(url)
    const unroutedPrefix = (options.subjectPrefix ?? "") + "unrouted_"
    const repliesPrefix = (options.subjectPrefix ?? "") + "replies_"
    const repliesExpireMs = options.repliesExpireMs ?? 300_000
    const publishBufferSize = Math.max(0, options.publishBufferSize ?? 10_000)
    const confirmWindow = Math.max(1, options.confirmWindow ?? 4096)
    const prefetch = Math.max(1, options.prefetch ?? 256)
    const graceMs = Math.max(0, options.queueDeleteGraceMs ?? 60_000)
    const unroutedMaxLength = options.unroutedMaxLength ?? 10_000
    const heartbeat = options.heartbeatSeconds ?? 10
    const sideChannels = Math.max(1, options.sideChannels ?? 4)
    const user = options.user
    const password = reveal(options.password)
    const tls = options.tls
    const socketOptions = {
      noDelay: true, // Nagle off: 44 ms per command otherwise (performance-notes)
      timeout: 10_000,
      clientProperties: { connection_name: options.name ?? "ari-proxy" },
      ...(user !== undefined ? { credentials: amqp.credentials.plain(user, password ?? "") } : {}),
      ...(tls?.ca !== undefined ? { ca: [readFileSync(tls.ca)] } : {}),
      ...(tls?.cert !== undefined ? { cert: readFileSync(tls.cert) } : {}),
      ...(tls?.key !== undefined ? { key: readFileSync(tls.key) } : {})
    }
    const connectUrl = heartbeat > 0 && !/[?&]heartbeat=/.test(url) ?
      url + (url.includes("?") ? "&" : "?") + `heartbeat=${heartbeat}` :
      url

    const runtime = yield* Effect.runtime<never>()
    const runLog = (effect: Effect.Effect<void>) =>
      Runtime.runFork(runtime)(effect.pipe(Effect.annotateLogs({ driver: DRIVER })))
    const state = yield* SubscriptionRef.make<BusConnectionState>("reconnecting")
    // Every subscription's inbox; made before the connection, so closed after it.
    const inboxes = yield* makeActorSystem

    let link: Link | undefined
    let generation = 0
    let closing = false

    // Publishing state: `pending` is accepted but unwritten, `unconfirmed` is written, oldest first.
    const pending = new Fifo<Outgoing>()
    const unconfirmed = new Fifo<Outgoing>()
    let inflight = 0
    let published = 0
    let dropped = 0
    let nacked = 0
    let republished = 0
    let reconnects = 0
    let deletedQueues = 0
    let overflowLogged = false
    let nackLogged = false

    const declared = new Set<string>()
    const declaring = new Map<string, Promise<void>>()
    const subscriptions = new Set<AmqpSubscription>()
    const subscribedTopics = new Map<string, number>()
    const retiring = new Map<string, number>()
    const retireQueue = new Fifo<{ readonly topic: string; readonly deadline: number }>()

    const queueOptions = (topic: string): Options.AssertQueue =>
      topic.startsWith(unroutedPrefix) ?
        { ...SEED_QUEUE, arguments: { "x-max-length": unroutedMaxLength, "x-overflow": "drop-head" } } :
        topic.startsWith(repliesPrefix) ?
        { ...SEED_QUEUE, arguments: { "x-expires": repliesExpireMs } } :
        SEED_QUEUE

    /** A side channel of a pool (round robin), created on first use and again after a 406/404 closed it. */
    const sideChannel = (current: Link, pool: Array<Promise<Channel> | undefined>): Promise<Channel> => {
      const slot = current.nextSide++ % pool.length
      const existing = pool[slot]
      if (existing !== undefined) return existing
      const created = current.model.createChannel().then((channel) => {
        channel.on("error", () => undefined)
        channel.on("close", () => {
          if (pool[slot] === created) pool[slot] = undefined
        })
        return channel
      })
      created.catch(() => {
        if (pool[slot] === created) pool[slot] = undefined
      })
      pool[slot] = created
      return created
    }

    /** Declares a queue once per connection; a queue already declared differently (406) is used as it is. */
    const declare = (topic: string, current: Link): Promise<void> => {
      if (declared.has(topic)) return Promise.resolve()
      const inProgress = declaring.get(topic)
      if (inProgress !== undefined) return inProgress
      const declaration = sideChannel(current, current.declarers)
        .then((channel) => channel.assertQueue(topic, queueOptions(topic)))
        .then(
          () => {
            if (link === current) declared.add(topic)
          },
          (error: unknown) => {
            if (link !== current) throw error
            // Declared by someone else with other properties, or we may not configure it: it
            // still routes, so use it rather than stall every message behind it.
            declared.add(topic)
            runLog(
              Effect.logWarning("RabbitMQ refused the queue declaration; using the queue as it is").pipe(
                Effect.annotateLogs({ topic, code: errorCode(error), error: errorMessage(error) })
              )
            )
          }
        )
        .finally(() => {
          declaring.delete(topic)
        })
      declaring.set(topic, declaration)
      return declaration
    }

    const settle = (entry: Outgoing, error: unknown) => {
      if (entry.state !== PENDING || entry.generation !== link?.generation) return
      if (error === null || error === undefined) {
        entry.state = CONFIRMED
      } else if (errorMessage(error) === "message nacked") {
        entry.state = NACKED
        nacked++
        if (!nackLogged) {
          nackLogged = true
          runLog(Effect.logWarning("RabbitMQ nacked a message (counted in stats().nacked)").pipe(
            Effect.annotateLogs({ topic: entry.topic })
          ))
        }
      } else {
        return // the channel closed: the loss handler publishes it again
      }
      inflight--
      while (unconfirmed.length > 0 && unconfirmed.peek()!.state !== PENDING) unconfirmed.shift()
      if (pending.length > 0) pump()
    }

    const write = (entry: Outgoing, current: Link) => {
      entry.generation = current.generation
      current.publisher.publish("", entry.topic, Buffer.from(entry.payload, "utf8"), PUBLISH_PROPERTIES, (error) =>
        settle(entry, error))
      current.flushPublisher()
      entry.written = true
      inflight++
      published++
      unconfirmed.push(entry)
    }

    /**
     * Messages of topics whose queue is being declared, per topic, in order. They wait there while
     * every other topic's messages go on: one slow declaration (a burst of new dialogs declares
     * three queues each) must not hold up the events of every call.
     */
    const parked = new Map<string, Array<Outgoing>>()
    let parkedCount = 0

    const unpark = (topic: string) => {
      const entries = parked.get(topic)
      if (entries === undefined) return
      parked.delete(topic)
      parkedCount -= entries.length
      pending.prependAll(entries) // older than anything of their topic still in `pending`
      pump()
    }

    /** Everything parked, for the reconnect buffer (per-topic order kept). */
    const takeParked = (): Array<Outgoing> => {
      const all: Array<Outgoing> = []
      for (const entries of parked.values()) all.push(...entries)
      parked.clear()
      parkedCount = 0
      return all
    }

    /**
     * Writes what waits while the window has room: in order per topic; a topic whose queue is not
     * declared yet waits (parked) without holding up the others.
     */
    const pump = (): void => {
      const current = link
      if (current === undefined) return
      while (pending.length > 0 && inflight < confirmWindow) {
        const entry = pending.peek()!
        const waitingForTopic = parked.get(entry.topic)
        if (waitingForTopic !== undefined || !declared.has(entry.topic)) {
          pending.shift()
          parkedCount++
          if (waitingForTopic !== undefined) {
            waitingForTopic.push(entry)
          } else {
            parked.set(entry.topic, [entry])
            declare(entry.topic, current).then(() => unpark(entry.topic), () => undefined)
          }
          continue
        }
        try {
          write(entry, current)
        } catch {
          return // channel closed under us: the loss handler takes over
        }
        pending.shift()
        const resume = entry.resume
        if (resume !== undefined) {
          entry.resume = undefined
          resume()
        }
      }
      if (pending.length === 0) overflowLogged = false
    }

    const cancelRetire = (topic: string) => {
      if (retiring.size !== 0) retiring.delete(topic)
    }

    const publishNow = (topic: string, payload: string): Effect.Effect<void, BusError> => {
      cancelRetire(topic)
      const current = link
      if (
        current !== undefined && pending.length === 0 && inflight < confirmWindow && declared.has(topic) &&
        !parked.has(topic)
      ) {
        try {
          write(new Outgoing(topic, payload), current)
          return Effect.void
        } catch {
          // the channel just closed: queue it below, the loss handler will publish it
        }
      }
      if (closing) return Effect.fail(busError(DRIVER, "publish", "the bus is closed"))
      const entry = new Outgoing(topic, payload)
      if (current === undefined) {
        if (pending.length >= publishBufferSize) {
          dropped++
          if (overflowLogged) return Effect.void
          overflowLogged = true
          return Effect.logWarning("RabbitMQ unreachable and the publish buffer is full: dropping messages").pipe(
            Effect.annotateLogs({ driver: DRIVER, bufferSize: publishBufferSize, topic })
          )
        }
        pending.push(entry)
        return Effect.void
      }
      pending.push(entry)
      pump()
      if (entry.written) return Effect.void
      // Window full or the queue is being declared: wait for our turn (backpressure).
      return Effect.async<void>((resume) => {
        if (entry.written || link === undefined) return resume(Effect.void)
        entry.resume = () => resume(Effect.void)
        return Effect.sync(() => {
          entry.resume = undefined
        })
      })
    }

    // Hot path: one suspend per message; the fast path is a synchronous write.
    const publish = (topic: string, payload: string): Effect.Effect<void, BusError> =>
      Effect.suspend(() => publishNow(topic, payload))

    const tryPublish = (topic: string, payload: string): boolean => {
      const current = link
      if (
        closing || current === undefined || pending.length > 0 || inflight >= confirmWindow || !declared.has(topic) ||
        parked.has(topic)
      ) {
        return false
      }
      try {
        cancelRetire(topic)
        write(new Outgoing(topic, payload), current)
        return true
      } catch {
        return false
      }
    }

    /** The connection is gone: unconfirmed messages go back in front of the buffer, in order. */
    const onLinkLost = (lost: Link) => {
      if (link !== lost) return
      link = undefined
      const again = unconfirmed.takeAll().filter((entry) => entry.state === PENDING)
      for (const entry of again) entry.written = false
      inflight = 0
      republished += again.length
      // Per topic: written but unconfirmed, then parked, then what was never looked at.
      pending.prependAll([...again, ...takeParked()])
      declared.clear()
      declaring.clear()
      // Waiting publishers are accepted into the reconnect buffer now.
      const waiting = pending.takeAll()
      for (const entry of waiting) {
        const resume = entry.resume
        entry.resume = undefined
        if (resume !== undefined) resume()
      }
      pending.prependAll(waiting)
      for (const subscription of subscriptions) subscription.consumerTag = undefined
      return again.length
    }

    const onDelivery = (subscription: AmqpSubscription, current: Link) => (message: ConsumeMessage | null) => {
      if (message === null) {
        // Cancelled by the broker: the queue was deleted. Consume again after a reconnect only.
        subscription.consumerTag = undefined
        runLog(Effect.logWarning("RabbitMQ cancelled a consumer (queue deleted?)").pipe(
          Effect.annotateLogs({ topic: subscription.topic })
        ))
        return
      }
      subscription.inbox.offer({ payload: message.content.toString("utf8"), message, link: current })
    }

    const startConsuming = (subscription: AmqpSubscription, current: Link): Promise<void> => {
      subscription.consuming = current.generation
      const started = declare(subscription.topic, current)
        .then(() => current.consumer.consume(subscription.topic, onDelivery(subscription, current), { noAck: false }))
        .then((ok) => {
          if (subscription.closed || link !== current) {
            current.consumer.cancel(ok.consumerTag).catch(() => undefined)
            return
          }
          subscription.consumerTag = ok.consumerTag
        })
      subscription.started = started
      started.catch(() => undefined)
      return started
    }

    const connectOnce = Effect.async<ChannelModel, BusError>((resume) => {
      let abandoned = false
      amqp.connect(connectUrl, socketOptions).then(
        (model) => {
          if (abandoned) model.close().catch(() => undefined)
          else resume(Effect.succeed(model))
        },
        (error) => resume(Effect.fail(busError(DRIVER, "connect", error)))
      )
      return Effect.sync(() => {
        abandoned = true
      })
    })

    /** One connection's lifetime: connect (retrying), open the channels, restore, wait for the loss. */
    const connectionLifetime = Effect.gen(function*() {
      const model = yield* connectOnce.pipe(
        Effect.tapError((error) =>
          Effect.logWarning("RabbitMQ connect failed, retrying").pipe(
            Effect.annotateLogs({ url: urlForLog, error: error.message })
          )
        ),
        Effect.retry(reconnectSchedule(Duration.millis(options.reconnectMaxMs ?? 5000)))
      )
      let onLost: (reason: string) => void = () => undefined
      const lost = new Promise<string>((resolve) => {
        onLost = resolve
      })
      model.on("error", () => undefined)
      model.on("close", (error?: Error) => onLost(error?.message ?? "connection closed"))
      model.on("blocked", (reason: string) =>
        runLog(Effect.logWarning("RabbitMQ blocked the connection").pipe(Effect.annotateLogs({ reason }))))
      const opened = yield* Effect.tryPromise({
        try: async () => {
          const publisher = await model.createConfirmChannel()
          const consumer = await model.createChannel()
          await consumer.prefetch(prefetch, false)
          return { publisher, consumer }
        },
        catch: (error) => busError(DRIVER, "open channels", error)
      }).pipe(Effect.tapError(() => Effect.promise(() => model.close().catch(() => undefined))))
      const current: Link = {
        generation: ++generation,
        model,
        publisher: opened.publisher,
        consumer: opened.consumer,
        flushPublisher: writeAtOnce(model, opened.publisher) ?? (() => undefined),
        declarers: new Array(sideChannels).fill(undefined),
        deleters: new Array(sideChannels).fill(undefined),
        nextSide: 0
      }
      // Losing either main channel means losing messages' fate: restart the whole connection.
      for (const channel of [opened.publisher, opened.consumer]) {
        channel.on("error", () => undefined)
        channel.on("close", () => {
          if (link === current) model.close().catch(() => undefined)
          onLost("channel closed")
        })
      }
      corkBatchedWrites(model)
      link = current
      const firstConnection = current.generation === 1
      if (!firstConnection) reconnects++
      const waiting = pending.length
      pump()
      yield* Effect.promise(() =>
        Promise.all(
          [...subscriptions].filter((s) => !s.closed).map((s) => startConsuming(s, current).catch(() => undefined))
        )
      )
      yield* SubscriptionRef.set(state, "connected")
      yield* Effect.logInfo(firstConnection ? "RabbitMQ connected" : "RabbitMQ reconnected").pipe(
        Effect.annotateLogs({ url: urlForLog, subscriptions: subscriptions.size, buffered: waiting })
      )
      const reason = yield* Effect.promise(() => lost)
      const again = onLinkLost(current) ?? 0
      if (!closing) {
        yield* SubscriptionRef.set(state, "reconnecting")
        yield* Effect.logWarning("RabbitMQ connection lost, reconnecting").pipe(
          Effect.annotateLogs({ reason, unconfirmedToRepublish: again })
        )
      }
    }).pipe(
      Effect.catchAll((error) => Effect.logWarning("RabbitMQ connection setup failed").pipe(
        Effect.annotateLogs({ error: error.message })
      )),
      Effect.zipRight(Effect.sleep("100 millis")) // no hot loop if a fresh connection dies at once
    )

    // Deletes retired queues whose grace has passed; one fiber and one FIFO (the grace is fixed, so
    // deadlines are in insertion order).
    const tick = Duration.millis(Math.min(1000, Math.max(10, Math.floor(graceMs / 4))))
    const reapRetired = Effect.gen(function*() {
      const current = link
      if (current === undefined) return false
      const now = Date.now()
      const due: Array<{ readonly topic: string; readonly deadline: number }> = []
      while (retireQueue.length > 0 && retireQueue.peek()!.deadline <= now && due.length < 256) {
        const entry = retireQueue.shift()!
        if (retiring.get(entry.topic) !== entry.deadline) continue // used again, or retired again later
        if ((subscribedTopics.get(entry.topic) ?? 0) > 0) {
          // Still consumed by us: try again after another grace period.
          const later = now + graceMs
          retiring.set(entry.topic, later)
          retireQueue.push({ topic: entry.topic, deadline: later })
          continue
        }
        declared.delete(entry.topic) // a publish from now on declares it again
        due.push(entry)
      }
      const failed: Array<{ readonly topic: string; readonly deadline: number }> = []
      yield* Effect.forEach(due, (entry) =>
        Effect.tryPromise(() =>
          sideChannel(current, current.deleters).then((channel) =>
            channel.deleteQueue(entry.topic, { ifUnused: false, ifEmpty: false })
          )
        ).pipe(
          Effect.matchEffect({
            onSuccess: () =>
              Effect.sync(() => {
                deletedQueues++
                if (retiring.get(entry.topic) === entry.deadline) retiring.delete(entry.topic)
              }),
            onFailure: (error) =>
              Effect.sync(() => failed.push(entry)).pipe(
                Effect.zipRight(Effect.logWarning("RabbitMQ queue deletion failed").pipe(
                  Effect.annotateLogs({ topic: entry.topic, error: errorMessage(error.error) })
                ))
              )
          })
        ), { concurrency: sideChannels, discard: true })
      // Lost the connection meanwhile: try those again after the reconnect; otherwise give up on them.
      if (link !== current) retireQueue.prependAll(failed)
      else for (const entry of failed) if (retiring.get(entry.topic) === entry.deadline) retiring.delete(entry.topic)
      return due.length === 256 // a backlog: go on without sleeping
    })

    yield* Effect.forkScoped(Effect.forever(connectionLifetime).pipe(Effect.annotateLogs({ driver: DRIVER })))
    yield* Effect.forkScoped(
      reapRetired.pipe(
        Effect.catchAllCause((cause) => Effect.as(Effect.logError("RabbitMQ retire loop failed", cause), false)),
        Effect.flatMap((backlog) => backlog ? Effect.yieldNow() : Effect.sleep(tick)),
        Effect.forever,
        Effect.annotateLogs({ driver: DRIVER })
      )
    )
    // Registered after the forks, so it runs first: confirms are awaited, then the connection closes.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closing = true
        const current = link
        if (pending.length + parkedCount > 0 || (current === undefined && inflight > 0)) {
          yield* Effect.logWarning("RabbitMQ closing with undelivered buffered messages").pipe(
            Effect.annotateLogs({ count: pending.length + parkedCount })
          )
        }
        if (current !== undefined) {
          yield* Effect.promise(() => current.publisher.waitForConfirms().catch(() => undefined)).pipe(
            Effect.timeout("2 seconds"),
            Effect.ignore
          )
          link = undefined
          yield* Effect.promise(() => current.model.close().catch(() => undefined)).pipe(
            Effect.timeout("2 seconds"),
            Effect.ignore
          )
        }
        yield* SubscriptionRef.set(state, "closed")
      }).pipe(Effect.annotateLogs({ driver: DRIVER }))
    )

    const awaitLink: Effect.Effect<Link, BusError> = Effect.suspend(() =>
      link !== undefined ?
        Effect.succeed(link) :
        Effect.fail(busError(DRIVER, "subscribe", closing ? "the bus is closed" : "not connected"))
    ).pipe(Effect.retry({ schedule: Schedule.spaced("20 millis"), while: () => !closing }))

    const acknowledge = (delivery: Delivery) => {
      if (delivery.link !== link) return
      try {
        delivery.link.consumer.ack(delivery.message)
      } catch {
        // channel closed meanwhile: the message is redelivered
      }
    }

    const listen = (
      topic: string,
      handler: MessageHandler,
      _options?: SubscribeOptions
    ): Effect.Effect<Subscription, BusError> =>
      Effect.gen(function*() {
        cancelRetire(topic)
        // Acknowledged once its handler has handled it.
        const inbox = spawnInbox(inboxes, topic, { inline: true }, (delivery: Delivery) => {
          // From a dead channel: the broker requeued it and delivers it again.
          if (delivery.link !== link) return
          const handling = handler(delivery.payload)
          if (handling === undefined) return acknowledge(delivery)
          return Effect.tap(handling, () => acknowledge(delivery))
        })
        const subscription: AmqpSubscription = {
          topic,
          inbox,
          consuming: -1,
          started: undefined,
          consumerTag: undefined,
          closed: false
        }
        subscriptions.add(subscription)
        subscribedTopics.set(topic, (subscribedTopics.get(topic) ?? 0) + 1)
        const close = Effect.suspend(() => {
          if (subscription.closed) return Effect.void
          subscription.closed = true
          inbox.stop()
          subscriptions.delete(subscription)
          const count = (subscribedTopics.get(topic) ?? 1) - 1
          if (count === 0) subscribedTopics.delete(topic)
          else subscribedTopics.set(topic, count)
          const current = link
          const tag = subscription.consumerTag
          subscription.consumerTag = undefined
          if (current === undefined || tag === undefined || subscription.consuming !== current.generation) {
            return Effect.void
          }
          return Effect.promise(() => current.consumer.cancel(tag).catch(() => undefined)).pipe(
            Effect.timeout("2 seconds"),
            Effect.ignore
          )
        })
        // Live once the broker has answered consume-ok; a connection lost meanwhile: wait and retry.
        yield* Effect.gen(function*() {
          const current = yield* awaitLink
          const started = subscription.consuming === current.generation && subscription.started !== undefined ?
            subscription.started :
            startConsuming(subscription, current)
          yield* Effect.tryPromise({ try: () => started, catch: (error) => busError(DRIVER, "subscribe", error) })
        }).pipe(
          Effect.retry({ schedule: Schedule.spaced("50 millis"), while: () => !closing }),
          Effect.onError(() => close)
        )
        return { close }
      })

    const retire = (topic: string): Effect.Effect<void> =>
      Effect.sync(() => {
        const deadline = Date.now() + graceMs
        retiring.set(topic, deadline)
        retireQueue.push({ topic, deadline })
      })

    const bus: AmqpBus = {
      driver: "rabbitmq",
      retainsUnconsumed: true,
      publish,
      tryPublish,
      listen,
      subscribe: scopedSubscribe(listen),
      retire,
      state: SubscriptionRef.get(state),
      stats: () => ({
        published,
        unconfirmed: inflight,
        buffered: pending.length + parkedCount,
        dropped,
        nacked,
        republished,
        reconnects,
        subscriptions: subscriptions.size,
        declaredQueues: declared.size,
        retiring: retiring.size,
        deletedQueues
      })
    }
    return bus
  })

export const layerAmqp = (options: AmqpOptions): Layer.Layer<Bus, BusError> => Layer.scoped(Bus, makeAmqpBus(options))

/** The driver's options from the proxy configuration. */
export const amqpOptionsFromConfig = (config: ProxyConfig): AmqpOptions => {
  const bus = config.bus
  return {
    url: bus.url,
    name: config.serverId,
    user: bus.user,
    password: bus.password,
    tls: bus.tls,
    subjectPrefix: bus.subjectPrefix,
    publishBufferSize: bus.publishBufferSize,
    prefetch: bus.prefetch,
    queueDeleteGraceMs: bus.queueDeleteGraceMs
  }
}

export const layerAmqpFromConfig = (config: ProxyConfig): Layer.Layer<Bus, BusError> =>
  layerAmqp(amqpOptionsFromConfig(config))

/** @internal exported for tests: the seed's declaration. */
export const seedQueueDeclaration: Options.AssertQueue = SEED_QUEUE
