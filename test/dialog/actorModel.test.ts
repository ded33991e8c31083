/**
 * A model test of the dialog actor over a bus that pushes back: `tryPublish` refuses at random
 * and `publish` takes a random number of scheduler turns. Whatever the interleaving of ARI events,
 * commands, ARI answers and the bus's moods, each dialog's events arrive on its topic in order and
 * exactly once, and each command is answered exactly once, in arrival order.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import { makeActorSystem } from "../../src/actor/ActorSystem.js"
import type { BusShape } from "../../src/bus/Bus.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { makeDialogCounters } from "../../src/dialog/actor.js"
import { ProxyMetrics } from "../../src/observability/metrics.js"
import { makeTopics } from "../../src/protocol/topics.js"
import { makeRouterCounters, Router } from "../../src/proxy/router.js"

const DIALOGS = 4

type Step =
  | { readonly _tag: "Event"; readonly dialog: number }
  | { readonly _tag: "Command"; readonly dialog: number }
  | { readonly _tag: "Yield"; readonly turns: number }

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.integer({ min: 0, max: DIALOGS - 1 }).map((dialog) => ({ _tag: "Event" as const, dialog })) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: DIALOGS - 1 }).map((dialog) => ({ _tag: "Command" as const, dialog })) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 5 }).map((turns) => ({ _tag: "Yield" as const, turns })) }
)

/** The bus's moods, replayed in a cycle: refuse a tryPublish or not, turns a publish takes. */
const moods = fc.record({
  refusals: fc.array(fc.boolean(), { minLength: 1, maxLength: 50 }),
  delays: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 50 }),
  ariDelays: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 50 })
})

const cycle = <A>(values: ReadonlyArray<A>) => {
  let i = 0
  return () => values[i++ % values.length]!
}

const turns = (count: number) => Effect.repeatN(Effect.yieldNow(), Math.max(0, count - 1)).pipe(Effect.when(() => count > 0))

const frame = (type: string, fields: Record<string, unknown>) =>
  JSON.stringify({ type, timestamp: "2026-11-30T10:28:16.331+0000", ...fields, asterisk_id: "a", application: "app" })
const channel = (id: string) => ({ id, name: `PJSIP/sipp-${id}`, state: "Up" })

describe("the dialog actor over a bus that refuses and delays", () => {
  it.effect.prop(
    "per-topic order and exactly once, for events and command answers",
    [fc.array(step, { minLength: 200, maxLength: 500 }), moods],
    ([steps, mood]) =>
      Effect.scoped(Effect.gen(function*() {
        const memory = yield* makeMemoryBus
        const refuse = cycle(mood.refusals)
        const delay = cycle(mood.delays)
        const ariDelay = cycle(mood.ariDelays)
        let refused = 0
        let delayed = 0
        const moody: BusShape = {
          ...memory,
          tryPublish: (topic, payload) => {
            if (refuse()) {
              refused++
              return false
            }
            return memory.tryPublish(topic, payload)
          },
          publish: (topic, payload) => {
            const wait = delay()
            if (wait > 0) delayed++
            return Effect.zipRight(turns(wait), memory.publish(topic, payload))
          }
        }
        const topics = makeTopics()
        const system = yield* makeActorSystem
        const router = new Router(
          {
            serverId: "s",
            topics,
            bus: moody,
            system,
            mailboxSize: 100_000,
            releaseAtOnce: () => false,
            machine: { holdEvents: false, maxHeldEvents: 100 },
            attachGraceMs: 1000,
            endedLingerMs: 1000,
            requestedDialogIdleMs: 1000,
            execute: (command, onReply) =>
              void system.runFork(Effect.map(
                turns(ariDelay()),
                () => onReply({ status: 200, body: JSON.stringify({ url: command.url }) }, undefined)
              )),
            counters: makeDialogCounters(),
            metrics: new ProxyMetrics()
          },
          makeRouterCounters(),
          "app"
        )

        // The application side listens on the plain bus before anything is published.
        const received = Array.from({ length: DIALOGS }, () => ({ seqs: [] as Array<number>, answers: [] as Array<string> }))
        const sent = Array.from({ length: DIALOGS }, () => ({ seqs: [] as Array<number>, commands: [] as Array<string> }))
        const dialogIds: Array<string> = []
        for (let i = 0; i < DIALOGS; i++) {
          const outcome = router.route(frame("StasisStart", { args: [], channel: channel(`C${i}`) }))
          if (outcome._tag !== "Routed") throw new Error("no dialog opened")
          const id = outcome.targets[0]!.id
          dialogIds.push(id)
          yield* memory.subscribe(topics.events(id), (payload) => {
            const event = JSON.parse(JSON.parse(payload).ari_body)
            if (event.type === "ChannelDtmfReceived") received[i]!.seqs.push(event.x_seq)
          })
          yield* memory.subscribe(topics.responses(id), (payload) => {
            received[i]!.answers.push(JSON.parse(payload).unique_id)
          })
        }
        // Every dialog's commands subscription is live (its AppStart has been announced).
        while (![...router.dialogs.values()].every((d) => d.state.announced)) yield* Effect.yieldNow()

        let seq = 0
        let unique = 0
        for (const s of steps) {
          switch (s._tag) {
            case "Event": {
              const n = ++seq
              sent[s.dialog]!.seqs.push(n)
              router.route(frame("ChannelDtmfReceived", { digit: "1", x_seq: n, channel: channel(`C${s.dialog}`) }))
              break
            }
            case "Command": {
              const id = `u${++unique}`
              sent[s.dialog]!.commands.push(id)
              const command = JSON.stringify({ unique_id: id, method: "GET", url: `/channels/C${s.dialog}`, body: "" })
              yield* memory.publish(topics.commands(dialogIds[s.dialog]!), command)
              break
            }
            case "Yield":
              yield* turns(s.turns)
          }
        }
        const settled = () =>
          received.every((r, i) => r.seqs.length >= sent[i]!.seqs.length && r.answers.length >= sent[i]!.commands.length)
        for (let guard = 0; !settled() && guard < 100_000; guard++) yield* Effect.yieldNow()
        for (let i = 0; i < DIALOGS; i++) {
          expect(received[i]!.seqs).toEqual(sent[i]!.seqs)
          expect(received[i]!.answers).toEqual(sent[i]!.commands)
        }
        // The bus really pushed back in this run, or the run proves little.
        fc.pre(refused > 0 && delayed > 0)
      })),
    { fastCheck: { numRuns: 60 } }
  )
})
