/**
 * Isolation under pressure: the proxy never stops reading the ARI websocket (Asterisk drops a
 * reader that stalls, and every call shares that socket). A dialog whose events cannot be
 * published fast enough fills its own mailbox and is ended as `overloaded` on its own; every other
 * dialog's events are held and published in full, in order.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Queue } from "effect"
import type { BusShape } from "../../src/bus/Bus.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { startApp } from "../support/apps.js"
import { eventually, makeRig } from "../support/harness.js"

/**
 * The in-memory bus, except that while `blocked` no publish completes (RabbitMQ blocking its
 * publishers on a memory alarm, or a full confirm window): they wait, in order, for the unblock.
 */
const makeBlockableBus = Effect.gen(function*() {
  const bus = yield* makeMemoryBus
  const gate = yield* Effect.makeLatch(true)
  let blocked = false
  const blockable: BusShape = {
    ...bus,
    publish: (topic, payload) => Effect.zipRight(gate.await, bus.publish(topic, payload)),
    tryPublish: (topic, payload) => !blocked && bus.tryPublish(topic, payload)
  }
  return {
    bus: blockable,
    block: Effect.zipRight(Effect.sync(() => (blocked = true)), gate.close),
    unblock: Effect.zipRight(Effect.sync(() => (blocked = false)), gate.open)
  }
})

describe("isolation under pressure", () => {
  it.scopedLive("a flooded call under a blocked bus is ended as overloaded; a bystander call loses nothing", () =>
    Effect.gen(function*() {
      const { bus, block, unblock } = yield* makeBlockableBus
      const mailbox = 500
      const { sim, proxy } = yield* makeRig({ bus, config: { dialogMailboxSize: mailbox } })
      const dialogs = yield* startApp(bus, "app")
      const floodedChannel = sim.placeCall({ app: "app" })
      const flooded = yield* Queue.take(dialogs)
      const bystanderChannel = sim.placeCall({ app: "app" })
      const bystander = yield* Queue.take(dialogs)
      const before = yield* proxy.stats

      yield* block
      const flood = 20_000
      const floodDone = Effect.promise(() => sim.flood("app", flood, { channelId: floodedChannel }))
      // The bystander talks while the flood goes on and the bus is blocked.
      const digits = "0123456789*#ABCD".repeat(5)
      for (const digit of digits) sim.sendDtmf(bystanderChannel, digit, 5)
      yield* floodDone
      // Every frame was read: the socket was never paused, and never dropped.
      yield* eventually(() => Effect.runSync(proxy.stats).router.eventsReceived >= before.router.eventsReceived + flood)
      const during = yield* proxy.stats
      expect(during.ariReconnects).toBe(0)
      // Asterisk drops a websocket reader that stalls for its write timeout; the simulator too.
      expect(sim.slowReaderDrops()).toEqual([])
      expect(yield* proxy.ready).toBe(true)
      expect(during.dialogs.eventsDropped).toBeGreaterThan(0)
      yield* unblock

      const ended = yield* Deferred.await(flooded.ended)
      expect(ended.ari.reason).toBe("overloaded")
      // The bystander's digits all arrive, in order.
      const bystanderDigits = () =>
        bystander.events.filter((e) => e.type === "ChannelDtmfReceived").map((e) => e.ari.digit as string).join("")
      yield* eventually(() => bystanderDigits().length >= digits.length)
      expect(bystanderDigits()).toBe(digits)
      expect(bystander.events.some((e) => e.type === "DialogEnded")).toBe(false)

      // Nothing silent: every flood frame was published to the flooded dialog, dropped and
      // counted, or (after its end) published on unrouted_<app> and counted.
      const after = yield* proxy.stats
      const published = flooded.events.filter((e) => e.type === "ChannelDtmfReceived").length
      const unrouted = after.router.eventsUnrouted - before.router.eventsUnrouted
      expect(published + after.dialogs.eventsDropped + unrouted).toBe(flood)
      expect(published).toBeLessThanOrEqual(mailbox + 1)
      // The bystander's commands still work.
      const answer = yield* bystander.request("POST", `/channels/${bystanderChannel}/answer`)
      expect(answer.status_code).toBe(204)
    }))
})
