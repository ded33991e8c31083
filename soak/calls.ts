/**
 * The soak's calls, both ends in this process: the far end (the simulator's phones) keeps `calls`
 * calls up, each sending DTMF now and then and hanging up after 20-60 s, a new call taking its
 * place; the application (the typed client's `serve`) answers, plays a prompt, sends commands
 * (GET the channel, play a beep) until it sees the hangup, and waits for DialogEnded.
 *
 * Each DTMF digit carries its number in `duration_ms` (base + index), so the application can tell
 * a lost digit from a reordered or repeated one without relying on the proxy's `seq`.
 */
import { Effect, Either, Option, Stream } from "effect"
import type { AriClientShape, AriDialog, AriRequestError, ChannelHandle, EventDelivery } from "../src/client/index.js"
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
/** After the far end hung up, how long DialogEnded (or, for a call never taken, its AppStart) may take. */
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
   * `no DialogEnded`, `ended: <reason>` (a reason other than channels_left).
   */
  readonly callsFailed: Record<string, number>
  /** More than one dialog for the same call (an AppStart delivered twice). */
  duplicateDialogs: number
  /** Dialogs whose first channel is not a call of ours, or without a StasisStart (within END_GRACE_MS). */
  strayDialogs: number
  /** Events the application received (duplicates dropped by the client not included). */
  events: number
  /** By `seq`, dialogs ended so far: events missing, runs of them, and duplicates the client dropped. */
  seqLost: number
  seqGaps: number
  seqDuplicates: number
  dtmfSent: number
  dtmfReceived: number
  /** Digits sent but never received, calls settled so far (those no dialog took included). */
  dtmfLost: number
  dtmfOutOfOrder: number
  dtmfRepeated: number
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

interface Call {
  readonly channelId: string
  dtmfSent: number
  hungUpAt: number | undefined
  /** Dialogs the application took for it. */
  dialogs: number
  dialog: AriDialog | undefined
  /** The application saw it hang up (ChannelHangupRequest or StasisEnd): it stops sending commands. */
  hangupSeen: boolean
  readonly dtmfReceived: Set<number>
  dtmfHighest: number
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
  /** Settles the calls hung up long ago that no dialog took. */
  readonly sweep: () => void
  /** The application's side; run it (it never ends) before the first call. */
  readonly serve: Effect.Effect<never, unknown>
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

  const settle = (call: Call, outcome: string, delivery: EventDelivery | undefined) => {
    if (!calls.delete(call.channelId)) return
    if (outcome === "channels_left") tally.callsCompleted++
    else bump(tally.callsFailed, outcome)
    // A call no dialog took lost all its digits.
    tally.dtmfLost += Math.max(0, call.dtmfSent - call.dtmfReceived.size)
    if (delivery === undefined) return
    tally.seqLost += delivery.gaps.reduce((sum, gap) => sum + gap.missing, 0)
    tally.seqGaps += delivery.gaps.length
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
        dialogs: 0,
        dialog: undefined,
        hangupSeen: false,
        dtmfReceived: new Set(),
        dtmfHighest: -1
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

  const converse = (call: Call, channel: ChannelHandle) =>
    Effect.gen(function*() {
      yield* command(call, channel.answer())
      yield* playAndWait(call, channel, "sound:hello-world")
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

  const watchEvents = (call: Call, dialog: AriDialog) =>
    Stream.runForEach(dialog.events, (event) => Effect.sync(() => {
      tally.events++
      if (isUnknownAriEvent(event)) return
      switch (event.type) {
        case "ChannelDtmfReceived": {
          const index = event.duration_ms - DTMF_DURATION_BASE_MS
          if (call.dtmfReceived.has(index)) {
            tally.dtmfRepeated++
            return
          }
          if (index < call.dtmfHighest) tally.dtmfOutOfOrder++
          call.dtmfHighest = Math.max(call.dtmfHighest, index)
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

  const handle = (dialog: AriDialog) =>
    Effect.gen(function*() {
      // Bounded: a dialog whose StasisStart and DialogEnded were both lost would wait forever.
      const first = yield* dialog.firstChannel.pipe(Effect.timeout(END_GRACE_MS), Effect.option)
      const call = Option.isSome(first) ? calls.get(first.value.id) : undefined
      if (Option.isNone(first) || call === undefined) {
        tally.strayDialogs++
        return
      }
      if (++call.dialogs > 1) {
        tally.duplicateDialogs++
        return
      }
      call.dialog = dialog
      // Forked: both stop when the handler returns (the dialog is then closed).
      yield* Effect.fork(watchEvents(call, dialog))
      yield* Effect.fork(converse(call, first.value))
      const outcome = yield* awaitEnd(call, dialog)
      settle(call, outcome, yield* dialog.delivery)
    })

  const sweep = () => {
    const now = Date.now()
    for (const call of [...calls.values()]) {
      if (call.dialogs === 0 && call.hungUpAt !== undefined && now - call.hungUpAt > END_GRACE_MS) {
        settle(call, "not taken", undefined)
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
        if (call.dialog === undefined) continue
        const delivery = Effect.runSync(call.dialog.delivery)
        lost += delivery.gaps.reduce((sum, gap) => sum + gap.missing, 0)
        gaps += delivery.gaps.length
        duplicates += delivery.duplicates
      }
      return { lost, gaps, duplicates }
    },
    sweep,
    serve: client.serve(handle),
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
