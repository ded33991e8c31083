/**
 * The NATS driver's connection, kept up forever. The first connect is retried on the proxy's retry
 * policy in the background (a broker down at startup does not fail the layer: `state` says
 * "reconnecting" until it succeeds); after it, nats.js redials by itself and re-sends the
 * subscriptions. After each (re)connect the driver resynchronises before publishes go straight to
 * the socket again: the stream checked (JetStream), then what the lost connection held written
 * again (publisher.ts), then the buffer. The close drains the connection, bounded.
 */
import { connect, type NatsConnection, type Status } from "@nats-io/transport-node"
import { Deferred, Effect, Queue, Stream, SubscriptionRef } from "effect"
import type { Scope } from "effect"
import { redactUrl } from "../../config/redact.js"
import type { RetryPolicy } from "../../resilience/retry.js"
import type { BusConnectionState, BusError } from "../Bus.js"
import { busError, connectRetrying } from "../internal.js"
import { socketConnected } from "./client.js"
import { clientOptions, DRIVER, type NatsOptions, parseServers } from "./options.js"
import type { makePublisher, NatsShared } from "./publisher.js"

/** What the connection needs of the rest of the driver. */
export interface ConnectionParts {
  readonly shared: NatsShared
  readonly publisher: ReturnType<typeof makePublisher>
  readonly state: SubscriptionRef.SubscriptionRef<BusConnectionState>
  readonly firstConnection: Deferred.Deferred<NatsConnection>
  /** Done once the first connection is resynchronised or its first attempt failed; failed: the stream is unusable. */
  readonly started: Deferred.Deferred<void, BusError>
  /** Resynchronisations asked for (connected, reconnected, acknowledgements stopped); one runs at a time. */
  readonly resyncRequests: Queue.Queue<void>
  /** JetStream: the stream created or checked, false if the connection dropped meanwhile. */
  readonly streamReady: ((connection: NatsConnection) => Effect.Effect<boolean>) | undefined
}

export const runConnection = (
  options: NatsOptions,
  retry: RetryPolicy,
  parts: ConnectionParts
): Effect.Effect<{ readonly reconnects: () => number }, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { firstConnection, publisher, resyncRequests, shared, started, state, streamReady } = parts
    const connectionOptions = clientOptions(options)
    const serversForLog = parseServers(options.servers).servers.map(redactUrl).join(",")
    let reconnects = 0

    /** After (re)connecting: the stream checked, what the lost connection held written again, then what waited. */
    const resync = Effect.gen(function*() {
      const connection = shared.nc!
      shared.link = undefined
      if (streamReady !== undefined && !(yield* streamReady(connection))) return
      if (!socketConnected(connection) || shared.closing) return
      shared.resyncs++
      const written = publisher.reopen(connection)
      yield* SubscriptionRef.set(state, "connected")
      yield* Deferred.succeed(started, undefined)
      if (written.republished > 0 || written.buffered > 0) {
        yield* Effect.logInfo("NATS: wrote the messages held during the interruption").pipe(
          Effect.annotateLogs(written)
        )
      }
      yield* publisher.reportOutage
    }).pipe(Effect.catchAllDefect((defect) => Effect.logError("NATS resynchronisation failed", defect)))

    const onStatus = (status: Status): Effect.Effect<void> => {
      switch (status.type) {
        case "disconnect":
          publisher.onDisconnect()
          return Effect.zipRight(
            SubscriptionRef.set(state, "reconnecting"),
            Effect.logWarning("NATS connection lost, reconnecting").pipe(Effect.annotateLogs({ server: status.server }))
          )
        case "reconnect":
          reconnects++
          return Effect.zipRight(
            Queue.offer(resyncRequests, undefined),
            Effect.logInfo("NATS reconnected").pipe(Effect.annotateLogs({ server: status.server, reconnects }))
          )
        case "error":
          return Effect.logWarning("NATS server error").pipe(Effect.annotateLogs({ error: String(status.error) }))
        case "slowConsumer":
          return Effect.logWarning("NATS slow consumer").pipe(
            Effect.annotateLogs({ subscription: status.sub.getSubject() })
          )
        case "ldm":
          return Effect.logWarning("NATS server entering lame duck mode")
        case "close":
          shared.link = undefined
          return SubscriptionRef.set(state, "closed")
        default:
          return Effect.void
      }
    }

    const connectAndWatch = Effect.gen(function*() {
      const connection = yield* connectRetrying({
        driver: DRIVER,
        broker: "NATS",
        target: { servers: serversForLog },
        connect: () => connect(connectionOptions),
        close: (connection: NatsConnection) => void connection.close(),
        retry,
        onFailure: Deferred.succeed(started, undefined) // a broker down at startup does not hold up the start
      })
      shared.nc = connection
      // Live before the first stream publish: the stream check's request follows this SUB on the socket.
      if (streamReady !== undefined) {
        connection.subscribe(publisher.ackSubjects, { callback: publisher.onAcknowledgement })
      }
      yield* Deferred.succeed(firstConnection, connection)
      yield* Queue.offer(resyncRequests, undefined)
      yield* Effect.logInfo("NATS connected").pipe(Effect.annotateLogs({ server: redactUrl(connection.getServer()) }))
      // Ends when the connection closes (the drain finalizer below closes it first: effect-notes gotcha 1).
      yield* Stream.fromAsyncIterable(connection.status(), (error) => busError(DRIVER, "status", error)).pipe(
        Stream.runForEach(onStatus)
      )
    }).pipe(Effect.annotateLogs({ driver: DRIVER }))

    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Queue.take(resyncRequests), resync)).pipe(
      Effect.annotateLogs({ driver: DRIVER })
    ))
    yield* Effect.forkScoped(connectAndWatch)
    // Registered after the forks, so it runs before they are interrupted.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        shared.closing = true
        yield* publisher.settleBeforeClose
        shared.link = undefined
        const connection = shared.nc
        const undelivered = publisher.undelivered()
        if (undelivered.buffered > 0 || undelivered.awaitingAck > 0) {
          yield* Effect.logWarning("NATS closing with undelivered messages").pipe(Effect.annotateLogs(undelivered))
        }
        yield* publisher.reportOutage
        if (connection === undefined || connection.isClosed()) return
        // Both bounded: a server that stopped answering (hung, or paused) would hold up the stop forever.
        yield* Effect.promise(() => connection.drain().catch(() => undefined)).pipe(
          Effect.interruptible, // a finalizer runs uninterruptibly: else the timeout could not cut the drain short
          Effect.timeoutTo({ duration: "2 seconds", onSuccess: () => true, onTimeout: () => false }),
          Effect.flatMap((drained) =>
            drained ? Effect.void : Effect.promise(() => connection.close()).pipe(
              Effect.interruptible,
              Effect.timeout("1 second"),
              Effect.catchTag("TimeoutException", () => Effect.logWarning("NATS connection did not close in time"))
            )
          )
        )
        yield* SubscriptionRef.set(state, "closed")
      }).pipe(Effect.annotateLogs({ driver: DRIVER }))
    )
    return { reconnects: () => reconnects }
  })
