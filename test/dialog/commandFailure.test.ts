/**
 * Supervision of a command's ARI request, which runs without a fiber: a defect where the request
 * is made is answered 500 and ends that dialog as `failed`; the next dialog's commands still work.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Queue } from "effect"
import { makeActorSystem } from "../../src/actor/ActorSystem.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { makeDialogCounters } from "../../src/dialog/actor.js"
import { ProxyMetrics } from "../../src/observability/metrics.js"
import { makeTopics } from "../../src/protocol/topics.js"
import { makeRouterCounters, Router } from "../../src/proxy/router.js"

const channel = (id: string) => ({ id, name: `PJSIP/sipp-${id}`, state: "Up" })
const stasisStart = (id: string) =>
  JSON.stringify({ type: "StasisStart", timestamp: "2026-11-30T10:28:16.331+0000", args: [], channel: channel(id), application: "app" })

describe("a command's ARI request", () => {
  it.scoped("that dies where it is made is answered 500 and ends its dialog as failed; others go on", () =>
    Effect.gen(function*() {
      const bus = yield* makeMemoryBus
      const topics = makeTopics()
      const router = new Router(
        {
          serverId: "s",
          topics,
          bus,
          system: yield* makeActorSystem,
          mailboxSize: 1_000,
          releaseAtOnce: () => false,
          machine: { holdEvents: false, maxHeldEvents: 100 },
          attachGraceMs: 1000,
          endedLingerMs: 1000,
          requestedDialogIdleMs: 1000,
          execute: (command, onReply) => {
            if (command.url.includes("poison")) throw new Error("the request primitive broke")
            onReply({ status: 204, body: "" }, undefined)
          },
          counters: makeDialogCounters(),
          metrics: new ProxyMetrics()
        },
        makeRouterCounters(),
        "app"
      )
      const open = (channelId: string) =>
        Effect.gen(function*() {
          const outcome = router.route(stasisStart(channelId))
          if (outcome._tag !== "Routed") throw new Error("no dialog opened")
          const dialog = outcome.targets[0]!
          const responses = yield* Queue.unbounded<{ unique_id: string; status_code: number }>()
          const events = yield* Queue.unbounded<{ type: string; reason?: string }>()
          yield* bus.subscribe(topics.responses(dialog.id), (payload) => Queue.offer(responses, JSON.parse(payload)))
          yield* bus.subscribe(topics.events(dialog.id), (payload) => Queue.offer(events, JSON.parse(JSON.parse(payload).ari_body)))
          return { dialog, responses, events }
        })

      const victim = yield* open("A")
      victim.dialog.input({ _tag: "Command", command: { unique_id: "1", method: "POST", url: "/channels/A/poison", body: "" } })
      expect(yield* Queue.take(victim.responses)).toMatchObject({ unique_id: "1", status_code: 500 })
      let event = yield* Queue.take(victim.events)
      while (event.type !== "DialogEnded") event = yield* Queue.take(victim.events)
      expect(event.reason).toBe("failed")

      const other = yield* open("B")
      other.dialog.input({ _tag: "Command", command: { unique_id: "2", method: "POST", url: "/channels/B/answer", body: "" } })
      expect(yield* Queue.take(other.responses)).toMatchObject({ unique_id: "2", status_code: 204 })
    }))
})
