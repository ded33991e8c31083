/**
 * The event filter Asterisk applies to each application (`ari_event_filter`): set with
 * `PUT /applications/{app}/eventFilter` after every connect, since Asterisk keeps it on the
 * application object, which it forgets when the socket goes and no channel holds it. Types the
 * filter drops never cross the wire. Both lists are always sent: a PUT with one of them leaves
 * the other as it was.
 */
import { Effect } from "effect"
import type { AriRestShape } from "./rest.js"

export interface EventFilter {
  /** The only types sent; unset or empty: all. */
  readonly allowed?: ReadonlyArray<string> | undefined
  /** Types never sent; wins over `allowed`. */
  readonly disallowed?: ReadonlyArray<string> | undefined
}

/** The body of the PUT: `{"allowed":[{"type":…}],"disallowed":[…]}`. */
export const eventFilterBody = (filter: EventFilter): string =>
  JSON.stringify({
    allowed: (filter.allowed ?? []).map((type) => ({ type })),
    disallowed: (filter.disallowed ?? []).map((type) => ({ type }))
  })

/** Sets the filter of each application; a refusal is logged, never fatal (events then arrive unfiltered). */
export const applyEventFilter = (
  rest: AriRestShape,
  applications: ReadonlyArray<string>,
  filter: EventFilter
): Effect.Effect<void> => {
  const body = eventFilterBody(filter)
  return Effect.forEach(applications, (application) =>
    Effect.flatMap(
      rest.execute({ method: "PUT", url: `/applications/${encodeURIComponent(application)}/eventFilter`, body }),
      (reply) =>
        reply.status === 200
          ? Effect.logInfo("ARI event filter set", { application, filter: body })
          : Effect.logWarning("ARI refused the event filter; events arrive unfiltered", {
            application,
            status: reply.status,
            answer: reply.body
          })
    ), { discard: true })
}
