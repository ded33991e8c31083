/**
 * The ARI simulator: a stand-in for Asterisk 23 ARI (REST + event websocket) with a control API.
 * `startSimulator` works without Effect; `Simulator` / `makeSimulator` wrap it for Effect code.
 */
export { controlRoutes } from "./control.js"
export { makeSimulator, Simulator, SimulatorStartError } from "./effect.js"
export type { BroadcastCall, InboundCall } from "./engine/farEnd.js"
export type { OriginateRequest } from "./engine/outbound.js"
export { AriError, ControlError } from "./errors.js"
export { addressEvent } from "./events.js"
export type { SimEvent } from "./events.js"
export { defaultDialplan, defaultSounds, defaultTimings } from "./options.js"
export type { Credentials, Dialplan, DialplanStep, SimulatorOptions, Timings } from "./options.js"
export { startSimulator } from "./server.js"
export type { RecordedRequest, RestMode, SimEventRecord, SimulatorHandle, WaitForEventOptions } from "./server.js"
export { asteriskTimestamp } from "./state.js"
export type { BridgeSnapshot, ChannelSnapshot } from "./state.js"
export type { OutboundWebsocketConfig, OutboundWebsocketHandle } from "./outboundWebsocket.js"
export type { EventListener, FloodResult, SlowReaderDrop } from "./websocket.js"
