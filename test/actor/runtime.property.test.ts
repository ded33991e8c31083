/**
 * The actor runtime (src/actor) on its own, under random interleavings at real sizes.
 *
 * fast-check's scheduler decides the order of everything that waits: each generated step is released
 * by it, every slow receive effect, task and release waits on a promise it releases, and the scope
 * closes as one of the steps. Effect's own scheduler is reduced to microtasks (`runtime` below), so
 * between two released promises everything that can run has run, and a run is a function of its seed.
 *
 * Measured over the 200 runs of properties 1-6 (min / median / max per run; the test prints them):
 * 1-20 actors (median 11), 100-400 steps (233), 141-734 offers (398); handled 0-540 messages (174),
 * of which inline via receiveNow 0-104 (19), declined by receiveNow 0-130 (30); refused by a full
 * mailbox 0-136 (26, in 182/200 runs), by a stopped actor 2-577 (146); slow effects 0-127 (39), some
 * cut by a stop; tasks 0-33 (10); failures reported 0-99 (27); stops 0-11 (3, in 182/200 runs);
 * accepted messages dropped by a stop in 99/200 runs; scope closed mid-run in 57/200 runs.
 * Timers (100 runs): 137-658 timers a run (357), 14-255 distinct wakes (118), 4-86 throwing
 * callbacks (31), close() in 32/100 runs dropping up to 331 timers.
 * The whole file: ~7 s (properties 1-6 ~1.4 s, Timers ~1.2 s, Timers on TestClock ~2.5 s).
 */
import { describe, expect, it } from "@effect/vitest"
import {
  Cause,
  Deferred,
  Effect,
  Exit,
  FastCheck as fc,
  Logger,
  LogLevel,
  Runtime,
  Scheduler,
  Scope,
  TestClock
} from "effect"
import { type Actor, makeActorSystem } from "../../src/actor/ActorSystem.js"
import { Timers } from "../../src/actor/Timers.js"
import { summarize } from "../support/figures.js"
import { onManualClock } from "../support/manualClock.js"

/** Fibers step in microtasks only (no `setTimeout` hop), logs are off (failures are expected by the hundred). */
const runtime: Runtime.Runtime<never> = Effect.runSync(
  Effect.runtime<never>().pipe(
    Effect.withScheduler(Scheduler.make((task) => queueMicrotask(task))),
    Logger.withMinimumLogLevel(LogLevel.None)
  )
)
const runPromise = Runtime.runPromise(runtime)

/** Runs what fast-check scheduled until nothing is scheduled and nothing else can run. */
const settle = async (s: fc.Scheduler, until: () => boolean = () => true): Promise<void> => {
  for (let round = 0; round < 10_000; round++) {
    await s.waitAll()
    await new Promise<void>((resolve) => setImmediate(resolve))
    if (s.count() === 0 && until()) return
  }
  throw new Error("the run does not settle")
}

// ---------- scenarios ----------

/**
 * What a message does when handled:
 * - sync: handled by `receive` (receiveNow declines it);
 * - now: handled by `receiveNow` when offered to an idle actor (else by `receive`, synchronously);
 * - nowThrow: as `now`, but the handler throws;
 * - nowSlow, nowFail: receiveNow (when offered to an idle actor) starts an effect, as slow and fail;
 * - slow: `receive` returns an effect that waits for fast-check;
 * - fail: waits for fast-check, then `Effect.fail`;
 * - dieThrow: `receive` throws; dieEffect: `receive` returns `Effect.die`;
 * - stopSelf: the handler stops its own actor; stopInEffect: its effect does, after a wait, then dies
 *   (a failure after the actor's own stop, never to be reported).
 */
type Kind =
  | "sync"
  | "now"
  | "nowThrow"
  | "nowSlow"
  | "nowFail"
  | "slow"
  | "fail"
  | "dieThrow"
  | "dieEffect"
  | "stopSelf"
  | "stopInEffect"
/** Tasks wait for fast-check (slow, fail, die) or end within `fork`'s call (now, failNow, dieNow). */
type TaskKind = "slow" | "fail" | "die" | "now" | "failNow" | "dieNow"

interface ActorSpec {
  readonly capacity: number | undefined
  /** Has a `receiveNow`. */
  readonly inline: boolean
  /** Its `onStop` effect: immediate, waits for fast-check, or dies. */
  readonly release: "sync" | "slow" | "die"
  /** Its `onFailure`: goes on, or stops the actor. */
  readonly policy: "resume" | "stop"
}

type Step =
  | {
    readonly t: "offer"
    readonly actor: number
    readonly kind: Kind
    /** offerAlways instead of offer. */
    readonly always: boolean
    /** The handler (or a declining receiveNow) offers one more message to its own actor. */
    readonly echo: boolean
    /** Offered back to back in one step. */
    readonly count: number
  }
  | { readonly t: "fork"; readonly actor: number; readonly task: TaskKind }
  | { readonly t: "stop"; readonly actor: number }
  | { readonly t: "awaitIdle"; readonly actor: number }

interface Scenario {
  readonly actors: ReadonlyArray<ActorSpec>
  readonly steps: ReadonlyArray<Step>
  /** Where (in % of the steps) the system's scope starts closing (else it closes after the run). */
  readonly closeAt: number | undefined
}

const actorIndex = fc.nat({ max: 19 }) // taken modulo the number of actors

const kindArb: fc.Arbitrary<Kind> = fc.oneof(
  { weight: 60, arbitrary: fc.constant("sync" as const) },
  { weight: 30, arbitrary: fc.constant("now" as const) },
  { weight: 4, arbitrary: fc.constant("nowThrow" as const) },
  { weight: 10, arbitrary: fc.constant("nowSlow" as const) },
  { weight: 3, arbitrary: fc.constant("nowFail" as const) },
  { weight: 30, arbitrary: fc.constant("slow" as const) },
  { weight: 8, arbitrary: fc.constant("fail" as const) },
  { weight: 4, arbitrary: fc.constant("dieThrow" as const) },
  { weight: 4, arbitrary: fc.constant("dieEffect" as const) },
  { weight: 1, arbitrary: fc.constant("stopSelf" as const) },
  { weight: 1, arbitrary: fc.constant("stopInEffect" as const) }
)

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 160,
    arbitrary: fc.record({
      t: fc.constant("offer" as const),
      actor: actorIndex,
      kind: kindArb,
      always: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      echo: fc.oneof({ weight: 6, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      count: fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: 8 }) })
    })
  },
  {
    weight: 16,
    arbitrary: fc.record({
      t: fc.constant("fork" as const),
      actor: actorIndex,
      task: fc.constantFrom<TaskKind>("slow", "slow", "fail", "die", "now", "failNow", "dieNow")
    })
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("stop" as const), actor: actorIndex }) },
  { weight: 6, arbitrary: fc.record({ t: fc.constant("awaitIdle" as const), actor: actorIndex }) }
)

const actorSpecArb: fc.Arbitrary<ActorSpec> = fc.record({
  capacity: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined, freq: 2 }),
  inline: fc.boolean(),
  release: fc.constantFrom("sync" as const, "slow" as const, "die" as const),
  policy: fc.oneof({ weight: 9, arbitrary: fc.constant("resume" as const) }, {
    weight: 1,
    arbitrary: fc.constant("stop" as const)
  })
})

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  actors: fc.array(actorSpecArb, { minLength: 1, maxLength: 20, size: "max" }),
  steps: fc.array(stepArb, { minLength: 100, maxLength: 400, size: "max" }),
  closeAt: fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat({ max: 100 }) })
})

// ---------- one run ----------

/** The error or defect of every generated failure: its id ties a report to the failure. */
class Boom {
  constructor(readonly id: number) {}
}

interface Message {
  readonly id: number
  readonly actor: number
  /** Position among the offers to its actor (taken when `offer` is called). */
  readonly seq: number
  readonly kind: Kind
  readonly echo: boolean
}

interface Outcome {
  readonly violations: ReadonlyArray<string>
  readonly figures: Readonly<Record<string, number>>
}

const runScenario = async (scenario: Scenario, s: fc.Scheduler): Promise<Outcome> => {
  const violations: Array<string> = []
  const fail = (line: string) => {
    if (violations.length < 20) violations.push(line)
  }
  const n = scenario.actors.length
  let clock = 0 // orders the recorded events
  const stoppedAt: Array<number | undefined> = new Array(n).fill(undefined)
  const onStopCalls: Array<number> = new Array(n).fill(0)
  const releasesDone: Array<number> = new Array(n).fill(0)
  let closeDoneAt: number | undefined
  const offerSeq: Array<number> = new Array(n).fill(0)
  const handledSeqs: Array<Array<number>> = Array.from({ length: n }, () => [])
  const handledCount = new Map<number, number>()
  const accepted: Array<Message> = []
  const refused: Array<Message> = []
  const reached = new Map<number, number>() // failure id -> actor
  const reported = new Map<number, number>() // failure id -> reports
  let nextMessage = 0
  let nextFailure = 0
  const figures = {
    actors: n,
    steps: scenario.steps.length,
    offers: 0,
    handled: 0,
    handledInline: 0,
    declinedInline: 0,
    refusedFull: 0,
    refusedStopped: 0,
    slowStarted: 0,
    slowDone: 0,
    tasks: 0,
    tasksDone: 0,
    failuresReported: 0,
    stops: 0,
    closedMidRun: 0,
    idleWaits: 0,
    droppedByStop: 0
  }

  const scope = Effect.runSync(Scope.make())
  const system = Runtime.runSync(runtime)(makeActorSystem.pipe(Scope.extend(scope)))

  /** Something of actor `a` runs now: it must not have stopped, nor the scope closed. */
  const alive = (what: string, a: number) => {
    if (stoppedAt[a] !== undefined) fail(`${what} of actor ${a} ran after its stop`)
    if (closeDoneAt !== undefined) fail(`${what} of actor ${a} ran after the scope closed`)
  }
  const wait = (label: string) => Effect.promise(() => s.schedule(Promise.resolve(), label))
  const boom = (a: number): Boom => {
    const id = nextFailure++
    reached.set(id, a)
    return new Boom(id)
  }
  const failWith = (error: Boom) => Effect.fail(error) as unknown as Effect.Effect<void>

  const actors: Array<Actor<Message>> = []

  const offer = (a: number, kind: Kind, always: boolean, echo: boolean) => {
    const actor = actors[a]!
    const message: Message = { id: nextMessage++, actor: a, seq: offerSeq[a]!++, kind, echo }
    const capacity = scenario.actors[a]!.capacity ?? Infinity
    const depth = actor.depth
    const wasStopped = actor.stopped
    figures.offers++
    const ok = always ? actor.offerAlways(message) : actor.offer(message)
    if (ok) {
      accepted.push(message)
      if (wasStopped) fail(`actor ${a} stopped, yet accepted #${message.id}`)
      if (!always && depth >= capacity) fail(`actor ${a} accepted #${message.id} at depth ${depth} >= ${capacity}`)
    } else {
      refused.push(message)
      if (wasStopped) figures.refusedStopped++
      else figures.refusedFull++
      if (!wasStopped && (always || depth < capacity)) {
        fail(`actor ${a} refused #${message.id} (${always ? "offerAlways" : "offer"}) at depth ${depth} < ${capacity}`)
      }
    }
  }

  const stop = (a: number) => {
    if (!actors[a]!.stopped) figures.stops++
    actors[a]!.stop()
    if (stoppedAt[a] === undefined) fail(`actor ${a}: stop() returned before onStop was called`)
  }

  const handled = (m: Message, how: string) => {
    alive(`${how}(#${m.id})`, m.actor)
    handledCount.set(m.id, (handledCount.get(m.id) ?? 0) + 1)
    handledSeqs[m.actor]!.push(m.seq)
    figures.handled++
    if (m.echo) offer(m.actor, "sync", false, false)
  }

  const slowEffect = (m: Message) =>
    Effect.suspend(() => {
      figures.slowStarted++
      return wait(`slow #${m.id} of a${m.actor}`)
    }).pipe(Effect.andThen(Effect.sync(() => {
      alive(`slow effect #${m.id}`, m.actor)
      figures.slowDone++
    })))
  const failingEffect = (m: Message) =>
    wait(`fail #${m.id} of a${m.actor}`).pipe(Effect.andThen(Effect.suspend(() => {
      alive(`failing effect #${m.id}`, m.actor)
      return failWith(boom(m.actor))
    })))

  const spawn = (a: number, spec: ActorSpec): Actor<Message> =>
    system.spawn<Message>({ id: `a${a}`, capacity: spec.capacity }, {
      receive: (m) => {
        handled(m, "receive")
        switch (m.kind) {
          case "slow":
          case "nowSlow":
            return slowEffect(m)
          case "fail":
          case "nowFail":
            return failingEffect(m)
          case "dieEffect":
            return Effect.suspend(() => {
              alive(`dying effect #${m.id}`, a)
              return Effect.die(boom(a))
            })
          case "dieThrow":
          case "nowThrow":
            throw boom(a)
          case "stopSelf":
            stop(a)
            return undefined
          case "stopInEffect":
            return wait(`stopInEffect #${m.id} of a${a}`).pipe(Effect.andThen(Effect.suspend(() => {
              alive(`effect #${m.id}`, a)
              stop(a)
              return Effect.die(new Boom(-1)) // not `boom`: not to be reported
            })))
          default:
            return undefined
        }
      },
      receiveNow: spec.inline ?
        (m) => {
          switch (m.kind) {
            case "now":
              handled(m, "receiveNow")
              figures.handledInline++
              return true
            case "nowThrow":
              handled(m, "receiveNow")
              figures.handledInline++
              throw boom(a)
            case "nowSlow":
              handled(m, "receiveNow")
              figures.handledInline++
              return slowEffect(m)
            case "nowFail":
              handled(m, "receiveNow")
              figures.handledInline++
              return failingEffect(m)
            case "stopSelf":
              handled(m, "receiveNow")
              figures.handledInline++
              stop(a)
              return true
            default:
              alive(`receiveNow(#${m.id})`, a)
              figures.declinedInline++
              // offered while receiveNow runs, so after this message, which it declines
              if (m.echo) offer(a, "sync", false, false)
              return false
          }
        } :
        undefined,
      onFailure: (cause) => {
        alive("onFailure", a)
        const booms = [...Cause.failures(cause), ...Cause.defects(cause)].filter((e): e is Boom => e instanceof Boom)
        if (booms.length !== 1) return fail(`actor ${a}: onFailure with an unexpected cause ${Cause.pretty(cause)}`)
        const id = booms[0]!.id
        if (reached.get(id) !== a) fail(`actor ${a}: onFailure for failure ${id} of actor ${reached.get(id)}`)
        reported.set(id, (reported.get(id) ?? 0) + 1)
        figures.failuresReported++
        if (spec.policy === "stop") stop(a)
      },
      onStop: () => {
        onStopCalls[a]!++
        if (stoppedAt[a] === undefined) stoppedAt[a] = ++clock
        if (closeDoneAt !== undefined) fail(`actor ${a}: onStop after the scope closed`)
        const done = Effect.sync(() => {
          releasesDone[a]!++
        })
        switch (spec.release) {
          case "sync":
            return done
          case "slow":
            return wait(`release of a${a}`).pipe(Effect.andThen(done))
          case "die":
            return Effect.zipRight(done, Effect.die("release failed"))
        }
      }
    })
  scenario.actors.forEach((spec, a) => actors.push(spawn(a, spec)))

  let closing: Promise<void> | undefined
  const close = () => {
    closing ??= runPromise(Scope.close(scope, Exit.void)).then(() => {
      closeDoneAt = ++clock
      onStopCalls.forEach((calls, a) => {
        if (calls !== 1) fail(`scope closed; actor ${a}'s onStop was called ${calls} times`)
        if (releasesDone[a] !== 1) fail(`scope closed before actor ${a}'s release finished`)
      })
    })
  }

  const idleWaits: Array<{ readonly actor: number; done: boolean }> = []
  const task = (a: number, kind: TaskKind): Effect.Effect<void> => {
    const waited = Effect.suspend(() => wait(`${kind} task of a${a}`))
    switch (kind) {
      case "now":
        return Effect.sync(() => {
          alive("task", a)
          figures.tasksDone++
        })
      case "failNow":
        return Effect.suspend(() => {
          alive("failing task", a)
          return failWith(boom(a))
        })
      case "dieNow":
        return Effect.suspend(() => {
          alive("dying task", a)
          return Effect.die(boom(a))
        })
      case "slow":
        return waited.pipe(Effect.andThen(Effect.sync(() => {
          alive("slow task", a)
          figures.tasksDone++
        })))
      case "fail":
        return waited.pipe(Effect.andThen(Effect.suspend(() => {
          alive("failing task", a)
          return failWith(boom(a))
        })))
      case "die":
        return waited.pipe(Effect.andThen(Effect.suspend(() => {
          alive("dying task", a)
          return Effect.die(boom(a))
        })))
    }
  }

  const exec = (step: Step) => {
    const a = step.actor % n
    switch (step.t) {
      case "offer":
        for (let i = 0; i < step.count; i++) offer(a, step.kind, step.always, step.echo)
        return
      case "fork":
        if (!actors[a]!.stopped) figures.tasks++
        return actors[a]!.fork(task(a, step.task))
      case "stop":
        return stop(a)
      case "awaitIdle": {
        const waiting = { actor: a, done: false }
        idleWaits.push(waiting)
        figures.idleWaits++
        void runPromise(actors[a]!.awaitIdle).then(() => {
          waiting.done = true
        })
        return
      }
    }
  }

  const closeAt = scenario.closeAt === undefined ?
    undefined :
    Math.min(scenario.steps.length - 1, Math.floor(scenario.steps.length * scenario.closeAt / 100))
  let driverDone = false
  void (async () => {
    for (let i = 0; i < scenario.steps.length; i++) {
      const step = scenario.steps[i]!
      await s.schedule(Promise.resolve(), `step ${i} ${step.t} a${step.actor % n}${step.t === "offer" ? ` ${step.kind}` : ""}`)
      if (i === closeAt) {
        figures.closedMidRun = 1
        close()
      }
      exec(step)
    }
    driverDone = true
  })()
  await settle(s, () => driverDone)

  // 4. no lost wake-up: all scheduled work has run
  actors.forEach((actor, a) => {
    if (actor.depth !== 0 || actor.busy) {
      fail(`actor ${a} (stopped: ${actor.stopped}) left with depth ${actor.depth}, busy ${actor.busy}`)
    }
  })
  if (system.size() !== actors.filter((actor) => !actor.stopped).length) fail(`size() ${system.size()} is off`)
  let allIdle = false
  void runPromise(Effect.forEach(actors, (actor) => actor.awaitIdle, { discard: true })).then(() => {
    allIdle = true
  })
  await settle(s)
  if (!allIdle) fail("awaitIdle of some actor did not complete")
  idleWaits.forEach((w, i) => {
    if (!w.done) fail(`awaitIdle #${i} of actor ${w.actor} never completed`)
  })

  // 6. closing the scope releases everything, and nothing runs afterwards
  close()
  await settle(s, () => closeDoneAt !== undefined)
  await closing
  await settle(s)
  if (system.size() !== 0) fail(`size() ${system.size()} after the scope closed`)
  actors.forEach((actor, a) => {
    if (!actor.stopped) fail(`actor ${a} not stopped by the scope's close`)
    if (onStopCalls[a] !== 1) fail(`actor ${a}: onStop called ${onStopCalls[a]} times`)
  })

  // 1. per-actor order
  handledSeqs.forEach((seqs, a) => {
    for (let i = 1; i < seqs.length; i++) {
      if (seqs[i]! <= seqs[i - 1]!) {
        fail(`actor ${a} handled offer #${seqs[i]} after offer #${seqs[i - 1]}`)
        break
      }
    }
  })
  // 2. exactly once
  for (const m of accepted) {
    const count = handledCount.get(m.id) ?? 0
    if (count > 1) fail(`#${m.id} (${m.kind}) of actor ${m.actor} handled ${count} times`)
    if (count === 0) {
      if (stoppedAt[m.actor] === undefined) fail(`#${m.id} (${m.kind}) of actor ${m.actor} accepted, never handled`)
      else figures.droppedByStop++
    }
  }
  for (const m of refused) {
    if (handledCount.has(m.id)) fail(`#${m.id} of actor ${m.actor} refused, yet handled`)
  }
  // 5. failures supervised
  for (const [id, a] of reached) {
    const count = reported.get(id) ?? 0
    if (count !== 1) fail(`failure ${id} of actor ${a} reported ${count} times`)
  }
  return { violations, figures }
}

const NUM_RUNS = 200

describe("actor runtime under fast-check's scheduler", () => {
  it("properties 1-6: order, exactly once, capacity, nothing after stop, no lost wake-up, supervision, release",
    async () => {
      const runs: Array<Readonly<Record<string, number>>> = []
      await fc.assert(
        fc.asyncProperty(scenarioArb, fc.scheduler(), async (scenario, s) => {
          const outcome = await runScenario(scenario, s)
          if (outcome.violations.length > 0) throw new Error(outcome.violations.join("\n"))
          runs.push(outcome.figures)
        }),
        { numRuns: NUM_RUNS }
      )
      const summary = summarize(runs)
      console.log("actor runtime property, per run:", summary)
      // The generators reach the interesting cases (over all runs).
      const total = (key: string) => runs.reduce((sum, r) => sum + r[key]!, 0)
      for (
        const key of [
          "handledInline",
          "declinedInline",
          "refusedFull",
          "refusedStopped",
          "failuresReported",
          "stops",
          "closedMidRun",
          "droppedByStop",
          "tasksDone"
        ]
      ) expect(total(key), key).toBeGreaterThan(0)
      expect(total("slowStarted") - total("slowDone"), "slow effects cut by a stop").toBeGreaterThan(0)
    })

  it.scoped("a flooded actor does not starve another: B's one message comes before A's thousands", () =>
    Effect.gen(function*() {
      const system = yield* makeActorSystem
      let aHandled = 0
      let aHandledBeforeB = -1
      let aDepthAtB = -1
      const a = system.spawn<number>({ id: "a" }, {
        receive: () => {
          aHandled++
          return undefined
        }
      })
      const b = system.spawn<string>({ id: "b" }, {
        receive: () => {
          aHandledBeforeB = aHandled
          aDepthAtB = a.depth
          return undefined
        }
      })
      for (let i = 0; i < 5_000; i++) expect(a.offer(i)).toBe(true)
      expect(b.offer("one")).toBe(true)
      yield* a.awaitIdle
      yield* b.awaitIdle
      expect(aHandled).toBe(5_000)
      // B's turn came after one turn of A (64 messages), not after its 5,000
      expect(aDepthAtB).toBeGreaterThan(0)
      expect(aHandledBeforeB).toBeLessThan(5_000)
      expect(aHandledBeforeB + aDepthAtB).toBe(5_000)
    }))

  it.scoped("an actor waiting on a slow effect does not hold up another actor's messages", () =>
    Effect.gen(function*() {
      const system = yield* makeActorSystem
      const gate = yield* Deferred.make<void>()
      const aDone: Array<string> = []
      const a = system.spawn<string>({ id: "a" }, {
        receive: (m) => Effect.andThen(m === "wait" ? Deferred.await(gate) : Effect.void, () => aDone.push(m))
      })
      const seen: Array<number> = []
      const b = system.spawn<number>({ id: "b" }, {
        // half of B's messages run an effect too: B then runs on a fiber of its own
        receive: (n) => n % 2 === 0 ? Effect.sync(() => seen.push(n)) : (seen.push(n), undefined)
      })
      a.offer("wait")
      a.offer("then")
      for (let i = 0; i < 100; i++) b.offer(i)
      yield* b.awaitIdle
      expect(seen).toEqual(Array.from({ length: 100 }, (_, i) => i))
      expect(a.busy).toBe(true)
      expect(a.depth).toBe(1)
      expect(aDone).toEqual([])
      yield* Deferred.succeed(gate, undefined)
      yield* a.awaitIdle
      expect(aDone).toEqual(["wait", "then"])
    }))
})

// ---------- 7. Timers ----------

const DELAYS = [1, 7, 20, 50, 120, 300] as const

type TimerAction = "plain" | "throw" | "again"
type TimerStep =
  | {
    readonly t: "schedule"
    readonly delay: number
    readonly action: TimerAction
    readonly againDelay: number
    /** Timers scheduled back to back, with the same delay. */
    readonly count: number
  }
  | { readonly t: "advance"; readonly ms: number }

interface TimerScenario {
  readonly steps: ReadonlyArray<TimerStep>
  /** Where (in % of the steps) `close()` is called: directly, or by a callback scheduled there. */
  readonly close: { readonly at: number; readonly inside: boolean } | undefined
}

const timerStepArb: fc.Arbitrary<TimerStep> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("schedule" as const),
      delay: fc.constantFrom(...DELAYS),
      action: fc.oneof(
        { weight: 12, arbitrary: fc.constant("plain" as const) },
        { weight: 2, arbitrary: fc.constant("throw" as const) },
        { weight: 3, arbitrary: fc.constant("again" as const) }
      ),
      againDelay: fc.constantFrom(...DELAYS),
      count: fc.oneof({ weight: 3, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: 6 }) })
    })
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("advance" as const), ms: fc.integer({ min: 0, max: 150 }) }) }
)

const timerScenarioArb = (closeInside: boolean): fc.Arbitrary<TimerScenario> =>
  fc.record({
    // (the close-inside variant may be short, so that its counterexamples shrink to a few steps)
    steps: fc.array(timerStepArb, { minLength: closeInside ? 1 : 100, maxLength: 400, size: "max" }),
    close: fc.oneof(
      { weight: 2, arbitrary: fc.constant(undefined) },
      {
        weight: 1,
        arbitrary: fc.record({
          at: fc.integer({ min: 30, max: 100 }),
          inside: closeInside ? fc.boolean() : fc.constant(false)
        })
      }
    )
  })

interface Timer {
  readonly id: number
  readonly delay: number
  readonly deadline: number
  fired: number
  firedAt: number | undefined
}

/** Runs a timer scenario on `clock`, moved by `advance`; returns the violations and the run's figures. */
const runTimers = (
  scenario: TimerScenario,
  advance: (ms: number) => Effect.Effect<void>
): Effect.Effect<{ readonly violations: ReadonlyArray<string>; readonly figures: Record<string, number> }> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const fork = Runtime.runFork(yield* Effect.runtime<never>())
    let failures = 0
    const timers = new Timers(clock, (effect) => fork(effect), () => {
      failures++
    })
    const violations: Array<string> = []
    const fail = (line: string) => {
      if (violations.length < 20) violations.push(line)
    }
    const all: Array<Timer> = []
    const firedOrder: Array<Timer> = []
    let closedAt: number | undefined
    let throwsFired = 0

    const schedule = (delay: number, action: TimerAction | "close", againDelay: number) => {
      const timer: Timer = { id: all.length, delay, deadline: timers.now() + delay, fired: 0, firedAt: undefined }
      all.push(timer)
      timers.schedule(delay, () => {
        timer.fired++
        timer.firedAt = timers.now()
        firedOrder.push(timer)
        if (closedAt !== undefined) fail(`timer ${timer.id} (${delay} ms, due ${timer.deadline}) fired after close()`)
        switch (action) {
          case "throw":
            throwsFired++
            throw new Error(`timer ${timer.id}`)
          case "again":
            return schedule(againDelay, "plain", againDelay)
          case "close":
            closedAt = timers.now()
            return timers.close()
        }
      })
    }

    /** No timer fired twice or early; while open, every timer due by now has fired. */
    const check = (when: string) => {
      const now = timers.now()
      for (const timer of all) {
        if (timer.fired > 1) fail(`${when}: timer ${timer.id} fired ${timer.fired} times`)
        if (timer.firedAt !== undefined && timer.firedAt < timer.deadline) {
          fail(`${when}: timer ${timer.id} fired at ${timer.firedAt}, before its deadline ${timer.deadline}`)
        }
        if (closedAt === undefined && timer.fired === 0 && timer.deadline <= now) {
          fail(`${when}: timer ${timer.id} (deadline ${timer.deadline}) has not fired at ${now}`)
        }
      }
    }

    const closeAt = scenario.close === undefined ?
      undefined :
      Math.floor((scenario.steps.length - 1) * scenario.close.at / 100)
    for (const [i, step] of scenario.steps.entries()) {
      if (i === closeAt) {
        if (scenario.close!.inside) schedule(DELAYS[i % DELAYS.length]!, "close", 1)
        else {
          closedAt = timers.now()
          timers.close()
        }
      }
      switch (step.t) {
        case "schedule":
          for (let k = 0; k < step.count; k++) schedule(step.delay, step.action, step.againDelay)
          break
        case "advance":
          yield* advance(step.ms)
          check(`after step ${i} (advance ${step.ms})`)
          break
      }
    }
    yield* advance(1_000)
    yield* advance(1_000)
    check("at the end")
    if (closedAt === undefined && timers.pending !== 0) fail(`${timers.pending} timers never fired`)
    if (closedAt !== undefined && timers.pending !== 0) fail(`${timers.pending} timers pending after close()`)
    if (failures !== throwsFired) fail(`${throwsFired} callbacks threw, ${failures} failures reported`)
    for (const delay of DELAYS) {
      const lane = firedOrder.filter((t) => t.delay === delay)
      for (let i = 1; i < lane.length; i++) {
        if (lane[i]!.id < lane[i - 1]!.id) {
          fail(`${delay} ms: timer ${lane[i]!.id} fired after timer ${lane[i - 1]!.id}, scheduled later`)
          break
        }
      }
    }
    timers.close()
    return {
      violations,
      figures: {
        timers: all.length,
        fired: firedOrder.length,
        wakes: new Set(firedOrder.map((t) => t.firedAt)).size,
        throws: throwsFired,
        closed: closedAt === undefined ? 0 : 1,
        droppedByClose: all.filter((t) => t.fired === 0).length
      }
    }
  })

describe("Timers", () => {
  const figures: Array<Record<string, number>> = []

  it.effect.prop(
    "7: each timer fires once, not early, in order per delay, despite throws; close() drops the rest",
    [timerScenarioArb(false)],
    ([scenario]) =>
      Effect.gen(function*() {
        const outcome = yield* onManualClock((clock) => runTimers(scenario, (ms) => clock.advance(ms)))
        figures.push(outcome.figures)
        expect(outcome.violations).toEqual([])
      }),
    { fastCheck: { numRuns: 100 } }
  )

  it("7: the timer runs reach the interesting cases", () => {
    console.log("timers property, per run:", summarize(figures))
    const total = (key: string) => figures.reduce((sum, r) => sum + r[key]!, 0)
    for (const key of ["throws", "closed", "droppedByClose"]) expect(total(key), key).toBeGreaterThan(0)
  })

  it.effect.prop(
    "7 on TestClock: the same property (3 runs: TestClock costs ~5 ms a wake)",
    [timerScenarioArb(false)],
    ([scenario]) =>
      Effect.gen(function*() {
        const outcome = yield* runTimers(scenario, (ms) => TestClock.adjust(ms))
        expect(outcome.violations).toEqual([])
      }),
    { fastCheck: { numRuns: 3 } }
  )

  it.effect.prop(
    "7, close() from inside a callback: the callbacks due in the same wake do not run after it",
    [timerScenarioArb(true)],
    ([scenario]) =>
      Effect.gen(function*() {
        const outcome = yield* onManualClock((clock) => runTimers(scenario, (ms) => clock.advance(ms)))
        expect(outcome.violations).toEqual([])
      }),
    { fastCheck: { numRuns: 100 } }
  )
})
