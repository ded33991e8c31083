/**
 * The events of one dialog, kept for the dialog's lifetime. Every reader starts from the first
 * event, so waiting for an event can never miss it, whatever happened first: the PlaybackFinished
 * of a short prompt may well arrive before the application starts waiting for it.
 */
import { Chunk, Effect, Option, Stream } from "effect"

export interface EventLog<A> {
  readonly append: (event: A) => void
  /** No more events (the dialog ended or was closed): readers complete. */
  readonly close: () => void
  readonly closed: () => boolean
  /** Every event from `from` on, then the live ones; completes when the log closes. */
  readonly stream: (from?: number) => Stream.Stream<A>
  /** The first event at or after `from` that matches, with its index; None if the log closes first. */
  readonly find: (from: number, matches: (event: A) => boolean) => Effect.Effect<Option.Option<readonly [A, number]>>
}

export const makeEventLog = <A>(): EventLog<A> => {
  const entries: Array<A> = []
  let isClosed = false
  const waiters = new Set<() => void>()

  const wake = () => {
    const woken = [...waiters]
    waiters.clear()
    for (const resume of woken) resume()
  }

  /** Resumes once there is an event at `index` or the log is closed. */
  const awaitBeyond = (index: number) =>
    Effect.async<void>((resume) => {
      if (entries.length > index || isClosed) return resume(Effect.void)
      const waiter = () => resume(Effect.void)
      waiters.add(waiter)
      return Effect.sync(() => waiters.delete(waiter))
    })

  const stream = (from = 0): Stream.Stream<A> =>
    Stream.suspend(() => {
      let cursor = from
      const pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<never>> = Effect.suspend(() => {
        if (cursor < entries.length) {
          const chunk = Chunk.unsafeFromArray(entries.slice(cursor))
          cursor = entries.length
          return Effect.succeed(chunk)
        }
        if (isClosed) return Effect.fail(Option.none())
        return Effect.zipRight(awaitBeyond(cursor), pull)
      })
      return Stream.repeatEffectChunkOption(pull)
    })

  const find = (from: number, matches: (event: A) => boolean) =>
    Effect.suspend(() => {
      let cursor = from
      const search: Effect.Effect<Option.Option<readonly [A, number]>> = Effect.suspend(() => {
        for (; cursor < entries.length; cursor++) {
          const event = entries[cursor]!
          if (matches(event)) return Effect.succeed(Option.some([event, cursor] as const))
        }
        if (isClosed) return Effect.succeed(Option.none())
        return Effect.zipRight(awaitBeyond(cursor), search)
      })
      return search
    })

  return {
    append: (event) => {
      if (isClosed) return
      entries.push(event)
      wake()
    },
    close: () => {
      isClosed = true
      wake()
    },
    closed: () => isClosed,
    stream,
    find
  }
}
