/**
 * The RabbitMQ driver of the bus port (amqplib 2.x, promise API), in parts that share one
 * connection (`AmqpConnection`):
 *
 * - connection.ts: the connection, kept up forever, and its few channels
 * - topology.ts: the queues (the seed's declarations), declared once per connection; retired topics
 * - publisher.ts: the confirm window, parked topics, the reconnect buffer, re-publication
 * - consumer.ts: subscriptions, deliveries and their acknowledgements
 * - reaper.ts: deletes retired queues after their grace period
 * - amqplibWrites.ts: the one patch of amqplib's internals (sooner and fewer socket writes)
 */
import { Effect, Layer, Runtime, SubscriptionRef } from "effect"
import type { Scope } from "effect"
import { makeActorSystem } from "../../actor/ActorSystem.js"
import type { ProxyConfig } from "../../config/ProxyConfig.js"
import { Bus, type BusConnectionState, type BusError, type BusShape, scopedSubscribe } from "../Bus.js"
import { type AmqpConnection, connectTarget, DRIVER, makeConnectionLoop } from "./connection.js"
import { makeConsumer } from "./consumer.js"
import { type AmqpOptions, resolveSettings } from "./options.js"
import { makePublisher } from "./publisher.js"
import { makeQueueReaper } from "./reaper.js"
import { makeTopology } from "./topology.js"

export type { AmqpOptions, AmqpTlsOptions } from "./options.js"
export { seedQueueDeclaration } from "./topology.js"

export interface AmqpBusStats {
  /** Messages written to the broker (re-publications included). */
  readonly published: number
  /** Messages written and not yet confirmed. */
  readonly unconfirmed: number
  /** Messages accepted and not yet written (waiting for the window, a declaration or the reconnect). */
  readonly buffered: number
  /** Their UTF-8 bytes. */
  readonly bufferedBytes: number
  /**
   * Messages lost because the outage buffer was full: published while disconnected, or unconfirmed
   * when the connection died and not kept to be published again.
   */
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

export const makeAmqpBus = (options: AmqpOptions): Effect.Effect<AmqpBus, BusError, Scope.Scope> =>
  Effect.gen(function*() {
    const settings = resolveSettings(options)
    const target = connectTarget(options)

    const runtime = yield* Effect.runtime<never>()
    const runLog = (effect: Effect.Effect<void>) =>
      Runtime.runFork(runtime)(effect.pipe(Effect.annotateLogs({ driver: DRIVER })))
    const state = yield* SubscriptionRef.make<BusConnectionState>("reconnecting")
    // Every subscription's inbox; made before the connection, so closed after it.
    const inboxes = yield* makeActorSystem

    const connection: AmqpConnection = { link: undefined, closing: false }
    const topology = makeTopology(settings, connection, runLog)
    const publisher = makePublisher(settings, connection, topology, runLog)
    const consumer = makeConsumer(connection, topology, inboxes, runLog)
    const reaper = makeQueueReaper(settings, connection, topology, consumer.consumes)
    const connectionLoop = makeConnectionLoop(settings, target, connection, state, {
      restore: (current) =>
        Effect.suspend(() => {
          const waiting = publisher.pendingCount()
          publisher.pump()
          return publisher.reportOutageDrops.pipe(
            Effect.zipRight(Effect.promise(() => consumer.consumeAgain(current))),
            Effect.as(waiting)
          )
        }),
      lost: (lost) => {
        if (connection.link !== lost) return
        connection.link = undefined
        topology.forgetDeclarations()
        consumer.forgetConsumers()
        return publisher.takeBack()
      },
      subscriptions: consumer.subscriptionCount
    }, runLog)

    yield* Effect.forkScoped(connectionLoop.run)
    yield* Effect.forkScoped(reaper.run)
    // Registered after the forks, so it runs first: confirms are awaited, then the connection closes.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        connection.closing = true
        const current = connection.link
        if (publisher.buffered() > 0 || (current === undefined && publisher.inflight() > 0)) {
          yield* Effect.logWarning("RabbitMQ closing with undelivered buffered messages").pipe(
            Effect.annotateLogs({ count: publisher.buffered() })
          )
        }
        if (current === undefined) yield* publisher.reportOutageDrops // an outage that never ended
        if (current !== undefined) {
          // A finalizer runs uninterruptibly: without Effect.interruptible, the timeouts could not cut
          // short the wait for a broker that stopped answering.
          yield* Effect.promise(() => current.publisher.waitForConfirms().catch(() => undefined)).pipe(
            Effect.interruptible,
            Effect.timeout("2 seconds"),
            Effect.ignore
          )
          connection.link = undefined
          yield* Effect.promise(() => current.model.close().catch(() => undefined)).pipe(
            Effect.interruptible,
            Effect.timeout("2 seconds"),
            Effect.ignore
          )
        }
        yield* SubscriptionRef.set(state, "closed")
      }).pipe(Effect.annotateLogs({ driver: DRIVER }))
    )

    const bus: AmqpBus = {
      driver: "rabbitmq",
      retainsUnconsumed: true,
      publish: publisher.publish,
      broadcast: publisher.broadcast,
      tryPublish: publisher.tryPublish,
      listen: consumer.listen,
      subscribe: scopedSubscribe(consumer.listen),
      retire: topology.retire,
      state: SubscriptionRef.get(state),
      stats: () => ({
        ...publisher.stats(),
        reconnects: connectionLoop.reconnects(),
        subscriptions: consumer.subscriptionCount(),
        declaredQueues: topology.declared.size,
        retiring: topology.retiring.size,
        deletedQueues: reaper.deletedQueues()
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
    publishBufferBytes: bus.publishBufferBytes,
    prefetch: bus.prefetch,
    queueDeleteGraceMs: bus.queueDeleteGraceMs
  }
}

export const layerAmqpFromConfig = (config: ProxyConfig): Layer.Layer<Bus, BusError> =>
  layerAmqp(amqpOptionsFromConfig(config))
