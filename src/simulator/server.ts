/**
 * `startSimulator`: one `node:http` server carrying the ARI REST resources under `/ari`, the event
 * websocket at `/ari/events` and the control API under `/_sim`. Usable without Effect.
 */
import { createServer } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import { handleControl } from "./control.js"
import { holdsApp } from "./engine/applications.js"
import { Engine } from "./engine/core.js"
import type { InboundCall } from "./engine/farEnd.js"
import {
  answerFromRemote,
  type BroadcastCall,
  hangupFromRemote,
  placeBroadcastCall,
  placeInboundCall,
  sendDtmfFromRemote
} from "./engine/farEnd.js"
import { ControlError } from "./errors.js"
import { makeEventBuilders } from "./events.js"
import {
  authRequired,
  htmlErrorPage,
  isAuthorized,
  Params,
  readBody,
  reasonFor,
  rejectUpgrade,
  sendHtmlError,
  sendReply
} from "./http.js"
import type { Credentials, SimulatorOptions, Timings } from "./options.js"
import { resolveOptions } from "./options.js"
import { handleAri } from "./rest.js"
import type { ChannelSnapshot } from "./state.js"
import { bridgeSnapshot, channelSnapshot, nowStamp, playbackJson, recordingJson } from "./state.js"
import { type OutboundWebsocketConfig, type OutboundWebsocketHandle, startOutboundWebsocket } from "./outboundWebsocket.js"
import type { EventListener, FloodResult, SlowReaderDrop } from "./websocket.js"
import { AppHub } from "./websocket.js"

/** A request the simulator received, for tests that assert what a proxy sent. */
export interface RecordedRequest {
  readonly at: number
  readonly method: string
  /** Path without the query string, e.g. `/ari/channels/123/answer`. */
  readonly path: string
  readonly query: Readonly<Record<string, string | ReadonlyArray<string>>>
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  readonly body: string
  /** True for a websocket upgrade on `/ari/events`. */
  readonly upgrade: boolean
  /** `websocket` for a RESTRequest frame on an event websocket (its `query` merges `query_strings`). */
  readonly transport: "http" | "websocket"
}

/** `normal` answers; `hang` never answers; `refuse` resets the connection. */
export type RestMode = "normal" | "hang" | "refuse"

export interface WaitForEventOptions {
  readonly app?: string
  readonly timeoutMs?: number
  /** Also look at events delivered before the call (default true). */
  readonly includePast?: boolean
}

export type SimEventRecord = Readonly<Record<string, unknown>>

export interface SimulatorHandle {
  /** `http://host:port/ari` */
  readonly url: string
  /** `ws://host:port/ari/events` */
  readonly wsUrl: string
  /** `http://host:port/_sim` */
  readonly controlUrl: string
  readonly port: number
  readonly credentials: Credentials
  /** The entity id in every frame's `asterisk_id`. */
  readonly asteriskId: string
  /** The event websocket URL for `apps`, with `api_key` credentials. */
  readonly eventsUrl: (apps: string | ReadonlyArray<string>, options?: { readonly subscribeAll?: boolean }) => string
  /** A SIP call arrives and enters `Stasis(app, args)`; returns the channel id. */
  readonly placeCall: (call: InboundCall) => string
  /**
   * A SIP call arrives and `StasisBroadcast` offers it (CallBroadcast) to the applications matching
   * `appFilter`; the first `POST /events/claim` wins it. Returns the channel id.
   */
  readonly placeBroadcastCall: (call: BroadcastCall) => string
  /** The caller sends DTMF (one ChannelDtmfReceived per digit). */
  readonly sendDtmf: (channelId: string, digits: string, durationMs?: number) => void
  /** The far end hangs up (BYE): ChannelHangupRequest without cause/soft. */
  readonly hangup: (channelId: string, cause?: number) => void
  /** The far end of a dialled channel answers (for `autoAnswer: false`). */
  readonly answer: (channelId: string) => void
  /** Writes `count` ChannelDtmfReceived frames carrying `x_seq` 1..count to `app`'s socket. */
  readonly flood: (app: string, count: number, options?: { readonly channelId?: string }) => Promise<FloodResult>
  /**
   * Adds a `type=outbound_websocket` (as a `module reload`): Asterisk dials `config.uri` (ari-modes §1),
   * a persistent socket at once, a per_call_config one for each call entering Stasis of its apps.
   */
  readonly outboundWebsocket: (config: OutboundWebsocketConfig) => OutboundWebsocketHandle
  /** Terminates every event websocket without a close frame; returns how many. */
  readonly dropWebsockets: () => number
  /** Event websockets dropped for a write timeout (a reader that stopped reading), oldest first. */
  readonly slowReaderDrops: () => ReadonlyArray<SlowReaderDrop>
  readonly setWebsocketMode: (mode: "accept" | "refuse") => void
  /** Also holds RESTRequest frames on the websockets unanswered (`hang`); `refuse` is HTTP only. */
  readonly setRestMode: (mode: RestMode) => void
  readonly restMode: () => RestMode
  /**
   * Whether the answer to a RESTRequest frame goes out before the events its request caused
   * (default: after them). Asterisk orders them either way.
   */
  readonly setWebsocketRestResponsesFirst: (first: boolean) => void
  readonly websocketRestResponsesFirst: () => boolean
  readonly setTimings: (timings: Partial<Timings>) => Timings
  readonly timings: () => Timings
  readonly setAutoAnswer: (autoAnswer: boolean) => void
  readonly channels: () => ReadonlyArray<ChannelSnapshot>
  readonly bridges: () => ReadonlyArray<SimEventRecord>
  readonly playbacks: () => ReadonlyArray<SimEventRecord>
  readonly liveRecordings: () => ReadonlyArray<SimEventRecord>
  readonly connectedApps: () => ReadonlyArray<string>
  readonly requests: () => ReadonlyArray<RecordedRequest>
  readonly clearRequests: () => void
  /** Events delivered so far (to `app`, or to all apps), exactly as sent. Flood frames are not logged. */
  readonly events: (app?: string) => ReadonlyArray<SimEventRecord>
  readonly clearEvents: () => void
  readonly onEvent: (listener: EventListener) => () => void
  readonly waitForEvent: (
    predicate: (event: SimEventRecord, app: string) => boolean,
    options?: WaitForEventOptions
  ) => Promise<SimEventRecord>
  /** Forgets channels, bridges, playbacks, recordings and logs (slow reader drops too), without events. */
  readonly reset: () => void
  readonly close: () => Promise<void>
}

// Asterisk's ast_true
const isTrue = (value: string | null) =>
  value !== null && ["yes", "true", "y", "t", "1", "on"].includes(value.toLowerCase())

export const startSimulator = async (options: SimulatorOptions = {}): Promise<SimulatorHandle> => {
  const resolved = resolveOptions(options)
  const events = makeEventBuilders(resolved.asteriskId)
  const engineHoldsApp = (app: string): boolean => holdsApp(engine, app)
  const hub = new AppHub(events, resolved.recordLogs, resolved.websocketWriteTimeoutMs, engineHoldsApp)
  const engine = new Engine(resolved, hub, events)
  const requestLog: Array<RecordedRequest> = []
  const hungResponses = new Set<ServerResponse>()
  const sockets = new Set<Socket>()
  let restMode: RestMode = "normal"
  const outboundWebsockets: Array<OutboundWebsocketHandle> = []

  const recordRequest = (
    method: string,
    path: string,
    searchParams: URLSearchParams,
    headers: RecordedRequest["headers"],
    body: string,
    kind: { readonly upgrade: boolean; readonly transport: RecordedRequest["transport"] }
  ) => {
    if (!resolved.recordLogs) return
    const query: Record<string, string | Array<string>> = {}
    for (const key of new Set(searchParams.keys())) {
      const all = searchParams.getAll(key)
      query[key] = all.length === 1 ? (all[0] ?? "") : all
    }
    requestLog.push({ at: Date.now(), method, path, query, headers, body, ...kind })
  }
  const record = (req: IncomingMessage, url: URL, body: string, upgrade: boolean) =>
    recordRequest(req.method ?? "GET", url.pathname, url.searchParams, { ...req.headers }, body, {
      upgrade,
      transport: "http"
    })

  /** A RESTRequest frame on an event websocket, answered as ari-modes.md §2 describes Asterisk 23.4.1 doing. */
  hub.restHandler = async (text, app) => {
    const respond = (
      ids: { readonly request_id: string; readonly transaction_id: string },
      status: number,
      reason: string,
      uri: string,
      body: unknown
    ) => ({
      type: "RESTResponse",
      transaction_id: ids.transaction_id,
      request_id: ids.request_id,
      status_code: status,
      reason_phrase: reason,
      uri,
      ...(body === undefined ? {} : { content_type: "application/json", message_body: JSON.stringify(body) }),
      application: app,
      timestamp: nowStamp(),
      asterisk_id: resolved.asteriskId
    })
    let message: unknown
    try {
      message = JSON.parse(text)
    } catch {
      return respond({ request_id: "", transaction_id: "" }, 400, "Failed to parse request message JSON", "", undefined)
    }
    const fields = typeof message === "object" && message !== null && !Array.isArray(message)
      ? message as Record<string, unknown>
      : {}
    // ids must be strings: anything else comes back as ""
    const ids = {
      request_id: typeof fields.request_id === "string" ? fields.request_id : "",
      transaction_id: typeof fields.transaction_id === "string" ? fields.transaction_id : ""
    }
    const badRequest = (text: string, uri = "") => respond(ids, 400, "Bad request", uri, { message: text })
    if (fields.type === undefined) return badRequest("No 'type' property.")
    if (fields.type !== "RESTRequest") return badRequest("Unknown request type.")
    const method = fields.method
    if (method !== "GET" && method !== "POST" && method !== "PUT" && method !== "DELETE") {
      return badRequest("Unknown or missing 'method' property.")
    }
    if (typeof fields.uri !== "string" || fields.uri === "") return badRequest("Empty or missing 'uri' property.")
    const queryStart = fields.uri.indexOf("?")
    const uri = queryStart === -1 ? fields.uri : fields.uri.slice(0, queryStart)
    const query = new URLSearchParams(queryStart === -1 ? "" : fields.uri.slice(queryStart + 1))
    // an object instead of an array is silently ignored
    if (Array.isArray(fields.query_strings)) {
      for (const pair of fields.query_strings as Array<unknown>) {
        const { name, value } = (typeof pair === "object" && pair !== null ? pair : {}) as Record<string, unknown>
        if (typeof name !== "string" || typeof value !== "string") {
          return badRequest("Unable to parse 'query_strings' array.", uri)
        }
        query.append(name, value)
      }
    }
    // a body that is not a string is silently ignored
    const body = typeof fields.message_body === "string" ? fields.message_body : ""
    const contentType = typeof fields.content_type === "string" ? fields.content_type : undefined
    if (body !== "") {
      if (contentType === undefined) return badRequest("No 'content_type' for 'message_body'.", uri)
      if (contentType !== "application/json" && contentType !== "application/x-www-form-urlencoded") {
        return badRequest("Unknown content type.", uri)
      }
    }
    recordRequest(method, `/ari/${uri}`, query, {}, body, { upgrade: false, transport: "websocket" })
    if (restMode === "hang") return undefined
    const delay = resolved.timings.restResponseDelayMs
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
    if (uri.startsWith("/")) return respond(ids, 405, "Method Not Allowed", uri, { message: "Invalid method" })
    if (uri === "events" || uri === "events/") {
      return badRequest("Can't upgrade to websocket from a websocket", uri)
    }
    const params = Params.parse(query, contentType, body)
    if (params === "malformed") return badRequest("Unable to parse 'message_body' as 'application/json'.", uri)
    try {
      const reply = await handleAri(engine, method, `/${uri}`, params)
      return respond(ids, reply.status, reply.reason ?? reasonFor(reply.status), uri, reply.body)
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      return respond(ids, 500, reasonFor(500), uri, { message })
    }
  }

  const onAriRequest = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    if (restMode === "refuse") {
      req.socket.destroy()
      return
    }
    const body = await readBody(req)
    record(req, url, body, false)
    if (restMode === "hang") {
      hungResponses.add(res)
      res.on("close", () => hungResponses.delete(res))
      return
    }
    const delay = resolved.timings.restResponseDelayMs
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
    const resourcePath = url.pathname.slice("/ari".length)
    if (resourcePath === "/events" || resourcePath === "/events/") {
      sendHtmlError(res, 426, "Upgrade Required", "")
      return
    }
    if (!isAuthorized(req, url.searchParams, resolved.credentials)) {
      sendReply(res, authRequired)
      return
    }
    const params = Params.parse(url.searchParams, req.headers["content-type"], body)
    if (params === "malformed") {
      sendReply(res, { status: 400, body: { message: "Error parsing request body" } })
      return
    }
    sendReply(res, await handleAri(engine, req.method ?? "GET", resourcePath, params))
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://simulator")
    const path = url.pathname
    const work = path === "/_sim" || path.startsWith("/_sim/")
      ? handleControl(handle, req, res, url)
      : path === "/ari" || path.startsWith("/ari/")
      ? onAriRequest(req, res, url)
      : Promise.resolve(sendHtmlError(res, 404, "Not Found", "The requested URL was not found on this server."))
    work.catch((error: unknown) => {
      if (!res.headersSent) {
        sendReply(res, { status: 500, body: { message: error instanceof Error ? error.message : String(error) } })
      }
    })
  })

  server.on("connection", (socket) => {
    socket.setNoDelay(true)
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://simulator")
    if (url.pathname !== "/ari/events") {
      const page = htmlErrorPage(404, "Not Found", "The requested URL was not found on this server.")
      rejectUpgrade(socket, 404, "Not Found", "text/html", page)
      return
    }
    record(req, url, "", true)
    if (!isAuthorized(req, url.searchParams, resolved.credentials)) {
      const body = JSON.stringify({ message: "Authentication required" })
      rejectUpgrade(socket, 401, "Unauthorized", "application/json", body, [
        "WWW-Authenticate: Basic realm=\"Asterisk REST Interface\""
      ])
      return
    }
    const apps = (url.searchParams.get("app") ?? "").split(",").map((a) => a.trim()).filter((a) => a !== "")
    if (apps.length === 0) {
      const page = htmlErrorPage(400, "Bad Request", "HTTP request is missing param: [app]")
      rejectUpgrade(socket, 400, "Bad Request", "text/html", page)
      return
    }
    hub.accept(req, socket, head, apps, isTrue(url.searchParams.get("subscribeAll")))
  })

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(resolved.port, resolved.host, () => {
      server.off("error", reject)
      resolve()
    })
  })
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : resolved.port
  const hostForUrl = resolved.host.includes(":") ? `[${resolved.host}]` : resolved.host
  const base = `http://${hostForUrl}:${port}`
  const wsUrl = `ws://${hostForUrl}:${port}/ari/events`
  const { password, username } = resolved.credentials
  const apiKey = `${encodeURIComponent(username)}:${encodeURIComponent(password)}`

  const controlChannel = (id: string) => {
    const channel = engine.channels.get(id)
    if (channel === undefined) throw new ControlError(404, `channel ${id} not found`)
    return channel
  }

  const handle: SimulatorHandle = {
    url: `${base}/ari`,
    wsUrl,
    controlUrl: `${base}/_sim`,
    port,
    credentials: resolved.credentials,
    asteriskId: resolved.asteriskId,
    eventsUrl: (apps, eventOptions) => {
      const list = typeof apps === "string" ? apps : apps.join(",")
      const all = eventOptions?.subscribeAll === true ? "&subscribeAll=true" : ""
      return `${wsUrl}?app=${encodeURIComponent(list)}&api_key=${apiKey}${all}`
    },
    placeCall: (call) => placeInboundCall(engine, call).id,
    placeBroadcastCall: (call) => placeBroadcastCall(engine, call).id,
    sendDtmf: (channelId, digits, durationMs = 160) => sendDtmfFromRemote(engine, channelId, digits, durationMs),
    hangup: (channelId, cause) => hangupFromRemote(engine, channelId, cause),
    answer: (channelId) => answerFromRemote(engine, channelId),
    flood: (app, count, floodOptions) => {
      const channel = floodOptions?.channelId !== undefined
        ? channelSnapshot(controlChannel(floodOptions.channelId))
        : floodChannel
      if (!hub.isRegistered(app)) return Promise.reject(new ControlError(409, `application ${app} has no websocket`))
      return hub.flood(app, count, channel, resolved.asteriskId)
    },
    outboundWebsocket: (config) => {
      const outbound = startOutboundWebsocket(engine, hub, config)
      outboundWebsockets.push(outbound)
      return outbound
    },
    dropWebsockets: () => hub.dropAll(),
    slowReaderDrops: () => hub.slowReaderDrops(),
    setWebsocketMode: (mode) => {
      hub.mode = mode
    },
    setRestMode: (mode) => {
      restMode = mode
    },
    setWebsocketRestResponsesFirst: (first) => {
      hub.restResponsesFirst = first
    },
    websocketRestResponsesFirst: () => hub.restResponsesFirst,
    restMode: () => restMode,
    setTimings: (timings) => {
      resolved.timings = { ...resolved.timings, ...timings }
      return resolved.timings
    },
    timings: () => resolved.timings,
    setAutoAnswer: (autoAnswer) => {
      resolved.autoAnswer = autoAnswer
    },
    channels: () => [...engine.channels.values()].filter((c) => !c.hangingUp).map((c) => channelSnapshot(c)),
    bridges: () => [...engine.bridges.values()].map(bridgeSnapshot),
    playbacks: () => [...engine.playbacks.values()].map(playbackJson),
    liveRecordings: () => [...engine.liveRecordings.values()].map((r) => recordingJson(r)),
    connectedApps: () => hub.connectedApps(),
    requests: () => [...requestLog],
    clearRequests: () => {
      requestLog.length = 0
    },
    events: (app) => hub.events(app),
    clearEvents: () => hub.clearEvents(),
    onEvent: (listener) => hub.onEvent(listener),
    waitForEvent: (predicate, waitOptions = {}) =>
      new Promise((resolve, reject) => {
        const app = waitOptions.app
        if (waitOptions.includePast !== false) {
          const past = hub.events(app).find((event) => predicate(event, String(event.application ?? "")))
          if (past !== undefined) {
            resolve(past)
            return
          }
        }
        const timeoutMs = waitOptions.timeoutMs ?? 2000
        const timer = setTimeout(() => {
          unsubscribe()
          reject(new ControlError(408, `no matching event within ${timeoutMs} ms`))
        }, timeoutMs)
        const unsubscribe = hub.onEvent((eventApp, event) => {
          if ((app === undefined || eventApp === app) && predicate(event, eventApp)) {
            clearTimeout(timer)
            unsubscribe()
            resolve(event)
          }
        })
      }),
    reset: () => {
      engine.reset()
      hub.clearEvents()
      hub.clearSlowReaderDrops()
      requestLog.length = 0
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const outbound of outboundWebsockets) outbound.close()
        engine.close()
        hub.close()
        for (const res of hungResponses) res.destroy()
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
  return handle
}

/** The channel flood frames carry when no channel id is given. */
const floodChannel: ChannelSnapshot = {
  id: "1796030000.1",
  name: "PJSIP/sipp-00000001",
  state: "Up",
  protocol_id: "1-10000@127.0.0.1",
  caller: { name: "sipp", number: "sipp" },
  connected: { name: "", number: "" },
  accountcode: "",
  dialplan: { context: "from-sipp", exten: "100", priority: 2, app_name: "Stasis", app_data: "flood" },
  creationtime: "2026-11-30T10:00:00.000+0000",
  language: "en"
}
