/**
 * The in-memory bus driver: one process, no broker. Queue groups have NATS semantics (each
 * message to one member, round robin); a message published to a topic nobody listens to is gone,
 * like NATS. It is the default for the demo, for embedding and for tests.
 */
import { Effect, Layer } from "effect"
import type { Scope } from "effect"
import { type Actor, makeActorSystem } from "../actor/ActorSystem.js"
import { Bus, type BusShape, type MessageHandler, scopedSubscribe, type SubscribeOptions, type Subscription } from "./Bus.js"
import { queuedInbox } from "./inbox.js"

type Subscriber = Actor<string>

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

/** The bus and its subscriptions live in the current scope. */
export const makeMemoryBus: Effect.Effect<MemoryBus, never, Scope.Scope> = Effect.gen(function*() {
  const system = yield* makeActorSystem
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

  const listen = (topic: string, handler: MessageHandler, options?: SubscribeOptions) =>
    Effect.sync((): Subscription => {
      // Delivery happens inside the publisher's call: the handler always runs later (not inline).
      const subscriber: Subscriber = queuedInbox(system, topic, handler)
      const state = topicState(topic)
      const queue = options?.broadcast === true ? undefined : options?.queue
      if (queue === undefined || queue === "") {
        state.plain.add(subscriber)
      } else {
        const group = state.groups.get(queue) ?? { members: [], next: 0 }
        group.members.push(subscriber)
        state.groups.set(queue, group)
      }
      return {
        close: Effect.sync(() => {
          subscriber.stop()
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
      }
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
    // Plain subscriptions already each get every message.
    broadcast: (topic, payload) => Effect.sync(() => deliver(topic, payload)),
    listen,
    subscribe: scopedSubscribe(listen),
    retire: () => Effect.void,
    state: Effect.succeed("connected")
  }
  return bus
})

export const layerMemory: Layer.Layer<Bus> = Layer.scoped(Bus, makeMemoryBus)
