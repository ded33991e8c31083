/**
 * The soak's calls, both ends in this process: the far end (the simulator's phones) keeps `calls`
 * calls up, each sending DTMF now and then and hanging up after 20-60 s, a new call taking its
 * place; the application (the typed client's `serve`) answers, plays a prompt, sends commands
 * (GET the channel, play a beep) until it sees the hangup, and waits for DialogEnded.
 *
 * Each DTMF digit carries its number in `duration_ms` (base + index), so the application can tell
 * a lost digit from a reordered or repeated one without relying on the proxy's `seq`.
 *
 * A dialog whose lease lapses (the client could not renew it through a broker outage longer than
 * the proxy's `dialog_lease_ms`) is offered anew, resumed: the application takes it over and
 * carries on, and the owner that lost it lets go. A call is judged over all the dialogs that drove it.
 */
import { Effect, Either, Option, Stream } from "effect"
import type { AriClientShape, AriDialog, AriRequestError, ChannelHandle } from "../src/client/index.js"
import { isUnknownAriEvent } from "../src/client/index.js"
import type { SimulatorHandle } from "../src/simulator/index.js"

const CALL_MIN_MS = 20_000
const CALL_MAX_MS = 60_000
const DTMF_MIN_MS = 1_500
const DTMF_MAX_MS = 4_000
const COMMAND_MIN_MS = 2_000
const COMMAND_MAX_MS = 5_000
/** As long as a request may wait for its answer (the client's default): an outage is not a loss. */
const PLAYBACK_TIMEOUT_MS = 15_000
/** After the far end hung up, how long DialogEnded (or, for a call nobody drives, its AppStart) may take. */
export const END_GRACE_MS = 30_000
const DIGITS = "0123456789*#"
const DTMF_DURATION_BASE_MS = 100
/** Answers that say the call was already gone: expected when a command crosses the hangup. */
const GONE_TAGS = new Set(["NotFound", "Conflict", "InvalidState", "Unprocessable", "Gone"])

const randomBetween = (min: number, max: number) => min + Math.random() * (max - min)
const bump = (counts: Record<string, number>, key: string) => {
  counts[key] = (counts[key] ?? 0) + 1
}

export interface Tally {
  callsPlaced: number
  /** Calls the simulator refused (the proxy's ARI websocket was down). */
  callsRefused: number
  callsCompleted: number
  /**
   * By kind: `not taken` (no dialog took it: its AppStart, or its dialog's StasisStart, never came),
   * `not taken over` (its owner lost the lease and no resumed dialog came), `no DialogEnded`,
   * `ended: <reason>` (a reason other than channels_left).
   */
  readonly callsFailed: Record<string, number>
  /** Resumed dialogs taken (a lease lapsed), and owners told they had lost theirs. */
  takeovers: number
  leasesLost: number
  /** A second dialog for the same call that was not a resumed one (an AppStart delivered twice). */
  duplicateDialogs: number
  /** Dialogs whose first channel is not a call of ours, or without a StasisStart (within END_GRACE_MS). */
  strayDialogs: number
  /** Events the application received (duplicates dropped by the client not included). */
  events: number
  /**
   * By `seq`, calls settled so far: events no owner received (what a takeover replayed is not
   * lost), runs of them, and duplicates the client dropped.
   */
  seqLost: number
  seqGaps: number
  seqDuplicates: number
  dtmfSent: number
  dtmfReceived: number
  /** Digits sent but never received, calls settled so far (those no dialog took included). */
  dtmfLost: number
  /** Received after a later digit by the same dialog. */
  dtmfOutOfOrder: number
  /** Received twice by the same dialog. */
  dtmfRepeated: number
  /** Received again by the dialog that took the call over (its replay): expected. */
  dtmfReplayed: number
  /** Simulator calls that failed on the far end (sendDtmf or hangup of a channel it no longer had). */
  farEndErrors: number
  commandsOk: number
  /** By kind (`ServerError 504`, `RequestTimeout`, `PlaybackFinished missing`, ...). */
  readonly commandErrors: Record<string, number>
  /** 4xx or Gone answers to commands that crossed the far end's hangup: expected, not errors. */
  readonly commandsRacedHangup: Record<string, number>
  /** Round trips of the commands answered 2xx (ms), all of them. */
  readonly commandLatencies: Array<number>
}

/** What the dialogs still open have seen so far, by `seq`. */
export interface LiveDelivery {
  readonly lost: number
  readonly gaps: number
  readonly duplicates: number
}

/** A dialog that drove a call. */
interface Owner {
  readonly dialog: AriDialog
  /** `resumed.lastSeq` when it took the call over: its predecessor's events after it were replayed to it. */
  readonly resumedAfter: number | undefined
  /** The digits it received, and the highest (order is judged per owner: a takeover replays). */
  readonly digits: Set<number>
  highestDigit: number
}

interface Call {
  readonly channelId: string
  dtmfSent: number
  hungUpAt: number | undefined
  /** The application saw it hang up (ChannelHangupRequest or StasisEnd): it stops sending commands. */
  hangupSeen: boolean
  /** The dialogs that drove it, in the order taken: the first, then one per takeover. */
  readonly owners: Array<Owner>
  /** False until a dialog takes it, and while its last owner has lost the lease and no other took over. */
  driven: boolean
  /** Digits received by any owner. */
  readonly dtmfReceived: Set<number>
}

export interface CallsOptions {
  readonly sim: SimulatorHandle
  readonly client: AriClientShape
  readonly calls: number
}

export interface Calls {
  readonly tally: Tally
  /** Calls up on the far end right now. */
  readonly up: () => number
  readonly liveDelivery: () => LiveDelivery
  /** Settles the calls hung up long ago that no dialog drives. */
  readonly sweep: () => void
  /** The application's side; run it (it never ends) before the first call; `onListening` says when it takes calls. */
  readonly serve: (onListening: Effect.Effect<void>) => Effect.Effect<never, unknown>
  readonly start: () => void
  /** Hangs up every call, places no more, waits until each is settled (at most END_GRACE_MS + 5 s). */
  readonly stop: () => Promise<void>
}

export const makeCalls = ({ sim, client, calls: slots }: CallsOptions): Calls => {
  const tally: Tally = {
    callsPlaced: 0,
    callsRefused: 0,
    callsCompleted: 0,
    callsFailed: {},
    takeovers: 0,
    leasesLost: 0,
    duplicateDialogs: 0,
    strayDialogs: 0,
    events: 0,
    seqLost: 0,
    seqGaps: 0,
    seqDuplicates: 0,
    dtmfSent: 0,
    dtmfReceived: 0,
    dtmfLost: 0,
    dtmfOutOfOrder: 0,
    dtmfRepeated: 0,
    dtmfReplayed: 0,
    farEndErrors: 0,
    commandsOk: 0,
    commandErrors: {},
    commandsRacedHangup: {},
    commandLatencies: []
  }
  /** Calls not settled yet, by channel id. */
  const calls = new Map<string, Call>()
  let stopping = false
  let wakeAll: () => void = () => undefined
  const stopped = new Promise<void>((resolve) => {
    wakeAll = resolve
  })
  /** A sleep that ends early when the soak stops. */
  const pause = (ms: number) => Promise.race([new Promise((resolve) => setTimeout(resolve, ms)), stopped])

  /** By `seq`, over the call's owners: a gap an owner's successor got replayed is not a loss. */
  const deliveryOf = (call: Call): LiveDelivery => {
    let lost = 0
    let gaps = 0
    let duplicates = 0
    call.owners.forEach((owner, index) => {
      const delivery = Effect.runSync(owner.dialog.delivery)
      const replayedAfter = call.owners[index + 1]?.resumedAfter ?? Number.POSITIVE_INFINITY
      for (const gap of delivery.gaps) {
        const missing = Math.min(gap.missing, replayedAfter - gap.after)
        if (missing <= 0) continue
        lost += missing
        gaps++
      }
      duplicates += delivery.duplicates
    })
    return { lost, gaps, duplicates }
  }

  const settle = (call: Call, outcome: string) => {
    if (!calls.delete(call.channelId)) return
    if (outcome === "channels_left") tally.callsCompleted++
    else bump(tally.callsFailed, outcome)
    // A call no dialog took lost all its digits.
    tally.dtmfLost += Math.max(0, call.dtmfSent - call.dtmfReceived.size)
    const delivery = deliveryOf(call)
    tally.seqLost += delivery.lost
    tally.seqGaps += delivery.gaps
    tally.seqDuplicates += delivery.duplicates
  }

  // The far end.

  const place = (slot: number): Call | undefined => {
    try {
      const channelId = sim.placeCall({ app: client.application, caller: `soak-${slot}` })
      const call: Call = {
        channelId,
        dtmfSent: 0,
        hungUpAt: undefined,
        hangupSeen: false,
        owners: [],
        driven: false,
        dtmfReceived: new Set()
      }
      calls.set(channelId, call)
      tally.callsPlaced++
      return call
    } catch {
      tally.callsRefused++
      return undefined
    }
  }

  const farEnd = (what: () => void) => {
    try {
      what()
    } catch {
      tally.farEndErrors++
    }
  }

  const runSlot = async (slot: number) => {
    // The first calls are spread over up to 10 s, so that they do not all hang up together.
    await pause(slot * Math.min(200, 10_000 / slots))
    while (!stopping) {
      const call = place(slot)
      if (call === undefined) {
        await pause(1_000)
        continue
      }
      const hangupAt = Date.now() + randomBetween(CALL_MIN_MS, CALL_MAX_MS)
      for (;;) {
        const wait = randomBetween(DTMF_MIN_MS, DTMF_MAX_MS)
        if (Date.now() + wait > hangupAt - 500) break
        await pause(wait)
        if (stopping) break
        const index = call.dtmfSent
        farEnd(() => {
          sim.sendDtmf(call.channelId, DIGITS[index % DIGITS.length]!, DTMF_DURATION_BASE_MS + index)
          call.dtmfSent++
          tally.dtmfSent++
        })
      }
      await pause(hangupAt - Date.now())
      call.hungUpAt = Date.now()
      farEnd(() => sim.hangup(call.channelId))
    }
  }

  // The application.

  const command = <A>(call: Call, request: Effect.Effect<A, AriRequestError>) =>
    Effect.gen(function*() {
      const sent = performance.now()
      const result = yield* Effect.either(request)
      if (Either.isRight(result)) {
        tally.commandsOk++
        tally.commandLatencies.push(performance.now() - sent)
        return Option.some(result.right)
      }
      const error = result.left
      const kind = "status" in error ? `${error._tag} ${error.status}` : error._tag
      const crossedHangup = call.hungUpAt !== undefined && GONE_TAGS.has(error._tag)
      bump(crossedHangup ? tally.commandsRacedHangup : tally.commandErrors, kind)
      return Option.none<A>()
    })

  const playAndWait = (call: Call, channel: ChannelHandle, media: string) =>
    Effect.gen(function*() {
      const playback = yield* command(call, channel.play({ media }))
      if (Option.isNone(playback)) return
      const finished = yield* playback.value.finished.pipe(Effect.timeout(PLAYBACK_TIMEOUT_MS), Effect.either)
      // Gone: the dialog ended first (the caller hung up during the prompt).
      if (Either.isLeft(finished) && finished.left._tag === "TimeoutException") {
        const counts = call.hungUpAt === undefined ? tally.commandErrors : tally.commandsRacedHangup
        bump(counts, `no PlaybackFinished in ${PLAYBACK_TIMEOUT_MS / 1000} s`)
      }
    })

  /** A call taken over is already answered and greeted: its new owner goes on with the commands. */
  const converse = (call: Call, channel: ChannelHandle, takenOver: boolean) =>
    Effect.gen(function*() {
      if (!takenOver) {
        yield* command(call, channel.answer())
        yield* playAndWait(call, channel, "sound:hello-world")
      }
      for (let turn = 0; !call.hangupSeen; turn++) {
        yield* Effect.sleep(randomBetween(COMMAND_MIN_MS, COMMAND_MAX_MS))
        if (call.hangupSeen) return
        if (turn % 2 === 1) {
          yield* playAndWait(call, channel, "sound:beep")
          continue
        }
        const got = yield* command(call, channel.get())
        if (Option.isSome(got) && got.value.id !== channel.id) bump(tally.commandErrors, "GET gave another channel")
      }
    })

  const watchEvents = (call: Call, owner: Owner) =>
    Stream.runForEach(owner.dialog.events, (event) => Effect.sync(() => {
      tally.events++
      if (isUnknownAriEvent(event)) return
      switch (event.type) {
        case "ChannelDtmfReceived": {
          const index = event.duration_ms - DTMF_DURATION_BASE_MS
          if (owner.digits.has(index)) {
            tally.dtmfRepeated++
            return
          }
          if (index < owner.highestDigit) tally.dtmfOutOfOrder++
          owner.highestDigit = Math.max(owner.highestDigit, index)
          owner.digits.add(index)
          if (call.dtmfReceived.has(index)) {
            tally.dtmfReplayed++
            return
          }
          call.dtmfReceived.add(index)
          tally.dtmfReceived++
          return
        }
        case "ChannelHangupRequest":
        case "StasisEnd":
          call.hangupSeen = true
      }
    }))

  /** DialogEnded's reason, or `no DialogEnded` once the far end hung up END_GRACE_MS ago. */
  const awaitEnd = (call: Call, dialog: AriDialog) =>
    Effect.raceFirst(
      Effect.map(dialog.ended, (end) => end.reason === "channels_left" ? end.reason : `ended: ${end.reason}`),
      Effect.gen(function*() {
        for (;;) {
          yield* Effect.sleep(1_000)
          if (call.hungUpAt !== undefined && Date.now() - call.hungUpAt > END_GRACE_MS) return "no DialogEnded"
        }
      })
    )

  /** The call a dialog is for: its first channel's, or for a resumed one, the channel it says the call holds. */
  const callOf = (dialog: AriDialog) =>
    Effect.gen(function*() {
      if (dialog.resumed !== undefined) {
        return dialog.resumed.state.channels.map((channel) => calls.get(channel.id)).find((call) => call !== undefined)
      }
      // Bounded: a dialog whose StasisStart and DialogEnded were both lost would wait forever.
      const first = yield* dialog.firstChannel.pipe(Effect.timeout(END_GRACE_MS), Effect.option)
      return Option.isSome(first) ? calls.get(first.value.id) : undefined
    })

  const handle = (dialog: AriDialog) =>
    Effect.gen(function*() {
      const call = yield* callOf(dialog)
      if (call === undefined) {
        tally.strayDialogs++
        return
      }
      const resumed = dialog.resumed
      if (resumed === undefined && call.owners.length > 0) {
        tally.duplicateDialogs++
        return
      }
      if (resumed !== undefined) tally.takeovers++
      const owner: Owner = { dialog, resumedAfter: resumed?.lastSeq, digits: new Set(), highestDigit: -1 }
      call.owners.push(owner)
      call.driven = true
      // Forked: both stop when the handler returns (the dialog is then closed).
      yield* Effect.fork(watchEvents(call, owner))
      yield* Effect.fork(converse(call, dialog.channel(call.channelId), resumed !== undefined))
      const outcome = yield* awaitEnd(call, dialog)
      if (outcome === "ended: lease_lost") {
        // Another dialog drives the call now, or will once the resumed AppStart comes.
        tally.leasesLost++
        if (call.owners.at(-1) === owner) call.driven = false
        return
      }
      settle(call, outcome)
    })

  const sweep = () => {
    const now = Date.now()
    for (const call of [...calls.values()]) {
      if (!call.driven && call.hungUpAt !== undefined && now - call.hungUpAt > END_GRACE_MS) {
        settle(call, call.owners.length === 0 ? "not taken" : "not taken over")
      }
    }
  }

  const slotsDone: Array<Promise<void>> = []
  return {
    tally,
    up: () => [...calls.values()].filter((call) => call.hungUpAt === undefined).length,
    liveDelivery: () => {
      let lost = 0
      let gaps = 0
      let duplicates = 0
      for (const call of calls.values()) {
        const delivery = deliveryOf(call)
        lost += delivery.lost
        gaps += delivery.gaps
        duplicates += delivery.duplicates
      }
      return { lost, gaps, duplicates }
    },
    sweep,
    serve: (onListening) => client.serve(handle, { onListening }),
    start: () => {
      for (let slot = 0; slot < slots; slot++) slotsDone.push(runSlot(slot))
    },
    stop: async () => {
      stopping = true
      wakeAll()
      await Promise.all(slotsDone)
      const deadline = Date.now() + END_GRACE_MS + 5_000
      while (calls.size > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 500))
        sweep()
      }
    }
  }
}
