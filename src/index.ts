/**
 * ari-proxy as a library: the proxy Layer for a host Effect application, its configuration, the
 * bus port and drivers, and the wire protocol.
 *
 * See README "Use it as a library".
 */
export * from "./protocol/index.js"
export * from "./config/index.js"
export * from "./bus/index.js"
export { Proxy, layer as proxyLayer, layerWithAri as proxyLayerWithAri } from "./proxy/Proxy.js"
export type { ProxyShape, ProxyStats } from "./proxy/Proxy.js"
export { ariProxyLayer, proxyApplication } from "./proxy/application.js"
export { AriRest } from "./ari/rest.js"
export { ProxyTracer } from "./observability/tracing.js"
export { ProxyMetrics, ProxyMetricsService } from "./observability/metrics.js"
export { AriSocket } from "./ari/socket.js"
