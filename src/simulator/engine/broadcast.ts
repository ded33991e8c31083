/**
 * StasisBroadcast (app_stasis_broadcast, res_stasis_broadcast): the dialplan offers a call to every
 * application whose name matches a filter, with a CallBroadcast each, and the first
 * `POST /events/claim` wins it: that application gets the StasisStart. As Asterisk 23.4.1 does it
 * (ari-modes §3): later claims are refused 409; past the timeout, or for a channel that was never
 * offered, 404; nobody claiming in time sets STASISSTATUS=TIMEOUT and the dialplan continues, with
 * no event to any application; a winner with no websocket fails the Stasis (STASISSTATUS=FAILED).
 */
import { ariError } from "../errors.js"
import type { Channel } from "../state.js"
import { channelSnapshot } from "../state.js"
import { hangup, setVariable } from "./channels.js"
import type { Engine, Timer } from "./core.js"
import { enterStasis, runDialplan } from "./dialplan.js"

/** The arguments of `StasisBroadcast(timeout_ms,app_filter,args,notify_claimed)`. */
export interface BroadcastSpec {
  /** 0–60000; default 500. */
  readonly timeoutMs: number
  /** A regular expression matched against application names; undefined: every application. */
  readonly appFilter: string | undefined
  /** Become StasisStart's `args` (written colon-separated in the dialplan). */
  readonly args: ReadonlyArray<string>
  /** Send CallClaimed to the matching applications once a claim wins. */
  readonly notifyClaimed: boolean
}

/** A call on offer; it stays known (claims answered 409) until its timeout passes. */
export interface Offer {
  readonly channel: Channel
  readonly spec: BroadcastSpec
  /** The applications that matched the filter when the call was offered. */
  readonly apps: ReadonlyArray<string>
  /** Where the dialplan continues when the broadcast ends without a Stasis. */
  readonly next: { readonly context: string; readonly exten: string; readonly priority: number }
  winner: string | undefined
  timer: Timer | undefined
}

const DEFAULT_TIMEOUT_MS = 500
const MAX_TIMEOUT_MS = 60_000

/** Parses the dialplan application's data, e.g. `3000,^cap-bc[12]$,sales:prio,yes`. */
export const parseBroadcastData = (data: string): BroadcastSpec => {
  const [timeout = "", filter = "", args = "", notify = ""] = data.split(",")
  const parsed = Number.parseInt(timeout.trim(), 10)
  return {
    timeoutMs: Number.isNaN(parsed) ? DEFAULT_TIMEOUT_MS : Math.min(Math.max(parsed, 0), MAX_TIMEOUT_MS),
    appFilter: filter.trim() === "" ? undefined : filter.trim(),
    args: args === "" ? [] : args.split(":"),
    notifyClaimed: /^(yes|true|y|t|1|on)$/i.test(notify.trim())
  }
}

/** The applications a broadcast reaches: those with a websocket whose name matches the filter. */
const matchingApps = (engine: Engine, appFilter: string | undefined): Array<string> => {
  const connected = [...engine.hub.registrations.keys()].filter((app) => engine.hub.isRegistered(app))
  if (appFilter === undefined) return connected
  let pattern: RegExp
  try {
    pattern = new RegExp(appFilter)
  } catch {
    // Asterisk logs an invalid expression and broadcasts unfiltered.
    return connected
  }
  return connected.filter((app) => pattern.test(app))
}

/** Asterisk shuffles the order in which the applications get the broadcast, call by call. */
const shuffled = <A>(items: ReadonlyArray<A>): Array<A> => {
  const copy = [...items]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    const item = copy[i] as A
    copy[i] = copy[j] as A
    copy[j] = item
  }
  return copy
}

/** Goes on in the dialplan after the broadcast; an extension with no more steps hangs up (autofallthrough). */
const continueDialplan = (engine: Engine, offer: Offer): void => {
  const { context, exten, priority } = offer.next
  const steps = engine.options.dialplan[context]?.[exten]
  if (steps === undefined || priority > steps.length) {
    hangup(engine, offer.channel, { kind: "remote", cause: 16 })
    return
  }
  runDialplan(engine, offer.channel, context, exten, priority)
}

/**
 * Offers `channel` (whose dialplan location is already the StasisBroadcast step) to the matching
 * applications; `next` is the priority after that step.
 */
export const startBroadcast = (engine: Engine, channel: Channel, spec: BroadcastSpec): void => {
  const { context, exten, priority } = channel.dialplan
  const offer: Offer = {
    channel,
    spec,
    apps: matchingApps(engine, spec.appFilter),
    next: { context, exten, priority: priority + 1 },
    winner: undefined,
    timer: undefined
  }
  engine.broadcasts.set(channel.id, offer)
  const event = engine.ev.callBroadcast(channelSnapshot(channel), channel.caller.number, exten)
  for (const app of shuffled(offer.apps)) engine.hub.deliver(event, [app])
  offer.timer = engine.later(spec.timeoutMs, () => {
    engine.broadcasts.delete(channel.id)
    if (offer.winner !== undefined || !engine.alive(channel)) return
    setVariable(engine, channel, "STASISSTATUS", "TIMEOUT")
    continueDialplan(engine, offer)
  })
}

/** `POST /events/claim?channelId=&application=`: the first claim of an offered call wins it. */
export const claimCall = (engine: Engine, channelId: string | undefined, application: string | undefined): void => {
  if (channelId === undefined || channelId === "") throw ariError(400, "Bad Request", "channelId parameter is required")
  if (application === undefined || application === "") {
    throw ariError(400, "Bad Request", "application parameter is required")
  }
  const offer = engine.broadcasts.get(channelId)
  if (offer === undefined || !engine.alive(offer.channel)) {
    throw ariError(404, "Not Found", "Channel not found or not in broadcast state")
  }
  if (offer.winner !== undefined) {
    throw ariError(409, "Conflict", "Channel has already been claimed by another application")
  }
  // Nothing checks that the claimer owns the name: the winner is whatever application it names.
  offer.winner = application
  const { channel, spec } = offer
  if (spec.notifyClaimed) {
    engine.hub.deliver(engine.ev.callClaimed(channelSnapshot(channel), application), offer.apps)
  }
  // The StasisStart follows within about a millisecond of the claim.
  engine.later(0, () => {
    if (!engine.alive(channel)) return
    if (!engine.hub.isRegistered(application)) {
      setVariable(engine, channel, "STASISSTATUS", "FAILED")
      continueDialplan(engine, offer)
      return
    }
    enterStasis(engine, channel, application, spec.args, false)
  })
}
