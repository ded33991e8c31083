/**
 * Websocket frames out to one event socket, under Asterisk's `websocket_write_timeout`.
 *
 * Asterisk writes each frame with a deadline once the kernel send buffer is full; a write that misses
 * it closes the TCP stream. Node never blocks a write: what the kernel cannot take waits in user space.
 * So here a write misses its deadline when data is waiting and the kernel took none of it for the
 * timeout, while this event loop had time to spare: a loop busy with its own work (building a flood)
 * also keeps a reader in this process from reading, and that time does not count against the reader.
 * One deadline per socket at most, re-armed while data is waiting.
 */
import { randomBytes } from "node:crypto"
import type { Socket } from "node:net"

export class FrameWriter {
  // End offsets, in the socket's output, of frames written while data was waiting. Frames ending at or
  // before what the kernel took reach the reader; the rest are lost if the socket is dropped.
  // Pongs and close frames ws writes by itself are not counted: at worst one frame is misjudged.
  private readonly waitingFrameEnds: Array<number> = []
  private written: number
  private deadline: ReturnType<typeof setTimeout> | undefined
  private acceptedWhenArmed = 0
  private idleMsWhenArmed = 0

  constructor(
    private readonly socket: Socket,
    private readonly timeoutMs: number,
    private readonly onTimeout: (lostFrames: number) => void
  ) {
    this.written = socket.bytesWritten
    socket.once("close", () => clearTimeout(this.deadline))
  }

  /** Writes `frames`, whose frames end at the offsets `frameEnds` (ascending, relative to `frames`). */
  write(frames: Buffer, frameEnds: ReadonlyArray<number>, callback?: (error?: Error | null) => void): void {
    const socket = this.socket
    if (socket.writableLength === 0) {
      // everything written so far is in the kernel
      this.waitingFrameEnds.length = 0
      this.written = kernelAccepted(socket)
    }
    const start = this.written
    this.written += frames.length
    socket.write(frames, callback)
    if (socket.writableLength === 0) return
    for (const end of frameEnds) this.waitingFrameEnds.push(start + end)
    if (this.deadline === undefined) this.arm(kernelAccepted(socket))
  }

  private arm(accepted: number): void {
    this.acceptedWhenArmed = accepted
    this.idleMsWhenArmed = performance.eventLoopUtilization().idle
    this.deadline = setTimeout(this.onDeadline, this.timeoutMs)
  }

  // judged after one more I/O poll, so that room the kernel made while this loop was busy is taken first
  private readonly onDeadline = () => {
    setImmediate(this.judge)
  }

  private readonly judge = () => {
    this.deadline = undefined
    const socket = this.socket
    if (socket.destroyed) return
    if (socket.writableLength === 0) {
      this.waitingFrameEnds.length = 0
      return
    }
    const accepted = kernelAccepted(socket)
    const firstWaiting = this.waitingFrameEnds.findIndex((end) => end > accepted)
    const delivered = firstWaiting === -1 ? this.waitingFrameEnds.length : firstWaiting
    if (accepted > this.acceptedWhenArmed) {
      this.waitingFrameEnds.splice(0, delivered)
      this.arm(accepted)
    } else if (performance.eventLoopUtilization().idle - this.idleMsWhenArmed < this.timeoutMs / 2) {
      // this loop was too busy for the period to count: a new one, from the same point
      this.arm(accepted)
    } else {
      this.onTimeout(this.waitingFrameEnds.length - delivered)
    }
  }
}

// Node has no public count of what the kernel took: bytes handed to libuv minus libuv's unwritten queue.
const kernelAccepted = (socket: Socket): number => {
  const internals = socket as unknown as {
    readonly _bytesDispatched: number
    readonly _handle: { readonly writeQueueSize: number } | null
  }
  return internals._bytesDispatched - (internals._handle?.writeQueueSize ?? 0)
}

/** Bytes of an unmasked server frame carrying `payloadLength` bytes. */
export const frameSize = (payloadLength: number): number =>
  payloadLength + (payloadLength < 126 ? 2 : payloadLength < 65536 ? 4 : 10)

/** Writes one unmasked, final text frame at `offset`; returns the offset after it. */
export const writeTextFrame = (buffer: Buffer, offset: number, payload: string): number => {
  const length = Buffer.byteLength(payload)
  buffer[offset++] = 0x81
  if (length < 126) {
    buffer[offset++] = length
  } else if (length < 65536) {
    buffer[offset++] = 126
    buffer.writeUInt16BE(length, offset)
    offset += 2
  } else {
    buffer[offset++] = 127
    buffer.writeBigUInt64BE(BigInt(length), offset)
    offset += 8
  }
  return offset + buffer.write(payload, offset, "utf8")
}

/** One text frame as a buffer of its own. */
export const textFrame = (payload: string): Buffer => {
  const frame = Buffer.allocUnsafe(frameSize(Buffer.byteLength(payload)))
  writeTextFrame(frame, 0, payload)
  return frame
}

/**
 * One final text frame as a client sends it: masked with a random key (RFC 6455 §5.3), as Asterisk's
 * outbound sockets do.
 */
export const maskedTextFrame = (payload: string): Buffer => {
  const data = Buffer.from(payload, "utf8")
  const length = data.length
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10
  const frame = Buffer.allocUnsafe(header + 4 + length)
  frame[0] = 0x81
  if (length < 126) {
    frame[1] = 0x80 | length
  } else if (length < 65536) {
    frame[1] = 0x80 | 126
    frame.writeUInt16BE(length, 2)
  } else {
    frame[1] = 0x80 | 127
    frame.writeBigUInt64BE(BigInt(length), 2)
  }
  const key = randomBytes(4)
  key.copy(frame, header)
  const start = header + 4
  for (let i = 0; i < length; i++) frame[start + i] = data[i]! ^ key[i & 3]!
  return frame
}
