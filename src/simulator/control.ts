/**
 * The control API over HTTP, under `/_sim` (JSON in and out, no authentication). It mirrors the
 * programmatic `SimulatorHandle` so tests in other processes (and the demo) can drive the simulator.
 *
 *   GET    /_sim                        this route list
 *   POST   /_sim/calls                  {app, endpoint?, caller?, exten?, context?, args?, channelId?}
 *                                       → 201 {channelId, channel}
 *   POST   /_sim/broadcast-calls        {appFilter?, timeoutMs?, args?, notifyClaimed?, endpoint?, caller?, exten?,
 *                                       context?, channelId?} → 201 {channelId, channel} (StasisBroadcast)
 *   POST   /_sim/channels/{id}/dtmf     {digits, durationMs?} → 204
 *   POST   /_sim/channels/{id}/hangup   {cause?} → 204 (remote BYE)
 *   POST   /_sim/channels/{id}/answer   → 204 (the far end answers a dialled channel)
 *   POST   /_sim/flood                  {app, count, channelId?} → 200 {sent, elapsedMs}
 *   POST   /_sim/websockets/drop        → 200 {dropped}
 *   GET    /_sim/websockets/slow-reader-drops  → 200 [{apps, lostFrames}] (sockets dropped for a write timeout)
 *   PUT    /_sim/websockets             {mode: "accept" | "refuse"} → 204
 *   GET    /_sim/rest · PUT /_sim/rest  {mode?: "normal" | "hang" | "refuse", websocketResponsesFirst?: boolean}
 *                                       (hang also leaves RESTRequest frames on the websockets unanswered)
 *   GET    /_sim/timings · PUT /_sim/timings  {answerDelayMs?, originateRingDelayMs?, originateAnswerDelayMs?,
 *                                        playbackDurationMs?, restResponseDelayMs?, autoAnswer?}
 *   GET    /_sim/channels | bridges | playbacks | recordings | apps
 *   GET    /_sim/requests · DELETE /_sim/requests
 *   GET    /_sim/events?app= · DELETE /_sim/events
 *   POST   /_sim/reset
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { ControlError } from "./errors.js"
import { pathSegments, readBody } from "./http.js"
import type { SimulatorHandle } from "./server.js"

export const controlRoutes: ReadonlyArray<string> = [
  "POST /_sim/calls",
  "POST /_sim/broadcast-calls",
  "POST /_sim/channels/{id}/dtmf",
  "POST /_sim/channels/{id}/hangup",
  "POST /_sim/channels/{id}/answer",
  "POST /_sim/flood",
  "POST /_sim/websockets/drop",
  "GET /_sim/websockets/slow-reader-drops",
  "PUT /_sim/websockets",
  "GET|PUT /_sim/rest",
  "GET|PUT /_sim/timings",
  "GET /_sim/channels",
  "GET /_sim/bridges",
  "GET /_sim/playbacks",
  "GET /_sim/recordings",
  "GET /_sim/apps",
  "GET|DELETE /_sim/requests",
  "GET|DELETE /_sim/events",
  "POST /_sim/reset"
]

const send = (res: ServerResponse, status: number, body?: unknown): void => {
  const payload = body === undefined ? "" : JSON.stringify(body)
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(payload)
  })
  res.end(payload)
}

const str = (value: unknown): string | undefined => typeof value === "string" ? value : undefined
const num = (value: unknown): number | undefined => typeof value === "number" ? value : undefined

/** What a placed call (plain or StasisBroadcast) may say of itself: where it comes from and goes. */
const callOptions = (body: Record<string, unknown>) => {
  const caller = body.caller
  return {
    ...(str(body.endpoint) !== undefined ? { endpoint: str(body.endpoint) as string } : {}),
    ...(typeof caller === "string" || (typeof caller === "object" && caller !== null)
      ? { caller: caller as string | { name?: string; number?: string } }
      : {}),
    ...(str(body.exten) !== undefined ? { exten: str(body.exten) as string } : {}),
    ...(str(body.context) !== undefined ? { context: str(body.context) as string } : {}),
    ...(Array.isArray(body.args) ? { args: body.args.map(String) } : {}),
    ...(str(body.channelId) !== undefined ? { channelId: str(body.channelId) as string } : {})
  }
}

/** What `GET /_sim/<name>` shows, as the handle gives it. */
const views = (handle: SimulatorHandle): ReadonlyMap<string, () => unknown> =>
  new Map<string, () => unknown>([
    ["timings", () => handle.timings()],
    ["channels", () => handle.channels()],
    ["bridges", () => handle.bridges()],
    ["playbacks", () => handle.playbacks()],
    ["recordings", () => handle.liveRecordings()],
    ["apps", () => handle.connectedApps()],
    ["requests", () => handle.requests()]
  ])

export const handleControl = async (
  handle: SimulatorHandle,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL
): Promise<void> => {
  const raw = await readBody(req)
  let body: Record<string, unknown> = {}
  if (raw.trim() !== "") {
    try {
      const parsed: unknown = JSON.parse(raw)
      if (typeof parsed === "object" && parsed !== null) body = parsed as Record<string, unknown>
    } catch {
      send(res, 400, { error: "body is not JSON" })
      return
    }
  }
  const method = req.method ?? "GET"
  const parts = pathSegments(url.pathname).slice(1)
  const route = `${method} ${parts.map((p, i) => (parts[0] === "channels" && i === 1 ? "{id}" : p)).join("/")}`
  const channelId = parts[1] ?? ""
  const view = method === "GET" && parts.length === 1 ? views(handle).get(parts[0]!) : undefined
  if (view !== undefined) return send(res, 200, view())
  try {
    switch (route) {
      case "GET ":
        return send(res, 200, { routes: controlRoutes })
      case "POST calls": {
        const app = str(body.app)
        if (app === undefined) throw new ControlError(400, "app is required")
        const id = handle.placeCall({
          app,
          ...callOptions(body)
        })
        return send(res, 201, { channelId: id, channel: handle.channels().find((c) => c.id === id) })
      }
      case "POST broadcast-calls": {
        const id = handle.placeBroadcastCall({
          ...(str(body.appFilter) !== undefined ? { appFilter: str(body.appFilter) as string } : {}),
          ...(num(body.timeoutMs) !== undefined ? { timeoutMs: num(body.timeoutMs) as number } : {}),
          ...(typeof body.notifyClaimed === "boolean" ? { notifyClaimed: body.notifyClaimed } : {}),
          ...callOptions(body)
        })
        return send(res, 201, { channelId: id, channel: handle.channels().find((c) => c.id === id) })
      }
      case "POST channels/{id}/dtmf": {
        const digits = str(body.digits) ?? str(body.digit)
        if (digits === undefined || digits === "") throw new ControlError(400, "digits is required")
        handle.sendDtmf(channelId, digits, num(body.durationMs) ?? 160)
        return send(res, 204)
      }
      case "POST channels/{id}/hangup":
        handle.hangup(channelId, num(body.cause) ?? 16)
        return send(res, 204)
      case "POST channels/{id}/answer":
        handle.answer(channelId)
        return send(res, 204)
      case "POST flood": {
        const app = str(body.app)
        const count = num(body.count)
        if (app === undefined || count === undefined) throw new ControlError(400, "app and count are required")
        const floodChannel = str(body.channelId)
        const floodOptions = floodChannel !== undefined ? { channelId: floodChannel } : {}
        return send(res, 200, await handle.flood(app, count, floodOptions))
      }
      case "POST websockets/drop":
        return send(res, 200, { dropped: handle.dropWebsockets() })
      case "GET websockets/slow-reader-drops":
        return send(res, 200, handle.slowReaderDrops())
      case "PUT websockets": {
        const mode = body.mode
        if (mode !== "accept" && mode !== "refuse") throw new ControlError(400, "mode must be accept or refuse")
        handle.setWebsocketMode(mode)
        return send(res, 204)
      }
      case "GET rest":
        return send(res, 200, { mode: handle.restMode(), websocketResponsesFirst: handle.websocketRestResponsesFirst() })
      case "PUT rest": {
        const mode = body.mode
        const first = body.websocketResponsesFirst
        if (mode !== undefined && mode !== "normal" && mode !== "hang" && mode !== "refuse") {
          throw new ControlError(400, "mode must be normal, hang or refuse")
        }
        if (first !== undefined && typeof first !== "boolean") {
          throw new ControlError(400, "websocketResponsesFirst must be a boolean")
        }
        if (mode !== undefined) handle.setRestMode(mode)
        if (first !== undefined) handle.setWebsocketRestResponsesFirst(first)
        return send(res, 204)
      }
      case "PUT timings": {
        const timings: Record<string, number> = {}
        for (const key of [
          "answerDelayMs",
          "originateRingDelayMs",
          "originateAnswerDelayMs",
          "playbackDurationMs",
          "restResponseDelayMs"
        ]) {
          const value = num(body[key])
          if (value !== undefined) timings[key] = value
        }
        if (typeof body.autoAnswer === "boolean") handle.setAutoAnswer(body.autoAnswer)
        return send(res, 200, handle.setTimings(timings))
      }
      case "DELETE requests":
        handle.clearRequests()
        return send(res, 204)
      case "GET events": {
        const app = url.searchParams.get("app")
        return send(res, 200, handle.events(app ?? undefined))
      }
      case "DELETE events":
        handle.clearEvents()
        return send(res, 204)
      case "POST reset":
        handle.reset()
        return send(res, 204)
      default:
        return send(res, 404, { error: `no control route ${method} ${url.pathname}` })
    }
  } catch (error) {
    if (error instanceof ControlError) return send(res, error.status, { error: error.message })
    throw error
  }
}
