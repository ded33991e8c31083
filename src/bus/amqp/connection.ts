/**
 * The connection to RabbitMQ, kept up forever, and its channels: a small fixed number whatever the
 * number of dialogs: a confirm channel for publishing, one channel for every consumer, and two
 * small pools (`sideChannels`, default 4 each) for queue declarations and deletions, which the
 * broker serves in parallel across channels (a durable queue costs it 2-3 ms to create or delete).
 * A 406 closes only the side channel it happened on; it is opened again on next use.
 */
import amqp from "amqplib"
import type { Channel, ChannelModel, ConfirmChannel } from "amqplib"
import { readFileSync } from "node:fs"
import { Effect, SubscriptionRef } from "effect"
import { redactUrl } from "../../config/redact.js"
import type { BusConnectionState } from "../Bus.js"
import { busError, busRetryPolicy, connectRetrying, reveal } from "../internal.js"
import { patchAmqplibWrites } from "./amqplibWrites.js"
import type { AmqpOptions, AmqpSettings } from "./options.js"

export const DRIVER = "rabbitmq"

/** One live connection with its fixed channels. */
export interface Link {
  readonly generation: number
  readonly model: ChannelModel
  readonly publisher: ConfirmChannel
  readonly consumer: Channel
  /** Writes the publisher's frames now rather than at amqplib's turn (see amqplibWrites.ts). */
  readonly flushPublisher: () => void
  /** Small pools for declarations and deletions: the broker serves channels in parallel (3-6x faster). */
  readonly declarers: Array<Promise<Channel> | undefined>
  readonly deleters: Array<Promise<Channel> | undefined>
  nextSide: number
}

/** What the driver's parts share: the live link (none while reconnecting) and whether the bus is closing. */
export interface AmqpConnection {
  link: Link | undefined
  closing: boolean
}

/** Logs from amqplib's callbacks, outside any fiber. */
export type RunLog = (effect: Effect.Effect<void>) => void

export const errorMessage = (error: unknown) => error instanceof Error ? error.message : String(error)

/** Where and how to connect: the URL (with the heartbeat) and amqplib's socket options (TLS files read now). */
export const connectTarget = (options: AmqpOptions) => {
  const url = reveal(options.url)!
  const heartbeat = options.heartbeatSeconds ?? 10
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
  return { connectUrl, socketOptions, urlForLog: redactUrl(url) }
}

export type ConnectTarget = ReturnType<typeof connectTarget>

/** What the rest of the driver does when a link comes up or goes. */
export interface LinkHooks {
  /** Publishes what waits and consumes again on `current`; succeeds with how many messages waited. */
  readonly restore: (current: Link) => Effect.Effect<number>
  /** Takes back what was in flight on `lost`; returns how many messages will be published again. */
  readonly lost: (lost: Link) => number | undefined
  readonly subscriptions: () => number
}

/** The connection, forever: connect (retrying), open the channels, restore, wait for the loss, again. */
export const makeConnectionLoop = (
  settings: AmqpSettings,
  target: ConnectTarget,
  connection: AmqpConnection,
  state: SubscriptionRef.SubscriptionRef<BusConnectionState>,
  hooks: LinkHooks,
  runLog: RunLog
) => {
  const { connectUrl, socketOptions, urlForLog } = target
  let generation = 0
  let reconnects = 0

  /** One connection's lifetime: connect (retrying), open the channels, restore, wait for the loss. */
  const connectionLifetime = Effect.gen(function*() {
    const model = yield* connectRetrying({
      driver: DRIVER,
      broker: "RabbitMQ",
      target: { url: urlForLog },
      connect: () => amqp.connect(connectUrl, socketOptions),
      close: (model: ChannelModel) => model.close().catch(() => undefined),
      retry: busRetryPolicy(settings.reconnectMaxMs)
    })
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
        await consumer.prefetch(settings.prefetch, false)
        return { publisher, consumer }
      },
      catch: (error) => busError(DRIVER, "open channels", error)
    }).pipe(Effect.tapError(() => Effect.promise(() => model.close().catch(() => undefined))))
    const current: Link = {
      generation: ++generation,
      model,
      publisher: opened.publisher,
      consumer: opened.consumer,
      flushPublisher: patchAmqplibWrites(model, opened.publisher).flushPublisher,
      declarers: new Array(settings.sideChannels).fill(undefined),
      deleters: new Array(settings.sideChannels).fill(undefined),
      nextSide: 0
    }
    // Losing either main channel means losing messages' fate: restart the whole connection.
    for (const channel of [opened.publisher, opened.consumer]) {
      channel.on("error", () => undefined)
      channel.on("close", () => {
        if (connection.link === current) model.close().catch(() => undefined)
        onLost("channel closed")
      })
    }
    connection.link = current
    const firstConnection = current.generation === 1
    if (!firstConnection) reconnects++
    const waiting = yield* hooks.restore(current)
    yield* SubscriptionRef.set(state, "connected")
    yield* Effect.logInfo(firstConnection ? "RabbitMQ connected" : "RabbitMQ reconnected").pipe(
      Effect.annotateLogs({ url: urlForLog, subscriptions: hooks.subscriptions(), buffered: waiting })
    )
    const reason = yield* Effect.promise(() => lost)
    const again = hooks.lost(current) ?? 0
    if (!connection.closing) {
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

  return {
    run: Effect.forever(connectionLifetime).pipe(Effect.annotateLogs({ driver: DRIVER })),
    reconnects: () => reconnects
  }
}
