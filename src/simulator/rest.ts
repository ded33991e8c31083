/**
 * The ARI REST resources under `/ari`: routing (404 Resource not found, 405 Invalid method with Allow),
 * and one handler per operation of the API description files.
 */
import { applicationJson, applicationNames, changeSubscription, setEventFilter } from "./engine/applications.js"
import { claimCall } from "./engine/broadcast.js"
import { addToBridge, createBridge, destroyBridge, getBridge, removeFromBridge } from "./engine/bridges.js"
import {
  answer,
  continueInDialplan,
  controlled,
  controlledAnswerable,
  endpointChannelIds,
  getChannel,
  getChannelVariable,
  hangupByAri,
  move,
  setChannelVariable,
  snoop
} from "./engine/channels.js"
import type { Engine } from "./engine/core.js"
import { create, dial, originate } from "./engine/outbound.js"
import { controlPlayback, getPlayback, play, stopPlayback } from "./engine/playbacks.js"
import { finishRecording, getLiveRecording, record } from "./engine/recordings.js"
import { AriError, ariError } from "./errors.js"
import type { Params, Reply } from "./http.js"
import { noContent, ok, pathSegments } from "./http.js"
import { bridgeSnapshot, channelSnapshot, nowStamp, playbackJson, recordingJson } from "./state.js"

export interface RouteContext {
  readonly engine: Engine
  readonly params: Params
  readonly path: Readonly<Record<string, string>>
}

type Handler = (context: RouteContext) => Reply | Promise<Reply>
type Method = "GET" | "POST" | "PUT" | "DELETE"

interface Route {
  readonly segments: ReadonlyArray<string>
  readonly methods: Partial<Record<Method, Handler>>
}

// Asterisk lists allowed methods in its enum order after OPTIONS
const methodOrder: ReadonlyArray<Method> = ["GET", "POST", "PUT", "DELETE"]

const pathParam = (context: RouteContext, name: string): string => context.path[name] ?? ""

const variablesOf = (params: Params): Record<string, string> | undefined => {
  const variables = params.json?.variables
  if (variables === undefined || variables === null || typeof variables !== "object") return undefined
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(variables)) {
    if (typeof value !== "string") {
      throw ariError(400, "Bad Request", "Only string values in the 'variables' object allowed")
    }
    out[key] = value
  }
  return out
}

const originateRequest = (params: Params, channelId: string | undefined) => ({
  endpoint: params.get("endpoint"),
  extension: params.get("extension"),
  context: params.get("context"),
  priority: params.int("priority"),
  app: params.get("app"),
  appArgs: params.get("appArgs"),
  callerId: params.get("callerId"),
  variables: variablesOf(params),
  channelId,
  otherChannelId: params.get("otherChannelId")
})

const playOnChannel = (context: RouteContext, playbackId: string | undefined): Reply => {
  const { engine, params } = context
  const channel = controlledAnswerable(engine, pathParam(context, "channelId"))
  if ((params.int("skipms") ?? 0) < 0) throw ariError(400, "Bad Request", "skipms cannot be negative")
  if ((params.int("offsetms") ?? 0) < 0) throw ariError(400, "Bad Request", "offsetms cannot be negative")
  const playback = play(
    engine,
    `channel:${channel.id}`,
    params.list("media"),
    params.get("lang") ?? channel.language,
    playbackId
  )
  return { status: 201, location: `/ari/playbacks/${playback.id}`, body: playbackJson(playback) }
}

const playOnBridge = (context: RouteContext, playbackId: string | undefined): Reply => {
  const { engine, params } = context
  const bridge = getBridge(engine, pathParam(context, "bridgeId"))
  const playback = play(engine, `bridge:${bridge.id}`, params.list("media"), params.get("lang") ?? "en", playbackId)
  return { status: 201, location: `/ari/playbacks/${playback.id}`, body: playbackJson(playback) }
}

const recordReply = (context: RouteContext, targetUri: string): Reply => {
  const { engine, params } = context
  const recording = record(engine, targetUri, {
    name: params.get("name"),
    format: params.get("format"),
    maxDurationSeconds: params.int("maxDurationSeconds"),
    ifExists: params.get("ifExists")
  })
  return {
    status: 201,
    location: `/ari/recordings/live/${encodeURIComponent(recording.name)}`,
    body: recordingJson(recording)
  }
}

const snoopReply = (context: RouteContext, snoopId: string | undefined): Reply => {
  const { engine, params } = context
  const snoopChannel = snoop(engine, pathParam(context, "channelId"), {
    spy: params.get("spy"),
    whisper: params.get("whisper"),
    app: params.get("app"),
    appArgs: params.get("appArgs"),
    snoopId
  })
  return ok(channelSnapshot(snoopChannel))
}

const endpointJson = (engine: Engine, endpoint: string) => {
  const slash = endpoint.indexOf("/")
  return {
    technology: endpoint.slice(0, slash),
    resource: endpoint.slice(slash + 1),
    state: "online",
    channel_ids: endpointChannelIds(engine, endpoint)
  }
}

const soundJson = (id: string) => ({
  id,
  formats: [
    { language: "en_US_f_Allison", format: "gsm" },
    { language: "en_US_f_Allison", format: "slin" },
    { language: "en_US", format: "gsm" },
    { language: "en_US", format: "slin" },
    { language: "en", format: "gsm" },
    { language: "en", format: "slin" }
  ]
})

const modules: Readonly<Record<string, { readonly description: string; readonly use_count: number }>> = {
  "res_ari.so": { description: "Asterisk RESTful Interface", use_count: 12 },
  "res_stasis.so": { description: "Stasis application support", use_count: 10 },
  "chan_pjsip.so": { description: "PJSIP Channel Driver", use_count: 0 },
  "res_pjsip.so": { description: "Basic SIP resource", use_count: 50 }
}

const moduleJson = (name: string) => {
  const module = modules[name]
  if (module === undefined) throw ariError(404, "Not Found", "Module could not be found in running modules")
  return {
    name,
    description: module.description,
    use_count: module.use_count,
    status: "Running",
    support_level: "core"
  }
}

const deviceStateNames = new Set([
  "UNKNOWN",
  "NOT_INUSE",
  "INUSE",
  "BUSY",
  "INVALID",
  "UNAVAILABLE",
  "RINGING",
  "RINGINUSE",
  "ONHOLD"
])

const asteriskInfo = (engine: Engine, only: ReadonlyArray<string>) => {
  const info: Record<string, unknown> = {
    build: {
      os: "Linux",
      kernel: "6.18.44-fc-v595",
      machine: "x86_64",
      options: "OPTIONAL_API",
      date: "2026-11-30 10:21:52 UTC",
      user: "root"
    },
    system: { version: "23.4.1", entity_id: engine.options.asteriskId },
    config: { name: "", default_language: "en", setid: { user: "", group: "" } },
    status: { startup_time: engine.startedAt, last_reload_time: engine.startedAt }
  }
  if (only.length === 0) return info
  return Object.fromEntries(Object.entries(info).filter(([key]) => only.includes(key)))
}

type Routes = ReadonlyArray<readonly [string, Partial<Record<Method, Handler>>]>

/** What plays and records (a channel, a bridge) has the same three routes: play, play with an id, record. */
const mediaRoutes = (
  resource: string,
  play: (context: RouteContext, playbackId: string | undefined) => Reply,
  recordTarget: (context: RouteContext) => string
): Routes => [
  [`${resource}/play`, { POST: (c) => play(c, c.params.get("playbackId")) }],
  [`${resource}/play/:playbackId`, { POST: (c) => play(c, pathParam(c, "playbackId")) }],
  [`${resource}/record`, { POST: (c) => recordReply(c, recordTarget(c)) }]
]

const routes: Routes = [
  // ---- channels (literal segments before {channelId})
  ["channels", {
    GET: ({ engine }) => ok([...engine.channels.values()].filter((c) => !c.hangingUp).map((c) => channelSnapshot(c))),
    POST: ({ engine, params }) =>
      ok(channelSnapshot(originate(engine, originateRequest(params, params.get("channelId")))))
  }],
  ["channels/create", {
    POST: ({ engine, params }) => ok(channelSnapshot(create(engine, originateRequest(params, params.get("channelId")))))
  }],
  ["channels/externalMedia", {
    POST: () => {
      throw ariError(501, "Not Implemented", "The encapsulation and/or transport is not supported")
    }
  }],
  ["channels/:channelId", {
    GET: (c) => ok(channelSnapshot(getChannel(c.engine, pathParam(c, "channelId")))),
    POST: (c) => ok(channelSnapshot(originate(c.engine, originateRequest(c.params, pathParam(c, "channelId"))))),
    DELETE: (c) => {
      hangupByAri(c.engine, pathParam(c, "channelId"), c.params.get("reason"), c.params.get("reason_code"))
      return noContent()
    }
  }],
  ["channels/:channelId/continue", {
    POST: (c) => {
      continueInDialplan(c.engine, pathParam(c, "channelId"), {
        context: c.params.get("context"),
        extension: c.params.get("extension"),
        priority: c.params.int("priority")
      })
      return noContent()
    }
  }],
  ["channels/:channelId/move", {
    POST: (c) => {
      move(c.engine, pathParam(c, "channelId"), c.params.get("app"), c.params.get("appArgs"))
      return noContent()
    }
  }],
  ["channels/:channelId/redirect", {
    POST: (c) => {
      controlledAnswerable(c.engine, pathParam(c, "channelId"))
      if ((c.params.get("endpoint") ?? "") === "") {
        throw ariError(400, "Not Found", "Required parameter 'endpoint' not provided.")
      }
      throw ariError(501, "Not Implemented", "Redirect is not supported by the simulator")
    }
  }],
  ["channels/:channelId/answer", {
    POST: (c) =>
      new Promise<Reply>((resolve, reject) => {
        try {
          answer(c.engine, pathParam(c, "channelId"), () => resolve(noContent()))
        } catch (error) {
          reject(error)
        }
      })
  }],
  ...(["ring", "hold", "moh", "silence", "mute"] as const).map((action) =>
    [`channels/:channelId/${action}`, {
      POST: (c: RouteContext) => {
        controlledAnswerable(c.engine, pathParam(c, "channelId"))
        return muteDirection(action, c) ?? noContent()
      },
      DELETE: (c: RouteContext) => {
        controlledAnswerable(c.engine, pathParam(c, "channelId"))
        return muteDirection(action, c) ?? noContent()
      }
    }] as const
  ),
  ["channels/:channelId/progress", {
    POST: (c) => {
      controlledAnswerable(c.engine, pathParam(c, "channelId"))
      return noContent()
    }
  }],
  ["channels/:channelId/dtmf", {
    POST: (c) => {
      controlledAnswerable(c.engine, pathParam(c, "channelId"))
      if ((c.params.get("dtmf") ?? "") === "") throw ariError(400, "Bad Request", "DTMF is required")
      return noContent()
    }
  }],
  ...mediaRoutes(
    "channels/:channelId",
    playOnChannel,
    (c) => `channel:${controlled(c.engine, pathParam(c, "channelId")).id}`
  ),
  ["channels/:channelId/variable", {
    GET: (c) => ok({ value: getChannelVariable(c.engine, pathParam(c, "channelId"), c.params.get("variable")) }),
    POST: (c) => {
      setChannelVariable(c.engine, pathParam(c, "channelId"), c.params.get("variable"), c.params.get("value"))
      return noContent()
    }
  }],
  ["channels/:channelId/snoop", { POST: (c) => snoopReply(c, c.params.get("snoopId")) }],
  ["channels/:channelId/snoop/:snoopId", { POST: (c) => snoopReply(c, pathParam(c, "snoopId")) }],
  ["channels/:channelId/dial", {
    POST: (c) => {
      dial(c.engine, pathParam(c, "channelId"), c.params.get("caller"))
      return noContent()
    }
  }],
  // ---- bridges
  ["bridges", {
    GET: ({ engine }) => ok([...engine.bridges.values()].map(bridgeSnapshot)),
    POST: ({ engine, params }) =>
      ok(bridgeSnapshot(createBridge(engine, {
        type: params.get("type"),
        bridgeId: params.get("bridgeId"),
        name: params.get("name")
      })))
  }],
  ["bridges/:bridgeId", {
    GET: (c) => ok(bridgeSnapshot(getBridge(c.engine, pathParam(c, "bridgeId")))),
    POST: (c) =>
      ok(bridgeSnapshot(createBridge(c.engine, {
        type: c.params.get("type"),
        bridgeId: pathParam(c, "bridgeId"),
        name: c.params.get("name")
      }))),
    DELETE: (c) => {
      destroyBridge(c.engine, pathParam(c, "bridgeId"))
      return noContent()
    }
  }],
  ["bridges/:bridgeId/addChannel", {
    POST: (c) => {
      addToBridge(c.engine, pathParam(c, "bridgeId"), c.params.list("channel"))
      return noContent()
    }
  }],
  ["bridges/:bridgeId/removeChannel", {
    POST: (c) => {
      removeFromBridge(c.engine, pathParam(c, "bridgeId"), c.params.list("channel"))
      return noContent()
    }
  }],
  ["bridges/:bridgeId/moh", {
    POST: (c) => {
      getBridge(c.engine, pathParam(c, "bridgeId"))
      return noContent()
    },
    DELETE: (c) => {
      getBridge(c.engine, pathParam(c, "bridgeId"))
      return noContent()
    }
  }],
  ...mediaRoutes(
    "bridges/:bridgeId",
    playOnBridge,
    (c) => `bridge:${getBridge(c.engine, pathParam(c, "bridgeId")).id}`
  ),
  // ---- playbacks
  ["playbacks/:playbackId", {
    GET: (c) => ok(playbackJson(getPlayback(c.engine, pathParam(c, "playbackId")))),
    DELETE: (c) => {
      stopPlayback(c.engine, pathParam(c, "playbackId"))
      return noContent()
    }
  }],
  ["playbacks/:playbackId/control", {
    POST: (c) => {
      controlPlayback(c.engine, pathParam(c, "playbackId"), c.params.get("operation"))
      return noContent()
    }
  }],
  // ---- recordings
  ["recordings/stored", { GET: ({ engine }) => ok([...engine.storedRecordings.values()]) }],
  ["recordings/stored/:recordingName", {
    GET: (c) => {
      const stored = c.engine.storedRecordings.get(pathParam(c, "recordingName"))
      if (stored === undefined) throw ariError(404, "Not Found", "Recording not found")
      return ok(stored)
    },
    DELETE: (c) => {
      if (!c.engine.storedRecordings.delete(pathParam(c, "recordingName"))) {
        throw ariError(404, "Not Found", "Recording not found")
      }
      return noContent()
    }
  }],
  ["recordings/live/:recordingName", {
    GET: (c) => ok(recordingJson(getLiveRecording(c.engine, pathParam(c, "recordingName")))),
    DELETE: (c) => {
      finishRecording(c.engine, getLiveRecording(c.engine, pathParam(c, "recordingName")), "canceled")
      return noContent()
    }
  }],
  ["recordings/live/:recordingName/stop", {
    POST: (c) => {
      finishRecording(c.engine, getLiveRecording(c.engine, pathParam(c, "recordingName")), "done")
      return noContent()
    }
  }],
  ...(["pause", "mute"] as const).map((action) =>
    [`recordings/live/:recordingName/${action}`, {
      POST: (c: RouteContext) => {
        getLiveRecording(c.engine, pathParam(c, "recordingName"))
        return noContent()
      },
      DELETE: (c: RouteContext) => {
        getLiveRecording(c.engine, pathParam(c, "recordingName"))
        return noContent()
      }
    }] as const
  ),
  // ---- asterisk
  ["asterisk/info", { GET: ({ engine, params }) => ok(asteriskInfo(engine, params.list("only"))) }],
  ["asterisk/ping", {
    GET: ({ engine }) => ok({ ping: "pong", timestamp: nowStamp(), asterisk_id: engine.options.asteriskId })
  }],
  ["asterisk/variable", {
    GET: ({ engine, params }) => {
      const name = params.get("variable")
      if (name === undefined || name === "") throw ariError(400, "Bad Request", "Variable name is required")
      return ok({ value: engine.globalVariables.get(name) ?? "" })
    },
    POST: ({ engine, params }) => {
      const name = params.get("variable")
      if (name === undefined || name === "") throw ariError(400, "Bad Request", "Variable name is required")
      engine.globalVariables.set(name, params.get("value") ?? "")
      return noContent()
    }
  }],
  ["asterisk/modules", { GET: () => ok(Object.keys(modules).map(moduleJson)) }],
  ["asterisk/modules/:moduleName", { GET: (c) => ok(moduleJson(pathParam(c, "moduleName"))) }],
  // ---- applications
  ["applications", {
    GET: ({ engine }) => ok([...applicationNames(engine)].map((name) => applicationJson(engine, name)))
  }],
  ["applications/:applicationName", {
    GET: (c) => {
      const name = pathParam(c, "applicationName")
      if (!applicationNames(c.engine).includes(name)) throw ariError(404, "Not Found", "Application not found")
      return ok(applicationJson(c.engine, name))
    }
  }],
  ["applications/:applicationName/subscription", {
    POST: (c) => {
      const name = pathParam(c, "applicationName")
      changeSubscription(c.engine, name, c.params.list("eventSource"), true)
      return ok(applicationJson(c.engine, name))
    },
    DELETE: (c) => {
      const name = pathParam(c, "applicationName")
      changeSubscription(c.engine, name, c.params.list("eventSource"), false)
      return ok(applicationJson(c.engine, name))
    }
  }],
  // ---- events
  ["events/claim", {
    POST: (c) => {
      claimCall(c.engine, c.params.get("channelId"), c.params.get("application"))
      return noContent()
    }
  }],
  ["applications/:applicationName/eventFilter", {
    PUT: (c) => {
      const name = pathParam(c, "applicationName")
      setEventFilter(c.engine, name, c.params.body)
      return ok(applicationJson(c.engine, name))
    }
  }],
  // ---- endpoints
  ["endpoints", { GET: ({ engine }) => ok(engine.options.endpoints.map((e) => endpointJson(engine, e))) }],
  ["endpoints/:tech", {
    GET: (c) => {
      const tech = pathParam(c, "tech").toLowerCase()
      const matching = c.engine.options.endpoints.filter((e) => e.toLowerCase().startsWith(`${tech}/`))
      if (matching.length === 0) throw ariError(404, "Not Found", "No Endpoints found")
      return ok(matching.map((e) => endpointJson(c.engine, e)))
    }
  }],
  ["endpoints/:tech/:resource", {
    GET: (c) => {
      const wanted = `${pathParam(c, "tech")}/${pathParam(c, "resource")}`.toLowerCase()
      const endpoint = c.engine.options.endpoints.find((e) => e.toLowerCase() === wanted)
      if (endpoint === undefined) throw ariError(404, "Not Found", "Endpoint not found")
      return ok(endpointJson(c.engine, endpoint))
    }
  }],
  // ---- sounds
  ["sounds", { GET: ({ engine }) => ok(engine.options.sounds.map(soundJson)) }],
  ["sounds/:soundId", {
    GET: (c) => {
      const id = pathParam(c, "soundId")
      if (!c.engine.options.sounds.includes(id)) throw ariError(404, "Not Found", "Sound not found")
      return ok(soundJson(id))
    }
  }],
  // ---- device states
  ["deviceStates", {
    GET: ({ engine }) => ok([...engine.deviceStates].map(([name, state]) => ({ name, state })))
  }],
  ["deviceStates/:deviceName", {
    GET: (c) => {
      const name = pathParam(c, "deviceName")
      return ok({ name, state: c.engine.deviceStates.get(name) ?? "UNKNOWN" })
    },
    PUT: (c) => {
      const name = pathParam(c, "deviceName")
      if (!name.startsWith("Stasis:")) {
        throw ariError(409, "Conflict", "Cannot modify device state of non-Stasis device")
      }
      const state = c.params.get("deviceState") ?? ""
      if (!deviceStateNames.has(state)) throw ariError(500, "Internal Server Error", "Unknown device")
      c.engine.deviceStates.set(name, state)
      return noContent()
    },
    DELETE: (c) => {
      const name = pathParam(c, "deviceName")
      if (!c.engine.deviceStates.delete(name)) throw ariError(404, "Not Found", "Device not found")
      return noContent()
    }
  }]
]

function muteDirection(action: string, c: RouteContext): Reply | undefined {
  if (action !== "mute") return undefined
  const direction = c.params.get("direction") ?? "both"
  if (!["in", "out", "both"].includes(direction)) throw ariError(400, "Bad Request", "Invalid direction specified")
  return undefined
}

const compiled: ReadonlyArray<Route> = routes.map(([pattern, methods]) => ({ segments: pattern.split("/"), methods }))

const match = (segments: ReadonlyArray<string>): { route: Route; path: Record<string, string> } | undefined => {
  for (const route of compiled) {
    if (route.segments.length !== segments.length) continue
    const path: Record<string, string> = {}
    let matched = true
    for (let i = 0; i < segments.length; i++) {
      const pattern = route.segments[i] ?? ""
      const actual = segments[i] ?? ""
      if (pattern.startsWith(":")) {
        if (actual === "") {
          matched = false
          break
        }
        path[pattern.slice(1)] = actual
      } else if (pattern !== actual) {
        matched = false
        break
      }
    }
    if (matched) return { route, path }
  }
  return undefined
}

/** Handles one authenticated request for `/ari/<resourcePath>`. */
export const handleAri = async (
  engine: Engine,
  method: string,
  resourcePath: string,
  params: Params
): Promise<Reply> => {
  const segments = pathSegments(resourcePath)
  const found = match(segments)
  if (found === undefined) return { status: 404, body: { message: "Resource not found" } }
  const allow = "OPTIONS," + methodOrder.filter((m) => found.route.methods[m] !== undefined).join(",")
  if (method === "OPTIONS") return { status: 204, allow }
  const handler = (methodOrder as ReadonlyArray<string>).includes(method)
    ? found.route.methods[method as Method]
    : undefined
  if (handler === undefined) return { status: 405, allow, body: { message: "Invalid method" } }
  try {
    return await handler({ engine, params, path: found.path })
  } catch (error) {
    if (error instanceof AriError) return { status: error.status, reason: error.reason, body: error.body }
    throw error
  }
}
