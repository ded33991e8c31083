/**
 * The NATS driver of the bus port (@nats-io/transport-node 3.x), in parts sharing one connection:
 * - options.ts: the driver's options and stats, nats.js's connection options, the proxy's config;
 * - connection.ts: connect (retrying), resynchronise after each reconnect, drain at the close;
 * - publisher.ts: the outage buffer, core writes confirmed by a PONG, JetStream's window;
 * - subscriber.ts: subscriptions, each an inbox actor of the driver's system;
 * - stream.ts: JetStream mode's stream (created or checked at each connection) and its answers;
 * - client.ts: the one place that reads nats.js's internals.
 *
 * Wire format is the seed's: subject = topic name, payload = the JSON string's bytes, no headers,
 * no reply subject; a subscription with a queue group is a NATS queue subscription. JetStream mode
 * (`jetstream`, off by default) adds a message id and a reply subject to the topics under
 * `subjectPrefix`: core subscribers receive them live as before and may see a republished message
 * twice.
 */
import type { NatsConnection } from "@nats-io/transport-node"
import { Deferred, Effect, Layer, Queue, Runtime, SubscriptionRef } from "effect"
import type { Scope } from "effect"
import type { ProxyConfig } from "../../config/ProxyConfig.js"
import { makeActorSystem } from "../../actor/ActorSystem.js"
import { Bus, type BusConnectionState, type BusError, scopedSubscribe } from "../Bus.js"
import { busError, busRetryPolicy } from "../internal.js"
import { clientSubscriptions, socketConnected } from "./client.js"
import { runConnection } from "./connection.js"
import { DRIVER, type NatsBus, type NatsOptions, natsOptionsFromConfig } from "./options.js"
import { makePublisher, type NatsShared } from "./publisher.js"
import { jetStreamSettings, makeStreamCheck, MIB } from "./stream.js"
import { makeSubscriber } from "./subscriber.js"

export type { NatsBus, NatsBusStats, NatsJetStreamOptions, NatsOptions, NatsTlsOptions } from "./options.js"
export { natsOptionsFromConfig } from "./options.js"

export const makeNatsBus = (options: NatsOptions): Effect.Effect<NatsBus, BusError, Scope.Scope> =>
  Effect.gen(function*() {
    const subjectPrefix = options.subjectPrefix ?? ""
    const retry = busRetryPolicy(options.connectRetryMaxMs ?? 5000)
    const jetstream = options.jetstream === undefined ? undefined : jetStreamSettings(subjectPrefix, options.jetstream)
    if (typeof jetstream === "string") return yield* Effect.fail(busError(DRIVER, "jetstream", jetstream))

    const runtime = yield* Effect.runtime<never>()
    const runLog = (effect: Effect.Effect<void>) =>
      Runtime.runFork(runtime)(effect.pipe(Effect.annotateLogs({ driver: DRIVER })))
    const state = yield* SubscriptionRef.make<BusConnectionState>("reconnecting")
    // Every subscription's inbox; made before the connection, so closed after its drain.
    const inboxes = yield* makeActorSystem
    const firstConnection = yield* Deferred.make<NatsConnection>()
    const started = yield* Deferred.make<void, BusError>()
    const resyncRequests = yield* Queue.sliding<void>(1)
    const shared: NatsShared = { nc: undefined, link: undefined, resyncs: 0, closing: false }

    const publisher = makePublisher(shared, {
      publishBufferSize: Math.max(0, options.publishBufferSize ?? 10_000),
      publishBufferBytes: Math.max(0, options.publishBufferBytes ?? 64 * MIB),
      subjectPrefix,
      jetstream
    }, runLog, () => Queue.unsafeOffer(resyncRequests, undefined))
    const subscriber = makeSubscriber(shared, firstConnection, inboxes)

    if (jetstream !== undefined) yield* Effect.forkScoped(publisher.watchAcknowledgements(jetstream))
    const streamCheck = jetstream === undefined ? undefined : makeStreamCheck(
      jetstream,
      retry,
      (problem) => Deferred.fail(started, busError(DRIVER, "jetstream", problem.message))
    )
    const connection = yield* runConnection(options, retry, {
      shared,
      publisher,
      state,
      firstConnection,
      started,
      resyncRequests,
      streamReady: streamCheck === undefined ? undefined : (connection) =>
        streamCheck(connection, () => socketConnected(connection) && !shared.closing)
    })
    // JetStream: an unusable stream found at the first connection fails the start, with its reason.
    if (jetstream !== undefined) yield* Deferred.await(started)

    const bus: NatsBus = {
      driver: "nats",
      retainsUnconsumed: false,
      publish: publisher.publish,
      tryPublish: publisher.tryPublish,
      broadcast: publisher.broadcast,
      listen: subscriber.listen,
      subscribe: scopedSubscribe(subscriber.listen),
      retire: () => Effect.void,
      state: SubscriptionRef.get(state),
      stats: () => ({
        ...publisher.stats(),
        reconnects: connection.reconnects(),
        subscriptions: subscriber.count()
      }),
      clientSubscriptionCount: () => clientSubscriptions(shared.nc)
    }
    return bus
  })

export const layerNats = (options: NatsOptions): Layer.Layer<Bus, BusError> => Layer.scoped(Bus, makeNatsBus(options))

export const layerNatsFromConfig = (config: ProxyConfig): Layer.Layer<Bus, BusError> =>
  layerNats(natsOptionsFromConfig(config))
