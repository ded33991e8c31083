import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { Fifo, makeInbox, redactUrl } from "../../src/bus/internal.js"

describe("bus internals", () => {
  it("redacts credentials from URLs, and only them", () => {
    expect(redactUrl("amqp://guest:secret@rabbit:5672/vhost")).toBe("amqp://***@rabbit:5672/vhost")
    expect(redactUrl("nats://token@127.0.0.1:4222")).toBe("nats://***@127.0.0.1:4222")
    expect(redactUrl("nats://127.0.0.1:4222")).toBe("nats://127.0.0.1:4222")
    expect(redactUrl("amqps://u:p%40ss@host/%2F")).toBe("amqps://***@host/%2F")
  })

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

  it.live("an inbox handles one item at a time in order, on the scheduler, and stops when its scope closes", () =>
    Effect.gen(function*() {
      const handled: Array<number> = []
      let running = 0
      let maxRunning = 0
      const gate = yield* Deferred.make<void>()
      const scope = yield* Scope.make()
      const offer = yield* makeInbox((n: number) =>
        Effect.gen(function*() {
          running++
          maxRunning = Math.max(maxRunning, running)
          if (n === 0) yield* Deferred.await(gate) // the first item blocks: the others wait their turn
          if (n % 7 === 0) yield* Effect.sleep("1 millis")
          handled.push(n)
          running--
        })
      ).pipe(Scope.extend(scope))
      for (let i = 0; i < 100; i++) offer(i)
      expect(handled).toEqual([]) // never inside offer's caller
      yield* Effect.sleep("20 millis")
      expect(handled).toEqual([])
      yield* Deferred.succeed(gate, undefined)
      while (handled.length < 100) yield* Effect.sleep("2 millis")
      expect(handled).toEqual(Array.from({ length: 100 }, (_, i) => i))
      expect(maxRunning).toBe(1)
      // Idle again: later items start a new worker.
      offer(100)
      while (handled.length < 101) yield* Effect.sleep("2 millis")
      // Closing interrupts the running handler and drops what waits.
      const blocked = yield* Deferred.make<void>()
      const late = yield* makeInbox((n: number) =>
        n === 0 ? Deferred.await(blocked) : Effect.sync(() => handled.push(n))
      ).pipe(Scope.extend(scope))
      late(0)
      late(999)
      yield* Effect.sleep("10 millis")
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* Fiber.join(closing)
      late(1000)
      yield* Effect.sleep("20 millis")
      expect(handled.includes(999) || handled.includes(1000)).toBe(false)
    }))
})
