/**
 * The dialog actor. Its state machine (machine.ts) runs the moment an input arrives: JavaScript
 * runs one input at a time, so a dialog sees its inputs in one total order and routing always
 * consults its current state. What the machine decides to do goes into the dialog's mailbox, a
 * FIFO that the dialog's fiber works off in order: publishes, ARI requests (forked: a slow
 * request never holds up the dialog's events), timers and release.
 *
 * The fiber exists only while the mailbox has work, so an idle dialog costs a few objects and no
 * fiber (10,000 idle dialogs: see docs/benchmarks.md).
 */
import { Cause, Effect, Exit, Schedule, Scope } from "effect"
import type { BusShape } from "../bus/Bus.js"
import {
  decodeCommand,
  encodeAppStart,
  encodeCommandResponse,
  encodeWireEvent,
  goJsonString,
  proxyErrorBody
} from "../protocol/codec.js"
import { DialogGrant } from "../protocol/messages.js"
import type { DecodedCommand } from "../protocol/codec.js"
import { DIALOG_ENDED_TYPE, type DialogEndReason } from "../protocol/messages.js"
import type { Topics } from "../protocol/topics.js"
import { CommandClock, methodLabel, proxyMetrics } from "../observability/metrics.js"
import {
  type DialogEffect,
  type DialogInput,
  type DialogState,
  initialState,
  type MachineOptions,
  transition
} from "./machine.js"
import type { Owner, Registry } from "./registry.js"
import type { TimerQueue } from "./timers.js"

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
  eventsDropped: number
}

export const makeDialogCounters = (): DialogCounters => ({
  eventsPublished: 0,
  commandsReceived: 0,
  commandsAnswered: 0,
  commandsRejected: 0,
  nonJsonCommands: 0,
  publishFailures: 0,
  eventsDropped: 0
})

/**
 * How a dialog came to be: a channel entered Stasis (announced with AppStart on the application
 * topic), or an application asked for it (answered on its reply topic, no AppStart).
 */
export type DialogOrigin =
  | { readonly _tag: "Stasis" }
  | { readonly _tag: "Requested"; readonly requestId: string; readonly replyTo: string }

export const stasisOrigin: DialogOrigin = { _tag: "Stasis" }

/** What every dialog shares: the bus, ARI, timers, and a way to fork fibers. */
export interface DialogContext {
  readonly serverId: string
  readonly topics: Topics
  readonly bus: BusShape
  readonly timers: TimerQueue
  readonly machine: MachineOptions
  readonly attachGraceMs: number
  readonly endedLingerMs: number
  /** A requested dialog that still has no channel after this long ends ("unused"). */
  readonly requestedDialogIdleMs: number
  readonly execute: (command: DecodedCommand) => Effect.Effect<CommandReply>
  /** Forks a fiber that the proxy supervises (awaited at shutdown, interrupted on close). */
  readonly fork: (effect: Effect.Effect<void>) => void
  readonly counters: DialogCounters
  /** The dialog has released everything; the proxy forgets it. */
  readonly onReleased: (dialog: Dialog) => void
}

/** The Asterisk-style timestamp of ari_body (`2026-11-30T10:28:16.331+0000`). */
const ariTimestamp = (date = new Date()) => date.toISOString().replace("Z", "+0000")

const subscribeRetry = Schedule.exponential("100 millis").pipe(
  Schedule.jittered,
  Schedule.union(Schedule.spaced("5 seconds"))
)

export class Dialog implements Owner {
  state: DialogState
  private readonly serverIdJson: string
  private readonly mailbox: Array<DialogEffect> = []
  private head = 0
  private working = false
  private scope: Scope.CloseableScope | undefined
  private readonly commandClock = new CommandClock()

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
    this.serverIdJson = goJsonString(context.serverId)
  }

  get closing(): boolean {
    return this.state.ending !== undefined || this.state.ended
  }

  /** Pending effects in the mailbox. */
  get depth(): number {
    return this.mailbox.length - this.head
  }

  /** Effects still queued or being carried out. */
  get busy(): boolean {
    return this.working || this.depth > 0
  }

  /**
   * Feeds one input to the state machine and carries out what it decided. While the mailbox is
   * empty, publishes the bus accepts at once, forks of ARI requests and timers happen right here
   * (the hot path: no fiber per event); anything else, or anything after a publish the bus could
   * not take at once, goes through the mailbox, in order.
   */
  input(input: DialogInput): void {
    const [next, effects] = transition(this.state, input)
    this.state = next
    for (const effect of effects) {
      if (effect._tag === "Bind") {
        for (const key of effect.keys) this.registry.claim(key, this)
      } else if (effect._tag === "Unbind") {
        for (const key of effect.keys) this.registry.release(key, this)
      } else if (this.working || this.depth > 0 || !this.performNow(effect)) {
        this.mailbox.push(effect)
      }
    }
    if (!this.working && this.depth > 0) {
      this.working = true
      this.context.fork(this.work())
    }
  }

  /** Carries out an effect synchronously if it can be; says whether it was. */
  private performNow(effect: DialogEffect): boolean {
    const { bus, topics } = this.context
    switch (effect._tag) {
      case "PublishEvent": {
        if (!bus.tryPublish(topics.events(this.id), encodeWireEvent(this.serverIdJson, effect.type, effect.raw))) {
          return false
        }
        this.context.counters.eventsPublished++
        proxyMetrics.eventsPublished.inc(effect.type)
        return true
      }
      case "Respond": {
        const payload = encodeCommandResponse({
          unique_id: effect.uniqueId,
          status_code: effect.status,
          response_body: effect.body
        })
        if (!bus.tryPublish(topics.responses(this.id), payload)) return false
        this.context.counters.commandsAnswered++
        this.commandClock.answered(effect.uniqueId, effect.status)
        return true
      }
      case "Announce":
        // A new call's AppStart, without a fiber of its own (new dialogs come in bursts).
        return this.origin._tag === "Stasis" && bus.tryPublish(topics.app(this.application), this.appStart())
      case "Send":
      case "StartGraceTimer":
      case "StartLingerTimer":
        this.startNow(effect)
        return true
      default:
        return false
    }
  }

  /** Effects that only fork a fiber or arm a timer. */
  private startNow(effect: Extract<DialogEffect, { _tag: "Send" | "StartGraceTimer" | "StartLingerTimer" }>): void {
    switch (effect._tag) {
      case "Send":
        return this.context.fork(this.send(effect.command))
      case "StartGraceTimer":
        return this.context.timers.schedule(this.context.attachGraceMs, () => this.input({ _tag: "GraceExpired" }))
      case "StartLingerTimer":
        return this.context.timers.schedule(this.context.endedLingerMs, () => this.input({ _tag: "LingerOver" }))
    }
  }

  /** Opens the commands subscription, then lets the machine announce the dialog. */
  start(): void {
    this.context.fork(this.subscribe())
  }

  /**
   * Gives up on a dialog that cannot keep up (its mailbox stayed full): events not yet published
   * are dropped and counted, commands are still answered, DialogEnded says why.
   */
  abort(reason: DialogEndReason): void {
    if (reason === "overloaded") {
      let dropped = 0
      const kept: Array<DialogEffect> = []
      for (let i = this.head; i < this.mailbox.length; i++) {
        const effect = this.mailbox[i]!
        if (effect._tag === "PublishEvent") dropped++
        else kept.push(effect)
      }
      this.mailbox.length = 0
      this.head = 0
      this.mailbox.push(...kept)
      this.context.counters.eventsDropped += dropped
    }
    this.input({ _tag: "Abort", reason })
  }

  private subscribe(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const scope = yield* Scope.make()
      this.scope = scope
      yield* this.context.bus.subscribe(
        this.context.topics.commands(this.id),
        (payload) => Effect.sync(() => this.receive(payload))
      ).pipe(
        Scope.extend(scope),
        Effect.tapError((error) => Effect.logWarning("commands subscription failed, retrying", error.message)),
        Effect.retry(subscribeRetry),
        Effect.orDie // the schedule retries forever: the bus driver reconnects on its own
      )
      this.input({ _tag: "SubscriptionReady" })
      // AppStart went out just now, or waits in the mailbox behind nothing that could fail.
      if (this.origin._tag === "Stasis") yield* Effect.logInfo("dialog opened")
    }).pipe((effect) => this.annotate(effect))
  }

  /** A message from `commands_<dialog_id>`. */
  private receive(payload: string): void {
    const decoded = decodeCommand(payload)
    switch (decoded._tag) {
      case "NotJson":
        // The Go client's `DUMMY`: it asks nothing, so it gets nothing (no ARI request, no answer).
        this.context.counters.nonJsonCommands++
        return
      case "Invalid":
        this.context.counters.commandsRejected++
        this.commandClock.received(decoded.unique_id, "INVALID")
        this.input({ _tag: "InvalidCommand", uniqueId: decoded.unique_id, reason: decoded.reason })
        return
      case "Command":
        this.context.counters.commandsReceived++
        this.commandClock.received(decoded.command.unique_id, methodLabel(decoded.command.method))
        this.input({ _tag: "Command", command: decoded.command })
    }
  }

  private work(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      while (this.head < this.mailbox.length) {
        const effect = this.mailbox[this.head]!
        this.mailbox[this.head++] = undefined as never
        if (this.head === this.mailbox.length) {
          this.mailbox.length = 0
          this.head = 0
        }
        yield* this.perform(effect)
      }
    }).pipe(
      // Whatever ends the worker, the dialog must not stay marked as working (its effects would
      // pile up forever); a failure is logged and the rest of the mailbox gets a new worker.
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : Effect.logError("a dialog effect failed", cause)
      ),
      Effect.onExit((exit) =>
        Effect.sync(() => {
          this.working = false
          if (Exit.isSuccess(exit) && this.depth > 0) {
            this.working = true
            this.context.fork(this.work())
          }
        })
      ),
      (effect) => this.annotate(effect)
    )
  }

  private perform(effect: DialogEffect): Effect.Effect<void> {
    const { topics } = this.context
    switch (effect._tag) {
      case "PublishEvent":
        this.context.counters.eventsPublished++
        proxyMetrics.eventsPublished.inc(effect.type)
        return this.publish(topics.events(this.id), encodeWireEvent(this.serverIdJson, effect.type, effect.raw))
      case "Respond":
        this.context.counters.commandsAnswered++
        this.commandClock.answered(effect.uniqueId, effect.status)
        return this.publish(
          topics.responses(this.id),
          encodeCommandResponse({ unique_id: effect.uniqueId, status_code: effect.status, response_body: effect.body })
        )
      case "Send":
      case "StartGraceTimer":
      case "StartLingerTimer":
        this.startNow(effect)
        return Effect.void
      case "Announce":
        return this.origin._tag === "Stasis" ? this.announce() : this.grant(this.origin)
      case "PublishEnded": {
        proxyMetrics.eventsPublished.inc(DIALOG_ENDED_TYPE)
        proxyMetrics.dialogsEnded.inc(effect.reason)
        const body = JSON.stringify({
          type: DIALOG_ENDED_TYPE,
          dialog_id: this.id,
          reason: effect.reason,
          timestamp: ariTimestamp(),
          application: this.application
        })
        return Effect.zipRight(
          this.publish(topics.events(this.id), encodeWireEvent(this.serverIdJson, DIALOG_ENDED_TYPE, body)),
          Effect.logInfo("dialog ended").pipe(Effect.annotateLogs("reason", effect.reason))
        )
      }
      case "Release":
        return this.release()
      case "Bind":
      case "Unbind":
        return Effect.void // applied synchronously in input()
    }
  }

  private appStart(): string {
    return encodeAppStart({ application: this.application, dialog_id: this.id, server_id: this.context.serverId })
  }

  private announce(): Effect.Effect<void> {
    return this.publish(this.context.topics.app(this.application), this.appStart())
  }

  /** Answers the application that asked for this dialog, and ends it if it stays without a channel. */
  private grant(origin: Extract<DialogOrigin, { _tag: "Requested" }>): Effect.Effect<void> {
    const checkUse = () => {
      const s = this.state
      if (s.members.size > 0 || s.ending !== undefined || s.ended) return
      // A command at work may still bring a channel: look again later.
      if (s.inFlight !== undefined || s.queue.length > 0) {
        this.context.timers.schedule(this.context.requestedDialogIdleMs, checkUse)
      } else {
        this.input({ _tag: "Abort", reason: "unused" })
      }
    }
    this.context.timers.schedule(this.context.requestedDialogIdleMs, checkUse)
    const reply = new DialogGrant({
      request_id: origin.requestId,
      status_code: 201,
      dialog_id: this.id,
      server_id: this.context.serverId,
      application: this.application
    })
    return Effect.zipRight(this.publish(origin.replyTo, JSON.stringify(reply)), Effect.logInfo("requested dialog granted"))
  }

  private publish(topic: string, payload: string): Effect.Effect<void> {
    return Effect.catchAll(this.context.bus.publish(topic, payload), (error) => {
      this.context.counters.publishFailures++
      return Effect.logError("publish failed", topic, error.message)
    })
  }

  private send(command: DecodedCommand): Effect.Effect<void> {
    return this.context.execute(command).pipe(
      Effect.exit,
      Effect.map((exit) => {
        const reply: CommandReply = Exit.isSuccess(exit)
          ? exit.value
          : { status: 500, body: proxyErrorBody(500, "the proxy failed to execute the command: " + Cause.pretty(exit.cause)) }
        this.input({ _tag: "CommandDone", status: reply.status, body: reply.body })
      }),
      (effect) => this.annotate(effect)
    )
  }

  private release(): Effect.Effect<void> {
    return Effect.gen(this, function*() {
      const { bus, topics } = this.context
      if (this.scope !== undefined) yield* Scope.close(this.scope, Exit.void)
      yield* bus.retire(topics.events(this.id))
      yield* bus.retire(topics.commands(this.id))
      yield* bus.retire(topics.responses(this.id))
      this.context.onReleased(this)
    })
  }

  private annotate<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    return Effect.annotateLogs(effect, {
      dialog_id: this.id,
      channel_id: this.channelId ?? "",
      application: this.application
    })
  }
}
