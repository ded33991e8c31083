import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { makeActorSystem } from "../../src/actor/ActorSystem.js"
import { Fifo } from "../../src/actor/Fifo.js"
import { spawnInbox } from "../../src/bus/internal.js"

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

  it.scoped("an inbox handles one item at a time in order; inline only when the driver allows it", () =>
    Effect.gen(function*() {
      const system = yield* makeActorSystem
      const handled: Array<number> = []
      const deferred = spawnInbox(system, "memory-like", { inline: false }, (n: number) => {
        handled.push(n)
      })
      for (let i = 0; i < 100; i++) deferred.offer(i)
      expect(handled).toEqual([]) // never inside offer's caller: a handler may publish back
      yield* deferred.awaitIdle
      expect(handled).toEqual(Array.from({ length: 100 }, (_, i) => i))

      // Inline: handled in the driver's callback while nothing waits; an effect makes the next wait.
      const gate = yield* Deferred.make<void>()
      const order: Array<string> = []
      const inline = spawnInbox(system, "nats-like", { inline: true }, (item: string) =>
        item === "slow" ? Effect.zipRight(Deferred.await(gate), Effect.sync(() => order.push(item))) : void order.push(item)
      )
      inline.offer("first")
      expect(order).toEqual(["first"])
      inline.offer("slow")
      inline.offer("after")
      expect(order).toEqual(["first"])
      yield* Deferred.succeed(gate, undefined)
      yield* inline.awaitIdle
      expect(order).toEqual(["first", "slow", "after"])
      inline.stop()
      expect(inline.offer("late")).toBe(false)
    }))
})
