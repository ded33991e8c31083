/**
 * An application that behaves like go-ari-library (the seed's client): on AppStart it publishes
 * `DUMMY` on the commands topic, then subscribes to events and responses; its commands carry an
 * empty unique_id (or none) and it takes "the next response" as the answer, with a 5 s timeout.
 */
import { Effect, Option, Queue, Scope } from "effect"
import type { BusShape } from "../../src/bus/Bus.js"
import { makeTopics, type Topics } from "../../src/protocol/topics.js"
import type { ReceivedEvent, Response } from "./apps.js"

export interface SeedDialog {
  readonly dialogId: string
  readonly events: Queue.Queue<ReceivedEvent>
  /** Sends a command without unique_id and returns the next response (None after 5 s, as the Go client). */
  readonly command: (method: string, url: string, body?: Record<string, string>) => Effect.Effect<Option.Option<Response>>
}

export const startSeedApp = (
  bus: BusShape,
  application: string,
  options: { readonly queue?: string; readonly topics?: Topics } = {}
): Effect.Effect<Queue.Queue<SeedDialog>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const topics = options.topics ?? makeTopics()
    const dialogs = yield* Queue.unbounded<SeedDialog>()
    const scope = yield* Effect.scope
    const join = (dialogId: string) =>
      Effect.gen(function*() {
        yield* Effect.orDie(bus.publish(topics.commands(dialogId), "DUMMY"))
        const events = yield* Queue.unbounded<ReceivedEvent>()
        const responses = yield* Queue.unbounded<Response>()
        yield* Effect.orDie(bus.subscribe(topics.events(dialogId), (payload) => {
          const wire = JSON.parse(payload)
          return Queue.offer(events, { ...wire, ari: JSON.parse(wire.ari_body) })
        }))
        yield* Effect.orDie(bus.subscribe(topics.responses(dialogId), (payload) => Queue.offer(responses, JSON.parse(payload))))
        const command = (method: string, url: string, body?: Record<string, string>) =>
          Effect.gen(function*() {
            // The Go client marshals {unique_id:"", url, method, body} with body a hand-built JSON string.
            const payload = JSON.stringify({ unique_id: "", url, method, body: body === undefined ? "" : JSON.stringify(body) })
            yield* Effect.orDie(bus.publish(topics.commands(dialogId), payload))
            return yield* Queue.take(responses).pipe(Effect.timeoutOption("5 seconds"))
          })
        return { dialogId, events, command } satisfies SeedDialog
      })
    yield* Effect.orDie(bus.subscribe(
      topics.app(application),
      (payload) =>
        join((JSON.parse(payload) as { dialog_id: string }).dialog_id).pipe(
          Scope.extend(scope),
          Effect.flatMap((dialog) => Queue.offer(dialogs, dialog)),
          Effect.forkIn(scope),
          Effect.asVoid
        ),
      options.queue === undefined ? undefined : { queue: options.queue }
    ))
    return dialogs
  })
