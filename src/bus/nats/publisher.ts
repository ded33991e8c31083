/**
 * The NATS driver's publisher: the outage buffer, core NATS writes confirmed by a PONG (and written
 * again when the connection that took them dies unconfirmed), and JetStream mode's window of
 * unacknowledged messages with their acknowledgements.
 *
 * Connection loss: nats.js discards its own outbound buffer when it redials, so what is published
 * meanwhile goes into a buffer of ours, bounded by a count and a byte budget, and is written in
 * order once the driver has resynchronised after the reconnect; overflow is counted
 * (`stats().dropped`) and logged, one line per outage. Messages written into a connection that
 * then dies are not lost either: a PING is sent behind the writes (one awaiting its PONG at a
 * time), and every message is kept (off-heap: unconfirmedWrites.ts) until a PONG confirms the
 * server read it; what is unconfirmed when the connection dies goes back in front of the buffer
 * (`stats().republished`).
 * The server may have read some of them, so a subscriber can receive those twice: dialog events
 * carry `seq` for that. What does not fit the buffer's budget is counted as lost
 * (`stats().unconfirmedLost`; the oldest first, being the likeliest to have reached the server).
 *
 * JetStream mode: topics under `subjectPrefix` are published with a message id (`Nats-Msg-Id`) and
 * a reply subject; the stream answers each with an acknowledgement on one subscription of ours. At
 * most `ackWindow` messages (and `ackWindowBytes`) await theirs; beyond, `tryPublish` says false
 * and `publish` suspends. After a reconnect (or when acknowledgements stop coming for
 * `ackTimeoutMs`) every unacknowledged message is written again, in order and with its id, before
 * anything newer: the stream drops the ones it already has. Broadcasts (presence) are plain
 * publishes in either mode: live state, not history, they await no acknowledgement and take no room
 * in the window (the stream still captures them, as any subject under the prefix).
 */
import { createInbox, headers, type Msg, type NatsConnection } from "@nats-io/transport-node"
import { randomBytes } from "node:crypto"
import { Duration, Effect } from "effect"
import { Fifo } from "../../actor/Fifo.js"
import type { BusError } from "../Bus.js"
import { awaitWrite, busError, FirstOnly, OutageLosses, releaseWaiter } from "../internal.js"
import { checkPublishable, maxPayload, socketConnected, transportOf, writePublishFrame } from "./client.js"
import { DRIVER } from "./options.js"
import { type JetStreamSettings, readAcknowledgement, TEMPORARILY_UNAVAILABLE } from "./stream.js"
import { UnconfirmedWrites } from "./unconfirmedWrites.js"

/** What the driver's parts share: the connection side sets it, the publisher and subscriptions read it. */
export interface NatsShared {
  /** The client connection, from the first successful connect on (nats.js redials it by itself). */
  nc: NatsConnection | undefined
  /** The socket publishes go straight to, once resynchronised after (re)connecting; undefined meanwhile. */
  link: object | undefined
  /** Resynchronisations so far: an acknowledgement of a message written before the last one is stale. */
  resyncs: number
  closing: boolean
}

export interface PublisherSettings {
  readonly publishBufferSize: number
  readonly publishBufferBytes: number
  readonly subjectPrefix: string
  readonly jetstream: JetStreamSettings | undefined
}

/** Logs from the client's callbacks, outside any fiber. */
export type RunLog = (effect: Effect.Effect<void>) => void

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

export const makePublisher = (
  shared: NatsShared,
  settings: PublisherSettings,
  runLog: RunLog,
  /** Asks the connection side for a resynchronisation (acknowledgements that stopped coming). */
  askResync: () => void
) => {
  const { publishBufferBytes, publishBufferSize, subjectPrefix, jetstream } = settings
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
  const rejectionLog = new FirstOnly(runLog)
  const outageLosses = new OutageLosses(
    "NATS outage: messages lost (the publish buffer full, or unconfirmed)",
    ["dropped", "unconfirmed"],
    { bufferSize: publishBufferSize, bufferBytes: publishBufferBytes }
  )

  // Core NATS writes are confirmed by a PONG: the server answers a PING after reading everything before it.
  /** The socket the unconfirmed core writes went to. */
  let coreTransport: object | undefined
  let pingQueued = false
  /** The socket whose PING awaits its PONG, if one does. */
  let pongAwaitedOn: object | undefined
  const unconfirmedWrites = new UnconfirmedWrites()

  /**
   * The connection of the unconfirmed writes died: they go back in front of the buffer, to be written
   * again after the reconnect, as far as its count and bytes allow; the oldest beyond it are lost.
   */
  const reclaimUnconfirmed = () => {
    if (unconfirmedWrites.isEmpty) return
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
   * A PING behind the tick's core writes: its PONG confirms everything written before it. One
   * awaits its PONG at a time, and the PONG sends the next if more was written meanwhile: a write
   * is kept at most about two round trips, and a flood that the client writes a few messages per
   * tick costs one PING and one PONG per round trip, not per tick (measured: per tick cost more
   * CPU per event than the encoding).
   */
  const confirmWrites = (connection: NatsConnection) => {
    pingQueued = false
    const transport = coreTransport
    if (transportOf(connection) !== transport || !socketConnected(connection)) return reclaimUnconfirmed()
    const mark = unconfirmedWrites.mark()
    pongAwaitedOn = transport
    connection.flush().then(
      () => {
        if (pongAwaitedOn === transport) pongAwaitedOn = undefined
        // Reclaimed already when the new socket was resynchronised.
        if (coreTransport !== transport) return
        // A PONG read on another socket says nothing of what went into this one.
        if (transportOf(connection) !== transport) return reclaimUnconfirmed()
        unconfirmedWrites.confirm(mark)
        if (!unconfirmedWrites.isEmpty) confirmSoon(connection)
      },
      () => {
        if (pongAwaitedOn === transport) pongAwaitedOn = undefined
        // nats.js rejects the PINGs of a connection that died when it dials again
        if (coreTransport === transport) reclaimUnconfirmed()
      }
    )
  }

  // Queued before the client's own flush of the tick (see writeCore): the PING goes out in the same write.
  const confirmSoon = (connection: NatsConnection) => {
    if (pingQueued || pongAwaitedOn === coreTransport) return
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
    checkPublishable(connection, topic)
    // Encoded here rather than by the client, to be kept until confirmed.
    const frame = unconfirmedWrites.add(topic, payload, maxPayload(connection))
    confirmSoon(connection)
    writePublishFrame(connection, frame)
  }

  const captured = (topic: string) => jetstream !== undefined && topic.startsWith(subjectPrefix)

  const writeToStream = (connection: NatsConnection, entry: Outgoing) => {
    const messageHeaders = headers()
    messageHeaders.set("Nats-Msg-Id", messageIdPrefix + entry.id)
    connection.publish(entry.topic, entry.payload, { headers: messageHeaders, reply: ackPrefix + entry.id })
    entry.writtenIn = shared.resyncs
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
    const connection = shared.nc
    return shared.link !== undefined && connection !== undefined && transportOf(connection) === shared.link &&
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
      releaseWaiter(entry)
    }
  }

  /** Connected, but older messages wait or the window is full: queue behind them until written. */
  const awaitTurn = (entry: Outgoing): Effect.Effect<void> => {
    waiting.push(entry)
    waitingBytes += entry.bytes
    pump()
    if (entry.written) return Effect.void
    return awaitWrite(entry, () => entry.written || shared.link === undefined)
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
    if (shared.closing) return Effect.fail(busError(DRIVER, "publish", "the bus is closed"))
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
    if (connection === undefined || waiting.length > 0 || shared.closing) return false
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
    if (shared.link === undefined) return
    shared.link = undefined
    runLog(Effect.logWarning(`NATS JetStream: ${reason}; writing the unacknowledged messages again`).pipe(
      Effect.annotateLogs({ awaitingAck: unacked.size })
    ))
    askResync()
  }

  const onAcknowledgement = (error: Error | null, msg: Msg) => {
    if (error !== null) return
    const entry = unacked.get(Number(msg.subject.slice(ackPrefix.length)))
    if (entry === undefined) return // answered already (it was written twice), or not an id of ours
    if (msg.data.length === 0) {
      // 503 "no responders": no stream took it (JetStream restarting, the stream deleted)
      if (msg.headers?.code === 503 && entry.writtenIn === shared.resyncs) requestResync("the stream did not answer")
      return
    }
    const answer = readAcknowledgement(msg.string())
    if (answer === undefined) return
    if (answer === "stored") {
      acknowledged++
    } else if (answer.errCode === TEMPORARILY_UNAVAILABLE) {
      if (entry.writtenIn === shared.resyncs) requestResync(`the stream is unavailable (${answer.description})`)
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
        const head: Outgoing | undefined = shared.link === undefined ? undefined : unacked.values().next().value
        if (head !== undefined && head === oldest && head.writtenIn === oldestWrittenIn) {
          requestResync(`no acknowledgement for ${settings.ackTimeoutMs} ms`)
        }
        oldest = head
        oldestWrittenIn = head?.writtenIn ?? -1
      })),
      Effect.forever
    )
  }

  /** After a (re)connect, before the gate opens: what the connection lost goes out first. */
  const reopen = (connection: NatsConnection) => {
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
    shared.link = transport
    const buffered = waiting.length
    pump()
    return { republished: again, buffered, stillWaiting: waiting.length }
  }

  /** The connection dropped: publishers waiting for the window are accepted into the reconnect buffer. */
  const onDisconnect = () => {
    shared.link = undefined
    const held = waiting.takeAll()
    for (const entry of held) releaseWaiter(entry)
    waiting.prependAll(held)
    // Older still: what the dead socket took and the server never confirmed.
    reclaimUnconfirmed()
  }

  /** Closing: the last acknowledgements and writes, bounded (a broker that stopped answering must not hold it up). */
  const settleBeforeClose: Effect.Effect<void> = Effect.suspend(() => {
    if (shared.link === undefined || (unacked.size === 0 && waiting.length === 0)) return Effect.void
    return Effect.async<void>((resume) => {
      onIdle = () => resume(Effect.void)
      return Effect.sync(() => {
        onIdle = undefined
      })
    }).pipe(Effect.interruptible, Effect.timeout("2 seconds"), Effect.ignore)
  })

  return {
    publish,
    tryPublish,
    broadcast,
    /** The subject prefix of the acknowledgements (JetStream): one subscription takes them all. */
    ackSubjects: `${ackPrefix}*`,
    onAcknowledgement,
    watchAcknowledgements,
    reopen,
    onDisconnect,
    settleBeforeClose,
    undelivered: () => ({ buffered: waiting.length, awaitingAck: unacked.size }),
    reportOutage: outageLosses.report,
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
      lost: dropped + unconfirmedLost + rejected
    })
  }
}
