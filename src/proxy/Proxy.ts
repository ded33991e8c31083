/**
 * The proxy: ARI ↔ dialogs ↔ bus. It owns the router (and through it the dialogs), the ARI event
 * socket, and the supervision of every dialog fiber; it reconciles dialogs after an ARI
 * reconnect and drains them at shutdown.
 *
 * Frames are routed synchronously in the socket's callback (no hop through a queue): routing is a
 * few map lookups, and each dialog's mailbox is the queue that decouples ARI from the bus.
 */
import { Context, Effect, FiberSet, Layer, Option, Runtime, Schedule, Stream } from "effect"
import { AriRest } from "../ari/rest.js"
import { AriConnectionState, AriSocketOptions, makeAriSocket } from "../ari/socket.js"
import { Bus, type BusShape } from "../bus/Bus.js"
import { ProxyConfigService } from "../config/ProxyConfigService.js"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import { describeConfig } from "../config/redact.js"
import { type Dialog, type DialogCounters, makeDialogCounters } from "../dialog/actor.js"
import { TimerQueue } from "../dialog/timers.js"
import { encodeWireEvent, goJsonString } from "../protocol/codec.js"
import { makeTopics, type Topics } from "../protocol/topics.js"
import { serveDialogRequests } from "./dialogRequests.js"
import { makeDrainingCalls } from "./drainingCalls.js"
import { makeRouterCounters, Router, type RouterCounters } from "./router.js"

export interface ProxyStats {
  readonly router: RouterCounters
  readonly dialogs: DialogCounters
  readonly activeDialogs: number
  readonly boundEntities: number
  readonly deepestMailbox: number
  readonly ariReconnects: number
}

export interface ProxyShape {
  readonly topics: Topics
  readonly stats: Effect.Effect<ProxyStats>
  /** Ready while ARI's websocket is up, the bus is connected, and the proxy is not draining. */
  readonly ready: Effect.Effect<boolean>
  /** True from the start of the drain (shutdown) on. */
  readonly draining: Effect.Effect<boolean>
  readonly ariState: Effect.Effect<AriConnectionState>
  /** Stops taking new dialogs, ends the live ones and waits (up to shutdown_timeout_ms) for them. */
  readonly drain: Effect.Effect<void>
  /** The live dialogs (for tests and introspection). */
  readonly dialogs: () => ReadonlyArray<Dialog>
}

export class Proxy extends Context.Tag("ari-proxy/Proxy")<Proxy, ProxyShape>() {}

/** Publishes unrouted events in order, off the socket callback when the bus cannot take them at once. */
const makeSerialPublisher = (fork: (effect: Effect.Effect<void>) => void, bus: BusShape) => {
  const queue: Array<readonly [string, string]> = []
  let working = false
  const work = Effect.gen(function*() {
    while (queue.length > 0) {
      const [topic, payload] = queue.shift()!
      yield* Effect.catchAll(bus.publish(topic, payload), (error) => Effect.logWarning("unrouted publish failed", error.message))
    }
    working = false
  })
  return (topic: string, payload: string) => {
    if (!working && bus.tryPublish(topic, payload)) return
    queue.push([topic, payload])
    if (!working) {
      working = true
      fork(work)
    }
  }
}

export const makeProxy = Effect.gen(function*() {
  const config: ProxyConfig = yield* ProxyConfigService
  const bus = yield* Bus
  const rest = yield* AriRest
  const topics = makeTopics(config.bus.subjectPrefix)
  const runtime = yield* Effect.runtime<never>()
  const runSync = Runtime.runSync(runtime)

  const fibers = yield* FiberSet.make<void, never>()
  const forkIn = yield* FiberSet.runtime(fibers)<never>()
  const fork = (effect: Effect.Effect<void>) => {
    forkIn(effect)
  }
  const timers = new TimerQueue()
  yield* Effect.addFinalizer(() => Effect.sync(() => timers.close()))

  const dialogCounters = makeDialogCounters()
  const routerCounters = makeRouterCounters()
  const router = new Router(
    {
      serverId: config.serverId,
      topics,
      bus,
      timers,
      machine: { holdEvents: !bus.retainsUnconsumed, maxHeldEvents: config.maxHeldEvents },
      attachGraceMs: config.attachGraceMs,
      endedLingerMs: config.endedLingerMs,
      requestedDialogIdleMs: config.requestedDialogIdleMs,
      execute: (command) => rest.execute(command),
      fork,
      counters: dialogCounters
    },
    routerCounters,
    config.applications[0] ?? ""
  )

  const serverIdJson = goJsonString(config.serverId)
  const drainingCalls = makeDrainingCalls(rest, fork)
  const publishUnrouted = makeSerialPublisher(fork, bus)

  // Backpressure: a dialog whose mailbox passes dialog_mailbox_size pauses ARI reading until it
  // drains to half; if it stays full for mailbox_stall_ms it is aborted ("overloaded") so that
  // one stuck dialog cannot hold up every other call for long.
  const pressured = new Set<Dialog>()
  let relieving = false
  let socketControl: { pause: () => void; resume: () => void } | undefined
  const relieve = Effect.gen(function*() {
    const since = Date.now()
    while (pressured.size > 0) {
      for (const dialog of pressured) {
        if (dialog.depth <= config.dialogMailboxSize / 2 || dialog.state.ended) pressured.delete(dialog)
      }
      if (pressured.size === 0) break
      if (Date.now() - since > config.mailboxStallMs) {
        for (const dialog of pressured) {
          yield* Effect.logError("dialog mailbox stayed full; aborting the dialog").pipe(
            Effect.annotateLogs({ dialog_id: dialog.id, channel_id: dialog.channelId ?? "", depth: dialog.depth })
          )
          dialog.abort("overloaded")
        }
        pressured.clear()
        break
      }
      yield* Effect.sleep("2 millis")
    }
    relieving = false
    socketControl?.resume()
  })

  const onFrame = (frame: string) => {
    const outcome = router.route(frame)
    switch (outcome._tag) {
      case "Routed":
        for (const dialog of outcome.targets) {
          if (dialog.depth > config.dialogMailboxSize) pressured.add(dialog)
        }
        if (pressured.size > 0 && !relieving) {
          relieving = true
          socketControl?.pause()
          fork(relieve)
        }
        return
      case "Unrouted":
        if (outcome.type === "StasisStart" && !router.accepting) drainingCalls.sendBack(frame)
        if (config.unroutedEvents) {
          publishUnrouted(topics.unrouted(outcome.application), encodeWireEvent(serverIdJson, outcome.type, frame))
        }
        if (outcome.type === "ApplicationReplaced") {
          runSync(Effect.logError(
            "another websocket took over the ARI application; this proxy receives no more events for it",
            outcome.application
          ))
        }
        return
      case "Malformed":
        runSync(Effect.logWarning("ignored an ARI frame", outcome.reason))
    }
  }

  yield* Effect.logInfo("ari-proxy starting", describeConfig(config))
  const socket = yield* makeAriSocket(AriSocketOptions.fromConfig(config), onFrame)
  socketControl = { pause: socket.unsafePause, resume: socket.unsafeResume }

  // After a REconnect, events may have been missed: end the dialogs whose channels are gone.
  const reconcile = Effect.gen(function*() {
    // What each dialog had before asking ARI: channels in Stasis, and channels being created.
    const before = new Map<Dialog, { readonly members: Array<string>; readonly entered: ReadonlySet<string> }>()
    for (const dialog of router.dialogs.values()) {
      // Channels the command in flight is creating may not exist at ARI yet: not evidence of loss.
      const creating = dialog.state.inFlight?.newChannels ?? []
      if (dialog.state.ended) continue
      before.set(dialog, {
        members: [...dialog.state.members].filter((id) => !creating.includes(id)),
        entered: dialog.state.entered
      })
    }
    const live = yield* rest.listChannels()
    const stasisOf = new Map(live.map((channel) => [channel.id, channel.stasisApplication]))
    let ended = 0
    for (const [dialog, { members, entered }] of before) {
      // Gone: no longer at ARI, or was in the dialog's Stasis and is not any more (its StasisEnd
      // was lost with the websocket: it went back to the dialplan, or to another application).
      const gone = members.filter((id) =>
        dialog.state.members.has(id) &&
        (!stasisOf.has(id) || (entered.has(id) && stasisOf.get(id) !== dialog.application))
      )
      if (gone.length === 0) continue
      dialog.input({ _tag: "ChannelsVanished", channelIds: gone })
      if (dialog.closing) ended++
    }
    yield* Effect.logInfo("reconciled dialogs after ARI reconnect", { dialogs: before.size, ended, channels: live.length })
  }).pipe(
    Effect.catchAll((error) => Effect.logWarning("could not reconcile dialogs after ARI reconnect", error.message))
  )
  let ariConnected = false
  // In the background: with the broker down at startup, subscribing waits for it, and the proxy
  // must come up meanwhile (it is not ready until then).
  let servingRequests = false
  yield* serveDialogRequests({
    bus,
    topics,
    router,
    applications: config.applications,
    serverId: config.serverId,
    ariConnected: () => ariConnected
  }).pipe(
    Effect.tapError((error) => Effect.logWarning("could not subscribe to dialog requests, retrying", error.message)),
    Effect.retry(Schedule.exponential("200 millis").pipe(Schedule.union(Schedule.spaced("10 seconds")))),
    Effect.orDie,
    Effect.zipRight(Effect.sync(() => {
      servingRequests = true
    })),
    Effect.forkScoped
  )
  let ariReconnects = 0
  yield* socket.changes.pipe(
    Stream.runForEach((state) => {
      ariConnected = state._tag === "Connected"
      return state._tag === "Connected" && state.connections > 1
        ? Effect.zipRight(Effect.sync(() => ariReconnects++), reconcile)
        : Effect.void
    }),
    Effect.forkScoped
  )

  let draining = false
  const drain = Effect.gen(function*() {
    if (!draining) {
      draining = true
      router.accepting = false
      yield* Effect.logInfo("draining: no new dialogs; ending the live ones", { dialogs: router.dialogs.size })
      for (const dialog of router.dialogs.values()) dialog.abort("shutdown")
    }
    const busy = () =>
      drainingCalls.inFlight() > 0 || [...router.dialogs.values()].some((d) => !d.state.ended || d.busy)
    const finished = yield* Effect.gen(function*() {
      while (busy()) yield* Effect.sleep("10 millis")
      // Ended: release them now rather than after their linger (their subscriptions, their
      // RabbitMQ queues), and wait for that too.
      for (const dialog of router.dialogs.values()) dialog.input({ _tag: "LingerOver" })
      while (router.dialogs.size > 0) yield* Effect.sleep("10 millis")
    }).pipe(Effect.timeoutOption(config.shutdownTimeoutMs))
    if (Option.isNone(finished)) {
      yield* Effect.logWarning("shutdown deadline passed with dialogs still busy", { dialogs: router.dialogs.size })
    }
  })
  yield* Effect.addFinalizer(() => drain)

  const stats = Effect.sync((): ProxyStats => {
    let deepest = 0
    for (const dialog of router.dialogs.values()) deepest = Math.max(deepest, dialog.depth)
    return {
      router: { ...routerCounters },
      dialogs: { ...dialogCounters },
      activeDialogs: router.dialogs.size,
      boundEntities: router.boundEntities,
      deepestMailbox: deepest,
      ariReconnects
    }
  })

  const ready = Effect.gen(function*() {
    if (draining) return false
    const ari = yield* socket.state
    const busState = yield* bus.state
    return ari._tag === "Connected" && busState === "connected" && servingRequests
  })

  return {
    topics,
    stats,
    ready,
    ariState: socket.state,
    draining: Effect.sync(() => draining),
    drain,
    dialogs: () => [...router.dialogs.values()]
  } satisfies ProxyShape
})

/** The proxy, given its configuration, a bus and ARI REST in context. */
export const layer = Layer.scoped(Proxy, makeProxy)

/** The proxy and the ARI REST client, given its configuration and a bus. */
export const layerWithAri = Layer.unwrapEffect(
  Effect.map(ProxyConfigService, (config) => layer.pipe(Layer.provide(AriRest.layerFromConfig(config))))
)
