/**
 * The application side of ari-proxy: an ARI application that takes its dialogs from the bus.
 * `AriClient.layer({ application })` over any Bus driver; `client.dialogs` is the stream of the
 * dialogs this instance takes (one instance of the queue group takes each call), `client.serve`
 * runs a handler per dialog, `client.createDialog` asks a proxy for a dialog of the application's
 * own (to originate into), `client.proxies` is the live set of proxies on the bus (presence).
 */
import { randomUUID } from "node:crypto"
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  ExecutionStrategy,
  Layer,
  Option,
  Queue,
  Scope,
  Stream
} from "effect"
import { Bus, type BusError, type BusShape } from "../bus/Bus.js"
import { parseJsonObject } from "../protocol/json.js"
import { DialogRequest } from "../protocol/messages.js"
import { makeTopics, type Topics } from "../protocol/topics.js"
import { type AriDialog, joinDialog, type ResumedFrom } from "./dialog.js"
import {
  type AriRequestError,
  type CreateDialogError,
  DialogRequestRefused,
  DialogRequestTimeout,
  NoProxyAvailable
} from "./errors.js"
import { chooseProxyFor, describeUnsuitable, makeProxyDirectory, type ProxyDirectory } from "./presence.js"
import { currentTraceparent, externalSpanOf } from "./trace.js"

export interface AriClientOptions {
  /** The ARI (Stasis) application, as in the proxy's `applications`. */
  readonly application: string
  /** Queue group shared by the instances of the application on NATS. Default `ari-apps-<application>`. */
  readonly queue?: string
  /** Topic prefix: the proxy's `bus_config.subject_prefix`. Default "". */
  readonly prefix?: string
  /** How long a request waits for its response. Default 15 s (the proxy's ARI deadline is 10 s). */
  readonly requestTimeoutMs?: number
  /** How long `createDialog` waits for a proxy to choose (presence) and for its answer. Default 5 s. */
  readonly createDialogTimeoutMs?: number
}

export interface ServeOptions {
  /**
   * Runs once this instance listens on the application's topic (a readiness probe; on NATS an
   * AppStart published before that reaches another instance or nobody).
   */
  readonly onListening?: Effect.Effect<void>
}

export interface CreateDialogOptions {
  /**
   * Ask the proxy of this Asterisk (its `server_id`). By default the client picks, from presence, a
   * proxy that is ready, not draining and serves the application (the least busy), waiting for one
   * to announce itself within the timeout.
   */
  readonly serverId?: string
  readonly timeoutMs?: number
}

export interface AriClientShape {
  readonly application: string
  readonly topics: Topics
  /**
   * The dialogs this instance takes, joined and attached. Running the stream joins the queue group;
   * each dialog closes on DialogEnded, on `dialog.close`, or when the stream stops.
   */
  readonly dialogs: Stream.Stream<AriDialog, BusError>
  /**
   * Handles every dialog this instance takes with `handler`, concurrently, until interrupted. A
   * dialog is closed when its handler returns; a handler's failure is logged, not propagated.
   * A dialog taken over from an instance that died mid-call has `dialog.resumed` set.
   */
  readonly serve: <E, R>(
    handler: (dialog: AriDialog) => Effect.Effect<void, E, R>,
    options?: ServeOptions
  ) => Effect.Effect<never, BusError, R>
  /** Asks a proxy for a new dialog (no call in it yet), joins it and returns it; it closes with the scope. */
  readonly createDialog: (options?: CreateDialogOptions) => Effect.Effect<AriDialog, CreateDialogError, Scope.Scope>
  /** Joins a dialog whose id is known (e.g. passed on by another process); it closes with the scope. */
  readonly joinDialog: (dialogId: string, serverId?: string) => Effect.Effect<AriDialog, AriRequestError, Scope.Scope>
  /** The proxies on the bus (their presence): the set now, and its changes. */
  readonly proxies: ProxyDirectory
}


/** A resumed AppStart (the dialog's owner died): where to resume and what the call holds. */
const resumedFrom = (start: Record<string, unknown>): ResumedFrom | undefined => {
  if (start.resumed !== true) return undefined
  const state = typeof start.state === "object" && start.state !== null ? start.state as Record<string, unknown> : {}
  // ARI's own objects, passed on as the proxy got them.
  const list = <A>(name: string): ReadonlyArray<A> => (Array.isArray(state[name]) ? state[name] : []) as ReadonlyArray<A>
  return {
    lastSeq: typeof start.last_seq === "number" ? start.last_seq : 0,
    state: { channels: list("channels"), bridges: list("bridges"), playbacks: list("playbacks") }
  }
}

/**
 * Builds a client over `bus`, listening to the proxies' presence for the lifetime of the scope
 * (its dialogs and streams hold their own resources).
 */
export const makeAriClient = (
  bus: BusShape,
  options: AriClientOptions
): Effect.Effect<AriClientShape, never, Scope.Scope> =>
  Effect.map(makeProxyDirectory(bus, makeTopics(options.prefix ?? "")), (proxies) => clientOver(bus, options, proxies))

const clientOver = (bus: BusShape, options: AriClientOptions, proxies: ProxyDirectory): AriClientShape => {
  const { application } = options
  const prefix = options.prefix ?? ""
  const topics = makeTopics(prefix)
  const queue = options.queue !== undefined && options.queue !== "" ? options.queue : `ari-apps-${application}`
  const requestTimeoutMs = options.requestTimeoutMs ?? 15_000
  const instance = randomUUID().slice(0, 8)
  let requests = 0
  const nextRequestId = () => `${instance}-${++requests}`

  const join = (parent: Scope.Scope, dialogId: string, serverId: string, resume?: ResumedFrom, traceparent?: unknown) =>
    joinDialog(parent, {
      bus,
      topics,
      application,
      dialogId,
      serverId,
      requestTimeoutMs,
      nextRequestId,
      resume,
      owner: instance,
      trace: externalSpanOf(traceparent)
    })

  const takeDialogs = (onListening: Effect.Effect<void>): Stream.Stream<AriDialog, BusError> =>
    Stream.unwrapScoped(Effect.gen(function*() {
    // The dialogs live in a scope made before the subscription to `<app>`: scopes close in
    // reverse, so on stop this instance leaves the queue group first and takes no new call while
    // it closes the ones it has.
    const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const joined = yield* Queue.unbounded<AriDialog>()
    yield* Effect.addFinalizer(() => Queue.shutdown(joined))
    const onAppStart = (payload: string) =>
      Effect.suspend(() => {
        const start = parseJsonObject(payload)
        if (start === undefined || typeof start.dialog_id !== "string") {
          return Effect.logWarning(`ignored a malformed AppStart on ${topics.app(application)}`)
        }
        const serverId = typeof start.server_id === "string" ? start.server_id : ""
        // Join in the background: the next AppStart is delivered only once this handler returns.
        return join(scope, start.dialog_id, serverId, resumedFrom(start), start.traceparent).pipe(
          Effect.flatMap((dialog) => Queue.offer(joined, dialog)),
          Effect.catchAll((error) => Effect.logWarning(`could not join dialog ${start.dialog_id}`, error.message)),
          Effect.forkIn(scope),
          Effect.asVoid
        )
      })
    yield* bus.subscribe(topics.app(application), onAppStart, { queue })
    yield* onListening
    return Stream.fromQueue(joined)
  }))
  const dialogs = takeDialogs(Effect.void)

  const serve = <E, R>(handler: (dialog: AriDialog) => Effect.Effect<void, E, R>, serveOptions: ServeOptions = {}) =>
    Effect.scoped(Effect.gen(function*() {
      const scope = yield* Effect.scope
      yield* Stream.runForEach(takeDialogs(serveOptions.onListening ?? Effect.void), (dialog) =>
        handler(dialog).pipe(
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause) ?
              Effect.void :
              Effect.logWarning(`the handler of dialog ${dialog.id} failed`, cause)
          ),
          Effect.ensuring(dialog.close),
          Effect.forkIn(scope)
        ))
      return yield* Effect.never
    }))

  /** The proxy to ask, from presence, within `timeoutMs`. */
  const chooseProxy = (timeoutMs: number) =>
    Effect.gen(function*() {
      const chosen = yield* proxies.awaitChoice(chooseProxyFor(application)).pipe(Effect.timeoutOption(timeoutMs))
      if (Option.isSome(chosen)) return chosen.value.serverId
      const known = describeUnsuitable(application, yield* proxies.current)
      return yield* new NoProxyAvailable({
        application,
        timeoutMs,
        proxies: known,
        message: `no proxy ready to take a dialog of ${application} announced itself within ${timeoutMs} ms (${known})`
      })
    })

  const createDialog = (createOptions: CreateDialogOptions = {}) =>
    Effect.gen(function*() {
      const deadlineMs = createOptions.timeoutMs ?? options.createDialogTimeoutMs ?? 5_000
      const startedAt = yield* Clock.currentTimeMillis
      const serverId = createOptions.serverId ?? (yield* chooseProxy(deadlineMs))
      const topic = topics.dialogRequests(application, serverId)
      const timeoutMs = Math.max(0, deadlineMs - ((yield* Clock.currentTimeMillis) - startedAt))
      const requestId = randomUUID()
      const replyTo = `${prefix}replies_${requestId}`
      const grant = yield* Effect.scoped(Effect.gen(function*() {
        const answer = yield* Deferred.make<Record<string, unknown>>()
        yield* Effect.addFinalizer(() => bus.retire(replyTo))
        // Listen before asking: a proxy answers as soon as the dialog is open.
        yield* bus.subscribe(replyTo, (payload) =>
          Effect.suspend(() => {
            const parsed = parseJsonObject(payload)
            const ours = parsed !== undefined && parsed.request_id === requestId
            return ours ? Deferred.succeed(answer, parsed) : Effect.void
          }))
        // Asked inside a span: the proxy's span of the dialog is its child.
        const traceparent = yield* currentTraceparent
        yield* bus.publish(
          topic,
          JSON.stringify(new DialogRequest({ request_id: requestId, reply_to: replyTo, traceparent }))
        )
        return yield* Deferred.await(answer)
      }).pipe(
        // The deadline covers the whole exchange, waiting for the bus connection included.
        Effect.timeoutFail({
          duration: Duration.millis(timeoutMs),
          onTimeout: () =>
            new DialogRequestTimeout({
              topic,
              timeoutMs,
              message: `no proxy answered on ${topic} within ${timeoutMs} ms`
            })
        })
      ))
      const grantedBy = typeof grant.server_id === "string" ? grant.server_id : serverId
      if (grant.status_code !== 201 || typeof grant.dialog_id !== "string") {
        const status = typeof grant.status_code === "number" ? grant.status_code : 0
        return yield* new DialogRequestRefused({
          status,
          message: typeof grant.message === "string" ? grant.message : `dialog request answered ${status}`,
          serverId: grantedBy
        })
      }
      return yield* join(yield* Effect.scope, grant.dialog_id, grantedBy, undefined, grant.traceparent)
    })

  return {
    application,
    topics,
    dialogs,
    serve,
    createDialog,
    joinDialog: (dialogId, serverId = "") => Effect.flatMap(Effect.scope, (scope) => join(scope, dialogId, serverId)),
    proxies
  }
}

/** The application client as an Effect service; `AriClient.layer(options)` needs a Bus. */
export class AriClient extends Context.Tag("ari-proxy/AriClient")<AriClient, AriClientShape>() {
  static readonly layer = (options: AriClientOptions): Layer.Layer<AriClient, never, Bus> =>
    Layer.scoped(AriClient, Effect.flatMap(Bus, (bus) => makeAriClient(bus, options)))
}
