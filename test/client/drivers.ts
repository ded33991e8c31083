/**
 * The three bus drivers for client tests. On NATS and RabbitMQ the proxy and the application get
 * connections of their own, as in production; on the memory bus they share the one bus.
 * RabbitMQ's durable queues outlive a test: every topic used is recorded and deleted afterwards.
 */
import amqp from "amqplib"
import { Effect, Logger, LogLevel } from "effect"
import type { Scope } from "effect"
import { makeAmqpBus } from "../../src/bus/amqp/index.js"
import type { BusError, BusShape } from "../../src/bus/Bus.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import { makeNatsBus } from "../../src/bus/nats/index.js"

export interface BusPair {
  readonly proxyBus: BusShape
  readonly clientBus: BusShape
}

export interface Driver {
  readonly name: "memory" | "nats" | "rabbitmq"
  readonly connect: Effect.Effect<BusPair, BusError, Scope.Scope>
  /** Deletes what the driver left at the broker (RabbitMQ queues). */
  readonly cleanup: () => Promise<void>
}

const AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"
const usedQueues = new Set<string>()

/** Records every topic a bus publishes to or subscribes to. */
const recording = (bus: BusShape): BusShape => ({
  ...bus,
  publish: (topic, payload) => Effect.zipRight(Effect.sync(() => usedQueues.add(topic)), bus.publish(topic, payload)),
  tryPublish: (topic, payload) => {
    usedQueues.add(topic)
    return bus.tryPublish(topic, payload)
  },
  subscribe: (topic, handler, options) =>
    Effect.zipRight(Effect.sync(() => usedQueues.add(topic)), bus.subscribe(topic, handler, options))
})

// Quiet: the drivers log each connection at info level.
const natsBus = (name: string) =>
  makeNatsBus({ servers: "nats://127.0.0.1:4222", name, reconnectTimeWaitMs: 100, connectRetryMaxMs: 500 }).pipe(
    Logger.withMinimumLogLevel(LogLevel.Warning)
  )

const amqpBus = (name: string) =>
  makeAmqpBus({ url: AMQP_URL, name, queueDeleteGraceMs: 100, reconnectMaxMs: 500 }).pipe(
    Effect.map(recording),
    Logger.withMinimumLogLevel(LogLevel.Warning)
  )

export const drivers: ReadonlyArray<Driver> = [
  {
    name: "memory",
    connect: Effect.map(makeMemoryBus, (bus) => ({ proxyBus: bus, clientBus: bus })),
    cleanup: async () => undefined
  },
  {
    name: "nats",
    connect: Effect.all({ proxyBus: natsBus("client-test-proxy"), clientBus: natsBus("client-test-app") }),
    cleanup: async () => undefined
  },
  {
    name: "rabbitmq",
    connect: Effect.all({ proxyBus: amqpBus("client-test-proxy"), clientBus: amqpBus("client-test-app") }),
    cleanup: async () => {
      const connection = await amqp.connect(AMQP_URL)
      const channel = await connection.createChannel()
      for (const queue of usedQueues) await channel.deleteQueue(queue).catch(() => undefined)
      usedQueues.clear()
      await connection.close()
    }
  }
]

let apps = 0
/** An application name no other test (or earlier run) uses. */
export const uniqueApp = (prefix: string) => `${prefix}-${process.pid}-${Date.now().toString(36)}-${++apps}`
