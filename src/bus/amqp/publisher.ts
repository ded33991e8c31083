/**
 * Publishing: messages are written at once, in order, and their confirms are awaited in the
 * background; at most `confirmWindow` messages may be unconfirmed, beyond that `publish` suspends
 * until confirms come back (a slow broker slows the publisher down; nothing is lost). A topic whose
 * queue is being declared waits alone (parked, in order) without holding up the others. If the
 * connection or a channel is lost, every unconfirmed message is published again after the
 * reconnect, before anything newer and in order: delivery is at least once (a message the broker
 * had taken but not yet confirmed arrives twice). A nack (the broker could not take a message,
 * rare) is counted and logged, not retried, since a retry would reorder the topic.
 * While disconnected, publishes are accepted into the outage buffer, bounded by `publishBufferSize`
 * messages and `publishBufferBytes` bytes, and flushed in order after the reconnect. A message that
 * does not fit is dropped: published during the outage, or unconfirmed when the connection died (the
 * oldest are kept). Each is counted (`stats().dropped`), and one line per outage logs the count.
 * Broadcasts take the same path to the `amq.direct` exchange (no queue to declare).
 */
import type { Options } from "amqplib"
import { Effect } from "effect"
import { Fifo } from "../../actor/Fifo.js"
import type { BusError } from "../Bus.js"
import { awaitWrite, busError, FirstOnly, OutageLosses, releaseWaiter } from "../internal.js"
import { type AmqpConnection, DRIVER, errorMessage, type Link, type RunLog } from "./connection.js"
import type { AmqpSettings } from "./options.js"
import type { Topology } from "./topology.js"

/** The seed's message properties: nothing else is set (amqplib adds the empty headers table, as the seed). */
const PUBLISH_PROPERTIES: Options.Publish = { contentType: "application/json", deliveryMode: 1 }

/**
 * Where broadcasts go: a direct exchange every RabbitMQ vhost has, routing key = topic; each
 * broadcast subscription binds a queue of its own to it (consumer.ts). Nothing to declare.
 */
export const BROADCAST_EXCHANGE = "amq.direct"

/** The default exchange: routing key = queue name (the seed's way). */
const DEFAULT_EXCHANGE = ""

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
  /** Its UTF-8 size, counted while it waits in the buffer. */
  bytes = 0
  constructor(
    readonly topic: string,
    /**
     * The text until it is written; then the bytes written, kept for a republish until confirmed.
     * A string kept that long outlives young-generation collections under a flood and is copied
     * into the old generation; the bytes live outside the collector's heap.
     */
    public payload: string | Buffer,
    /** The default exchange (a queue named `topic`), or the broadcast exchange. */
    readonly exchange: string
  ) {}
}

export const makePublisher = (
  settings: AmqpSettings,
  connection: AmqpConnection,
  topology: Topology,
  runLog: RunLog
) => {
  const { confirmWindow, publishBufferBytes, publishBufferSize } = settings
  const { cancelRetire, declare, declared } = topology

  // `pending` is accepted but unwritten, `unconfirmed` is written, oldest first.
  const pending = new Fifo<Outgoing>()
  const unconfirmed = new Fifo<Outgoing>()
  let inflight = 0
  let published = 0
  let dropped = 0
  let nacked = 0
  let republished = 0
  const nackLog = new FirstOnly(runLog)
  const outageLosses = new OutageLosses("RabbitMQ outage: the publish buffer was full, messages dropped", ["dropped"], {
    bufferSize: publishBufferSize,
    bufferBytes: publishBufferBytes
  })
  /** The UTF-8 bytes of the messages accepted and not yet written (`pending` and parked). */
  let bufferedBytes = 0

  /** A message into the buffer, its bytes counted until it is written (`pump`). */
  const hold = (entry: Outgoing) => {
    pending.push(entry)
    bufferedBytes += entry.bytes
  }

  /** Whether the outage buffer has room for `bytes` more in one more message. */
  const roomFor = (bytes: number) =>
    pending.length + parkedCount < publishBufferSize && bufferedBytes + bytes <= publishBufferBytes

  const drop = (count: number) => {
    dropped += count
    outageLosses.count("dropped", count)
  }

  const settle = (entry: Outgoing, error: unknown) => {
    if (entry.state !== PENDING || entry.generation !== connection.link?.generation) return
    if (error === null || error === undefined) {
      entry.state = CONFIRMED
    } else if (errorMessage(error) === "message nacked") {
      entry.state = NACKED
      nacked++
      nackLog.log(Effect.logWarning("RabbitMQ nacked a message (counted in stats().nacked)").pipe(
        Effect.annotateLogs({ topic: entry.topic })
      ))
    } else {
      return // the channel closed: the loss handler publishes it again
    }
    inflight--
    while (unconfirmed.length > 0 && unconfirmed.peek()!.state !== PENDING) unconfirmed.shift()
    if (pending.length > 0) pump()
  }

  const write = (entry: Outgoing, current: Link) => {
    entry.generation = current.generation
    const content = typeof entry.payload === "string" ? Buffer.from(entry.payload, "utf8") : entry.payload
    entry.payload = content
    current.publisher.publish(entry.exchange, entry.topic, content, PUBLISH_PROPERTIES, (error) => settle(entry, error))
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
    const current = connection.link
    if (current === undefined) return
    while (pending.length > 0 && inflight < confirmWindow) {
      const entry = pending.peek()!
      const waitingForTopic = parked.get(entry.topic)
      if (waitingForTopic !== undefined || (entry.exchange === DEFAULT_EXCHANGE && !declared.has(entry.topic))) {
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
      bufferedBytes -= entry.bytes
      releaseWaiter(entry)
    }
  }

  const publishNow = (topic: string, payload: string, exchange: string): Effect.Effect<void, BusError> => {
    cancelRetire(topic)
    const current = connection.link
    if (
      current !== undefined && pending.length === 0 && inflight < confirmWindow &&
      (exchange !== DEFAULT_EXCHANGE || declared.has(topic)) && !parked.has(topic)
    ) {
      try {
        write(new Outgoing(topic, payload, exchange), current)
        return Effect.void
      } catch {
        // the channel just closed: queue it below, the loss handler will publish it
      }
    }
    if (connection.closing) return Effect.fail(busError(DRIVER, "publish", "the bus is closed"))
    const entry = new Outgoing(topic, payload, exchange)
    entry.bytes = Buffer.byteLength(payload, "utf8")
    if (current === undefined) {
      if (roomFor(entry.bytes)) hold(entry)
      else drop(1) // logged once, with the count, when the outage ends (`reportOutageDrops`)
      return Effect.void
    }
    hold(entry)
    pump()
    if (entry.written) return Effect.void
    // Window full or the queue is being declared: wait for our turn (backpressure).
    return awaitWrite(entry, () => entry.written || connection.link === undefined)
  }

  // Hot path: one suspend per message; the fast path is a synchronous write.
  const publish = (topic: string, payload: string): Effect.Effect<void, BusError> =>
    Effect.suspend(() => publishNow(topic, payload, DEFAULT_EXCHANGE))

  const broadcast = (topic: string, payload: string): Effect.Effect<void, BusError> =>
    Effect.suspend(() => publishNow(topic, payload, BROADCAST_EXCHANGE))

  const tryPublish = (topic: string, payload: string): boolean => {
    const current = connection.link
    if (
      connection.closing || current === undefined || pending.length > 0 || inflight >= confirmWindow ||
      !declared.has(topic) || parked.has(topic)
    ) {
      return false
    }
    try {
      cancelRetire(topic)
      write(new Outgoing(topic, payload, DEFAULT_EXCHANGE), current)
      return true
    } catch {
      return false
    }
  }

  /**
   * The connection is gone. Messages written but not confirmed go back in front of the buffer, to
   * be published again after the reconnect (per topic: unconfirmed, then parked, then what was never
   * looked at). The buffer is then held to its bounds, keeping the oldest: what does not fit is
   * dropped and counted. Waiting publishers are released, their messages accepted or dropped.
   * Returns how many unconfirmed messages will be published again.
   */
  const takeBack = (): number => {
    const again = unconfirmed.takeAll().filter((entry) => entry.state === PENDING)
    inflight = 0
    const waiting = [...again, ...takeParked(), ...pending.takeAll()]
    bufferedBytes = 0
    let kept = 0
    let keptAgain = 0
    for (let i = 0; i < waiting.length; i++) {
      const entry = waiting[i]!
      if (i < again.length) {
        entry.written = false
        entry.bytes = Buffer.byteLength(entry.payload, "utf8") // one written at once was never measured
      }
      if (roomFor(entry.bytes)) {
        hold(entry)
        kept++
        if (i < again.length) keptAgain++
      }
      releaseWaiter(entry)
    }
    drop(waiting.length - kept)
    republished += keptAgain
    return keptAgain
  }

  return {
    publish,
    broadcast,
    tryPublish,
    pump,
    takeBack,
    /** One line for the outage that just ended (or the close): how many messages it dropped. */
    reportOutageDrops: outageLosses.report,
    /** Accepted and not yet written, parked ones aside. */
    pendingCount: () => pending.length,
    /** Accepted and not yet written, parked ones included. */
    buffered: () => pending.length + parkedCount,
    inflight: () => inflight,
    stats: () => ({
      published,
      unconfirmed: inflight,
      buffered: pending.length + parkedCount,
      bufferedBytes,
      dropped,
      nacked,
      republished
    })
  }
}
