/**
 * Minimal applications on the Bus port, for end-to-end tests: one that speaks our protocol
 * (attach, unique ids) and one that behaves like go-ari-library (DUMMY first, no unique_id,
 * takes the next response). They record everything they receive.
 */
import { Deferred, Effect, Queue, Scope } from "effect"
import type { BusShape } from "../../src/bus/Bus.js"
import { encodeCommand } from "../../src/protocol/codec.js"
import { makeTopics, type Topics } from "../../src/protocol/topics.js"

export interface ReceivedEvent {
  readonly server_id: string
  readonly timestamp: string
  readonly type: string
  readonly ari_body: string
  /** The event's number in its dialog (extension). */
  readonly seq?: number
  /** `ari_body` parsed. */
  readonly ari: Record<string, any>
}

export interface Response {
  readonly unique_id: string
  readonly status_code: number
  readonly response_body: string
}

export interface TestDialog {
  readonly dialogId: string
  readonly serverId: string
  readonly events: Array<ReceivedEvent>
  readonly responses: Array<Response>
  /** Resolves with the first event of `type` (already received or future). */
  readonly waitFor: (type: string, predicate?: (event: ReceivedEvent) => boolean) => Effect.Effect<ReceivedEvent>
  readonly ended: Deferred.Deferred<ReceivedEvent>
  /** Sends a command with a fresh unique_id and waits for its response. */
  readonly request: (method: string, url: string, body?: unknown) => Effect.Effect<Response>
  /** Publishes a raw payload on the commands topic. */
  readonly sendRaw: (payload: string) => Effect.Effect<void>
}

let counter = 0

interface Watcher {
  readonly type: string
  readonly predicate: (event: ReceivedEvent) => boolean
  readonly done: Deferred.Deferred<ReceivedEvent>
}

/** Joins a dialog: subscribes to its events and responses, then attaches (unless `attach: false`). */
export const joinDialog = (
  bus: BusShape,
  dialogId: string,
  serverId: string,
  options: { readonly topics?: Topics; readonly attach?: boolean } = {}
): Effect.Effect<TestDialog, never, Scope.Scope> =>
  Effect.gen(function*() {
    const topics = options.topics ?? makeTopics()
    const events: Array<ReceivedEvent> = []
    const responses: Array<Response> = []
    const ended = yield* Deferred.make<ReceivedEvent>()
    const waiting: Array<Watcher> = []
    const pending = new Map<string, Deferred.Deferred<Response>>()
    yield* bus.subscribe(topics.events(dialogId), (payload) =>
      Effect.gen(function*() {
        const wire = JSON.parse(payload)
        const event: ReceivedEvent = { ...wire, ari: JSON.parse(wire.ari_body) }
        events.push(event)
        for (const watcher of [...waiting]) {
          if (watcher.type === event.type && watcher.predicate(event)) {
            waiting.splice(waiting.indexOf(watcher), 1)
            yield* Deferred.succeed(watcher.done, event)
          }
        }
        if (event.type === "DialogEnded") yield* Deferred.succeed(ended, event)
      })).pipe(Effect.orDie)
    yield* bus.subscribe(topics.responses(dialogId), (payload) =>
      Effect.gen(function*() {
        const response: Response = JSON.parse(payload)
        responses.push(response)
        const deferred = pending.get(response.unique_id)
        if (deferred !== undefined) {
          pending.delete(response.unique_id)
          yield* Deferred.succeed(deferred, response)
        }
      })).pipe(Effect.orDie)
    const sendRaw = (payload: string) => Effect.orDie(bus.publish(topics.commands(dialogId), payload))
    const request = (method: string, url: string, body?: unknown) =>
      Effect.gen(function*() {
        const uniqueId = `req-${++counter}`
        const done = yield* Deferred.make<Response>()
        pending.set(uniqueId, done)
        const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body)
        yield* sendRaw(encodeCommand({ unique_id: uniqueId, url, method, body: text }))
        return yield* Deferred.await(done)
      })
    const waitFor = (type: string, predicate: (event: ReceivedEvent) => boolean = () => true) =>
      Effect.suspend(() => {
        const found = events.find((e) => e.type === type && predicate(e))
        if (found !== undefined) return Effect.succeed(found)
        return Effect.flatMap(Deferred.make<ReceivedEvent>(), (done) => {
          waiting.push({ type, predicate, done })
          return Deferred.await(done)
        })
      })
    const dialog: TestDialog = { dialogId, serverId, events, responses, waitFor, ended, request, sendRaw }
    if (options.attach !== false) {
      const attached = yield* request("ATTACH", "")
      if (attached.status_code !== 200) return yield* Effect.dieMessage("attach failed: " + JSON.stringify(attached))
    }
    return dialog
  })

/** An application instance: takes AppStarts from `<app>` (in a queue group) and joins each dialog. */
export const startApp = (
  bus: BusShape,
  application: string,
  options: { readonly queue?: string; readonly topics?: Topics; readonly attach?: boolean } = {}
): Effect.Effect<Queue.Queue<TestDialog>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const topics = options.topics ?? makeTopics()
    const dialogs = yield* Queue.unbounded<TestDialog>()
    const scope = yield* Effect.scope
    yield* bus.subscribe(
      topics.app(application),
      (payload) =>
        Effect.gen(function*() {
          const start = JSON.parse(payload) as { dialog_id: string; server_id: string }
          const joinOptions = options.attach === undefined ? { topics } : { topics, attach: options.attach }
          // Join in the background: the handler must return for the next AppStart to arrive.
          yield* joinDialog(bus, start.dialog_id, start.server_id, joinOptions).pipe(
            Scope.extend(scope),
            Effect.flatMap((dialog) => Queue.offer(dialogs, dialog)),
            Effect.forkIn(scope)
          )
        }),
      options.queue === undefined ? undefined : { queue: options.queue }
    ).pipe(Effect.orDie)
    return dialogs
  })
