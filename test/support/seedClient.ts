/**
 * An application that behaves like go-ari-library (the seed's client): on AppStart it publishes
 * `DUMMY` on the commands topic, then subscribes to events and responses; its commands carry an
 * empty unique_id (or none) and it takes "the next response" as the answer, with a 5 s timeout.
 *
 * It runs on a `SeedTransport`: any bus driver (as on NATS, where the seed's client does what our
 * driver does), or `seedAmqpTransport`, which uses RabbitMQ the way the Go client does
 * (seed-protocol §3.3): its own connections, a channel per producer and consumer, every queue
 * declared by the client itself, no prefetch limit, each delivery acknowledged once handed over.
 */
import amqp from "amqplib"
import { Effect, Option, Queue, Scope } from "effect"
import type { BusShape } from "../../src/bus/Bus.js"
import { makeTopics, type Topics } from "../../src/protocol/topics.js"
import type { ReceivedEvent, Response } from "./apps.js"

export interface SeedDialog {
  readonly dialogId: string
  readonly events: Queue.Queue<ReceivedEvent>
  /** Sends a command without unique_id and returns the next response (None after 5 s, as the Go client). */
  readonly command: (
    method: string,
    url: string,
    body?: Record<string, string>
  ) => Effect.Effect<Option.Option<Response>>
}

/** What the seed client needs of a bus: publish, and consume a topic for the lifetime of a scope. */
export interface SeedTransport {
  readonly publish: (topic: string, payload: string) => Effect.Effect<void>
  readonly consume: (
    topic: string,
    handler: (payload: string) => Effect.Effect<void>,
    queue?: string
  ) => Effect.Effect<void, never, Scope.Scope>
}

const transportOfBus = (bus: BusShape): SeedTransport => ({
  publish: (topic, payload) => Effect.orDie(bus.publish(topic, payload)),
  consume: (topic, handler, queue) =>
    Effect.orDie(bus.subscribe(topic, handler, queue === undefined ? undefined : { queue }))
})

/** The Go client's queue declaration and message properties (seed-protocol §3.3). */
const SEED_DECLARATION: amqp.Options.AssertQueue = { durable: true, autoDelete: false, exclusive: false }
const SEED_PROPERTIES: amqp.Options.Publish = { contentType: "application/json", deliveryMode: 1 }

/**
 * RabbitMQ as go-ari-library uses it: one connection for producers, one for consumers; a new
 * channel per producer and per consumer, each declaring its queue the seed's way; no basic.qos;
 * manual acknowledgement right after the delivery is handed to the application.
 */
export const seedAmqpTransport = (url: string): Effect.Effect<SeedTransport, never, Scope.Scope> =>
  Effect.gen(function*() {
    const connect = Effect.acquireRelease(
      Effect.promise(() => amqp.connect(url, { noDelay: true })),
      (connection) => Effect.promise(() => connection.close().catch(() => undefined))
    )
    const producers = yield* connect
    const consumers = yield* connect
    for (const connection of [producers, consumers]) connection.on("error", () => undefined)
    const producerChannels = new Map<string, Promise<amqp.Channel>>()

    const producerChannel = (topic: string): Promise<amqp.Channel> => {
      let channel = producerChannels.get(topic)
      if (channel === undefined) {
        channel = producers.createChannel().then(async (created) => {
          await created.assertQueue(topic, SEED_DECLARATION)
          return created
        })
        producerChannels.set(topic, channel)
      }
      return channel
    }

    const publish = (topic: string, payload: string) =>
      Effect.promise(() =>
        producerChannel(topic).then((channel) => {
          channel.publish("", topic, Buffer.from(payload, "utf8"), SEED_PROPERTIES)
        })
      )

    const consume = (topic: string, handler: (payload: string) => Effect.Effect<void>) =>
      Effect.gen(function*() {
        const inbox = yield* Queue.unbounded<string>()
        const channel = yield* Effect.acquireRelease(
          Effect.promise(async () => {
            const created = await consumers.createChannel()
            created.on("error", () => undefined)
            await created.assertQueue(topic, SEED_DECLARATION)
            await created.consume(topic, (message) => {
              if (message === null) return
              inbox.unsafeOffer(message.content.toString("utf8"))
              created.ack(message)
            }, { noAck: false })
            return created
          }),
          (created) => Effect.promise(() => created.close().catch(() => undefined))
        )
        yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(inbox), handler)))
        return channel
      }).pipe(Effect.asVoid)

    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        for (const channel of producerChannels.values()) await (await channel).close().catch(() => undefined)
      }).pipe(Effect.ignore)
    )
    return { publish, consume } satisfies SeedTransport
  })

export const startSeedApp = (
  bus: BusShape | SeedTransport,
  application: string,
  options: { readonly queue?: string; readonly topics?: Topics } = {}
): Effect.Effect<Queue.Queue<SeedDialog>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const transport = "driver" in bus ? transportOfBus(bus) : bus
    const topics = options.topics ?? makeTopics()
    const dialogs = yield* Queue.unbounded<SeedDialog>()
    const scope = yield* Effect.scope
    const join = (dialogId: string) =>
      Effect.gen(function*() {
        yield* transport.publish(topics.commands(dialogId), "DUMMY")
        const events = yield* Queue.unbounded<ReceivedEvent>()
        const responses = yield* Queue.unbounded<Response>()
        yield* transport.consume(topics.events(dialogId), (payload) => {
          const wire = JSON.parse(payload)
          return Queue.offer(events, { ...wire, ari: JSON.parse(wire.ari_body) })
        }, options.queue)
        yield* transport.consume(
          topics.responses(dialogId),
          (payload) => Queue.offer(responses, JSON.parse(payload)),
          options.queue
        )
        const command = (method: string, url: string, body?: Record<string, string>) =>
          Effect.gen(function*() {
            // The Go client marshals {unique_id:"", url, method, body} with body a hand-built JSON string.
            const text = body === undefined ? "" : JSON.stringify(body)
            const payload = JSON.stringify({ unique_id: "", url, method, body: text })
            yield* transport.publish(topics.commands(dialogId), payload)
            return yield* Queue.take(responses).pipe(Effect.timeoutOption("5 seconds"))
          })
        return { dialogId, events, command } satisfies SeedDialog
      })
    yield* transport.consume(
      topics.app(application),
      (payload) =>
        join((JSON.parse(payload) as { dialog_id: string }).dialog_id).pipe(
          Scope.extend(scope),
          Effect.flatMap((dialog) => Queue.offer(dialogs, dialog)),
          Effect.forkIn(scope),
          Effect.asVoid
        ),
      options.queue
    )
    return dialogs
  })
