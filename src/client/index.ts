/**
 * `ari-proxy/client`: the application side. An ARI application that takes its dialogs from the
 * bus, with the whole ARI 11 surface typed: `AriClient` (Effect) or `connectAriClient` (Promises).
 */
export * from "./AriClient.js"
export type {
  AriDialog,
  AriEventOfType,
  BridgeHandle,
  ChannelHandle,
  ChannelRef,
  DialogEnd,
  EventDelivery,
  EventGap,
  DialogEvent,
  DialogResponse,
  DialogSnapshot,
  OriginateOptions,
  PlaybackHandle,
  ResumedFrom
} from "./dialog.js"
export * from "./errors.js"
export * from "./ari.js"
export * from "./promise.js"
export { ProxyChange, type ProxyDirectory, type ProxyInfo } from "./presence.js"
export { Bus, BusError, type BusShape } from "../bus/Bus.js"
export { layerAmqp, makeAmqpBus, type AmqpOptions } from "../bus/amqp/index.js"
export { layerMemory, makeMemoryBus, type MemoryBus } from "../bus/memory.js"
export { layerNats, makeNatsBus, type NatsOptions } from "../bus/nats/index.js"
