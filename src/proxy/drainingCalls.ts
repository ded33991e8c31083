/**
 * Calls that arrive while the proxy drains. No dialog is opened for them (nobody would be there to
 * finish them); instead each is sent back to the dialplan with `POST /channels/{id}/continue`, so
 * the dialplan can route it elsewhere (another proxy, a queue, a message), and its StasisStart is
 * still published on `unrouted_<app>` as any unowned event is.
 */
import { Effect } from "effect"
import type { AriRestShape } from "../ari/rest.js"
import { proxyMetrics } from "../observability/metrics.js"

const channelIdOf = (frame: string): string | undefined => {
  try {
    const event: unknown = JSON.parse(frame)
    const channel = typeof event === "object" && event !== null ? (event as { channel?: unknown }).channel : undefined
    const id = typeof channel === "object" && channel !== null ? (channel as { id?: unknown }).id : undefined
    return typeof id === "string" && id !== "" ? id : undefined
  } catch {
    return undefined
  }
}

export interface DrainingCalls {
  /** Sends the channel of a StasisStart no dialog took back to the dialplan. */
  readonly sendBack: (frame: string) => void
  /** `continue` requests not yet answered: the drain waits for them. */
  readonly inFlight: () => number
}

export const makeDrainingCalls = (rest: AriRestShape, fork: (effect: Effect.Effect<void>) => void): DrainingCalls => {
  let inFlight = 0
  const sendBack = (frame: string) => {
    const channelId = channelIdOf(frame)
    if (channelId === undefined) return
    inFlight++
    proxyMetrics.callsContinuedWhileDraining++
    fork(
      rest.execute({ method: "POST", url: `/channels/${encodeURIComponent(channelId)}/continue`, body: "" }).pipe(
        Effect.flatMap((reply) =>
          reply.status < 300
            ? Effect.logInfo("call arrived while draining; sent back to the dialplan")
            : Effect.logWarning(`call arrived while draining; continue answered ${reply.status}`, reply.body)
        ),
        Effect.annotateLogs({ channel_id: channelId }),
        Effect.ensuring(Effect.sync(() => inFlight--))
      )
    )
  }
  return { sendBack, inFlight: () => inFlight }
}
