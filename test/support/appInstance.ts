/**
 * An application instance in a process of its own, for the failover tests (run with vite-node):
 * the typed client on NATS or RabbitMQ, taking the application's calls. For each call it answers
 * the caller, prints `{"dialog_id":…,"channel_id":…}` on a line of its own (and `{"listening":true}`
 * once it takes calls), and keeps the dialog
 * (renewing its lease) until the test kills the process.
 * Arguments: a JSON object `{ "bus": "nats" | "rabbitmq", "url": …, "application": … }`.
 */
import { Effect } from "effect"
import { makeAmqpBus } from "../../src/bus/amqp/index.js"
import { makeNatsBus } from "../../src/bus/nats/index.js"
import { makeAriClient } from "../../src/client/AriClient.js"

const { bus: kind, url, application } = JSON.parse(process.argv[2] ?? "{}") as {
  readonly bus: "nats" | "rabbitmq"
  readonly url: string
  readonly application: string
}

const program = Effect.gen(function*() {
  const bus = yield* (kind === "nats" ? makeNatsBus({ servers: url, name: "doomed-instance" }) : makeAmqpBus({ url }))
  const client = yield* makeAriClient(bus, { application })
  return yield* client.serve(
    (dialog) =>
      Effect.gen(function*() {
        const caller = yield* dialog.firstChannel
        yield* caller.answer()
        process.stdout.write(JSON.stringify({ dialog_id: dialog.id, channel_id: caller.id }) + "\n")
        return yield* Effect.never
      }),
    { onListening: Effect.sync(() => process.stdout.write("{\"listening\":true}\n")) }
  )
})

// Serving never ends by itself: if it fails (no broker), the test sees the process exit.
Effect.runFork(Effect.scoped(program).pipe(Effect.ensuring(Effect.sync(() => process.exit(1)))))
