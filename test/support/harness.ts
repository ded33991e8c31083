/**
 * An end-to-end rig: the ARI simulator, a bus, and the proxy between them, all in one scope.
 */
import { Context, Effect, Layer, Logger, LogLevel, TestServices } from "effect"
import { Bus, type BusShape } from "../../src/bus/Bus.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { makeProxyConfig, type ProxyConfigInput, ProxyConfigService } from "../../src/config/ProxyConfigService.js"
import type { ProxyConfig } from "../../src/config/ProxyConfig.js"
import { Proxy, layerWithAri, type ProxyShape } from "../../src/proxy/Proxy.js"
import { type SimulatorHandle, type SimulatorOptions, startSimulator } from "../../src/simulator/index.js"

export interface Rig {
  readonly sim: SimulatorHandle
  readonly bus: BusShape
  readonly proxy: ProxyShape
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

/** Starts the proxy against `sim` on `bus`; it stops when the scope closes. */
export const startProxy = (sim: SimulatorHandle, bus: BusShape, config: ProxyConfigInput = {}) =>
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
    return { proxy, config: full }
  })

/** Simulator + in-memory bus + proxy. */
export const makeRig = (options: { readonly config?: ProxyConfigInput; readonly sim?: SimulatorOptions; readonly bus?: BusShape } = {}) =>
  Effect.gen(function*() {
    const sim = yield* startSim(options.sim)
    const bus = options.bus ?? (yield* makeMemoryBus)
    const { proxy, config } = yield* startProxy(sim, bus, options.config)
    return { sim, bus, proxy, config } satisfies Rig
  })
