/**
 * The router: every ARI frame, in websocket order, goes to the dialog of every entity it names.
 * A StasisStart for a channel no live dialog owns opens a dialog. Events no dialog owns are
 * counted and, if configured, published on `unrouted_<app>`: never silently dropped.
 *
 * Routing runs synchronously for each frame (one map lookup per entity the event names), so a
 * binding made by one event (a new dialog, the other half of a Local channel) is in place for the
 * next frame.
 */
import { randomUUID } from "node:crypto"
import { Deferred, Effect, Exit, FiberId } from "effect"
import {
  channelKey,
  type EntityKey,
  eventEntityKeys,
  localPairOf,
  playbackKey,
  recordingKey,
  bridgeKey
} from "../dialog/entities.js"
import { Registry } from "../dialog/registry.js"
import { Dialog, type DialogContext, type DialogOrigin, stasisOrigin } from "../dialog/actor.js"
import type { ProxyMetrics } from "../observability/metrics.js"
import { goJsonString } from "../protocol/codec.js"
import { isJsonObject, type JsonObject } from "../protocol/json.js"

export interface RouterCounters {
  eventsReceived: number
  eventsUnrouted: number
  malformedFrames: number
  dialogsStarted: number
  dialogsEnded: number
  applicationReplaced: number
}

export const makeRouterCounters = (): RouterCounters => ({
  eventsReceived: 0,
  eventsUnrouted: 0,
  malformedFrames: 0,
  dialogsStarted: 0,
  dialogsEnded: 0,
  applicationReplaced: 0
})

/** What the reader must do after routing a frame (the router itself does no I/O). */
export type RouteOutcome =
  | { readonly _tag: "Routed"; readonly targets: ReadonlyArray<Dialog> }
  | { readonly _tag: "Unrouted"; readonly application: string; readonly type: string }
  | { readonly _tag: "Malformed"; readonly reason: string }
  /** The answer to a command sent over the websocket (`ari_rest_transport: websocket`): no event. */
  | { readonly _tag: "RestResponse"; readonly response: JsonObject }
  /**
   * StasisBroadcast's offer of a call (CallBroadcast) or its outcome (CallClaimed): between Asterisk
   * and the proxies, for no dialog (the winner's StasisStart opens one).
   */
  | {
    readonly _tag: "Broadcast"
    readonly type: "CallBroadcast" | "CallClaimed"
    readonly application: string
    readonly channelId: string
  }

/** The entity an event says is gone: unbound once the event is published. */
const finishedEntity = (type: string, event: JsonObject): EntityKey | undefined => {
  switch (type) {
    case "ChannelDestroyed":
      return isJsonObject(event.channel) && typeof event.channel.id === "string" ? channelKey(event.channel.id) : undefined
    case "BridgeDestroyed":
      return isJsonObject(event.bridge) && typeof event.bridge.id === "string" ? bridgeKey(event.bridge.id) : undefined
    case "PlaybackFinished":
      return isJsonObject(event.playback) && typeof event.playback.id === "string"
        ? playbackKey(event.playback.id)
        : undefined
    case "RecordingFinished":
    case "RecordingFailed":
      return isJsonObject(event.recording) && typeof event.recording.name === "string"
        ? recordingKey(event.recording.name)
        : undefined
    default:
      return undefined
  }
}

/** The keys of an event's own entity: what a dialog adopts when the event reached it another way. */
const primaryKeys = (event: JsonObject): Array<EntityKey> => {
  const channel = isJsonObject(event.channel) ? event.channel : isJsonObject(event.peer) ? event.peer : undefined
  if (channel !== undefined && typeof channel.id === "string") {
    const pair = localPairOf(channel.name)
    return pair === undefined ? [channelKey(channel.id)] : [channelKey(channel.id), pair]
  }
  if (isJsonObject(event.playback) && typeof event.playback.id === "string") return [playbackKey(event.playback.id)]
  if (isJsonObject(event.recording) && typeof event.recording.name === "string") {
    return [recordingKey(event.recording.name)]
  }
  return []
}

/**
 * The keys `dialog` does not own yet, or undefined if it owns them all: the usual case (its own
 * channel's events), where the machine then has nothing to bind and takes its hot path.
 */
const notOwnedBy = (
  registry: Registry<Dialog>,
  keys: ReadonlyArray<EntityKey>,
  dialog: Dialog
): ReadonlyArray<EntityKey> | undefined => {
  for (const key of keys) if (registry.ownerOf(key) !== dialog) return keys
  return undefined
}

export class Router {
  readonly dialogs = new Map<string, Dialog>()
  private readonly registries = new Map<string, Registry<Dialog>>()
  /** While draining, no dialog is opened (see docs/architecture.md, "Shutdown"). */
  accepting = true

  private readonly dialogContext: DialogContext
  private readonly metrics: ProxyMetrics
  private noDialogs: Deferred.Deferred<void> | undefined

  constructor(
    context: Omit<DialogContext, "onReleased" | "serverIdJson">,
    readonly counters: RouterCounters,
    /** The application of frames that lack one (never seen from Asterisk; defensive). */
    private readonly defaultApplication: string,
    /**
     * The application a frame's `application` stands for on the bus: a `per_call_config` socket's
     * frames name `<app>:<channel name>` (ari-modes §1.6), its dialogs belong to `<app>`.
     */
    private readonly applicationOf: (application: string) => string = (application) => application
  ) {
    this.metrics = context.metrics
    this.dialogContext = {
      ...context,
      serverIdJson: goJsonString(context.serverId),
      onReleased: (dialog) => {
        this.dialogs.delete(dialog.id)
        this.counters.dialogsEnded++
        if (this.dialogs.size === 0 && this.noDialogs !== undefined) {
          Deferred.unsafeDone(this.noDialogs, Exit.void)
          this.noDialogs = undefined
        }
      }
    }
  }

  /** Completes once no dialog is left (every one released). */
  readonly awaitNoDialogs: Effect.Effect<void> = Effect.suspend(() => {
    if (this.dialogs.size === 0) return Effect.void
    this.noDialogs ??= Deferred.unsafeMake<void>(FiberId.none)
    return Deferred.await(this.noDialogs)
  })

  route(frame: string): RouteOutcome {
    this.counters.eventsReceived++
    let event: unknown
    try {
      event = JSON.parse(frame)
    } catch {
      this.counters.malformedFrames++
      return { _tag: "Malformed", reason: "not JSON" }
    }
    if (!isJsonObject(event) || typeof event.type !== "string") {
      this.counters.malformedFrames++
      return { _tag: "Malformed", reason: "not an ARI event (no type)" }
    }
    const type = event.type
    if (type === "RESTResponse") return { _tag: "RestResponse", response: event }
    this.metrics.eventsReceived.inc(type)
    const application = typeof event.application === "string"
      ? this.applicationOf(event.application)
      : this.defaultApplication
    if (type === "ApplicationReplaced") this.counters.applicationReplaced++
    const channelId = isJsonObject(event.channel) && typeof event.channel.id === "string" ? event.channel.id : undefined
    if ((type === "CallBroadcast" || type === "CallClaimed") && channelId !== undefined) {
      return { _tag: "Broadcast", type, application, channelId }
    }

    if (type === "StasisStart" && channelId !== undefined) {
      const home = this.homeOfNewChannel(this.registryOf(application), event, channelId)
      if (home !== undefined) {
        home.input({ _tag: "Event", type, raw: frame, channelId, adopt: primaryKeys(event) })
        return { _tag: "Routed", targets: [home] }
      }
      if (!this.accepting) {
        // Draining: no new dialog, not even for a channel an ending dialog created; the proxy
        // sends it back to the dialplan.
        this.counters.eventsUnrouted++
        this.metrics.eventsUnrouted.inc(type)
        return { _tag: "Unrouted", application, type }
      }
      const dialog = this.open(application, channelId)
      dialog.input({ _tag: "Event", type, raw: frame, channelId, adopt: primaryKeys(event) })
      dialog.start()
      return { _tag: "Routed", targets: [dialog] }
    }

    const keys = eventEntityKeys(event)
    const registry = this.registryOf(application)
    const targets: Array<Dialog> = []
    for (const key of keys) {
      const owner = registry.ownerOf(key)
      if (owner !== undefined && !owner.state.ended && !targets.includes(owner)) targets.push(owner)
    }
    if (targets.length === 0) {
      this.counters.eventsUnrouted++
      this.metrics.eventsUnrouted.inc(type)
      return { _tag: "Unrouted", application, type }
    }
    const finished = finishedEntity(type, event)
    // One owner: the event's own entity belongs with it (a playback found by its target, the
    // other half of a Local channel, a Dial peer of its caller). Several: ambiguous, adopt nothing.
    const adopt = targets.length === 1 ? notOwnedBy(registry, primaryKeys(event), targets[0]!) : undefined
    for (const dialog of targets) dialog.input({ _tag: "Event", type, raw: frame, channelId, adopt, finished })
    return { _tag: "Routed", targets }
  }

  /**
   * The live dialog a channel entering Stasis joins: its own (originated by the dialog), the one
   * of the channel it replaces, or the one of its Local pair.
   */
  private homeOfNewChannel(registry: Registry<Dialog>, event: JsonObject, channelId: string): Dialog | undefined {
    const candidates: Array<EntityKey> = [channelKey(channelId)]
    if (isJsonObject(event.replace_channel) && typeof event.replace_channel.id === "string") {
      candidates.push(channelKey(event.replace_channel.id))
    }
    const pair = isJsonObject(event.channel) ? localPairOf(event.channel.name) : undefined
    if (pair !== undefined) candidates.push(pair)
    for (const key of candidates) {
      const owner = registry.ownerOf(key)
      if (owner !== undefined && !owner.closing) return owner
    }
    return undefined
  }

  /**
   * The entity index of one application. ARI delivers an event once per application subscribed
   * to its entities (on a shared websocket, once per app), so each application's dialogs own
   * entities independently: an event reaches the dialogs of the application it was sent for.
   */
  registryOf(application: string): Registry<Dialog> {
    let registry = this.registries.get(application)
    if (registry === undefined) {
      registry = new Registry<Dialog>()
      this.registries.set(application, registry)
    }
    return registry
  }

  /** Entities bound to dialogs, over every application. */
  get boundEntities(): number {
    let count = 0
    for (const registry of this.registries.values()) count += registry.size
    return count
  }

  /** Opens a dialog (its StasisStart, or an application's request, follows). */
  open(application: string, channelId: string | undefined, origin: DialogOrigin = stasisOrigin): Dialog {
    const registry = this.registryOf(application)
    const dialog = new Dialog(this.dialogContext, registry, randomUUID(), application, channelId, origin)
    this.dialogs.set(dialog.id, dialog)
    for (const key of dialog.state.bound) registry.claim(key, dialog) // its channel: the same key string
    this.counters.dialogsStarted++
    return dialog
  }
}
