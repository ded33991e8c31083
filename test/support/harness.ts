/**
 * An end-to-end rig: the ARI simulator, a bus, and the proxy between them, all in one scope.
 */
import { Context, Effect, Layer, Logger, LogLevel, TestServices } from "effect"
import { Bus, type BusShape } from "../../src/bus/Bus.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { makeProxyConfig, type ProxyConfigInput, ProxyConfigService } from "../../src/config/ProxyConfigService.js"
import type { ProxyConfig } from "../../src/config/ProxyConfig.js"
import { type ProxyMetrics, ProxyMetricsService } from "../../src/observability/metrics.js"
import { Proxy, layerWithAri, type ProxyShape } from "../../src/proxy/Proxy.js"
import { type SimulatorHandle, type SimulatorOptions, startSimulator } from "../../src/simulator/index.js"

export interface Rig {
  readonly sim: SimulatorHandle
  readonly bus: BusShape
  readonly proxy: ProxyShape
  /** The proxy's own metrics (what its /metrics shows). */
  readonly metrics: ProxyMetrics
  readonly config: ProxyConfig
}

export const startSim = (options: SimulatorOptions = {}) =>
  Effect.acquireRelease(Effect.promise(() => startSimulator(options)), (sim) => Effect.promise(() => sim.close()))

/**
 * Polls `condition` every few milliseconds until it holds (or the test times out). The polling is
 * in real time, so a test on TestClock can wait for what happens on the network too.
 */
export const eventually = (condition: () => boolean, everyMs = 5) =>
  Effect.gen(function*() {
    while (!condition()) yield* TestServices.provideLive(Effect.sleep(everyMs))
  })

export const waitUntilReady = (proxy: ProxyShape) =>
  Effect.gen(function*() {
    while (!(yield* proxy.ready)) yield* TestServices.provideLive(Effect.sleep(5))
  })

/** How the proxy reaches the simulator: it dials ARI's websocket, or the simulator dials it (outbound_websocket). */
export type AriMode = "dialled" | "outbound"

/** The credentials the simulator's outbound websockets present to the proxy. */
export const outboundCredentials = { username: "asterisk-out", password: "out-secret" } as const

/**
 * Starts the proxy against `sim` on `bus`; it stops when the scope closes. `outbound`: the proxy
 * listens, the simulator dials it with a persistent outbound websocket for the proxy's applications
 * (its entity id mapped to the configured `serverId`), and commands go over that socket.
 */
export const startProxy = (sim: SimulatorHandle, bus: BusShape, config: ProxyConfigInput = {}, mode: AriMode = "dialled") =>
  Effect.gen(function*() {
    if (mode === "outbound") {
      const serverId = config.serverId ?? "ast-test"
      const started = yield* startDialledProxy(sim, bus, {
        ...config,
        outboundWebsocket: {
          enabled: true,
          port: 0,
          ...outboundCredentials,
          serverIds: new Map([[sim.asteriskId, serverId]]),
          ...config.outboundWebsocket
        }
      })
      const outbound = yield* Effect.acquireRelease(
        Effect.sync(() =>
          sim.outboundWebsocket({
            uri: `ws://127.0.0.1:${started.proxy.outboundPort}/ari/out`,
            apps: started.config.applications,
            connectionType: "persistent",
            ...outboundCredentials
          })
        ),
        (outbound) => Effect.sync(() => outbound.close())
      )
      yield* eventually(() => outbound.connected())
      return started
    }
    return yield* startDialledProxy(sim, bus, config)
  })

const startDialledProxy = (sim: SimulatorHandle, bus: BusShape, config: ProxyConfigInput) =>
  Effect.gen(function*() {
    const full = makeProxyConfig({
      applications: ["app"],
      stasisUrl: sim.url,
      websocketUrl: sim.wsUrl,
      wsUser: sim.credentials.username,
      wsPassword: sim.credentials.password,
      serverId: "ast-test",
      attachGraceMs: 300,
      endedLingerMs: 2_000,
      reconnectMinMs: 20,
      reconnectMaxMs: 200,
      ...config
    })
    // Quiet unless asked (TEST_LOG_LEVEL=Debug): fibers the proxy forks inherit this level.
    const level = LogLevel.fromLiteral((process.env.TEST_LOG_LEVEL ?? "Warning") as LogLevel.Literal)
    const context = yield* Layer.build(
      layerWithAri.pipe(Layer.provide(Layer.succeed(Bus, bus)), Layer.provide(ProxyConfigService.layerFrom(full)))
    ).pipe(Logger.withMinimumLogLevel(level))
    const proxy = Context.get(context, Proxy)
    yield* waitUntilReady(proxy)
    return { proxy, metrics: Context.get(context, ProxyMetricsService), config: full }
  })

/** Simulator + in-memory bus + proxy. */
export const makeRig = (options: { readonly config?: ProxyConfigInput; readonly sim?: SimulatorOptions; readonly bus?: BusShape } = {}) =>
  Effect.gen(function*() {
    const sim = yield* startSim(options.sim)
    const bus = options.bus ?? (yield* makeMemoryBus)
    const { proxy, metrics, config } = yield* startProxy(sim, bus, options.config)
    return { sim, bus, proxy, metrics, config } satisfies Rig
  })
