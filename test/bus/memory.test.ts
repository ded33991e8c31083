import { Effect } from "effect"
import { makeMemoryBus, type MemoryBus } from "../../src/bus/memory.js"
import { runBusConformance } from "./conformance.js"
import { outboundProxyCases, proxyCases } from "./proxyCases.js"

runBusConformance("memory", {
  // One in-memory bus per test: every "connection" is that same bus.
  world: Effect.map(makeMemoryBus, (bus) => ({ connect: Effect.succeed(bus) })),
  fanOut: true,
  leftBehind: (bus) =>
    Effect.sync(() => {
      const active = (bus as MemoryBus).activeTopics()
      return active === 0 ? [] : [`${active} topics with subscribers`]
    })
}, [...proxyCases, ...outboundProxyCases])
