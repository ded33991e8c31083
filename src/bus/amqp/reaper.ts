/**
 * The queue reaper. `retire(topic)` deletes the queue `queueDeleteGraceMs` later (one FIFO and one
 * fiber for every retired queue, not a timer each); using the topic again before then cancels it.
 * The delete is unconditional (not if-unused, not if-empty): seed clients never cancel their
 * consumers, so "if unused" would never happen, and a queue nobody drains would never be empty.
 * The grace period is what lets a slow consumer drain first.
 */
import { Duration, Effect } from "effect"
import { type AmqpConnection, DRIVER, errorMessage } from "./connection.js"
import type { AmqpSettings } from "./options.js"
import type { Topology } from "./topology.js"

export const makeQueueReaper = (
  settings: AmqpSettings,
  connection: AmqpConnection,
  topology: Topology,
  consumes: (topic: string) => boolean
) => {
  const { graceMs, sideChannels } = settings
  const { declared, retireQueue, retiring, sideChannel } = topology
  let deletedQueues = 0

  // Deletes retired queues whose grace has passed; one fiber and one FIFO (the grace is fixed, so
  // deadlines are in insertion order).
  const tick = Duration.millis(Math.min(1000, Math.max(10, Math.floor(graceMs / 4))))
  const reapRetired = Effect.gen(function*() {
    const current = connection.link
    if (current === undefined) return false
    const now = Date.now()
    const due: Array<{ readonly topic: string; readonly deadline: number }> = []
    while (retireQueue.length > 0 && retireQueue.peek()!.deadline <= now && due.length < 256) {
      const entry = retireQueue.shift()!
      if (retiring.get(entry.topic) !== entry.deadline) continue // used again, or retired again later
      if (consumes(entry.topic)) {
        // Still consumed by us: try again after another grace period.
        const later = now + graceMs
        retiring.set(entry.topic, later)
        retireQueue.push({ topic: entry.topic, deadline: later })
        continue
      }
      declared.delete(entry.topic) // a publish from now on declares it again
      due.push(entry)
    }
    const failed: Array<{ readonly topic: string; readonly deadline: number }> = []
    yield* Effect.forEach(due, (entry) =>
      Effect.tryPromise(() =>
        sideChannel(current, current.deleters).then((channel) =>
          channel.deleteQueue(entry.topic, { ifUnused: false, ifEmpty: false })
        )
      ).pipe(
        Effect.matchEffect({
          onSuccess: () =>
            Effect.sync(() => {
              deletedQueues++
              if (retiring.get(entry.topic) === entry.deadline) retiring.delete(entry.topic)
            }),
          onFailure: (error) =>
            Effect.sync(() => failed.push(entry)).pipe(
              Effect.zipRight(Effect.logWarning("RabbitMQ queue deletion failed").pipe(
                Effect.annotateLogs({ topic: entry.topic, error: errorMessage(error.error) })
              ))
            )
        })
      ), { concurrency: sideChannels, discard: true })
    // Lost the connection meanwhile: try those again after the reconnect; otherwise give up on them.
    if (connection.link !== current) retireQueue.prependAll(failed)
    else for (const entry of failed) if (retiring.get(entry.topic) === entry.deadline) retiring.delete(entry.topic)
    return due.length === 256 // a backlog: go on without sleeping
  })

  return {
    run: reapRetired.pipe(
      Effect.catchAllCause((cause) => Effect.as(Effect.logError("RabbitMQ retire loop failed", cause), false)),
      Effect.flatMap((backlog) => backlog ? Effect.yieldNow() : Effect.sleep(tick)),
      Effect.forever,
      Effect.annotateLogs({ driver: DRIVER })
    ),
    deletedQueues: () => deletedQueues
  }
}
