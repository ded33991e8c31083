/**
 * Leases in the dialog machine: an owner that stops renewing loses the dialog (its events are held
 * and the dialog offered anew), the next owner's replay comes before anything newer, and a dialog
 * nobody leased (seed clients) is never offered anew.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  type DialogEffect,
  type DialogInput,
  type DialogState,
  initialState,
  transition
} from "../../src/dialog/machine.js"

const options = { holdEvents: true, maxHeldEvents: 100, leaseMs: 3000 }

const command = (method: string, body = "", uniqueId = method.toLowerCase()): DialogInput => ({
  _tag: "Command",
  command: { unique_id: uniqueId, method, url: method === "POST" ? "/channels/A/answer" : "", body }
})
const event = (type: string, channelId: string | undefined = "A"): DialogInput => ({ _tag: "Event", type, raw: type, channelId })

/** Feeds inputs in order; returns the last state and every effect. */
const run = (state: DialogState, inputs: ReadonlyArray<DialogInput>) => {
  const effects: Array<DialogEffect> = []
  for (const input of inputs) {
    const [next, emitted] = transition(state, input)
    state = next
    effects.push(...emitted)
  }
  return { state, effects }
}

const tags = (effects: ReadonlyArray<DialogEffect>) => effects.map((effect) => effect._tag)
const answers = (effects: ReadonlyArray<DialogEffect>) =>
  effects.flatMap((effect) =>
    effect._tag === "Respond" ? [{ status: effect.status, body: effect.body === "" ? undefined : JSON.parse(effect.body) }] : []
  )

/** A dialog announced, with its StasisStart, attached with a lease. */
const leased = () =>
  run(initialState("d", options, "A", "app"), [
    event("StasisStart"),
    { _tag: "SubscriptionReady" },
    command("ATTACH", JSON.stringify({ lease: true }))
  ])

describe("dialog leases", () => {
  it("ATTACH with a lease takes it and says for how long; without one, nothing changes", () => {
    const { state, effects } = leased()
    expect(state.lease).toBe("held")
    expect(tags(effects)).toContain("LeaseTaken")
    expect(answers(effects)).toEqual([{ status: 200, body: { dialog_id: "d", held_events: 1, lease_ms: 3000 } }])

    const plain = run(initialState("d", options, "A", "app"), [{ _tag: "SubscriptionReady" }, command("ATTACH")])
    expect(plain.state.lease).toBe("none")
    expect(tags(plain.effects)).not.toContain("LeaseTaken")
  })

  it("RENEW is answered in its turn and passes on what the owner acknowledged", () => {
    const { state } = leased()
    const renewed = run(state, [command("POST"), command("RENEW", JSON.stringify({ acked: 7 }))])
    expect(renewed.effects.find((effect) => effect._tag === "Acknowledged")).toEqual({ _tag: "Acknowledged", seq: 7 })
    // Its answer waits for the command in flight: answers keep arrival order.
    expect(answers(renewed.effects)).toEqual([])
    const done = run(renewed.state, [{ _tag: "CommandDone", status: 204, body: "" }])
    expect(answers(done.effects)).toEqual([{ status: 204, body: undefined }, { status: 200, body: { lease_ms: 3000 } }])
  })

  it("a takeover is final: RENEW from the previous owner gets 409, from the new one 200", () => {
    const first = run(initialState("d", options, "A", "app"), [
      event("StasisStart"),
      { _tag: "SubscriptionReady" },
      command("ATTACH", JSON.stringify({ lease: true, owner: "old" }))
    ])
    const takenOver = run(first.state, [
      { _tag: "LeaseLapsed" },
      command("ATTACH", JSON.stringify({ lease: true, owner: "new", resume_after: 1 }), "attach-new")
    ])
    expect(takenOver.state.owner).toBe("new")
    const renewals = run(takenOver.state, [
      command("RENEW", JSON.stringify({ acked: 2, owner: "old" }), "renew-old"),
      command("RENEW", JSON.stringify({ acked: 2, owner: "new" }), "renew-new")
    ])
    expect(answers(renewals.effects).map((answer) => answer.status)).toEqual([409, 200])
    expect(renewals.effects.filter((effect) => effect._tag === "Acknowledged")).toHaveLength(1)
  })

  it("when the lease lapses, events are held and the dialog is offered anew; RENEW then gets 409", () => {
    const lapsed = run(leased().state, [{ _tag: "LeaseLapsed" }, event("ChannelDtmfReceived"), event("ChannelDtmfReceived")])
    expect(lapsed.state.lease).toBe("lapsed")
    expect(tags(lapsed.effects)).toEqual(["Reoffer"]) // nothing published while nobody drives it
    expect(lapsed.state.held?.count).toBe(2)
    const late = run(lapsed.state, [command("RENEW", JSON.stringify({ acked: 1 }))])
    expect(answers(late.effects).map((answer) => answer.status)).toEqual([409])
    expect(tags(late.effects)).not.toContain("Acknowledged")
  })

  it("the next owner's replay comes first, then the events held since the lapse, then its answer", () => {
    const lapsed = run(leased().state, [{ _tag: "LeaseLapsed" }, event("ChannelDtmfReceived")])
    const resumed = run(lapsed.state, [command("ATTACH", JSON.stringify({ lease: true, resume_after: 4 }), "attach-2")])
    expect(tags(resumed.effects)).toEqual(["Replay", "LeaseTaken", "PublishEvent", "Respond"])
    expect(resumed.effects[0]).toEqual({ _tag: "Replay", after: 4, uniqueId: "attach-2" })
    expect(resumed.state.lease).toBe("held")
  })

  it("nobody takes it: offered again each time the lease lapses anew", () => {
    const twice = run(leased().state, [{ _tag: "LeaseLapsed" }, { _tag: "LeaseLapsed" }])
    expect(tags(twice.effects)).toEqual(["Reoffer", "Reoffer"])
  })

  it("a call that ends while nobody drives it ends: held events go out, then DialogEnded, no new offer", () => {
    const lapsed = run(leased().state, [{ _tag: "LeaseLapsed" }, event("ChannelDtmfReceived"), event("StasisEnd")])
    const over = run(lapsed.state, [{ _tag: "LeaseLapsed" }])
    expect(tags(over.effects)).toEqual(["PublishEvent", "PublishEvent", "Unbind", "PublishEnded", "StartLingerTimer"])
  })

  it("a dialog nobody leased (seed clients) is never offered anew", () => {
    const seed = run(initialState("d", options, "A", "app"), [
      event("StasisStart"),
      { _tag: "SubscriptionReady" },
      command("POST"),
      { _tag: "LeaseLapsed" }
    ])
    expect(tags(seed.effects)).not.toContain("Reoffer")
    expect(seed.state.lease).toBe("none")
  })
})
