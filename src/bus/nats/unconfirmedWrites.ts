/**
 * The core NATS writes the server has not confirmed yet (docs/operations.md, "Bus outages"), kept
 * to be written again if their connection dies.
 *
 * Under load a write waits a few milliseconds for its PONG, long enough to outlive young-generation
 * collections: kept as strings or as Buffers, every event would be copied and promoted by the
 * collector (measured: twice the GC time of the flood). So each write is encoded once, as the whole
 * protocol frame the server reads (`PUB <topic> <bytes>\r\n<payload>\r\n`), into reusable chunks of
 * memory the collector does not move, one frame after the other, and the client is handed a view
 * of it. The chunks are the only record: nothing is kept per write (a confirmation is a position in
 * them, and what a dead connection leaves is read back out of its frames). Encoding the frame here
 * rather than in the client spares two allocations per message (docs/benchmarks.md, fourth session).
 */
import { Fifo } from "../../actor/Fifo.js"

const DEFAULT_CHUNK_BYTES = 256 * 1024
/** `PUB `, the space before the length, and CRLF. */
const HEADER_OVERHEAD = 7
const SPACE = 32
const CR = 13
const LF = 10
/** Chunks kept however quiet it is. */
const CHUNKS_KEPT_IDLE = 4

/** A chunk of frames: where its last frame ends, and the position (in all bytes ever written) of its byte 0. */
class Chunk {
  end = 0
  base = 0
  constructor(readonly bytes: Buffer) {}
}

const overMaxPayload = (bytes: number, maxPayload: number) =>
  new RangeError(`payload of ${bytes} bytes over the server's max_payload (${maxPayload})`)

const decimalDigits = (n: number): number => (n < 10 ? 1 : n < 100 ? 2 : n < 1_000 ? 3 : n < 10_000 ? 4 : String(n).length)

export class UnconfirmedWrites {
  /** Chunks holding unconfirmed writes, oldest first; the last is being filled. */
  private readonly inUse = new Fifo<Chunk>()
  private readonly spare: Array<Chunk> = []
  /** Bytes written so far, every frame one after the other: the position after the last write. */
  private written = 0
  /** The position up to which the server has read everything. */
  private confirmed = 0
  /**
   * How many chunks (in use and spare) are kept: the most ever in use at once, less one each time
   * the store empties. A flood keeps megabytes unconfirmed (the server answers a PING only after
   * reading everything before it), and reuses its chunks rather than allocating new ones (measured:
   * 550 chunk allocations per bench run when 4 were kept, and twice the full collections); once it
   * is over, the chunks are let go one per confirmation that empties the store.
   */
  private chunksKept = CHUNKS_KEPT_IDLE
  private lastTopic = ""
  private lastTopicBytes = 0

  constructor(private readonly chunkBytes = DEFAULT_CHUNK_BYTES) {}

  /** Whether every write is confirmed. */
  get isEmpty(): boolean {
    return this.confirmed === this.written
  }

  /** The memory the store keeps outside the heap: its chunks, in use or spare. */
  get bytesHeld(): number {
    let bytes = 0
    for (let i = 0; i < this.inUse.length; i++) bytes += this.inUse.at(i)!.bytes.length
    for (const chunk of this.spare) bytes += chunk.bytes.length
    return bytes
  }

  /**
   * Encodes the frame publishing `payload` (text, or bytes taken back from a dead connection) on
   * `topic` (a subject the caller checked: no spaces), keeps it, and returns its bytes for the
   * client. Throws, keeping nothing, when the payload is over `maxPayload` bytes (the server
   * would close the connection).
   */
  add(topic: string, payload: string | Uint8Array, maxPayload = Infinity): Uint8Array {
    const lengthDigits = this.lengthDigits(payload)
    const headerBytes = HEADER_OVERHEAD + this.topicBytes(topic) + lengthDigits
    const chunk = this.room(headerBytes, payload, maxPayload)
    const bytes = chunk.bytes
    const start = chunk.end
    const payloadOffset = start + headerBytes
    let length = payload.length
    if (typeof payload === "string") length = bytes.write(payload, payloadOffset)
    else bytes.set(payload, payloadOffset)
    if (length > maxPayload) throw overMaxPayload(length, maxPayload)
    bytes.write("PUB " + topic + " " + length + "\r\n", start)
    const end = payloadOffset + length
    bytes[end] = CR
    bytes[end + 1] = LF
    chunk.end = end + 2
    this.written += chunk.end - start
    return new Uint8Array(bytes.buffer, bytes.byteOffset + start, end + 2 - start)
  }

  /** The position after the last write: confirming it confirms every write so far. */
  mark(): number {
    return this.written
  }

  /**
   * The server read everything before `mark`: those writes are forgotten, their chunks reused. A
   * mark at or behind what is confirmed already (a late PONG, one of a connection whose writes were
   * taken back) changes nothing.
   */
  confirm(mark: number): void {
    if (mark <= this.confirmed) return
    this.confirmed = mark
    while (this.inUse.length > 1) {
      const oldest = this.inUse.peek()!
      if (oldest.base + oldest.end > mark) break
      this.recycle(this.inUse.shift()!)
    }
    if (this.isEmpty) this.emptied()
  }

  /** Removes every write, oldest first, as topic and a copy of its payload (the chunks are reused). */
  takeAll(): Array<{ readonly topic: string; readonly payload: Uint8Array }> {
    const taken: Array<{ readonly topic: string; readonly payload: Uint8Array }> = []
    let offset = this.inUse.length > 0 ? this.confirmed - this.inUse.peek()!.base : 0
    while (this.inUse.length > 0) {
      const chunk = this.inUse.peek()!
      const bytes = chunk.bytes
      while (offset < chunk.end) {
        // PUB <topic> <length>\r\n<payload>\r\n
        const topicEnd = bytes.indexOf(SPACE, offset + 4)
        const lineEnd = bytes.indexOf(CR, topicEnd + 1)
        const length = Number(bytes.toString("latin1", topicEnd + 1, lineEnd))
        const payloadStart = lineEnd + 2
        taken.push({
          topic: bytes.toString("utf8", offset + 4, topicEnd),
          payload: Buffer.from(bytes.subarray(payloadStart, payloadStart + length))
        })
        offset = payloadStart + length + 2
      }
      if (this.inUse.length === 1) break
      this.recycle(this.inUse.shift()!)
      offset = 0
    }
    this.confirmed = this.written
    this.emptied()
    return taken
  }

  /**
   * Nothing unconfirmed: the chunk being filled starts over (or goes, if it was made for one large
   * payload), and one chunk more than needed is let go.
   */
  private emptied(): void {
    const filling = this.inUse.peek()
    if (filling !== undefined && filling.bytes.length !== this.chunkBytes) {
      this.inUse.shift()
    } else if (filling !== undefined) {
      filling.end = 0
      filling.base = this.written
    }
    this.chunksKept = Math.max(CHUNKS_KEPT_IDLE, this.inUse.length, this.chunksKept - 1)
    if (this.inUse.length + this.spare.length > this.chunksKept) this.spare.pop()
  }

  private inUseLast(): Chunk {
    return this.inUse.at(this.inUse.length - 1)!
  }

  /**
   * Decimal digits of the payload's UTF-8 length, before it is encoded (the header goes first): a
   * string of n UTF-16 units takes n to 3n bytes, so only when those differ in digits is it measured.
   */
  private lengthDigits(payload: string | Uint8Array): number {
    if (typeof payload !== "string") return decimalDigits(payload.byteLength)
    const fewest = decimalDigits(payload.length)
    return fewest === decimalDigits(payload.length * 3) ? fewest : decimalDigits(Buffer.byteLength(payload))
  }

  /** UTF-8 bytes of `topic` (a dialog's topics repeat: the last one is remembered). */
  private topicBytes(topic: string): number {
    if (topic !== this.lastTopic) {
      this.lastTopic = topic
      this.lastTopicBytes = Buffer.byteLength(topic)
    }
    return this.lastTopicBytes
  }

  /**
   * The chunk the frame goes into (its header is `headerBytes`): the one being filled, or a new
   * one. A payload measured over `maxPayload` is refused before any chunk is made for it.
   */
  private room(headerBytes: number, payload: string | Uint8Array, maxPayload: number): Chunk {
    const filling = this.inUse.length > 0 ? this.inUseLast() : undefined
    const free = filling === undefined ? -1 : filling.bytes.length - filling.end - headerBytes - 2
    // At most 3 bytes per UTF-16 unit: measure exactly only when that bound does not fit.
    if (typeof payload === "string" && payload.length * 3 <= free) return filling!
    const payloadBytes = typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength
    if (payloadBytes <= free) return filling!
    if (payloadBytes > maxPayload) throw overMaxPayload(payloadBytes, maxPayload)
    const needed = headerBytes + payloadBytes + 2
    const chunk = needed > this.chunkBytes ?
      new Chunk(Buffer.allocUnsafeSlow(needed)) :
      this.spare.pop() ?? new Chunk(Buffer.allocUnsafeSlow(this.chunkBytes))
    chunk.end = 0
    chunk.base = this.written
    this.inUse.push(chunk)
    if (this.inUse.length > this.chunksKept) this.chunksKept = this.inUse.length
    return chunk
  }

  private recycle(chunk: Chunk): void {
    if (chunk.bytes.length === this.chunkBytes && this.inUse.length + this.spare.length < this.chunksKept) {
      this.spare.push(chunk)
    }
  }
}
