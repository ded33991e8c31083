/**
 * The listener Asterisk dials when `ari.conf` has `type=outbound_websocket` (docs/asterisk.md): a
 * websocket server on `outbound_websocket.host`/`port`, over TLS when a key and certificate are
 * configured. Asterisk sends a plain `GET <path>` with Basic credentials and offers the `ari`
 * subprotocol; anything else is refused before the upgrade (a wrong path 404, wrong credentials 401).
 *
 * Each accepted socket is handed to `accept`, which returns where its frames go. Frames are handed
 * over synchronously, in order, on the `ws` callback, and the socket is NEVER paused: Asterisk 23.4.1
 * drops an outbound socket whose reader stops reading, and once crashed doing so (ari-modes §1.7).
 * Whoever consumes the frames queues them on their own side.
 *
 * Asterisk never pings; it answers pings. One fiber pings every socket every `pingIntervalMs` (on
 * Effect's Clock) and terminates one from which nothing arrived during an interval.
 */
import { createHash, timingSafeEqual } from "node:crypto"
import { readFileSync } from "node:fs"
import { createServer as createHttpServer, type IncomingMessage, type Server } from "node:http"
import { createServer as createHttpsServer } from "node:https"
import type { Duplex } from "node:stream"
import { Effect, Redacted, Runtime, Schema } from "effect"
import WebSocket, { WebSocketServer } from "ws"
import { frameText } from "./socket.js"

export class OutboundListenError extends Schema.TaggedError<OutboundListenError>()("OutboundListenError", {
  message: Schema.String
}) {}

export interface OutboundListenerOptions {
  readonly host: string
  readonly port: number
  /** The only path accepted; the query Asterisk sends (as configured in its `uri`) is ignored. */
  readonly path: string
  readonly username: string
  readonly password: Redacted.Redacted<string>
  /** PEM files; with them the listener speaks TLS (`wss://`). */
  readonly tls?: { readonly cert: string; readonly key: string } | undefined
  readonly pingIntervalMs: number
}

/** One socket Asterisk opened to the proxy. */
export interface OutboundConnection {
  /** Numbers the listener's connections from 1, for logs. */
  readonly id: number
  /** `address:port` of Asterisk's side. */
  readonly remote: string
  /** Writes a text frame; false when the socket is no longer open. */
  readonly send: (frame: string) => boolean
  /** Closes the socket (a close frame, then the TCP stream). */
  readonly close: (code: number, reason: string) => void
}

/** Where one connection's frames go, and who hears of its end. */
export interface OutboundConnectionHandler {
  readonly onFrame: (frame: string) => void
  readonly onClose: (reason: string) => void
}

export interface OutboundListenerShape {
  /** The port listened on (the configured one, or the one the system chose for 0). */
  readonly port: number
  /** `ws://host:port/path` (or `wss://`), as logged. */
  readonly url: string
  /** Connections open now. */
  readonly openConnections: () => number
}

/** The credentials of an `Authorization: Basic` header equal the configured ones (in constant time). */
const basicCredentialsMatch = (header: string | undefined, expected: Buffer): boolean => {
  if (header === undefined || !header.startsWith("Basic ")) return false
  const given = Buffer.from(header.slice("Basic ".length).trim(), "base64")
  // digests have one length whatever was sent, so the comparison leaks nothing about the length
  const digest = (value: Buffer) => createHash("sha256").update(value).digest()
  return timingSafeEqual(digest(given), digest(expected))
}

const refuseUpgrade = (socket: Duplex, status: number, reason: string, extraHeaders: ReadonlyArray<string> = []) => {
  const head = [`HTTP/1.1 ${status} ${reason}`, ...extraHeaders, "Content-Length: 0", "Connection: close", "", ""]
  socket.end(head.join("\r\n"))
  socket.destroy()
}

const describeClose = (code: number, reason: Buffer): string => {
  if (code === 1006) return "connection lost (1006)"
  const text = reason.length > 0 ? `: ${reason.toString("utf8").slice(0, 120)}` : ""
  return `closed by Asterisk (${code}${text})`
}

const closeTimeoutMs = 1_000

interface Live {
  readonly ws: WebSocket
  readonly handler: OutboundConnectionHandler
  heardFrom: boolean
}

export const makeOutboundListener = (
  options: OutboundListenerOptions,
  accept: (connection: OutboundConnection) => OutboundConnectionHandler
) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const runSync = Runtime.runSync(runtime)
    const expected = Buffer.from(`${options.username}:${Redacted.value(options.password)}`, "utf8")
    const scheme = options.tls === undefined ? "ws" : "wss"

    const tlsFiles = options.tls
    const server: Server = tlsFiles === undefined
      ? createHttpServer()
      : yield* Effect.try({
        try: () => createHttpsServer({ cert: readFileSync(tlsFiles.cert), key: readFileSync(tlsFiles.key) }),
        catch: (error) =>
          new OutboundListenError({
            message: `outbound_websocket.tls: ${error instanceof Error ? error.message : String(error)}`
          })
      })
    // Asterisk accepts the `ari` subprotocol selected or not (ari-modes §1.2); selecting it is the usual answer.
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      handleProtocols: (protocols) => protocols.has("ari") ? "ari" : false
    })
    const live = new Set<Live>()
    let nextId = 0
    // One warning per distinct refusal; Asterisk retries every reconnect_interval, forever.
    let lastRefusal: string | undefined

    const refused = (request: IncomingMessage, socket: Duplex, status: number, phrase: string, why: string) => {
      const message = `refused a websocket from ${request.socket.remoteAddress ?? "?"}: ${why}`
      runSync(why === lastRefusal ? Effect.logDebug(message) : Effect.logWarning(message))
      lastRefusal = why
      refuseUpgrade(socket, status, phrase, status === 401 ? ["WWW-Authenticate: Basic realm=\"ari-proxy\""] : [])
    }

    const attach = (ws: WebSocket, request: IncomingMessage) => {
      const id = ++nextId
      const remote = `${request.socket.remoteAddress ?? "?"}:${request.socket.remotePort ?? "?"}`
      let closeReason: string | undefined
      const connection: OutboundConnection = {
        id,
        remote,
        send: (frame) => {
          if (ws.readyState !== WebSocket.OPEN) return false
          ws.send(frame)
          return true
        },
        close: (code, reason) => ws.close(code, reason)
      }
      const handler = accept(connection)
      const entry: Live = { ws, handler, heardFrom: true }
      live.add(entry)
      ws.on("message", (data, isBinary) => {
        entry.heardFrom = true
        if (isBinary) return // ARI only sends text
        const frame = frameText(data)
        try {
          handler.onFrame(frame)
        } catch (error) {
          runSync(Effect.logError("ARI frame consumer threw; frame skipped", error))
        }
      })
      ws.on("pong", () => {
        entry.heardFrom = true
      })
      ws.on("error", (error) => {
        closeReason ??= error.message
      })
      ws.on("close", (code, reason) => {
        live.delete(entry)
        handler.onClose(closeReason ?? describeClose(code, reason))
      })
    }

    server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on("error", () => socket.destroy())
      const path = (request.url ?? "/").split("?", 1)[0]
      if (path !== options.path) return refused(request, socket, 404, "Not Found", `path ${path} is not ${options.path}`)
      if (!basicCredentialsMatch(request.headers.authorization, expected)) {
        return refused(request, socket, 401, "Unauthorized", "wrong or missing credentials")
      }
      lastRefusal = undefined
      wss.handleUpgrade(request, socket, head, (ws) => attach(ws, request))
    })
    server.on("request", (_request, response) => {
      response.writeHead(426, { "Content-Type": "text/plain", Connection: "close" })
      response.end("a websocket for Asterisk's outbound ARI connection\n")
    })

    const port = yield* Effect.async<number, OutboundListenError>((resume) => {
      const onError = (error: Error) =>
        resume(Effect.fail(new OutboundListenError({ message: `cannot listen on ${options.host}:${options.port}: ${error.message}` })))
      server.once("error", onError)
      server.listen(options.port, options.host, () => {
        server.off("error", onError)
        const address = server.address()
        resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : options.port))
      })
    })
    const hostForUrl = options.host.includes(":") ? `[${options.host}]` : options.host
    const url = `${scheme}://${hostForUrl}:${port}${options.path}`

    const closeAll = Effect.async<void>((done) => {
      // No new socket first: Asterisk dials again 3 ms after a close (ari-modes §1.4).
      server.close()
      if (live.size === 0) return done(Effect.void)
      let open = live.size
      for (const { ws } of live) {
        ws.once("close", () => {
          if (--open === 0) done(Effect.void)
        })
        ws.close(1000, "ari-proxy shutting down")
      }
    }).pipe(
      Effect.interruptible,
      Effect.timeout(closeTimeoutMs),
      Effect.ignore,
      Effect.ensuring(Effect.sync(() => {
        for (const { ws } of live) ws.terminate()
        server.closeAllConnections()
        wss.close()
      })),
      Effect.zipRight(Effect.logInfo("outbound ARI listener closed", { url }))
    )
    yield* Effect.addFinalizer(() => closeAll)

    const checkAlive = Effect.sync(() => {
      for (const entry of live) {
        if (!entry.heardFrom) {
          entry.ws.terminate()
          continue
        }
        entry.heardFrom = false
        entry.ws.ping()
      }
    })
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(options.pingIntervalMs), checkAlive)))
    yield* Effect.logInfo("listening for Asterisk's outbound ARI websockets", { url })

    return { port, url, openConnections: () => live.size } satisfies OutboundListenerShape
  })
