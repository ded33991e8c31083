/**
 * The examples, run against the simulator over every bus driver: the IVR (Effect client) with
 * both of its branches, and the outbound dialer (Promise client).
 */
import { readFileSync } from "node:fs"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Queue } from "effect"
import { makeAriClient } from "../../src/client/AriClient.js"
import { connectAriClient } from "../../src/client/promise.js"
import { dial } from "../../examples/dialer.js"
import { ivr, type IvrOutcome } from "../../examples/ivr.js"
import { eventually, startProxy, startSim } from "../support/harness.js"
import { drivers, uniqueApp } from "./drivers.js"

for (const driver of drivers) {
  describe(`examples over ${driver.name}`, () => {
    afterAll(driver.cleanup)

    /** Simulator, proxy and the IVR serving `app`; outcomes arrive on the returned queue. */
    const ivrRig = Effect.gen(function*() {
      const app = uniqueApp("ivr")
      const { proxyBus, clientBus } = yield* driver.connect
      const sim = yield* startSim({ timings: { playbackDurationMs: 200 } })
      yield* startProxy(sim, proxyBus, { applications: [app], endedLingerMs: 100 })
      const outcomes = yield* Queue.unbounded<IvrOutcome>()
      const client = yield* makeAriClient(clientBus, { application: app })
      yield* client.serve((dialog) =>
        ivr(dialog, { agentEndpoint: "PJSIP/alice", keyTimeoutMs: 500 }).pipe(
          Effect.flatMap((outcome) => Queue.offer(outcomes, outcome))
        )
      ).pipe(Effect.forkScoped)
      return { app, sim, outcomes }
    })

    it.scopedLive("IVR: key 1 bridges the caller to an agent; the call ends when the agent hangs up", () =>
      Effect.gen(function*() {
        const { app, sim, outcomes } = yield* ivrRig
        const caller = sim.placeCall({ app })
        yield* eventually(() => sim.playbacks().length > 0) // the menu is playing
        sim.sendDtmf(caller, "1", 10)
        yield* eventually(() => sim.bridges().some((b) => (b.channels as Array<string>).length === 2))
        const bridge = sim.bridges()[0]!
        expect(bridge.channels).toContain(caller)
        const agent = (bridge.channels as Array<string>).find((id) => id !== caller)!
        expect(sim.channels().find((c) => c.id === agent)?.name).toMatch(/^PJSIP\/alice-/)
        sim.hangup(agent)
        expect(yield* Queue.take(outcomes)).toBe("connected")
        yield* eventually(() => sim.channels().length === 0 && sim.bridges().length === 0)
      }))

    it.scopedLive("IVR: another key, or none, gets the goodbye and a hangup", () =>
      Effect.gen(function*() {
        const { app, sim, outcomes } = yield* ivrRig
        const first = sim.placeCall({ app })
        yield* eventually(() => sim.playbacks().length > 0)
        sim.sendDtmf(first, "9", 10)
        expect(yield* Queue.take(outcomes)).toBe("goodbye")
        sim.placeCall({ app }) // presses nothing: the key timeout says goodbye
        expect(yield* Queue.take(outcomes)).toBe("goodbye")
        yield* eventually(() => sim.channels().length === 0)
        const played = sim.requests().filter((r) => r.path.endsWith("/play")).map((r) => r.query.media)
        expect(played.filter((media) => media === "sound:demo-congrats")).toHaveLength(2)
      }))

    it.scopedLive("dialer: an app-initiated dialog, an originate into it, a message, a hangup", () =>
      Effect.gen(function*() {
        const app = uniqueApp("dialer")
        const { proxyBus, clientBus } = yield* driver.connect
        const sim = yield* startSim()
        yield* startProxy(sim, proxyBus, { applications: [app], endedLingerMs: 100 })
        const appStarts: Array<string> = []
        yield* Effect.orDie(proxyBus.subscribe(app, (payload) => Effect.sync(() => appStarts.push(payload))))
        const client = yield* Effect.acquireRelease(
          Effect.promise(() => connectAriClient({ bus: clientBus, application: app })),
          (client) => Effect.promise(() => client.close())
        )
        const result = yield* Effect.promise(() => dial(client, { endpoint: "PJSIP/bob" }))
        expect(result.answered).toBe(true)
        const originate = sim.requests().find((r) => r.method === "POST" && r.path === "/ari/channels")
        expect(originate?.query).toMatchObject({ endpoint: "PJSIP/bob", app, channelId: result.channelId })
        expect(sim.requests().some((r) => r.path === `/ari/channels/${result.channelId}/play`)).toBe(true)
        expect(sim.channels()).toHaveLength(0)
        expect(appStarts).toHaveLength(0) // no AppStart for an app-initiated dialog
      }))
  })
}

describe("the demo's IVR", () => {
  // A copy of examples/ivr.ts (the built package cannot import the example): the two must not drift.
  it("is examples/ivr.ts, but for its header comment and where it imports the client from", () => {
    const body = (file: string) =>
      readFileSync(new URL(file, import.meta.url), "utf8").split("\n")
        .filter((line) => !line.startsWith(" *") && !line.startsWith("/**") && !line.includes("import type { AriDialog }"))
        .join("\n")
    expect(body("../../src/demo/ivr.ts")).toBe(body("../../examples/ivr.ts"))
  })
})
