/**
 * The event websocket side: which applications are registered (one socket per application, as in
 * Asterisk), delivery of events to them, the per-app event log, and the high-rate flood writer.
 */
import type { IncomingMessage } from "node:http"
import type { Duplex } from "node:stream"
import { WebSocket, WebSocketServer } from "ws"
import { addressEvent } from "./events.js"
import type { EventBuilders, SimEvent } from "./events.js"
import type { ChannelSnapshot } from "./state.js"
import { nowStamp } from "./state.js"

export type EventListener = (app: string, event: Readonly<Record<string, unknown>>) => void

interface Connection {
  readonly ws: WebSocket
  readonly socket: Duplex
  readonly apps: ReadonlyArray<string>
  readonly subscribeAll: boolean
}

export interface Registration {
  readonly name: string
  readonly connection: Connection
  readonly subscribeAll: boolean
  readonly endpointIds: Set<string>
  readonly deviceNames: Set<string>
}

export interface FloodResult {
  readonly sent: number
  readonly elapsedMs: number
}

export class AppHub {
  readonly registrations = new Map<string, Registration>()
  private readonly connections = new Set<Connection>()
  private readonly eventLog = new Map<string, Array<Readonly<Record<string, unknown>>>>()
  private readonly listeners = new Set<EventListener>()
  private subscribeAllCache: ReadonlyArray<string> | undefined
  readonly server: WebSocketServer
  /** "refuse" drops every upgrade attempt (for reconnect tests). */
  mode: "accept" | "refuse" = "accept"

  constructor(private readonly builders: EventBuilders, private readonly recordLogs: boolean) {
    // Asterisk selects no subprotocol even when the client offers `ari`; ws would pick the first one.
    this.server = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handleProtocols: () => false
    })
  }

  isRegistered(app: string): boolean {
    return this.registrations.has(app)
  }

  /** Applications connected with `subscribeAll=true`: they see every event. */
  subscribeAllApps(): ReadonlyArray<string> {
    if (this.subscribeAllCache === undefined) {
      this.subscribeAllCache = [...this.registrations.values()].filter((r) => r.subscribeAll).map((r) => r.name)
    }
    return this.subscribeAllCache
  }

  /** Sends one event to each of `apps` that has a socket; other apps are unknown to Asterisk and get nothing. */
  deliver(event: SimEvent, apps: Iterable<string>): void {
    const seen = new Set<string>()
    for (const app of apps) {
      if (seen.has(app)) continue
      seen.add(app)
      const registration = this.registrations.get(app)
      if (registration === undefined) continue
      const addressed = addressEvent(event, app)
      registration.connection.ws.send(JSON.stringify(addressed))
      this.record(app, addressed)
    }
  }

  private record(app: string, event: Readonly<Record<string, unknown>>): void {
    if (this.recordLogs) {
      let log = this.eventLog.get(app)
      if (log === undefined) {
        log = []
        this.eventLog.set(app, log)
      }
      log.push(event)
    }
    for (const listener of this.listeners) listener(app, event)
  }

  events(app?: string): ReadonlyArray<Readonly<Record<string, unknown>>> {
    if (app !== undefined) return [...(this.eventLog.get(app) ?? [])]
    return [...this.eventLog.values()].flat()
  }

  clearEvents(): void {
    this.eventLog.clear()
  }

  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener)
    return () => {
      this.listeners.delete(listener)
    }
  }

  /** Completes an upgrade already authorised by the HTTP layer. */
  accept(request: IncomingMessage, socket: Duplex, head: Buffer, apps: ReadonlyArray<string>, subscribeAll: boolean) {
    if (this.mode === "refuse") {
      socket.destroy()
      return
    }
    this.server.handleUpgrade(request, socket, head, (ws) => this.attach(ws, socket, apps, subscribeAll))
  }

  private attach(ws: WebSocket, socket: Duplex, apps: ReadonlyArray<string>, subscribeAll: boolean): void {
    const connection: Connection = { ws, socket, apps, subscribeAll }
    this.connections.add(connection)
    const replaced = new Set<Connection>()
    for (const app of apps) {
      const previous = this.registrations.get(app)
      if (previous !== undefined && previous.connection !== connection) {
        // Asterisk tells the old socket it lost the application before dropping it
        const addressed = addressEvent(this.builders.applicationReplaced(), app)
        previous.connection.ws.send(JSON.stringify(addressed))
        replaced.add(previous.connection)
      }
      this.registrations.set(app, {
        name: app,
        connection,
        subscribeAll,
        endpointIds: previous?.endpointIds ?? new Set(),
        deviceNames: previous?.deviceNames ?? new Set()
      })
    }
    this.subscribeAllCache = undefined
    for (const old of replaced) {
      this.unregister(old)
      old.ws.close(1000)
    }
    ws.on("close", () => this.unregister(connection))
    ws.on("error", () => this.unregister(connection))
    // Asterisk ignores what clients send on the event socket
    ws.on("message", () => {})
  }

  private unregister(connection: Connection): void {
    this.connections.delete(connection)
    for (const app of connection.apps) {
      if (this.registrations.get(app)?.connection === connection) this.registrations.delete(app)
    }
    this.subscribeAllCache = undefined
  }

  /** Drops every websocket abruptly (no close frame), as a crashed or unreachable Asterisk would. */
  dropAll(): number {
    const all = [...this.connections]
    for (const connection of all) {
      this.unregister(connection)
      connection.ws.terminate()
    }
    return all.length
  }

  connectedApps(): ReadonlyArray<string> {
    return [...this.registrations.keys()]
  }

  /**
   * Writes `count` ChannelDtmfReceived frames to `app` as fast as possible, each with an increasing
   * `x_seq` so receivers can check order. The frame text is precomputed; only the sequence number and
   * the (per-millisecond) timestamp change. Resolves once the last frame is handed to the kernel.
   */
  flood(app: string, count: number, channel: ChannelSnapshot, asteriskId: string): Promise<FloodResult> {
    const registration = this.registrations.get(app)
    if (registration === undefined) return Promise.reject(new Error(`application ${app} has no websocket`))
    const { socket, ws } = registration.connection
    const head = "{\"type\":\"ChannelDtmfReceived\",\"timestamp\":\""
    const middle = "\",\"digit\":\"1\",\"duration_ms\":100,\"x_seq\":"
    const tail = ",\"channel\":" + JSON.stringify(channel) + ",\"asterisk_id\":" + JSON.stringify(asteriskId) +
      ",\"application\":" + JSON.stringify(app) + "}"
    const started = performance.now()
    return new Promise((resolve, reject) => {
      if (count <= 0) {
        resolve({ sent: 0, elapsedMs: 0 })
        return
      }
      const batch = 512
      for (let seq = 1; seq <= count; seq++) {
        if (seq % batch === 1) socket.cork()
        const frame = head + nowStamp() + middle + seq + tail
        if (seq === count) {
          ws.send(frame, (error) => {
            if (error) reject(error)
            else resolve({ sent: count, elapsedMs: performance.now() - started })
          })
        } else {
          ws.send(frame)
        }
        if (seq % batch === 0 || seq === count) socket.uncork()
      }
    })
  }

  close(): void {
    for (const connection of this.connections) connection.ws.terminate()
    this.connections.clear()
    this.registrations.clear()
    this.server.close()
  }
}

export { WebSocket }
