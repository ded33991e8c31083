/**
 * The actor runtime: every dialog, every bus subscription's inbox and the unrouted-event publisher
 * is an actor of an `ActorSystem`.
 *
 * An actor is a bounded mailbox and a behaviour. Messages are handled one at a time, in the order
 * they were offered (per-actor order is total), never inside `offer`'s caller, except through
 * the optional fast path `receiveNow` (below).
 *
 * What is a fiber and what is not:
 * - an idle actor is a few objects: no fiber, no Scope;
 * - the dispatcher (one per system) is a fiber started when some actor has messages; it hands
 *   each ready actor a turn of at most `TURN` messages, round robin, so a flooded actor cannot
 *   starve the others; it ends when no actor is ready;
 * - a message whose `receive` returns an effect moves its actor onto a fiber of its own, which
 *   runs that effect and the actor's following messages until the mailbox is empty, then ends:
 *   an actor that waits (a bus pushing back) holds up nobody else;
 * - tasks (`fork`) are fibers supervised by their actor: interrupted when it stops, failures
 *   logged and reported to its behaviour.
 *
 * Supervision: a failure or defect of `receive`, of its effect or of a task is logged with the
 * actor's id and cause, then given to `onFailure`, the actor's stated policy; nothing dies unseen.
 * Lifetime: `stop` drops what waits, interrupts what runs and releases the actor's resources
 * (`onStop`); closing the scope that made the system stops every actor the same way.
 */
import { Cause, Deferred, Effect, Exit, FiberId, FiberRef, FiberRefs, Runtime } from "effect"
import type { Fiber, LogLevel, Scope } from "effect"
import { Fifo } from "./Fifo.js"
import { Timers } from "./Timers.js"

export interface Behaviour<M> {
  /**
   * Handles one message: `undefined` when done right away, or an effect the actor runs to
   * completion before its next message.
   */
  readonly receive: (message: M) => Effect.Effect<void> | undefined
  /**
   * Optional fast path, for a message offered while nothing waits or runs before it: handle it
   * inside `offer`'s caller. `true`: handled; `false`: declined, it is queued as usual; an effect:
   * started here, the actor runs it to completion (on a fiber of its own) before its next message.
   * The hot path of a dialog (a publish the bus takes at once) runs here without a fiber.
   */
  readonly receiveNow?: ((message: M) => boolean | Effect.Effect<void>) | undefined
  /** The supervision policy, after the failure has been logged. The actor goes on unless it is stopped. */
  readonly onFailure?: ((cause: Cause.Cause<unknown>) => void) | undefined
  /** Releases the actor's resources once it has stopped (by `stop` or by its system's scope closing). */
  readonly onStop?: (() => Effect.Effect<void>) | undefined
  /** Further log annotations of its failure lines (made only when one is logged). */
  readonly logAnnotations?: (() => Readonly<Record<string, unknown>>) | undefined
}

export interface ActorOptions {
  /** Named in the log lines of its failures. */
  readonly id: string
  /** Messages `offer` accepts at most (default: no bound). */
  readonly capacity?: number | undefined
}

export interface Actor<M> {
  readonly id: string
  /** Messages waiting. */
  readonly depth: number
  /** Messages waiting or being handled, or tasks running. */
  readonly busy: boolean
  readonly stopped: boolean
  /** Queues a message; false when the mailbox is full or the actor has stopped (nothing was queued). */
  offer(message: M): boolean
  /** Queues a message even past the capacity (for messages that must not be lost); false once stopped. */
  offerAlways(message: M): boolean
  /** Removes the waiting messages that match; says how many. */
  drop(matches: (message: M) => boolean): number
  /** Runs a task beside the mailbox, supervised by this actor; it starts at once, in the caller's call. */
  fork(task: Effect.Effect<void>): void
  /** Stops for good: waiting messages are dropped, running work is interrupted, `onStop` runs. */
  stop(): void
  /** Completes once the actor is not busy. */
  readonly awaitIdle: Effect.Effect<void>
}

export interface ActorSystem {
  readonly spawn: <M>(options: ActorOptions, behaviour: Behaviour<M>) => Actor<M>
  /** Actors not stopped. */
  readonly size: () => number
  /** The system's timers (on Effect's Clock); closed with the system. */
  readonly timers: Timers
  /**
   * Forks a fiber in the system's runtime (its logger and services), started at once. Not
   * supervised: work that belongs to an actor is that actor's `fork`.
   */
  readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>
  /**
   * Whether a line at this level would be logged (the system's minimum level): actors on hot
   * paths build their log lines, annotations included, only when they would be written.
   */
  readonly logs: (level: LogLevel.LogLevel) => boolean
  /**
   * Logs a failure of work done for the actor named `id` outside its mailbox (a handler run in a
   * driver's callback before the actor exists), as the actor's own failures are logged.
   */
  readonly reportFailure: (id: string, cause: Cause.Cause<unknown>) => void
}

/** Messages an actor handles in one turn of the dispatcher before the next ready actor's turn. */
const TURN = 64
/** Messages the dispatcher handles before it yields to the event loop (I/O, timers). */
const PUMP_BUDGET = 4096

const IDLE = 0
const READY = 1 // in the dispatcher's queue
const INLINE = 2 // in `receiveNow`
const RUNNING = 3 // on a fiber of its own
const STOPPED = 4
type Status = typeof IDLE | typeof READY | typeof INLINE | typeof RUNNING | typeof STOPPED

interface Dispatcher {
  readonly ready: Fifo<ActorImpl<any>>
  readonly schedule: (actor: ActorImpl<any>) => void
  /** Starts a fiber right away, in the caller's call (tasks, releases). */
  readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>
  /** Starts a fiber on the scheduler, after the caller has returned (the dispatcher, actors' fibers). */
  readonly runLater: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>
  readonly stopped: (actor: ActorImpl<any>, release: Effect.Effect<void> | undefined) => void
  readonly failed: (actor: ActorImpl<any>, cause: Cause.Cause<unknown>) => void
}

class ActorImpl<M> implements Actor<M> {
  status: Status = IDLE
  private readonly mailbox = new Fifo<M>()
  private fiber: Fiber.RuntimeFiber<void> | undefined
  private tasks: Set<Fiber.RuntimeFiber<void>> | undefined
  private idleWaiter: Deferred.Deferred<void> | undefined

  constructor(
    private readonly dispatcher: Dispatcher,
    readonly id: string,
    private readonly capacity: number,
    private readonly behaviour: Behaviour<M>
  ) {}

  get depth(): number {
    return this.mailbox.length
  }

  get busy(): boolean {
    return this.status === READY || this.status === INLINE || this.status === RUNNING ||
      this.mailbox.length > 0 || (this.tasks !== undefined && this.tasks.size > 0)
  }

  get stopped(): boolean {
    return this.status === STOPPED
  }

  offer(message: M): boolean {
    return this.enqueue(message, this.capacity)
  }

  offerAlways(message: M): boolean {
    return this.enqueue(message, Infinity)
  }

  private enqueue(message: M, capacity: number): boolean {
    if (this.status === STOPPED) return false
    if (this.status === IDLE && this.behaviour.receiveNow !== undefined) {
      this.status = INLINE
      let outcome: boolean | Effect.Effect<void>
      try {
        outcome = this.behaviour.receiveNow(message) // a method call: behaviours may be class instances
      } catch (error) {
        outcome = true
        this.dispatcher.failed(this, Cause.die(error))
      }
      if (this.status !== INLINE) return true // stopped meanwhile
      if (outcome === false) {
        // Messages offered from inside receiveNow came after this one.
        this.mailbox.prependAll([message])
      } else if (outcome !== true) {
        this.status = RUNNING
        this.fiber = this.dispatcher.runLater(this.drainOnFiber(outcome))
        return true
      }
      this.status = IDLE
      if (this.mailbox.length > 0) this.dispatcher.schedule(this)
      else this.notifyIfIdle()
      return true
    }
    if (this.mailbox.length >= capacity) return false
    this.mailbox.push(message)
    if (this.status === IDLE) this.dispatcher.schedule(this)
    return true
  }

  drop(matches: (message: M) => boolean): number {
    return this.mailbox.removeWhere(matches)
  }

  fork(task: Effect.Effect<void>): void {
    if (this.status === STOPPED) return
    const fiber = this.dispatcher.runFork(task)
    const tasks = this.tasks ??= new Set()
    tasks.add(fiber)
    fiber.addObserver((exit) => {
      tasks.delete(fiber)
      if (tasks.size === 0 && this.tasks === tasks) this.tasks = undefined // an idle actor keeps no Set
      if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) this.dispatcher.failed(this, exit.cause)
      this.notifyIfIdle()
    })
  }

  stop(): void {
    if (this.status === STOPPED) return
    this.status = STOPPED
    this.mailbox.takeAll()
    this.fiber?.unsafeInterruptAsFork(FiberId.none)
    this.fiber = undefined
    if (this.tasks !== undefined) for (const task of this.tasks) task.unsafeInterruptAsFork(FiberId.none)
    this.tasks = undefined
    this.dispatcher.stopped(this, this.behaviour.onStop?.())
    this.notifyIfIdle()
  }

  get awaitIdle(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (!this.busy) return Effect.void
      const waiter = this.idleWaiter ??= Deferred.unsafeMake<void>(FiberId.none)
      return Deferred.await(waiter)
    })
  }

  /** The behaviour's annotations of a failure line. */
  logAnnotations(): Readonly<Record<string, unknown>> | undefined {
    return this.behaviour.logAnnotations?.()
  }

  /** The behaviour's supervision policy. */
  behaviourOnFailure(cause: Cause.Cause<unknown>): void {
    this.behaviour.onFailure?.(cause)
  }

  /** One turn of the dispatcher; returns how many messages it handled. */
  runTurn(): number {
    if (this.status !== READY) return 0
    let handled = 0
    while (handled < TURN) {
      if (this.mailbox.length === 0) {
        this.status = IDLE
        this.notifyIfIdle()
        return handled
      }
      handled++
      const effect = this.handle(this.mailbox.shift()!)
      if (this.stopped) return handled // the behaviour stopped its own actor
      if (effect !== undefined) {
        this.status = RUNNING
        this.fiber = this.dispatcher.runLater(this.drainOnFiber(effect))
        return handled
      }
    }
    this.dispatcher.ready.push(this) // turn used up: back of the line
    return handled
  }

  /** Runs `first`, then the following messages, on the actor's own fiber until the mailbox is empty. */
  private drainOnFiber(first: Effect.Effect<void>): Effect.Effect<void> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this
    return Effect.gen(function*() {
      let effect: Effect.Effect<void> | undefined = first
      while (true) {
        if (effect !== undefined) {
          const exit: Exit.Exit<void> = yield* Effect.exit(effect)
          if (self.status === STOPPED) return
          if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) self.dispatcher.failed(self, exit.cause)
        }
        if (self.status === STOPPED) return
        if (self.mailbox.length === 0) {
          self.status = IDLE
          self.fiber = undefined
          self.notifyIfIdle()
          return
        }
        effect = self.handle(self.mailbox.shift()!)
      }
    })
  }

  private handle(message: M): Effect.Effect<void> | undefined {
    try {
      return this.behaviour.receive(message)
    } catch (error) {
      this.dispatcher.failed(this, Cause.die(error))
      return undefined
    }
  }

  private notifyIfIdle(): void {
    if (this.idleWaiter !== undefined && !this.busy) {
      Deferred.unsafeDone(this.idleWaiter, Exit.void)
      this.idleWaiter = undefined
    }
  }
}

/**
 * An actor system whose actors, fibers and timers live in the current scope: closing it stops
 * every actor (releasing its resources) and waits for those releases.
 */
export const makeActorSystem: Effect.Effect<ActorSystem, never, Scope.Scope> = Effect.gen(function*() {
  const runtime = yield* Effect.runtime<never>()
  const runForkIn = Runtime.runFork(runtime)
  const runFork = <A, E>(effect: Effect.Effect<A, E>): Fiber.RuntimeFiber<A, E> => runForkIn(effect)
  const runLater = (effect: Effect.Effect<void>): Fiber.RuntimeFiber<void> => runForkIn(effect, { immediate: false })
  const actors = new Set<ActorImpl<any>>()
  const releasing = new Set<Fiber.RuntimeFiber<void>>()
  let closed = false

  const logFailure = (id: string, cause: Cause.Cause<unknown>, annotations?: Readonly<Record<string, unknown>>) => {
    runFork(Effect.logError("actor failed", cause).pipe(Effect.annotateLogs({ actor: id, ...annotations })))
  }

  const failed = (actor: ActorImpl<any>, cause: Cause.Cause<unknown>) => {
    logFailure(actor.id, cause, actor.logAnnotations())
    try {
      actor.behaviourOnFailure(cause)
    } catch (error) {
      runFork(Effect.logError("actor's failure policy failed", Cause.die(error)).pipe(
        Effect.annotateLogs({ actor: actor.id })
      ))
    }
  }

  const ready = new Fifo<ActorImpl<any>>()
  let pumping = false
  const pump = Effect.sync(() => {
    let budget = PUMP_BUDGET
    while (budget > 0 && ready.length > 0) budget -= ready.shift()!.runTurn()
    pumping = false
    if (ready.length > 0) startPump()
  })
  const startPump = () => {
    if (pumping || closed) return
    pumping = true
    runLater(pump)
  }

  const dispatcher: Dispatcher = {
    ready,
    runFork,
    runLater,
    schedule: (actor) => {
      actor.status = READY
      ready.push(actor)
      startPump()
    },
    stopped: (actor, release) => {
      actors.delete(actor)
      if (release === undefined) return
      const fiber = runFork(release.pipe(
        Effect.catchAllCause((cause) =>
          Effect.logError("actor's release failed", cause).pipe(Effect.annotateLogs({ actor: actor.id }))
        )
      ))
      releasing.add(fiber)
      fiber.addObserver(() => releasing.delete(fiber))
    },
    failed
  }

  const timers = new Timers(
    yield* Effect.clock,
    runFork,
    (cause) => runFork(Effect.logError("timer callback failed", cause))
  )

  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      closed = true
      timers.close()
      for (const actor of [...actors]) actor.stop()
      while (releasing.size > 0) yield* Effect.forEach([...releasing], (fiber) => fiber.await, { discard: true })
    })
  )

  const minimumLogLevel = FiberRefs.getOrDefault(runtime.fiberRefs, FiberRef.currentMinimumLogLevel)

  return {
    logs: (level) => level.ordinal >= minimumLogLevel.ordinal, // an Order's call costs µs on hot paths
    spawn: <M>(options: ActorOptions, behaviour: Behaviour<M>): Actor<M> => {
      const actor = new ActorImpl<M>(dispatcher, options.id, options.capacity ?? Infinity, behaviour)
      if (closed) actor.stop()
      else actors.add(actor)
      return actor
    },
    size: () => actors.size,
    timers,
    runFork,
    reportFailure: logFailure
  }
})
