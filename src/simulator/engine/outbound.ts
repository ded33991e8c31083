/**
 * Outbound channels: originate, create and dial (Local channels come in pairs), and how a dialled
 * callee rings and answers.
 */
import { randomUUID } from "node:crypto"
import { AriError, ariError } from "../errors.js"
import type { CallerId, Channel, ChannelOrigin, DialplanLocation } from "../state.js"
import { channelSnapshot, parseCallerId } from "../state.js"
import { controlled, newChannel, type NewChannelSpec, outgoingLine, setState } from "./channels.js"
import type { AfterAnswer, Engine } from "./core.js"
import { enterStasis, runDialplan } from "./dialplan.js"

export interface OriginateRequest {
  readonly endpoint?: string | undefined
  readonly extension?: string | undefined
  readonly context?: string | undefined
  readonly priority?: number | undefined
  readonly app?: string | undefined
  readonly appArgs?: string | undefined
  readonly callerId?: string | undefined
  readonly variables?: Readonly<Record<string, string>> | undefined
  readonly channelId?: string | undefined
  readonly otherChannelId?: string | undefined
}

const checkFreeId = (engine: Engine, id: string | undefined): void => {
  if (id !== undefined && engine.channels.has(id)) {
    throw ariError(409, "Conflict", "Channel with given unique ID already exists")
  }
}

const isDiallable = (engine: Engine, endpoint: string): boolean => {
  const slash = endpoint.indexOf("/")
  const tech = endpoint.slice(0, slash).toLowerCase()
  const resource = endpoint.slice(slash + 1)
  if (tech === "local") return /^[^@]+@[^@]+$/.test(resource)
  const device = resource.includes("@") ? resource.slice(resource.indexOf("@") + 1) : resource
  return engine.options.endpoints.some((known) => known.toLowerCase() === `${tech}/${device}`.toLowerCase())
}

/** An endpoint as a request names it (`PJSIP/alice`, `Local/100@default`), split at its first slash. */
interface Endpoint {
  readonly endpoint: string
  readonly tech: string
  readonly resource: string
}

const parseEndpoint = (endpoint: string | undefined): Endpoint => {
  if (endpoint === undefined || endpoint === "") throw ariError(400, "Bad Request", "Endpoint must be specified")
  const slash = endpoint.indexOf("/")
  if (slash <= 0 || slash === endpoint.length - 1) {
    throw ariError(400, "Bad Request", "Invalid endpoint specified")
  }
  return { endpoint, tech: endpoint.slice(0, slash), resource: endpoint.slice(slash + 1) }
}

const allocate = (
  engine: Engine,
  { endpoint, tech, resource }: Endpoint,
  ids: { readonly channelId?: string | undefined; readonly otherChannelId?: string | undefined },
  dialplan: DialplanLocation,
  caller: CallerId,
  origin: ChannelOrigin
): Channel => {
  checkFreeId(engine, ids.channelId)
  checkFreeId(engine, ids.otherChannelId)
  if (!isDiallable(engine, endpoint)) throw new AriError(500, "Internal Server Error", { error: "Allocation failed" })
  /** A channel of this outgoing call: Down until answered, the caller its connected line. */
  const outgoing = (spec: Omit<NewChannelSpec, "state" | "connected">) =>
    newChannel(engine, { ...spec, state: "Down", connected: caller })
  if (tech.toLowerCase() === "local") {
    const [exten = "s", context = "default"] = resource.replace(/\/n$/, "").split("@")
    const localHalf = (half: Pick<NewChannelSpec, "id" | "caller" | "dialplan" | "origin">, n: 1 | 2) =>
      outgoing({
        ...half,
        tech: "Local",
        endpoint: `Local/${resource}`,
        nameResource: resource,
        protocolId: "",
        nameSuffix: `;${n}`
      })
    const first = localHalf({ id: ids.channelId ?? engine.nextUniqueId(), caller, dialplan, origin }, 1)
    engine.nameCounters.Local-- // both halves share one number
    const second = localHalf({
      id: ids.otherChannelId ?? engine.nextUniqueId(),
      caller: { name: "", number: "" },
      dialplan: { context, exten, priority: 1, appName: "", appData: "" },
      origin: "local"
    }, 2)
    first.partnerId = second.id
    second.partnerId = first.id
    return first
  }
  const device = resource.includes("@") ? resource.slice(resource.indexOf("@") + 1) : resource
  return outgoing({
    id: ids.channelId ?? engine.nextUniqueId(),
    tech: "PJSIP",
    endpoint: `PJSIP/${device}`,
    nameResource: device,
    caller,
    dialplan,
    origin,
    protocolId: randomUUID()
  })
}

export const originate = (engine: Engine, request: OriginateRequest): Channel => {
  const target = parseEndpoint(request.endpoint)
  const app = request.app !== undefined && request.app !== "" ? request.app : undefined
  const extension = request.extension !== undefined && request.extension !== "" ? request.extension : undefined
  if (app === undefined && extension === undefined) {
    throw ariError(400, "Bad Request", "Application or extension must be specified")
  }
  const caller = request.callerId !== undefined ? parseCallerId(request.callerId) : { name: "", number: "" }
  const channel = allocate(
    engine,
    target,
    request,
    {
      context: target.tech.toLowerCase() === "local" ? "default" : engine.options.context,
      exten: "s",
      priority: 1,
      ...outgoingLine
    },
    caller,
    "originated"
  )
  channel.dialled = true
  for (const [name, value] of Object.entries(request.variables ?? {})) {
    channel.variables.set(name, value)
    if (name === "CALLERID(name)") channel.caller.name = value
    if (name === "CALLERID(num)") channel.caller.number = value
  }
  const partner = channel.partnerId !== undefined ? engine.channels.get(channel.partnerId) : undefined
  engine.emitToChannel(channel, engine.ev.channelCreated(channelSnapshot(channel)))
  if (partner !== undefined) engine.emitToChannel(partner, engine.ev.channelCreated(channelSnapshot(partner)))
  if (app !== undefined) {
    // originate subscribes the app to the channel (and to a Local peer) before dialling
    channel.subscribedApps.add(app)
    partner?.subscribedApps.add(app)
  }
  const args = request.appArgs !== undefined && request.appArgs !== "" ? request.appArgs.split(",") : []
  const then: AfterAnswer = app !== undefined
    ? { kind: "stasis", app, args }
    : {
      kind: "dialplan",
      context: request.context !== undefined && request.context !== "" ? request.context : "default",
      exten: extension ?? "s",
      priority: request.priority !== undefined && request.priority > 0 ? request.priority : 1
    }
  engine.afterAnswer.set(channel, then)
  engine.later(0, () => dialCallee(engine, channel, undefined))
  return channel
}

const dialString = (channel: Channel): string => channel.endpoint.slice(channel.endpoint.indexOf("/") + 1)

/** Dial → RINGING → (answer) for a callee; Local channels ring only through their ;2 half. */
const dialCallee = (engine: Engine, channel: Channel, caller: Channel | undefined): void => {
  if (!engine.alive(channel)) return
  const callerSnapshot = () => caller !== undefined && engine.alive(caller) ? channelSnapshot(caller) : undefined
  const dial = (status: string) =>
    engine.ev.dial(channelSnapshot(channel), status, dialString(channel), callerSnapshot())
  engine.emitToChannel(channel, dial(""))
  engine.dialCallers.set(channel, caller)
  if (channel.tech === "Local") {
    const partner = channel.partnerId !== undefined ? engine.channels.get(channel.partnerId) : undefined
    if (partner === undefined) return
    engine.later(engine.options.timings.originateRingDelayMs, () => {
      if (!engine.alive(partner)) return
      partner.state = "Ring"
      const known = runDialplan(engine, partner, partner.dialplan.context, partner.dialplan.exten, 1)
      // an extension the simulator does not know behaves like a phone that answers
      if (!known && engine.options.autoAnswer) {
        engine.later(engine.options.timings.originateAnswerDelayMs, () => {
          if (engine.alive(partner)) setState(engine, partner, "Up")
        })
      }
    })
    return
  }
  engine.later(engine.options.timings.originateRingDelayMs, () => {
    if (!engine.alive(channel)) return
    engine.emitToChannel(channel, dial("RINGING"))
    setState(engine, channel, "Ringing")
    if (engine.options.autoAnswer) {
      engine.later(engine.options.timings.originateAnswerDelayMs, () => {
        if (engine.alive(channel) && channel.state !== "Up") calleeAnswered(engine, channel)
      })
    }
  })
}

export const calleeAnswered = (engine: Engine, channel: Channel): void => {
  if (!engine.alive(channel)) return
  setState(engine, channel, "Up")
  const caller = engine.dialCallers.get(channel)
  const callerSnapshot = caller !== undefined && engine.alive(caller) ? channelSnapshot(caller) : undefined
  const answered = engine.ev.dial(channelSnapshot(channel), "ANSWER", dialString(channel), callerSnapshot)
  engine.emitToChannel(channel, answered)
  const then = engine.afterAnswer.get(channel)
  engine.afterAnswer.delete(channel)
  if (then === undefined) return
  if (then.kind === "stasis") enterStasis(engine, channel, then.app, then.args, true)
  else {
    channel.dialplan = { ...channel.dialplan, context: then.context, exten: then.exten, priority: then.priority }
    runDialplan(engine, channel, then.context, then.exten, then.priority)
  }
}

export const create = (engine: Engine, request: OriginateRequest): Channel => {
  const channel = allocate(
    engine,
    parseEndpoint(request.endpoint),
    request,
    { context: engine.options.context, exten: "s", priority: 1, appName: "", appData: "" },
    { name: "", number: "" },
    "created"
  )
  for (const [name, value] of Object.entries(request.variables ?? {})) channel.variables.set(name, value)
  const app = request.app ?? ""
  if (app !== "") channel.subscribedApps.add(app)
  const args = request.appArgs !== undefined && request.appArgs !== "" ? request.appArgs.split(",") : []
  // the created channel runs Stasis() in its own thread, right after the 200
  engine.later(0, () => {
    if (engine.alive(channel) && app !== "") enterStasis(engine, channel, app, args, true)
  })
  return channel
}

export const dial = (engine: Engine, id: string, callerId: string | undefined): void => {
  const channel = controlled(engine, id)
  if (channel.state !== "Down" && channel.state !== "Rsrvd") {
    throw ariError(409, "Conflict", "Channel is not in the 'Down' state")
  }
  if (channel.origin !== "created") throw ariError(409, "Conflict", "Dialing a channel not created by ARI")
  const caller = callerId !== undefined ? engine.channels.get(callerId) : undefined
  if (caller !== undefined) {
    channel.connected = { ...caller.caller }
  }
  channel.dialled = true
  engine.later(0, () => dialCallee(engine, channel, caller))
}
