/**
 * The dialog state machine (src/dialog/machine.ts) on its own: one property over generated runs
 * at real sizes, checked input by input against a model of what the machine promises, then
 * examples.
 *
 * A run is a dialog opened by a channel's StasisStart or requested by an application (no channel),
 * fed 100-400 generated steps that cover every input the machine accepts: events with and without
 * a channel (lifecycle ones among them), adopting entities and finishing them; the subscription
 * coming up; commands of every shape (originates watched, into another application, into the
 * dialplan, known only from the answer; bridges, playbacks, recordings, snoops; GET, DELETE,
 * ATTACH in any case), floods of up to 1,100 commands (past the 1,000-command cap), invalid
 * commands; ARI's answers of every status class; the grace timer, channels vanishing, aborts for
 * every reason, a requested dialog's idle check, the linger, the registry refusing a binding.
 * Inputs come only when the dialog actor would feed them: commands while the commands
 * subscription is live (announced, not released), an ARI answer while a request is in flight. A
 * drain then ends the dialog.
 *
 * Measured over 300 runs (min / median / max per run; the test prints them and fails if a case is
 * never reached): 100-400 steps, 40-5,800 inputs (median ~230); 24-4,500 commands (~290), of which
 * 0-720 reached ARI (~7; in 3 runs of 4), one at a time, ARI errors in 2 runs of 3; queues up to
 * 1,000 deep (median ~3), the cap answering 503 in ~1 run in 5; 410s after the end in over half
 * the runs; ~13 adopted keys, ~9 finished entities, a refused binding in half the runs. Leases: taken
 * in ~45% of runs, renewed (and refused with 409) in half, acknowledged in a third, replays in ~40%,
 * lapses offered anew in 15%. Some 60% of runs end during their steps, the others in the drain; by
 * reason over the 300: channels_left ~75, channels_vanished ~120 (the drain's reason too), shutdown,
 * overloaded, failed ~25-30 each, unused ~18 (requested dialogs, half of the runs). ~1-2 s.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import {
  bridgeKey,
  channelKey,
  commandEntities,
  type EntityKey,
  localPairKey,
  playbackKey,
  recordingKey
} from "../../src/dialog/entities.js"
import {
  type DialogEffect,
  type DialogInput,
  type DialogState,
  initialState,
  type LeaseState,
  type MachineOptions,
  maxQueuedCommands,
  transition
} from "../../src/dialog/machine.js"
import type { DecodedCommand } from "../../src/protocol/codec.js"
import type { DialogEndReason } from "../../src/protocol/messages.js"
import { type Figures, runsWith, summarize } from "../support/figures.js"

// ---------- scenarios ----------

const channelIds = ["A", "B", "C", "S", "L1", "L2"] as const
type ChannelId = (typeof channelIds)[number]

const entityKeys: ReadonlyArray<EntityKey> = [
  ...channelIds.map(channelKey),
  localPairKey("Local/100@ctx-00000001"),
  bridgeKey("BR"),
  playbackKey("P1"),
  playbackKey("P2"),
  recordingKey("R1")
]

/** A command the generator can send, and what ARI answers when it succeeds. */
interface CommandShape {
  readonly method: string
  readonly url: string
  readonly body: string
  readonly reply: string
}

const channelReply = (id: string, name = `PJSIP/${id}-1`) => JSON.stringify({ id, name, state: "Down", dialplan: {} })

const commandShapes: ReadonlyArray<CommandShape> = [
  { method: "POST", url: "/channels/A/answer", body: "", reply: "" },
  // Originates into the dialog's own application: B keeps the dialog alive until it leaves.
  { method: "POST", url: "/channels?endpoint=PJSIP/bob&app=app&channelId=B", body: "", reply: channelReply("B") },
  { method: "post", url: "/channels", body: "{\"endpoint\":\"PJSIP/bob\",\"app\":\"app\",\"channelId\":\"B\"}",
    reply: channelReply("B") },
  // Into another application, into the dialplan: bound for routing, never waited for.
  { method: "POST", url: "/channels?endpoint=PJSIP/carol&app=other&channelId=C", body: "", reply: channelReply("C") },
  { method: "POST", url: "/channels/C?endpoint=PJSIP/carol&extension=100", body: "", reply: channelReply("C") },
  // The new channel's id is known from the answer only.
  { method: "POST", url: "/channels?endpoint=Local/100@ctx&app=app", body: "",
    reply: channelReply("L1", "Local/100@ctx-00000001;1") },
  { method: "POST", url: "/channels/A/snoop?app=app&snoopId=S", body: "", reply: channelReply("S", "Snoop/A-1") },
  { method: "POST", url: "/bridges?bridgeId=BR", body: "", reply: JSON.stringify({ id: "BR", bridge_type: "mixing" }) },
  { method: "POST", url: "/bridges/BR/addChannel?channel=A,B", body: "", reply: "" },
  { method: "POST", url: "/channels/A/play?media=sound:x&playbackId=P1", body: "",
    reply: JSON.stringify({ id: "P1", media_uri: "sound:x", target_uri: "channel:A" }) },
  { method: "POST", url: "/bridges/BR/play/P2?media=sound:y", body: "",
    reply: JSON.stringify({ id: "P2", media_uri: "sound:y", target_uri: "bridge:BR" }) },
  { method: "POST", url: "/bridges/BR/record?name=R1&format=wav", body: "",
    reply: JSON.stringify({ name: "R1", format: "wav", target_uri: "bridge:BR", state: "queued" }) },
  { method: "PUT", url: "/channels/A/variable?variable=X&value=1", body: "", reply: "" },
  { method: "GET", url: "/channels/B", body: "", reply: channelReply("B") },
  { method: "DELETE", url: "/channels/A", body: "", reply: "" },
  { method: "ATTACH", url: "", body: "", reply: "" },
  { method: "attach", url: "", body: "", reply: "" },
  // Leases: taken by one instance or another (and resumed after an event), asked for without a
  // lease, renewed by the owner, by another instance, by one that does not say, acknowledged.
  { method: "ATTACH", url: "", body: "{\"lease\":true}", reply: "" },
  { method: "ATTACH", url: "", body: "{\"lease\":true,\"owner\":\"i1\"}", reply: "" },
  { method: "ATTACH", url: "", body: "{\"lease\":true,\"owner\":\"i2\",\"resume_after\":3}", reply: "" },
  { method: "ATTACH", url: "", body: "{\"resume_after\":2}", reply: "" },
  { method: "ATTACH", url: "", body: "not json", reply: "" },
  { method: "RENEW", url: "", body: "{\"acked\":5}", reply: "" },
  { method: "RENEW", url: "", body: "{\"acked\":4,\"owner\":\"i1\"}", reply: "" },
  { method: "RENEW", url: "", body: "{\"owner\":\"i2\"}", reply: "" },
  { method: "renew", url: "", body: "", reply: "" },
  { method: "RENEW", url: "", body: "{\"acked\":1.5}", reply: "" }
]

type AbortReason = Extract<DialogEndReason, "shutdown" | "overloaded" | "failed">

type Step =
  | {
    readonly t: "event"
    readonly type: string
    readonly channel: ChannelId | undefined
    readonly adopt: ReadonlyArray<EntityKey> | undefined
    readonly finished: EntityKey | undefined
  }
  | { readonly t: "ready" }
  | { readonly t: "command"; readonly shape: number }
  /** This many commands back to back (a flooding client). */
  | { readonly t: "flood"; readonly count: number }
  | { readonly t: "invalid" }
  /** ARI answers the request in flight. */
  | { readonly t: "answer"; readonly status: number }
  | { readonly t: "grace" }
  | { readonly t: "vanish"; readonly channels: ReadonlyArray<ChannelId> }
  | { readonly t: "abort"; readonly reason: AbortReason }
  /** A requested dialog's idle check (the actor's): no channel, nothing at work, not ending: unused. */
  | { readonly t: "idleCheck" }
  | { readonly t: "linger" }
  /** The registry refuses the keys of the last Bind (another live dialog owns them). */
  | { readonly t: "refuse" }
  /** The lease was not renewed in time (the actor's check; ignored when none was taken). */
  | { readonly t: "lapse" }

interface Scenario {
  readonly options: MachineOptions
  readonly requested: boolean
  /** The commands subscription comes up before this step (besides any generated `ready`). */
  readonly readyAt: number
  readonly steps: ReadonlyArray<Step>
}

const lifecycleTypes = ["StasisStart", "StasisEnd", "ChannelDestroyed"] as const
const otherEventTypes = [
  "ChannelDtmfReceived",
  "ChannelStateChange",
  "ChannelVarset",
  "PlaybackStarted",
  "PlaybackFinished",
  "RecordingFinished",
  "BridgeDestroyed",
  "ChannelEnteredBridge"
] as const

/**
 * Weights: a call is mostly events, commands and answers; what ends it (an abort, every channel
 * vanishing, a lifecycle event of its last channel, the idle check) is rare enough that most runs
 * send many commands first, and frequent enough that most runs end before the drain.
 */
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 60,
    arbitrary: fc.record({
      t: fc.constant("event" as const),
      type: fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...otherEventTypes) }, {
        weight: 1,
        arbitrary: fc.constantFrom(...lifecycleTypes)
      }),
      channel: fc.option(fc.constantFrom(...channelIds), { nil: undefined, freq: 5 }),
      adopt: fc.option(fc.subarray([...entityKeys], { minLength: 1, maxLength: 3 }), { nil: undefined, freq: 2 }),
      finished: fc.option(fc.constantFrom(...entityKeys), { nil: undefined, freq: 2 })
    })
  },
  { weight: 3, arbitrary: fc.constant({ t: "ready" as const }) },
  { weight: 50, arbitrary: fc.record({ t: fc.constant("command" as const), shape: fc.nat(commandShapes.length - 1) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant("flood" as const),
      count: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 2, max: 50 }) }, {
        weight: 1,
        arbitrary: fc.integer({ min: 900, max: 1_100 })
      })
    })
  },
  { weight: 6, arbitrary: fc.constant({ t: "invalid" as const }) },
  {
    weight: 60,
    arbitrary: fc.record({
      t: fc.constant("answer" as const),
      status: fc.constantFrom(200, 200, 201, 204, 400, 404, 409, 500, 502, 504)
    })
  },
  { weight: 3, arbitrary: fc.constant({ t: "grace" as const }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("vanish" as const),
      channels: fc.subarray([...channelIds], { minLength: 1, maxLength: channelIds.length })
    })
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("abort" as const),
      reason: fc.constantFrom<AbortReason>("shutdown", "overloaded", "failed")
    })
  },
  { weight: 1, arbitrary: fc.constant({ t: "idleCheck" as const }) },
  { weight: 3, arbitrary: fc.constant({ t: "linger" as const }) },
  { weight: 3, arbitrary: fc.constant({ t: "refuse" as const }) },
  { weight: 2, arbitrary: fc.constant({ t: "lapse" as const }) }
)

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  options: fc.record({
    holdEvents: fc.boolean(),
    maxHeldEvents: fc.integer({ min: 1, max: 60 }),
    leaseMs: fc.option(fc.integer({ min: 1, max: 10_000 }), { nil: undefined, freq: 4 })
  }),
  requested: fc.boolean(),
  // Where the commands subscription comes up (mostly early; some runs end before it does).
  readyAt: fc.oneof({ weight: 4, arbitrary: fc.nat({ max: 30 }) }, { weight: 1, arbitrary: fc.nat({ max: 400 }) }),
  steps: fc.array(stepArb, { minLength: 100, maxLength: 400, size: "max" })
})

// ---------- a run, checked input by input ----------

const endReasons: ReadonlyArray<DialogEndReason> = [
  "channels_left",
  "channels_vanished",
  "shutdown",
  "overloaded",
  "failed",
  "unused"
]

interface Outcome {
  readonly violations: Array<string>
  readonly figures: Figures
}

/**
 * Feeds a scenario to the machine and checks, at every transition, what machine.ts promises:
 * - events: published in arrival order, each once, none that arrived after the end; none before
 *   the application is known to listen (no hold; or, once announced, a command, the grace period,
 *   an abort, or the hold being full); ATTACH says how many were held;
 * - commands: queued in arrival order, at most 1,000 (beyond: 503 at once, nothing queued); one
 *   ARI request at a time, requests sent in arrival order; every command answered exactly once,
 *   the queued ones in arrival order (ATTACH and invalid ones in their turn); after the end, 410;
 * - the end: announced once, before anything else is published; ending only once the last
 *   channel has gone (channels_left, channels_vanished) or by an abort, whose reason is kept;
 *   DialogEnded once, after every held event and every answer, then the linger, then the release;
 *   nothing published, bound or sent after it;
 * - entities: bound once, unbound only while bound (the registry mirrors these effects), a
 *   finished one unbound with its event, nothing bound once DialogEnded is out.
 */
/** A command the machine accepted, as the model expects it to be answered. */
type Waiting =
  | { readonly id: string; readonly kind: "request" | "invalid" }
  /** Answered 200 with the events held when it came; with a lease when one was asked and granted. */
  | { readonly id: string; readonly kind: "attach"; readonly held: number; readonly lease: boolean }
  /** Answered 200 while the lease was held when it came (by this instance, if it says), else 409. */
  | { readonly id: string; readonly kind: "renew"; readonly leaseHeld: boolean }

const jsonBody = (body: string): Record<string, unknown> => {
  try {
    const parsed: unknown = JSON.parse(body)
    return typeof parsed === "object" && parsed !== null ? parsed as Record<string, unknown> : {}
  } catch {
    return {}
  }
}

const runScenario = (scenario: Scenario): Outcome => {
  const { options } = scenario
  const violations: Array<string> = []
  const fail = (message: string) => {
    if (violations.length < 20) violations.push(`input ${inputs}: ${message}`)
  }
  let state: DialogState = initialState("d-1", options, scenario.requested ? undefined : "A", "app")

  // The model
  const bound = new Set<EntityKey>(state.bound)
  const arrivedEvents: Array<string> = []
  let publishedEvents = 0
  /** Accepted commands not yet answered or sent, in arrival order (the machine's queue). */
  const waiting: Array<Waiting> = []
  let lease: LeaseState = "none"
  /** The instance that took the lease, if it said. */
  let owner: string | undefined
  let outstanding: string | undefined
  const answered = new Set<string>()
  const refusedAtOnce = new Set<string>()
  const acceptedIds: Array<string> = []
  let listening = false
  let announced = false
  let graceTimers = 0
  let endedWith: DialogEndReason | undefined
  let released = false
  let inputs = 0
  let lastBind: ReadonlyArray<EntityKey> = []
  let commandSeq = 0
  let eventSeq = 0

  const figures: Record<string, number> = {
    requested: scenario.requested ? 1 : 0,
    steps: scenario.steps.length,
    inputs: 0,
    events: 0,
    eventsPublished: 0,
    maxHeld: 0,
    adoptedKeys: 0,
    finishedUnbound: 0,
    refusedBinds: 0,
    leasesTaken: 0,
    renewals: 0,
    renewRefused: 0,
    acknowledged: 0,
    replays: 0,
    reoffers: 0,
    commands: 0,
    droppedNotSubscribed: 0,
    sentToAri: 0,
    ariFailures: 0,
    maxQueue: 0,
    refusedFull: 0,
    answeredGone: 0,
    attaches: 0,
    invalid: 0,
    endedDuringSteps: 0,
    ...Object.fromEntries(endReasons.map((reason) => [`endedBy_${reason}`, 0]))
  }
  const count = (key: string, by = 1) => {
    figures[key] = (figures[key] ?? 0) + by
  }
  const peak = (key: string, value: number) => {
    figures[key] = Math.max(figures[key] ?? 0, value)
  }

  const feed = (input: DialogInput) => {
    inputs++
    count("inputs")
    const before = state
    const heldBefore = arrivedEvents.length - publishedEvents
    const [after, effects] = transition(before, input)
    state = after

    // Inputs
    switch (input._tag) {
      case "BindRefused":
        if (effects.length > 0) fail("a refused binding had effects")
        for (const key of input.keys) bound.delete(key)
        count("refusedBinds", input.keys.length)
        break
      case "Event":
        if (!before.ended) {
          arrivedEvents.push(input.raw)
          count("events")
        }
        break
      case "Command":
      case "InvalidCommand": {
        const id = input._tag === "Command" ? input.command.unique_id : input.uniqueId
        const method = input._tag === "Command" ? input.command.method.toUpperCase() : ""
        if (before.released) {
          if (effects.length > 0) fail(`a command after the release had effects`)
        } else if (before.ended) {
          const only = effects.length === 1 && effects[0]!._tag === "Respond" && effects[0]!.status === 410
          if (!only) fail(`a command after the end was not answered 410 alone: ${JSON.stringify(effects)}`)
          refusedAtOnce.add(id)
          count("answeredGone")
        } else if (before.queue.length >= maxQueuedCommands) {
          const only = effects.length === 1 && effects[0]!._tag === "Respond" && effects[0]!.status === 503 &&
            effects[0]!.uniqueId === id
          if (!only) fail(`a command beyond the cap was not answered 503 alone: ${JSON.stringify(effects)}`)
          if (after !== before) fail("a command beyond the cap changed the state")
          refusedAtOnce.add(id)
          count("refusedFull")
        } else if (input._tag === "InvalidCommand") {
          waiting.push({ id, kind: "invalid" })
          acceptedIds.push(id)
        } else if (method === "ATTACH") {
          const wantsLease = jsonBody(input.command.body).lease === true
          waiting.push({ id, kind: "attach", held: heldBefore, lease: wantsLease && options.leaseMs !== undefined })
          acceptedIds.push(id)
          count("attaches")
        } else if (method === "RENEW") {
          // The lease is this instance's unless it names another (one that does not say is believed).
          const renewer = jsonBody(input.command.body).owner
          const itsOwn = renewer === undefined || renewer === owner
          waiting.push({ id, kind: "renew", leaseHeld: lease === "held" && itsOwn })
          acceptedIds.push(id)
          count("renewals")
        } else {
          waiting.push({ id, kind: "request" })
          acceptedIds.push(id)
        }
        break
      }
    }

    // Whether this transition may let held events go (see the comment of runScenario).
    const announcing = effects.some((e) => e._tag === "Announce")
    const nowAnnounced = announced || announcing
    const heldNow = heldBefore + (input._tag === "Event" && !before.ended ? 1 : 0)
    const acceptedCommand = input._tag === "Command" && !before.ended && !before.released &&
      before.queue.length < maxQueuedCommands
    const releases = nowAnnounced && (
      (input._tag === "SubscriptionReady" && !options.holdEvents) ||
      heldNow >= options.maxHeldEvents ||
      (acceptedCommand && input.command.method.toUpperCase() !== "RENEW") ||
      input._tag === "GraceExpired" ||
      input._tag === "Abort" ||
      (input._tag === "LeaseLapsed" && before.ending !== undefined)
    )
    peak("maxHeld", heldNow)

    // Effects
    let finishedUnbound = false
    let reoffered = false
    let publishedNow = false
    for (const effect of effects) {
      if (endedWith !== undefined && effect._tag !== "Respond" && effect._tag !== "StartLingerTimer" &&
        effect._tag !== "Release" && effect._tag !== "Unbind" && effect._tag !== "Acknowledged") {
        fail(`${effect._tag} after DialogEnded`)
      }
      switch (effect._tag) {
        case "Announce":
          if (announced) fail("announced twice")
          if (publishedEvents > 0 || answered.size > 0) fail("published before the announcement")
          announced = true
          break
        case "StartGraceTimer":
          if (!options.holdEvents) fail("a grace timer without holding events")
          if (++graceTimers > 1) fail("two grace timers")
          break
        case "PublishEvent": {
          if (!announced) fail("an event published before the announcement")
          if (!listening && !releases) fail(`an event published before the application listens (${input._tag})`)
          const expected = arrivedEvents[publishedEvents]
          if (effect.raw !== expected) fail(`published ${effect.raw}, expected ${expected}`)
          publishedEvents++
          publishedNow = true
          count("eventsPublished")
          break
        }
        case "Bind":
          lastBind = effect.keys
          for (const key of effect.keys) {
            if (bound.has(key)) fail(`${key} bound twice`)
            bound.add(key)
          }
          if (input._tag === "Event" && input.adopt?.some((key) => effect.keys.includes(key))) {
            count("adoptedKeys", effect.keys.length)
          }
          break
        case "Unbind":
          for (const key of effect.keys) {
            if (!bound.has(key)) fail(`${key} unbound while not bound`)
            bound.delete(key)
          }
          if (input._tag === "Event" && input.finished !== undefined && effect.keys.includes(input.finished)) {
            finishedUnbound = true
          }
          break
        case "Send": {
          const next = waiting[0]
          if (outstanding !== undefined) fail(`sent ${effect.command.unique_id} while ${outstanding} is in flight`)
          if (next === undefined || next.kind !== "request" || next.id !== effect.command.unique_id) {
            fail(`sent ${effect.command.unique_id} out of turn (next: ${JSON.stringify(next)})`)
          } else {
            waiting.shift()
          }
          outstanding = effect.command.unique_id
          count("sentToAri")
          break
        }
        case "Respond": {
          const id = effect.uniqueId
          if (answered.has(id)) fail(`${id} answered twice`)
          answered.add(id)
          if (refusedAtOnce.has(id)) break
          if (input._tag === "CommandDone" && id === outstanding) {
            if (effect.status !== input.status || effect.body !== input.body) fail(`${id}: not ARI's answer`)
            outstanding = undefined
            break
          }
          const next = waiting[0]
          if (outstanding !== undefined) fail(`${id} answered while ${outstanding} is in flight`)
          if (next === undefined || next.kind === "request" || next.id !== id) {
            fail(`${id} answered out of turn (next: ${JSON.stringify(next)})`)
            break
          }
          waiting.shift()
          const body = jsonBody(effect.body)
          if (next.kind === "attach") {
            if (effect.status !== 200 || body.held_events !== next.held) {
              fail(`ATTACH said ${String(body.held_events)} held, ${next.held} were`)
            }
            if ((body.lease_ms !== undefined) !== next.lease) fail(`ATTACH: lease ${String(body.lease_ms)}`)
          } else if (next.kind === "renew") {
            if (effect.status !== (next.leaseHeld ? 200 : 409)) fail(`RENEW answered ${effect.status}`)
            if (effect.status === 409) count("renewRefused")
          } else if (effect.status !== 400) {
            fail(`an invalid command answered ${effect.status}`)
          }
          break
        }
        case "LeaseTaken": {
          const asked = input._tag === "Command" && input.command.method.toUpperCase() === "ATTACH" &&
            jsonBody(input.command.body).lease === true
          if (!asked || options.leaseMs === undefined) fail("a lease nobody asked for, or none to give")
          lease = "held"
          const taker = input._tag === "Command" ? jsonBody(input.command.body).owner : undefined
          owner = typeof taker === "string" ? taker : undefined
          count("leasesTaken")
          break
        }
        case "Replay": {
          const resumeAfter = input._tag === "Command" ? jsonBody(input.command.body).resume_after : undefined
          if (input._tag !== "Command" || effect.uniqueId !== input.command.unique_id || effect.after !== resumeAfter) {
            fail(`a replay nobody asked for: ${JSON.stringify(effect)}`)
          }
          if (publishedNow) fail("a replay after newer events") // what the new owner missed comes first
          count("replays")
          break
        }
        case "Acknowledged": {
          const fields = input._tag === "Command" ? jsonBody(input.command.body) : {}
          const acked = fields.acked
          const byOwner = fields.owner === undefined || fields.owner === owner
          const renewing = input._tag === "Command" && input.command.method.toUpperCase() === "RENEW"
          if (!renewing || lease !== "held" || !byOwner) {
            fail("an acknowledgement outside a RENEW of a held lease by its owner")
          }
          if (effect.seq !== acked) fail(`acknowledged ${effect.seq}, the RENEW said ${String(acked)}`)
          count("acknowledged")
          break
        }
        case "Reoffer":
          if (input._tag !== "LeaseLapsed" || before.lease === "none" || before.ending !== undefined) {
            fail("offered anew while not lapsing, or while ending")
          }
          reoffered = true
          count("reoffers")
          break
        case "PublishEnded": {
          if (endedWith !== undefined) fail("DialogEnded twice")
          endedWith = effect.reason
          if (effect.reason !== after.ending) fail(`ended as ${effect.reason}, ending as ${after.ending}`)
          if (publishedEvents !== arrivedEvents.length) fail("DialogEnded before every event was out")
          if (waiting.length > 0 || outstanding !== undefined) fail("DialogEnded before every command was answered")
          if (bound.size > 0) fail(`DialogEnded with ${[...bound].join(",")} still bound`)
          if (effects.at(-1)?._tag !== "StartLingerTimer") fail("no linger after DialogEnded")
          count(`endedBy_${effect.reason}`)
          break
        }
        case "StartLingerTimer":
          if (endedWith === undefined) fail("a linger before DialogEnded")
          break
        case "Release":
          if (endedWith === undefined || input._tag !== "LingerOver") fail("released before the linger was over")
          if (released) fail("released twice")
          released = true
          break
      }
    }
    // A lapse: held again until the next owner attaches (or the hold fills, or the grace ends).
    if (reoffered) listening = false
    else if (releases) listening = true
    if (input._tag === "LeaseLapsed" && before.lease !== "none" && !before.ended) {
      lease = "lapsed"
      if (!reoffered && before.ending === undefined) fail("a lapse not offered anew")
    }
    if (after.lease !== lease) fail(`lease ${after.lease}, model ${lease}`)
    if (finishedUnbound) count("finishedUnbound")
    if (input._tag === "Event" && input.finished !== undefined && !before.ended && bound.has(input.finished)) {
      fail(`${input.finished} still bound after the event that finished it`)
    }

    // The state agrees with the model.
    if (after.queue.length > maxQueuedCommands) fail(`${after.queue.length} commands queued`)
    peak("maxQueue", after.queue.length)
    if (after.queue.length !== waiting.length) fail(`queue ${after.queue.length}, model ${waiting.length}`)
    if ((after.inFlight?.command.unique_id) !== outstanding) fail("in flight: not the model's")
    if (after.bound.length !== bound.size || after.bound.some((key) => !bound.has(key))) {
      fail("bound: not what the effects said")
    }
    if (before.ending === undefined && after.ending !== undefined) {
      // Why it is ending: the abort's reason, or its last channel gone.
      const expected = input._tag === "Abort"
        ? input.reason
        : input._tag === "ChannelsVanished"
        ? "channels_vanished"
        : "channels_left"
      if (after.ending !== expected) fail(`ending as ${after.ending} on ${input._tag}`)
      // Every channel that kept it alive is gone; only a command queued before the end and sent
      // now may have started one (entities.test.ts checks which channels a command starts).
      const startedNow = new Set(effects.flatMap((e) =>
        e._tag === "Send" ? commandEntities(e.command.method, e.command.url, e.command.body, "app").newChannels : []
      ))
      if (input._tag !== "Abort" && [...after.members].some((id) => !startedNow.has(id))) {
        fail(`ending with channels ${[...after.members].join(",")} left on ${input._tag}`)
      }
    }
    if (before.ending !== undefined && after.ending !== before.ending) fail("the reason of the end changed")
  }

  const live = () => state.announced && !state.released
  const nextCommand = (shape: CommandShape): DecodedCommand => ({
    unique_id: `cmd-${++commandSeq}`,
    method: shape.method,
    url: shape.url,
    body: shape.body
  })
  const sendCommand = (shape: CommandShape) => {
    count("commands")
    // Commands reach a dialog only while its commands subscription is live.
    if (live()) feed({ _tag: "Command", command: nextCommand(shape) })
    else count("droppedNotSubscribed")
  }
  const sendInvalid = () => {
    count("invalid")
    if (live()) feed({ _tag: "InvalidCommand", uniqueId: `cmd-${++commandSeq}`, reason: "bad" })
    else count("droppedNotSubscribed")
  }
  const answer = (status: number) => {
    const inFlight = state.inFlight
    if (inFlight === undefined) return
    const shape = commandShapes.find((s) => s.method === inFlight.command.method && s.url === inFlight.command.url)
    const success = status >= 200 && status < 300
    const body = !success ? JSON.stringify({ message: `ARI says ${status}` }) : status === 204 ? "" : shape?.reply ?? ""
    if (!success) count("ariFailures")
    feed({ _tag: "CommandDone", status, body })
  }
  const idleCheck = () => {
    const s = state
    if (!scenario.requested || s.members.length > 0 || s.ending !== undefined || s.ended) return
    if (s.inFlight === undefined && s.queue.length === 0) feed({ _tag: "Abort", reason: "unused" })
  }

  scenario.steps.forEach((step, index) => {
    if (index === scenario.readyAt) feed({ _tag: "SubscriptionReady" })
    switch (step.t) {
      case "event": {
        const raw = JSON.stringify({ type: step.type, seq: ++eventSeq })
        const { adopt, finished } = step
        feed({ _tag: "Event", type: step.type, raw, channelId: step.channel, adopt, finished })
        break
      }
      case "ready":
        feed({ _tag: "SubscriptionReady" })
        break
      case "command":
        sendCommand(commandShapes[step.shape]!)
        break
      case "flood":
        // Mostly valid commands, every tenth an invalid one: both count against the cap.
        for (let i = 0; i < step.count; i++) {
          if (i % 10 === 9) sendInvalid()
          else sendCommand(commandShapes[i % commandShapes.length]!)
        }
        break
      case "invalid":
        sendInvalid()
        break
      case "answer":
        answer(step.status)
        break
      case "grace":
        feed({ _tag: "GraceExpired" })
        break
      case "vanish":
        feed({ _tag: "ChannelsVanished", channelIds: step.channels })
        break
      case "abort":
        feed({ _tag: "Abort", reason: step.reason })
        break
      case "idleCheck":
        idleCheck()
        break
      case "linger":
        feed({ _tag: "LingerOver" })
        break
      case "refuse": {
        const keys = lastBind.filter((key) => state.bound.includes(key))
        if (keys.length > 0) feed({ _tag: "BindRefused", keys })
        break
      }
      case "lapse":
        feed({ _tag: "LeaseLapsed" })
        break
    }
  })
  if (endedWith !== undefined) figures.endedDuringSteps = 1

  // The drain: the subscription comes up, the grace period ends, ARI answers everything, every
  // channel goes (a requested dialog without any is found unused), the linger ends.
  feed({ _tag: "SubscriptionReady" })
  feed({ _tag: "GraceExpired" })
  for (let i = 0; i <= maxQueuedCommands + 1 && state.inFlight !== undefined; i++) answer(204)
  feed({ _tag: "ChannelsVanished", channelIds: [...state.members] })
  idleCheck()
  feed({ _tag: "LingerOver" })

  if (state.inFlight !== undefined) fail("a request still in flight after the drain")
  if (endedWith === undefined) fail("never ended")
  if (!released) fail("never released")
  if (bound.size > 0) fail(`${[...bound].join(",")} bound at the end`)
  for (const id of acceptedIds) if (!answered.has(id)) fail(`${id} never answered`)
  return { violations, figures }
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

const NUM_RUNS = 300

describe("dialog state machine", () => {
  it("property: events, commands, the cap, the end and the bindings, over every input", () => {
    const runs: Array<Figures> = []
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const outcome = runScenario(scenario)
        if (outcome.violations.length > 0) throw new Error(outcome.violations.join("\n"))
        runs.push(outcome.figures)
      }),
      { numRuns: NUM_RUNS }
    )
    console.log("dialog state machine property, per run:", summarize(runs))
    // The runs reach every case the property is about (fast-check's shrinking runs are not counted:
    // only a passing run is recorded, and every run passes here).
    for (
      const key of [
        "requested",
        "sentToAri",
        "ariFailures",
        "refusedFull",
        "answeredGone",
        "attaches",
        "invalid",
        "adoptedKeys",
        "finishedUnbound",
        "refusedBinds",
        "leasesTaken",
        "renewRefused",
        "acknowledged",
        "replays",
        "reoffers",
        "endedDuringSteps",
        ...endReasons.map((reason) => `endedBy_${reason}`)
      ]
    ) expect(runsWith(runs, key), key).toBeGreaterThan(0)
    expect(Math.max(...runs.map((r) => r.maxQueue!)), "the cap reached").toBe(maxQueuedCommands)
    expect(runsWith(runs, "sentToAri"), "runs whose commands reach ARI").toBeGreaterThan(NUM_RUNS / 2)
  })

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

  it("invalid commands count against the 1,000-command cap: a flood of them cannot grow the queue", () => {
    const dialog = drive("d-1", { holdEvents: false, maxHeldEvents: 100 }, "A")
    dialog.step({ _tag: "SubscriptionReady" })
    const slow = { unique_id: "slow", method: "POST", url: "/channels/A/answer", body: "" }
    dialog.step({ _tag: "Command", command: slow })
    for (let i = 0; i < maxQueuedCommands; i++) {
      dialog.step({ _tag: "InvalidCommand", uniqueId: `bad-${i}`, reason: "x" })
    }
    expect(dialog.state.queue).toHaveLength(maxQueuedCommands)
    expect(dialog.step({ _tag: "InvalidCommand", uniqueId: "one-more", reason: "x" }))
      .toEqual([expect.objectContaining({ _tag: "Respond", uniqueId: "one-more", status: 503 })])
    expect(dialog.state.queue).toHaveLength(maxQueuedCommands)
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
