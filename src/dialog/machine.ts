/**
 * The dialog state machine: a pure function (state, input) → (state, effects). It has no services
 * and does no I/O, so it is property-tested on its own (test/dialog/machine.test.ts); the dialog
 * actor (actor.ts) feeds it inputs and performs its effects.
 *
 * What it guarantees:
 * - events are published in the order they arrive, each once; before the application is known to
 *   listen (attach, its first command, or the grace period) they are held, not dropped;
 * - commands run one at a time in arrival order, and every accepted command is answered exactly
 *   once, in arrival order; after the end, commands are answered 410;
 * - the dialog ends when its last channel has left Stasis or been destroyed, after its held events
 *   are out and its commands are answered; DialogEnded is its last publication;
 * - every entity it bound is unbound at the end;
 * - an application that attached with a lease and stops renewing it loses the dialog: its events
 *   are held again and the dialog is offered anew (the actor's timer says when); the instance that
 *   attaches next gets what it missed replayed before anything newer.
 */
import { type DecodedCommand, proxyErrorBody } from "../protocol/codec.js"
import { parseJsonObject } from "../protocol/json.js"
import { ATTACH_METHOD, type DialogEndReason, RENEW_METHOD } from "../protocol/messages.js"
import { channelKey, commandEntities, type EntityKey, responseEntities } from "./entities.js"

export interface MachineOptions {
  /** Hold events until the application attaches (a bus that drops unconsumed messages: NATS, memory). */
  readonly holdEvents: boolean
  /** Held events beyond this many are released at once. */
  readonly maxHeldEvents: number
  /** The lease an application may take when it attaches; undefined: none is granted. */
  readonly leaseMs?: number | undefined
}

/**
 * Who drives the dialog: `none` (nobody took a lease: seed clients, which are never replaced),
 * `held` (an application renews its lease), `lapsed` (it stopped: the dialog is offered anew).
 */
export type LeaseState = "none" | "held" | "lapsed"

export interface HeldEvent {
  readonly type: string
  readonly raw: string
}

/** Held events, newest first: appending is O(1) without copying (a dialog may hold many). */
export interface HeldEvents {
  readonly event: HeldEvent
  readonly previous: HeldEvents | undefined
  readonly count: number
}

const holdOne = (held: HeldEvents | undefined, event: HeldEvent): HeldEvents => ({
  event,
  previous: held,
  count: (held?.count ?? 0) + 1
})

/** The held events, oldest first. */
export const heldInOrder = (held: HeldEvents | undefined): Array<HeldEvent> => {
  const events: Array<HeldEvent> = []
  for (let node = held; node !== undefined; node = node.previous) events.push(node.event)
  return events.reverse()
}

/** A command waiting for its turn: a request for ARI, or an answer the proxy gives in its turn. */
export type QueuedCommand =
  | { readonly _tag: "Request"; readonly command: DecodedCommand }
  | { readonly _tag: "Answer"; readonly uniqueId: string; readonly status: number; readonly body: string }

/** Commands (valid or not) a dialog queues at most; beyond, they are answered 503 at once (a flooding client). */
export const maxQueuedCommands = 1000

export interface InFlight {
  readonly command: DecodedCommand
  /** What this command bound that was not bound before: undone if it fails. */
  readonly newKeys: ReadonlyArray<EntityKey>
  readonly newChannels: ReadonlyArray<string>
  /** Whether channels it creates will be seen to end (see CommandEntities.watched). */
  readonly watched: boolean
}

export interface DialogState {
  readonly dialogId: string
  /** The dialog's application (undefined: any, for tests of the machine alone). */
  readonly application: string | undefined
  readonly options: MachineOptions
  /** AppStart has been published (the commands subscription is live). */
  readonly announced: boolean
  readonly holding: boolean
  readonly held: HeldEvents | undefined
  readonly queue: ReadonlyArray<QueuedCommand>
  readonly inFlight: InFlight | undefined
  /** Channels that keep the dialog alive: in Stasis, or created by its commands and not yet gone. */
  readonly members: ReadonlyArray<string>
  /** The members seen entering Stasis (the others are still being created). */
  readonly entered: ReadonlyArray<string>
  readonly bound: ReadonlyArray<EntityKey>
  /** Why the dialog is ending, once it is. */
  readonly ending: DialogEndReason | undefined
  /** DialogEnded has been published. */
  readonly ended: boolean
  /** Its subscriptions have been released. */
  readonly released: boolean
  readonly lease: LeaseState
  /** Who holds the lease (the instance id its client sent); RENEW from anyone else is refused. */
  readonly owner: string | undefined
}

export type DialogInput =
  /**
   * An ARI event routed to this dialog. `channelId` is the event's `channel.id`, if any; `adopt`
   * are entities the router found to belong to this dialog through this event (the other half of
   * a Local channel, a playback found by its target); `finished` is an entity the event says is
   * gone (PlaybackFinished, BridgeDestroyed, ...), unbound once the event is out.
   */
  | {
    readonly _tag: "Event"
    readonly type: string
    readonly raw: string
    readonly channelId: string | undefined
    readonly adopt?: ReadonlyArray<EntityKey> | undefined
    readonly finished?: EntityKey | undefined
  }
  /** The commands subscription is live: the dialog may be announced. */
  | { readonly _tag: "SubscriptionReady" }
  | { readonly _tag: "Command"; readonly command: DecodedCommand }
  | { readonly _tag: "InvalidCommand"; readonly uniqueId: string; readonly reason: string }
  /** ARI's answer (or the proxy's own error answer) to the command in flight. */
  | { readonly _tag: "CommandDone"; readonly status: number; readonly body: string }
  | { readonly _tag: "GraceExpired" }
  /** Reconciliation after an ARI reconnect: these channels no longer exist. */
  | { readonly _tag: "ChannelsVanished"; readonly channelIds: ReadonlyArray<string> }
  /** End now (shutdown, overload): held events go out, commands finish, then DialogEnded. */
  | { readonly _tag: "Abort"; readonly reason: DialogEndReason }
  /** The lease was not renewed in time (or, once lapsed, nobody took the dialog in time). */
  | { readonly _tag: "LeaseLapsed" }
  | { readonly _tag: "LingerOver" }
  /**
   * The registry would not bind these keys to the dialog (another, live dialog owns them): they are
   * not its, so a later event or answer that names them may try again.
   */
  | { readonly _tag: "BindRefused"; readonly keys: ReadonlyArray<EntityKey> }

export type DialogEffect =
  | { readonly _tag: "Announce" }
  | { readonly _tag: "StartGraceTimer" }
  | { readonly _tag: "PublishEvent"; readonly type: string; readonly raw: string }
  | { readonly _tag: "Respond"; readonly uniqueId: string; readonly status: number; readonly body: string }
  | { readonly _tag: "Send"; readonly command: DecodedCommand }
  | { readonly _tag: "Bind"; readonly keys: ReadonlyArray<EntityKey> }
  | { readonly _tag: "Unbind"; readonly keys: ReadonlyArray<EntityKey> }
  | { readonly _tag: "PublishEnded"; readonly reason: DialogEndReason }
  | { readonly _tag: "StartLingerTimer" }
  | { readonly _tag: "Release" }
  /** An application took the lease: it must renew it within `leaseMs`. */
  | { readonly _tag: "LeaseTaken" }
  /** The application has every event up to `seq`: they need not be kept for a replay. */
  | { readonly _tag: "Acknowledged"; readonly seq: number }
  /**
   * Publishes again what was published after event `after` (a new owner resumes the dialog); the
   * answer to its ATTACH (`uniqueId`, which comes later) says which events the replay covered.
   */
  | { readonly _tag: "Replay"; readonly after: number; readonly uniqueId: string }
  /** Offers the dialog anew on the application's topic, as resumed. */
  | { readonly _tag: "Reoffer" }

export type Transition = readonly [DialogState, ReadonlyArray<DialogEffect>]

/** A new dialog, opened by the StasisStart of `channelId` (or by an application, with no channel). */
const noEntries: ReadonlyArray<never> = []
const noCommands: ReadonlyArray<never> = []

export const initialState = (
  dialogId: string,
  options: MachineOptions,
  channelId?: string,
  application?: string
): DialogState => {
  // Small arrays, not Sets: a dialog holds a few channels and entities, and a Set's hash table
  // costs about 230 bytes per idle dialog. One array for both: a state is never mutated (each
  // change copies), so sharing is safe.
  const channels: ReadonlyArray<string> = channelId === undefined ? noEntries : [channelId]
  return {
    dialogId,
    application,
    options,
    announced: false,
    holding: true,
    held: undefined,
    queue: noCommands,
    inFlight: undefined,
    members: channels,
    entered: channels,
    bound: channelId === undefined ? noEntries : [channelKey(channelId)],
    ending: undefined,
    ended: false,
    released: false,
    lease: "none",
    owner: undefined
  }
}

export const goneBody = (dialogId: string): string => proxyErrorBody(410, "dialog has ended", { dialog_id: dialogId })

const isSuccess = (status: number) => status >= 200 && status < 300

/** `items` without its later repeats (the Sets this replaced ignored them too). */
const withoutRepeats = <A>(items: Array<A>): Array<A> =>
  items.length < 2 ? items : items.filter((item, index) => items.indexOf(item) === index)

/** Effects accumulate in one array per transition; state is replaced, never mutated. */
class Step {
  readonly effects: Array<DialogEffect> = []
  constructor(public state: DialogState) {}

  set(patch: Partial<DialogState>) {
    this.state = { ...this.state, ...patch }
  }

  emit(effect: DialogEffect) {
    this.effects.push(effect)
  }

  bind(keys: ReadonlyArray<EntityKey>): Array<EntityKey> {
    const fresh = withoutRepeats(keys.filter((key) => !this.state.bound.includes(key)))
    if (fresh.length > 0) {
      this.set({ bound: [...this.state.bound, ...fresh] })
      this.emit({ _tag: "Bind", keys: fresh })
    }
    return fresh
  }

  unbind(keys: ReadonlyArray<EntityKey>) {
    const present = keys.filter((key) => this.state.bound.includes(key))
    if (present.length > 0) {
      this.set({ bound: this.state.bound.filter((key) => !present.includes(key)) })
      this.emit({ _tag: "Unbind", keys: present })
    }
  }

  addMembers(channels: ReadonlyArray<string>): Array<string> {
    const fresh = withoutRepeats(channels.filter((id) => !this.state.members.includes(id)))
    if (fresh.length > 0) this.set({ members: [...this.state.members, ...fresh] })
    return fresh
  }

  removeMembers(channels: ReadonlyArray<string>, reason: DialogEndReason) {
    const present = channels.filter((id) => this.state.members.includes(id))
    if (present.length === 0) return
    const members = this.state.members.filter((id) => !present.includes(id))
    this.set({ members, entered: this.state.entered.filter((id) => !present.includes(id)) })
    if (members.length === 0 && this.state.ending === undefined) this.set({ ending: reason })
  }

  /** Lets the held events go, in order; never before AppStart is out. */
  release() {
    if (!this.state.holding || !this.state.announced) return
    for (const event of heldInOrder(this.state.held)) this.emit({ _tag: "PublishEvent", type: event.type, raw: event.raw })
    this.set({ holding: false, held: undefined })
  }

  /** Starts queued commands while none is in flight; rejections are answered in their turn. */
  pump() {
    while (this.state.inFlight === undefined && this.state.queue.length > 0) {
      const next = this.state.queue[0]!
      // slice, not `[next, ...rest]`: rest destructuring walks the iterator, several times slower on a deep queue
      this.set({ queue: this.state.queue.slice(1) })
      if (next._tag === "Answer") {
        this.emit({ _tag: "Respond", uniqueId: next.uniqueId, status: next.status, body: next.body })
        continue
      }
      const command = next.command
      const entities = commandEntities(command.method, command.url, command.body, this.state.application)
      const newKeys = this.bind(entities.keys)
      const newChannels = this.addMembers(entities.newChannels)
      this.set({ inFlight: { command, newKeys, newChannels, watched: entities.watched } })
      this.emit({ _tag: "Send", command })
    }
  }

  /** Ends the dialog once it is ending, its events are out and its commands answered. */
  settle() {
    const s = this.state
    if (s.ended || s.ending === undefined || s.holding || s.inFlight !== undefined || s.queue.length > 0) return
    if (!s.announced) return
    this.unbind([...s.bound])
    this.emit({ _tag: "PublishEnded", reason: s.ending })
    this.emit({ _tag: "StartLingerTimer" })
    this.set({ ended: true })
  }

  done(): Transition {
    return [this.state, this.effects]
  }
}

const ignore = (state: DialogState): Transition => [state, []]

/** What an ATTACH asks: `{"lease":true,"owner":"…","resume_after":N}` (all optional; "" asks nothing). */
const attachRequest = (body: string): {
  readonly lease: boolean
  readonly owner: string | undefined
  readonly resumeAfter: number | undefined
} => {
  const fields = jsonFields(body)
  const resumeAfter = fields?.resume_after
  return {
    lease: fields?.lease === true,
    owner: typeof fields?.owner === "string" ? fields.owner : undefined,
    resumeAfter: typeof resumeAfter === "number" && Number.isInteger(resumeAfter) && resumeAfter >= 0 ? resumeAfter : undefined
  }
}

const jsonFields = parseJsonObject

/**
 * RENEW (`{"acked":N,"owner":"…"}`): the owner is alive and has every event up to N. Answered in
 * its turn; 409 once the lease has lapsed, or to an instance that is not the owner (the dialog was
 * taken over: the old owner must let it go).
 */
const renew = (state: DialogState, command: DecodedCommand): Transition => {
  const step = new Step(state)
  const fields = jsonFields(command.body)
  const acked = fields?.acked
  const owner = typeof fields?.owner === "string" ? fields.owner : undefined
  const held = state.lease === "held" && (owner === undefined || owner === state.owner)
  if (held && typeof acked === "number" && Number.isInteger(acked)) step.emit({ _tag: "Acknowledged", seq: acked })
  const answer: QueuedCommand = held
    ? { _tag: "Answer", uniqueId: command.unique_id, status: 200, body: JSON.stringify({ lease_ms: state.options.leaseMs }) }
    : {
      _tag: "Answer",
      uniqueId: command.unique_id,
      status: 409,
      body: proxyErrorBody(
        409,
        state.lease === "lapsed"
          ? "the lease has lapsed: the dialog was offered anew"
          : state.lease === "held"
          ? "another instance holds the lease: the dialog was taken over"
          : "no lease was taken"
      )
    }
  step.set({ queue: [...state.queue, answer] })
  step.pump()
  step.settle()
  return step.done()
}

const tooManyBody = proxyErrorBody(503, `too many commands waiting (${maxQueuedCommands})`)

/** A command beyond the cap: answered 503 at once, nothing queued. */
const refuseBeyondCap = (state: DialogState, uniqueId: string): Transition =>
  [state, [{ _tag: "Respond", uniqueId, status: 503, body: tooManyBody }]]

export const transition = (state: DialogState, input: DialogInput): Transition => {
  switch (input._tag) {
    case "Event": {
      if (state.ended) return ignore(state)
      // The hot path: a live dialog publishes the event and nothing changes.
      const lifecycle = input.type === "StasisStart" || input.type === "StasisEnd" || input.type === "ChannelDestroyed"
      const binding = (input.adopt !== undefined && input.adopt.length > 0) || input.finished !== undefined
      if (!state.holding && !lifecycle && !binding) {
        return [state, [{ _tag: "PublishEvent", type: input.type, raw: input.raw }]]
      }
      const step = new Step(state)
      if (input.adopt !== undefined) step.bind(input.adopt)
      if (input.channelId !== undefined) {
        if (input.type === "StasisStart") {
          step.addMembers([input.channelId])
          if (!step.state.entered.includes(input.channelId)) {
            step.set({ entered: [...step.state.entered, input.channelId] })
          }
          step.bind([channelKey(input.channelId)])
        } else if (input.type === "StasisEnd" || input.type === "ChannelDestroyed") {
          step.removeMembers([input.channelId], "channels_left")
        }
      }
      if (step.state.holding) {
        const held = holdOne(step.state.held, { type: input.type, raw: input.raw })
        step.set({ held })
        if (held.count >= state.options.maxHeldEvents) step.release()
      } else {
        step.emit({ _tag: "PublishEvent", type: input.type, raw: input.raw })
      }
      if (input.finished !== undefined) step.unbind([input.finished])
      step.settle()
      return step.done()
    }
    case "SubscriptionReady": {
      if (state.announced) return ignore(state)
      const step = new Step(state)
      step.set({ announced: true })
      step.emit({ _tag: "Announce" })
      // Also when the call is already over: its events and DialogEnded wait for the application,
      // which has only now been told the dialog exists.
      const keepHolding = state.options.holdEvents && (state.held?.count ?? 0) < state.options.maxHeldEvents
      if (keepHolding) step.emit({ _tag: "StartGraceTimer" })
      else step.release()
      step.settle()
      return step.done()
    }
    case "Command": {
      // Delivered while the subscription closes: nobody listens for an answer any more.
      if (state.released) return ignore(state)
      if (state.ended) {
        return [state, [{ _tag: "Respond", uniqueId: input.command.unique_id, status: 410, body: goneBody(state.dialogId) }]]
      }
      if (state.queue.length >= maxQueuedCommands) return refuseBeyondCap(state, input.command.unique_id)
      const method = input.command.method.toUpperCase()
      if (method === RENEW_METHOD) return renew(state, input.command)
      const step = new Step(state)
      // A command shows the application listens (the Go client subscribes before it sends any);
      // ATTACH says so explicitly. Either way the held events go out now.
      const heldEvents = state.held?.count ?? 0
      let answer: Record<string, unknown> | undefined
      if (method === ATTACH_METHOD) {
        answer = { dialog_id: state.dialogId, held_events: heldEvents }
        const request = attachRequest(input.command.body)
        if (request.lease && state.options.leaseMs !== undefined) {
          // A new owner: what it missed goes out before the events held since the lease lapsed.
          if (request.resumeAfter !== undefined) step.emit({ _tag: "Replay", after: request.resumeAfter, uniqueId: input.command.unique_id })
          step.set({ lease: "held", owner: request.owner })
          step.emit({ _tag: "LeaseTaken" })
          answer.lease_ms = state.options.leaseMs
        }
      }
      step.release()
      // ATTACH is answered in its turn like any command, so that answers keep arrival order.
      const queued: QueuedCommand = answer !== undefined
        ? { _tag: "Answer", uniqueId: input.command.unique_id, status: 200, body: JSON.stringify(answer) }
        : { _tag: "Request", command: input.command }
      step.set({ queue: [...step.state.queue, queued] })
      step.pump()
      step.settle()
      return step.done()
    }
    case "InvalidCommand": {
      if (state.released) return ignore(state)
      if (state.ended) return [state, [{ _tag: "Respond", uniqueId: input.uniqueId, status: 410, body: goneBody(state.dialogId) }]]
      // Invalid commands wait for their turn too, so they count against the cap like the others.
      if (state.queue.length >= maxQueuedCommands) return refuseBeyondCap(state, input.uniqueId)
      const step = new Step(state)
      const answer: QueuedCommand = { _tag: "Answer", uniqueId: input.uniqueId, status: 400, body: proxyErrorBody(400, input.reason) }
      step.set({ queue: [...state.queue, answer] })
      step.pump()
      step.settle()
      return step.done()
    }
    case "CommandDone": {
      const inFlight = state.inFlight
      if (inFlight === undefined) return ignore(state)
      const step = new Step(state)
      step.set({ inFlight: undefined })
      step.emit({ _tag: "Respond", uniqueId: inFlight.command.unique_id, status: input.status, body: input.body })
      if (isSuccess(input.status)) {
        const created = responseEntities(inFlight.command.method, input.status, input.body)
        step.bind(created.keys)
        if (inFlight.watched && step.state.ending === undefined) step.addMembers(created.newChannels)
      } else {
        // What a failed command would have created does not exist: let go of it.
        step.unbind(inFlight.newKeys)
        step.removeMembers(inFlight.newChannels, "channels_left")
      }
      step.pump()
      step.settle()
      return step.done()
    }
    case "GraceExpired": {
      if (!state.holding) return ignore(state)
      const step = new Step(state)
      step.release()
      step.settle()
      return step.done()
    }
    case "ChannelsVanished": {
      if (state.ended) return ignore(state)
      const step = new Step(state)
      step.removeMembers(input.channelIds, "channels_vanished")
      step.settle()
      return step.done()
    }
    case "Abort": {
      if (state.ended) return ignore(state)
      const step = new Step(state)
      if (state.ending === undefined) step.set({ ending: input.reason })
      step.release()
      step.settle()
      return step.done()
    }
    case "LeaseLapsed": {
      if (state.ended || state.lease === "none") return ignore(state)
      const step = new Step(state)
      if (state.ending !== undefined) {
        // Over while nobody drove it: let it end (what is held goes out), no new offer.
        step.set({ lease: "lapsed" })
        step.release()
        step.settle()
        return step.done()
      }
      // Held until the next owner attaches, so that its replay comes first.
      step.set({ lease: "lapsed", holding: true })
      step.emit({ _tag: "Reoffer" })
      return step.done()
    }
    case "BindRefused": {
      const refused = state.bound.filter((key) => input.keys.includes(key))
      if (refused.length === 0) return ignore(state)
      return [{ ...state, bound: state.bound.filter((key) => !input.keys.includes(key)) }, []]
    }
    case "LingerOver": {
      if (!state.ended || state.released) return ignore(state)
      return [{ ...state, released: true }, [{ _tag: "Release" }]]
    }
  }
}
