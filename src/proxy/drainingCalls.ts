/**
 * Calls that arrive while the proxy drains. No dialog is opened for them (nobody would be there to
 * finish them); instead each is sent back to the dialplan with `POST /channels/{id}/continue`, so
 * the dialplan can route it elsewhere (another proxy, a queue, a message), and its StasisStart is
 * still published on `unrouted_<app>` as any unowned event is.
 */
import { Effect } from "effect"
import type { ActorSystem } from "../actor/ActorSystem.js"
import type { AriRestShape } from "../ari/rest.js"
import type { ProxyMetrics } from "../observability/metrics.js"

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
  /** Completes once every `continue` request has been answered (the drain waits for them). */
  readonly awaitSent: Effect.Effect<void>
  /** Lets the sender go (a session that ends before the proxy does). */
  readonly stop: () => void
}

export const makeDrainingCalls = (rest: AriRestShape, system: ActorSystem, metrics: ProxyMetrics): DrainingCalls => {
  // An actor with no messages: its tasks are the requests, supervised and awaited together.
  const sender = system.spawn<never>({ id: "draining-calls" }, { receive: () => undefined })
  const sendBack = (frame: string) => {
    const channelId = channelIdOf(frame)
    if (channelId === undefined) return
    metrics.callsContinuedWhileDraining++
    sender.fork(
      rest.execute({ method: "POST", url: `/channels/${encodeURIComponent(channelId)}/continue`, body: "" }).pipe(
        Effect.flatMap((reply) =>
          reply.status < 300
            ? Effect.logInfo("call arrived while draining; sent back to the dialplan")
            : Effect.logWarning(`call arrived while draining; continue answered ${reply.status}`, reply.body)
        ),
        Effect.annotateLogs({ channel_id: channelId })
      )
    )
  }
  return { sendBack, awaitSent: sender.awaitIdle, stop: () => sender.stop() }
}
