/**
 * Several proxies for one Asterisk (`stasis_broadcast`). The dialplan offers each call with
 * `StasisBroadcast`: every application matching its filter gets a CallBroadcast, and the first
 * `POST /events/claim` wins the call, whose StasisStart then goes to the application the claim names.
 * Two proxies cannot register the same application name (the second would take it over), so each
 * registers `application_name` (`<app>-<server_id>` by default) and claims under that name.
 *
 * The bus clients keep knowing the application by its own name: frames from Asterisk are renamed
 * back before routing (their `application` field; dialogs, topics and `ari_body` use the bus name),
 * and a command naming the application (`app=`, `application=`, `/applications/<app>`) is renamed
 * to the registered name before it goes to Asterisk.
 */
import { Effect } from "effect"
import type { AriReply, AriRequest, AriRestShape, OnAriReply } from "./rest.js"

/** The name `template` gives `application` at Asterisk for the proxy `serverId`. */
export const broadcastApplicationName = (template: string, application: string, serverId: string): string =>
  template.replaceAll("{app}", application).replaceAll("{server_id}", serverId)

/** What is wrong with the names `template` gives (empty: nothing). */
export const broadcastNameProblems = (
  template: string,
  applications: ReadonlyArray<string>,
  serverId: string
): Array<string> => {
  const problems: Array<string> = []
  if (applications.length > 1 && !template.includes("{app}")) {
    problems.push(`must contain {app}: it names each of the ${applications.length} applications (got ${template})`)
  }
  for (const application of applications) {
    const name = broadcastApplicationName(template, application, serverId)
    if (name === application) {
      problems.push(`gives ${application} its own name: another proxy registering it would take it over ` +
        "(use {server_id} or another suffix)")
    } else if (/[\s,]/.test(name)) {
      problems.push(`gives ${JSON.stringify(name)} for ${application}: an ARI application name has no commas or spaces`)
    }
  }
  return problems
}

/** The names of the applications at Asterisk, and the renaming between them and the bus names. */
export interface BroadcastNames {
  /** The registered names, in the order of `applications`. */
  readonly registered: ReadonlyArray<string>
  /** The registered name of a bus application (itself if not one of ours). */
  readonly atAsterisk: (application: string) => string
  /** The bus name of a registered one (itself if not one of ours). */
  readonly onBus: (registered: string) => string
  /** The frame with its top-level `application` renamed to the bus name. */
  readonly frameOnBus: (frame: string) => string
  /** The command with the application names it carries renamed to the registered names. */
  readonly commandAtAsterisk: (request: AriRequest) => AriRequest
}

const applicationParameters: ReadonlySet<string> = new Set(["app", "application"])

const decodeQueryPart = (text: string): string | undefined => {
  try {
    return decodeURIComponent(text.replaceAll("+", " "))
  } catch {
    return undefined
  }
}

export const makeBroadcastNames = (
  template: string,
  applications: ReadonlyArray<string>,
  serverId: string
): BroadcastNames => {
  const registered = applications.map((application) => broadcastApplicationName(template, application, serverId))
  const toRegistered = new Map(applications.map((application, i) => [application, registered[i]!]))
  const toBus = new Map(registered.map((name, i) => [name, applications[i]!]))
  // Asterisk writes `application` last (or second, or before asterisk_id) at the top level; a nested
  // object naming it comes earlier, so the last occurrence is the event's own.
  const frameRenames = registered.map((name, i) =>
    [`"application":${JSON.stringify(name)}`, `"application":${JSON.stringify(applications[i])}`] as const
  )

  const renameQuery = (query: string): string =>
    query.split("&").map((part) => {
      const eq = part.indexOf("=")
      if (eq < 0) return part
      const name = decodeQueryPart(part.slice(0, eq))
      const value = decodeQueryPart(part.slice(eq + 1))
      if (name === undefined || value === undefined || !applicationParameters.has(name)) return part
      const renamed = toRegistered.get(value)
      return renamed === undefined ? part : `${part.slice(0, eq)}=${encodeURIComponent(renamed)}`
    }).join("&")

  const renamePath = (path: string): string => {
    const match = /^\/applications\/([^/]+)(.*)$/.exec(path)
    if (match === null) return path
    const name = decodeQueryPart(match[1]!)
    const renamed = name === undefined ? undefined : toRegistered.get(name)
    return renamed === undefined ? path : `/applications/${encodeURIComponent(renamed)}${match[2]}`
  }

  const renameBody = (body: string): string => {
    let parsed: unknown
    try {
      parsed = JSON.parse(body)
    } catch {
      return body
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return body
    const fields = parsed as Record<string, unknown>
    let changed = false
    for (const name of applicationParameters) {
      const value = fields[name]
      const renamed = typeof value === "string" ? toRegistered.get(value) : undefined
      if (renamed !== undefined) {
        fields[name] = renamed
        changed = true
      }
    }
    return changed ? JSON.stringify(fields) : body
  }

  return {
    registered,
    atAsterisk: (application) => toRegistered.get(application) ?? application,
    onBus: (name) => toBus.get(name) ?? name,
    frameOnBus: (frame) => {
      for (const [from, to] of frameRenames) {
        const at = frame.lastIndexOf(from)
        if (at >= 0) return frame.slice(0, at) + to + frame.slice(at + from.length)
      }
      return frame
    },
    commandAtAsterisk: (request) => {
      // Most commands name no application: leave them as they are, unparsed.
      if (!request.url.includes("app") && !request.body.includes("app")) return request
      const question = request.url.indexOf("?")
      const path = question < 0 ? request.url : request.url.slice(0, question)
      const url = question < 0 ? renamePath(path) : `${renamePath(path)}?${renameQuery(request.url.slice(question + 1))}`
      const body = request.body.includes("app") ? renameBody(request.body) : request.body
      return url === request.url && body === request.body ? request : { ...request, url, body }
    }
  }
}

/** What became of the calls offered to this proxy. */
export interface ClaimCounters {
  /** Claimed: the call's StasisStart comes to this proxy. */
  won: number
  /** Another proxy had claimed it (409). */
  lost: number
  /** The offer had ended (404: its timeout passed, or the caller hung up). */
  late: number
  /** Anything else: ARI trouble, a refusal. */
  failed: number
  /** Not claimed because this proxy was not ready (draining, ARI or the bus down, starting). */
  declined: number
}

export const makeClaimCounters = (): ClaimCounters => ({ won: 0, lost: 0, late: 0, failed: 0, declined: 0 })

export interface BroadcastClaimer {
  /** A CallBroadcast arrived for `application` (its bus name): claim the call if this proxy is ready. */
  readonly offered: (application: string, channelId: string) => void
  readonly counters: ClaimCounters
}

export const makeBroadcastClaimer = (options: {
  readonly names: BroadcastNames
  readonly request: AriRestShape["request"]
  /** Whether the proxy may take a call now. */
  readonly ready: () => boolean
  /** Runs a log line (claims are answered on callbacks, outside any fiber). */
  readonly log: (line: Effect.Effect<void>) => void
}): BroadcastClaimer => {
  const counters = makeClaimCounters()
  const { log } = options
  const answered = (channelId: string, application: string): OnAriReply => (reply: AriReply, trouble) => {
    switch (reply.status) {
      case 204:
        counters.won++
        return
      case 409:
        counters.lost++
        return log(Effect.logDebug("another proxy claimed the call", { channel_id: channelId, application }))
      case 404:
        counters.late++
        return log(Effect.logWarning("claimed a call no longer on offer (StasisBroadcast timeout too short?)", {
          channel_id: channelId,
          application
        }))
      default:
        counters.failed++
        return log(Effect.logWarning("could not claim a call", {
          channel_id: channelId,
          application,
          status: reply.status,
          answer: trouble ?? reply.body
        }))
    }
  }
  return {
    counters,
    offered: (application, channelId) => {
      if (!options.ready()) {
        counters.declined++
        return log(Effect.logDebug("not ready: leaving a call offered to another proxy", { channel_id: channelId, application }))
      }
      const registered = options.names.atAsterisk(application)
      options.request({
        method: "POST",
        url: `/events/claim?channelId=${encodeURIComponent(channelId)}&application=${encodeURIComponent(registered)}`,
        body: ""
      }, answered(channelId, application))
    }
  }
}
