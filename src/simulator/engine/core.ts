/**
 * The simulated Asterisk core: every object it holds, its timers and unique ids, and who hears an
 * event about a channel, a bridge or a media target. The modules beside it act on it, one per ARI
 * resource as Asterisk's res/ari/resource_*.c (channels, bridges, playbacks, recordings, device
 * states, applications), plus the dialplan, outbound dialling and the far end of calls. They
 * produce the event sequences a real Asterisk 23 produces (see docs ari-behaviour.md) and throw
 * `AriError` for ARI-visible failures; REST handlers and the control API call them.
 */
import type { EventBuilders, SimEvent } from "../events.js"
import type { ResolvedOptions } from "../options.js"
import type { Bridge, Channel, LiveRecording, Playback, StoredRecording } from "../state.js"
import { asteriskTimestamp } from "../state.js"
import type { AppHub } from "../websocket.js"
import type { Offer } from "./broadcast.js"

/** What a dialled channel does once answered. */
export type AfterAnswer =
  | { readonly kind: "stasis"; readonly app: string; readonly args: ReadonlyArray<string> }
  | { readonly kind: "dialplan"; readonly context: string; readonly exten: string; readonly priority: number }

export type Timer = ReturnType<typeof setTimeout>

export class Engine {
  readonly channels = new Map<string, Channel>()
  readonly bridges = new Map<string, Bridge>()
  readonly playbacks = new Map<string, Playback>()
  /** Playbacks per target URI, in the order they play. */
  readonly playbackQueues = new Map<string, Array<Playback>>()
  readonly liveRecordings = new Map<string, LiveRecording>()
  readonly storedRecordings = new Map<string, StoredRecording>()
  readonly globalVariables = new Map<string, string>()
  readonly deviceStates = new Map<string, string>()
  /** The counters in channel names (`PJSIP/sipp-00000001`). */
  readonly nameCounters = { PJSIP: 0, Local: 0, Snoop: 0 }
  inboundCount = 0
  /** Dialled channels: what each does once answered, and the channel that dialled it. */
  readonly afterAnswer = new WeakMap<Channel, AfterAnswer>()
  readonly dialCallers = new WeakMap<Channel, Channel | undefined>()
  /** Calls StasisBroadcast is offering, by channel id, until their timeout. */
  readonly broadcasts = new Map<string, Offer>()
  private readonly timers = new Set<Timer>()
  private uniqueSeq = 0
  readonly startedAt = asteriskTimestamp()

  constructor(
    readonly options: ResolvedOptions,
    readonly hub: AppHub,
    readonly ev: EventBuilders
  ) {}

  /** Runs `fn` later; every timer is cleared when the simulator closes. */
  later(ms: number, fn: () => void): Timer {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      fn()
    }, ms)
    this.timers.add(timer)
    return timer
  }

  cancel(timer: Timer): void {
    clearTimeout(timer)
    this.timers.delete(timer)
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
    this.broadcasts.clear()
  }

  nextUniqueId(): string {
    return `${Math.floor(Date.now() / 1000)}.${this.uniqueSeq++}`
  }

  alive(channel: Channel): boolean {
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

  bridgeSubscribers(bridge: Bridge): Array<string> {
    return [...bridge.subscribedApps, ...this.hub.subscribeAllApps()]
  }

  /** Who hears about a playback or a recording on `channel:<id>` or `bridge:<id>`. */
  targetSubscribers(targetUri: string): Array<string> {
    const [kind, ...rest] = targetUri.split(":")
    const id = rest.join(":")
    if (kind === "channel") {
      const channel = this.channels.get(id)
      return channel === undefined ? [] : this.channelSubscribers(channel)
    }
    const bridge = this.bridges.get(id)
    return bridge === undefined ? [] : this.bridgeSubscribers(bridge)
  }

  emitToChannel(channel: Channel, event: SimEvent): void {
    this.hub.deliver(event, this.channelSubscribers(channel))
  }
}
