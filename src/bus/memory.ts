/**
 * The in-memory bus driver: one process, no broker. Queue groups have NATS semantics (each
 * message to one member, round robin); a message published to a topic nobody listens to is gone,
 * like NATS. It is the default for the demo, for embedding and for tests.
 */
import { Effect, Layer } from "effect"
import { Bus, type BusShape, type SubscribeOptions } from "./Bus.js"
import { makeInbox } from "./internal.js"

interface Subscriber {
  readonly offer: (payload: string) => void
}

interface TopicState {
  /** Subscribers without a queue group: every one gets every message. */
  readonly plain: Set<Subscriber>
  /** Queue groups: one member per message, round robin. */
  readonly groups: Map<string, { members: Array<Subscriber>; next: number }>
}

/** The in-memory bus; `activeTopics` lets tests check that teardown leaves no subscription behind. */
export interface MemoryBus extends BusShape {
  readonly activeTopics: () => number
}

export const makeMemoryBus: Effect.Effect<MemoryBus> = Effect.sync(() => {
  const topics = new Map<string, TopicState>()

  const topicState = (topic: string): TopicState => {
    let state = topics.get(topic)
    if (state === undefined) {
      state = { plain: new Set(), groups: new Map() }
      topics.set(topic, state)
    }
    return state
  }

  const forget = (topic: string, state: TopicState) => {
    if (state.plain.size === 0 && state.groups.size === 0) topics.delete(topic)
  }

  const deliver = (topic: string, payload: string) => {
    const state = topics.get(topic)
    if (state === undefined) return
    for (const subscriber of state.plain) subscriber.offer(payload)
    for (const group of state.groups.values()) {
      const member = group.members[group.next % group.members.length]!
      group.next = (group.next + 1) % group.members.length
      member.offer(payload)
    }
  }

  const subscribe = (topic: string, handler: (payload: string) => Effect.Effect<void>, options?: SubscribeOptions) =>
    Effect.gen(function*() {
      // One message at a time, in order; no fiber while idle (see makeInbox).
      const subscriber: Subscriber = { offer: yield* makeInbox(handler) }
      const state = topicState(topic)
      const queue = options?.queue
      if (queue === undefined || queue === "") {
        state.plain.add(subscriber)
      } else {
        const group = state.groups.get(queue) ?? { members: [], next: 0 }
        group.members.push(subscriber)
        state.groups.set(queue, group)
      }
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (queue === undefined || queue === "") {
            state.plain.delete(subscriber)
          } else {
            const group = state.groups.get(queue)
            if (group !== undefined) {
              group.members = group.members.filter((m) => m !== subscriber)
              if (group.members.length === 0) state.groups.delete(queue)
            }
          }
          forget(topic, state)
        })
      )
    })

  const bus: MemoryBus = {
    driver: "memory",
    activeTopics: () => topics.size,
    retainsUnconsumed: false,
    publish: (topic, payload) => Effect.sync(() => deliver(topic, payload)),
    tryPublish: (topic, payload) => {
      deliver(topic, payload)
      return true
    },
    subscribe,
    retire: () => Effect.void,
    state: Effect.succeed("connected")
  }
  return bus
})

export const layerMemory: Layer.Layer<Bus> = Layer.effect(Bus, makeMemoryBus)
