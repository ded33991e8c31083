/**
 * The core NATS writes the server has not confirmed yet (docs/operations.md, "Bus outages"), kept
 * to be written again if their connection dies.
 *
 * Under load a write waits a few milliseconds for its PONG, long enough to outlive young-generation
 * collections: kept as strings or as Buffers, every event would be copied and promoted by the
 * collector (measured: twice the GC time of the flood). So each payload is encoded once, into
 * reusable chunks of memory the collector does not move, and the client is handed a view of it;
 * per write, only its chunk, offset, length and topic are kept. The encoding itself is the largest
 * cost this adds per event (docs/benchmarks.md, third session).
 */
import { Fifo } from "../../actor/Fifo.js"

const DEFAULT_CHUNK_BYTES = 256 * 1024
/** Free chunks kept for reuse; beyond, they go to the collector. */
const SPARE_CHUNKS = 4

export class UnconfirmedWrites {
  /** Per write: chunk, offset, length, topic. */
  private readonly writes = new Fifo<string | Buffer | number>()
  /** Chunks holding unconfirmed writes, oldest first; the last is being filled. */
  private readonly inUse = new Fifo<Buffer>()
  private readonly spare: Array<Buffer> = []
  private filling: Buffer | undefined
  private fillOffset = 0

  constructor(private readonly chunkBytes = DEFAULT_CHUNK_BYTES) {}

  /** Writes kept. */
  get length(): number {
    return this.writes.length / 4
  }

  /** Encodes `payload` (or copies it), keeps it with its topic, and returns the bytes to hand to the client. */
  add(topic: string, payload: string | Uint8Array): Uint8Array {
    const offset = this.room(payload)
    const chunk = this.filling!
    let length = payload.length
    if (typeof payload === "string") length = chunk.write(payload, offset)
    else chunk.set(payload, offset)
    this.fillOffset = offset + length
    this.writes.push(chunk)
    this.writes.push(offset)
    this.writes.push(length)
    this.writes.push(topic)
    return chunk.subarray(offset, offset + length)
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
    if (this.writes.length === 0) this.fillOffset = 0 // nothing to keep: the chunk being filled starts over
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

  /** The offset in `filling` where `payload` fits, with a new chunk if the current one is too full. */
  private room(payload: string | Uint8Array): number {
    const free = this.filling === undefined ? -1 : this.filling.length - this.fillOffset
    // At most 3 bytes per UTF-16 unit: measure exactly only when that bound does not fit.
    if (typeof payload === "string" && payload.length * 3 <= free) return this.fillOffset
    const bytes = typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength
    if (bytes <= free) return this.fillOffset
    this.filling = bytes > this.chunkBytes ?
      Buffer.allocUnsafeSlow(bytes) :
      this.spare.pop() ?? Buffer.allocUnsafeSlow(this.chunkBytes)
    this.inUse.push(this.filling)
    this.fillOffset = 0
    return 0
  }

  private recycle(chunk: Buffer): void {
    if (chunk === this.filling) return
    if (chunk.length === this.chunkBytes && this.spare.length < SPARE_CHUNKS) this.spare.push(chunk)
  }
}
