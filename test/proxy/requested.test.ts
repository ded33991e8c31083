/**
 * App-initiated dialogs: an application asks a proxy for a dialog, then originates into it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Queue, TestClock, TestServices } from "effect"
import type { BusShape } from "../../src/bus/Bus.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { joinDialog } from "../support/apps.js"
import { makeRig, startProxy, startSim } from "../support/harness.js"

let requests = 0

/** Asks for a dialog on `topic` and waits for the grant. */
const requestDialog = (bus: BusShape, topic: string) =>
  Effect.gen(function*() {
    const replyTo = `replies_test_${++requests}`
    const grants = yield* Queue.unbounded<Record<string, any>>()
    yield* Effect.orDie(bus.subscribe(replyTo, (payload) => Queue.offer(grants, JSON.parse(payload))))
    yield* Effect.orDie(bus.publish(topic, JSON.stringify({ request_id: `r-${requests}`, reply_to: replyTo })))
    return yield* Queue.take(grants)
  })

describe("app-initiated dialogs", () => {
  it.scopedLive("an application gets a dialog, originates into it, and no AppStart is broadcast", () =>
    Effect.gen(function*() {
      const { bus } = yield* makeRig()
      const appStarts: Array<string> = []
      yield* Effect.orDie(bus.subscribe("app", (payload) => Effect.sync(() => appStarts.push(payload))))
      const grant = yield* requestDialog(bus, "dialogs_app")
      expect(grant).toMatchObject({ status_code: 201, server_id: "ast-test", application: "app" })
      const dialog = yield* joinDialog(bus, grant.dialog_id, grant.server_id)
      const originated = yield* dialog.request("POST", "/channels?endpoint=PJSIP/alice&app=app&channelId=out-1")
      expect(originated.status_code).toBe(200)
      const start = yield* dialog.waitFor("StasisStart")
      expect(start.ari.channel.id).toBe("out-1")
      expect(dialog.events.some((e) => e.type === "Dial")).toBe(true) // events before StasisStart too
      expect((yield* dialog.request("DELETE", "/channels/out-1")).status_code).toBe(204)
      const ended = yield* Deferred.await(dialog.ended)
      expect(ended.ari.reason).toBe("channels_left")
      expect(appStarts).toHaveLength(0)
    }))

  // On TestClock: the idle check is a timer of the dialogs' actor system (Effect's Clock).
  it.scoped("a dialog nobody puts a channel in ends as unused, once requested_dialog_idle_ms have passed", () =>
    Effect.gen(function*() {
      const { bus } = yield* makeRig({ config: { requestedDialogIdleMs: 100 } })
      const grant = yield* requestDialog(bus, "dialogs_app")
      const dialog = yield* joinDialog(bus, grant.dialog_id, grant.server_id)
      yield* TestClock.adjust(99)
      yield* TestServices.provideLive(Effect.sleep(20)) // an end would be published by now
      expect(yield* Deferred.isDone(dialog.ended)).toBe(false)
      yield* TestClock.adjust(1)
      const ended = yield* Deferred.await(dialog.ended)
      expect(ended.ari.reason).toBe("unused")
    }))

  it.scopedLive("a request naming a server_id reaches that proxy; an unnamed one reaches one proxy", () =>
    Effect.gen(function*() {
      const bus = yield* makeMemoryBus
      const simA = yield* startSim()
      const simB = yield* startSim()
      yield* startProxy(simA, bus, { serverId: "ast-a" })
      yield* startProxy(simB, bus, { serverId: "ast-b" })
      for (const target of ["ast-a", "ast-b"]) {
        const grant = yield* requestDialog(bus, `dialogs_app@${target}`)
        expect(grant.server_id).toBe(target)
        const dialog = yield* joinDialog(bus, grant.dialog_id, grant.server_id)
        yield* dialog.request("POST", `/channels?endpoint=PJSIP/bob&app=app&channelId=via-${target}`)
        yield* dialog.waitFor("StasisStart")
        yield* dialog.request("DELETE", `/channels/via-${target}`)
      }
      expect(simA.requests().some((r) => r.query.channelId === "via-ast-a")).toBe(true)
      expect(simB.requests().some((r) => r.query.channelId === "via-ast-b")).toBe(true)
      expect(simA.requests().some((r) => r.query.channelId === "via-ast-b")).toBe(false)
      const grants = []
      for (let i = 0; i < 4; i++) grants.push(yield* requestDialog(bus, "dialogs_app"))
      expect(grants.every((g) => g.status_code === 201)).toBe(true)
      expect(new Set(grants.map((g) => g.dialog_id)).size).toBe(4)
    }))
})
