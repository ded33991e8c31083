/**
 * A nats-server of the test's own: JetStream on, a temporary store, a loopback address held for it
 * (test/support/ports.ts: nobody can take the port while it is down). The test may kill it
 * (SIGKILL, as a crash) and start it again on the same address and store. Its polling is in real
 * time, so a test on TestClock can use it. The shared
 * broker on 4222 is never touched. Also: reading a stream back through an ephemeral consumer, and
 * capturing the driver's log lines.
 */
import { connect, createInbox, type NatsConnection } from "@nats-io/transport-node"
import { Duration, Effect, FiberRef, HashSet, Logger, LogLevel, TestServices } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { quietAddress } from "../support/ports.js"

const BINARY = existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server"

export interface NatsServerProcess {
  readonly host: string
  readonly port: number
  readonly url: string
  /** SIGKILL: no goodbye to the clients, nothing flushed that the process still held. */
  readonly kill: Effect.Effect<void>
  /** Starts it again (same port, same store) and waits until it accepts connections. */
  readonly start: Effect.Effect<void>
  /** SIGSTOP (waits until the process is stopped) / SIGCONT: connections stay open, nothing is answered meanwhile. */
  readonly pause: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
}

const accepts = (host: string, port: number) =>
  Effect.async<boolean>((resume) => {
    const socket = net.connect(port, host)
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
  })

const untilAccepting = (host: string, port: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 10_000
    while (!(yield* accepts(host, port))) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`nats-server did not listen on ${port}`)
      yield* TestServices.provideLive(Effect.sleep(Duration.millis(10)))
    }
  })

const exited = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
  })

export const makeNatsServer = Effect.acquireRelease(
  Effect.gen(function*() {
    const { host, port } = yield* quietAddress
    const store = mkdtempSync(join(tmpdir(), "ari-proxy-nats-"))
    let child: ChildProcess | undefined
    const kill = Effect.suspend(() => {
      const running = child
      child = undefined
      if (running === undefined) return Effect.void
      running.kill("SIGKILL")
      return exited(running)
    })
    const start = Effect.suspend(() => {
      child = spawn(BINARY, ["-a", host, "-p", String(port), "-js", "-sd", store], { stdio: "ignore" })
      return untilAccepting(host, port)
    })
    const signal = (name: NodeJS.Signals) => Effect.sync(() => child?.kill(name))
    // The stop takes effect a little after the signal: until then the server may still answer.
    const stopped = Effect.gen(function*() {
      const pid = child?.pid
      const deadline = Date.now() + 5000
      while (pid !== undefined && readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] !== "T") {
        if (Date.now() > deadline) return yield* Effect.dieMessage("nats-server did not stop")
        yield* TestServices.provideLive(Effect.sleep(Duration.millis(1)))
      }
    })
    yield* start
    const server: NatsServerProcess = {
      host,
      port,
      url: `nats://${host}:${port}`,
      kill,
      start,
      pause: Effect.zipRight(signal("SIGSTOP"), stopped),
      resume: signal("SIGCONT")
    }
    return { server, store }
  }),
  ({ server, store }) =>
    Effect.zipRight(server.kill, Effect.sync(() => rmSync(store, { recursive: true, force: true })))
).pipe(Effect.map(({ server }) => server))

/** A plain nats.js connection (a seed client's view), closed with the scope; it reconnects quickly. */
export const rawConnection = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(() => connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 50 })),
    (nc) => Effect.promise(() => nc.close())
  )

interface ApiAnswer {
  readonly state?: { readonly messages: number }
  readonly config?: Record<string, unknown>
  readonly error?: { readonly description: string }
}

export const jetStreamApi = (nc: NatsConnection, subject: string, body?: unknown) =>
  Effect.promise(async () => {
    const answer = await nc.request(subject, body === undefined ? "" : JSON.stringify(body), { timeout: 5000 })
    return JSON.parse(answer.string()) as ApiAnswer
  })

/** Every message of `stream`, in stream order, read through an ephemeral push consumer. */
export const readStream = (nc: NatsConnection, stream: string) =>
  Effect.gen(function*() {
    const info = yield* jetStreamApi(nc, `$JS.API.STREAM.INFO.${stream}`)
    const expected = info.state?.messages ?? 0
    const messages: Array<string> = []
    const deliverTo = createInbox()
    const subscription = nc.subscribe(deliverTo, {
      callback: (_error, msg) => {
        messages.push(msg.string())
      }
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => subscription.unsubscribe()))
    yield* Effect.promise(() => nc.flush())
    const created = yield* jetStreamApi(nc, `$JS.API.CONSUMER.CREATE.${stream}`, {
      stream_name: stream,
      config: { deliver_subject: deliverTo, deliver_policy: "all", ack_policy: "none", replay_policy: "instant" }
    })
    if (created.error !== undefined) return yield* Effect.dieMessage(created.error.description)
    const deadline = Date.now() + 10_000
    while (messages.length < expected && Date.now() < deadline) {
      yield* TestServices.provideLive(Effect.sleep(Duration.millis(10)))
    }
    return messages
  })

/** Log lines (message and annotations) of what runs under `capturing`, at Info and above. */
export const captureLogs = () => {
  const lines: Array<{ message: string; annotations: Record<string, unknown> }> = []
  const logger = Logger.make<unknown, void>(({ annotations, message }) => {
    const record: Record<string, unknown> = {}
    for (const [key, value] of annotations) record[key] = value
    lines.push({ message: Array.isArray(message) ? message.join(" ") : String(message), annotations: record })
  })
  const capturing = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    effect.pipe(
      Effect.locally(FiberRef.currentLoggers, HashSet.make(logger)),
      Effect.locally(FiberRef.currentMinimumLogLevel, LogLevel.Info)
    )
  return { lines, capturing }
}
