/**
 * The queues. Topology is exactly the seed's, so unmodified seed clients interoperate: the default
 * exchange "", routing key = queue name = topic, queues declared durable / not auto-delete / not
 * exclusive with no arguments (any other declaration makes the broker answer 406 to one of the two
 * sides). A queue is declared (once per connection, cached) before we publish to it or consume it,
 * so what is published before any consumer exists is kept (`retainsUnconsumed`). Exception:
 * `unrouted_<app>` topics exist only in ari-proxy; they are declared with `x-max-length` and
 * `x-overflow: drop-head`, so one nobody consumes cannot grow forever (the newest events are kept);
 * `replies_<id>` topics (the answers to app-initiated dialog requests, ours only too) with
 * `x-expires`, so the broker deletes one its client no longer uses even if the client stopped
 * before deleting it.
 *
 * Retired topics wait here for the reaper (reaper.ts) to delete their queues.
 */
import type { Channel, Options } from "amqplib"
import { Effect } from "effect"
import { Fifo } from "../../actor/Fifo.js"
import { type AmqpConnection, errorMessage, type Link, type RunLog } from "./connection.js"
import type { AmqpSettings } from "./options.js"

/** The seed's queue declaration; must stay byte-for-byte compatible (no arguments at all). */
const SEED_QUEUE: Options.AssertQueue = { durable: true, autoDelete: false, exclusive: false }

/** @internal exported for tests: the seed's declaration. */
export const seedQueueDeclaration: Options.AssertQueue = SEED_QUEUE

const errorCode = (error: unknown): number | undefined =>
  typeof error === "object" && error !== null && typeof (error as { code?: unknown }).code === "number" ?
    (error as { code: number }).code :
    undefined

export const makeTopology = (settings: AmqpSettings, connection: AmqpConnection, runLog: RunLog) => {
  const { repliesExpireMs, repliesPrefix, unroutedMaxLength, unroutedPrefix } = settings
  const declared = new Set<string>()
  const declaring = new Map<string, Promise<void>>()
  /** Retired topics: the deadline of each, and the same in deadline order. */
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
          if (connection.link === current) declared.add(topic)
        },
        (error: unknown) => {
          if (connection.link !== current) throw error
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

  /** A new connection declares every queue again. */
  const forgetDeclarations = () => {
    declared.clear()
    declaring.clear()
  }

  const cancelRetire = (topic: string) => {
    if (retiring.size !== 0) retiring.delete(topic)
  }

  const retire = (topic: string): Effect.Effect<void> =>
    Effect.sync(() => {
      const deadline = Date.now() + settings.graceMs
      retiring.set(topic, deadline)
      retireQueue.push({ topic, deadline })
    })

  return { declared, retiring, retireQueue, sideChannel, declare, forgetDeclarations, cancelRetire, retire }
}

export type Topology = ReturnType<typeof makeTopology>
