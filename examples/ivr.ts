/**
 * An IVR with the Effect client: answer, play a menu and read one key. 1 connects the caller to
 * an agent (a second leg, bridged with the first); any other key, or none, gets a goodbye.
 *
 *   AriClient.serve((dialog) => ivr(dialog, { agentEndpoint: "PJSIP/alice" }))
 */
import type { AriDialog } from "ari-proxy/client"
import { Effect, Option } from "effect"

export interface IvrOptions {
  /** Who the caller reaches with 1. */
  readonly agentEndpoint: string
  readonly menu?: string
  readonly goodbye?: string
  /** How long to wait for a key once the menu has started. */
  readonly keyTimeoutMs?: number
}

export type IvrOutcome = "connected" | "goodbye"

export const ivr = (dialog: AriDialog, options: IvrOptions) =>
  Effect.gen(function*() {
    const caller = yield* dialog.firstChannel
    yield* caller.answer()
    const menu = yield* caller.play({ media: options.menu ?? "sound:hello-world" })
    const key = yield* caller.waitForDtmf({ timeoutMs: options.keyTimeoutMs ?? 5_000 })
    // The caller need not listen to the end: stop the menu (it may have finished already).
    yield* menu.stop().pipe(Effect.catchTag("NotFound", () => Effect.void))

    if (Option.contains(key, "1")) {
      const agent = yield* dialog.channels.originate({ endpoint: options.agentEndpoint, callerId: "IVR <100>" })
      yield* agent.started
      const bridge = yield* dialog.bridges.create()
      yield* bridge.addChannel([caller, agent])
      // Whoever hangs up first ends the call for both (so one hangup finds nobody). The bridge
      // goes first: once the last channel has left, the dialog is over and takes no more requests.
      yield* Effect.raceFirst(caller.ended, agent.ended)
      yield* Effect.all([bridge.destroy(), agent.hangup(), caller.hangup()].map(Effect.ignore))
      return "connected" satisfies IvrOutcome
    }

    const goodbye = yield* caller.play({ media: options.goodbye ?? "sound:demo-congrats" })
    yield* goodbye.finished
    yield* caller.hangup()
    return "goodbye" satisfies IvrOutcome
  })
