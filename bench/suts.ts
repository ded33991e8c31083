/**
 * The systems under test: the proxy (its production composition, `proxyApplication`) or the raw
 * pipe, on one of the three drivers. Broker-backed ones run in a child process (bench/worker.ts)
 * so that their CPU time is their own; the in-memory ones must share the benchmark's process.
 */
import { Context, Effect, Exit, Layer, Logger, LogLevel, Scope } from "effect"
import type { AmqpBus } from "../src/bus/amqp/index.js"
import { Bus, type BusShape } from "../src/bus/Bus.js"
import { makeMemoryBus } from "../src/bus/memory.js"
import { makeProxyConfig } from "../src/config/ProxyConfigService.js"
import { proxyApplication } from "../src/proxy/application.js"
import { Proxy } from "../src/proxy/Proxy.js"
import { amqpRawTransport, natsRawTransport, type RawTransport, startRawPipe } from "./rawPipe.js"

export type Driver = "memory" | "nats" | "rabbitmq"
export type SutKind = "raw" | "proxy"

export const NATS_URL = "nats://127.0.0.1:4222"
export const AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"
/** Short, so that the 10,000 ended dialogs are gone (and their queues deleted) within the run. */
export const ENDED_LINGER_MS = 1000
export const QUEUE_DELETE_GRACE_MS = 1000

export interface SutTarget {
  readonly wsUrl: string
  readonly stasisUrl: string
  readonly username: string
  readonly password: string
  readonly application: string
  readonly serverId: string
}

export interface Sut {
  /** Dialogs open right now. */
  readonly dialogs: () => number
  /** Queues of ended dialogs not deleted yet (the proxy on RabbitMQ, within its grace). */
  readonly queuesToDelete: () => number
  /** The bus the application side must use (in-memory driver only). */
  readonly bus: BusShape | undefined
  readonly close: () => Promise<void>
}

const memoryRawTransport = (bus: BusShape): RawTransport => ({
  prepare: async () => undefined,
  publish: (topic, payload) => Effect.runSync(bus.publish(topic, payload)),
  subscribe: async (topic, handler) => {
    const scope = Effect.runSync(Scope.make())
    await Effect.runPromise(Scope.extend(bus.subscribe(topic, (payload) => Effect.sync(() => handler(payload))), scope))
    return () => void Effect.runFork(Scope.close(scope, Exit.void))
  },
  close: async () => undefined
})

const startProxySut = async (driver: Driver, target: SutTarget): Promise<Sut> => {
  const config = makeProxyConfig({
    applications: [target.application],
    serverId: target.serverId,
    stasisUrl: target.stasisUrl,
    websocketUrl: target.wsUrl,
    wsUser: target.username,
    wsPassword: target.password,
    messageBus: driver === "memory" ? "MEMORY" : driver === "nats" ? "NATS" : "RABBITMQ",
    bus: {
      url: driver === "nats" ? NATS_URL : driver === "rabbitmq" ? AMQP_URL : "",
      queueDeleteGraceMs: QUEUE_DELETE_GRACE_MS
    },
    endedLingerMs: ENDED_LINGER_MS,
    // The flood (20,000 events on one dialog, written as fast as the simulator can) outruns a bus
    // with publisher confirms by more than the default bound of 10,000 pending events, which
    // would end the dialog as overloaded: that is the isolation policy, not what the flood measures.
    dialogMailboxSize: 100_000
  })
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(
    Layer.build(proxyApplication(config)).pipe(Scope.extend(scope), Logger.withMinimumLogLevel(LogLevel.Warning))
  )
  const proxy = Context.get(context, Proxy)
  const bus = Context.get(context, Bus)
  while (!Effect.runSync(proxy.ready)) await new Promise((resolve) => setTimeout(resolve, 5))
  return {
    dialogs: () => proxy.dialogs().length,
    queuesToDelete: () => bus.driver === "rabbitmq" ? (bus as AmqpBus).stats().retiring : 0,
    bus: driver === "memory" ? bus : undefined,
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

const startRawSut = async (driver: Driver, target: SutTarget): Promise<Sut> => {
  const memoryScope = Effect.runSync(Scope.make())
  const memoryBus = driver === "memory" ? Effect.runSync(Scope.extend(makeMemoryBus, memoryScope)) : undefined
  const transport = memoryBus !== undefined ?
    memoryRawTransport(memoryBus) :
    driver === "nats" ?
    await natsRawTransport(NATS_URL) :
    await amqpRawTransport(AMQP_URL)
  const pipe = await startRawPipe({ ...target, transport })
  return {
    dialogs: pipe.dialogs,
    queuesToDelete: () => 0, // the raw pipe never deletes a queue
    bus: memoryBus,
    close: () => pipe.close().then(() => Effect.runPromise(Scope.close(memoryScope, Exit.void)))
  }
}

export const startSut = (kind: SutKind, driver: Driver, target: SutTarget): Promise<Sut> =>
  kind === "proxy" ? startProxySut(driver, target) : startRawSut(driver, target)
