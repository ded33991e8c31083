/**
 * The far end of calls, driven by the control API: a phone calls in, sends DTMF, answers a call
 * the simulator dialled, hangs up.
 */
import { ControlError } from "../errors.js"
import type { CallerId, Channel } from "../state.js"
import { channelSnapshot, parseCallerId } from "../state.js"
import { hangup, newChannel, setState, setVariable } from "./channels.js"
import type { Engine } from "./core.js"
import { parseBroadcastData, startBroadcast } from "./broadcast.js"
import { enterStasis } from "./dialplan.js"
import { calleeAnswered } from "./outbound.js"

export interface InboundCall {
  readonly app: string
  readonly endpoint?: string
  readonly caller?: string | Partial<CallerId>
  readonly exten?: string
  readonly context?: string
  readonly args?: ReadonlyArray<string>
  readonly channelId?: string
}

/** A call whose dialplan offers it with `StasisBroadcast(timeoutMs,appFilter,args,notifyClaimed)`. */
export interface BroadcastCall extends Omit<InboundCall, "app"> {
  /** Default 500 (0–60000). */
  readonly timeoutMs?: number
  /** A regular expression on application names; without it every application gets the offer. */
  readonly appFilter?: string
  readonly notifyClaimed?: boolean
}

/** The phone's side of an inbound call: the channel, up to the dialplan's first priority. */
const ringIn = (engine: Engine, call: Omit<InboundCall, "app">): Channel => {
  if (call.channelId !== undefined && engine.channels.has(call.channelId)) {
    throw new ControlError(409, `channel ${call.channelId} already exists`)
  }
  const endpoint = call.endpoint ?? "PJSIP/sipp"
  const resource = endpoint.slice(endpoint.indexOf("/") + 1)
  const caller: CallerId = typeof call.caller === "string"
    ? parseCallerId(call.caller)
    : { name: call.caller?.name ?? resource, number: call.caller?.number ?? resource }
  const exten = call.exten ?? "100"
  const context = call.context ?? engine.options.context
  engine.inboundCount++
  const channel = newChannel(engine, {
    id: call.channelId ?? engine.nextUniqueId(),
    tech: "PJSIP",
    endpoint,
    nameResource: resource,
    state: "Ring",
    caller,
    connected: { name: "", number: "" },
    dialplan: { context, exten, priority: 1, appName: "", appData: "" },
    origin: "inbound",
    // the very first ChannelCreated has no Call-ID yet
    protocolId: ""
  })
  engine.emitToChannel(channel, engine.ev.channelCreated(channelSnapshot(channel)))
  channel.protocolId = `${engine.inboundCount}-${20000 + engine.inboundCount}@127.0.0.1`
  setVariable(engine, channel, "SIPDOMAIN", "127.0.0.1")
  const noOpData = `Incoming call to ${exten} from "${caller.name}" <${caller.number}>`
  channel.dialplan = { context, exten, priority: 1, appName: "NoOp", appData: noOpData }
  engine.emitToChannel(channel, engine.ev.channelDialplan(channelSnapshot(channel), "NoOp", noOpData))
  return channel
}

export const placeInboundCall = (engine: Engine, call: InboundCall): Channel => {
  if (!engine.hub.isRegistered(call.app)) {
    throw new ControlError(409, `application ${call.app} is not registered (no websocket connected)`)
  }
  const channel = ringIn(engine, call)
  const { context, exten } = channel.dialplan
  const args = call.args ?? []
  const stasisData = [call.app, ...args].join(",")
  channel.dialplan = { context, exten, priority: 2, appName: "Stasis", appData: stasisData }
  engine.emitToChannel(channel, engine.ev.channelDialplan(channelSnapshot(channel), "Stasis", stasisData))
  enterStasis(engine, channel, call.app, args, true)
  return channel
}

/**
 * An inbound call offered by StasisBroadcast at priority 2 of its extension. Unclaimed, it goes on
 * at priority 3 of the simulator's dialplan for that extension, or hangs up when there is none.
 */
export const placeBroadcastCall = (engine: Engine, call: BroadcastCall): Channel => {
  const channel = ringIn(engine, call)
  const data = [call.timeoutMs ?? "", call.appFilter ?? "", (call.args ?? []).join(":"), call.notifyClaimed ? "yes" : "no"]
    .join(",")
  const { context, exten } = channel.dialplan
  channel.dialplan = { context, exten, priority: 2, appName: "StasisBroadcast", appData: data }
  engine.emitToChannel(channel, engine.ev.channelDialplan(channelSnapshot(channel), "StasisBroadcast", data))
  startBroadcast(engine, channel, parseBroadcastData(data))
  return channel
}

export const sendDtmfFromRemote = (engine: Engine, id: string, digits: string, durationMs: number): void => {
  const channel = engine.channels.get(id)
  if (channel === undefined || channel.hangingUp) throw new ControlError(404, `channel ${id} not found`)
  for (const digit of digits) {
    engine.emitToChannel(channel, engine.ev.channelDtmfReceived(channelSnapshot(channel), digit, durationMs))
  }
}

export const hangupFromRemote = (engine: Engine, id: string, cause = 16): void => {
  const channel = engine.channels.get(id)
  if (channel === undefined || channel.hangingUp) throw new ControlError(404, `channel ${id} not found`)
  hangup(engine, channel, { kind: "remote", cause })
}

/** The far end answers a dialled channel (when `autoAnswer` is off). */
export const answerFromRemote = (engine: Engine, id: string): void => {
  const channel = engine.channels.get(id)
  if (channel === undefined || channel.hangingUp) throw new ControlError(404, `channel ${id} not found`)
  if (channel.state === "Up") return
  if (channel.dialled) calleeAnswered(engine, channel)
  else setState(engine, channel, "Up")
}
