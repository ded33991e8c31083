/**
 * HTTP details of Asterisk's built-in server: header names and order (`Content-type` with a lower-case t),
 * reason phrases, authentication, HTML error pages and request parameter merging.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Duplex } from "node:stream"
import type { Credentials } from "./options.js"

export const serverHeader = "Asterisk/23.4.1"

export interface Reply {
  readonly status: number
  readonly reason?: string
  /** Serialized as compact JSON; absent for 204. */
  readonly body?: unknown
  readonly location?: string
  readonly allow?: string
  readonly wwwAuthenticate?: boolean
}

const standardReasons: Readonly<Record<number, string>> = {
  200: "OK",
  201: "Created",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  412: "Precondition Failed",
  422: "Unprocessable Entity",
  426: "Upgrade Required",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable"
}

export const reasonFor = (status: number) => standardReasons[status] ?? "Unknown"

export const ok = (body: unknown): Reply => ({ status: 200, body })
export const noContent = (): Reply => ({ status: 204 })

export const sendReply = (res: ServerResponse, reply: Reply): void => {
  // headers in Asterisk's order, with its exact spelling
  res.sendDate = false
  res.setHeader("Server", serverHeader)
  res.setHeader("Date", new Date().toUTCString())
  res.setHeader("Cache-Control", "no-cache, no-store")
  if (reply.wwwAuthenticate === true) res.setHeader("WWW-Authenticate", "Basic realm=\"Asterisk REST Interface\"")
  if (reply.allow !== undefined) res.setHeader("Allow", reply.allow)
  if (reply.location !== undefined) res.setHeader("Location", reply.location)
  const payload = reply.body === undefined ? "" : JSON.stringify(reply.body)
  if (reply.body !== undefined) res.setHeader("Content-type", "application/json")
  res.setHeader("Content-Length", Buffer.byteLength(payload))
  res.writeHead(reply.status, reply.reason ?? reasonFor(reply.status))
  res.end(payload)
}

/** Asterisk's HTML error page (ast_http_error). */
export const htmlErrorPage = (status: number, title: string, text: string): string =>
  "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\r\n" +
  `<html><head>\r\n<title>${status} ${title}</title>\r\n</head><body>\r\n` +
  `<h1>${title}</h1>\r\n<p>${text}</p>\r\n<hr />\r\n<address>Asterisk Server</address>\r\n</body></html>\r\n`

export const sendHtmlError = (res: ServerResponse, status: number, title: string, text: string): void => {
  const body = htmlErrorPage(status, title, text)
  res.sendDate = false
  res.setHeader("Server", serverHeader)
  res.setHeader("Date", new Date().toUTCString())
  res.setHeader("Cache-Control", "no-cache, no-store")
  res.setHeader("Content-Length", Buffer.byteLength(body))
  res.setHeader("Content-type", "text/html")
  res.writeHead(status, title)
  res.end(body)
}

/** Answers a websocket upgrade attempt with a plain HTTP error and closes the socket. */
export const rejectUpgrade = (
  socket: Duplex,
  status: number,
  title: string,
  contentType: string,
  body: string,
  extraHeaders: ReadonlyArray<string> = []
): void => {
  const head = [
    `HTTP/1.1 ${status} ${title}`,
    `Server: ${serverHeader}`,
    `Date: ${new Date().toUTCString()}`,
    "Connection: close",
    "Cache-Control: no-cache, no-store",
    ...extraHeaders,
    `Content-Length: ${Buffer.byteLength(body)}`,
    `Content-type: ${contentType}`
  ]
  socket.end(head.join("\r\n") + "\r\n\r\n" + body)
}

/** ARI accepts `api_key=user:pass` in the query or HTTP Basic credentials. */
export const isAuthorized = (req: IncomingMessage, query: URLSearchParams, credentials: Credentials): boolean => {
  const expected = `${credentials.username}:${credentials.password}`
  const apiKey = query.get("api_key")
  if (apiKey !== null) return apiKey === expected
  const header = req.headers.authorization
  if (header === undefined || !header.startsWith("Basic ")) return false
  return Buffer.from(header.slice(6).trim(), "base64").toString("utf8") === expected
}

export const authRequired: Reply = {
  status: 401,
  body: { message: "Authentication required" },
  wwwAuthenticate: true
}

/** A path's non-empty segments, each percent-decoded (kept as written where the encoding is malformed). */
export const pathSegments = (path: string): Array<string> =>
  path.split("/").filter((segment) => segment !== "").map((segment) => {
    try {
      return decodeURIComponent(segment)
    } catch {
      return segment
    }
  })

export const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

/**
 * Request parameters as ARI sees them: form fields of the body, then the query string (later values
 * win), then the fields of a JSON body. The JSON body itself is kept for `variables`.
 */
export class Params {
  constructor(
    private readonly values: Map<string, Array<string>>,
    readonly json: Readonly<Record<string, unknown>> | undefined,
    /** A JSON body of any shape (an array too); undefined without one. */
    readonly body: unknown = undefined
  ) {}

  static parse(query: URLSearchParams, contentType: string | undefined, rawBody: string): Params | "malformed" {
    const values = new Map<string, Array<string>>()
    const add = (key: string, value: string) => {
      const list = values.get(key)
      if (list === undefined) values.set(key, [value])
      else list.push(value)
    }
    const type = (contentType ?? "").split(";")[0]?.trim().toLowerCase()
    if (type === "application/x-www-form-urlencoded" && rawBody !== "") {
      for (const [key, value] of new URLSearchParams(rawBody)) add(key, value)
    }
    for (const [key, value] of query) add(key, value)
    let json: Record<string, unknown> | undefined
    let parsed: unknown
    if (type === "application/json" && rawBody.trim() !== "") {
      try {
        parsed = JSON.parse(rawBody)
      } catch {
        return "malformed"
      }
      if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
        json = parsed as Record<string, unknown>
        for (const [key, value] of Object.entries(json)) {
          if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") {
            values.set(key, [String(value)])
          } else if (Array.isArray(value)) {
            values.set(key, value.map(String))
          }
        }
      }
    }
    return new Params(values, json, parsed)
  }

  get(name: string): string | undefined {
    const list = this.values.get(name)
    return list === undefined ? undefined : list[list.length - 1]
  }

  /** A comma separated or repeated parameter (`channel=a,b` or `media=x&media=y`). */
  list(name: string): Array<string> {
    return (this.values.get(name) ?? []).flatMap((v) => v.split(",")).filter((v) => v !== "")
  }

  /** Loose integer parsing, as Asterisk's atoi: `notanumber` is 0. */
  int(name: string): number | undefined {
    const value = this.get(name)
    if (value === undefined) return undefined
    const parsed = Number.parseInt(value, 10)
    return Number.isNaN(parsed) ? 0 : parsed
  }

  all(): Record<string, string | Array<string>> {
    const out: Record<string, string | Array<string>> = {}
    for (const [key, list] of this.values) out[key] = list.length === 1 ? (list[0] ?? "") : [...list]
    return out
  }
}
