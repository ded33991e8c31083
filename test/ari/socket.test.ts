/**
 * The ARI event websocket against a fake ARI on the loopback. Every delay of the socket (backoff,
 * ping interval, handshake deadline) is on Effect's Clock: the tests that are about time run on
 * TestClock and move it themselves, so none depends on how busy the machine is. What happens on
 * the network is awaited as it happens (with deadlines far above what it takes).
 */
import { describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  Context,
  Effect,
  Exit,
  Fiber,
  Layer,
  Logger,
  LogLevel,
  Option,
  Redacted,
  Scope,
  Stream,
  TestClock,
  TestServices
} from "effect"
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
import { type QuietAddress, quietAddress } from "../support/ports.js"

const password = "pa:ss&wörd#?"
const basicAuth = "Basic " + Buffer.from(`asterisk:${password}`, "utf8").toString("base64")

interface Upgrade {
  readonly at: number
  readonly url: string
  readonly headers: IncomingMessage["headers"]
}

interface FakeAriWs {
  readonly port: number
  /** Pings received from the client (each answered with a pong before it is counted). */
  pings: number
  readonly upgrades: Array<Upgrade>
  readonly sockets: Array<WebSocket>
  /** Close codes the server received, in order. */
  readonly closeCodes: Array<number>
  /** Answers the next upgrade requests with this HTTP status instead of accepting them. */
  rejectWith: number | undefined
  onConnection: (socket: WebSocket, request: IncomingMessage) => void
  readonly close: () => void
}

/**
 * A fake ARI events endpoint (127.0.0.1, port 0; or a quiet address): records upgrades, can refuse
 * them, selects no subprotocol.
 */
const fakeAriWs = (options: { at?: QuietAddress; selectAri?: boolean } = {}) =>
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
        pings: 0,
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
          // ws writes the pong to the socket, then emits "ping"
          ws.on("ping", () => fake.pings++)
          fake.onConnection(ws, request)
        })
      })
      httpServer.listen(options.at?.port ?? 0, options.at?.host ?? "127.0.0.1", () => {
        resume(Effect.succeed(Object.assign(fake, { port: (httpServer.address() as AddressInfo).port })))
      })
    }),
    (fake) => Effect.sync(() => fake.close())
  )

const optionsFor = (
  port: number,
  overrides: Partial<AriSocketOptions> = {},
  host = "127.0.0.1"
): AriSocketOptions => ({
  websocketUrl: `ws://${host}:${port}/ari/events`,
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

/**
 * Waits until the socket reaches a state matching the predicate. The deadline is in real time
 * (the test may run on TestClock) and far above what it takes: it only turns a hang into a message.
 */
const awaitState = (socket: AriSocket["Type"], predicate: (state: AriConnectionState) => boolean, ms = 20_000) =>
  TestServices.provideLive(
    socket.changes.pipe(
      Stream.filter(predicate),
      Stream.runHead,
      Effect.flatMap((first) => first),
      Effect.timeoutFail({ duration: ms, onTimeout: () => new Error(`state not reached within ${ms} ms`) })
    )
  )

const connectedAt = (count: number) => (state: AriConnectionState) =>
  state._tag === "Connected" && state.connections === count

/** Polls (in real time) until what happens on the network makes `condition` true. */
const waitUntil = (condition: () => boolean, ms = 20_000) =>
  TestServices.provideLive(Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`condition not met within ${ms} ms`))
      yield* Effect.sleep("5 millis")
    }
  }))

/**
 * Lets the event loop go round `turns` times. Bytes written to a loopback socket are in the peer's
 * receive buffer once the write returns, and a poll phase comes between two `setImmediate`s: after
 * two turns, whatever the peer had been sent has been read (unless it is paused).
 */
const eventLoopTurns = (turns = 2) =>
  Effect.promise(async () => {
    for (let turn = 0; turn < turns; turn++) await new Promise<void>((resolve) => setImmediate(resolve))
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

  it.scoped("pause stops delivery (without being taken for a dead peer) and resume delivers the rest", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      const frames: Array<string> = []
      const socket = yield* startSocket(optionsFor(server.port, { pingIntervalMs: 40 }), (frame) => frames.push(frame))
      yield* awaitState(socket, connectedAt(1))
      yield* socket.pause
      for (let index = 0; index < 5; index++) server.sockets[0]!.send(`frame-${index}`)
      yield* eventLoopTurns(4) // unpaused, they would have been delivered by now
      for (let interval = 0; interval < 5; interval++) yield* TestClock.adjust(40) // five ping checks, none answered
      expect(frames).toEqual([])
      expect(yield* socket.state).toEqual(expect.objectContaining({ _tag: "Connected", connections: 1 }))
      yield* socket.resume
      yield* waitUntil(() => frames.length === 5)
      expect(frames).toEqual(["frame-0", "frame-1", "frame-2", "frame-3", "frame-4"])
      yield* TestClock.adjust(40) // judged again after the resume: it answers
      yield* waitUntil(() => server.pings >= 1)
      yield* eventLoopTurns()
      yield* TestClock.adjust(40)
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
  it.scoped("reconnects after the server terminates the connection; the state says so", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      server.onConnection = (ws) => {
        if (server.sockets.length === 1) setTimeout(() => ws.terminate(), 10)
      }
      const socket = yield* startSocket(optionsFor(server.port))
      const watching = yield* socket.changes.pipe(
        Stream.takeUntil(connectedAt(2)),
        Stream.runCollect,
        Effect.map(Chunk.toReadonlyArray),
        Effect.fork
      )
      const lost = yield* awaitState(socket, (state) => state._tag === "Disconnected")
      yield* TestClock.adjust(lost._tag === "Disconnected" ? lost.retryInMs : 0)
      const seen = yield* Fiber.join(watching)
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
  it.scoped("keeps trying while ARI is not there, and connects once it comes up", () =>
    Effect.gen(function*() {
      const address = yield* quietAddress
      const logs = captureLogs()
      const options = optionsFor(address.port, { reconnectMinMs: 10, reconnectMaxMs: 40 }, address.host)
      const socket = yield* logs.provide(startSocket(options))
      for (let attempt = 1; attempt <= 3; attempt++) {
        const refused = yield* awaitState(socket, (s) => s._tag === "Disconnected" && s.failedAttempts === attempt)
        expect(refused._tag === "Disconnected" && refused.reason).toBe("connection refused")
        if (attempt === 3) yield* fakeAriWs({ at: address })
        yield* TestClock.adjust(refused._tag === "Disconnected" ? refused.retryInMs : 0)
      }
      yield* awaitState(socket, connectedAt(1))
      const warnings = logs.lines.filter((line) => line.startsWith("WARN"))
      expect(warnings.length).toBe(1) // the first refusal; the repeats are at debug level
      expect(logs.lines.some((line) => line.startsWith("DEBUG") && line.includes("still cannot connect"))).toBe(true)
      expect(logs.lines.some((line) => line.startsWith("INFO") && /connected to .* after 4 attempts/.test(line)))
        .toBe(true)
    }))
  it.scoped("retries a 401 with growing, capped delays, never early; no secret in any log line", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      server.rejectWith = 401
      const logs = captureLogs()
      const socket = yield* logs.provide(
        startSocket(optionsFor(server.port, { reconnectMinMs: 20, reconnectMaxMs: 160 }))
      )
      const delays: Array<number> = []
      for (let attempt = 1; attempt <= 6; attempt++) {
        const failing = yield* awaitState(socket, (s) => s._tag === "Disconnected" && s.failedAttempts === attempt)
        if (failing._tag !== "Disconnected") return yield* Effect.die("unreachable")
        expect(failing.reason).toContain("401")
        expect(server.upgrades.length).toBe(attempt)
        delays.push(failing.retryInMs)
        yield* TestClock.adjust(failing.retryInMs - 1)
        expect(yield* socket.state).toEqual(failing) // not a moment early
        if (attempt === 6) server.rejectWith = undefined
        yield* TestClock.adjust(1)
      }
      yield* awaitState(socket, connectedAt(1))

      // From reconnectMinMs, growing (with jitter: each step's base doubles), never above the cap.
      expect(delays[0]).toBe(20)
      delays.slice(1).forEach((delay, step) => {
        const base = Math.min(160, 20 * 2 ** (step + 1))
        expect(delay).toBeGreaterThanOrEqual(base / 2)
        expect(delay).toBeLessThanOrEqual(base)
      })
      // The delays logged are the ones waited.
      const logged = logs.lines.flatMap((line) => /retrying in (\d+) ms/.exec(line)?.slice(1).map(Number) ?? [])
      expect(logged).toEqual(delays)

      const warnings = logs.lines.filter((line) => line.startsWith("WARN"))
      expect(warnings.length).toBe(1)
      expect(warnings[0]).toContain("HTTP 401")
      expect(logs.lines.some((line) => line.startsWith("INFO") && line.includes("after 7 attempts"))).toBe(true)
      const secrets = [password, basicAuth, basicAuth.slice("Basic ".length), encodeURIComponent(password)]
      for (const line of logs.lines) {
        for (const secret of secrets) expect(line).not.toContain(secret)
      }
      expect(logs.lines.length).toBeGreaterThan(5)
    }))
  it.scoped("finds a dead peer by ping/pong within two intervals, and reconnects", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      server.onConnection = (_ws, request) => {
        // The first connection goes silent: its TCP socket is no longer read, so pings go unanswered.
        if (server.sockets.length === 1) request.socket.pause()
      }
      const logs = captureLogs()
      const socket = yield* logs.provide(startSocket(optionsFor(server.port, { pingIntervalMs: 50 })))
      yield* awaitState(socket, connectedAt(1))
      yield* TestClock.adjust(50) // the first check: heard from it (the handshake); ping
      yield* eventLoopTurns()
      expect((yield* socket.state)._tag).toBe("Connected")
      yield* TestClock.adjust(50) // the second: no pong within the interval
      const lost = yield* awaitState(socket, (state) => state._tag === "Disconnected")
      if (lost._tag !== "Disconnected") return yield* Effect.die("unreachable")
      expect(lost.reason).toBe("no answer to ping within 50 ms")
      yield* TestClock.adjust(lost.retryInMs)
      yield* awaitState(socket, connectedAt(2))
      expect(logs.lines.some((line) => line.startsWith("WARN") && line.includes("disconnected: no answer to ping")))
        .toBe(true)
      expect(logs.lines.some((line) => line.startsWith("INFO") && line.includes("connected again"))).toBe(true)
    }))
  it.scoped("a live peer answering pings stays connected", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      const socket = yield* startSocket(optionsFor(server.port, { pingIntervalMs: 30 }))
      yield* awaitState(socket, connectedAt(1))
      for (let interval = 1; interval <= 10; interval++) {
        yield* TestClock.adjust(30) // a check: heard from it since the last one; ping
        yield* waitUntil(() => server.pings === interval) // the server has sent its pong...
        yield* eventLoopTurns() // ...and we have read it
      }
      yield* TestClock.adjust(30)
      expect(yield* socket.state).toEqual(expect.objectContaining({ _tag: "Connected", connections: 1 }))
      expect(server.upgrades.length).toBe(1)
    }))
  it.scoped("gives up on a handshake that never completes, at its deadline, and retries", () =>
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
      yield* waitUntil(() => held.length === 1)
      yield* TestClock.adjust(99)
      expect((yield* socket.state)._tag).toBe("Connecting")
      yield* TestClock.adjust(1)
      const failed = yield* awaitState(socket, (state) => state._tag === "Disconnected")
      if (failed._tag !== "Disconnected") return yield* Effect.die("unreachable")
      expect(failed.reason).toContain("handshake has timed out")
      yield* TestClock.adjust(failed.retryInMs)
      yield* waitUntil(() => held.length === 2)
    }))
})

describe("AriSocket: lifetime", () => {
  it.scoped("closing the scope closes the socket with 1000 and stops reconnecting", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      const scope = yield* Scope.make()
      const options = optionsFor(server.port)
      const socket = yield* Scope.extend(startSocket(options), scope)
      yield* awaitState(socket, connectedAt(1))
      yield* Scope.close(scope, Exit.void)
      yield* waitUntil(() => server.closeCodes.length === 1)
      expect(server.closeCodes).toEqual([1000])
      expect(yield* socket.state).toEqual(expect.objectContaining({ _tag: "Closed", connections: 1 }))
      yield* TestClock.adjust(options.reconnectMaxMs * 2) // any retry would be due
      expect(yield* socket.state).toEqual(expect.objectContaining({ _tag: "Closed", connections: 1 }))
      expect(server.upgrades.length).toBe(1)
    }))
  it.scoped("closing the scope does not wait more than 1 s for a peer that never answers the close", () =>
    Effect.gen(function*() {
      const server = yield* fakeAriWs()
      server.onConnection = (_ws, request) => request.socket.pause() // reads nothing: never sees our close
      const scope = yield* Scope.make()
      const socket = yield* Scope.extend(startSocket(optionsFor(server.port)), scope)
      yield* awaitState(socket, connectedAt(1))
      const closing = yield* Effect.forkDaemon(Scope.close(scope, Exit.void))
      yield* eventLoopTurns()
      yield* TestClock.adjust(999)
      expect(Option.isNone(yield* Fiber.poll(closing)), "closed without the peer's answer").toBe(true)
      yield* TestClock.adjust(1)
      yield* TestServices.provideLive(
        Fiber.join(closing).pipe(Effect.timeoutFail({ duration: 20_000, onTimeout: () => new Error("still closing") }))
      )
      expect(yield* socket.state).toEqual(expect.objectContaining({ _tag: "Closed", connections: 1 }))
    }))

  it.scoped("closing the scope while ARI is down stops the retries", () =>
    Effect.gen(function*() {
      const address = yield* quietAddress
      const scope = yield* Scope.make()
      const options = optionsFor(address.port, {}, address.host)
      const socket = yield* Scope.extend(startSocket(options), scope)
      yield* awaitState(socket, (state) => state._tag === "Disconnected")
      yield* Scope.close(scope, Exit.void)
      expect((yield* socket.state)._tag).toBe("Closed")
      const server = yield* fakeAriWs({ at: address })
      yield* TestClock.adjust(options.reconnectMaxMs * 2) // any retry would be due
      yield* eventLoopTurns(4)
      expect((yield* socket.state)._tag).toBe("Closed")
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
