/**
 * The wire format of seed-protocol §2, byte for byte: field names, order and JSON types, Go's
 * escaping, and command decoding that never throws.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import {
  decodeCommand,
  encodeAppStart,
  encodeCommand,
  encodeCommandResponse,
  encodeWireEvent,
  goJsonString,
  wireTimestamp
} from "../../src/protocol/codec.js"
import { seedTopics } from "../../src/protocol/topics.js"

/** What Go's json.Marshal makes of a string: JSON.stringify plus \u003c \u003e \u0026 \u2028 \u2029. */
const goReference = (value: string) =>
  JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"))

describe("wire format", () => {
  it("Event: server_id, timestamp, type, ari_body (a string holding the frame) in Go's field order", () => {
    const frame = "{\"type\":\"StasisStart\",\"timestamp\":\"2026-11-30T10:28:16.331+0000\",\"args\":[]}"
    const encoded = encodeWireEvent(goJsonString("ast1"), "StasisStart", frame, undefined, undefined, "2026-11-30T10:28:16.332Z")
    expect(encoded).toBe(
      "{\"server_id\":\"ast1\",\"timestamp\":\"2026-11-30T10:28:16.332Z\",\"type\":\"StasisStart\",\"ari_body\":" +
        JSON.stringify(frame) + "}"
    )
    const parsed = JSON.parse(encoded)
    expect(Object.keys(parsed)).toEqual(["server_id", "timestamp", "type", "ari_body"])
    expect(typeof parsed.ari_body).toBe("string")
    expect(parsed.ari_body).toBe(frame)
  })

  it("a dialog's Event carries its number, `seq`, after the seed's fields (Go's decoder ignores unknown keys)", () => {
    const encoded = encodeWireEvent(goJsonString("ast1"), "ChannelDtmfReceived", "{}", 42, undefined, "t")
    expect(encoded).toBe("{\"server_id\":\"ast1\",\"timestamp\":\"t\",\"type\":\"ChannelDtmfReceived\",\"ari_body\":\"{}\",\"seq\":42}")
    expect(Object.keys(JSON.parse(encoded))).toEqual(["server_id", "timestamp", "type", "ari_body", "seq"])
  })

  it("the proxy's timestamp is RFC 3339 (what go-ari-library decodes into time.Time)", () => {
    const stamp = wireTimestamp(Date.UTC(2026, 10, 30, 10, 28, 16, 331))
    expect(stamp).toBe("2026-11-30T10:28:16.331Z")
    expect(stamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/)
  })

  it("AppStart and CommandResponse have the seed's fields, order and types", () => {
    const appStart = JSON.parse(encodeAppStart({ application: "foo", dialog_id: "d-1", server_id: "s" }))
    expect(Object.keys(appStart)).toEqual(["application", "dialog_id", "server_id"])
    const response = JSON.parse(encodeCommandResponse({ unique_id: "u", status_code: 204, response_body: "" }))
    expect(Object.keys(response)).toEqual(["unique_id", "status_code", "response_body"])
    expect(typeof response.status_code).toBe("number")
    expect(typeof response.response_body).toBe("string")
  })

  it("escapes <, > and & the way Go does (seed-observed: a caller named <Bob> & co)", () => {
    const frame = "{\"caller\":{\"name\":\"<Bob> & co\"}}"
    const encoded = encodeWireEvent(goJsonString("s"), "X", frame, undefined, undefined, "t")
    expect(encoded).toContain("\\u003cBob\\u003e \\u0026 co")
    expect(JSON.parse(encoded).ari_body).toBe(frame)
  })

  it.prop("any string is encoded exactly as Go would, and decodes back to itself", [fc.fullUnicodeString()], ([value]) => {
    expect(goJsonString(value)).toBe(goReference(value))
    expect(JSON.parse(goJsonString(value))).toBe(value)
  }, { fastCheck: { numRuns: 500 } })

  it.prop(
    "Event and CommandResponse round-trip any content",
    [fc.string(), fc.string(), fc.fullUnicodeString(), fc.integer({ min: 100, max: 599 })],
    ([serverId, type, body, status]) => {
      const event = JSON.parse(encodeWireEvent(goJsonString(serverId), type, body, undefined, undefined, "t"))
      expect(event).toEqual({ server_id: serverId, timestamp: "t", type, ari_body: body })
      const numbered = JSON.parse(encodeWireEvent(goJsonString(serverId), type, body, status, undefined, "t"))
      expect(numbered).toEqual({ server_id: serverId, timestamp: "t", type, ari_body: body, seq: status })
      const response = JSON.parse(encodeCommandResponse({ unique_id: type, status_code: status, response_body: body }))
      expect(response).toEqual({ unique_id: type, status_code: status, response_body: body })
    },
    { fastCheck: { numRuns: 300 } }
  )

  it("topic names are the seed's", () => {
    expect(seedTopics.app("voicemail")).toBe("voicemail")
    expect(seedTopics.events("d")).toBe("events_d")
    expect(seedTopics.commands("d")).toBe("commands_d")
    expect(seedTopics.responses("d")).toBe("responses_d")
  })
})

describe("command decoding", () => {
  it("reads a seed Command (body a JSON string, unique_id empty or absent)", () => {
    const seed = "{\"unique_id\":\"\",\"url\":\"/channels/1/play\",\"method\":\"POST\",\"body\":\"{\\\"media\\\":\\\"sound:x\\\"}\"}"
    expect(decodeCommand(seed)).toEqual({
      _tag: "Command",
      command: { unique_id: "", url: "/channels/1/play", method: "POST", body: "{\"media\":\"sound:x\"}" }
    })
    expect(decodeCommand("{\"url\":\"/asterisk/info\"}")).toEqual({
      _tag: "Command",
      command: { unique_id: "", url: "/asterisk/info", method: "", body: "" }
    })
  })

  it("tells DUMMY (not JSON) from invalid JSON commands, keeping the unique_id it could read", () => {
    expect(decodeCommand("DUMMY")).toEqual({ _tag: "NotJson" })
    expect(decodeCommand("[1,2]")).toMatchObject({ _tag: "Invalid", unique_id: "" })
    expect(decodeCommand("{\"unique_id\":\"x\",\"body\":{\"a\":1}}")).toEqual({
      _tag: "Invalid",
      unique_id: "x",
      reason: "body must be a string, got object"
    })
  })

  it.prop("never throws, and a valid command survives encode → decode", [fc.string(), fc.record({
    unique_id: fc.string(),
    url: fc.string(),
    method: fc.string(),
    body: fc.string()
  })], ([garbage, command]) => {
    expect(["Command", "NotJson", "Invalid"]).toContain(decodeCommand(garbage)._tag)
    expect(decodeCommand(encodeCommand(command))).toEqual({ _tag: "Command", command })
  }, { fastCheck: { numRuns: 300 } })
})
