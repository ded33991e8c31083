/**
 * A dialog whose mailbox stays full is dealt with explicitly: ARI reading pauses for a while, then
 * that dialog alone is aborted ("overloaded") and every other call goes on.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Queue } from "effect"
import type { BusShape } from "../../src/bus/Bus.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { startApp } from "../support/apps.js"
import { eventually, makeRig } from "../support/harness.js"

/** The in-memory bus, except that publishes to the `slow` topics take 20 ms each (a stuck consumer). */
const makeSlowBus = (slow: Set<string>) =>
  Effect.map(makeMemoryBus, (bus): BusShape => ({
    ...bus,
    publish: (topic, payload) =>
      slow.has(topic) ? Effect.zipRight(Effect.sleep(20), bus.publish(topic, payload)) : bus.publish(topic, payload),
    tryPublish: (topic, payload) => !slow.has(topic) && bus.tryPublish(topic, payload)
  }))

describe("overload", () => {
  it.scopedLive("a stuck dialog is aborted as overloaded; the others keep going", () =>
    Effect.gen(function*() {
      const slow = new Set<string>()
      const bus = yield* makeSlowBus(slow)
      const { sim, proxy } = yield* makeRig({ bus, config: { dialogMailboxSize: 20, mailboxStallMs: 200 } })
      const dialogs = yield* startApp(bus, "app")
      const stuckChannel = sim.placeCall({ app: "app" })
      const stuck = yield* Queue.take(dialogs)
      const healthyChannel = sim.placeCall({ app: "app" })
      const healthy = yield* Queue.take(dialogs)
      slow.add(`events_${stuck.dialogId}`)
      const before = yield* proxy.stats

      yield* Effect.promise(() => sim.flood("app", 500, { channelId: stuckChannel }))
      const ended = yield* Deferred.await(stuck.ended)
      expect(ended.ari.reason).toBe("overloaded")
      let stats = yield* proxy.stats
      yield* eventually(() => {
        Effect.runSync(Effect.map(proxy.stats, (s) => (stats = s)))
        return stats.router.eventsReceived >= before.router.eventsReceived + 500
      })
      expect(stats.dialogs.eventsDropped).toBeGreaterThan(0)
      // nothing silent: every flood frame was published to the dialog, dropped and counted, or
      // (after DialogEnded) published on unrouted_<app> and counted
      const published = stuck.events.filter((e) => e.type === "ChannelDtmfReceived").length
      const unrouted = stats.router.eventsUnrouted - before.router.eventsUnrouted
      expect(published + stats.dialogs.eventsDropped + unrouted).toBe(500)

      sim.sendDtmf(healthyChannel, "9", 5)
      const dtmf = yield* healthy.waitFor("ChannelDtmfReceived")
      expect(dtmf.ari.digit).toBe("9")
      expect(yield* proxy.ready).toBe(true)
    }))
})
