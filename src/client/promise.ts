/**
 * The client for applications that do not use Effect: the same client, over the same bus drivers,
 * with Promises, async iterables and errors that are the same classes (`instanceof NotFound`).
 */
import { Cause, Effect, Exit, Fiber, Scope, Stream } from "effect"
import type { AmqpOptions } from "../bus/amqp/index.js"
import { makeAmqpBus } from "../bus/amqp/index.js"
import type { BusShape } from "../bus/Bus.js"
import { makeMemoryBus } from "../bus/memory.js"
import { makeNatsBus, type NatsOptions } from "../bus/nats/index.js"
import { formatTraceparent } from "../protocol/traceparent.js"
import { type AriClientOptions, type AriClientShape, type CreateDialogOptions, makeAriClient } from "./AriClient.js"
import type * as Effectful from "./dialog.js"
import type { ProxyChange, ProxyInfo } from "./presence.js"
import {
  type AriApiPromise,
  type AriEvent,
  type BridgesAddChannelParams,
  type BridgesCreateParams,
  type BridgesPlayParams,
  type Channel,
  type ChannelsHangupParams,
  type ChannelsPlayParams,
  type ChannelsSendDTMFParams,
  makeAriApiPromise,
  type OperationDescriptor,
  type PlaybackFinished,
  type StasisStart
} from "./ari.js"

/** Which bus: a driver with its default local URL, a driver's options, or a bus you already have. */
export type BusChoice =
  | "nats"
  | "rabbitmq"
  | "memory"
  | { readonly nats: NatsOptions }
  | { readonly rabbitmq: AmqpOptions }
  | BusShape

export interface ConnectOptions extends AriClientOptions {
  readonly bus: BusChoice
  /** Broker URL for "nats" (default nats://127.0.0.1:4222) or "rabbitmq" (default amqp://guest:guest@127.0.0.1). */
  readonly url?: string
}

export interface PlaybackPromise {
  readonly id: string
  /** Resolves with PlaybackFinished; rejects with Gone if the dialog ends first. */
  readonly finished: Promise<PlaybackFinished>
  stop(): Promise<void>
}

export interface ChannelPromise {
  readonly id: string
  answer(): Promise<void>
  hangup(options?: Omit<ChannelsHangupParams, "channelId">): Promise<void>
  play(options: Omit<ChannelsPlayParams, "channelId">): Promise<PlaybackPromise>
  sendDtmf(dtmf: string, options?: Omit<ChannelsSendDTMFParams, "channelId" | "dtmf">): Promise<void>
  get(): Promise<Channel>
  /** Resolves with its StasisStart; rejects with Gone if it is destroyed first or the dialog ends. */
  readonly started: Promise<StasisStart>
  /** Resolves when it leaves Stasis or is destroyed, or the dialog ends. */
  readonly ended: Promise<void>
  /** Every digit pressed on it since the dialog began. */
  dtmf(): AsyncIterable<string>
  /** The next digit not yet taken; undefined after `timeoutMs` or when the dialog ends. */
  waitForDtmf(options?: { readonly timeoutMs?: number }): Promise<string | undefined>
}

export interface BridgePromise {
  readonly id: string
  addChannel(
    channels: Effectful.ChannelRef | ReadonlyArray<Effectful.ChannelRef>,
    options?: Omit<BridgesAddChannelParams, "bridgeId" | "channel">
  ): Promise<void>
  removeChannel(channels: Effectful.ChannelRef | ReadonlyArray<Effectful.ChannelRef>): Promise<void>
  play(options: Omit<BridgesPlayParams, "bridgeId">): Promise<PlaybackPromise>
  destroy(): Promise<void>
}

export interface AriDialogPromise {
  readonly id: string
  readonly serverId: string
  readonly application: string
  /** Set when this instance took the dialog over from one that died mid-call. */
  readonly resumed: Effectful.ResumedFrom | undefined
  /** The proxy's span of this dialog as a W3C `traceparent`, when the proxy traces (to link spans to it). */
  readonly traceparent: string | undefined
  readonly ari: AriApiPromise
  /** Every event since the dialog began, then the live ones; ends on DialogEnded. */
  events(): AsyncIterable<Effectful.DialogEvent>
  readonly ended: Promise<Effectful.DialogEnd>
  /** Duplicates dropped and gaps seen so far (by the events' `seq`). */
  delivery(): Promise<Effectful.EventDelivery>
  firstChannel(): Promise<ChannelPromise>
  channel(id: string): ChannelPromise
  readonly channels: { originate(options: Effectful.OriginateOptions): Promise<ChannelPromise> }
  readonly bridges: { create(options?: BridgesCreateParams): Promise<BridgePromise>; get(id: string): BridgePromise }
  playback(id: string): PlaybackPromise
  waitFor<T extends AriEvent["type"]>(
    type: T,
    matches?: (event: Effectful.AriEventOfType<T>) => boolean
  ): Promise<Effectful.AriEventOfType<T>>
  request(
    method: string,
    url: string,
    body?: string,
    options?: { readonly timeoutMs?: number }
  ): Promise<Effectful.DialogResponse>
  close(): Promise<void>
}

export interface AriClientPromise {
  readonly application: string
  /** The bus in use (share it with an in-process proxy when it is the memory bus). */
  readonly bus: BusShape
  /**
   * Hands every dialog this instance takes to `handler`, concurrently; a dialog is closed when its
   * handler settles. Returns a function that stops taking dialogs.
   */
  onDialog(handler: (dialog: AriDialogPromise) => Promise<void> | void): Promise<() => Promise<void>>
  /** Asks a proxy for a new dialog of the application's own, joins it and returns it. */
  createDialog(options?: CreateDialogOptions): Promise<AriDialogPromise>
  /** The proxies on the bus (presence). */
  readonly proxies: {
    /** The set now. */
    current(): Promise<ReadonlyArray<ProxyInfo>>
    /** A `Joined` for each proxy known now, then every change, until the loop breaks or the client closes. */
    changes(): AsyncIterable<ProxyChange>
  }
  /** Closes every dialog and, unless the bus was given, the bus connection. */
  close(): Promise<void>
}

const acquireBus = (options: ConnectOptions): Effect.Effect<BusShape, unknown, Scope.Scope> => {
  const choice = options.bus
  if (choice === "memory") return makeMemoryBus
  if (choice === "nats") return makeNatsBus({ servers: options.url ?? "nats://127.0.0.1:4222" })
  if (choice === "rabbitmq") return makeAmqpBus({ url: options.url ?? "amqp://guest:guest@127.0.0.1:5672" })
  if ("nats" in choice) return makeNatsBus(choice.nats)
  if ("rabbitmq" in choice) return makeAmqpBus(choice.rabbitmq)
  return Effect.succeed(choice)
}

/** Connects to the bus and returns the client; `close()` when done. */
export const connectAriClient = async (options: ConnectOptions): Promise<AriClientPromise> => {
  // Everything the client opens (bus connection, dialogs, serving fibers) lives in this scope.
  const scope = Effect.runSync(Scope.make())
  const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> =>
    // Rejects with the error itself (a NotFound, a Gone, ...), not a wrapper.
    Effect.runPromiseExit(effect).then((exit) =>
      Exit.isSuccess(exit) ? exit.value : Promise.reject(Cause.squash(exit.cause))
    )
  const bus = await run(Scope.extend(acquireBus(options), scope)).catch(async (error: unknown) => {
    await run(Scope.close(scope, Exit.void))
    throw error
  })
  const client: AriClientShape = await run(Scope.extend(makeAriClient(bus, options), scope))
  const iterate = <A>(stream: Stream.Stream<A>): AsyncIterable<A> => Stream.toAsyncIterable(stream)

  const playback = (handle: Effectful.PlaybackHandle): PlaybackPromise => ({
    id: handle.id,
    // Getters: a promise exists only when asked for, so none is left rejected without a listener.
    get finished() {
      return run(handle.finished)
    },
    stop: () => run(handle.stop())
  })

  const channel = (handle: Effectful.ChannelHandle): ChannelPromise => ({
    id: handle.id,
    answer: () => run(handle.answer()),
    hangup: (hangupOptions) => run(handle.hangup(hangupOptions)),
    play: (playOptions) => run(handle.play(playOptions)).then(playback),
    sendDtmf: (dtmf, dtmfOptions) => run(handle.sendDtmf(dtmf, dtmfOptions)),
    get: () => run(handle.get()),
    get started() {
      return run(handle.started)
    },
    get ended() {
      return run(handle.ended)
    },
    dtmf: () => iterate(handle.dtmf),
    waitForDtmf: (waitOptions) =>
      run(handle.waitForDtmf(waitOptions)).then((digit) => digit._tag === "Some" ? digit.value : undefined)
  })

  const bridge = (handle: Effectful.BridgeHandle): BridgePromise => ({
    id: handle.id,
    addChannel: (channels, addOptions) => run(handle.addChannel(channels, addOptions)),
    removeChannel: (channels) => run(handle.removeChannel(channels)),
    play: (playOptions) => run(handle.play(playOptions)).then(playback),
    destroy: () => run(handle.destroy())
  })

  const dialog = (inner: Effectful.AriDialog): AriDialogPromise => ({
    id: inner.id,
    serverId: inner.serverId,
    application: inner.application,
    resumed: inner.resumed,
    traceparent: inner.trace === undefined ? undefined : formatTraceparent(inner.trace),
    // The generated surface, each call run through the dialog's Effect one.
    ari: makeAriApiPromise((operation: OperationDescriptor, params: object) => {
      const resource = (inner.ari as unknown as Record<string, Record<string, (p: object) => Effect.Effect<unknown>>>)[
        operation.resource
      ]!
      return run(resource[operation.nickname]!(params))
    }),
    events: () => iterate(inner.events),
    get ended() {
      return run(inner.ended)
    },
    delivery: () => run(inner.delivery),
    firstChannel: () => run(inner.firstChannel).then(channel),
    channel: (id) => channel(inner.channel(id)),
    channels: { originate: (originateOptions) => run(inner.channels.originate(originateOptions)).then(channel) },
    bridges: {
      create: (createOptions) => run(inner.bridges.create(createOptions)).then(bridge),
      get: (id) => bridge(inner.bridges.get(id))
    },
    playback: (id) => playback(inner.playback(id)),
    waitFor: (type, matches) => run(inner.waitFor(type, matches)),
    request: (method, url, body, requestOptions) => run(inner.request(method, url, body, requestOptions)),
    close: () => run(inner.close)
  })

  return {
    application: client.application,
    bus,
    onDialog: async (handler) => {
      const serving: Fiber.RuntimeFiber<never, unknown> = await run(
        Effect.forkIn(
          client.serve((inner) => Effect.promise(async () => handler(dialog(inner)))).pipe(
            // Nobody awaits this fiber: a failure to take calls must at least be heard.
            Effect.tapErrorCause((cause) =>
              Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("the application stopped taking calls", cause)
            )
          ),
          scope
        )
      )
      return () => run(Effect.asVoid(Fiber.interrupt(serving)))
    },
    createDialog: (createOptions) => run(Scope.extend(client.createDialog(createOptions), scope)).then(dialog),
    proxies: {
      current: () => run(client.proxies.current),
      changes: () => iterate(client.proxies.changes)
    },
    close: async () => {
      await run(Scope.close(scope, Exit.void))
    }
  }
}
