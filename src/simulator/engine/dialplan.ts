/**
 * The dialplan: the simulator's extensions run step by step, and the Stasis() application a
 * channel enters and leaves.
 */
import type { Channel } from "../state.js"
import { channelSnapshot } from "../state.js"
import { leaveBridge } from "./bridges.js"
import { hangup, setState, setVariable } from "./channels.js"
import { parseBroadcastData, startBroadcast } from "./broadcast.js"
import type { Engine } from "./core.js"

/** Enters Stasis the way the Stasis() dialplan application does (STASISSTATUS, then StasisStart). */
export const enterStasis = (
  engine: Engine,
  channel: Channel,
  app: string,
  args: ReadonlyArray<string>,
  viaDialplanApp: boolean
): void => {
  if (viaDialplanApp) {
    channel.dialplan = { ...channel.dialplan, appName: "Stasis", appData: [app, ...args].join(",") }
    setVariable(engine, channel, "STASISSTATUS", "")
  }
  const perCall = engine.hub.perCallApps.get(app)
  if (perCall !== undefined) {
    // a per_call_config app: the call's own socket first, then StasisStart on it (ari-modes §1.6)
    perCall(channel.id, app, args)
    return
  }
  channel.stasisApp = app
  // StasisStart and StasisEnd go to the Stasis application only, not to other subscribers
  engine.hub.deliver(engine.ev.stasisStart(channelSnapshot(channel), args), [app])
}

export const leaveStasis = (engine: Engine, channel: Channel): void => {
  if (channel.stasisApp === undefined) return
  if (channel.bridgeId !== undefined) leaveBridge(engine, channel)
  engine.hub.deliver(engine.ev.stasisEnd(channelSnapshot(channel)), [channel.stasisApp])
  channel.stasisApp = undefined
}

/**
 * Runs the simulator's dialplan from a priority. Answer, NoOp, Set, Stasis, StasisBroadcast and Hangup act;
 * any other application (Wait, Playback…) leaves the channel there. Returns false for an unknown extension.
 */
export const runDialplan = (
  engine: Engine,
  channel: Channel,
  context: string,
  exten: string,
  priority: number
): boolean => {
  const steps = engine.options.dialplan[context]?.[exten]
  if (steps === undefined || priority > steps.length) {
    channel.dialplan = { context, exten, priority, appName: "", appData: "" }
    return false
  }
  for (let p = priority; p <= steps.length; p++) {
    if (!engine.alive(channel)) return true
    const step = steps[p - 1]
    if (step === undefined) break
    const data = step.data ?? ""
    channel.dialplan = { context, exten, priority: p, appName: step.app, appData: data }
    engine.emitToChannel(channel, engine.ev.channelDialplan(channelSnapshot(channel), step.app, data))
    switch (step.app) {
      case "Answer":
        setState(engine, channel, "Up")
        continue
      case "NoOp":
        continue
      case "Set": {
        const eq = data.indexOf("=")
        if (eq > 0) setVariable(engine, channel, data.slice(0, eq), data.slice(eq + 1))
        continue
      }
      case "Stasis": {
        const [app = "", ...args] = data.split(",")
        enterStasis(engine, channel, app, args, true)
        return true
      }
      case "StasisBroadcast":
        startBroadcast(engine, channel, parseBroadcastData(data))
        return true
      case "Hangup":
        hangup(engine, channel, { kind: "remote", cause: 16 })
        return true
      default:
        return true
    }
  }
  return true
}
