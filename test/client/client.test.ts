/**
 * The Effect client against the simulator and the proxy on the in-memory bus.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Option, Scope, Stream } from "effect"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { makeAriClient } from "../../src/client/AriClient.js"
import type { AriDialog } from "../../src/client/dialog.js"
import { errorFromResponse } from "../../src/client/errors.js"
import { isUnknownAriEvent } from "../../src/client/generated/index.js"
import { makeRig } from "../support/harness.js"

/** Simulator + proxy + a client for application "app"; `nextDialog` takes the next dialog this client joins. */
const clientRig = (options: { readonly requestTimeoutMs?: number } = {}) =>
  Effect.gen(function*() {
    const bus = yield* makeMemoryBus
    const rig = yield* makeRig({ bus })
    const client = makeAriClient(bus, { application: "app", ...options })
    const pull = yield* Stream.toPull(client.dialogs)
    const nextDialog = Effect.map(Effect.orDie(pull), (chunk) => Chunk.unsafeHead(chunk))
    return { ...rig, bus, client, nextDialog }
  })

const callIn = (rig: { sim: { placeCall: (call: { app: string }) => string } }, nextDialog: Effect.Effect<AriDialog>) =>
  Effect.gen(function*() {
    const channelId = rig.sim.placeCall({ app: "app" })
    const dialog = yield* nextDialog
    return { channelId, dialog }
  })

describe("client: dialogs", () => {
  it.scopedLive("decodes typed events, answers, plays and sees the playback finish", () =>
    Effect.gen(function*() {
      const rig = yield* clientRig()
      const { channelId, dialog } = yield* callIn(rig, rig.nextDialog)
      const start = yield* dialog.waitFor("StasisStart")
      expect(start.channel.id).toBe(channelId)
      expect(start.channel.state).toBe("Ring")
      const caller = yield* dialog.firstChannel
      expect(caller.id).toBe(channelId)
      yield* caller.answer()
      const playback = yield* caller.play({ media: "sound:hello-world" })
      const finished = yield* playback.finished
      expect(finished.playback.state).toBe("done")
      expect((yield* caller.get()).state).toBe("Up")
      yield* caller.hangup()
      const end = yield* dialog.ended
      expect(end.reason).toBe("channels_left")
      const events = yield* Stream.runCollect(dialog.events)
      const types = Chunk.toReadonlyArray(events).map((e) => e.type)
      expect(types[0]).toBe("StasisStart")
      expect(types).toContain("PlaybackFinished")
      expect(types).not.toContain("DialogEnded")
      expect(Chunk.toReadonlyArray(events).some(isUnknownAriEvent)).toBe(false)
    }))

  it.scopedLive("reads DTMF pressed during a prompt, one digit per waitForDtmf, None after a timeout", () =>
    Effect.gen(function*() {
      const rig = yield* clientRig()
      const { channelId, dialog } = yield* callIn(rig, rig.nextDialog)
      const caller = yield* dialog.firstChannel
      yield* caller.answer()
      rig.sim.sendDtmf(channelId, "42", 5)
      expect(yield* caller.waitForDtmf()).toEqual(Option.some("4"))
      expect(yield* caller.waitForDtmf()).toEqual(Option.some("2"))
      expect(yield* caller.waitForDtmf({ timeoutMs: 50 })).toEqual(Option.none())
      const digits = yield* caller.dtmf.pipe(Stream.take(2), Stream.runCollect)
      expect(Chunk.toReadonlyArray(digits).join("")).toBe("42")
      yield* caller.hangup()
    }))
})
