/**
 * ARI event builders. Key order follows what Asterisk 23.4.1 sends: most events are
 * `type, timestamp, <fields>, asterisk_id, application`, but ChannelVarset and ChannelHangupRequest
 * put their own fields before `type`, DeviceStateChanged puts `application` second and
 * ApplicationReplaced carries `application` before `asterisk_id`.
 */
import type { BridgeSnapshot, ChannelSnapshot } from "./state.js"
import { nowStamp } from "./state.js"

/** Where the websocket layer puts `application` when it addresses the event to an app. */
export type ApplicationPlacement = "last" | "second" | "beforeAsteriskId"

export interface SimEvent {
  readonly type: string
  readonly body: Readonly<Record<string, unknown>>
  readonly placement: ApplicationPlacement
}

/** The event exactly as one application receives it. */
export const addressEvent = (event: SimEvent, app: string): Record<string, unknown> => {
  switch (event.placement) {
    case "last":
      return { ...event.body, application: app }
    case "second": {
      const { type, ...rest } = event.body
      return { type, application: app, ...rest }
    }
    case "beforeAsteriskId": {
      const { asterisk_id, ...rest } = event.body
      return { ...rest, application: app, asterisk_id }
    }
  }
}

export type EventBuilders = ReturnType<typeof makeEventBuilders>

export const makeEventBuilders = (asteriskId: string) => {
  const standard = (type: string, fields: Record<string, unknown>): SimEvent => ({
    type,
    body: { type, timestamp: nowStamp(), ...fields, asterisk_id: asteriskId },
    placement: "last"
  })

  return {
    stasisStart: (channel: ChannelSnapshot, args: ReadonlyArray<string>) =>
      standard("StasisStart", { args: [...args], channel }),
    stasisEnd: (channel: ChannelSnapshot) => standard("StasisEnd", { channel }),
    /** StasisBroadcast's offer: `caller` is the caller id number, `called` the extension. */
    callBroadcast: (channel: ChannelSnapshot, caller: string, called: string) =>
      standard("CallBroadcast", { channel, caller, called }),
    callClaimed: (channel: ChannelSnapshot, winnerApp: string) =>
      standard("CallClaimed", { channel, winner_app: winnerApp }),
    channelCreated: (channel: ChannelSnapshot) => standard("ChannelCreated", { channel }),
    channelStateChange: (channel: ChannelSnapshot) => standard("ChannelStateChange", { channel }),
    channelDtmfReceived: (channel: ChannelSnapshot, digit: string, durationMs: number) =>
      standard("ChannelDtmfReceived", { digit, duration_ms: durationMs, channel }),
    channelDialplan: (channel: ChannelSnapshot, app: string, appData: string) =>
      standard("ChannelDialplan", { dialplan_app: app, dialplan_app_data: appData, channel }),
    channelDestroyed: (channel: ChannelSnapshot, cause: number, causeTxt: string) =>
      standard("ChannelDestroyed", { cause, cause_txt: causeTxt, channel }),
    channelVarset: (channel: ChannelSnapshot, variable: string, value: string): SimEvent => ({
      type: "ChannelVarset",
      body: { variable, value, type: "ChannelVarset", timestamp: nowStamp(), channel, asterisk_id: asteriskId },
      placement: "last"
    }),
    /** `soft` hangups (ARI DELETE, leaving Stasis) carry cause and soft first; a remote BYE carries neither. */
    channelHangupRequest: (channel: ChannelSnapshot, soft?: { readonly cause: number }): SimEvent => ({
      type: "ChannelHangupRequest",
      body: soft === undefined
        ? { type: "ChannelHangupRequest", timestamp: nowStamp(), channel, asterisk_id: asteriskId }
        : {
          cause: soft.cause,
          soft: true,
          type: "ChannelHangupRequest",
          timestamp: nowStamp(),
          channel,
          asterisk_id: asteriskId
        },
      placement: "last"
    }),
    dial: (
      peer: ChannelSnapshot,
      dialstatus: string,
      dialstring: string,
      caller: ChannelSnapshot | undefined
    ) =>
      standard(
        "Dial",
        caller === undefined
          ? { dialstatus, forward: "", dialstring, peer }
          : { dialstatus, forward: "", dialstring, caller, peer }
      ),
    channelEnteredBridge: (bridge: BridgeSnapshot, channel: ChannelSnapshot) =>
      standard("ChannelEnteredBridge", { bridge, channel }),
    channelLeftBridge: (bridge: BridgeSnapshot, channel: ChannelSnapshot) =>
      standard("ChannelLeftBridge", { bridge, channel }),
    bridgeCreated: (bridge: BridgeSnapshot) => standard("BridgeCreated", { bridge }),
    bridgeDestroyed: (bridge: BridgeSnapshot) => standard("BridgeDestroyed", { bridge }),
    playbackStarted: (playback: Record<string, unknown>) => standard("PlaybackStarted", { playback }),
    playbackFinished: (playback: Record<string, unknown>) => standard("PlaybackFinished", { playback }),
    recordingStarted: (recording: Record<string, unknown>) => standard("RecordingStarted", { recording }),
    recordingFinished: (recording: Record<string, unknown>) => standard("RecordingFinished", { recording }),
    deviceStateChanged: (name: string, state: string): SimEvent => ({
      type: "DeviceStateChanged",
      body: {
        type: "DeviceStateChanged",
        timestamp: nowStamp(),
        device_state: { name, state },
        asterisk_id: asteriskId
      },
      placement: "second"
    }),
    applicationRegistered: (): SimEvent => ({
      type: "ApplicationRegistered",
      body: { type: "ApplicationRegistered", timestamp: nowStamp(), asterisk_id: asteriskId },
      placement: "beforeAsteriskId"
    }),
    applicationUnregistered: (): SimEvent => ({
      type: "ApplicationUnregistered",
      body: { type: "ApplicationUnregistered", timestamp: nowStamp(), asterisk_id: asteriskId },
      placement: "beforeAsteriskId"
    }),
    applicationReplaced: (): SimEvent => ({
      type: "ApplicationReplaced",
      body: { type: "ApplicationReplaced", timestamp: nowStamp(), asterisk_id: asteriskId },
      placement: "beforeAsteriskId"
    })
  }
}

/** The five RTP statistics variables a PJSIP channel sets when its media session ends. */
export const rtpQosVariables = (ssrc: number): ReadonlyArray<readonly [string, string]> => [
  [
    "RTPAUDIOQOS",
    `ssrc=${ssrc};themssrc=0;lp=0;rxjitter=0.000000;rxcount=0;txjitter=0.000000;txcount=0;rlp=0;rtt=0.000000;` +
    "rxmes=0.000000;txmes=0.000000"
  ],
  [
    "RTPAUDIOQOSJITTER",
    "minrxjitter=000.000000;maxrxjitter=000.000000;avgrxjitter=000.000000;stdevrxjitter=000.000000;" +
    "mintxjitter=000.000000;maxtxjitter=000.000000;avgtxjitter=000.000000;stdevtxjitter=000.000000;"
  ],
  [
    "RTPAUDIOQOSLOSS",
    "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;  stdevrxlost=000.000000;" +
    "  mintxlost=000.000000;  maxtxlost=000.000000;  avgtxlost=000.000000;  stdevtxlost=000.000000;"
  ],
  [
    "RTPAUDIOQOSRTT",
    "     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.000000;     stdevrtt=000.000000;"
  ],
  [
    "RTPAUDIOQOSMES",
    "   minrxmes=000.000000;   maxrxmes=000.000000;   avgrxmes=000.000000;   stdevrxmes=000.000000;" +
    "   mintxmes=000.000000;   maxtxmes=000.000000;   avgtxmes=000.000000;   stdevtxmes=000.000000;"
  ]
]
