/**
 * What the proxy runs for one source of ARI frames: the ARI websocket it dials (one session), or,
 * when Asterisk dials the proxy (outbound_websocket), one session per Asterisk and one per call of
 * a `per_call_config` socket. A session is a router with its dialogs, the `server_id` they announce,
 * the ARI REST their commands take (over that session's socket when Asterisk dialled), and the
 * reconciliation after a reconnect. Every session shares the proxy's actor system, bus, counters and
 * unrouted publisher (`ProxyCore`).
 */
import { Effect, Runtime } from "effect"
import type { ActorSystem } from "../actor/ActorSystem.js"
import { type BroadcastClaimer, type BroadcastNames, makeBroadcastClaimer } from "../ari/broadcast.js"
import { applyEventFilter } from "../ari/eventFilter.js"
import type { AriRestShape } from "../ari/rest.js"
import type { BusShape } from "../bus/Bus.js"
import type { ProxyConfig } from "../config/ProxyConfig.js"
import type { Dialog, DialogCounters } from "../dialog/actor.js"
import type { ProxyMetrics } from "../observability/metrics.js"
import type { DialogTracing } from "../observability/tracing.js"
import { encodeWireEvent, goJsonString } from "../protocol/codec.js"
import type { JsonObject } from "../protocol/json.js"
import type { Topics } from "../protocol/topics.js"
import { type DrainingCalls, makeDrainingCalls } from "./drainingCalls.js"
import { Router, type RouterCounters } from "./router.js"

/** What every session of one proxy shares. */
export interface ProxyCore {
  readonly config: ProxyConfig
  readonly bus: BusShape
  readonly topics: Topics
  readonly system: ActorSystem
  readonly routerCounters: RouterCounters
  readonly dialogCounters: DialogCounters
  /** The proxy's metrics (its ProxyMetricsService, taken once): every session counts in them. */
  readonly metrics: ProxyMetrics
  /** True from the start of the drain on: no session opens a dialog any more. */
  readonly draining: () => boolean
  /** Publishes an unrouted event, in order, or drops and counts it when the bus cannot keep up. */
  readonly publishUnrouted: (topic: string, payload: string) => void
  /** Every session whose dialogs are not all released (the proxy drains and counts them). */
  readonly sessions: Set<AriSession>
  /** Traces each session's dialogs for this Asterisk (otel_endpoint, or a host's tracer); undefined: no spans. */
  readonly tracing: ((serverId: string) => DialogTracing) | undefined
}

export interface AriSession {
  readonly serverId: string
  readonly router: Router
  readonly drainingCalls: DrainingCalls
  /** Claims the calls StasisBroadcast offers (`stasis_broadcast.enabled`). */
  readonly claimer: BroadcastClaimer | undefined
  /** Routes one ARI frame, synchronously, in the order frames arrive. */
  readonly onFrame: (frame: string) => void
  /** Sets `ari_event_filter` on the applications (when configured). */
  readonly applyEventFilter: Effect.Effect<void>
  /** After a reconnect: ends the dialogs whose channels vanished or left their Stasis meanwhile. */
  readonly reconcile: Effect.Effect<void>
}

export interface SessionOptions {
  readonly serverId: string
  readonly rest: AriRestShape
  /** A `RESTResponse` frame (commands over the websocket); undefined when commands go over HTTP. */
  readonly onRestResponse?: ((response: JsonObject) => void) | undefined
  /** The application a frame's `application` names, as the bus knows it (per-call sockets add `:<channel>`). */
  readonly applicationOf?: ((application: string) => string) | undefined
  /** Applications the event filter is set on (the configured ones, or a per-call socket's own name). */
  readonly filterApplications?: ReadonlyArray<string> | undefined
  /**
   * StasisBroadcast (`stasis_broadcast.enabled`): the names the applications are registered under, to
   * rename frames, commands and Stasis applications between Asterisk and the bus; and whether the proxy
   * may take a call now (it claims offered calls only then).
   */
  readonly broadcast?: { readonly names: BroadcastNames; readonly ready: () => boolean } | undefined
}

export const makeSession = (core: ProxyCore, options: SessionOptions): Effect.Effect<AriSession> =>
  Effect.gen(function*() {
    const { bus, config, topics } = core
    const runSync = Runtime.runSync(yield* Effect.runtime<never>())
    const { rest, serverId } = options
    const names = options.broadcast?.names
    const execute: AriRestShape["request"] = names === undefined
      ? rest.request
      : (request, onReply) => rest.request(names.commandAtAsterisk(request), onReply)
    const router = new Router(
      {
        serverId,
        topics,
        bus,
        system: core.system,
        mailboxSize: config.dialogMailboxSize,
        machine: {
          holdEvents: !bus.retainsUnconsumed,
          maxHeldEvents: config.maxHeldEvents,
          leaseMs: config.dialogLeaseMs
        },
        replayLimit: config.dialogReplaySize,
        busConnected: () => Effect.runSync(bus.state) === "connected",
        attachGraceMs: config.attachGraceMs,
        endedLingerMs: config.endedLingerMs,
        requestedDialogIdleMs: config.requestedDialogIdleMs,
        releaseAtOnce: core.draining,
        execute,
        counters: core.dialogCounters,
        tracing: core.tracing?.(serverId),
        metrics: core.metrics
      },
      core.routerCounters,
      config.applications[0] ?? "",
      options.applicationOf
    )
    router.accepting = !core.draining()
    const serverIdJson = goJsonString(serverId)
    const drainingCalls = makeDrainingCalls(rest, core.system, core.metrics)

    const claimer = options.broadcast === undefined ? undefined : makeBroadcastClaimer({
      names: options.broadcast.names,
      request: rest.request,
      ready: options.broadcast.ready,
      log: runSync
    })

    const onFrame = (received: string) => {
      const frame = names === undefined ? received : names.frameOnBus(received)
      const outcome = router.route(frame)
      switch (outcome._tag) {
        case "Routed":
          return
        case "Unrouted":
          if (outcome.type === "StasisStart" && !router.accepting) drainingCalls.sendBack(frame)
          if (config.unroutedEvents) {
            core.publishUnrouted(
              topics.unrouted(outcome.application),
              encodeWireEvent(serverIdJson, outcome.type, frame)
            )
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
          return
        case "RestResponse":
          options.onRestResponse?.(outcome.response)
          return
        case "Broadcast":
          if (claimer !== undefined) {
            if (outcome.type === "CallBroadcast") claimer.offered(outcome.application, outcome.channelId)
          } else if (config.unroutedEvents) {
            core.publishUnrouted(
              topics.unrouted(outcome.application),
              encodeWireEvent(serverIdJson, outcome.type, frame)
            )
          }
      }
    }

    const filter = config.ariEventFilter
    const filterEffect = filter === undefined
      ? Effect.void
      : applyEventFilter(rest, options.filterApplications ?? names?.registered ?? config.applications, filter)

    const reconcile = Effect.gen(function*() {
      // What each dialog had before asking ARI: channels in Stasis, and channels being created.
      const before = new Map<Dialog, { readonly members: Array<string>; readonly entered: ReadonlyArray<string> }>()
      for (const dialog of router.dialogs.values()) {
        // Channels the command in flight is creating may not exist at ARI yet: not evidence of loss.
        const creating = dialog.state.inFlight?.newChannels ?? []
        if (dialog.state.ended) continue
        before.set(dialog, {
          members: dialog.state.members.filter((id) => !creating.includes(id)),
          entered: dialog.state.entered
        })
      }
      const live = yield* rest.listChannels()
      const stasisOf = new Map(live.map((channel) => [
        channel.id,
        names === undefined || channel.stasisApplication === undefined
          ? channel.stasisApplication
          : names.onBus(channel.stasisApplication)
      ]))
      let ended = 0
      for (const [dialog, { entered, members }] of before) {
        // Gone: no longer at ARI, or was in the dialog's Stasis and is not any more (its StasisEnd
        // was lost with the websocket: it went back to the dialplan, or to another application).
        const gone = members.filter((id) =>
          dialog.state.members.includes(id) &&
          (!stasisOf.has(id) || (entered.includes(id) && stasisOf.get(id) !== dialog.application))
        )
        if (gone.length === 0) continue
        dialog.input({ _tag: "ChannelsVanished", channelIds: gone })
        if (dialog.closing) ended++
      }
      yield* Effect.logInfo("reconciled dialogs after ARI reconnect", {
        server_id: serverId,
        dialogs: before.size,
        ended,
        channels: live.length
      })
    }).pipe(
      Effect.catchAll((error) => Effect.logWarning("could not reconcile dialogs after ARI reconnect", error.message))
    )

    const session: AriSession = {
      serverId,
      router,
      drainingCalls,
      claimer,
      onFrame,
      applyEventFilter: filterEffect,
      reconcile
    }
    core.sessions.add(session)
    return session
  })
