/**
 * The route template of an ARI request (`POST /channels/{channelId}/answer`), from the operations
 * of the ARI surface: a name of low cardinality for a trace span, where the path holds ids.
 */
import { allOperations } from "../client/generated/operations.js"

interface Route {
  readonly template: string
  /** The template's segments; undefined where it has a `{placeholder}`. */
  readonly literals: ReadonlyArray<string | undefined>
  readonly literalCount: number
}

/** Routes by `METHOD segments`, the most literal first (`/channels/create` before `/channels/{channelId}`). */
const routes = new Map<string, Array<Route>>()
for (const operation of allOperations) {
  if (operation.upgrade !== undefined) continue
  const segments = operation.path.split("/").slice(1)
  const literals = segments.map((segment) => segment.startsWith("{") ? undefined : segment)
  const key = `${operation.method} ${segments.length}`
  const route = { template: operation.path, literals, literalCount: literals.filter((l) => l !== undefined).length }
  const list = routes.get(key)
  if (list === undefined) routes.set(key, [route])
  else if (!list.some((known) => known.template === route.template)) list.push(route)
}
for (const list of routes.values()) list.sort((a, b) => b.literalCount - a.literalCount)

/**
 * The template of the ARI operation `method` `url` asks for (the url under `stasis_url`, a query
 * string allowed; `method` as a command gives it, "" meaning GET); undefined when none matches.
 */
export const routeTemplate = (method: string, url: string): string | undefined => {
  const queryStart = url.indexOf("?")
  const segments = (queryStart === -1 ? url : url.slice(0, queryStart)).split("/").slice(1)
  const candidates = routes.get(`${method === "" ? "GET" : method.toUpperCase()} ${segments.length}`)
  if (candidates === undefined) return undefined
  for (const route of candidates) {
    if (route.literals.every((literal, i) => literal === undefined ? segments[i] !== "" : literal === segments[i])) {
      return route.template
    }
  }
  return undefined
}
