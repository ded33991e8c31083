import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Exit, Layer, Logger, LogLevel, Redacted, Scope, Stream } from "effect"
import { createServer, type IncomingMessage } from "node:http"
import { type AddressInfo, createServer as createTcpServer, type Socket } from "node:net"
import type { Duplex } from "node:stream"
import { type WebSocket, WebSocketServer } from "ws"
import {
  type AriConnectionState,
  AriFrameSink,
  AriSocket,
  type AriSocketOptions,
  eventsUrl
} from "../../src/ari/socket.js"

const password = "pa:ss&wörd#?"
const basicAuth = "Basic " + Buffer.from(`asterisk:${password}`, "utf8").toString("base64")

interface Upgrade {
  readonly at: number
  readonly url: string
  readonly headers: IncomingMessage["headers"]
}

interface FakeAriWs {
  readonly port: number
  readonly upgrades: Array<Upgrade>
  readonly sockets: Array<WebSocket>
  /** Close codes the server received, in order. */
  readonly closeCodes: Array<number>
  /** Answers the next upgrade requests with this HTTP status instead of accepting them. */
  rejectWith: number | undefined
  onConnection: (socket: WebSocket, request: IncomingMessage) => void
  readonly close: () => void
}

/** A fake ARI events endpoint on 127.0.0.1: records upgrades, can refuse them, selects no subprotocol. */
const fakeAriWs = (options: { port?: number; selectAri?: boolean } = {}) =>
  Effect.acquireRelease(
    Effect.async<FakeAriWs>((resume) => {
      const httpServer = createServer((_request, response) => {
        response.writeHead(426)
        response.end()
      })
      const wss = new WebSocketServer({
        noServer: true,
        // Asterisk selects no subprotocol; ws's own server would select "ari".
        handleProtocols: (protocols) => options.selectAri === true && protocols.has("ari") ? "ari" : false
      })
      const fake: FakeAriWs = {
        port: 0,
        upgrades: [],
        sockets: [],
        closeCodes: [],
        rejectWith: undefined,
        onConnection: () => {},
        close: () => {
          for (const socket of wss.clients) socket.terminate()
          wss.close()
          httpServer.closeAllConnections()
          httpServer.close()
        }
      }
      httpServer.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
        fake.upgrades.push({ at: Date.now(), url: request.url ?? "", headers: request.headers })
        if (fake.rejectWith !== undefined) {
          socket.end(
            `HTTP/1.1 ${fake.rejectWith} Unauthorized\r\nWWW-Authenticate: Basic realm="Asterisk REST Interface"\r\n` +
              "Content-Length: 37\r\nConnection: close\r\n\r\n{\"message\":\"Authentication required\"}"
          )
          return
        }
        wss.handleUpgrade(request, socket, head, (ws) => {
          fake.sockets.push(ws)
          ws.on("close", (code) => fake.closeCodes.push(code))
          fake.onConnection(ws, request)
        })
      })
      httpServer.listen(options.port ?? 0, "127.0.0.1", () => {
        resume(Effect.succeed(Object.assign(fake, { port: (httpServer.address() as AddressInfo).port })))
      })
    }),
    (fake) => Effect.sync(() => fake.close())
  )

const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

const optionsFor = (port: number, overrides: Partial<AriSocketOptions> = {}): AriSocketOptions => ({
  websocketUrl: `ws://127.0.0.1:${port}/ari/events`,
  applications: ["test-app"],
  subscribeAll: false,
  user: "asterisk",
  password: Redacted.make(password),
  origin: "http://proxy.example",
  reconnectMinMs: 20,
  reconnectMaxMs: 200,
  pingIntervalMs: 1_000,
  handshakeTimeoutMs: 1_000,
  ...overrides
})

const startSocket = (options: AriSocketOptions, onFrame: (frame: string) => void = () => {}) =>
  Layer.build(AriSocket.layerWithSink(options, onFrame)).pipe(Effect.map(Context.get(AriSocket)))

/** Waits (real time) until the socket reaches a state matching the predicate. */
const awaitState = (socket: AriSocket["Type"], predicate: (state: AriConnectionState) => boolean, ms = 3_000) =>
  socket.changes.pipe(
    Stream.filter(predicate),
    Stream.runHead,
    Effect.flatMap((first) => first),
    Effect.timeoutFail({ duration: ms, onTimeout: () => new Error(`state not reached within ${ms} ms`) })
  )

const connectedAt = (count: number) => (state: AriConnectionState) =>
  state._tag === "Connected" && state.connections === count

const waitUntil = (condition: () => boolean, ms = 3_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`condition not met within ${ms} ms`))
      yield* Effect.sleep("5 millis")
    }
  })

/** Collects every log line (message, annotations and cause) at debug level and above. */
const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ annotations, cause, logLevel, message }) => {
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    lines.push(`${logLevel.label} ${text} ${JSON.stringify([...annotations])} ${String(cause)}`)
  })
  const provide = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    effect.pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
      Logger.withMinimumLogLevel(LogLevel.Debug)
    )
  return { lines, provide }
}

describe("AriSocket: the upgrade request", () => {
  it.scopedLive("sends Basic auth, Origin, offers `ari`, and one app list; no credentials in the URL", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      const socket = yield* startSocket(optionsFor(server.port, {
        websocketUrl: `ws://127.0.0.1:${server.port}/ari/events?x-trace=1&api_key=old:key&app=stale`,
        applications: ["test-app", "vm é&x,y"],
        subscribeAll: true
      }))
      yield* awaitState(socket, connectedAt(1))
      const upgrade = server.upgrades[0]!
      expect(upgrade.url).toBe("/ari/events?x-trace=1&app=test-app,vm%20%C3%A9%26x%2Cy&subscribeAll=true")
      expect(upgrade.headers.authorization).toBe(basicAuth)
      expect(upgrade.headers.origin).toBe("http://proxy.example")
      expect(upgrade.headers["sec-websocket-protocol"]).toBe("ari")
      expect(upgrade.headers["sec-websocket-extensions"]).toBeUndefined()
      expect(socket.url).toBe(`ws://127.0.0.1:${server.port}${upgrade.url}`)
      expect(socket.url).not.toContain(password)
    }))

  it.scopedLive("also accepts a server that selects the `ari` subprotocol", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs({ selectAri: true })
      const socket = yield* startSocket(optionsFor(server.port))
      yield* awaitState(socket, connectedAt(1))
      expect(server.sockets[0]!.protocol).toBe("ari")
    }))

  it("builds the URL without credentials embedded in websocket_url", () => {
    const url = eventsUrl(optionsFor(1, { websocketUrl: "wss://u:p@ari.example:8089/ari/events#x" }))
    expect(url).toBe("wss://ari.example:8089/ari/events?app=test-app")
    const bad = eventsUrl(optionsFor(1, { websocketUrl: "http://ari.example/ari/events" }))
    expect(typeof bad === "string" ? bad : bad._tag).toBe("AriConfigError")
    const none = eventsUrl(optionsFor(1, { applications: [] }))
    expect(typeof none === "string" ? none : none.message).toContain("no applications")
  })
})

describe("AriSocket: frames", () => {
  it.scopedLive("delivers 10,000 frames in order", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      server.onConnection = (ws) => {
        for (let index = 0; index < 10_000; index++) {
          ws.send(`{"type":"ChannelVarset","seq":${index},"channel":{"id":"c${index % 17}"}}`)
        }
      }
      const frames: Array<string> = []
      yield* startSocket(optionsFor(server.port), (frame) => frames.push(frame))
      yield* waitUntil(() => frames.length >= 10_000)
      expect(frames.length).toBe(10_000)
      frames.forEach((frame, index) => {
        expect((JSON.parse(frame) as { seq: number }).seq).toBe(index)
      })
    }))

  it.scopedLive("pause stops delivery (without being taken for a dead peer) and resume delivers the rest", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      const frames: Array<string> = []
      const socket = yield* startSocket(optionsFor(server.port, { pingIntervalMs: 40 }), (frame) => frames.push(frame))
      yield* awaitState(socket, connectedAt(1))
      yield* socket.pause
      for (let index = 0; index < 5; index++) server.sockets[0]!.send(`frame-${index}`)
      yield* Effect.sleep("200 millis") // five ping intervals
      expect(frames).toEqual([])
      yield* socket.resume
      yield* waitUntil(() => frames.length === 5)
      expect(frames).toEqual(["frame-0", "frame-1", "frame-2", "frame-3", "frame-4"])
      expect(yield* socket.state).toEqual(expect.objectContaining({ _tag: "Connected", connections: 1 }))
      expect(server.upgrades.length).toBe(1)
    }))

  it.scopedLive("a consumer that throws skips that frame only", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      server.onConnection = (ws) => ["a", "boom", "b"].forEach((frame) => ws.send(frame))
      const frames: Array<string> = []
      const logs = captureLogs()
      yield* logs.provide(startSocket(optionsFor(server.port), (frame) => {
        if (frame === "boom") throw new Error("consumer bug")
        frames.push(frame)
      }))
      yield* waitUntil(() => frames.length === 2)
      expect(frames).toEqual(["a", "b"])
      expect(logs.lines.some((line) => line.startsWith("ERROR") && line.includes("consumer threw"))).toBe(true)
    }))
})

describe("AriSocket: reconnecting", () => {
  it.scopedLive("reconnects after the server terminates the connection; the state says so", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      server.onConnection = (ws) => {
        if (server.sockets.length === 1) setTimeout(() => ws.terminate(), 30)
      }
      const socket = yield* startSocket(optionsFor(server.port))
      const seen = yield* socket.changes.pipe(
        Stream.takeUntil(connectedAt(2)),
        Stream.runCollect,
        Effect.map(Chunk.toReadonlyArray),
        Effect.timeout("3 seconds")
      )
      expect(seen.map((state) => `${state._tag}:${state.connections}`)).toEqual([
        "Connecting:0",
        "Connected:1",
        "Disconnected:1",
        "Connecting:1",
        "Connected:2"
      ])
      const disconnected = seen[2]!
      expect(disconnected._tag === "Disconnected" && disconnected.reason).toContain("1006")
      expect(disconnected._tag === "Disconnected" && disconnected.failedAttempts).toBe(0)
    }))

  it.scopedLive("keeps trying while ARI is not there, and connects once it comes up", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const logs = captureLogs()
      const socket = yield* logs.provide(startSocket(optionsFor(port, { reconnectMinMs: 10, reconnectMaxMs: 40 })))
      yield* awaitState(socket, (state) => state._tag === "Disconnected" && state.failedAttempts >= 3)
      const refused = yield* socket.state
      expect(refused._tag === "Disconnected" && refused.reason).toBe("connection refused")
      yield* fakeAriWs({ port })
      yield* awaitState(socket, connectedAt(1))
      const warnings = logs.lines.filter((line) => line.startsWith("WARN"))
      expect(warnings.length).toBe(1) // the first refusal; the repeats are at debug level
      expect(logs.lines.some((line) => line.startsWith("DEBUG") && line.includes("still cannot connect"))).toBe(true)
      expect(logs.lines.some((line) => line.startsWith("INFO") && /connected to .* after \d+ attempts/.test(line)))
        .toBe(true)
    }))

  it.scopedLive("retries a 401 with growing, capped delays; no secret in any log line", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      server.rejectWith = 401
      const logs = captureLogs()
      const socket = yield* logs.provide(
        startSocket(optionsFor(server.port, { reconnectMinMs: 20, reconnectMaxMs: 160 }))
      )
      yield* waitUntil(() => server.upgrades.length >= 6, 5_000)
      const failing = yield* awaitState(socket, (state) => state._tag === "Disconnected")
      expect(failing._tag === "Disconnected" && failing.reason).toContain("401")
      server.rejectWith = undefined
      yield* awaitState(socket, connectedAt(1), 5_000)

      // The delays chosen (logged with each failure) start at reconnectMinMs, grow, and stay under the cap.
      const delays = logs.lines.flatMap((line) => /retrying in (\d+) ms/.exec(line)?.slice(1).map(Number) ?? [])
      expect(delays.length).toBeGreaterThanOrEqual(5)
      expect(delays[0]).toBe(20)
      expect(delays[1]).toBeGreaterThanOrEqual(20)
      expect(Math.max(...delays)).toBeGreaterThanOrEqual(80)
      expect(Math.max(...delays)).toBeLessThanOrEqual(160)
      // And the server saw the attempts that far apart.
      const gaps = server.upgrades.slice(1).map((upgrade, index) => upgrade.at - server.upgrades[index]!.at)
      gaps.forEach((gap, index) => expect(gap).toBeGreaterThanOrEqual(delays[index]! - 5))

      const warnings = logs.lines.filter((line) => line.startsWith("WARN"))
      expect(warnings.length).toBe(1)
      expect(warnings[0]).toContain("HTTP 401")
      expect(logs.lines.some((line) => line.startsWith("INFO") && line.includes("after"))).toBe(true)
      const secrets = [password, basicAuth, basicAuth.slice("Basic ".length), encodeURIComponent(password)]
      for (const line of logs.lines) {
        for (const secret of secrets) expect(line).not.toContain(secret)
      }
      expect(logs.lines.length).toBeGreaterThan(5)
    }))

  it.scopedLive("finds a dead peer by ping/pong and reconnects", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      server.onConnection = (_ws, request) => {
        // The first connection goes silent: its TCP socket is no longer read, so pings go unanswered.
        if (server.sockets.length === 1) setTimeout(() => request.socket.pause(), 20)
      }
      const logs = captureLogs()
      const socket = yield* logs.provide(startSocket(optionsFor(server.port, { pingIntervalMs: 50 })))
      yield* awaitState(socket, connectedAt(1))
      const started = Date.now()
      const lost = yield* awaitState(socket, (state) => state._tag === "Disconnected", 2_000)
      expect(Date.now() - started).toBeLessThan(500)
      expect(lost._tag === "Disconnected" ? lost.reason : "").toBe("no answer to ping within 50 ms")
      yield* awaitState(socket, connectedAt(2))
      expect(logs.lines.some((line) => line.startsWith("WARN") && line.includes("disconnected: no answer to ping")))
        .toBe(true)
      expect(logs.lines.some((line) => line.startsWith("INFO") && line.includes("connected again"))).toBe(true)
    }))

  it.scopedLive("a live peer answering pings stays connected", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      const socket = yield* startSocket(optionsFor(server.port, { pingIntervalMs: 30 }))
      yield* awaitState(socket, connectedAt(1))
      yield* Effect.sleep("200 millis")
      expect(yield* socket.state).toEqual(expect.objectContaining({ _tag: "Connected", connections: 1 }))
      expect(server.upgrades.length).toBe(1)
    }))

  it.scopedLive("gives up on a handshake that never completes, and retries", () =>
    Effect.gen(function*() {
      const held: Array<Socket> = []
      const silent = createTcpServer((connection) => held.push(connection)) // accepts TCP, never answers
      const port = yield* Effect.async<number>((resume) => {
        silent.listen(0, "127.0.0.1", () => resume(Effect.succeed((silent.address() as AddressInfo).port)))
      })
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          held.forEach((connection) => connection.destroy())
          silent.close()
        })
      )
      const socket = yield* startSocket(optionsFor(port, { handshakeTimeoutMs: 100 }))
      const started = Date.now()
      const failed = yield* awaitState(socket, (state) => state._tag === "Disconnected")
      expect(Date.now() - started).toBeLessThan(1_000)
      expect(failed._tag === "Disconnected" ? failed.reason : "").toContain("handshake has timed out")
      yield* waitUntil(() => held.length >= 2)
    }))
})

describe("AriSocket: lifetime", () => {
  it.scopedLive("closing the scope closes the socket with 1000 and stops reconnecting", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      const scope = yield* Scope.make()
      const socket = yield* Scope.extend(startSocket(optionsFor(server.port)), scope)
      yield* awaitState(socket, connectedAt(1))
      yield* Scope.close(scope, Exit.void)
      yield* waitUntil(() => server.closeCodes.length === 1)
      expect(server.closeCodes).toEqual([1000])
      expect(yield* socket.state).toEqual(expect.objectContaining({ _tag: "Closed", connections: 1 }))
      yield* Effect.sleep("100 millis")
      expect(server.upgrades.length).toBe(1)
    }))

  it.scopedLive("closing the scope while ARI is down stops the retries", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const scope = yield* Scope.make()
      const socket = yield* Scope.extend(startSocket(optionsFor(port)), scope)
      yield* awaitState(socket, (state) => state._tag === "Disconnected")
      yield* Scope.close(scope, Exit.void)
      expect((yield* socket.state)._tag).toBe("Closed")
      const server = yield* fakeAriWs({ port })
      yield* Effect.sleep("100 millis")
      expect(server.upgrades.length).toBe(0)
    }))

  it.scopedLive("AriSocket.layer delivers to the AriFrameSink in context", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      server.onConnection = (ws) => ws.send("{\"type\":\"StasisStart\"}")
      const frames: Array<string> = []
      const layer = AriSocket.layer(optionsFor(server.port)).pipe(
        Layer.provide(Layer.succeed(AriFrameSink, { onFrame: (frame) => frames.push(frame) }))
      )
      yield* Layer.build(layer)
      yield* waitUntil(() => frames.length === 1)
      expect(frames).toEqual(["{\"type\":\"StasisStart\"}"])
    }))

  it.effect("refuses a websocket_url it cannot use when the layer is built", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(startSocket(optionsFor(1, { websocketUrl: "nope" }))))
      expect(error._tag).toBe("AriConfigError")
    }))
})
