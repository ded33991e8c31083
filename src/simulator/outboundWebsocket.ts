/**
 * Asterisk dialling out: `ari.conf` `type=outbound_websocket` with its `websocket_client.conf`
 * client, as ari-modes.md §1 records Asterisk 23.4.1 doing it.
 *
 * - The upgrade is a plain `GET` of the configured path and query, Basic credentials, the `ari`
 *   subprotocol offered, no Origin and no User-Agent; the server may select `ari` or not; any other
 *   answer than 101 is a failed attempt.
 * - `persistent`: connects at once; after a drop it dials again at once, then every
 *   `reconnectIntervalMs`, forever. While it is down its apps stay registered, calls still enter Stasis,
 *   and their events are queued and sent first when it is back, then ApplicationRegistered.
 * - `per_call_config`: no socket until a call enters `Stasis(app)`; then one socket for that call,
 *   app `<app>:<channel name>`, ApplicationRegistered first, StasisStart `perCallStartDelayMs` later
 *   (Asterisk polls every 500 ms), closed with 1000 `perCallCloseDelayMs` after StasisEnd (3 s for late
 *   events plus the poll), no ApplicationUnregistered. A server it cannot reach after
 *   `reconnectAttempts` tries, `reconnectIntervalMs` apart, sends the call on with STASISSTATUS=FAILED.
 *   A socket the server closes during the call is dialled again at once.
 */
import type { Socket } from "node:net"
import { WebSocket } from "ws"
import { setVariable } from "./engine/channels.js"
import type { Engine } from "./engine/core.js"
import { runDialplan } from "./engine/dialplan.js"
import { channelSnapshot } from "./state.js"
import type { AppHub } from "./websocket.js"

export interface OutboundWebsocketConfig {
  /** `websocket_client.conf` `uri`, e.g. `ws://127.0.0.1:8090/ari/out?node=ast1`. */
  readonly uri: string
  /** `ari.conf` `apps`: the apps this socket serves. */
  readonly apps: ReadonlyArray<string>
  readonly connectionType: "persistent" | "per_call_config"
  readonly username?: string
  readonly password?: string
  /** Asterisk's default 500. */
  readonly reconnectIntervalMs?: number
  /** Asterisk's default 4 (per_call_config gives up after them; persistent only logs). */
  readonly reconnectAttempts?: number
  /** Asterisk's default 500. */
  readonly connectionTimeoutMs?: number
  /** `wss://`: check the server's certificate (Asterisk's `verify_server_cert`, default yes). */
  readonly verifyServerCert?: boolean
  /** per_call_config: from the socket's opening to StasisStart (Asterisk: about 500). */
  readonly perCallStartDelayMs?: number
  /** per_call_config: from StasisEnd to the close (Asterisk: about 3500). */
  readonly perCallCloseDelayMs?: number
}

/** One `type=outbound_websocket` of the simulated Asterisk. */
export interface OutboundWebsocketHandle {
  /** Sockets opened so far (every upgrade answered 101). */
  readonly connections: () => number
  /** Attempts that failed (refused, wrong answer, unreachable). */
  readonly failedAttempts: () => number
  /** Whether a persistent socket is open now (false once its end is seen: events are queued from then on). */
  readonly connected: () => boolean
  /**
   * A network outage of `forMs`: the open persistent socket drops without a close frame and every
   * attempt to dial fails until it is over; Asterisk queues the apps' events meanwhile.
   */
  readonly outage: (forMs: number) => void
  /** `ari shutdown websocket session`: ApplicationUnregistered, close 1000, no more dialling. */
  readonly shutdown: () => void
  /** `ari start outbound-websocket`: dials again after a shutdown. */
  readonly start: () => void
  /** The simulator stops: no more dialling, the socket is dropped. */
  readonly close: () => void
}

const basicAuthorization = (config: OutboundWebsocketConfig): Record<string, string> =>
  config.username === undefined
    ? {}
    : { Authorization: "Basic " + Buffer.from(`${config.username}:${config.password ?? ""}`).toString("base64") }

interface Dialled {
  readonly ws: WebSocket
  /** Resolves with the TCP socket once the upgrade is answered 101, or undefined when the attempt failed. */
  readonly opened: Promise<Socket | undefined>
}

/** One attempt: the upgrade as Asterisk sends it. */
const dial = (config: OutboundWebsocketConfig): Dialled => {
  const ws = new WebSocket(config.uri, {
    // offered by hand: ws would refuse a server that selects nothing when given `protocols`
    headers: { ...basicAuthorization(config), "Sec-WebSocket-Protocol": "ari" },
    perMessageDeflate: false,
    skipUTF8Validation: true,
    followRedirects: false,
    handshakeTimeout: config.connectionTimeoutMs ?? 500,
    rejectUnauthorized: config.verifyServerCert ?? true
  })
  let socket: Socket | undefined
  ws.on("upgrade", (response) => {
    socket = response.socket as Socket
    if (response.headers["sec-websocket-protocol"] === "ari") delete response.headers["sec-websocket-protocol"]
  })
  const opened = new Promise<Socket | undefined>((resolve) => {
    ws.once("open", () => resolve(socket))
    ws.once("close", () => resolve(undefined))
    ws.on("error", () => resolve(undefined))
  })
  return { ws, opened }
}

export const startOutboundWebsocket = (
  engine: Engine,
  hub: AppHub,
  config: OutboundWebsocketConfig
): OutboundWebsocketHandle => {
  const intervalMs = config.reconnectIntervalMs ?? 500
  const attempts = Math.max(1, config.reconnectAttempts ?? 4)
  let connections = 0
  let failedAttempts = 0
  let stopped = false
  let persistent: WebSocket | undefined
  let unreachableUntil = 0

  const persistentLoop = () => {
    if (stopped) return
    if (Date.now() < unreachableUntil) {
      failedAttempts++
      engine.later(intervalMs, persistentLoop)
      return
    }
    const { opened, ws } = dial(config)
    void opened.then((socket) => {
      if (socket === undefined || stopped) {
        failedAttempts++
        ws.terminate()
        if (!stopped) engine.later(intervalMs, persistentLoop)
        return
      }
      connections++
      persistent = ws
      hub.attachOutbound(ws, socket, config.apps, { _tag: "Persistent" })
      // a dropped socket is dialled again at once (3 ms in the capture), a refused one after the interval
      ws.once("close", () => {
        if (persistent === ws) persistent = undefined
        if (!stopped) engine.later(3, persistentLoop)
      })
    })
  }

  /** The per-call socket of `channelId`'s Stasis(app): StasisStart once it is open, FAILED if it never opens. */
  const perCallStasis = (channelId: string, app: string, args: ReadonlyArray<string>) => {
    const channel = engine.channels.get(channelId)
    if (channel === undefined) return
    const appName = `${app}:${channel.name}`
    let started = false
    let closing = false
    let tries = 0
    const attempt = () => {
      if (!engine.alive(channel)) return
      tries++
      const { opened, ws } = dial(config)
      void opened.then((socket) => {
        if (socket === undefined) {
          failedAttempts++
          ws.terminate()
          if (started) engine.later(intervalMs, attempt)
          else if (tries < attempts) engine.later(intervalMs, attempt)
          else giveUp()
          return
        }
        connections++
        hub.attachOutbound(ws, socket, [appName], {
          _tag: "PerCall",
          onStasisEnd: () => {
            closing = true
            engine.later(config.perCallCloseDelayMs ?? 3500, () => ws.close(1000))
          }
        })
        // the server closed it during the call: Asterisk dials again at once (ari-modes §1.6)
        ws.once("close", () => {
          if (!closing && engine.alive(channel)) engine.later(3, attempt)
        })
        if (started) return
        started = true
        engine.later(config.perCallStartDelayMs ?? 500, () => {
          if (!engine.alive(channel)) return
          channel.stasisApp = appName
          hub.deliver(engine.ev.stasisStart(channelSnapshot(channel), args), [appName])
        })
      })
    }
    // Asterisk: "failed after N tries … Hanging up after exhausting retries", yet the call goes on in the dialplan
    const giveUp = () => {
      if (!engine.alive(channel)) return
      setVariable(engine, channel, "STASISSTATUS", "FAILED")
      const { context, exten, priority } = channel.dialplan
      runDialplan(engine, channel, context, exten, priority + 1)
    }
    attempt()
  }

  const start = () => {
    stopped = false
    if (config.connectionType === "persistent") {
      hub.registerOutbound(config.apps)
      persistentLoop()
    }
    else for (const app of config.apps) hub.perCallApps.set(app, perCallStasis)
  }
  start()

  return {
    connections: () => connections,
    failedAttempts: () => failedAttempts,
    // until the socket's end is seen, events are written into it and lost, as Asterisk's failing writes are
    connected: () => persistent !== undefined,
    outage: (forMs) => {
      unreachableUntil = Date.now() + forMs
      persistent?.terminate()
    },
    shutdown: () => {
      stopped = true
      if (config.connectionType === "persistent") hub.shutdownOutbound(config.apps)
      else for (const app of config.apps) hub.perCallApps.delete(app)
    },
    start,
    close: () => {
      stopped = true
      persistent?.terminate()
    }
  }
}
