/**
 * The one place that reaches into amqplib's internals (2.x: its multiplexer), to write the
 * publisher's frames sooner and in fewer syscalls. Each part checks the shape it relies on and
 * does nothing if it differs, so an amqplib upgrade can make the driver slower, never wrong; the
 * test "amqplib's internals still fit the patch" (test/bus/amqp.test.ts) fails when they changed.
 */
import type { Channel, ChannelModel } from "amqplib"
import type { Writable } from "node:stream"

export interface AmqplibWrites {
  /** Writes the publisher's frames now rather than at amqplib's turn; does nothing if the internals differ. */
  readonly flushPublisher: () => void
  /** Whether each part found the internals it relies on. */
  readonly corked: boolean
  readonly writesAtOnce: boolean
}

/** Corks the connection's batches and makes `publisher`'s frames writable at once (both below). */
export const patchAmqplibWrites = (model: ChannelModel, publisher: Channel): AmqplibWrites => {
  const corked = corkBatchedWrites(model)
  const flush = writeAtOnce(model, publisher)
  return { flushPublisher: flush ?? (() => undefined), corked, writesAtOnce: flush !== undefined }
}

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
 */
const writeAtOnce = (model: ChannelModel, channel: Channel): (() => void) | undefined => {
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
