/**
 * The simulated Asterisk core: channels, bridges, playbacks and recordings, and the event sequences
 * a real Asterisk 23 produces for them (see docs ari-behaviour.md). REST handlers and the control API
 * both drive this class; it throws `AriError` for ARI-visible failures.
 */
import { randomUUID } from "node:crypto"
import type { EventBuilders, SimEvent } from "./events.js"
import { rtpQosVariables } from "./events.js"
import {
  AriError,
  ariError,
  bridgeNotFound,
  channelNotFound,
  ControlError,
  invalidState,
  notInStasis
} from "./errors.js"
import type { ResolvedOptions } from "./options.js"
import type {
  Bridge,
  CallerId,
  Channel,
  ChannelOrigin,
  ChannelStateName,
  DialplanLocation,
  LiveRecording,
  Playback,
  StoredRecording
} from "./state.js"
import {
  asteriskTimestamp,
  bridgeSnapshot,
  causeText,
  channelSnapshot,
  hangupReasons,
  parseCallerId,
  playbackJson,
  recordingJson
} from "./state.js"
import type { AppHub } from "./websocket.js"

export interface InboundCall {
  readonly app: string
  readonly endpoint?: string
  readonly caller?: string | Partial<CallerId>
  readonly exten?: string
  readonly context?: string
  readonly args?: ReadonlyArray<string>
  readonly channelId?: string
}

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

type HangupHow =
  | { readonly kind: "ari"; readonly cause: number }
  | { readonly kind: "remote"; readonly cause: number }

const hex8 = (n: number) => n.toString(16).padStart(8, "0")
const outgoingLine = { appName: "AppDial2", appData: "(Outgoing Line)" } as const
const recordingFormats = new Set(["wav", "wav16", "gsm", "ulaw", "alaw", "sln", "sln16", "g722", "g729", "WAV"])

export class Engine {
  readonly channels = new Map<string, Channel>()
  readonly bridges = new Map<string, Bridge>()
  readonly playbacks = new Map<string, Playback>()
  readonly liveRecordings = new Map<string, LiveRecording>()
  readonly storedRecordings = new Map<string, StoredRecording>()
  readonly globalVariables = new Map<string, string>()
  readonly deviceStates = new Map<string, string>()
  private readonly playbackQueues = new Map<string, Array<Playback>>()
  private readonly timers = new Set<ReturnType<typeof setTimeout>>()
  private uniqueSeq = 0
  private readonly nameCounters = { PJSIP: 0, Local: 0, Snoop: 0 }
  private inboundCount = 0
  readonly startedAt = asteriskTimestamp()

  constructor(
    readonly options: ResolvedOptions,
    private readonly hub: AppHub,
    private readonly ev: EventBuilders
  ) {}

  // ---- infrastructure

  /** Runs `fn` later; every timer is cleared when the simulator closes. */
  later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      fn()
    }, ms)
    this.timers.add(timer)
  }

  close(): void {
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
  }

  /** Forgets every object without emitting events (between tests). */
  reset(): void {
    this.close()
    this.channels.clear()
    this.bridges.clear()
    this.playbacks.clear()
    this.playbackQueues.clear()
    this.liveRecordings.clear()
    this.storedRecordings.clear()
  }

  private nextUniqueId(): string {
    return `${Math.floor(Date.now() / 1000)}.${this.uniqueSeq++}`
  }

  private alive(channel: Channel): boolean {
    return this.channels.get(channel.id) === channel && !channel.hangingUp
  }

  channelSubscribers(channel: Channel): Array<string> {
    const apps: Array<string> = []
    if (channel.stasisApp !== undefined) apps.push(channel.stasisApp)
    for (const app of channel.subscribedApps) apps.push(app)
    for (const registration of this.hub.registrations.values()) {
      if (registration.subscribeAll || registration.endpointIds.has(channel.endpoint)) apps.push(registration.name)
    }
    return apps
  }

  private bridgeSubscribers(bridge: Bridge): Array<string> {
    return [...bridge.subscribedApps, ...this.hub.subscribeAllApps()]
  }

  private emitToChannel(channel: Channel, event: SimEvent): void {
    this.hub.deliver(event, this.channelSubscribers(channel))
  }

  private setVariable(channel: Channel, name: string, value: string): void {
    channel.variables.set(name, value)
    if (name === "CALLERID(name)") channel.caller.name = value
    if (name === "CALLERID(num)") channel.caller.number = value
    this.emitToChannel(channel, this.ev.channelVarset(channelSnapshot(channel), name, value))
  }

  private setState(channel: Channel, state: ChannelStateName): void {
    if (channel.state === state) return
    const wasUp = this.endpointInUse(channel.endpoint)
    channel.state = state
    this.emitToChannel(channel, this.ev.channelStateChange(channelSnapshot(channel)))
    if (state === "Up" && channel.tech === "PJSIP" && !wasUp) this.emitDeviceState(channel.endpoint, "INUSE")
    if (state === "Up" && channel.tech === "Local" && channel.partnerId !== undefined) {
      // the ;2 half answering is what answers the ;1 half
      const partner = this.channels.get(channel.partnerId)
      if (partner !== undefined && partner.dialled && partner.state !== "Up") this.calleeAnswered(partner)
    }
  }

  private endpointInUse(endpoint: string): boolean {
    for (const channel of this.channels.values()) {
      if (channel.endpoint === endpoint && channel.tech === "PJSIP" && channel.state === "Up") return true
    }
    return false
  }

  private emitDeviceState(device: string, state: string): void {
    const apps = [...this.hub.subscribeAllApps()]
    for (const registration of this.hub.registrations.values()) {
      if (registration.deviceNames.has(device)) apps.push(registration.name)
    }
    this.hub.deliver(this.ev.deviceStateChanged(device, state), apps)
  }

  private newChannel(spec: {
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
  }): Channel {
    const counter = this.nameCounters[spec.tech]++
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
    this.channels.set(channel.id, channel)
    return channel
  }

  private checkFreeId(id: string | undefined): void {
    if (id !== undefined && this.channels.has(id)) {
      throw ariError(409, "Conflict", "Channel with given unique ID already exists")
    }
  }

  getChannel(id: string): Channel {
    const channel = this.channels.get(id)
    if (channel === undefined || channel.hangingUp) throw channelNotFound()
    return channel
  }

  /** The channel for an operation that needs Stasis control (404, then 409). */
  controlled(id: string): Channel {
    const channel = this.getChannel(id)
    if (channel.stasisApp === undefined) throw notInStasis()
    return channel
  }

  /** Operations on the media or state of a channel are refused while it is Down or Ringing (412). */
  controlledAnswerable(id: string): Channel {
    const channel = this.controlled(id)
    if (channel.state === "Down" || channel.state === "Rsrvd" || channel.state === "Ringing") throw invalidState()
    return channel
  }

  // ---- Stasis

  /** Enters Stasis the way the Stasis() dialplan application does (STASISSTATUS, then StasisStart). */
  private enterStasis(channel: Channel, app: string, args: ReadonlyArray<string>, viaDialplanApp: boolean): void {
    if (viaDialplanApp) {
      channel.dialplan = { ...channel.dialplan, appName: "Stasis", appData: [app, ...args].join(",") }
      this.setVariable(channel, "STASISSTATUS", "")
    }
    channel.stasisApp = app
    // StasisStart and StasisEnd go to the Stasis application only, not to other subscribers
    this.hub.deliver(this.ev.stasisStart(channelSnapshot(channel), args), [app])
  }

  private leaveStasis(channel: Channel): void {
    if (channel.stasisApp === undefined) return
    if (channel.bridgeId !== undefined) this.leaveBridge(channel)
    this.hub.deliver(this.ev.stasisEnd(channelSnapshot(channel)), [channel.stasisApp])
    channel.stasisApp = undefined
  }

  // ---- inbound calls (control API)

  placeInboundCall(call: InboundCall): Channel {
    if (!this.hub.isRegistered(call.app)) {
      throw new ControlError(409, `application ${call.app} is not registered (no websocket connected)`)
    }
    if (call.channelId !== undefined && this.channels.has(call.channelId)) {
      throw new ControlError(409, `channel ${call.channelId} already exists`)
    }
    const endpoint = call.endpoint ?? "PJSIP/sipp"
    const resource = endpoint.slice(endpoint.indexOf("/") + 1)
    const caller: CallerId = typeof call.caller === "string"
      ? parseCallerId(call.caller)
      : { name: call.caller?.name ?? resource, number: call.caller?.number ?? resource }
    const exten = call.exten ?? "100"
    const context = call.context ?? this.options.context
    const args = call.args ?? []
    this.inboundCount++
    const channel = this.newChannel({
      id: call.channelId ?? this.nextUniqueId(),
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
    this.emitToChannel(channel, this.ev.channelCreated(channelSnapshot(channel)))
    channel.protocolId = `${this.inboundCount}-${20000 + this.inboundCount}@127.0.0.1`
    this.setVariable(channel, "SIPDOMAIN", "127.0.0.1")
    const noOpData = `Incoming call to ${exten} from "${caller.name}" <${caller.number}>`
    channel.dialplan = { context, exten, priority: 1, appName: "NoOp", appData: noOpData }
    this.emitToChannel(channel, this.ev.channelDialplan(channelSnapshot(channel), "NoOp", noOpData))
    const stasisData = [call.app, ...args].join(",")
    channel.dialplan = { context, exten, priority: 2, appName: "Stasis", appData: stasisData }
    this.emitToChannel(channel, this.ev.channelDialplan(channelSnapshot(channel), "Stasis", stasisData))
    this.enterStasis(channel, call.app, args, true)
    return channel
  }

  sendDtmfFromRemote(id: string, digits: string, durationMs: number): void {
    const channel = this.channels.get(id)
    if (channel === undefined || channel.hangingUp) throw new ControlError(404, `channel ${id} not found`)
    for (const digit of digits) {
      this.emitToChannel(channel, this.ev.channelDtmfReceived(channelSnapshot(channel), digit, durationMs))
    }
  }

  hangupFromRemote(id: string, cause = 16): void {
    const channel = this.channels.get(id)
    if (channel === undefined || channel.hangingUp) throw new ControlError(404, `channel ${id} not found`)
    this.hangup(channel, { kind: "remote", cause })
  }

  /** The far end answers a dialled channel (when `autoAnswer` is off). */
  answerFromRemote(id: string): void {
    const channel = this.channels.get(id)
    if (channel === undefined || channel.hangingUp) throw new ControlError(404, `channel ${id} not found`)
    if (channel.state === "Up") return
    if (channel.dialled) this.calleeAnswered(channel)
    else this.setState(channel, "Up")
  }

  // ---- originate, create, dial

  private isDiallable(endpoint: string): boolean {
    const slash = endpoint.indexOf("/")
    const tech = endpoint.slice(0, slash).toLowerCase()
    const resource = endpoint.slice(slash + 1)
    if (tech === "local") return /^[^@]+@[^@]+$/.test(resource)
    const device = resource.includes("@") ? resource.slice(resource.indexOf("@") + 1) : resource
    return this.options.endpoints.some((known) => known.toLowerCase() === `${tech}/${device}`.toLowerCase())
  }

  private parseEndpoint(endpoint: string | undefined): { readonly tech: string; readonly resource: string } {
    if (endpoint === undefined || endpoint === "") throw ariError(400, "Bad Request", "Endpoint must be specified")
    const slash = endpoint.indexOf("/")
    if (slash <= 0 || slash === endpoint.length - 1) {
      throw ariError(400, "Bad Request", "Invalid endpoint specified")
    }
    return { tech: endpoint.slice(0, slash), resource: endpoint.slice(slash + 1) }
  }

  private allocate(
    endpoint: string,
    tech: string,
    resource: string,
    ids: { readonly channelId?: string | undefined; readonly otherChannelId?: string | undefined },
    dialplan: DialplanLocation,
    caller: CallerId,
    origin: ChannelOrigin
  ): Channel {
    this.checkFreeId(ids.channelId)
    this.checkFreeId(ids.otherChannelId)
    if (!this.isDiallable(endpoint)) throw new AriError(500, "Internal Server Error", { error: "Allocation failed" })
    if (tech.toLowerCase() === "local") {
      const [exten = "s", context = "default"] = resource.replace(/\/n$/, "").split("@")
      const first = this.newChannel({
        id: ids.channelId ?? this.nextUniqueId(),
        tech: "Local",
        endpoint: `Local/${resource}`,
        nameResource: resource,
        state: "Down",
        caller,
        connected: caller,
        dialplan,
        origin,
        protocolId: "",
        nameSuffix: ";1"
      })
      this.nameCounters.Local--
      const second = this.newChannel({
        id: ids.otherChannelId ?? this.nextUniqueId(),
        tech: "Local",
        endpoint: `Local/${resource}`,
        nameResource: resource,
        state: "Down",
        caller: { name: "", number: "" },
        connected: caller,
        dialplan: { context, exten, priority: 1, appName: "", appData: "" },
        origin: "local",
        protocolId: "",
        nameSuffix: ";2"
      })
      first.partnerId = second.id
      second.partnerId = first.id
      return first
    }
    const device = resource.includes("@") ? resource.slice(resource.indexOf("@") + 1) : resource
    return this.newChannel({
      id: ids.channelId ?? this.nextUniqueId(),
      tech: "PJSIP",
      endpoint: `PJSIP/${device}`,
      nameResource: device,
      state: "Down",
      caller,
      connected: caller,
      dialplan,
      origin,
      protocolId: randomUUID()
    })
  }

  originate(request: OriginateRequest): Channel {
    const { resource, tech } = this.parseEndpoint(request.endpoint)
    const app = request.app !== undefined && request.app !== "" ? request.app : undefined
    const extension = request.extension !== undefined && request.extension !== "" ? request.extension : undefined
    if (app === undefined && extension === undefined) {
      throw ariError(400, "Bad Request", "Application or extension must be specified")
    }
    const caller = request.callerId !== undefined ? parseCallerId(request.callerId) : { name: "", number: "" }
    const channel = this.allocate(
      request.endpoint ?? "",
      tech,
      resource,
      request,
      {
        context: tech.toLowerCase() === "local" ? "default" : this.options.context,
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
    const partner = channel.partnerId !== undefined ? this.channels.get(channel.partnerId) : undefined
    this.emitToChannel(channel, this.ev.channelCreated(channelSnapshot(channel)))
    if (partner !== undefined) this.emitToChannel(partner, this.ev.channelCreated(channelSnapshot(partner)))
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
    this.afterAnswer.set(channel, then)
    this.later(0, () => this.dialCallee(channel, undefined))
    return channel
  }

  private readonly afterAnswer = new WeakMap<Channel, AfterAnswer>()

  private dialString(channel: Channel): string {
    return channel.endpoint.slice(channel.endpoint.indexOf("/") + 1)
  }

  /** Dial → RINGING → (answer) for a callee; Local channels ring only through their ;2 half. */
  private dialCallee(channel: Channel, caller: Channel | undefined): void {
    if (!this.alive(channel)) return
    const callerSnapshot = () => caller !== undefined && this.alive(caller) ? channelSnapshot(caller) : undefined
    const dial = (status: string) =>
      this.ev.dial(channelSnapshot(channel), status, this.dialString(channel), callerSnapshot())
    this.emitToChannel(channel, dial(""))
    this.dialCallers.set(channel, caller)
    if (channel.tech === "Local") {
      const partner = channel.partnerId !== undefined ? this.channels.get(channel.partnerId) : undefined
      if (partner === undefined) return
      this.later(this.options.timings.originateRingDelayMs, () => {
        if (!this.alive(partner)) return
        partner.state = "Ring"
        const known = this.runDialplan(partner, partner.dialplan.context, partner.dialplan.exten, 1)
        // an extension the simulator does not know behaves like a phone that answers
        if (!known && this.options.autoAnswer) {
          this.later(this.options.timings.originateAnswerDelayMs, () => {
            if (this.alive(partner)) this.setState(partner, "Up")
          })
        }
      })
      return
    }
    this.later(this.options.timings.originateRingDelayMs, () => {
      if (!this.alive(channel)) return
      this.emitToChannel(channel, dial("RINGING"))
      this.setState(channel, "Ringing")
      if (this.options.autoAnswer) {
        this.later(this.options.timings.originateAnswerDelayMs, () => {
          if (this.alive(channel) && channel.state !== "Up") this.calleeAnswered(channel)
        })
      }
    })
  }

  private readonly dialCallers = new WeakMap<Channel, Channel | undefined>()

  private calleeAnswered(channel: Channel): void {
    if (!this.alive(channel)) return
    this.setState(channel, "Up")
    const caller = this.dialCallers.get(channel)
    const callerSnapshot = caller !== undefined && this.alive(caller) ? channelSnapshot(caller) : undefined
    const answered = this.ev.dial(channelSnapshot(channel), "ANSWER", this.dialString(channel), callerSnapshot)
    this.emitToChannel(channel, answered)
    const then = this.afterAnswer.get(channel)
    this.afterAnswer.delete(channel)
    if (then === undefined) return
    if (then.kind === "stasis") this.enterStasis(channel, then.app, then.args, true)
    else {
      channel.dialplan = { ...channel.dialplan, context: then.context, exten: then.exten, priority: then.priority }
      this.runDialplan(channel, then.context, then.exten, then.priority)
    }
  }

  create(request: OriginateRequest): Channel {
    const { resource, tech } = this.parseEndpoint(request.endpoint)
    const channel = this.allocate(
      request.endpoint ?? "",
      tech,
      resource,
      request,
      { context: this.options.context, exten: "s", priority: 1, appName: "", appData: "" },
      { name: "", number: "" },
      "created"
    )
    for (const [name, value] of Object.entries(request.variables ?? {})) channel.variables.set(name, value)
    const app = request.app ?? ""
    if (app !== "") channel.subscribedApps.add(app)
    const args = request.appArgs !== undefined && request.appArgs !== "" ? request.appArgs.split(",") : []
    // the created channel runs Stasis() in its own thread, right after the 200
    this.later(0, () => {
      if (this.alive(channel) && app !== "") this.enterStasis(channel, app, args, true)
    })
    return channel
  }

  dial(id: string, callerId: string | undefined): void {
    const channel = this.controlled(id)
    if (channel.state !== "Down" && channel.state !== "Rsrvd") {
      throw ariError(409, "Conflict", "Channel is not in the 'Down' state")
    }
    if (channel.origin !== "created") throw ariError(409, "Conflict", "Dialing a channel not created by ARI")
    const caller = callerId !== undefined ? this.channels.get(callerId) : undefined
    if (caller !== undefined) {
      channel.connected = { ...caller.caller }
    }
    channel.dialled = true
    this.later(0, () => this.dialCallee(channel, caller))
  }

  // ---- channel operations

  answer(id: string, done: () => void): void {
    const channel = this.controlled(id)
    if (channel.state === "Down" || channel.state === "Rsrvd" || channel.state === "Ringing") throw invalidState()
    if (channel.state === "Up") {
      done()
      return
    }
    // the 204 comes once the channel is answered
    this.later(this.options.timings.answerDelayMs, () => {
      if (this.alive(channel)) this.setState(channel, "Up")
      done()
    })
  }

  hangupByAri(id: string, reason: string | undefined, reasonCode: string | undefined): void {
    const channel = this.getChannel(id)
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
    this.hangup(channel, { kind: "ari", cause })
  }

  /** The hangup sequence of ari-behaviour.md samples A–E. */
  private hangup(channel: Channel, how: HangupHow): void {
    if (channel.hangingUp || this.channels.get(channel.id) !== channel) return
    const inStasis = channel.stasisApp !== undefined
    if (inStasis && channel.tech === "PJSIP") {
      for (const [name, value] of rtpQosVariables(Math.floor(Math.random() * 2 ** 31))) {
        this.setVariable(channel, name, value)
      }
    }
    channel.hangingUp = true
    const snapshot = () => channelSnapshot(channel)
    // an ARI hangup is a soft hangup (AST_SOFTHANGUP_EXPLICIT = 32); a BYE carries neither field
    const soft = how.kind === "ari" ? { cause: 32 } : undefined
    this.emitToChannel(channel, this.ev.channelHangupRequest(snapshot(), soft))
    this.stopMediaOn(`channel:${channel.id}`)
    if (channel.bridgeId !== undefined) this.leaveBridge(channel)
    if (channel.stasisApp !== undefined) {
      this.hub.deliver(this.ev.stasisEnd(snapshot()), [channel.stasisApp])
      channel.stasisApp = undefined
      if (channel.dialplan.appName === "Stasis") {
        channel.variables.set("STASISSTATUS", "SUCCESS")
        this.emitToChannel(channel, this.ev.channelVarset(snapshot(), "STASISSTATUS", "SUCCESS"))
      }
    }
    if (channel.origin === "inbound") {
      // back in the dialplan, the hangup runs the h extension
      this.emitToChannel(channel, this.ev.channelHangupRequest(snapshot(), { cause: 16 }))
      const context = channel.dialplan.context
      channel.dialplan = { context, exten: "h", priority: 1, appName: "NoOp", appData: "hangup 0" }
      this.emitToChannel(channel, this.ev.channelDialplan(snapshot(), "NoOp", "hangup 0"))
      channel.dialplan = { context, exten: "h", priority: 2, appName: "Hangup", appData: "" }
      this.emitToChannel(channel, this.ev.channelDialplan(snapshot(), "Hangup", ""))
      channel.dialplan = { ...channel.dialplan, appName: "", appData: "" }
    }
    const destroyed = channel.origin === "originated" ? channelSnapshot(channel, outgoingLine) : snapshot()
    this.emitToChannel(channel, this.ev.channelDestroyed(destroyed, how.cause, causeText(how.cause)))
    this.channels.delete(channel.id)
    if (channel.tech === "PJSIP" && channel.state === "Up" && !this.endpointInUse(channel.endpoint)) {
      this.emitDeviceState(channel.endpoint, "NOT_INUSE")
    }
    const cascade: Array<Channel> = []
    if (channel.partnerId !== undefined) {
      const partner = this.channels.get(channel.partnerId)
      if (partner !== undefined) cascade.push(partner)
    }
    for (const other of this.channels.values()) {
      if (other.snoopTargetId === channel.id) cascade.push(other)
    }
    for (const other of cascade) this.hangup(other, { kind: "remote", cause: 16 })
  }

  continueInDialplan(
    id: string,
    target: {
      readonly context?: string | undefined
      readonly extension?: string | undefined
      readonly priority?: number | undefined
    }
  ): void {
    const channel = this.controlledAnswerable(id)
    const context = target.context !== undefined && target.context !== "" ? target.context : undefined
    const extension = target.extension !== undefined && target.extension !== "" ? target.extension : undefined
    const ctx = context ?? channel.dialplan.context
    const exten = context === undefined ? extension ?? channel.dialplan.exten : extension ?? "s"
    let priority: number
    if (target.priority !== undefined && target.priority > 0) priority = target.priority
    else if (context === undefined && extension === undefined) priority = channel.dialplan.priority + 1
    else priority = 1
    this.leaveStasis(channel)
    this.runDialplan(channel, ctx, exten, priority)
  }

  move(id: string, app: string | undefined, appArgs: string | undefined): void {
    const channel = this.controlled(id)
    if (app === undefined || app === "") {
      throw ariError(500, "Internal Server Error", "Failed to switch Stasis applications")
    }
    const args = appArgs !== undefined && appArgs !== "" ? appArgs.split(",") : []
    this.leaveStasis(channel)
    this.enterStasis(channel, app, args, false)
  }

  /**
   * Runs the simulator's dialplan from a priority. Answer, NoOp, Set, Stasis and Hangup act; any other
   * application (Wait, Playback…) leaves the channel there. Returns false for an unknown extension.
   */
  runDialplan(channel: Channel, context: string, exten: string, priority: number): boolean {
    const steps = this.options.dialplan[context]?.[exten]
    if (steps === undefined || priority > steps.length) {
      channel.dialplan = { context, exten, priority, appName: "", appData: "" }
      return false
    }
    for (let p = priority; p <= steps.length; p++) {
      if (!this.alive(channel)) return true
      const step = steps[p - 1]
      if (step === undefined) break
      const data = step.data ?? ""
      channel.dialplan = { context, exten, priority: p, appName: step.app, appData: data }
      this.emitToChannel(channel, this.ev.channelDialplan(channelSnapshot(channel), step.app, data))
      switch (step.app) {
        case "Answer":
          this.setState(channel, "Up")
          continue
        case "NoOp":
          continue
        case "Set": {
          const eq = data.indexOf("=")
          if (eq > 0) this.setVariable(channel, data.slice(0, eq), data.slice(eq + 1))
          continue
        }
        case "Stasis": {
          const [app = "", ...args] = data.split(",")
          this.enterStasis(channel, app, args, true)
          return true
        }
        case "Hangup":
          this.hangup(channel, { kind: "remote", cause: 16 })
          return true
        default:
          return true
      }
    }
    return true
  }

  setChannelVariable(id: string, name: string | undefined, value: string | undefined): void {
    if (name === undefined || name === "") throw ariError(400, "Bad Request", "Variable name is required")
    const channel = this.controlled(id)
    this.setVariable(channel, name, value ?? "")
  }

  getChannelVariable(id: string, name: string | undefined): string {
    if (name === undefined || name === "") throw ariError(400, "Bad Request", "Variable name is required")
    const channel = this.channels.get(id)
    if (channel === undefined || channel.hangingUp) {
      throw ariError(404, "Channel Not Found", "Provided channel was not found")
    }
    if (name === "CALLERID(name)") return channel.caller.name
    if (name === "CALLERID(num)") return channel.caller.number
    const value = channel.variables.get(name)
    if (value === undefined) throw ariError(404, "Variable Not Found", "Provided variable was not found")
    return value
  }

  snoop(
    id: string,
    request: {
      readonly spy?: string | undefined
      readonly whisper?: string | undefined
      readonly app?: string | undefined
      readonly appArgs?: string | undefined
      readonly snoopId?: string | undefined
    }
  ): Channel {
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
    const target = this.channels.get(id)
    if (target === undefined || target.hangingUp) {
      throw ariError(404, "Channel Not Found", "Provided channel was not found")
    }
    if (request.snoopId !== undefined && this.channels.has(request.snoopId)) {
      throw ariError(500, "Internal error", "Snoop channel could not be created")
    }
    const snoop = this.newChannel({
      id: request.snoopId ?? this.nextUniqueId(),
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
    this.later(0, () => {
      if (this.alive(snoop)) this.enterStasis(snoop, app, args, false)
    })
    return snoop
  }

  // ---- bridges

  createBridge(request: {
    readonly type?: string | undefined
    readonly bridgeId?: string | undefined
    readonly name?: string | undefined
  }): Bridge {
    if (request.bridgeId !== undefined && request.bridgeId !== "" && this.bridges.has(request.bridgeId)) {
      throw ariError(409, "Conflict", "Bridge with the same bridgeId already exists")
    }
    const types = (request.type ?? "mixing").split(",").map((t) => t.trim())
    const bridge: Bridge = {
      id: request.bridgeId !== undefined && request.bridgeId !== "" ? request.bridgeId : randomUUID(),
      bridgeType: types.includes("holding") ? "holding" : "mixing",
      name: request.name ?? "",
      channels: [],
      creationtime: asteriskTimestamp(),
      subscribedApps: new Set(),
      everSoftmix: false
    }
    this.bridges.set(bridge.id, bridge)
    this.hub.deliver(this.ev.bridgeCreated(bridgeSnapshot(bridge)), this.hub.subscribeAllApps())
    return bridge
  }

  getBridge(id: string): Bridge {
    const bridge = this.bridges.get(id)
    if (bridge === undefined) throw bridgeNotFound()
    return bridge
  }

  addToBridge(bridgeId: string, channelIds: ReadonlyArray<string>): void {
    const bridge = this.getBridge(bridgeId)
    if (channelIds.length === 0) throw ariError(400, "Bad Request", "Missing parameter channel")
    const channels = channelIds.map((id) => {
      const channel = this.channels.get(id)
      if (channel === undefined || channel.hangingUp) throw ariError(400, "Bad Request", "Channel not found")
      return channel
    })
    for (const channel of channels) {
      if (channel.stasisApp === undefined) {
        throw ariError(422, "Unprocessable Entity", "Channel not in Stasis application")
      }
    }
    for (const channel of channels) {
      if (channel.bridgeId === bridge.id) continue
      if (channel.bridgeId !== undefined) this.leaveBridge(channel)
      channel.bridgeId = bridge.id
      bridge.channels.push(channel.id)
      if (bridge.channels.length > 2) bridge.everSoftmix = true
      if (channel.stasisApp !== undefined) bridge.subscribedApps.add(channel.stasisApp)
      this.hub.deliver(
        this.ev.channelEnteredBridge(bridgeSnapshot(bridge), channelSnapshot(channel)),
        [...this.channelSubscribers(channel), ...this.bridgeSubscribers(bridge)]
      )
    }
  }

  removeFromBridge(bridgeId: string, channelIds: ReadonlyArray<string>): void {
    const bridge = this.getBridge(bridgeId)
    if (channelIds.length === 0) throw ariError(400, "Bad Request", "Missing parameter channel")
    const channels = channelIds.map((id) => {
      const channel = this.channels.get(id)
      if (channel === undefined || channel.hangingUp) throw ariError(400, "Bad Request", "Channel not found")
      return channel
    })
    for (const channel of channels) {
      if (channel.bridgeId !== bridge.id) throw ariError(422, "Unprocessable Entity", "Channel not in this bridge")
    }
    for (const channel of channels) this.leaveBridge(channel)
  }

  private leaveBridge(channel: Channel): void {
    const bridge = channel.bridgeId !== undefined ? this.bridges.get(channel.bridgeId) : undefined
    channel.bridgeId = undefined
    if (bridge === undefined) return
    const index = bridge.channels.indexOf(channel.id)
    if (index >= 0) bridge.channels.splice(index, 1)
    this.hub.deliver(
      this.ev.channelLeftBridge(bridgeSnapshot(bridge), channelSnapshot(channel)),
      [...this.channelSubscribers(channel), ...this.bridgeSubscribers(bridge)]
    )
  }

  destroyBridge(id: string): void {
    const bridge = this.getBridge(id)
    for (const channelId of [...bridge.channels]) {
      const channel = this.channels.get(channelId)
      if (channel !== undefined) this.leaveBridge(channel)
    }
    this.stopMediaOn(`bridge:${bridge.id}`)
    this.hub.deliver(this.ev.bridgeDestroyed(bridgeSnapshot(bridge)), this.bridgeSubscribers(bridge))
    this.bridges.delete(id)
  }

  // ---- playbacks

  private targetSubscribers(targetUri: string): Array<string> {
    const [kind, ...rest] = targetUri.split(":")
    const id = rest.join(":")
    if (kind === "channel") {
      const channel = this.channels.get(id)
      return channel === undefined ? [] : this.channelSubscribers(channel)
    }
    const bridge = this.bridges.get(id)
    return bridge === undefined ? [] : this.bridgeSubscribers(bridge)
  }

  play(targetUri: string, media: ReadonlyArray<string>, language: string, playbackId: string | undefined): Playback {
    const first = media[0]
    if (first === undefined || first === "") {
      throw ariError(500, "Internal Server Error", "Failed to queue media for playback")
    }
    const id = playbackId !== undefined && playbackId !== "" ? playbackId : randomUUID()
    if (this.playbacks.has(id)) throw ariError(500, "Internal Server Error", "Failed to queue media for playback")
    const playback: Playback = { id, mediaUri: first, targetUri, language, state: "queued", timer: undefined }
    this.playbacks.set(id, playback)
    let queue = this.playbackQueues.get(targetUri)
    if (queue === undefined) {
      queue = []
      this.playbackQueues.set(targetUri, queue)
    }
    queue.push(playback)
    // playbacks on one target play one after the other
    if (queue.length === 1) this.later(0, () => this.startPlayback(playback))
    return playback
  }

  private mediaOutcome(mediaUri: string): "done" | "failed" | "never" {
    const colon = mediaUri.indexOf(":")
    const scheme = mediaUri.slice(0, colon)
    const name = mediaUri.slice(colon + 1)
    switch (scheme) {
      case "sound":
        return name.startsWith("no-such") || name === "" ? "failed" : "done"
      case "recording":
        return this.storedRecordings.has(name) ? "done" : "failed"
      case "tone":
      case "digits":
      case "number":
      case "characters":
        return "done"
      default:
        // Asterisk accepts an unknown scheme and the playback never ends
        return "never"
    }
  }

  private startPlayback(playback: Playback): void {
    if (this.playbacks.get(playback.id) !== playback || playback.state !== "queued") return
    playback.state = "playing"
    this.hub.deliver(this.ev.playbackStarted(playbackJson(playback)), this.targetSubscribers(playback.targetUri))
    const outcome = this.mediaOutcome(playback.mediaUri)
    if (outcome === "failed") this.finishPlayback(playback, "failed")
    else if (outcome === "done") {
      const timer = setTimeout(() => {
        this.timers.delete(timer)
        this.finishPlayback(playback, "done")
      }, this.options.timings.playbackDurationMs)
      this.timers.add(timer)
      playback.timer = timer
    }
  }

  private finishPlayback(playback: Playback, state: "done" | "failed" | "canceled"): void {
    if (this.playbacks.get(playback.id) !== playback) return
    if (playback.timer !== undefined) {
      clearTimeout(playback.timer)
      this.timers.delete(playback.timer)
    }
    const wasQueued = playback.state === "queued"
    playback.state = state
    this.playbacks.delete(playback.id)
    const queue = this.playbackQueues.get(playback.targetUri) ?? []
    const index = queue.indexOf(playback)
    if (index >= 0) queue.splice(index, 1)
    if (!wasQueued || state !== "canceled") {
      this.hub.deliver(this.ev.playbackFinished(playbackJson(playback)), this.targetSubscribers(playback.targetUri))
    }
    const next = queue[0]
    if (next !== undefined && next.state === "queued") this.later(0, () => this.startPlayback(next))
    if (queue.length === 0) this.playbackQueues.delete(playback.targetUri)
  }

  getPlayback(id: string): Playback {
    const playback = this.playbacks.get(id)
    if (playback === undefined) throw ariError(404, "Not Found", "Playback not found")
    return playback
  }

  stopPlayback(id: string): void {
    const playback = this.getPlayback(id)
    this.finishPlayback(playback, playback.state === "queued" ? "canceled" : "done")
  }

  controlPlayback(id: string, operation: string | undefined): void {
    const playback = this.getPlayback(id)
    const operations = ["restart", "pause", "unpause", "reverse", "forward"]
    if (operation === undefined || !operations.includes(operation)) {
      throw ariError(400, "Bad Request", "Invalid operation parameter")
    }
    if (playback.state !== "playing" && playback.state !== "paused") {
      throw ariError(409, "Conflict", "Playback not in a valid state")
    }
    if (operation === "pause") playback.state = "paused"
    if (operation === "unpause") playback.state = "playing"
  }

  /** Ends what plays or records on a target that goes away. */
  private stopMediaOn(targetUri: string): void {
    for (const playback of [...(this.playbackQueues.get(targetUri) ?? [])]) {
      this.finishPlayback(playback, playback.state === "queued" ? "canceled" : "done")
    }
    for (const recording of [...this.liveRecordings.values()]) {
      if (recording.targetUri === targetUri) this.finishRecording(recording, "done")
    }
  }

  // ---- recordings

  record(
    targetUri: string,
    request: {
      readonly name?: string | undefined
      readonly format?: string | undefined
      readonly maxDurationSeconds?: number | undefined
      readonly ifExists?: string | undefined
    }
  ): LiveRecording {
    if (request.maxDurationSeconds !== undefined && request.maxDurationSeconds < 0) {
      throw ariError(400, "Bad Request", "max_duration_seconds cannot be negative")
    }
    const ifExists = request.ifExists ?? "fail"
    if (!["fail", "overwrite", "append"].includes(ifExists)) throw ariError(400, "Bad Request", "ifExists invalid")
    if (request.format === undefined || !recordingFormats.has(request.format)) {
      throw ariError(422, "Unprocessable Entity", "specified format is unknown on this system")
    }
    const name = request.name
    if (name === undefined || name === "") throw ariError(500, "Internal Server Error", "Error parsing request")
    if (this.liveRecordings.has(name) || (ifExists === "fail" && this.storedRecordings.has(name))) {
      throw ariError(409, "Conflict", `Recording '${name}' already exists and can not be overwritten`)
    }
    const recording: LiveRecording = {
      name,
      format: request.format,
      targetUri,
      state: "queued",
      startedAt: Date.now(),
      timer: undefined
    }
    this.liveRecordings.set(name, recording)
    this.later(0, () => {
      if (this.liveRecordings.get(name) !== recording) return
      recording.state = "recording"
      this.hub.deliver(this.ev.recordingStarted(recordingJson(recording)), this.targetSubscribers(targetUri))
      const max = request.maxDurationSeconds ?? 0
      if (max > 0) this.later(max * 1000, () => this.finishRecording(recording, "done"))
    })
    return recording
  }

  getLiveRecording(name: string): LiveRecording {
    const recording = this.liveRecordings.get(name)
    if (recording === undefined) throw ariError(404, "Not Found", "Recording not found")
    return recording
  }

  finishRecording(recording: LiveRecording, state: "done" | "canceled"): void {
    if (this.liveRecordings.get(recording.name) !== recording) return
    this.liveRecordings.delete(recording.name)
    recording.state = state
    const duration = Math.round((Date.now() - recording.startedAt) / 1000)
    if (state === "done") this.storedRecordings.set(recording.name, { name: recording.name, format: recording.format })
    this.hub.deliver(
      this.ev.recordingFinished(recordingJson(recording, state === "done" ? duration : undefined)),
      this.targetSubscribers(recording.targetUri)
    )
  }

  // ---- applications

  /** Applications known to Asterisk: those with a websocket, and inactive ones a channel or bridge holds. */
  applicationNames(): Array<string> {
    return this.hub.applicationNames()
  }

  /** Whether a channel or bridge holds `app`: Asterisk keeps such an app, inactive, when its socket goes. */
  holdsApp(app: string): boolean {
    for (const channel of this.channels.values()) {
      if (channel.stasisApp === app || channel.subscribedApps.has(app)) return true
    }
    for (const bridge of this.bridges.values()) if (bridge.subscribedApps.has(app)) return true
    return false
  }

  applicationJson(app: string) {
    const registration = this.hub.application(app)
    const channelIds: Array<string> = []
    for (const channel of this.channels.values()) {
      if (channel.stasisApp === app || channel.subscribedApps.has(app)) channelIds.push(channel.id)
    }
    const bridgeIds: Array<string> = []
    for (const bridge of this.bridges.values()) if (bridge.subscribedApps.has(app)) bridgeIds.push(bridge.id)
    return {
      name: app,
      channel_ids: channelIds,
      bridge_ids: bridgeIds,
      endpoint_ids: [...(registration?.endpointIds ?? [])],
      device_names: [...(registration?.deviceNames ?? [])],
      events_allowed: [],
      events_disallowed: []
    }
  }

  changeSubscription(app: string, eventSources: ReadonlyArray<string>, subscribe: boolean): void {
    const registration = this.hub.application(app)
    if (registration === undefined) throw ariError(404, "Not Found", "Application not found")
    if (eventSources.length === 0) throw ariError(400, "Bad Request", "Missing parameter eventSource")
    const actions: Array<() => void> = []
    for (const source of eventSources) {
      const colon = source.indexOf(":")
      const scheme = source.slice(0, colon)
      const id = source.slice(colon + 1)
      const missing = () => ariError(422, "Unprocessable Entity", "Event source does not exist")
      switch (scheme) {
        case "channel": {
          const channel = this.channels.get(id)
          if (channel === undefined) throw missing()
          actions.push(() => subscribe ? channel.subscribedApps.add(app) : channel.subscribedApps.delete(app))
          break
        }
        case "bridge": {
          const bridge = this.bridges.get(id)
          if (bridge === undefined) throw missing()
          actions.push(() => subscribe ? bridge.subscribedApps.add(app) : bridge.subscribedApps.delete(app))
          break
        }
        case "endpoint": {
          if (!this.options.endpoints.includes(id) && !id.endsWith("/")) throw missing()
          actions.push(() => subscribe ? registration.endpointIds.add(id) : registration.endpointIds.delete(id))
          break
        }
        case "deviceState": {
          actions.push(() => subscribe ? registration.deviceNames.add(id) : registration.deviceNames.delete(id))
          break
        }
        default:
          throw ariError(400, "Bad Request", "Invalid event source URI scheme")
      }
    }
    for (const action of actions) action()
  }

  /** Channels on an endpoint, for `GET /endpoints`. */
  endpointChannelIds(endpoint: string): Array<string> {
    const ids: Array<string> = []
    for (const channel of this.channels.values()) if (channel.endpoint === endpoint) ids.push(channel.id)
    return ids
  }
}

type AfterAnswer =
  | { readonly kind: "stasis"; readonly app: string; readonly args: ReadonlyArray<string> }
  | { readonly kind: "dialplan"; readonly context: string; readonly exten: string; readonly priority: number }

