/**
 * Supervision: a defect inside one dialog (here: the bus driver dies while publishing one of its
 * events) is logged with the dialog's id, ends that dialog with reason `failed`, and leaves the
 * proxy and every other call as they were.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Queue } from "effect"
import type { BusShape } from "../../src/bus/Bus.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { startApp } from "../support/apps.js"
import { makeRig } from "../support/harness.js"

describe("supervision", () => {
  it.scopedLive("a dialog whose work dies ends as failed; the proxy and the other calls go on", () =>
    Effect.gen(function*() {
      const memory = yield* makeMemoryBus
      const poisoned = new Set<string>()
      const bus: BusShape = {
        ...memory,
        tryPublish: (topic, payload) => !poisoned.has(topic) && memory.tryPublish(topic, payload),
        publish: (topic, payload) => {
          if (!poisoned.delete(topic)) return memory.publish(topic, payload)
          return Effect.die(new Error("the driver broke"))
        }
      }
      const { sim, proxy } = yield* makeRig({ bus })
      const dialogs = yield* startApp(bus, "app")
      const victimChannel = sim.placeCall({ app: "app" })
      const victim = yield* Queue.take(dialogs)
      const otherChannel = sim.placeCall({ app: "app" })
      const other = yield* Queue.take(dialogs)

      poisoned.add(`events_${victim.dialogId}`)
      sim.sendDtmf(victimChannel, "1", 5)
      const ended = yield* Deferred.await(victim.ended)
      expect(ended.ari.reason).toBe("failed")

      expect(yield* proxy.ready).toBe(true)
      sim.sendDtmf(otherChannel, "7", 5)
      expect((yield* other.waitFor("ChannelDtmfReceived")).ari.digit).toBe("7")
      const answer = yield* other.request("POST", `/channels/${otherChannel}/answer`)
      expect(answer.status_code).toBe(204)
    }))
})
