/**
 * The simulator's model of Asterisk objects, and their JSON snapshots with the exact key order
 * of Asterisk 23 (JSON objects keep insertion order, so the builders below fix the order).
 */

export type ChannelStateName = "Down" | "Rsrvd" | "OffHook" | "Dialing" | "Ring" | "Ringing" | "Up" | "Busy"

/** How the channel came to be: it decides which events follow its hangup. */
export type ChannelOrigin = "inbound" | "originated" | "created" | "snoop" | "local"

export interface CallerId {
  name: string
  number: string
}

export interface DialplanLocation {
  context: string
  exten: string
  priority: number
  appName: string
  appData: string
}

export interface Channel {
  readonly id: string
  readonly name: string
  state: ChannelStateName
  protocolId: string
  caller: CallerId
  connected: CallerId
  dialplan: DialplanLocation
  readonly creationtime: string
  readonly language: string
  readonly tech: "PJSIP" | "Local" | "Snoop"
  /** `PJSIP/sipp` for a SIP channel; the dial string target for Local. */
  readonly endpoint: string
  readonly origin: ChannelOrigin
  /** The Stasis application the channel is in, if any. */
  stasisApp: string | undefined
  /** Applications subscribed to the channel outside Stasis (originate with `app`, subscriptions). */
  readonly subscribedApps: Set<string>
  bridgeId: string | undefined
  readonly variables: Map<string, string>
  hangingUp: boolean
  /** The other half of a Local pair. */
  partnerId: string | undefined
  /** The channel a snoop channel spies on. */
  snoopTargetId: string | undefined
  /** The callee has been dialled (originate or `/dial`). */
  dialled: boolean
}

export interface Bridge {
  readonly id: string
  readonly bridgeType: string
  readonly name: string
  readonly channels: Array<string>
  readonly creationtime: string
  readonly subscribedApps: Set<string>
  everSoftmix: boolean
}

export type PlaybackState = "queued" | "playing" | "continuing" | "done" | "failed" | "canceled" | "paused"

export interface Playback {
  readonly id: string
  readonly mediaUri: string
  readonly targetUri: string
  readonly language: string
  state: PlaybackState
  timer: ReturnType<typeof setTimeout> | undefined
}

export interface LiveRecording {
  readonly name: string
  readonly format: string
  readonly targetUri: string
  state: "queued" | "recording" | "paused" | "done" | "failed" | "canceled"
  readonly startedAt: number
  timer: ReturnType<typeof setTimeout> | undefined
}

export interface StoredRecording {
  readonly name: string
  readonly format: string
}

export const channelSnapshot = (channel: Channel, dialplanOverride?: Partial<DialplanLocation>) => {
  const dialplan = dialplanOverride === undefined ? channel.dialplan : { ...channel.dialplan, ...dialplanOverride }
  return {
    id: channel.id,
    name: channel.name,
    state: channel.state,
    protocol_id: channel.protocolId,
    caller: { name: channel.caller.name, number: channel.caller.number },
    connected: { name: channel.connected.name, number: channel.connected.number },
    accountcode: "",
    dialplan: {
      context: dialplan.context,
      exten: dialplan.exten,
      priority: dialplan.priority,
      app_name: dialplan.appName,
      app_data: dialplan.appData
    },
    creationtime: channel.creationtime,
    language: channel.language
  }
}

export type ChannelSnapshot = ReturnType<typeof channelSnapshot>

const bridgeTechnology = (bridge: Bridge): string => {
  if (bridge.bridgeType === "holding") return "holding_bridge"
  // Asterisk moves a mixing bridge from simple_bridge to softmix once it holds more than two channels
  return bridge.everSoftmix ? "softmix" : "simple_bridge"
}

export const bridgeSnapshot = (bridge: Bridge) => ({
  id: bridge.id,
  technology: bridgeTechnology(bridge),
  bridge_type: bridge.bridgeType,
  bridge_class: "stasis",
  creator: "Stasis",
  name: bridge.name,
  channels: [...bridge.channels],
  creationtime: bridge.creationtime,
  video_mode: bridge.bridgeType === "holding" ? "none" : "talker"
})

export type BridgeSnapshot = ReturnType<typeof bridgeSnapshot>

export const playbackJson = (playback: Playback) => ({
  id: playback.id,
  media_uri: playback.mediaUri,
  target_uri: playback.targetUri,
  language: playback.language,
  state: playback.state
})

export const recordingJson = (recording: LiveRecording, durationSeconds?: number) => {
  const json: Record<string, unknown> = {
    name: recording.name,
    format: recording.format,
    state: recording.state,
    target_uri: recording.targetUri
  }
  if (durationSeconds !== undefined) json.duration = durationSeconds
  return json
}

/** Asterisk's timestamp format: `2026-11-30T10:28:16.331+0000` (the samples were taken in UTC). */
export const asteriskTimestamp = (date: Date = new Date()): string => {
  const iso = date.toISOString() // 2026-11-30T10:28:16.331Z
  return iso.slice(0, 23) + "+0000"
}

let cachedMillis = -1
let cachedStamp = ""

/** The current timestamp, formatted at most once per millisecond (floods emit many per ms). */
export const nowStamp = (): string => {
  const millis = Date.now()
  if (millis !== cachedMillis) {
    cachedMillis = millis
    cachedStamp = asteriskTimestamp(new Date(millis))
  }
  return cachedStamp
}

/** Parses an Asterisk caller id such as `ARI <1000>`, `"Name" <1000>` or `1000`. */
export const parseCallerId = (text: string): CallerId => {
  const match = /^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$/.exec(text)
  if (match !== null) return { name: match[1] ?? "", number: match[2] ?? "" }
  const trimmed = text.trim()
  return /^[0-9*#+]+$/.test(trimmed) ? { name: "", number: trimmed } : { name: trimmed, number: "" }
}

/** Hangup reasons accepted by `DELETE /channels/{id}?reason=` and their Q.850 causes. */
export const hangupReasons: Readonly<Record<string, number>> = {
  normal: 16,
  busy: 17,
  congestion: 34,
  no_answer: 19,
  timeout: 18,
  rejected: 21,
  unallocated: 1,
  normal_unspecified: 31,
  number_incomplete: 28,
  codec_mismatch: 58,
  interworking: 127,
  failure: 38,
  answered_elsewhere: 26
}

const causeTexts: Readonly<Record<number, string>> = {
  0: "Unknown",
  1: "Unallocated (unassigned) number",
  16: "Normal Clearing",
  17: "User busy",
  18: "No user responding",
  19: "User alerting, no answer",
  21: "Call Rejected",
  26: "Answered elsewhere",
  28: "Invalid number format (addr incomplete)",
  31: "Normal, unspecified",
  34: "Circuit/channel congestion",
  38: "Network out of order",
  58: "Bearer capability not available",
  127: "Interworking, unspecified"
}

export const causeText = (cause: number): string => causeTexts[cause] ?? "Unknown"
