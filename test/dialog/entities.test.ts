import { describe, expect, it } from "@effect/vitest"
import { commandEntities, eventEntityKeys, responseEntities } from "../../src/dialog/entities.js"

describe("what events name", () => {
  it.each([
    ["a channel event", { type: "ChannelDtmfReceived", channel: { id: "A", name: "PJSIP/a-1" } }, ["c:A"]],
    ["a Local half, with its pair", { type: "ChannelVarset", channel: { id: "L2", name: "Local/100@ctx-00000001;2" } }, [
      "c:L2",
      "l:Local/100@ctx-00000001"
    ]],
    ["Dial: peer and caller", { type: "Dial", peer: { id: "P", name: "PJSIP/p" }, caller: { id: "C", name: "PJSIP/c" } }, [
      "c:P",
      "c:C"
    ]],
    ["entering a bridge", { type: "ChannelEnteredBridge", bridge: { id: "B" }, channel: { id: "A", name: "x" } }, [
      "c:A",
      "b:B"
    ]],
    ["a playback, and its target", { type: "PlaybackStarted", playback: { id: "p1", target_uri: "bridge:B" } }, [
      "p:p1",
      "b:B"
    ]],
    ["a recording, and its target", { type: "RecordingStarted", recording: { name: "r", target_uri: "channel:A" } }, [
      "r:r",
      "c:A"
    ]],
    ["an attended transfer", {
      type: "BridgeAttendedTransfer",
      transferer_first_leg: { id: "T1", name: "x" },
      transferer_second_leg: { id: "T2", name: "x" },
      transferer_first_leg_bridge: { id: "B1" },
      destination_bridge: "B9"
    }, ["c:T1", "c:T2", "b:B1", "b:B9"]],
    ["a device state", { type: "DeviceStateChanged", device_state: { name: "PJSIP/x", state: "INUSE" } }, []]
  ])("%s", (_, event, keys) => {
    expect(eventEntityKeys(event)).toEqual(keys)
  })
})

describe("what commands create", () => {
  it.each([
    ["originate, id in the query", "POST", "/channels?endpoint=PJSIP/b&app=a&channelId=X&otherChannelId=Y", "", [
      "c:X",
      "c:Y"
    ], ["X"]],
    ["originate, ids in the JSON body", "POST", "/channels", "{\"app\":\"a\",\"channelId\":\"X\",\"otherChannelId\":\"Y\"}", [
      "c:X",
      "c:Y"
    ], ["X"]],
    ["originate with id in the path", "POST", "/channels/X?app=a", "", ["c:X"], ["X"]],
    ["originate into the dialplan: bound, but not awaited", "POST", "/channels/X?extension=100&context=c", "", ["c:X"], []],
    ["create without id binds nothing (not `create`)", "POST", "/channels/create?endpoint=PJSIP/b", "", [], []],
    ["externalMedia with id", "POST", "/channels/externalMedia?app=a&channelId=E", "", ["c:E"], ["E"]],
    ["snoop with id in the path", "POST", "/channels/A/snoop/S?app=a", "", ["c:S"], ["S"]],
    ["snoop with snoopId", "POST", "/channels/A/snoop?app=a&snoopId=S", "", ["c:S"], ["S"]],
    ["play with id in the path", "POST", "/channels/A/play/P", "", ["p:P"], []],
    ["play with playbackId", "POST", "/bridges/B/play?media=x&playbackId=P", "", ["p:P"], []],
    ["record on a channel", "POST", "/channels/A/record", "{\"name\":\"rec\"}", ["r:rec"], []],
    ["bridge with bridgeId", "POST", "/bridges?type=mixing&bridgeId=B", "", ["b:B"], []],
    ["bridge with id in the path", "POST", "/bridges/B", "", ["b:B"], []],
    ["addChannel of two", "POST", "/bridges/B/addChannel?channel=A,C", "", ["c:A", "c:C"], []],
    ["a GET binds nothing", "GET", "/channels/X", "", [], []],
    ["a DELETE binds nothing", "DELETE", "/channels/X", "", [], []],
    ["an escaped id is decoded", "POST", "/channels/a%3Bb?app=a", "", ["c:a;b"], ["a;b"]]
  ])("%s", (_, method, url, body, keys, newChannels) => {
    expect(commandEntities(method, url, body)).toMatchObject({ keys, newChannels })
  })
})

describe("which created channels a dialog waits for", () => {
  it("only those that go into the dialog's own application", () => {
    expect(commandEntities("POST", "/channels?endpoint=PJSIP/b&app=ivr&channelId=X", "", "ivr"))
      .toMatchObject({ keys: ["c:X"], newChannels: ["X"], watched: true })
    // into another application: its events go to that application's dialogs, never to this one
    expect(commandEntities("POST", "/channels?endpoint=PJSIP/b&app=agents&channelId=X", "", "ivr"))
      .toMatchObject({ keys: ["c:X"], newChannels: [], watched: false })
    expect(commandEntities("POST", "/channels/A/snoop?app=agents&snoopId=S", "", "ivr"))
      .toMatchObject({ newChannels: [], watched: false })
  })
})

describe("what successful responses create", () => {
  it("reads the created entity from the response's shape, for POST only and 2xx only", () => {
    const channel = JSON.stringify({ id: "X", name: "PJSIP/b-1", state: "Down", caller: {}, dialplan: {} })
    expect(responseEntities("POST", 200, channel)).toMatchObject({ keys: ["c:X"], newChannels: ["X"] })
    expect(responseEntities("POST", 200, JSON.stringify({ id: "B", technology: "simple_bridge", bridge_type: "mixing" })))
      .toMatchObject({ keys: ["b:B"], newChannels: [] })
    expect(responseEntities("POST", 201, JSON.stringify({ id: "P", media_uri: "sound:x", target_uri: "channel:A" })))
      .toMatchObject({ keys: ["p:P"], newChannels: [] })
    expect(responseEntities("POST", 201, JSON.stringify({ name: "rec", format: "wav", target_uri: "channel:A" })))
      .toMatchObject({ keys: ["r:rec"], newChannels: [] })
    expect(responseEntities("GET", 200, channel)).toMatchObject({ keys: [], newChannels: [] })
    expect(responseEntities("POST", 404, "{\"message\":\"Channel not found\"}")).toMatchObject({ keys: [], newChannels: [] })
    expect(responseEntities("POST", 200, "[]")).toMatchObject({ keys: [], newChannels: [] })
  })
})
