import { describe, expect, it } from "@effect/vitest"
import { Fifo, redactUrl } from "../../src/bus/internal.js"

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
})
