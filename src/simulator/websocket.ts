/**
 * The event websocket side: which applications are registered (one socket per application, as in
 * Asterisk), delivery of events to them, the per-app event log, and the high-rate flood writer.
 * Every frame goes out through the connection's `FrameWriter`, which drops a reader that stops reading.
 */
import type { IncomingMessage } from "node:http"
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import { WebSocket, WebSocketServer } from "ws"
import { addressEvent } from "./events.js"
import type { EventBuilders, SimEvent } from "./events.js"
import { FrameWriter, frameSize, maskedTextFrame, textFrame, writeTextFrame } from "./frameWriter.js"
import type { ChannelSnapshot } from "./state.js"
import { nowStamp } from "./state.js"

export type EventListener = (app: string, event: Readonly<Record<string, unknown>>) => void

/**
 * Answers one frame a client sent on its event socket (REST over the websocket) for the socket's
 * first application: the RESTResponse, or undefined to leave it unanswered.
 */
export type RestFrameHandler = (text: string, app: string) => Promise<Readonly<Record<string, unknown>> | undefined>

/** An application's event filter (`PUT /applications/{app}/eventFilter`); empty lists: everything passes. */
export interface EventFilter {
  allowed: ReadonlyArray<string>
  disallowed: ReadonlyArray<string>
}

/** Asterisk's rule: not disallowed, and allowed when `allowed` is empty or names the type. */
export const filterPasses = (filter: EventFilter, type: string): boolean =>
  !filter.disallowed.includes(type) && (filter.allowed.length === 0 || filter.allowed.includes(type))

interface Connection {
  readonly ws: WebSocket
  readonly socket: Duplex
  readonly writer: FrameWriter
  /** An outbound socket (Asterisk is the client): its frames are masked. */
  readonly masked: boolean
  readonly apps: ReadonlyArray<string>
  readonly subscribeAll: boolean
  /** Asterisk handles a socket's requests one at a time, in order. */
  restRequests: Promise<void>
  /** Frames held back while a request is handled, when responses go first. */
  held: Array<string> | undefined
}

export interface Registration {
  readonly name: string
  /** Undefined once the socket is gone: the app is inactive, kept while a channel or bridge holds it. */
  readonly connection: Connection | undefined
  readonly subscribeAll: boolean
  readonly endpointIds: Set<string>
  readonly deviceNames: Set<string>
  /** Kept on the application object: it outlives the socket only while a channel or bridge holds the app. */
  readonly eventFilter: EventFilter
  /** An app of a persistent outbound websocket: registered while its socket is down, its events queued. */
  readonly outbound?: { readonly queue: Array<string> } | undefined
  /** An app of a per_call_config socket (`<app>:<channel name>`): told when its StasisEnd is sent. */
  readonly onStasisEnd?: (() => void) | undefined
}

/** How an outbound socket's apps behave (ari-modes §1). */
export type OutboundKind =
  | { readonly _tag: "Persistent" }
  | { readonly _tag: "PerCall"; readonly onStasisEnd: () => void }

/** Starts a call's per_call_config socket; the Stasis() of `app` goes through it. */
export type PerCallStasis = (channelId: string, app: string, args: ReadonlyArray<string>) => void

export interface FloodResult {
  readonly sent: number
  readonly elapsedMs: number
}

/** An event websocket dropped because a frame write missed `websocketWriteTimeoutMs`. */
export interface SlowReaderDrop {
  readonly apps: ReadonlyArray<string>
  /** Frames handed to the socket that the reader will never get (the kernel never took them). */
  readonly lostFrames: number
}

export class AppHub {
  readonly registrations = new Map<string, Registration>()
  private readonly connections = new Set<Connection>()
  private readonly eventLog = new Map<string, Array<Readonly<Record<string, unknown>>>>()
  private readonly listeners = new Set<EventListener>()
  private subscribeAllCache: ReadonlyArray<string> | undefined
  private readonly slowReaderDropLog: Array<SlowReaderDrop> = []
  readonly server: WebSocketServer
  /** "refuse" drops every upgrade attempt (for reconnect tests). */
  mode: "accept" | "refuse" = "accept"
  /** Answers RESTRequest frames; without it, what clients send is ignored. */
  restHandler: RestFrameHandler | undefined
  /**
   * Asterisk does not order a RESTResponse against the events its request caused. By default the
   * events go first (as the handlers emit them); with this, the response goes before them.
   */
  restResponsesFirst = false
  /** Apps of `per_call_config` outbound websockets: Stasis() opens a socket per call for them. */
  readonly perCallApps = new Map<string, PerCallStasis>()

  constructor(
    private readonly builders: EventBuilders,
    private readonly recordLogs: boolean,
    private readonly writeTimeoutMs: number,
    /** Whether a channel or bridge still holds `app`, so that it outlives its socket. */
    private readonly holdsApp: (app: string) => boolean
  ) {
    // Asterisk selects no subprotocol even when the client offers `ari`; ws would pick the first one.
    this.server = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handleProtocols: () => false
    })
  }

  /** Whether `app` has a socket (is active). */
  isRegistered(app: string): boolean {
    const registration = this.registrations.get(app)
    return registration?.connection !== undefined || registration?.outbound !== undefined || this.perCallApps.has(app)
  }

  /** `app` if Asterisk knows it: active, or inactive and held by a channel or bridge (else it is forgotten). */
  application(app: string): Registration | undefined {
    const registration = this.registrations.get(app)
    if (registration === undefined || registration.connection !== undefined || registration.outbound !== undefined) {
      return registration
    }
    if (this.holdsApp(app)) return registration
    this.registrations.delete(app)
    return undefined
  }

  applicationNames(): Array<string> {
    return [...this.registrations.keys()].filter((app) => this.application(app) !== undefined)
  }

  /** Applications connected with `subscribeAll=true`: they see every event. */
  subscribeAllApps(): ReadonlyArray<string> {
    if (this.subscribeAllCache === undefined) {
      this.subscribeAllCache = [...this.registrations.values()]
        .filter((r) => r.subscribeAll && r.connection !== undefined)
        .map((r) => r.name)
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
      if (registration === undefined || !filterPasses(registration.eventFilter, event.type)) continue
      const connection = registration.connection
      // a persistent outbound app whose socket is down queues its events (ari-modes §1.4)
      if (connection === undefined && registration.outbound === undefined) continue
      const addressed = addressEvent(event, app)
      if (connection === undefined) registration.outbound!.queue.push(JSON.stringify(addressed))
      else this.send(connection, JSON.stringify(addressed))
      this.record(app, addressed)
      if (event.type === "StasisEnd") registration.onStasisEnd?.()
    }
  }

  private send(connection: Connection, text: string): void {
    // what ws.send would do: nothing once the websocket is closing
    if (connection.ws.readyState !== WebSocket.OPEN) return
    if (connection.held !== undefined) {
      connection.held.push(text)
      return
    }
    const frame = connection.masked ? maskedTextFrame(text) : textFrame(text)
    connection.writer.write(frame, [frame.length])
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
    // an upgrade on a plain HTTP server always hands over a net.Socket
    const writer = new FrameWriter(
      socket as Socket,
      this.writeTimeoutMs,
      (lostFrames) => this.dropSlowReader(connection, lostFrames)
    )
    const connection: Connection = {
      ws,
      socket,
      writer,
      masked: false,
      apps,
      subscribeAll,
      restRequests: Promise.resolve(),
      held: undefined
    }
    this.connections.add(connection)
    const replaced = new Set<Connection>()
    for (const app of apps) {
      // an inactive app a channel still holds is reused with its subscriptions; otherwise it starts afresh
      const previous = this.application(app)
      if (previous?.connection !== undefined && previous.connection !== connection) {
        // Asterisk tells the old socket it lost the application before dropping it
        const addressed = addressEvent(this.builders.applicationReplaced(), app)
        this.send(previous.connection, JSON.stringify(addressed))
        replaced.add(previous.connection)
      }
      this.registrations.set(app, {
        name: app,
        connection,
        subscribeAll,
        endpointIds: previous?.endpointIds ?? new Set(),
        deviceNames: previous?.deviceNames ?? new Set(),
        eventFilter: previous?.eventFilter ?? { allowed: [], disallowed: [] }
      })
    }
    this.subscribeAllCache = undefined
    for (const old of replaced) {
      this.unregister(old)
      old.ws.close(1000)
    }
    ws.on("close", () => this.unregister(connection))
    ws.on("error", () => this.unregister(connection))
    this.answerRestFrames(connection)
  }

  /**
   * An outbound socket Asterisk opened (it is the client): its apps are registered on it. A persistent
   * one first gets what was queued while it was down, then ApplicationRegistered for each app (ari-modes
   * §1.4); a per-call one gets ApplicationRegistered. Returns when the socket is gone.
   */
  attachOutbound(ws: WebSocket, socket: Socket, apps: ReadonlyArray<string>, kind: OutboundKind): void {
    const connection: Connection = {
      ws,
      socket,
      writer: new FrameWriter(socket, this.writeTimeoutMs, (lostFrames) => this.dropSlowReader(connection, lostFrames)),
      masked: true,
      apps,
      subscribeAll: false,
      restRequests: Promise.resolve(),
      held: undefined
    }
    this.connections.add(connection)
    const queued: Array<string> = []
    for (const app of apps) {
      const previous = this.registrations.get(app)
      queued.push(...previous?.outbound?.queue ?? [])
      this.registrations.set(app, {
        name: app,
        connection,
        subscribeAll: false,
        endpointIds: previous?.endpointIds ?? new Set(),
        deviceNames: previous?.deviceNames ?? new Set(),
        eventFilter: previous?.eventFilter ?? { allowed: [], disallowed: [] },
        outbound: kind._tag === "Persistent" ? { queue: [] } : undefined,
        onStasisEnd: kind._tag === "PerCall" ? kind.onStasisEnd : undefined
      })
    }
    this.subscribeAllCache = undefined
    for (const text of queued) this.send(connection, text)
    for (const app of apps) this.send(connection, JSON.stringify(addressEvent(this.builders.applicationRegistered(), app)))
    ws.on("close", () => this.unregister(connection))
    ws.on("error", () => this.unregister(connection))
    this.answerRestFrames(connection)
  }

  /** A persistent outbound websocket's apps, registered at config load: their events wait for its socket. */
  registerOutbound(apps: ReadonlyArray<string>): void {
    for (const app of apps) {
      const previous = this.registrations.get(app)
      this.registrations.set(app, {
        name: app,
        connection: previous?.connection,
        subscribeAll: false,
        endpointIds: previous?.endpointIds ?? new Set(),
        deviceNames: previous?.deviceNames ?? new Set(),
        eventFilter: previous?.eventFilter ?? { allowed: [], disallowed: [] },
        outbound: previous?.outbound ?? { queue: [] }
      })
    }
  }

  /** `ari shutdown websocket session`: ApplicationUnregistered, then a close 1000; the apps are gone. */
  shutdownOutbound(apps: ReadonlyArray<string>): void {
    for (const app of apps) {
      const registration = this.registrations.get(app)
      const connection = registration?.connection
      if (connection !== undefined) {
        this.send(connection, JSON.stringify(addressEvent(this.builders.applicationUnregistered(), app)))
        connection.ws.close(1000)
      }
      this.registrations.set(app, { ...registration!, connection: undefined, outbound: undefined })
      if (!this.holdsApp(app)) this.registrations.delete(app)
    }
    this.subscribeAllCache = undefined
  }

  private answerRestFrames(connection: Connection): void {
    connection.ws.on("message", (data, isBinary) => {
      if (isBinary) return
      const text = Buffer.isBuffer(data)
        ? data.toString("utf8")
        : Array.isArray(data)
        ? Buffer.concat(data).toString("utf8")
        : Buffer.from(data).toString("utf8")
      connection.restRequests = connection.restRequests.then(() => this.answerRest(connection, text))
    })
  }

  /** One RESTRequest frame, answered on its socket unless the socket's first app filters RESTResponse out. */
  private async answerRest(connection: Connection, text: string): Promise<void> {
    const handler = this.restHandler
    const app = connection.apps[0]
    if (handler === undefined || app === undefined) return
    if (this.restResponsesFirst) connection.held = []
    try {
      const response = await handler(text, app)
      const filter = this.registrations.get(app)?.eventFilter
      if (response === undefined || (filter !== undefined && !filterPasses(filter, "RESTResponse"))) return
      const held = connection.held
      connection.held = undefined
      this.send(connection, JSON.stringify(response))
      connection.held = held
    } finally {
      const held = connection.held ?? []
      connection.held = undefined
      for (const text of held) this.send(connection, text)
    }
  }

  /** The socket is gone: its apps become inactive, and Asterisk forgets those no channel or bridge holds. */
  private unregister(connection: Connection): void {
    this.connections.delete(connection)
    for (const app of connection.apps) {
      const registration = this.registrations.get(app)
      if (registration?.connection !== connection) continue
      // a persistent outbound app stays registered while Asterisk dials again (ari-modes §1.4)
      if (registration.outbound !== undefined) this.registrations.set(app, { ...registration, connection: undefined })
      else if (this.holdsApp(app)) this.registrations.set(app, { ...registration, connection: undefined })
      else this.registrations.delete(app)
    }
    this.subscribeAllCache = undefined
  }

  // Asterisk's close 1011 cannot be written into a full buffer either: the TCP stream is just closed,
  // and the reader still gets what the kernel holds before the end of the stream.
  private dropSlowReader(connection: Connection, lostFrames: number): void {
    this.slowReaderDropLog.push({ apps: connection.apps, lostFrames })
    this.unregister(connection)
    connection.socket.destroy()
  }

  slowReaderDrops(): ReadonlyArray<SlowReaderDrop> {
    return [...this.slowReaderDropLog]
  }

  clearSlowReaderDrops(): void {
    this.slowReaderDropLog.length = 0
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
    return [...this.registrations.values()].filter((r) => r.connection !== undefined).map((r) => r.name)
  }

  /**
   * Writes `count` ChannelDtmfReceived frames to `app` as fast as possible, each with an increasing
   * `x_seq` so receivers can check order. The frame text is precomputed; only the sequence number and
   * the (per-millisecond) timestamp change. Resolves once the last frame is handed to the kernel.
   */
  flood(app: string, count: number, channel: ChannelSnapshot, asteriskId: string): Promise<FloodResult> {
    const connection = this.registrations.get(app)?.connection
    if (connection === undefined) return Promise.reject(new Error(`application ${app} has no websocket`))
    const { writer, ws } = connection
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
      // Frames are built here, unmasked text frames as a server sends them, many per socket write;
      // ws without permessage-deflate writes straight to the socket too, so order is kept.
      const batch = 256
      let seq = 1
      const writeBatch = () => {
        while (seq <= count) {
          const last = Math.min(count, seq + batch - 1)
          const payloads: Array<string> = []
          const frameEnds: Array<number> = []
          let size = 0
          for (let n = seq; n <= last; n++) {
            const payload = head + nowStamp() + middle + n + tail
            size += frameSize(Buffer.byteLength(payload))
            payloads.push(payload)
            frameEnds.push(size)
          }
          const buffer = Buffer.allocUnsafe(size)
          let offset = 0
          for (const payload of payloads) offset = writeTextFrame(buffer, offset, payload)
          seq = last + 1
          if (seq > count) {
            writer.write(buffer, frameEnds, (error) => {
              if (error) reject(new Error(`websocket of ${app} closed before the flood was written: ${error.message}`))
              else resolve({ sent: count, elapsedMs: performance.now() - started })
            })
            return
          }
          // no wait for "drain": a flood of N frames is bounded, and waiting would pace the build by the reader
          writer.write(buffer, frameEnds)
        }
      }
      if (ws.readyState !== WebSocket.OPEN) {
        reject(new Error(`websocket of ${app} is not open`))
        return
      }
      writeBatch()
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
