/**
 * Applications: those Asterisk knows, what each is subscribed to, subscription changes, and event filters.
 */
import { ariError } from "../errors.js"
import type { Engine } from "./core.js"

/** Applications known to Asterisk: those with a websocket, and inactive ones a channel or bridge holds. */
export const applicationNames = (engine: Engine): Array<string> => engine.hub.applicationNames()

/** Whether a channel or bridge holds `app`: Asterisk keeps such an app, inactive, when its socket goes. */
export const holdsApp = (engine: Engine, app: string): boolean => {
  for (const channel of engine.channels.values()) {
    if (channel.stasisApp === app || channel.subscribedApps.has(app)) return true
  }
  for (const bridge of engine.bridges.values()) if (bridge.subscribedApps.has(app)) return true
  return false
}

export const applicationJson = (engine: Engine, app: string) => {
  const registration = engine.hub.application(app)
  const channelIds: Array<string> = []
  for (const channel of engine.channels.values()) {
    if (channel.stasisApp === app || channel.subscribedApps.has(app)) channelIds.push(channel.id)
  }
  const bridgeIds: Array<string> = []
  for (const bridge of engine.bridges.values()) if (bridge.subscribedApps.has(app)) bridgeIds.push(bridge.id)
  return {
    name: app,
    channel_ids: channelIds,
    bridge_ids: bridgeIds,
    endpoint_ids: [...(registration?.endpointIds ?? [])],
    device_names: [...(registration?.deviceNames ?? [])],
    events_allowed: (registration?.eventFilter.allowed ?? []).map((type) => ({ type })),
    events_disallowed: (registration?.eventFilter.disallowed ?? []).map((type) => ({ type }))
  }
}

/** A list of `{"type": …}` objects, as the filter's lists are written; anything else is refused. */
const filterTypes = (value: unknown): Array<string> => {
  const invalid = () => ariError(400, "Bad Request", "Invalid format definition")
  if (!Array.isArray(value)) throw invalid()
  return value.map((item: unknown) => {
    const type = typeof item === "object" && item !== null ? (item as { type?: unknown }).type : undefined
    if (typeof type !== "string") throw invalid()
    return type
  })
}

/**
 * `PUT /applications/{app}/eventFilter`, as Asterisk 23.4.1 does it: no body or `{}` clears both
 * lists; a list given alone leaves the other as it was; a top-level array becomes both lists (so
 * it blocks what it names); type names are stored unchecked.
 */
export const setEventFilter = (engine: Engine, app: string, body: unknown): void => {
  const registration = engine.hub.application(app)
  if (registration === undefined) throw ariError(404, "Not Found", "Application not found")
  const filter = registration.eventFilter
  if (Array.isArray(body)) {
    const types = filterTypes(body)
    filter.allowed = types
    filter.disallowed = types
    return
  }
  const fields = typeof body === "object" && body !== null ? body as Record<string, unknown> : {}
  if (fields.allowed === undefined && fields.disallowed === undefined) {
    filter.allowed = []
    filter.disallowed = []
    return
  }
  const allowed = fields.allowed === undefined ? filter.allowed : filterTypes(fields.allowed)
  const disallowed = fields.disallowed === undefined ? filter.disallowed : filterTypes(fields.disallowed)
  filter.allowed = allowed
  filter.disallowed = disallowed
}

export const changeSubscription = (
  engine: Engine,
  app: string,
  eventSources: ReadonlyArray<string>,
  subscribe: boolean
): void => {
  const registration = engine.hub.application(app)
  if (registration === undefined) throw ariError(404, "Not Found", "Application not found")
  if (eventSources.length === 0) throw ariError(400, "Bad Request", "Missing parameter eventSource")
  const actions: Array<() => void> = []
  for (const source of eventSources) {
    const colon = source.indexOf(":")
    const scheme = source.slice(0, colon)
    const id = source.slice(colon + 1)
    const missing = () => ariError(422, "Unprocessable Entity", "Event source does not exist")
    switch (scheme) {
      case "channel": {
        const channel = engine.channels.get(id)
        if (channel === undefined) throw missing()
        actions.push(() => subscribe ? channel.subscribedApps.add(app) : channel.subscribedApps.delete(app))
        break
      }
      case "bridge": {
        const bridge = engine.bridges.get(id)
        if (bridge === undefined) throw missing()
        actions.push(() => subscribe ? bridge.subscribedApps.add(app) : bridge.subscribedApps.delete(app))
        break
      }
      case "endpoint": {
        if (!engine.options.endpoints.includes(id) && !id.endsWith("/")) throw missing()
        actions.push(() => subscribe ? registration.endpointIds.add(id) : registration.endpointIds.delete(id))
        break
      }
      case "deviceState": {
        actions.push(() => subscribe ? registration.deviceNames.add(id) : registration.deviceNames.delete(id))
        break
      }
      default:
        throw ariError(400, "Bad Request", "Invalid event source URI scheme")
    }
  }
  for (const action of actions) action()
}
