/**
 * The core NATS driver's store of unconfirmed writes: what the client was handed stays intact
 * until confirmed (chunks are reused only after), a confirmation covers exactly the writes before
 * its mark (late, repeated or stale ones change nothing), and what a dead connection leaves is
 * given back whole, in order.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { UnconfirmedWrites } from "../../src/bus/nats/unconfirmedWrites.js"

type Step =
  | {
    readonly _tag: "Write"
    readonly topic: string
    readonly payload: string
    readonly asBytes: boolean
    /** The server's max_payload, when the step has one (a payload over it is refused). */
    readonly maxPayload: number | null
  }
  /** A PING: the position after every write so far. */
  | { readonly _tag: "Mark" }
  /** A PONG, for any mark taken so far (the latest, an older one, or one of a dead connection). */
  | { readonly _tag: "Confirm"; readonly pick: number }
  | { readonly _tag: "ConnectionDied" }

// Sizes from a few bytes to past a chunk (256 KiB), characters from ASCII to 4-byte UTF-8; lengths
// around 333 and 3,333 units, whose UTF-8 length may or may not gain a digit.
const payloadArbitrary = fc.oneof(
  { weight: 8, arbitrary: fc.string({ minLength: 0, maxLength: 2_000 }) },
  { weight: 3, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 500 }) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom("a", "é", "€", "😀"), fc.constantFrom(33, 34, 333, 334, 3_333, 3_334)).map((
      [char, times]
    ) => char.repeat(times))
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom("a", "é", "€", "😀"), fc.integer({ min: 20_000, max: 140_000 })).map((
      [char, times]
    ) => char.repeat(times))
  }
)

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      _tag: fc.constant("Write" as const),
      // A topic's bytes are counted apart from its characters: one with UTF-8 beyond ASCII too.
      topic: fc.constantFrom("events_a", "events_b", "responses_a", "events_é€😀"),
      payload: payloadArbitrary,
      asBytes: fc.boolean(),
      maxPayload: fc.option(fc.integer({ min: 0, max: 200_000 }), { freq: 4 })
    })
  },
  { weight: 3, arbitrary: fc.constant({ _tag: "Mark" as const }) },
  { weight: 4, arbitrary: fc.record({ _tag: fc.constant("Confirm" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "ConnectionDied" as const }) }
)

const DEFAULT_CHUNK_BYTES = 256 * 1024

/** The frame the server reads: the protocol line, the payload, CRLF. */
const frameOf = (topic: string, payload: Buffer) =>
  Buffer.concat([Buffer.from(`PUB ${topic} ${payload.length}\r\n`), payload, Buffer.from("\r\n")])

describe("UnconfirmedWrites", () => {
  it("hands out each frame, keeps it intact until a mark after it is confirmed, and gives back the rest in order", () => {
    fc.assert(
      fc.property(fc.array(stepArbitrary, { minLength: 100, maxLength: 400 }), fc.constantFrom(4096, 65_536, undefined), (
        steps,
        chunkBytes
      ) => {
        // Small chunks as well as the default: chunks are filled, freed and reused many times per run.
        const store = new UnconfirmedWrites(chunkBytes)
        let written = 0
        let confirmedUpTo = 0
        let connection = 0
        // What the client was handed and the server has not confirmed, with what it must still read.
        let handed: Array<{ index: number; topic: string; view: Uint8Array; payload: Buffer; expected: Buffer }> = []
        const marks: Array<{ mark: number; upTo: number; connection: number }> = []
        for (const step of steps) {
          switch (step._tag) {
            case "Write": {
              const payload = Buffer.from(step.payload)
              const given = step.asBytes ? Buffer.from(step.payload) : step.payload
              if (step.maxPayload !== null && payload.length > step.maxPayload) {
                // Refused, and nothing of it kept: the checks below see the store as it was.
                expect(() => store.add(step.topic, given, step.maxPayload!)).toThrow(/max_payload/)
                break
              }
              const expected = frameOf(step.topic, payload)
              const view = store.add(step.topic, given, step.maxPayload ?? undefined)
              expect(Buffer.from(view).equals(expected)).toBe(true)
              handed.push({ index: written++, topic: step.topic, view, payload, expected })
              break
            }
            case "Mark":
              marks.push({ mark: store.mark(), upTo: written, connection })
              break
            case "Confirm": {
              if (marks.length === 0) break
              const { mark, upTo, connection: markedOn } = marks[step.pick % marks.length]!
              store.confirm(mark)
              // A PONG of a dead connection confirms nothing: its writes were taken back.
              if (markedOn === connection && upTo > confirmedUpTo) {
                confirmedUpTo = upTo
                handed = handed.filter((write) => write.index >= confirmedUpTo)
              }
              break
            }
            case "ConnectionDied": {
              const taken = store.takeAll()
              expect(taken.map((write) => write.topic)).toEqual(handed.map((write) => write.topic))
              taken.forEach((write, i) => expect(Buffer.from(write.payload).equals(handed[i]!.payload)).toBe(true))
              handed = []
              confirmedUpTo = written
              connection++
              break
            }
          }
          // Every unconfirmed write still reads as it was handed out: no chunk was reused under it.
          for (const write of handed) expect(Buffer.from(write.view).equals(write.expected)).toBe(true)
          expect(store.isEmpty).toBe(handed.length === 0)
          // Once everything is confirmed, no chunk made for one large payload is kept.
          if (store.isEmpty) expect(store.bytesHeld % (chunkBytes ?? DEFAULT_CHUNK_BYTES)).toBe(0)
        }
      }),
      { numRuns: 60 }
    )
  })

  it("refuses a payload over the server's max_payload and keeps nothing of it", () => {
    const store = new UnconfirmedWrites()
    store.add("events_a", "kept")
    expect(() => store.add("events_a", "x".repeat(101), 100)).toThrow(/max_payload/)
    const next = store.add("events_a", "next", 100)
    expect(Buffer.from(next).toString()).toBe("PUB events_a 4\r\nnext\r\n")
    expect(store.takeAll().map((write) => Buffer.from(write.payload).toString())).toEqual(["kept", "next"])
  })

  it("keeps the chunks a flood needed while it lasts, and lets them go once the writes are few again", () => {
    const store = new UnconfirmedWrites(4096)
    const event = "e".repeat(1000)
    const flood = (writes: number) => {
      for (let i = 0; i < writes; i++) store.add("events_a", event)
    }
    // A flood with 200 writes unconfirmed at a time: about 50 chunks in use.
    flood(100)
    let half = store.mark()
    flood(100)
    const chunksHeld = () => store.bytesHeld / 4096
    const inUse = chunksHeld()
    expect(inUse).toBeGreaterThanOrEqual(45)
    for (let round = 0; round < 5; round++) {
      const next = store.mark()
      store.confirm(half)
      half = next
      flood(100)
      // Confirmed chunks are reused: nothing beyond what the flood needed at its peak.
      expect(chunksHeld()).toBeLessThanOrEqual(inUse + 1)
    }
    store.confirm(store.mark())
    expect(store.isEmpty).toBe(true)
    expect(chunksHeld()).toBeGreaterThanOrEqual(inUse - 1) // still kept, a flood may resume
    // Quiet: one write confirmed at a time. One chunk is let go per emptying, down to the idle few.
    for (let i = 0; i < 100; i++) {
      store.add("events_a", "quiet")
      store.confirm(store.mark())
    }
    expect(chunksHeld()).toBeLessThanOrEqual(4)
  })

  it("a payload larger than a chunk, refused or confirmed, leaves no chunk of its size behind", () => {
    const store = new UnconfirmedWrites(4096)
    store.add("events_a", "small")
    store.confirm(store.mark())
    const held = store.bytesHeld
    expect(() => store.add("events_a", "x".repeat(20_000), 10_000)).toThrow(/max_payload/)
    expect(store.bytesHeld).toBe(held)
    store.add("events_a", "y".repeat(20_000))
    store.confirm(store.mark())
    expect(store.bytesHeld % 4096).toBe(0)
    expect(store.bytesHeld).toBeLessThanOrEqual(held)
  })

  it("a taken-back write is a copy: later writes into the reused chunk do not change it", () => {
    const store = new UnconfirmedWrites()
    store.add("events_a", "first")
    const [taken] = store.takeAll()
    store.add("events_a", "XXXXX")
    expect(Buffer.from(taken!.payload).toString()).toBe("first")
  })
})
