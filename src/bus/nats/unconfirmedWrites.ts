/**
 * The core NATS writes the server has not confirmed yet (docs/operations.md, "Bus outages"), kept
 * to be written again if their connection dies.
 *
 * Under load a write waits a few milliseconds for its PONG, long enough to outlive young-generation
 * collections: kept as strings or as Buffers, every event would be copied and promoted by the
 * collector (measured: twice the GC time of the flood). So each write is encoded once, as the whole
 * protocol frame the server reads (`PUB <topic> <bytes>\r\n<payload>\r\n`), into reusable chunks of
 * memory the collector does not move, and the client is handed a view of it; per write, only its
 * chunk, the payload's offset and length, and the topic are kept. Encoding the frame here rather
 * than in the client spares two allocations per message (docs/benchmarks.md, fourth session).
 */
import { Fifo } from "../../actor/Fifo.js"

const DEFAULT_CHUNK_BYTES = 256 * 1024
/** `PUB `, the space before the length, and CRLF. */
const HEADER_OVERHEAD = 7
/** A payload length in decimal, at most (a server's max_payload is under 10 GB). */
const MAX_LENGTH_DIGITS = 10
const CR = 13
const LF = 10
/** Chunks kept however quiet it is. */
const CHUNKS_KEPT_IDLE = 4

export class UnconfirmedWrites {
  /** Per write: chunk, offset, length, topic. */
  private readonly writes = new Fifo<string | Buffer | number>()
  /** Chunks holding unconfirmed writes, oldest first; the last is being filled. */
  private readonly inUse = new Fifo<Buffer>()
  private readonly spare: Array<Buffer> = []
  private filling: Buffer | undefined
  private fillOffset = 0
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

  /** Writes kept. */
  get length(): number {
    return this.writes.length / 4
  }

  /** Chunks held, in use or spare: the memory the store keeps outside the heap is this many × the chunk size. */
  get chunksHeld(): number {
    return this.inUse.length + this.spare.length
  }

  /**
   * Encodes the frame publishing `payload` (text, or bytes taken back from a dead connection) on
   * `topic`, keeps the write, and returns the frame's bytes for the client. Throws, keeping
   * nothing, when the payload is over `maxPayload` bytes (the server would close the connection).
   */
  add(topic: string, payload: string | Uint8Array, maxPayload = Infinity): Uint8Array {
    const topicBytes = this.topicBytes(topic)
    // Room for the longest header before the payload: its length is known only once it is encoded.
    const headerRoom = HEADER_OVERHEAD + topicBytes + MAX_LENGTH_DIGITS
    const payloadOffset = this.room(headerRoom, payload)
    const chunk = this.filling!
    let length = payload.length
    if (typeof payload === "string") length = chunk.write(payload, payloadOffset)
    else chunk.set(payload, payloadOffset)
    if (length > maxPayload) throw new RangeError(`payload of ${length} bytes over the server's max_payload (${maxPayload})`)
    const header = "PUB " + topic + " " + length + "\r\n"
    const lengthDigits = header.length - HEADER_OVERHEAD - topic.length
    const start = payloadOffset - (HEADER_OVERHEAD + topicBytes + lengthDigits)
    chunk.write(header, start)
    const end = payloadOffset + length
    chunk[end] = CR
    chunk[end + 1] = LF
    this.fillOffset = end + 2
    this.writes.push(chunk)
    this.writes.push(payloadOffset)
    this.writes.push(length)
    this.writes.push(topic)
    return new Uint8Array(chunk.buffer, chunk.byteOffset + start, end + 2 - start)
  }

  /** The oldest `count` writes are confirmed: forgotten, their chunks reused. */
  confirm(count: number): void {
    for (let i = 0; i < count && this.writes.length > 0; i++) {
      this.writes.shift()
      this.writes.shift()
      this.writes.shift()
      this.writes.shift()
    }
    const oldestChunk = this.writes.length > 0 ? this.writes.peek() as Buffer : this.filling
    while (this.inUse.length > 0 && this.inUse.peek() !== oldestChunk) this.recycle(this.inUse.shift()!)
    if (this.writes.length === 0) {
      this.fillOffset = 0 // nothing to keep: the chunk being filled starts over
      this.chunksKept = Math.max(CHUNKS_KEPT_IDLE, this.inUse.length, this.chunksKept - 1)
      if (this.inUse.length + this.spare.length > this.chunksKept) this.spare.pop()
    }
  }

  /** Removes every write, oldest first, as topic and a copy of its bytes (the chunks are reused). */
  takeAll(): Array<{ readonly topic: string; readonly payload: Uint8Array }> {
    const taken: Array<{ readonly topic: string; readonly payload: Uint8Array }> = []
    while (this.writes.length > 0) {
      const chunk = this.writes.shift() as Buffer
      const offset = this.writes.shift() as number
      const length = this.writes.shift() as number
      const topic = this.writes.shift() as string
      taken.push({ topic, payload: Buffer.from(chunk.subarray(offset, offset + length)) })
    }
    this.confirm(0)
    return taken
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
   * The offset in `filling` where `payload` goes, `headerRoom` bytes after the write's start, with
   * room after it for the frame's end; a new chunk if the current one is too full.
   */
  private room(headerRoom: number, payload: string | Uint8Array): number {
    const free = this.filling === undefined ? -1 : this.filling.length - this.fillOffset - headerRoom - 2
    // At most 3 bytes per UTF-16 unit: measure exactly only when that bound does not fit.
    if (typeof payload === "string" && payload.length * 3 <= free) return this.fillOffset + headerRoom
    const bytes = typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength
    if (bytes <= free) return this.fillOffset + headerRoom
    const needed = headerRoom + bytes + 2
    this.filling = needed > this.chunkBytes ?
      Buffer.allocUnsafeSlow(needed) :
      this.spare.pop() ?? Buffer.allocUnsafeSlow(this.chunkBytes)
    this.inUse.push(this.filling)
    if (this.inUse.length > this.chunksKept) this.chunksKept = this.inUse.length
    this.fillOffset = 0
    return headerRoom
  }

  private recycle(chunk: Buffer): void {
    if (chunk === this.filling) return
    if (chunk.length === this.chunkBytes && this.inUse.length + this.spare.length < this.chunksKept) {
      this.spare.push(chunk)
    }
  }
}
