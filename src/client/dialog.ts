/**
 * One dialog seen from the application: its events (typed), requests with their responses, and
 * handles for channels, bridges and playbacks. Joining subscribes to the events and responses
 * topics first and only then attaches, so the proxy releases the events it held to a listener.
 */
import { randomUUID } from "node:crypto"
import { Deferred, Duration, Effect, ExecutionStrategy, Exit, Option, Schedule, Scope, Stream, type Tracer } from "effect"
import type { BusShape } from "../bus/Bus.js"
import { encodeCommand } from "../protocol/codec.js"
import { parseJsonObject } from "../protocol/json.js"
import { ATTACH_METHOD, DIALOG_ENDED_TYPE, type DialogEndReason, RENEW_METHOD } from "../protocol/messages.js"
import type { Topics } from "../protocol/topics.js"
import { type AriRequestError, errorFromResponse, Gone, RequestTimeout } from "./errors.js"
import { makeEventLog } from "./eventLog.js"
import { currentTraceparent } from "./trace.js"
import {
  type AriApiEffect,
  type AriEvent,
  type Bridge,
  buildRequest,
  type BridgesAddChannelParams,
  type BridgesCreateParams,
  type BridgesPlayParams,
  type Channel,
  type ChannelsHangupParams,
  type ChannelsOriginateParams,
  type ChannelsPlayParams,
  type ChannelsSendDTMFParams,
  decodeAriEventJson,
  isUnknownAriEvent,
  makeAriApiEffect,
  type OperationDescriptor,
  type Playback,
  type PlaybackFinished,
  type StasisStart,
  type UnknownAriEvent
} from "./ari.js"

/** An event of a dialog: typed when this build knows its type, otherwise passed through as received. */
export type DialogEvent = AriEvent | UnknownAriEvent

/** The typed event of one type, e.g. `AriEventOfType<"StasisStart">`. */
export type AriEventOfType<T extends AriEvent["type"]> = Extract<AriEvent, { readonly type: T }>

/**
 * How a dialog ended: DialogEnded's reason; `closed` when the application let go of it first;
 * `lease_lost` when this instance failed to renew its lease in time and the dialog was offered to
 * another instance (a long pause: this instance must not drive it any more).
 */
export interface DialogEnd {
  readonly dialogId: string
  readonly reason: DialogEndReason | "closed" | "lease_lost"
}

/** What the proxy says a dialog holds, when it offers it anew (ARI's own JSON objects). */
export interface DialogSnapshot {
  readonly channels: ReadonlyArray<Channel>
  readonly bridges: ReadonlyArray<Bridge>
  readonly playbacks: ReadonlyArray<Playback>
}

/** A dialog taken over from an instance that stopped renewing its lease (it died). */
export interface ResumedFrom {
  /** The last event the previous owner acknowledged: the events after it are replayed to this instance. */
  readonly lastSeq: number
  readonly state: DialogSnapshot
}

/** A run of events the proxy numbered but this client never received (lost on the way). */
export interface EventGap {
  /** The `seq` of the last event received before the gap. */
  readonly after: number
  /** How many events are missing. */
  readonly missing: number
}

/**
 * How the dialog's events arrived, by their `seq` (a proxy that does not number its events, such
 * as the Go seed, leaves this empty).
 */
export interface EventDelivery {
  /** The `seq` of the last event received. */
  readonly lastSeq: number
  /** Events received a second time (a republish after a reconnect) and dropped. */
  readonly duplicates: number
  readonly gaps: ReadonlyArray<EventGap>
}

/** A response as it came back (2xx only: the others are errors). */
export interface DialogResponse {
  readonly status: number
  readonly body: string
}

export interface PlaybackHandle {
  readonly id: string
  /** The playback's PlaybackFinished (done, or failed); Gone if the dialog ends first. */
  readonly finished: Effect.Effect<PlaybackFinished, Gone>
  readonly stop: () => Effect.Effect<void, AriRequestError>
}

export interface ChannelHandle {
  readonly id: string
  readonly answer: () => Effect.Effect<void, AriRequestError>
  readonly hangup: (options?: Omit<ChannelsHangupParams, "channelId">) => Effect.Effect<void, AriRequestError>
  /** Starts a playback (`media: "sound:hello-world"`, several are played in turn) and returns its handle. */
  readonly play: (options: Omit<ChannelsPlayParams, "channelId">) => Effect.Effect<PlaybackHandle, AriRequestError>
  readonly sendDtmf: (
    dtmf: string,
    options?: Omit<ChannelsSendDTMFParams, "channelId" | "dtmf">
  ) => Effect.Effect<void, AriRequestError>
  /** The channel as ARI describes it now. */
  readonly get: () => Effect.Effect<Channel, AriRequestError>
  /** Its StasisStart; Gone if it is destroyed first (an originate nobody answered) or the dialog ends. */
  readonly started: Effect.Effect<StasisStart, Gone>
  /** Completes when it leaves Stasis or is destroyed, or the dialog ends. */
  readonly ended: Effect.Effect<void>
  /** Every digit pressed on it since the dialog began. */
  readonly dtmf: Stream.Stream<string>
  /**
   * The next digit not yet taken by an earlier `waitForDtmf` (keys pressed during a prompt are kept);
   * None after `timeoutMs` or when the dialog ends.
   */
  readonly waitForDtmf: (options?: { readonly timeoutMs?: number }) => Effect.Effect<Option.Option<string>>
}

/** A channel given by handle or by id. */
export type ChannelRef = string | { readonly id: string }

export interface BridgeHandle {
  readonly id: string
  readonly addChannel: (
    channels: ChannelRef | ReadonlyArray<ChannelRef>,
    options?: Omit<BridgesAddChannelParams, "bridgeId" | "channel">
  ) => Effect.Effect<void, AriRequestError>
  readonly removeChannel: (channels: ChannelRef | ReadonlyArray<ChannelRef>) => Effect.Effect<void, AriRequestError>
  readonly play: (options: Omit<BridgesPlayParams, "bridgeId">) => Effect.Effect<PlaybackHandle, AriRequestError>
  readonly destroy: () => Effect.Effect<void, AriRequestError>
}

/**
 * Originate parameters; `app` defaults to the client's application (unless a dialplan location is
 * given), `channelId` to a fresh UUID.
 */
export type OriginateOptions = Omit<ChannelsOriginateParams, "app"> & { readonly app?: string }

export interface AriDialog {
  readonly id: string
  /** The proxy (Asterisk) the dialog lives on. */
  readonly serverId: string
  readonly application: string
  /**
   * Set when this instance took the dialog over from one that died mid-call: `events` starts after
   * the last event the previous owner acknowledged (replayed, then live), and `state` says what
   * the call holds now.
   */
  readonly resumed: ResumedFrom | undefined
  /**
   * The proxy's span of this dialog (AppStart's or the DialogGrant's `traceparent`), when the proxy
   * traces: link the application's spans of the call to it. Requests made inside a span carry that
   * span's trace context, and the proxy's spans of the command become its children.
   */
  readonly trace: Tracer.ExternalSpan | undefined
  /** The whole ARI 11 surface, typed; requests go through this dialog. */
  readonly ari: AriApiEffect<AriRequestError>
  /** Every event since the dialog began (each reader gets them all), then the live ones; completes on DialogEnded. */
  readonly events: Stream.Stream<DialogEvent>
  /** Resolves when DialogEnded arrives (or the dialog is closed). */
  readonly ended: Effect.Effect<DialogEnd>
  /** Duplicates dropped and gaps seen so far (each gap is also logged as a warning). */
  readonly delivery: Effect.Effect<EventDelivery>
  /** The channel of the dialog's first StasisStart: the caller of an inbound call. */
  readonly firstChannel: Effect.Effect<ChannelHandle, Gone>
  readonly channel: (id: string) => ChannelHandle
  readonly channels: {
    /** Originates with a client-made channelId, so the proxy binds the channel to this dialog first. */
    readonly originate: (options: OriginateOptions) => Effect.Effect<ChannelHandle, AriRequestError>
  }
  readonly bridges: {
    /** Creates a bridge (mixing unless told) with a client-made bridgeId. */
    readonly create: (options?: BridgesCreateParams) => Effect.Effect<BridgeHandle, AriRequestError>
    readonly get: (id: string) => BridgeHandle
  }
  readonly playback: (id: string) => PlaybackHandle
  /** The first event of `type` (since the dialog began) that matches; Gone if the dialog ends first. */
  readonly waitFor: <T extends AriEvent["type"]>(
    type: T,
    matches?: (event: AriEventOfType<T>) => boolean
  ) => Effect.Effect<AriEventOfType<T>, Gone>
  /** A raw request: `url` under stasis_url, `body` JSON text or "". */
  readonly request: (
    method: string,
    url: string,
    body?: string,
    options?: { readonly timeoutMs?: number }
  ) => Effect.Effect<DialogResponse, AriRequestError>
  /** Releases the dialog's subscriptions (and, on RabbitMQ, retires its queues). Done by itself on DialogEnded. */
  readonly close: Effect.Effect<void>
}

export interface JoinOptions {
  readonly bus: BusShape
  readonly topics: Topics
  readonly application: string
  readonly dialogId: string
  readonly serverId: string
  readonly requestTimeoutMs: number
  /** A unique_id no other request of this client uses. */
  readonly nextRequestId: () => string
  /** Taking over a dialog whose owner died (a resumed AppStart). */
  readonly resume?: ResumedFrom | undefined
  /** This client instance's id: it holds the lease, and a RENEW from any other instance is refused. */
  readonly owner: string
  /** The proxy's span of the dialog, from AppStart or the DialogGrant. */
  readonly trace?: Tracer.ExternalSpan | undefined
}

interface Pending {
  readonly answer: Deferred.Deferred<DialogResponse, Gone>
  readonly method: string
  readonly url: string
}

/** A parsed wire message, or undefined if it is not what it should be (ignored, as a seed client would). */
const parseJson = parseJsonObject

/** A response body as a value: JSON parsed, "" (204) as undefined, anything else as text. */
const parseBody = (body: string): unknown => {
  if (body === "") return undefined
  try {
    return JSON.parse(body)
  } catch {
    return body
  }
}

const isEventOf = <T extends AriEvent["type"]>(type: T) => (event: DialogEvent): event is AriEventOfType<T> =>
  event.type === type && !isUnknownAriEvent(event)

const channelIdOf = (event: DialogEvent): string | undefined => {
  const channel = (event as { readonly channel?: { readonly id?: unknown } }).channel
  return typeof channel?.id === "string" ? channel.id : undefined
}

const idsOf = (channels: ChannelRef | ReadonlyArray<ChannelRef>): Array<string> =>
  (Array.isArray(channels) ? channels : [channels]).map((ref: ChannelRef) => typeof ref === "string" ? ref : ref.id)

/**
 * Joins a dialog in a scope of its own, forked from `parent`: subscribes to its events and
 * responses, then attaches. The dialog's scope closes on DialogEnded, on `close`, or with `parent`.
 */
export const joinDialog = (parent: Scope.Scope, options: JoinOptions): Effect.Effect<AriDialog, AriRequestError> =>
  Effect.gen(function*() {
    const { application, bus, dialogId, serverId, topics } = options
    const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
    const log = makeEventLog<DialogEvent>()
    const endSignal = yield* Deferred.make<DialogEnd>()
    const pending = new Map<string, Pending>()
    const dtmfCursors = new Map<string, number>()
    // One reader of a channel's digits at a time, so that each digit is handed out once.
    const dtmfLocks = new Map<string, Effect.Semaphore>()
    const dtmfLock = (id: string) => {
      let lock = dtmfLocks.get(id)
      if (lock === undefined) {
        lock = Effect.unsafeMakeSemaphore(1)
        dtmfLocks.set(id, lock)
      }
      return lock
    }
    let end: DialogEnd | undefined
    let lastSeq = options.resume?.lastSeq ?? 0
    let duplicates = 0
    const gaps: Array<EventGap> = []
    /**
     * While resuming a dialog: events after a gap wait here until the proxy's replay fills it
     * (RabbitMQ delivers what was published while nobody read before the replay). Undefined once
     * the replay is complete, or when not resuming.
     */
    let waiting: Map<number, { readonly type: string; readonly ariBody: string }> | undefined =
      options.resume === undefined ? undefined : new Map()
    /** The last event the replay covers, from the answer to ATTACH. */
    let replayThrough: number | undefined

    const gone = (method: string, url: string, message: string) =>
      new Gone({ dialogId, method, url, status: 410, message, body: "", ...(end ? { reason: end.reason } : {}) })

    /** Marks the end once: readers complete, new requests fail with Gone at once. */
    const markEnded = (info: DialogEnd) =>
      Effect.suspend(() => {
        if (end !== undefined) return Effect.void
        end = info
        log.close()
        return Deferred.succeed(endSignal, info)
      })

    /** Requests in flight when the dialog ended: their responses may still be on their way. */
    const drained = yield* Deferred.make<void>()
    const forget = (uniqueId: string) => {
      pending.delete(uniqueId)
      if (end !== undefined && pending.size === 0) Deferred.unsafeDone(drained, Exit.void)
    }

    const close = Scope.close(scope, Exit.void)

    /** When the scope closes: the end (if not seen yet), and requests still waiting fail with Gone. */
    const release = Effect.suspend(() => {
      const waiting = [...pending.values()]
      pending.clear()
      return Effect.zipRight(
        markEnded({ dialogId, reason: "closed" }),
        Effect.forEach(waiting, (request) =>
          Deferred.fail(request.answer, gone(request.method, request.url, `dialog ${dialogId} was closed`)), {
          discard: true
        })
      )
    })

    const noteGap = (after: number, missing: number) => {
      gaps.push({ after, missing })
      return Effect.logWarning("events of the dialog were lost on the way").pipe(
        Effect.annotateLogs({ dialog_id: dialogId, after_seq: after, missing })
      )
    }

    /** One event by its `seq`: duplicates dropped, gaps noted, order restored while resuming. */
    const accept = (seq: unknown, type: string, ariBody: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (typeof seq !== "number") return onFreshEvent(type, ariBody) // not numbered (the Go proxy)
        if (seq <= lastSeq || waiting?.has(seq) === true) {
          duplicates++
          return Effect.void
        }
        if (waiting !== undefined && seq > lastSeq + 1) {
          waiting.set(seq, { type, ariBody })
          return Effect.void
        }
        const gap = seq > lastSeq + 1 ? noteGap(lastSeq, seq - lastSeq - 1) : Effect.void
        lastSeq = seq
        return Effect.zipRight(gap, Effect.zipRight(onFreshEvent(type, ariBody), drainWaiting))
      })

    /** Hands on the waiting events that now follow on; once the replay is complete, all of them. */
    const drainWaiting: Effect.Effect<void> = Effect.suspend(() => {
      if (waiting === undefined) return Effect.void
      const next = waiting.get(lastSeq + 1)
      if (next !== undefined) {
        waiting.delete(lastSeq + 1)
        lastSeq++
        return Effect.zipRight(onFreshEvent(next.type, next.ariBody), drainWaiting)
      }
      if (replayThrough === undefined || lastSeq < replayThrough) return Effect.void
      // The replay is complete: what still waits came after a real loss.
      const rest = [...waiting.entries()].sort(([a], [b]) => a - b)
      waiting = undefined
      return Effect.forEach(rest, ([seq, event]) => accept(seq, event.type, event.ariBody), { discard: true })
    })

    /** The answer to a resuming ATTACH: the replay covers `from`..`through` (older ones were gone). */
    const replayCovers = (from: number, through: number) =>
      Effect.suspend(() => {
        const lost = from - 1 - lastSeq
        const gap = lost > 0 ? noteGap(lastSeq, lost) : Effect.void
        if (lost > 0) lastSeq = from - 1
        replayThrough = through
        return Effect.zipRight(gap, drainWaiting)
      })

    const onEvent = (payload: string) =>
      Effect.suspend(() => {
        const wire = parseJson(payload)
        if (wire === undefined || typeof wire.type !== "string" || typeof wire.ari_body !== "string") return Effect.void
        return accept(wire.seq, wire.type, wire.ari_body)
      })

    const onFreshEvent = (type: string, ariBody: string) =>
      Effect.suspend(() => {
        if (type === DIALOG_ENDED_TYPE) {
          const reason = parseJson(ariBody)?.reason
          const info: DialogEnd = {
            dialogId,
            reason: (typeof reason === "string" ? reason : "channels_left") as DialogEndReason
          }
          // The proxy answered every command before DialogEnded, but on another topic: let those answers
          // arrive (each request times out anyway), then close. From another fiber, as closing our own
          // scope from its subscription's fiber would wait for itself.
          const settled = Effect.suspend(() => pending.size === 0 ? Effect.void : Deferred.await(drained))
          return Effect.zipRight(markEnded(info), Effect.forkDaemon(Effect.zipRight(settled, close)))
        }
        log.append(decodeAriEventJson(ariBody))
        return Effect.void
      })

    const onResponse = (payload: string) =>
      Effect.suspend(() => {
        const wire = parseJson(payload)
        if (wire === undefined || typeof wire.unique_id !== "string") return Effect.void
        const request = pending.get(wire.unique_id)
        if (request === undefined) return Effect.void // another client's, or one that timed out
        forget(wire.unique_id)
        const status = typeof wire.status_code === "number" ? wire.status_code : 0
        const body = typeof wire.response_body === "string" ? wire.response_body : ""
        return Deferred.succeed(request.answer, { status, body })
      })

    const request = (method: string, url: string, body = "", requestOptions: { readonly timeoutMs?: number } = {}) =>
      Effect.gen(function*() {
        if (end !== undefined) return yield* gone(method, url, `dialog ${dialogId} has ended (${end.reason})`)
        const uniqueId = options.nextRequestId()
        const answer = yield* Deferred.make<DialogResponse, Gone>()
        pending.set(uniqueId, { answer, method, url })
        const timeoutMs = requestOptions.timeoutMs ?? options.requestTimeoutMs
        // Renewals run on their own schedule: whatever span they started in is not theirs.
        const traceparent = method === RENEW_METHOD ? undefined : yield* currentTraceparent
        const command = encodeCommand({ unique_id: uniqueId, url, method, body, traceparent })
        const response = yield* bus.publish(topics.commands(dialogId), command).pipe(
          Effect.zipRight(Deferred.await(answer)),
          Effect.timeoutFail({
            duration: Duration.millis(timeoutMs),
            onTimeout: () =>
              new RequestTimeout({
                dialogId,
                method,
                url,
                timeoutMs,
                message: `no response to ${method} ${url} within ${timeoutMs} ms`
              })
          }),
          Effect.ensuring(Effect.sync(() => forget(uniqueId)))
        )
        if (response.status >= 200 && response.status < 300) return response
        return yield* errorFromResponse({ dialogId, method, url, status: response.status, body: response.body })
      })

    const send = (operation: OperationDescriptor, params: object) =>
      Effect.suspend(() => {
        const wire = buildRequest(operation, params)
        return Effect.map(request(wire.method, wire.url, wire.body), (response) => parseBody(response.body))
      })
    const ari = makeAriApiEffect<AriRequestError>(send)

    const waitFor = <T extends AriEvent["type"]>(
      type: T,
      matches: (event: AriEventOfType<T>) => boolean = () => true
    ) =>
      Effect.flatMap(
        log.find(0, (event) => isEventOf(type)(event) && matches(event)),
        Option.match({
          onNone: () => Effect.fail(gone("", "", `dialog ${dialogId} ended before ${type}`)),
          onSome: ([event]) => Effect.succeed(event as AriEventOfType<T>)
        })
      )

    const playback = (id: string): PlaybackHandle => ({
      id,
      finished: waitFor("PlaybackFinished", (event) => event.playback.id === id),
      stop: () => ari.playbacks.stop({ playbackId: id })
    })

    const channel = (id: string): ChannelHandle => {
      const isDtmf = (event: DialogEvent) => isEventOf("ChannelDtmfReceived")(event) && event.channel.id === id
      const nextDigit = Effect.suspend(() => log.find(dtmfCursors.get(id) ?? 0, isDtmf)).pipe(
        Effect.map(Option.map(([event, index]) => {
          dtmfCursors.set(id, index + 1)
          return (event as AriEventOfType<"ChannelDtmfReceived">).digit
        })),
        dtmfLock(id).withPermits(1)
      )
      return {
        id,
        answer: () => ari.channels.answer({ channelId: id }),
        hangup: (hangupOptions = {}) => ari.channels.hangup({ ...hangupOptions, channelId: id }),
        play: (playOptions) =>
          Effect.gen(function*() {
            // Our own playbackId: its events are recognised even if they come before the response.
            const playbackId = playOptions.playbackId ?? randomUUID()
            yield* ari.channels.play({ ...playOptions, channelId: id, playbackId })
            return playback(playbackId)
          }),
        sendDtmf: (dtmf, dtmfOptions = {}) => ari.channels.sendDTMF({ ...dtmfOptions, channelId: id, dtmf }),
        get: () => ari.channels.get({ channelId: id }),
        started: Effect.flatMap(
          log.find(0, (event) =>
            (isEventOf("StasisStart")(event) || isEventOf("ChannelDestroyed")(event)) && channelIdOf(event) === id),
          Option.match({
            onNone: () => Effect.fail(gone("", "", `dialog ${dialogId} ended before channel ${id} entered Stasis`)),
            onSome: ([event]) =>
              event.type === "StasisStart" ?
                Effect.succeed(event as StasisStart) :
                Effect.fail(
                  gone("", "", `channel ${id} was destroyed before it entered Stasis`)
                )
          })
        ),
        ended: Effect.asVoid(
          log.find(0, (event) =>
            (isEventOf("StasisEnd")(event) || isEventOf("ChannelDestroyed")(event)) && channelIdOf(event) === id)
        ),
        dtmf: log.stream().pipe(
          Stream.filter(isDtmf),
          Stream.map((event) => (event as AriEventOfType<"ChannelDtmfReceived">).digit)
        ),
        waitForDtmf: (waitOptions = {}) =>
          waitOptions.timeoutMs === undefined ? nextDigit : nextDigit.pipe(
            Effect.timeoutTo({
              duration: Duration.millis(waitOptions.timeoutMs),
              onSuccess: (digit) => digit,
              onTimeout: () => Option.none<string>()
            })
          )
      }
    }

    const bridge = (id: string): BridgeHandle => ({
      id,
      addChannel: (channels, addOptions = {}) =>
        ari.bridges.addChannel({ ...addOptions, bridgeId: id, channel: idsOf(channels) }),
      removeChannel: (channels) => ari.bridges.removeChannel({ bridgeId: id, channel: idsOf(channels) }),
      play: (playOptions) =>
        Effect.gen(function*() {
          const playbackId = playOptions.playbackId ?? randomUUID()
          yield* ari.bridges.play({ ...playOptions, bridgeId: id, playbackId })
          return playback(playbackId)
        }),
      destroy: () => ari.bridges.destroy({ bridgeId: id })
    })

    /**
     * Renews the lease three times per period, each RENEW on its own (the proxy renews on receipt;
     * its answer may wait behind a slow command). A 409 means the lease lapsed and the dialog went
     * to another instance: this one lets go of it.
     */
    const renewLease = (leaseMs: number) => {
      const renewOnce = Effect.suspend(() => request(RENEW_METHOD, "", JSON.stringify({ acked: lastSeq, owner: options.owner }))).pipe(
        Effect.catchAll((error) =>
          error._tag === "Conflict" ?
            Effect.zipRight(
              Effect.logWarning("the dialog's lease lapsed: it was offered to another instance").pipe(
                Effect.annotateLogs({ dialog_id: dialogId })
              ),
              Effect.zipRight(markEnded({ dialogId, reason: "lease_lost" }), Effect.forkDaemon(close))
            ) :
            Effect.void // a timeout or the end: the next renewal (or the end) settles it
        ),
        Effect.forkIn(scope)
      )
      return Effect.repeat(renewOnce, Schedule.spaced(Duration.millis(Math.max(1, Math.floor(leaseMs / 3)))))
    }

    const dialog: AriDialog = {
      id: dialogId,
      serverId,
      application,
      resumed: options.resume,
      trace: options.trace,
      ari,
      events: log.stream(),
      ended: Deferred.await(endSignal),
      delivery: Effect.sync(() => ({ lastSeq, duplicates, gaps: [...gaps] })),
      firstChannel: Effect.map(waitFor("StasisStart"), (start) => channel(start.channel.id)),
      channel,
      channels: {
        originate: (originateOptions) =>
          Effect.gen(function*() {
            const channelId = originateOptions.channelId ?? randomUUID()
            // ARI takes either an application or a dialplan location (they are mutually exclusive).
            const toDialplan = originateOptions.extension !== undefined || originateOptions.context !== undefined ||
              originateOptions.priority !== undefined || originateOptions.label !== undefined
            const app = originateOptions.app ?? (toDialplan ? undefined : application)
            yield* ari.channels.originate({ ...originateOptions, ...(app !== undefined ? { app } : {}), channelId })
            return channel(channelId)
          })
      },
      bridges: {
        create: (createOptions = {}) =>
          Effect.gen(function*() {
            const bridgeId = createOptions.bridgeId ?? randomUUID()
            yield* ari.bridges.create({ type: "mixing", ...createOptions, bridgeId })
            return bridge(bridgeId)
          }),
        get: bridge
      },
      playback,
      waitFor,
      request,
      close
    }

    // Finalizers run in reverse: unsubscribe first, then mark the end and retire our queues.
    yield* Scope.addFinalizer(
      scope,
      Effect.zipRight(
        release,
        Effect.forEach([topics.events(dialogId), topics.responses(dialogId)], bus.retire, { discard: true })
      )
    )
    const attached = yield* Effect.gen(function*() {
      yield* bus.subscribe(topics.events(dialogId), onEvent)
      yield* bus.subscribe(topics.responses(dialogId), onResponse)
      // Subscribed to both: now the proxy may publish the events it held for us (after those a
      // dead owner missed, when resuming). We take a lease and keep renewing it while we live.
      const attach = options.resume === undefined
        ? { lease: true, owner: options.owner }
        : { lease: true, owner: options.owner, resume_after: options.resume.lastSeq }
      const answer = yield* request(ATTACH_METHOD, "", JSON.stringify(attach))
      const attachedAs = parseJson(answer.body)
      const { replay_from: from, replay_through: through } = attachedAs ?? {}
      if (typeof from === "number" && typeof through === "number") yield* replayCovers(from, through)
      else if (waiting !== undefined) yield* replayCovers(lastSeq + 1, lastSeq) // nothing was replayed
      const leaseMs = attachedAs?.lease_ms
      if (typeof leaseMs === "number" && leaseMs > 0) yield* Effect.forkIn(renewLease(leaseMs), scope)
    }).pipe(Scope.extend(scope), Effect.exit)
    if (Exit.isFailure(attached)) {
      yield* Scope.close(scope, Exit.void)
      return yield* Effect.failCause(attached.cause)
    }
    return dialog
  })
