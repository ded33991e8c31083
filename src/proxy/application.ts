/**
 * The whole proxy as one Layer: the bus driver the configuration names, ARI, dialogs. This is
 * what `main.ts` launches and what a host Effect application merges into its own graph.
 */
import { Effect, Layer } from "effect"
import { layerFromConfig as busLayerFromConfig } from "../bus/index.js"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import { ProxyConfigService } from "../config/ProxyConfigService.js"
import { ProxyTracer } from "../observability/tracing.js"
import { layerObserveProxy, layerOpsHttpFromConfig } from "./http.js"
import { layerWithAri } from "./Proxy.js"

/**
 * The proxy for an already validated configuration, with its health/metrics endpoint when
 * `http_port` is set and its span exporter when `otel_endpoint` is; its bus connection is offered
 * to the host too. Built in this order: the endpoint (it answers while the bus connects), the
 * exporter, the bus, the proxy; stopped in the reverse order (the last spans are flushed after the
 * drain).
 */
export const proxyApplication = (config: ProxyConfig) =>
  layerObserveProxy.pipe(
    Layer.provideMerge(layerWithAri),
    Layer.provideMerge(busLayerFromConfig(config)),
    Layer.provideMerge(ProxyTracer.layerFromConfig(config)),
    Layer.provideMerge(layerOpsHttpFromConfig),
    Layer.provideMerge(ProxyConfigService.layerFrom(config))
  )

/**
 * The proxy configured from the current ConfigProvider (the seed's snake_case keys: `ws_password`,
 * `bus_config.url`, ...): it needs nothing but its configuration.
 */
export const ariProxyLayer = Layer.unwrapEffect(
  Effect.map(ProxyConfigService, proxyApplication)
).pipe(Layer.provide(ProxyConfigService.layer))
