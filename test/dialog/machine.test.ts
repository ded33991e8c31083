import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import type { DecodedCommand } from "../../src/protocol/codec.js"
import {
  type DialogEffect,
  type DialogInput,
  type DialogState,
  initialState,
  type MachineOptions,
  transition
} from "../../src/dialog/machine.js"

/** One step of a generated scenario; commands and completions are resolved against the running state. */
type Step =
  | { readonly kind: "event"; readonly type: string; readonly channel: "A" | "B" | "none" }
  | { readonly kind: "ready" }
  | { readonly kind: "command"; readonly url: string; readonly method: string }
  | { readonly kind: "attach" }
  | { readonly kind: "invalid" }
  | { readonly kind: "complete"; readonly status: number }
  | { readonly kind: "grace" }
  | { readonly kind: "vanish" }
  | { readonly kind: "abort" }
  | { readonly kind: "linger" }

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({
    kind: fc.constant("event" as const),
    type: fc.constantFrom("ChannelDtmfReceived", "ChannelStateChange", "PlaybackStarted", "StasisStart", "StasisEnd",
      "ChannelDestroyed"),
    channel: fc.constantFrom("A" as const, "B" as const, "none" as const)
  }) },
  { weight: 1, arbitrary: fc.constant({ kind: "ready" as const }) },
  { weight: 3, arbitrary: fc.record({
    kind: fc.constant("command" as const),
    method: fc.constantFrom("POST", "GET", "DELETE"),
    url: fc.constantFrom("/channels/A/answer", "/channels?endpoint=PJSIP/bob&app=x&channelId=B", "/channels/B",
      "/channels/A/play?media=sound:x&playbackId=P", "/bridges?bridgeId=BR", "/channels/A")
  }) },
  { weight: 1, arbitrary: fc.constant({ kind: "attach" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "invalid" as const }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("complete" as const), status: fc.constantFrom(200, 204, 404, 500, 504) }) },
  { weight: 1, arbitrary: fc.constant({ kind: "grace" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "vanish" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "abort" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "linger" as const }) }
)

const optionsArb: fc.Arbitrary<MachineOptions> = fc.record({
  holdEvents: fc.boolean(),
  maxHeldEvents: fc.integer({ min: 1, max: 20 })
})

interface Trace {
  readonly inputs: Array<DialogInput>
  readonly effects: Array<DialogEffect>
  /** Per input, the index of its first effect, so we can tell which input caused what. */
  readonly marks: Array<number>
  state: DialogState
}

const run = (options: MachineOptions, steps: ReadonlyArray<Step>): Trace => {
  const trace: Trace = { inputs: [], effects: [], marks: [], state: initialState("d-1", options, "A") }
  let seq = 0
  let commands = 0
  const feed = (input: DialogInput) => {
    trace.inputs.push(input)
    trace.marks.push(trace.effects.length)
    const [next, effects] = transition(trace.state, input)
    trace.state = next
    trace.effects.push(...effects)
  }
  const command = (method: string, url: string): DecodedCommand => ({
    unique_id: `cmd-${++commands}`,
    method,
    url,
    body: ""
  })
  const live = () => trace.state.announced && !trace.state.released
  const apply = (step: Step) => {
    switch (step.kind) {
      case "event": {
        const raw = JSON.stringify({ type: step.type, seq: ++seq })
        feed({ _tag: "Event", type: step.type, raw, channelId: step.channel === "none" ? undefined : step.channel })
        return
      }
      case "ready":
        return feed({ _tag: "SubscriptionReady" })
      case "command":
        // commands only reach a dialog while its subscription is live (after announce, before release)
        if (live()) feed({ _tag: "Command", command: command(step.method, step.url) })
        return
      case "attach":
        if (live()) feed({ _tag: "Command", command: command("ATTACH", "") })
        return
      case "invalid":
        if (live()) feed({ _tag: "InvalidCommand", uniqueId: `cmd-${++commands}`, reason: "bad" })
        return
      case "complete": {
        if (trace.state.inFlight === undefined) return
        const url = trace.state.inFlight.command.url
        const body = step.status === 200 && url.startsWith("/channels?")
          ? JSON.stringify({ id: "B", name: "PJSIP/bob-1", state: "Down", dialplan: {} })
          : ""
        return feed({ _tag: "CommandDone", status: step.status, body })
      }
      case "grace":
        return feed({ _tag: "GraceExpired" })
      case "vanish":
        return feed({ _tag: "ChannelsVanished", channelIds: ["A"] })
      case "abort":
        return feed({ _tag: "Abort", reason: "shutdown" })
      case "linger":
        return feed({ _tag: "LingerOver" })
    }
  }
  for (const step of steps) apply(step)
  // Drain: the subscription comes up, grace expires, ARI answers everything, every channel goes.
  apply({ kind: "ready" })
  apply({ kind: "grace" })
  for (let i = 0; i < 100 && trace.state.inFlight !== undefined; i++) apply({ kind: "complete", status: 204 })
  feed({ _tag: "ChannelsVanished", channelIds: [...trace.state.members] })
  for (let i = 0; i < 100 && trace.state.inFlight !== undefined; i++) apply({ kind: "complete", status: 204 })
  feed({ _tag: "LingerOver" })
  return trace
}

const scenario: [fc.Arbitrary<MachineOptions>, fc.Arbitrary<Array<Step>>] = [optionsArb, fc.array(stepArb, { maxLength: 60 })]
const params = { numRuns: 400 }

const endedAt = (trace: Trace) => trace.effects.findIndex((e) => e._tag === "PublishEnded")
/** Index of the input whose transition emitted PublishEnded. */
const endInput = (trace: Trace) => {
  const end = endedAt(trace)
  let index = -1
  trace.marks.forEach((mark, i) => {
    if (mark <= end) index = i
  })
  return index
}

/** One dialog driven by hand: `feed` gives the tags of the effects, `effects` all of them so far. */
const drive = (...args: Parameters<typeof initialState>) => {
  let state = initialState(...args)
  const effects: Array<DialogEffect> = []
  const step = (input: DialogInput): ReadonlyArray<DialogEffect> => {
    const [next, out] = transition(state, input)
    state = next
    effects.push(...out)
    return out
  }
  return {
    get state() {
      return state
    },
    effects,
    step,
    feed: (input: DialogInput) => step(input).map((e) => e._tag)
  }
}

describe("dialog state machine", () => {
  it.prop("publishes every event that arrived before the end, in order, exactly once", scenario, ([options, steps]) => {
    const trace = run(options, steps)
    const last = endInput(trace)
    const expected = trace.inputs
      .slice(0, last + 1)
      .flatMap((input) => (input._tag === "Event" ? [input.raw] : []))
    const published = trace.effects.flatMap((e) => (e._tag === "PublishEvent" ? [e.raw] : []))
    expect(published).toEqual(expected)
  }, { fastCheck: params })

  it.prop("answers every accepted command exactly once, in arrival order", scenario, ([options, steps]) => {
    const trace = run(options, steps)
    const accepted = trace.inputs.flatMap((input) =>
      input._tag === "Command" ? [input.command.unique_id] : input._tag === "InvalidCommand" ? [input.uniqueId] : []
    )
    const answered = trace.effects.flatMap((e) => (e._tag === "Respond" ? [e.uniqueId] : []))
    expect([...answered].sort()).toEqual([...accepted].sort())
    expect(answered).toEqual(accepted) // ATTACH and rejections included: answers keep arrival order
  }, { fastCheck: params })

  it.prop("runs one ARI request at a time", scenario, ([options, steps]) => {
    const trace = run(options, steps)
    let outstanding = 0
    trace.inputs.forEach((input, i) => {
      if (input._tag === "CommandDone") outstanding--
      const until = trace.marks[i + 1] ?? trace.effects.length
      for (const effect of trace.effects.slice(trace.marks[i], until)) {
        if (effect._tag === "Send") outstanding++
        expect(outstanding).toBeLessThanOrEqual(1)
      }
    })
  }, { fastCheck: params })

  it.prop("announces once, before anything else is published", scenario, ([options, steps]) => {
    const trace = run(options, steps)
    const publications = trace.effects.filter((e) =>
      e._tag === "Announce" || e._tag === "PublishEvent" || e._tag === "Respond" || e._tag === "PublishEnded"
    )
    expect(publications[0]?._tag).toBe("Announce")
    expect(publications.filter((e) => e._tag === "Announce")).toHaveLength(1)
  }, { fastCheck: params })

  it.prop("ends once; after DialogEnded only 410 answers, no events, nothing bound", scenario, ([options, steps]) => {
    const trace = run(options, steps)
    const end = endedAt(trace)
    expect(end).toBeGreaterThanOrEqual(0) // the drain removed every channel
    expect(trace.effects.filter((e) => e._tag === "PublishEnded")).toHaveLength(1)
    const bound = new Set<string>()
    trace.effects.forEach((effect, i) => {
      if (effect._tag === "Bind") effect.keys.forEach((k) => bound.add(k))
      if (effect._tag === "Unbind") effect.keys.forEach((k) => bound.delete(k))
      if (i > end) {
        expect(effect._tag).not.toBe("PublishEvent")
        expect(effect._tag).not.toBe("Bind")
        expect(effect._tag).not.toBe("Send")
        if (effect._tag === "Respond") expect(effect.status).toBe(410)
      }
      if (i === end) expect(bound.size).toBe(0)
    })
    expect(bound.size).toBe(0)
    expect(trace.effects.filter((e) => e._tag === "Release")).toHaveLength(1)
  }, { fastCheck: params })

  it("holds events until attach and says how many it held", () => {
    const dialog = drive("d-1", { holdEvents: true, maxHeldEvents: 100 }, "A")
    const { effects, step: feed } = dialog
    feed({ _tag: "Event", type: "StasisStart", raw: "ss", channelId: "A" })
    feed({ _tag: "Event", type: "ChannelDtmfReceived", raw: "d1", channelId: "A" })
    feed({ _tag: "SubscriptionReady" })
    expect(effects.map((e) => e._tag)).toEqual(["Announce", "StartGraceTimer"])
    feed({ _tag: "Command", command: { unique_id: "a", method: "ATTACH", url: "", body: "" } })
    expect(effects.slice(2)).toEqual([
      { _tag: "PublishEvent", type: "StasisStart", raw: "ss" },
      { _tag: "PublishEvent", type: "ChannelDtmfReceived", raw: "d1" },
      { _tag: "Respond", uniqueId: "a", status: 200, body: "{\"dialog_id\":\"d-1\",\"held_events\":2}" }
    ])
  })

  it("stays alive while an originated leg is pending, and ends when the last channel leaves", () => {
    const dialog = drive("d-1", { holdEvents: false, maxHeldEvents: 100 }, "A")
    const feed = dialog.feed
    feed({ _tag: "SubscriptionReady" })
    expect(feed({ _tag: "Command", command: { unique_id: "o", method: "POST", url: "/channels?endpoint=PJSIP/bob&app=x&channelId=B", body: "" } }))
      .toEqual(["Bind", "Send"])
    expect([...dialog.state.members].sort()).toEqual(["A", "B"])
    feed({ _tag: "CommandDone", status: 200, body: "{}" })
    expect(feed({ _tag: "Event", type: "StasisEnd", raw: "end-A", channelId: "A" })).toEqual(["PublishEvent"])
    expect(dialog.state.ending).toBeUndefined()
    expect(feed({ _tag: "Event", type: "StasisStart", raw: "ss-B", channelId: "B" })).toEqual(["PublishEvent"])
    expect(feed({ _tag: "Event", type: "StasisEnd", raw: "end-B", channelId: "B" }))
      .toEqual(["PublishEvent", "Unbind", "PublishEnded", "StartLingerTimer"])
  })

  it("does not wait for a channel originated into the dialplan (its end would never be seen)", () => {
    const dialog = drive("d-1", { holdEvents: false, maxHeldEvents: 100 }, "A")
    const feed = dialog.feed
    feed({ _tag: "SubscriptionReady" })
    feed({ _tag: "Command", command: { unique_id: "o", method: "POST", url: "/channels/D?endpoint=PJSIP/bob&extension=100", body: "" } })
    feed({ _tag: "CommandDone", status: 200, body: JSON.stringify({ id: "D", name: "PJSIP/bob-1", dialplan: {} }) })
    expect(dialog.state.bound).toContain("c:D") // its events still reach the dialog while it lives
    expect([...dialog.state.members]).toEqual(["A"])
    expect(feed({ _tag: "Event", type: "StasisEnd", raw: "end-A", channelId: "A" })).toContain("PublishEnded")
  })

  it("a call over before its AppStart still waits for the application before publishing anything", () => {
    const dialog = drive("d-1", { holdEvents: true, maxHeldEvents: 100 }, "A")
    const feed = dialog.feed
    feed({ _tag: "Event", type: "StasisStart", raw: "ss", channelId: "A" })
    feed({ _tag: "Event", type: "StasisEnd", raw: "se", channelId: "A" })
    // an app on NATS subscribes only once it has the AppStart: nothing may be published with it
    expect(feed({ _tag: "SubscriptionReady" })).toEqual(["Announce", "StartGraceTimer"])
    expect(feed({ _tag: "GraceExpired" })).toEqual(["PublishEvent", "PublishEvent", "Unbind", "PublishEnded", "StartLingerTimer"])
  })

  it("does not wait for a channel created into another application", () => {
    const dialog = drive("d-1", { holdEvents: false, maxHeldEvents: 100 }, "A", "ivr")
    const feed = dialog.feed
    feed({ _tag: "SubscriptionReady" })
    feed({ _tag: "Command", command: { unique_id: "o", method: "POST", url: "/channels?endpoint=PJSIP/b&app=agents&channelId=X", body: "" } })
    feed({ _tag: "CommandDone", status: 200, body: JSON.stringify({ id: "X", name: "PJSIP/b-1", dialplan: {} }) })
    expect([...dialog.state.members]).toEqual(["A"])
    expect(feed({ _tag: "Event", type: "StasisEnd", raw: "se", channelId: "A" })).toContain("PublishEnded")
  })

  it("forgets a channel whose originate failed", () => {
    const dialog = drive("d-1", { holdEvents: false, maxHeldEvents: 100 }, "A")
    const feed = dialog.step
    feed({ _tag: "SubscriptionReady" })
    feed({ _tag: "Command", command: { unique_id: "o", method: "POST", url: "/channels/B", body: "{\"endpoint\":\"PJSIP/nope\",\"app\":\"x\"}" } })
    expect(dialog.state.bound).toContain("c:B")
    expect(dialog.state.members).toContain("B")
    expect(feed({ _tag: "CommandDone", status: 500, body: "{\"error\":\"Allocation failed\"}" }))
      .toContainEqual({ _tag: "Unbind", keys: ["c:B"] })
    expect([...dialog.state.members]).toEqual(["A"])
  })
})
