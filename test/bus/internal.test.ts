import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit } from "effect"
import { type ActorSystem, makeActorSystem } from "../../src/actor/ActorSystem.js"
import { Fifo } from "../../src/actor/Fifo.js"
import { queuedInbox, SubscriptionInbox } from "../../src/bus/inbox.js"
import { captureLogs } from "./natsServer.js"

describe("bus internals", () => {
  it("Fifo keeps order through shifts, compaction and prepends", () => {
    const fifo = new Fifo<number>()
    for (let i = 0; i < 5000; i++) fifo.push(i)
    for (let i = 0; i < 3000; i++) expect(fifo.shift()).toBe(i)
    fifo.prependAll([-2, -1])
    expect(fifo.length).toBe(2002)
    expect(fifo.peek()).toBe(-2)
    const all = fifo.takeAll()
    expect(all.slice(0, 3)).toEqual([-2, -1, 3000])
    expect(all.at(-1)).toBe(4999)
    expect(fifo.length).toBe(0)
    expect(fifo.shift()).toBeUndefined()
  })

  it.scoped("a memory-bus inbox handles one item at a time, in order, never inside offer's caller", () =>
    Effect.gen(function*() {
      const system = yield* makeActorSystem
      const handled: Array<number> = []
      const inbox = queuedInbox(system, "memory-like", (n: number) => {
        handled.push(n)
      })
      for (let i = 0; i < 100; i++) inbox.offer(i)
      expect(handled).toEqual([]) // a handler may publish back: never inside the publisher's call
      yield* inbox.awaitIdle
      expect(handled).toEqual(Array.from({ length: 100 }, (_, i) => i))
    }))

  it.scoped("a subscription inbox: synchronous handling in the callback, no actor until a handler returns an effect", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const system = yield* logs.capturing(makeActorSystem) // its actors log with the logger it was made with
      const gate = yield* Deferred.make<void>()
      const lastHandled = yield* Deferred.make<void>()
      const order: Array<string> = []
      const inbox = new RecordingInbox(system, (item) => {
        if (item === "throws") throw new Error("handler bug")
        if (item === "slow") return Effect.zipRight(Deferred.await(gate), Effect.sync(() => order.push(item)))
        order.push(item)
        if (item === "last") Deferred.unsafeDone(lastHandled, Exit.void)
      })
      inbox.offer("first")
      inbox.offer("throws") // logged, and the next message is handled as usual
      inbox.offer("second")
      expect(order).toEqual(["first", "second"])
      expect(system.size()).toBe(0) // 10,000 idle dialogs hold no actor for their commands
      inbox.offer("slow")
      inbox.offer("after")
      expect(order).toEqual(["first", "second"]) // waits behind the effect
      expect(system.size()).toBe(1)
      yield* Deferred.succeed(gate, undefined)
      inbox.offer("last")
      yield* Deferred.await(lastHandled)
      expect(order).toEqual(["first", "second", "slow", "after", "last"])
      expect(logs.lines.filter((line) => line.message === "actor failed").map((line) => line.annotations.actor)).toEqual([
        "commands_x"
      ])
      inbox.stopInbox()
      inbox.offer("late")
      expect(order.at(-1)).toBe("last")
      expect(system.size()).toBe(0)
    }))
})

class RecordingInbox extends SubscriptionInbox<string> {
  constructor(system: ActorSystem, private readonly handler: (item: string) => Effect.Effect<void> | void) {
    super(system, "commands_x")
  }

  protected handle(item: string): Effect.Effect<void> | void {
    return this.handler(item)
  }
}
