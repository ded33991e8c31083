/**
 * Channels: their creation, state and variables, the operations on one channel (answer, hangup,
 * continue, move, snoop), and the hangup sequence.
 */
import { ariError, channelNotFound, invalidState, notInStasis } from "../errors.js"
import { rtpQosVariables } from "../events.js"
import type { CallerId, Channel, ChannelOrigin, ChannelStateName, DialplanLocation } from "../state.js"
import { asteriskTimestamp, causeText, channelSnapshot, hangupReasons } from "../state.js"
import { leaveBridge } from "./bridges.js"
import type { Engine } from "./core.js"
import { emitDeviceState, endpointInUse } from "./deviceStates.js"
import { enterStasis, leaveStasis, runDialplan } from "./dialplan.js"
import { calleeAnswered } from "./outbound.js"
import { stopMediaOn } from "./playbacks.js"

export type HangupHow =
  | { readonly kind: "ari"; readonly cause: number }
  | { readonly kind: "remote"; readonly cause: number }

const hex8 = (n: number) => n.toString(16).padStart(8, "0")

/** The dialplan location of an originated channel before it is answered. */
export const outgoingLine = { appName: "AppDial2", appData: "(Outgoing Line)" } as const

export const setVariable = (engine: Engine, channel: Channel, name: string, value: string): void => {
  channel.variables.set(name, value)
  if (name === "CALLERID(name)") channel.caller.name = value
  if (name === "CALLERID(num)") channel.caller.number = value
  engine.emitToChannel(channel, engine.ev.channelVarset(channelSnapshot(channel), name, value))
}

export const setState = (engine: Engine, channel: Channel, state: ChannelStateName): void => {
  if (channel.state === state) return
  const wasUp = endpointInUse(engine, channel.endpoint)
  channel.state = state
  engine.emitToChannel(channel, engine.ev.channelStateChange(channelSnapshot(channel)))
  if (state === "Up" && channel.tech === "PJSIP" && !wasUp) emitDeviceState(engine, channel.endpoint, "INUSE")
  if (state === "Up" && channel.tech === "Local" && channel.partnerId !== undefined) {
    // the ;2 half answering is what answers the ;1 half
    const partner = engine.channels.get(channel.partnerId)
    if (partner !== undefined && partner.dialled && partner.state !== "Up") calleeAnswered(engine, partner)
  }
}

export interface NewChannelSpec {
  readonly id: string
  readonly tech: Channel["tech"]
  readonly endpoint: string
  readonly nameResource: string
  readonly state: ChannelStateName
  readonly caller: CallerId
  readonly connected: CallerId
  readonly dialplan: DialplanLocation
  readonly origin: ChannelOrigin
  readonly protocolId: string
  readonly nameSuffix?: string
}

export const newChannel = (engine: Engine, spec: NewChannelSpec): Channel => {
  const counter = engine.nameCounters[spec.tech]++
  const channel: Channel = {
    id: spec.id,
    name: `${spec.tech}/${spec.nameResource}-${hex8(counter)}${spec.nameSuffix ?? ""}`,
    state: spec.state,
    protocolId: spec.protocolId,
    caller: { ...spec.caller },
    connected: { ...spec.connected },
    dialplan: { ...spec.dialplan },
    creationtime: asteriskTimestamp(),
    language: "en",
    tech: spec.tech,
    endpoint: spec.endpoint,
    origin: spec.origin,
    stasisApp: undefined,
    subscribedApps: new Set(),
    bridgeId: undefined,
    variables: new Map(),
    hangingUp: false,
    partnerId: undefined,
    snoopTargetId: undefined,
    dialled: false
  }
  engine.channels.set(channel.id, channel)
  return channel
}

export const getChannel = (engine: Engine, id: string): Channel => {
  const channel = engine.channels.get(id)
  if (channel === undefined || channel.hangingUp) throw channelNotFound()
  return channel
}

/** The channel for an operation that needs Stasis control (404, then 409). */
export const controlled = (engine: Engine, id: string): Channel => {
  const channel = getChannel(engine, id)
  if (channel.stasisApp === undefined) throw notInStasis()
  return channel
}

/** Operations on the media or state of a channel are refused while it is Down or Ringing (412). */
export const controlledAnswerable = (engine: Engine, id: string): Channel => {
  const channel = controlled(engine, id)
  if (channel.state === "Down" || channel.state === "Rsrvd" || channel.state === "Ringing") throw invalidState()
  return channel
}

export const answer = (engine: Engine, id: string, done: () => void): void => {
  const channel = controlled(engine, id)
  if (channel.state === "Down" || channel.state === "Rsrvd" || channel.state === "Ringing") throw invalidState()
  if (channel.state === "Up") {
    done()
    return
  }
  // the 204 comes once the channel is answered
  engine.later(engine.options.timings.answerDelayMs, () => {
    if (engine.alive(channel)) setState(engine, channel, "Up")
    done()
  })
}

export const hangupByAri = (
  engine: Engine,
  id: string,
  reason: string | undefined,
  reasonCode: string | undefined
): void => {
  const channel = getChannel(engine, id)
  if (reason !== undefined && reason !== "" && reasonCode !== undefined && reasonCode !== "") {
    throw ariError(400, "Bad Request", "The reason and reason_code can't both be specified")
  }
  let cause = 16
  if (reasonCode !== undefined && reasonCode !== "") {
    const parsed = Number.parseInt(reasonCode, 10)
    if (Number.isNaN(parsed)) {
      throw ariError(400, "Invalid Reason Code", "Invalid reason for hangup reason code provided")
    }
    cause = parsed
  } else if (reason !== undefined && reason !== "") {
    const mapped = hangupReasons[reason]
    if (mapped === undefined) throw ariError(400, "Invalid Reason", "Invalid reason for hangup reason provided")
    cause = mapped
  }
  hangup(engine, channel, { kind: "ari", cause })
}

/** The hangup sequence of ari-behaviour.md samples A–E. */
export const hangup = (engine: Engine, channel: Channel, how: HangupHow): void => {
  if (channel.hangingUp || engine.channels.get(channel.id) !== channel) return
  const inStasis = channel.stasisApp !== undefined
  if (inStasis && channel.tech === "PJSIP") {
    for (const [name, value] of rtpQosVariables(Math.floor(Math.random() * 2 ** 31))) {
      setVariable(engine, channel, name, value)
    }
  }
  channel.hangingUp = true
  const snapshot = () => channelSnapshot(channel)
  // an ARI hangup is a soft hangup (AST_SOFTHANGUP_EXPLICIT = 32); a BYE carries neither field
  const soft = how.kind === "ari" ? { cause: 32 } : undefined
  engine.emitToChannel(channel, engine.ev.channelHangupRequest(snapshot(), soft))
  stopMediaOn(engine, `channel:${channel.id}`)
  if (channel.bridgeId !== undefined) leaveBridge(engine, channel)
  if (channel.stasisApp !== undefined) {
    engine.hub.deliver(engine.ev.stasisEnd(snapshot()), [channel.stasisApp])
    channel.stasisApp = undefined
    if (channel.dialplan.appName === "Stasis" || channel.dialplan.appName === "StasisBroadcast") {
      channel.variables.set("STASISSTATUS", "SUCCESS")
      engine.emitToChannel(channel, engine.ev.channelVarset(snapshot(), "STASISSTATUS", "SUCCESS"))
    }
  }
  if (channel.origin === "inbound") {
    // back in the dialplan, the hangup runs the h extension
    engine.emitToChannel(channel, engine.ev.channelHangupRequest(snapshot(), { cause: 16 }))
    const context = channel.dialplan.context
    channel.dialplan = { context, exten: "h", priority: 1, appName: "NoOp", appData: "hangup 0" }
    engine.emitToChannel(channel, engine.ev.channelDialplan(snapshot(), "NoOp", "hangup 0"))
    channel.dialplan = { context, exten: "h", priority: 2, appName: "Hangup", appData: "" }
    engine.emitToChannel(channel, engine.ev.channelDialplan(snapshot(), "Hangup", ""))
    channel.dialplan = { ...channel.dialplan, appName: "", appData: "" }
  }
  const destroyed = channel.origin === "originated" ? channelSnapshot(channel, outgoingLine) : snapshot()
  engine.emitToChannel(channel, engine.ev.channelDestroyed(destroyed, how.cause, causeText(how.cause)))
  engine.channels.delete(channel.id)
  if (channel.tech === "PJSIP" && channel.state === "Up" && !endpointInUse(engine, channel.endpoint)) {
    emitDeviceState(engine, channel.endpoint, "NOT_INUSE")
  }
  const cascade: Array<Channel> = []
  if (channel.partnerId !== undefined) {
    const partner = engine.channels.get(channel.partnerId)
    if (partner !== undefined) cascade.push(partner)
  }
  for (const other of engine.channels.values()) {
    if (other.snoopTargetId === channel.id) cascade.push(other)
  }
  for (const other of cascade) hangup(engine, other, { kind: "remote", cause: 16 })
}

export const continueInDialplan = (
  engine: Engine,
  id: string,
  target: {
    readonly context?: string | undefined
    readonly extension?: string | undefined
    readonly priority?: number | undefined
  }
): void => {
  const channel = controlledAnswerable(engine, id)
  const context = target.context !== undefined && target.context !== "" ? target.context : undefined
  const extension = target.extension !== undefined && target.extension !== "" ? target.extension : undefined
  const ctx = context ?? channel.dialplan.context
  const exten = context === undefined ? extension ?? channel.dialplan.exten : extension ?? "s"
  let priority: number
  if (target.priority !== undefined && target.priority > 0) priority = target.priority
  else if (context === undefined && extension === undefined) priority = channel.dialplan.priority + 1
  else priority = 1
  leaveStasis(engine, channel)
  runDialplan(engine, channel, ctx, exten, priority)
}

export const move = (engine: Engine, id: string, app: string | undefined, appArgs: string | undefined): void => {
  const channel = controlled(engine, id)
  if (app === undefined || app === "") {
    throw ariError(500, "Internal Server Error", "Failed to switch Stasis applications")
  }
  const args = appArgs !== undefined && appArgs !== "" ? appArgs.split(",") : []
  leaveStasis(engine, channel)
  enterStasis(engine, channel, app, args, false)
}

export const setChannelVariable = (
  engine: Engine,
  id: string,
  name: string | undefined,
  value: string | undefined
): void => {
  if (name === undefined || name === "") throw ariError(400, "Bad Request", "Variable name is required")
  const channel = controlled(engine, id)
  setVariable(engine, channel, name, value ?? "")
}

export const getChannelVariable = (engine: Engine, id: string, name: string | undefined): string => {
  if (name === undefined || name === "") throw ariError(400, "Bad Request", "Variable name is required")
  const channel = engine.channels.get(id)
  if (channel === undefined || channel.hangingUp) {
    throw ariError(404, "Channel Not Found", "Provided channel was not found")
  }
  if (name === "CALLERID(name)") return channel.caller.name
  if (name === "CALLERID(num)") return channel.caller.number
  const value = channel.variables.get(name)
  if (value === undefined) throw ariError(404, "Variable Not Found", "Provided variable was not found")
  return value
}

export const snoop = (
  engine: Engine,
  id: string,
  request: {
    readonly spy?: string | undefined
    readonly whisper?: string | undefined
    readonly app?: string | undefined
    readonly appArgs?: string | undefined
    readonly snoopId?: string | undefined
  }
): Channel => {
  const directions = ["none", "both", "out", "in"]
  const spy = request.spy === undefined || request.spy === "" ? "none" : request.spy
  const whisper = request.whisper === undefined || request.whisper === "" ? "none" : request.whisper
  if (!directions.includes(spy)) throw ariError(400, "Bad Request", "Invalid direction specified for spy")
  if (!directions.includes(whisper)) throw ariError(400, "Bad Request", "Invalid direction specified for whisper")
  if (spy === "none" && whisper === "none") {
    throw ariError(400, "Bad Request", "Direction must be specified for at least spy or whisper")
  }
  if (request.app === undefined || request.app === "") {
    throw ariError(400, "Bad Request", "Application name is required")
  }
  const target = engine.channels.get(id)
  if (target === undefined || target.hangingUp) {
    throw ariError(404, "Channel Not Found", "Provided channel was not found")
  }
  if (request.snoopId !== undefined && engine.channels.has(request.snoopId)) {
    throw ariError(500, "Internal error", "Snoop channel could not be created")
  }
  const snoop = newChannel(engine, {
    id: request.snoopId ?? engine.nextUniqueId(),
    tech: "Snoop",
    endpoint: `Snoop/${target.id}`,
    nameResource: target.id,
    state: "Up",
    caller: { name: "", number: "" },
    connected: { name: "", number: "" },
    dialplan: { context: "default", exten: "s", priority: 1, appName: "", appData: "" },
    origin: "snoop",
    protocolId: ""
  })
  snoop.snoopTargetId = target.id
  const app = request.app
  const args = request.appArgs !== undefined && request.appArgs !== "" ? request.appArgs.split(",") : []
  engine.later(0, () => {
    if (engine.alive(snoop)) enterStasis(engine, snoop, app, args, false)
  })
  return snoop
}

/** Channels on an endpoint, for `GET /endpoints`. */
export const endpointChannelIds = (engine: Engine, endpoint: string): Array<string> => {
  const ids: Array<string> = []
  for (const channel of engine.channels.values()) if (channel.endpoint === endpoint) ids.push(channel.id)
  return ids
}
