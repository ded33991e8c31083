/**
 * The application side of the benchmark, on our Bus port: it counts AppStarts, joins the dialog
 * it floods (events and responses), checks the flood's order by `x_seq`, and sends commands.
 * The same client measures the raw pipe and the proxy.
 */
import { Effect, Exit, Scope } from "effect"
import type { BusShape } from "../src/bus/Bus.js"

export interface FloodTally {
  received: number
  outOfOrder: number
  lastSeq: number
  firstAt: number
  lastAt: number
}

export interface BenchClient {
  /** AppStarts received so far, and when the last one came. */
  readonly appStarts: () => { readonly count: number; readonly lastAt: number }
  /** Every dialog announced so far (to delete RabbitMQ queues afterwards). */
  readonly dialogIds: () => ReadonlyArray<string>
  /** The dialog id of the next AppStart (the flood dialog). */
  readonly nextDialog: () => Promise<string>
  /** Subscribes to a dialog's events and responses. */
  readonly join: (dialogId: string) => Promise<void>
  readonly flood: FloodTally
  readonly resetFlood: () => void
  readonly request: (dialogId: string, method: string, url: string) => Promise<{ status: number; body: string }>
  readonly close: () => Promise<void>
}

const SEQ_MARK = "x_seq\\\":"

export const startBenchClient = async (bus: BusShape, application: string): Promise<BenchClient> => {
  const scope = Effect.runSync(Scope.make())
  const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.extend(effect, scope))
  let appStartCount = 0
  let appStartAt = 0
  const dialogIds: Array<string> = []
  const waiting: Array<(dialogId: string) => void> = []
  const flood: FloodTally = { received: 0, outOfOrder: 0, lastSeq: 0, firstAt: 0, lastAt: 0 }
  const pending = new Map<string, (response: { status: number; body: string }) => void>()
  let nextId = 0

  await run(bus.subscribe(application, (payload) =>
    Effect.sync(() => {
      appStartCount++
      appStartAt = performance.now()
      const dialogId = (JSON.parse(payload) as { dialog_id: string }).dialog_id
      dialogIds.push(dialogId)
      waiting.shift()?.(dialogId)
    })))

  const onEvent = (payload: string) =>
    Effect.sync(() => {
      const at = payload.indexOf(SEQ_MARK)
      if (at < 0) return
      const seq = Number.parseInt(payload.slice(at + SEQ_MARK.length, at + SEQ_MARK.length + 12), 10)
      if (seq !== flood.lastSeq + 1) flood.outOfOrder++
      flood.lastSeq = seq
      flood.received++
      flood.lastAt = performance.now()
    })

  const onResponse = (payload: string) =>
    Effect.sync(() => {
      const response = JSON.parse(payload) as { unique_id: string; status_code: number; response_body: string }
      const resolve = pending.get(response.unique_id)
      if (resolve === undefined) return
      pending.delete(response.unique_id)
      resolve({ status: response.status_code, body: response.response_body })
    })

  return {
    appStarts: () => ({ count: appStartCount, lastAt: appStartAt }),
    dialogIds: () => dialogIds,
    nextDialog: () => new Promise((resolve) => waiting.push(resolve)),
    join: async (dialogId) => {
      await run(bus.subscribe("events_" + dialogId, onEvent))
      await run(bus.subscribe("responses_" + dialogId, onResponse))
    },
    flood,
    resetFlood: () => {
      flood.received = 0
      flood.outOfOrder = 0
      flood.lastSeq = 0
      flood.firstAt = 0
      flood.lastAt = 0
    },
    request: (dialogId, method, url) =>
      new Promise((resolve, reject) => {
        const uniqueId = `b-${++nextId}`
        pending.set(uniqueId, resolve)
        const payload = JSON.stringify({ unique_id: uniqueId, url, method, body: "" })
        Effect.runPromise(bus.publish("commands_" + dialogId, payload)).catch(reject)
      }),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
