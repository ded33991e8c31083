/**
 * W3C traceparent: what a command may carry, and what AppStart and events carry while tracing.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { decodeCommand, encodeAppStart, encodeCommand, encodeWireEvent, goJsonString } from "../../src/protocol/codec.js"
import { formatTraceparent, parseTraceparent } from "../../src/protocol/traceparent.js"

const hex = (length: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${length}}$`))
const notAllZero = (text: string) => /[1-9a-f]/.test(text)
const context = fc.record({
  traceId: hex(32).filter(notAllZero),
  spanId: hex(16).filter(notAllZero),
  sampled: fc.boolean()
})

describe("traceparent", () => {
  it("formats a span's identity and reads it back", () => {
    fc.assert(fc.property(context, (span) => {
      const text = formatTraceparent(span)!
      expect(text).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
      expect(parseTraceparent(text)).toEqual(span)
    }))
  })

  it("reads the sampled flag alone among the flags, and later versions' first fields", () => {
    expect(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")?.sampled).toBe(true)
    expect(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02")?.sampled).toBe(false)
    expect(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")).toEqual({
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      sampled: true
    })
  })

  it("ignores what is not a valid traceparent", () => {
    for (
      const invalid of [
        "",
        "00-not-a-trace-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // all-zero span id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // version 00 has four fields
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff is invalid
        42,
        undefined
      ]
    ) expect(parseTraceparent(invalid), String(invalid)).toBeUndefined()
    expect(formatTraceparent({ traceId: "0".repeat(32), spanId: "00f067aa0ba902b7", sampled: true })).toBeUndefined()
  })

  it("travels after the seed's fields, and only when there is one", () => {
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    const command = { unique_id: "u", url: "/channels", method: "GET", body: "" }
    expect(Object.keys(JSON.parse(encodeCommand({ ...command, traceparent })))).toEqual([
      "unique_id",
      "url",
      "method",
      "body",
      "traceparent"
    ])
    expect(encodeCommand(command)).toBe(encodeCommand({ ...command, traceparent: undefined }))
    expect(decodeCommand(encodeCommand({ ...command, traceparent }))).toEqual({
      _tag: "Command",
      command: { ...command, traceparent }
    })
    // A traceparent of another type is not one of the seed's fields: ignored, not refused.
    expect(decodeCommand(JSON.stringify({ ...command, traceparent: 7 }))).toEqual({ _tag: "Command", command })

    const start = { application: "a", dialog_id: "d", server_id: "s" }
    expect(JSON.parse(encodeAppStart({ ...start, traceparent }))).toEqual({ ...start, traceparent })
    expect(encodeAppStart(start)).toBe("{\"application\":\"a\",\"dialog_id\":\"d\",\"server_id\":\"s\"}")
    const event = JSON.parse(encodeWireEvent(goJsonString("s"), "X", "{}", 3, traceparent, "t"))
    expect(Object.keys(event)).toEqual(["server_id", "timestamp", "type", "ari_body", "seq", "traceparent"])
    expect(event.traceparent).toBe(traceparent)
  })
})
