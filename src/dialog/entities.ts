/**
 * Which ARI entities an event, a command or a command's response names. The router binds entities
 * to dialogs under these keys and routes each event to the dialog of every entity it names.
 *
 * Keys are typed by kind (`c:` channel, `b:` bridge, `p:` playback, `r:` live recording, `l:` a
 * Local channel pair) because ARI lets applications choose ids, so a bridge and a channel may share one.
 */
import { isJsonObject, type JsonObject, parseJsonObject } from "../protocol/json.js"

export type EntityKey = string

export const channelKey = (id: string): EntityKey => "c:" + id
export const bridgeKey = (id: string): EntityKey => "b:" + id
export const playbackKey = (id: string): EntityKey => "p:" + id
export const recordingKey = (name: string): EntityKey => "r:" + name
/** Both halves of a Local channel (`Local/x@ctx-00000001;1` and `;2`) share this key. */
export const localPairKey = (base: string): EntityKey => "l:" + base

/** The event fields (from events.json) that hold a Channel, in the order they are tried. */
const channelFields = [
  "channel",
  "peer",
  "caller",
  "forwarded",
  "replace_channel",
  "transferee",
  "transfer_target",
  "transferer_first_leg",
  "transferer_second_leg",
  "destination_link_first_leg",
  "destination_link_second_leg",
  "destination_threeway_channel",
  "destination_channel",
  "connected_channel",
  "source_channel"
] as const

/** The event fields that hold a Bridge. */
const bridgeFields = [
  "bridge",
  "bridge_from",
  "transferer_first_leg_bridge",
  "transferer_second_leg_bridge",
  "destination_threeway_bridge"
] as const

const localSuffix = /^(Local\/.+);[12]$/

/** The Local pair key of a channel name, if it is a Local channel half. */
export const localPairOf = (channelName: unknown): EntityKey | undefined => {
  if (typeof channelName !== "string") return undefined
  const match = localSuffix.exec(channelName)
  return match === null ? undefined : localPairKey(match[1]!)
}

/** `channel:ID` / `bridge:ID` target URIs of playbacks and recordings. */
const targetKey = (uri: unknown): EntityKey | undefined => {
  if (typeof uri !== "string") return undefined
  if (uri.startsWith("channel:")) return channelKey(uri.slice(8))
  if (uri.startsWith("bridge:")) return bridgeKey(uri.slice(7))
  return undefined
}


/** What one event field holds: a Channel, a Bridge, a bridge id, a Playback or a Recording. */
type EntityField = "channel" | "bridge" | "bridgeId" | "playback" | "recording"

/** Every field that may name an entity, in the order its keys come out (the primary entity first). */
const entityFields: ReadonlyArray<readonly [string, EntityField]> = [
  ...channelFields.map((field) => [field, "channel"] as const),
  ...bridgeFields.map((field) => [field, "bridge"] as const),
  ["destination_bridge", "bridgeId"],
  ["playback", "playback"],
  ["recording", "recording"]
]
const entityFieldRank = new Map(entityFields.map(([field], rank) => [field, rank]))

const addKeysOf = (field: string, kind: EntityField, event: JsonObject, keys: Array<EntityKey>): void => {
  const value = event[field]
  switch (kind) {
    case "channel":
      if (isJsonObject(value) && typeof value.id === "string") {
        keys.push(channelKey(value.id))
        const pair = localPairOf(value.name)
        if (pair !== undefined) keys.push(pair)
      }
      return
    case "bridge":
      if (isJsonObject(value) && typeof value.id === "string") keys.push(bridgeKey(value.id))
      return
    case "bridgeId":
      if (typeof value === "string" && value !== "") keys.push(bridgeKey(value))
      return
    case "playback":
    case "recording": {
      if (!isJsonObject(value)) return
      const id = kind === "playback" ? value.id : value.name
      if (typeof id === "string") keys.push(kind === "playback" ? playbackKey(id) : recordingKey(id))
      const target = targetKey(value.target_uri)
      if (target !== undefined) keys.push(target)
    }
  }
}

/**
 * The entity keys an ARI event names, primary entity first. A Local channel also yields its pair
 * key; a playback or recording also yields the key of its target (it may start before the
 * response that would have bound it arrives).
 */
export const eventEntityKeys = (event: JsonObject): Array<EntityKey> => {
  const keys: Array<EntityKey> = []
  // The event's own fields (a handful) are looked up, rather than every field that may name an
  // entity (two dozen, nearly all absent): this runs for every event.
  let ranks: Array<number> | undefined
  for (const field in event) {
    const rank = entityFieldRank.get(field)
    if (rank !== undefined) (ranks ??= []).push(rank)
  }
  if (ranks === undefined) return keys
  if (ranks.length > 1) ranks.sort((a, b) => a - b)
  for (const rank of ranks) {
    const [field, kind] = entityFields[rank]!
    addKeysOf(field, kind, event, keys)
  }
  return keys
}

/** What a command, before it is sent, says about entities it will create or use. */
export interface CommandEntities {
  /** Keys to bind to the dialog before the request is sent. */
  readonly keys: ReadonlyArray<EntityKey>
  /** Channels the command creates: they keep the dialog alive until they leave or fail. */
  readonly newChannels: ReadonlyArray<string>
  /**
   * Whether the channels it creates are subscribed to the dialog's application, so that their end
   * will be seen. An originate into the dialplan (no `app`), or into another application, is not:
   * its channel is bound for routing only, or the dialog would wait for an end it never sees.
   */
  readonly watched: boolean
}

const noEntities: CommandEntities = { keys: [], newChannels: [], watched: true }

const noQuery = new URLSearchParams()

/** Splits a command url into decoded path segments and query parameters. */
const parseUrl = (url: string): { segments: Array<string>; query: URLSearchParams } => {
  const mark = url.indexOf("?")
  const path = mark === -1 ? url : url.slice(0, mark)
  // Most commands have neither a query nor an escape: every command pays this, so skip what is absent.
  const query = mark === -1 ? noQuery : new URLSearchParams(url.slice(mark + 1))
  const segments = path.split("/").filter((s) => s !== "")
  if (path.includes("%")) {
    for (let i = 0; i < segments.length; i++) {
      try {
        segments[i] = decodeURIComponent(segments[i]!)
      } catch {
        // kept as given
      }
    }
  }
  return { segments, query }
}

const parseBody = (body: string): JsonObject => parseJsonObject(body) ?? {}

/**
 * Entities named by a command's path, query string and JSON body. Only creating methods (POST,
 * PUT) bind: a GET or DELETE never moves an entity into a dialog.
 */
export const commandEntities = (
  method: string,
  url: string,
  body: string,
  /** The dialog's application; undefined accepts any. */
  application?: string
): CommandEntities => {
  const verb = method.toUpperCase()
  if (verb !== "POST" && verb !== "PUT") return noEntities
  const { segments, query } = parseUrl(url)
  const params = parseBody(body)
  const param = (name: string): string | undefined => {
    const fromQuery = query.get(name)
    if (fromQuery !== null && fromQuery !== "") return fromQuery
    const fromBody = params[name]
    return typeof fromBody === "string" && fromBody !== "" ? fromBody : undefined
  }
  const keys: Array<EntityKey> = []
  const newChannels: Array<string> = []
  const [resource, id, action, subId] = segments
  // Originate, create, externalMedia and snoop make channels; they are this dialog's to wait for
  // only if they go into its own application.
  const createsChannels = resource === "channels" && (action === undefined || action === "snoop")
  const app = param("app")
  const watched = !createsChannels || (app !== undefined && (application === undefined || app === application))
  const addChannel = (channelId: string | undefined, keepsDialogAlive: boolean) => {
    if (channelId === undefined) return
    keys.push(channelKey(channelId))
    if (keepsDialogAlive && watched) newChannels.push(channelId)
  }
  // Media started on a channel or a bridge: a playback (id in the path or query) or a recording.
  const addMedia = () => {
    if (action === "play") {
      const playbackId = subId ?? param("playbackId")
      if (playbackId !== undefined) keys.push(playbackKey(playbackId))
    } else if (action === "record") {
      const name = param("name")
      if (name !== undefined) keys.push(recordingKey(name))
    }
  }
  if (resource === "channels") {
    if (id === undefined || id === "create" || id === "externalMedia") {
      // originate, create, externalMedia: the new channel's id may be given up front
      addChannel(param("channelId"), true)
      addChannel(param("otherChannelId"), false)
    } else if (action === undefined) {
      addChannel(id, true) // POST /channels/{channelId}: originate with id
      addChannel(param("otherChannelId"), false)
    } else if (action === "snoop") {
      addChannel(subId ?? param("snoopId"), true)
    } else {
      addMedia()
    }
  } else if (resource === "bridges") {
    if (id === undefined) {
      const bridgeId = param("bridgeId")
      if (bridgeId !== undefined) keys.push(bridgeKey(bridgeId))
    } else if (action === undefined) {
      keys.push(bridgeKey(id)) // POST /bridges/{bridgeId}: create with id
    } else if (action === "addChannel") {
      for (const channel of (param("channel") ?? "").split(",")) if (channel !== "") keys.push(channelKey(channel))
    } else {
      addMedia()
    }
  }
  return { keys, newChannels, watched }
}

/**
 * Entities created by a successful POST/PUT, read from the response body's shape: a Channel (a new
 * channel keeps the dialog alive), a Bridge, a Playback or a LiveRecording.
 */
export const responseEntities = (method: string, status: number, body: string): CommandEntities => {
  const verb = method.toUpperCase()
  if ((verb !== "POST" && verb !== "PUT") || status < 200 || status >= 300 || body === "") return noEntities
  const parsed = parseBody(body)
  if (typeof parsed.id === "string") {
    if ("dialplan" in parsed || "caller" in parsed) {
      return { keys: [channelKey(parsed.id)], newChannels: [parsed.id], watched: true }
    }
    if ("bridge_type" in parsed || "technology" in parsed) {
      return { keys: [bridgeKey(parsed.id)], newChannels: [], watched: true }
    }
    if ("media_uri" in parsed) return { keys: [playbackKey(parsed.id)], newChannels: [], watched: true }
  }
  if (typeof parsed.name === "string" && "target_uri" in parsed) {
    return { keys: [recordingKey(parsed.name)], newChannels: [], watched: true }
  }
  return noEntities
}
