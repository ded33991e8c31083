/**
 * ari-proxy as a library: the proxy Layer for a host Effect application, its configuration, the
 * bus port and drivers, and the wire protocol.
 *
 * ```ts
 * const ProxyLive = AriProxy.layerFromConfig.pipe(Layer.provide(ProxyConfigService.layer))
 * // ProxyConfigService.layer reads the seed's keys from the host's ConfigProvider
 * ```
 */
export * from "./protocol/index.js"
export * from "./config/index.js"
export { Bus, BusError } from "./bus/Bus.js"
export type { BusShape, SubscribeOptions, BusConnectionState } from "./bus/Bus.js"
export { layerMemory, makeMemoryBus } from "./bus/memory.js"
export { Proxy, layer as proxyLayer, layerWithAri as proxyLayerWithAri } from "./proxy/Proxy.js"
export type { ProxyShape, ProxyStats } from "./proxy/Proxy.js"
export { AriRest } from "./ari/rest.js"
export { AriSocket } from "./ari/socket.js"
