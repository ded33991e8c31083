import { describe, expect, it } from "@effect/vitest"
import { TimerQueue } from "../../src/dialog/timers.js"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe("timer queue", () => {
  it("fires each callback once, after its delay, in deadline order across delays", async () => {
    const timers = new TimerQueue()
    const fired: Array<string> = []
    const started = Date.now()
    const at: Record<string, number> = {}
    const mark = (name: string) => () => {
      fired.push(name)
      at[name] = Date.now() - started
    }
    timers.schedule(60, mark("b60"))
    timers.schedule(20, mark("a20"))
    timers.schedule(60, mark("c60"))
    timers.schedule(40, mark("d40"))
    expect(timers.pending).toBe(4)
    await sleep(120)
    expect(fired).toEqual(["a20", "d40", "b60", "c60"])
    expect(at.a20).toBeGreaterThanOrEqual(19)
    expect(at.b60).toBeGreaterThanOrEqual(59)
    expect(timers.pending).toBe(0)
  })

  it("a callback may schedule again, including a shorter delay than the one armed", async () => {
    const timers = new TimerQueue()
    const fired: Array<string> = []
    timers.schedule(100, () => fired.push("late"))
    timers.schedule(10, () => {
      fired.push("first")
      timers.schedule(10, () => fired.push("again"))
    })
    await sleep(60)
    expect(fired).toEqual(["first", "again"])
    await sleep(80)
    expect(fired).toEqual(["first", "again", "late"])
  })

  it("close drops everything pending", async () => {
    const timers = new TimerQueue()
    let fired = false
    timers.schedule(10, () => (fired = true))
    timers.close()
    timers.schedule(10, () => (fired = true))
    await sleep(40)
    expect(fired).toBe(false)
  })
})
