/**
 * The dialog actor: an actor of the proxy's actor system (src/actor) whose behaviour is the pure
 * state machine (machine.ts).
 *
 * An input (an event from the router, a command from the bus, an ARI answer, a timer) is applied
 * to the machine the moment it arrives: JavaScript runs one input at a time, so a dialog sees its
 * inputs in one total order, and routing always consults its current state (an entity bound by
 * one frame is bound for the next). What the machine decides to do goes into the actor's bounded
 * mailbox and is carried out in that order: publishes, ARI requests (supervised tasks: a slow
 * request never holds up the dialog's events), timers and the release. While the mailbox is
 * empty, whatever can be done without waiting (a publish the bus takes at once) is done right
 * away, without a fiber: the hot path.
 *
 * Isolation: a dialog whose mailbox is full (its publishes cannot keep up: a blocked bus, a
 * flooding channel) is ended as `overloaded` on its own; its unpublished events are dropped and
 * counted, its commands are still answered. Nothing stops reading ARI, so every other dialog goes on.
 * Supervision: a failure inside a dialog is logged with its ids, its command in flight is answered
 * 500, and the dialog ends as `failed`.
 */
import { Cause, Effect, LogLevel } from "effect"
import type { Actor, ActorSystem, Behaviour } from "../actor/ActorSystem.js"
import type { BusShape, Subscription } from "../bus/Bus.js"
import {
  decodeCommand,
  encodeAppStart,
  encodeCommandResponse,
  encodeResumedAppStart,
  encodeWireEvent,
  proxyErrorBody
} from "../protocol/codec.js"
import { DialogGrant } from "../protocol/messages.js"
import type { DecodedCommand } from "../protocol/codec.js"
import { DIALOG_ENDED_TYPE, type DialogEndReason } from "../protocol/messages.js"
import type { Topics } from "../protocol/topics.js"
import { CommandClock, methodLabel, type ProxyMetrics } from "../observability/metrics.js"
import type { DialogTrace, DialogTracing } from "../observability/tracing.js"
import { retrySchedule } from "../resilience/retry.js"
import {
  type DialogEffect,
  type DialogInput,
  type DialogState,
  initialState,
  type MachineOptions,
  transition
} from "./machine.js"
import type { EntityKey } from "./entities.js"
import type { Owner, Registry } from "./registry.js"

export interface CommandReply {
  readonly status: number
  readonly body: string
}

/** Counters the dialogs keep (rendered as metrics by the proxy). */
export interface DialogCounters {
  eventsPublished: number
  commandsReceived: number
  commandsAnswered: number
  commandsRejected: number
  nonJsonCommands: number
  publishFailures: number
  /** Dialogs offered anew because their owner's lease lapsed. */
  dialogsReoffered: number
  /** Publications sent again to a new owner. */
  eventsReplayed: number
  eventsDropped: number
}

export const makeDialogCounters = (): DialogCounters => ({
  eventsPublished: 0,
  commandsReceived: 0,
  commandsAnswered: 0,
  commandsRejected: 0,
  nonJsonCommands: 0,
  publishFailures: 0,
  dialogsReoffered: 0,
  eventsReplayed: 0,
  eventsDropped: 0
})

/**
 * How a dialog came to be: a channel entered Stasis (announced with AppStart on the application
 * topic), or an application asked for it (answered on its reply topic, no AppStart).
 */
export type DialogOrigin =
  | { readonly _tag: "Stasis" }
  | {
    readonly _tag: "Requested"
    readonly requestId: string
    readonly replyTo: string
    /** The asking application's span, if its request carried one. */
    readonly traceparent?: string | undefined
  }

export const stasisOrigin: DialogOrigin = { _tag: "Stasis" }

/** What every dialog shares: the bus, ARI, and the actor system the dialogs live in. */
export interface DialogContext {
  readonly serverId: string
  /** `serverId` as a Go-escaped JSON string, made once for every dialog's events. */
  readonly serverIdJson: string
  readonly topics: Topics
  readonly bus: BusShape
  /**
   * Whether the bus is connected now: while it is not, no owner can renew its lease, so none lapses
   * (a broker restart must not hand every call to another instance). Default: always.
   */
  readonly busConnected?: (() => boolean) | undefined
  /** Supervises every dialog; closing its scope releases every dialog's subscription. */
  readonly system: ActorSystem
  /** Effects a dialog's mailbox holds at most (`dialog_mailbox_size`); beyond, it is ended as overloaded. */
  readonly mailboxSize: number
  readonly machine: MachineOptions
  readonly attachGraceMs: number
  readonly endedLingerMs: number
  /** True while the proxy drains: an ended dialog is released at once, without its linger. */
  readonly releaseAtOnce: () => boolean
  /** A requested dialog that still has no channel after this long ends ("unused"). */
  readonly requestedDialogIdleMs: number
  /**
   * Sends a command's ARI request; `onReply` gets its one reply, later (`trouble`: a debug line, the
   * proxy wrote the reply because ARI could not be asked). No fiber per command: every command
   * takes this path.
   */
  readonly execute: (command: DecodedCommand, onReply: (reply: CommandReply, trouble: string | undefined) => void) => void
  readonly counters: DialogCounters
  /** The proxy's metrics (taken from its context once, when the proxy is built). */
  readonly metrics: ProxyMetrics
  /**
   * Publications a leased dialog keeps for a new owner's replay (`dialog_replay_size`; those the
   * owner acknowledged are let go). Default 1,000.
   */
  readonly replayLimit?: number | undefined
  /** The dialog has released everything; the proxy forgets it. */
  readonly onReleased: (dialog: Dialog) => void
  /** Set while the proxy traces: each dialog then has its spans (observability/tracing.ts). */
  readonly tracing?: DialogTracing | undefined
}

/** What a leased dialog keeps for a new owner. */
interface LeaseKeeping {
  /** When the lease lapses, on the system's clock (ms). */
  deadline: number
  /** The last `seq` the owner acknowledged (RENEW), sent to the next owner with the new offer. */
  acked: number
  /** What was published since the owner's last acknowledgement, for a new owner's replay. */
  readonly replay: Array<Publication>
  /** The replay done for an ATTACH not answered yet: its answer says which events it covered. */
  replayed: { readonly uniqueId: string; readonly from: number; readonly through: number } | undefined
}

/** A publication kept for a replay: an event (with its `seq`) or an answer. */
interface Publication {
  readonly topic: string
  readonly payload: string
  readonly seq: number | undefined
}

/** The Asterisk-style timestamp of ari_body (`2026-11-30T10:28:16.331+0000`). */
const ariTimestamp = (date = new Date()) => date.toISOString().replace("Z", "+0000")

const subscribeRetry = retrySchedule({ firstDelayMs: 100, maxDelayMs: 5_000 })

/**
 * The handler a dialog's commands subscription keeps for its whole life: made outside any scope
 * that holds more (a closure keeps its whole scope alive: 200 bytes per idle dialog).
 */
const commandHandler = (dialog: Dialog) => (payload: string) => dialog.receiveCommand(payload)

export class Dialog implements Owner, Behaviour<DialogEffect> {
  state: DialogState
  private readonly actor: Actor<DialogEffect>
  private subscription: Subscription | undefined
  /** Made with the first command: most dialogs of a burst are idle. */
  private clock: CommandClock | undefined
  /** An ARI request of this dialog is running (its answer has not been fed to the machine yet). */
  private sending = false
  /** The supervision policy is running: a failure now stops the dialog outright. */
  private failing = false
  /**
   * The `seq` of the last event published on the events topic (or dropped: a dropped event keeps
   * its number, so that the application sees the gap).
   */
  private seq = 0
  /** Made when an application first takes a lease: seed clients' dialogs never pay for it. */
  private lease: LeaseKeeping | undefined
  /** The events topic, named once: every event is published there. */
  private eventsTopic: string | undefined
  /** This dialog's spans, only while the proxy traces: otherwise each hook is one undefined check. */
  private readonly trace: DialogTrace | undefined

  constructor(
    private readonly context: DialogContext,
    /** The entity index of this dialog's application. */
    private readonly registry: Registry<Dialog>,
    readonly id: string,
    readonly application: string,
    /** The channel whose StasisStart opened the dialog. */
    readonly channelId: string | undefined,
    readonly origin: DialogOrigin = stasisOrigin
  ) {
    this.state = initialState(id, context.machine, channelId, application)
    this.trace = context.tracing?.open({
      id,
      application,
      channelId,
      responsesTopic: context.topics.responses(id),
      parent: origin._tag === "Requested" ? origin.traceparent : undefined
    })
    this.actor = context.system.spawn<DialogEffect>({ id, capacity: context.mailboxSize }, this)
  }

  get closing(): boolean {
    return this.state.ending !== undefined || this.state.ended
  }

  /** Pending effects in the mailbox. */
  get depth(): number {
    return this.actor.depth
  }

  /** Feeds one input to the state machine and hands what it decided to the mailbox, in order. */
  input(input: DialogInput): void {
    try {
      this.apply(input)
    } catch (error) {
      this.fail(Cause.die(error))
    }
  }

  private apply(input: DialogInput): void {
    const [next, effects] = transition(this.state, input)
    this.state = next
    let refused: Array<EntityKey> | undefined
    for (const effect of effects) {
      switch (effect._tag) {
        case "Bind":
          for (const key of effect.keys) if (!this.registry.claim(key, this)) (refused ??= []).push(key)
          break
        case "Unbind":
          for (const key of effect.keys) this.registry.release(key, this)
          break
        case "PublishEvent":
          if (!this.actor.offer(effect)) this.overflow()
          break
        default:
          // Answers, the end and the release are never dropped (commands are capped by the machine).
          this.actor.offerAlways(effect)
      }
    }
    // Else the machine would take them for its own, and never claim them again once they are free.
    if (refused !== undefined) this.state = transition(this.state, { _tag: "BindRefused", keys: refused })[0]
  }

  /** Opens the commands subscription, then lets the machine announce the dialog. */
  start(): void {
    this.actor.fork(this.subscribe())
  }

  /**
   * Ends the dialog now (shutdown, overload): held events go out, commands finish, then
   * DialogEnded. On overload, events not yet published are dropped and counted.
   */
  abort(reason: DialogEndReason): void {
    if (reason === "overloaded") {
      const dropped = this.actor.drop((effect) => effect._tag === "PublishEvent")
      this.context.counters.eventsDropped += dropped
      this.seq += dropped
    }
    this.input({ _tag: "Abort", reason })
  }

  /** The mailbox is full: this dialog cannot keep up; it alone pays for it. */
  private overflow(): void {
    this.context.counters.eventsDropped++
    // Its number is used up (the gap shows the loss; if the dialog was already ending and events
    // are still queued, the gap comes before them rather than after: the count is what matters).
    this.seq++
    if (this.closing) return
    const depth = this.actor.depth
    this.context.system.runFork(
      Effect.logError("dialog mailbox full; ending the dialog as overloaded").pipe(
        Effect.annotateLogs({ ...this.logAnnotations(), depth })
      )
    )
    this.abort("overloaded")
  }

  // ---------------------------------------------------------------------------------------------
  // Behaviour: how the mailbox's effects are carried out

  /** The hot path: carries out an effect synchronously if it can be; says whether it was. */
  private events(): string {
    return this.eventsTopic ??= this.context.topics.events(this.id)
  }

  receiveNow(effect: DialogEffect): boolean {
    const { bus, topics } = this.context
    switch (effect._tag) {
      case "PublishEvent": {
        const traceparent = this.trace?.traceparent
        const wire = encodeWireEvent(this.context.serverIdJson, effect.type, effect.raw, this.seq + 1, traceparent)
        if (!bus.tryPublish(this.events(), wire)) return false
        this.seq++
        if (this.lease !== undefined) this.keep(this.events(), wire, this.seq)
        this.context.counters.eventsPublished++
        this.context.metrics.eventsPublished.inc(effect.type)
        return true
      }
      case "Respond": {
        this.trace?.publishing(effect.uniqueId)
        const payload = encodeCommandResponse({
          unique_id: effect.uniqueId,
          status_code: effect.status,
          response_body: this.answerBody(effect.uniqueId, effect.body)
        })
        if (!bus.tryPublish(topics.responses(this.id), payload)) return false
        this.answered(effect.uniqueId)
        if (this.lease !== undefined) this.keep(topics.responses(this.id), payload, undefined)
        this.context.counters.commandsAnswered++
        this.commandClock().answered(effect.uniqueId, effect.status)
        this.trace?.answered(effect.status)
        return true
      }
      case "Announce":
        // A new call's AppStart, without a fiber of its own (new dialogs come in bursts).
        return this.origin._tag === "Stasis" && bus.tryPublish(topics.app(this.application), this.appStart())
      case "PublishEnded":
        if (!bus.tryPublish(this.events(), this.dialogEnded(effect.reason, this.seq + 1))) return false
        this.seq++
        this.countEnded(effect.reason)
        this.trace?.ended(effect.reason)
        if (this.context.system.logs(LogLevel.Info)) this.context.system.runFork(this.logEnded(effect.reason))
        return true
      case "Send":
        this.send(effect.command)
        return true
      case "StartGraceTimer":
        this.context.system.timers.schedule(this.context.attachGraceMs, () => this.input({ _tag: "GraceExpired" }))
        return true
      case "StartLingerTimer":
        if (this.context.releaseAtOnce()) this.input({ _tag: "LingerOver" })
        else this.context.system.timers.schedule(this.context.endedLingerMs, () => this.input({ _tag: "LingerOver" }))
        return true
      case "Release":
        this.actor.stop() // onStop releases the subscription and the topics
        return true
      case "LeaseTaken":
        this.renewLease()
        return true
      case "Acknowledged":
        this.acknowledge(effect.seq)
        return true
      default:
        return false
    }
  }

  /** Carries out an effect: at once if it can be, or as an effect that the actor waits for. */
  receive(effect: DialogEffect): Effect.Effect<void> | undefined {
    if (this.receiveNow(effect)) return undefined
    const { topics } = this.context
    switch (effect._tag) {
      case "PublishEvent":
        this.context.counters.eventsPublished++
        this.context.metrics.eventsPublished.inc(effect.type)
        return this.publishKept(
          this.events(),
          encodeWireEvent(this.context.serverIdJson, effect.type, effect.raw, ++this.seq, this.trace?.traceparent),
          this.seq
        )
      case "Respond": {
        this.context.counters.commandsAnswered++
        this.commandClock().answered(effect.uniqueId, effect.status)
        const payload = encodeCommandResponse({
          unique_id: effect.uniqueId,
          status_code: effect.status,
          response_body: this.answerBody(effect.uniqueId, effect.body)
        })
        this.answered(effect.uniqueId)
        const published = this.publishKept(topics.responses(this.id), payload, undefined)
        const trace = this.trace
        if (trace === undefined) return published
        return Effect.ensuring(published, Effect.sync(() => trace.answered(effect.status)))
      }
      case "Announce":
        return this.origin._tag === "Stasis"
          ? this.publish(topics.app(this.application), this.appStart())
          : this.grant(this.origin)
      case "Replay":
        return this.replayAfter(effect.after, effect.uniqueId)
      case "Reoffer":
        return this.reoffer()
      case "PublishEnded":
        this.countEnded(effect.reason)
        return Effect.zipRight(
          this.publish(this.events(), this.dialogEnded(effect.reason, ++this.seq)),
          Effect.zipRight(Effect.sync(() => this.trace?.ended(effect.reason)), this.logEnded(effect.reason))
        )
      default:
        return undefined // done by receiveNow
    }
  }

  /**
   * Supervision policy: the command in flight is answered, the dialog ends as `failed` (its
   * DialogEnded says so), and is released after its linger.
   */
  onFailure(_cause: Cause.Cause<unknown>): void {
    if (this.failing) {
      this.actor.stop() // the policy itself failed: release what can be released
      return
    }
    this.failing = true
    try {
      if (this.state.inFlight !== undefined && !this.sending) {
        this.input({
          _tag: "CommandDone",
          status: 500,
          body: proxyErrorBody(500, "the proxy failed while executing the command")
        })
      }
      if (!this.state.ended) this.input({ _tag: "Abort", reason: "failed" })
    } finally {
      this.failing = false
    }
  }

  /** Releases the commands subscription and the dialog's topics; the proxy forgets the dialog. */
  onStop(): Effect.Effect<void> {
    const { bus, topics } = this.context
    return Effect.zipRight(
      Effect.all([
        this.subscription?.close ?? Effect.void,
        bus.retire(this.events()),
        bus.retire(topics.commands(this.id)),
        bus.retire(topics.responses(this.id))
      ], { discard: true }),
      Effect.sync(() => {
        this.trace?.stopped()
        this.context.onReleased(this)
      })
    )
  }

  private dialogEnded(reason: DialogEndReason, seq: number): string {
    const body = JSON.stringify({
      type: DIALOG_ENDED_TYPE,
      dialog_id: this.id,
      reason,
      timestamp: ariTimestamp(),
      application: this.application
    })
    return encodeWireEvent(this.context.serverIdJson, DIALOG_ENDED_TYPE, body, seq, this.trace?.traceparent)
  }

  private countEnded(reason: DialogEndReason): void {
    this.context.metrics.eventsPublished.inc(DIALOG_ENDED_TYPE)
    this.context.metrics.dialogsEnded.inc(reason)
  }

  private logEnded(reason: DialogEndReason): Effect.Effect<void> {
    return this.log(Effect.logInfo("dialog ended"), LogLevel.Info, { reason })
  }

  // ---------------------------------------------------------------------------------------------

  private subscribe(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const subscription = yield* this.listenForCommands()
      if (this.actor.stopped) return yield* subscription.close
      this.subscription = subscription
      this.input({ _tag: "SubscriptionReady" })
      // AppStart went out just now, or waits in the mailbox behind nothing that could fail.
      if (this.origin._tag === "Stasis") yield* this.log(Effect.logInfo("dialog opened"), LogLevel.Info)
    })
  }

  private listenForCommands(): Effect.Effect<Subscription> {
    const listen = this.context.bus.listen(this.context.topics.commands(this.id), commandHandler(this))
    // The retry is built only when needed: a new call must not pay for it.
    return Effect.catchAll(listen, (error) =>
      Effect.zipRight(
        this.log(Effect.logWarning("commands subscription failed, retrying", error.message), LogLevel.Warning),
        listen.pipe(
          Effect.retry(subscribeRetry),
          Effect.orDie // the schedule retries forever: the bus driver reconnects on its own
        )
      ))
  }

  /** A message from `commands_<dialog_id>`. */
  receiveCommand(payload: string): void {
    // Any command renews the lease (the owner is alive); RENEW exists for owners with nothing to ask.
    if (this.state.lease === "held") this.renewLease()
    const decoded = decodeCommand(payload)
    switch (decoded._tag) {
      case "NotJson":
        // The Go client's `DUMMY`: it asks nothing, so it gets nothing (no ARI request, no answer).
        this.context.counters.nonJsonCommands++
        return
      case "Invalid":
        this.context.counters.commandsRejected++
        this.commandClock().received(decoded.unique_id, "INVALID")
        this.trace?.received(decoded, this.commandsAhead())
        this.input({ _tag: "InvalidCommand", uniqueId: decoded.unique_id, reason: decoded.reason })
        return
      case "Command":
        this.context.counters.commandsReceived++
        this.commandClock().received(decoded.command.unique_id, methodLabel(decoded.command.method))
        this.trace?.received(decoded, this.commandsAhead())
        this.input({ _tag: "Command", command: decoded.command })
    }
  }

  /** Commands of this dialog waiting or running before one that arrives now. */
  private commandsAhead(): number {
    return this.state.queue.length + (this.state.inFlight === undefined ? 0 : 1)
  }

  private commandClock(): CommandClock {
    return this.clock ??= new CommandClock(this.context.metrics)
  }

  private appStart(): string {
    return encodeAppStart({
      application: this.application,
      dialog_id: this.id,
      server_id: this.context.serverId,
      traceparent: this.trace?.traceparent
    })
  }

  /** Answers the application that asked for this dialog, and ends it if it stays without a channel. */
  private grant(origin: Extract<DialogOrigin, { _tag: "Requested" }>): Effect.Effect<void> {
    const { timers } = this.context.system
    const checkUse = () => {
      const s = this.state
      if (s.members.length > 0 || s.ending !== undefined || s.ended) return
      // A command at work may still bring a channel: look again later.
      if (s.inFlight !== undefined || s.queue.length > 0) {
        timers.schedule(this.context.requestedDialogIdleMs, checkUse)
      } else {
        this.input({ _tag: "Abort", reason: "unused" })
      }
    }
    timers.schedule(this.context.requestedDialogIdleMs, checkUse)
    const reply = new DialogGrant({
      request_id: origin.requestId,
      status_code: 201,
      dialog_id: this.id,
      server_id: this.context.serverId,
      application: this.application,
      traceparent: this.trace?.traceparent
    })
    return Effect.zipRight(
      this.publish(origin.replyTo, JSON.stringify(reply)),
      this.log(Effect.logInfo("requested dialog granted"), LogLevel.Info)
    )
  }

  private publish(topic: string, payload: string): Effect.Effect<void> {
    return Effect.catchAll(this.context.bus.publish(topic, payload), (error) => {
      this.context.counters.publishFailures++
      return this.log(Effect.logError("publish failed", topic, error.message), LogLevel.Error)
    })
  }

  /** The command's ARI request; its answer (or the proxy's own error answer) goes to the machine. */
  private send(command: DecodedCommand): void {
    this.sending = true
    this.trace?.sending(command)
    try {
      this.context.execute(command, (reply, trouble) => {
        if (this.actor.stopped) return // released meanwhile: nobody waits for the answer
        this.sending = false
        this.trace?.replied(reply.status, trouble !== undefined)
        if (trouble !== undefined && this.context.system.logs(LogLevel.Debug)) {
          this.context.system.runFork(this.log(Effect.logDebug(trouble), LogLevel.Debug))
        }
        this.input({ _tag: "CommandDone", status: reply.status, body: reply.body })
      })
    } catch (error) {
      this.sending = false
      this.fail(Cause.die(error))
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Leases: an owner that stops renewing is replaced

  private renewLease(): void {
    const { timers } = this.context.system
    const deadline = timers.now() + this.leaseMs()
    if (this.lease !== undefined) {
      this.lease.deadline = deadline
      return
    }
    this.lease = { deadline, acked: 0, replay: [], replayed: undefined }
    timers.schedule(this.leaseCheckMs(), () => this.checkLease())
  }

  /** Every quarter lease: lapsed (or, once lapsed, still nobody's after a whole lease) → the machine. */
  private checkLease(): void {
    if (this.actor.stopped || this.state.ended) return
    const { timers } = this.context.system
    const lease = this.lease!
    if (this.context.busConnected !== undefined && !this.context.busConnected()) {
      // Nobody could renew meanwhile: once the bus is back, the owner has most of a lease to renew.
      lease.deadline = timers.now() + this.leaseMs()
    } else if (timers.now() >= lease.deadline) {
      lease.deadline = timers.now() + this.leaseMs() // the next offer, if nobody takes this one
      this.input({ _tag: "LeaseLapsed" })
    }
    if (!this.state.ended) timers.schedule(this.leaseCheckMs(), () => this.checkLease())
  }

  private leaseMs(): number {
    return this.context.machine.leaseMs ?? 0
  }

  private leaseCheckMs(): number {
    return Math.max(1, Math.floor(this.leaseMs() / 4))
  }

  private keep(topic: string, payload: string, seq: number | undefined): void {
    const replay = this.lease!.replay
    replay.push({ topic, payload, seq })
    if (replay.length > (this.context.replayLimit ?? 1000)) replay.shift() // the oldest is lost to a replay
  }

  /** The owner has every event up to `seq`: what was published before it need not be replayed. */
  private acknowledge(seq: number): void {
    const lease = this.lease
    if (lease === undefined || seq <= lease.acked) return
    lease.acked = Math.min(seq, this.seq)
    const replay = lease.replay
    const after = replay.findIndex((publication) => publication.seq !== undefined && publication.seq > lease.acked)
    replay.splice(0, after === -1 ? replay.length : after)
  }

  /**
   * Publishes again, in order, what went out after event `after` (events and answers), and notes
   * the events it covered for the answer to the ATTACH that asked (`uniqueId`).
   */
  private replayAfter(after: number, uniqueId: string): Effect.Effect<void> | undefined {
    const lease = this.lease
    if (lease === undefined) return undefined
    const replay = lease.replay
    const start = replay.findIndex((publication) => publication.seq !== undefined && publication.seq > after)
    const again = start === -1 ? [] : replay.slice(start)
    lease.replayed = { uniqueId, from: again[0]?.seq ?? this.seq + 1, through: this.seq }
    if (again.length === 0) return undefined
    this.context.counters.eventsReplayed += again.length
    return Effect.forEach(again, (publication) => this.publish(publication.topic, publication.payload), { discard: true })
  }

  /**
   * The body of an answer; the ATTACH of a resumed dialog also says which events its replay covered
   * (`replay_from`..`replay_through`: from the first event the proxy still had), since they may
   * reach the application after later ones (RabbitMQ keeps what was published while nobody read).
   */
  private answerBody(uniqueId: string, body: string): string {
    const replayed = this.lease?.replayed
    if (replayed === undefined || replayed.uniqueId !== uniqueId) return body
    return body.slice(0, -1) + ",\"replay_from\":" + replayed.from + ",\"replay_through\":" + replayed.through + "}"
  }

  /** An answer went out: the replay's note was for it, if its id matches. */
  private answered(uniqueId: string): void {
    if (this.lease?.replayed?.uniqueId === uniqueId) this.lease.replayed = undefined
  }

  /**
   * Offers the dialog anew on the application's topic: an AppStart marked resumed, with the last
   * event its owner acknowledged and what the dialog holds now (asked of ARI).
   */
  private reoffer(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      this.context.counters.dialogsReoffered++
      const get = (url: string) =>
        Effect.async<unknown>((resume) =>
          this.context.execute({ unique_id: "", method: "GET", url, body: "" }, (reply) => {
            let parsed: unknown
            try {
              parsed = reply.status === 200 ? JSON.parse(reply.body) : undefined
            } catch {
              parsed = undefined
            }
            resume(Effect.succeed(parsed))
          })
        )
      const ids = (prefix: string) => this.state.bound.filter((key) => key.startsWith(prefix)).map((key) => key.slice(2))
      const fetch = (resource: string, list: ReadonlyArray<string>) =>
        Effect.map(
          Effect.forEach(list, (id) => get(`/${resource}/${encodeURIComponent(id)}`), { concurrency: 4 }),
          (found) => found.filter((entity) => entity !== undefined)
        )
      const snapshot = {
        channels: yield* fetch("channels", this.state.members),
        bridges: yield* fetch("bridges", ids("b:")),
        playbacks: yield* fetch("playbacks", ids("p:"))
      }
      yield* this.log(Effect.logWarning("dialog's owner stopped renewing its lease: offered anew"), LogLevel.Warning, {
        last_seq: String(this.lease?.acked ?? 0)
      })
      yield* this.publish(
        this.context.topics.app(this.application),
        encodeResumedAppStart({
          application: this.application,
          dialog_id: this.id,
          server_id: this.context.serverId,
          traceparent: this.trace?.traceparent,
          last_seq: this.lease?.acked ?? 0,
          state: snapshot
        })
      )
    })
  }

  private publishKept(topic: string, payload: string, seq: number | undefined): Effect.Effect<void> {
    if (this.lease !== undefined) this.keep(topic, payload, seq)
    return this.publish(topic, payload)
  }

  private fail(cause: Cause.Cause<unknown>): void {
    this.context.system.runFork(this.log(Effect.logError("dialog failed", cause), LogLevel.Error))
    this.onFailure(cause)
  }

  logAnnotations(): Record<string, string> {
    return { dialog_id: this.id, channel_id: this.channelId ?? "", application: this.application }
  }

  /**
   * `effect`, whose log lines (at `level` and above) carry the dialog's ids. Annotating costs a
   * copy of the fiber's log annotations, so it is done per line, and only when such a line would
   * be written: a filtered line costs nothing.
   */
  private log<A>(effect: Effect.Effect<A>, level: LogLevel.LogLevel, extra?: Record<string, string>): Effect.Effect<A> {
    if (!this.context.system.logs(level)) return effect
    return Effect.annotateLogs(effect, extra === undefined ? this.logAnnotations() : { ...this.logAnnotations(), ...extra })
  }
}
