/**
 * Test helpers: an event websocket client that collects parsed events (and raw frames, to check key
 * order), and a small ARI REST caller.
 */
import { request as httpRequest } from "node:http"
import WebSocket from "ws"
import type { SimulatorHandle } from "../../src/simulator/index.js"

export type Json = Record<string, unknown>

export interface EventClient {
  readonly ws: WebSocket
  readonly events: Array<Json>
  readonly raw: Array<string>
  readonly types: () => Array<string>
  /** Resolves once `predicate` matches an event received so far or later. */
  readonly waitFor: (predicate: (event: Json) => boolean, timeoutMs?: number) => Promise<Json>
  readonly waitForType: (type: string, timeoutMs?: number) => Promise<Json>
  readonly close: () => Promise<void>
}

export const connectEvents = (
  sim: SimulatorHandle,
  app: string,
  options: { readonly subscribeAll?: boolean } = {}
): Promise<EventClient> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(sim.eventsUrl(app, options))
    const events: Array<Json> = []
    const raw: Array<string> = []
    const waiters = new Set<() => void>()
    ws.on("message", (data) => {
      const text = data.toString()
      raw.push(text)
      events.push(JSON.parse(text) as Json)
      for (const waiter of [...waiters]) waiter()
    })
    const waitFor = (predicate: (event: Json) => boolean, timeoutMs = 2000) =>
      new Promise<Json>((resolveWait, rejectWait) => {
        // each check looks only at events that arrived since the last one
        let checked = 0
        const check = () => {
          const found = events.slice(checked).find(predicate)
          checked = events.length
          if (found !== undefined) {
            waiters.delete(check)
            clearTimeout(timer)
            resolveWait(found)
            return true
          }
          return false
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          rejectWait(new Error(`event not received; got ${events.map((e) => e.type).join(",")}`))
        }, timeoutMs)
        if (!check()) waiters.add(check)
      })
    const client: EventClient = {
      ws,
      events,
      raw,
      types: () => events.map((e) => String(e.type)),
      waitFor,
      waitForType: (type, timeoutMs) => waitFor((e) => e.type === type, timeoutMs),
      close: () =>
        new Promise((resolveClose) => {
          if (ws.readyState === WebSocket.CLOSED) return resolveClose()
          ws.once("close", () => resolveClose())
          ws.close()
        })
    }
    ws.once("open", () => {
      // the app is registered when the upgrade completes; a tick later it is visible to the engine
      setImmediate(() => resolve(client))
    })
    ws.once("error", reject)
  })

export interface AriResponse {
  readonly status: number
  readonly statusText: string
  /** Raw header pairs, exact case as sent. */
  readonly rawHeaders: ReadonlyArray<readonly [string, string]>
  readonly header: (name: string) => string | undefined
  readonly text: string
  readonly json: () => unknown
}

/** Calls ARI with node:http so reason phrases and header case stay visible. */
export const ari = (
  sim: SimulatorHandle,
  method: string,
  path: string,
  options: {
    readonly auth?: "query" | "basic" | "none" | "bad"
    readonly body?: string
    readonly contentType?: string
  } = {}
): Promise<AriResponse> =>
  new Promise((resolve, reject) => {
    const auth = options.auth ?? "basic"
    const url = new URL(sim.url + path)
    if (auth === "query") url.searchParams.set("api_key", "asterisk:asterisk")
    const headers: Record<string, string> = {}
    if (auth === "basic") headers.Authorization = "Basic " + Buffer.from("asterisk:asterisk").toString("base64")
    if (auth === "bad") headers.Authorization = "Basic " + Buffer.from("asterisk:wrong").toString("base64")
    if (options.contentType !== undefined) headers["Content-Type"] = options.contentType
    const req = httpRequest(url, { method, headers }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () => {
        const pairs: Array<readonly [string, string]> = []
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          pairs.push([res.rawHeaders[i] ?? "", res.rawHeaders[i + 1] ?? ""])
        }
        const text = Buffer.concat(chunks).toString("utf8")
        resolve({
          status: res.statusCode ?? 0,
          statusText: res.statusMessage ?? "",
          rawHeaders: pairs,
          header: (name) => pairs.find(([key]) => key.toLowerCase() === name.toLowerCase())?.[1],
          text,
          json: () => JSON.parse(text) as unknown
        })
      })
    })
    req.on("error", reject)
    if (options.body !== undefined) req.write(options.body)
    req.end()
  })

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const keysOf = (raw: string): Array<string> => Object.keys(JSON.parse(raw) as Json)
