/**
 * The lease clock of a dialog actor, on TestClock: an owner that stops renewing is replaced after
 * the lease, but not while the bus is down (nobody could renew then: a broker restart must not
 * hand every call to another instance).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { makeActorSystem } from "../../src/actor/ActorSystem.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { makeDialogCounters } from "../../src/dialog/actor.js"
import { ProxyMetrics } from "../../src/observability/metrics.js"
import { makeTopics } from "../../src/protocol/topics.js"
import { makeRouterCounters, Router } from "../../src/proxy/router.js"

const LEASE_MS = 1000

const stasisStart = (id: string) =>
  JSON.stringify({
    type: "StasisStart",
    timestamp: "2026-11-30T10:28:16.331+0000",
    args: [],
    channel: { id, name: `PJSIP/sipp-${id}`, state: "Up" },
    application: "app"
  })

/** Lets the actors' fibers run after the clock moved. */
const settle = Effect.repeatN(Effect.yieldNow(), 50)

describe("dialog lease clock", () => {
  it.scoped("lapses after the lease without renewal, and never while the bus is down", () =>
    Effect.gen(function*() {
      const bus = yield* makeMemoryBus
      const topics = makeTopics()
      let connected = true
      const router = new Router(
        {
          serverId: "s",
          topics,
          bus,
          busConnected: () => connected,
          system: yield* makeActorSystem,
          mailboxSize: 1_000,
          releaseAtOnce: () => false,
          machine: { holdEvents: true, maxHeldEvents: 100, leaseMs: LEASE_MS },
          attachGraceMs: 500,
          endedLingerMs: 1000,
          requestedDialogIdleMs: 60_000,
          execute: (_command, onReply) => onReply({ status: 200, body: "{\"id\":\"A\"}" }, undefined),
          counters: makeDialogCounters(),
          metrics: new ProxyMetrics()
        },
        makeRouterCounters(),
        "app"
      )
      const offers: Array<{ resumed?: boolean }> = []
      yield* bus.subscribe(topics.app("app"), (payload) => Effect.sync(() => offers.push(JSON.parse(payload))))
      const outcome = router.route(stasisStart("A"))
      if (outcome._tag !== "Routed") throw new Error("no dialog opened")
      const dialog = outcome.targets[0]!
      yield* settle
      expect(offers).toEqual([expect.objectContaining({ dialog_id: dialog.id })]) // the first AppStart
      dialog.input({
        _tag: "Command",
        command: { unique_id: "a", method: "ATTACH", url: "", body: JSON.stringify({ lease: true, owner: "x" }) }
      })
      yield* settle

      connected = false
      yield* TestClock.adjust(LEASE_MS * 5)
      yield* settle
      expect(offers).toHaveLength(1) // the bus was down: nobody could renew, nothing lapsed

      connected = true
      yield* TestClock.adjust(LEASE_MS / 2)
      yield* settle
      expect(offers).toHaveLength(1) // back, and the owner still has time to renew
      yield* TestClock.adjust(LEASE_MS)
      yield* settle
      expect(offers).toHaveLength(2)
      expect(offers[1]).toMatchObject({ dialog_id: dialog.id, resumed: true, last_seq: 0 })
    }))
})
