/**
 * The Promise facade: the same client for applications that do not use Effect.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import { makeNatsBus } from "../../src/bus/nats/index.js"
import { NotFound } from "../../src/client/errors.js"
import { type AriClientPromise, connectAriClient, type ConnectOptions } from "../../src/client/promise.js"
import { eventually, makeRig, startProxy, startSim } from "../support/harness.js"
import { uniqueApp } from "./drivers.js"

const connect = (options: ConnectOptions): Effect.Effect<AriClientPromise, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => connectAriClient(options)),
    (client) => Effect.promise(() => client.close())
  )

describe("client: Promise facade", () => {
  it.scopedLive("handles inbound calls with async handlers; errors are the same classes", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig()
      const client = yield* connect({ bus, application: "app" })
      const seen: Array<{ types: Array<string>; digit: string | undefined; missing: unknown }> = []
      const stop = yield* Effect.promise(() =>
        client.onDialog(async (dialog) => {
          const caller = await dialog.firstChannel()
          await caller.answer()
          const prompt = await caller.play({ media: "sound:hello-world" })
          await prompt.finished
          const digit = await caller.waitForDtmf({ timeoutMs: 2_000 })
          const missing = await dialog.channel("no-such-channel").hangup().catch((error: unknown) => error)
          await caller.hangup()
          await dialog.ended
          const types: Array<string> = []
          for await (const event of dialog.events()) types.push(event.type)
          seen.push({ types, digit, missing })
        })
      )
      const channelId = sim.placeCall({ app: "app" })
      yield* eventually(() => sim.playbacks().length > 0)
      sim.sendDtmf(channelId, "7", 10)
      yield* eventually(() => seen.length === 1)
      const [result] = seen
      expect(result!.digit).toBe("7")
      expect(result!.missing).toBeInstanceOf(NotFound)
      expect((result!.missing as NotFound).status).toBe(404)
      expect(result!.types).toEqual(expect.arrayContaining(["StasisStart", "PlaybackFinished", "ChannelDtmfReceived"]))
      yield* Effect.promise(() => stop())
    }))

  it.scopedLive("connects to NATS by name, creates a dialog and uses the generated ARI surface", () =>
    Effect.gen(function*() {
      const app = uniqueApp("promise")
      const proxyBus = yield* makeNatsBus({ servers: "nats://127.0.0.1:4222", name: "promise-proxy" })
      const sim = yield* startSim()
      yield* startProxy(sim, proxyBus, { applications: [app], endedLingerMs: 100 })
      const client = yield* connect({ bus: "nats", application: app })
      expect(client.bus.driver).toBe("nats")
      const dialog = yield* Effect.promise(() => client.createDialog())
      const result = yield* Effect.promise(async () => {
        const callee = await dialog.channels.originate({ endpoint: "PJSIP/alice", callerId: "Test <1>" })
        await callee.started
        const listed = await dialog.ari.channels.list()
        await callee.hangup()
        const ended = await dialog.ended
        return { callee: callee.id, listed: listed.map((c) => c.id), ended }
      })
      expect(result.listed).toContain(result.callee)
      expect(result.ended.reason).toBe("channels_left")
      expect(sim.requests().some((r) => r.query.channelId === result.callee)).toBe(true)
    }))
})
