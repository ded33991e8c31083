/**
 * The message bus: the port and its drivers. `layerFromConfig` picks the driver named by the
 * configuration's `message_bus`.
 */
import type { Layer } from "effect"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import { layerAmqpFromConfig } from "./amqp/index.js"
import type { Bus, BusError } from "./Bus.js"
import { layerMemory } from "./memory.js"
import { layerNatsFromConfig } from "./nats/index.js"

export * from "./amqp/index.js"
export * from "./Bus.js"
export * from "./memory.js"
export * from "./nats/index.js"

export const layerFromConfig = (config: ProxyConfig): Layer.Layer<Bus, BusError> => {
  switch (config.messageBus) {
    case "NATS":
      return layerNatsFromConfig(config)
    case "RABBITMQ":
      return layerAmqpFromConfig(config)
    case "MEMORY":
      return layerMemory
  }
}
