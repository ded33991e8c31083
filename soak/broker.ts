/**
 * The soak's own broker, so that it can be restarted without disturbing the shared one on 4222 /
 * 5672: a private nats-server, or a private RabbitMQ node (its own node name, ports, database and
 * logs, all in a temporary directory). Each runs in a process group of its own.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from "node:fs"
import { connect, createServer } from "node:net"
import { join } from "node:path"

export type BusKind = "nats" | "rabbitmq"

export interface Broker {
  readonly url: string
  /** How it runs, for the report. */
  readonly description: string
  /**
   * Stops it (SIGTERM, or SIGKILL when `kill`), leaves it down for `downMs`, starts it again on the
   * same port; resolves once it accepts connections, with how long it did not (ms).
   */
  readonly restart: (downMs: number) => Promise<number>
  readonly close: () => Promise<void>
  /** Kills it at once (for an exit handler, where nothing can be awaited). */
  readonly killNow: () => void
}

// rabbitmqctl and the other CLI tools of the shared node (distribution port 25672) listen on
// 35672-35682 while they run: never take those.
const RESERVED_PORTS = new Set(Array.from({ length: 11 }, (_, i) => 35672 + i))
const STOP_TIMEOUT_MS = 20_000
const START_TIMEOUT_MS = 60_000

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const freePort = async (): Promise<number> => {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer()
      server.once("error", reject)
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
      })
    })
    if (!RESERVED_PORTS.has(port)) return port
  }
}

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

const waitForPort = async (port: number, what: string) => {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (!(await accepts(port))) {
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port} within ${START_TIMEOUT_MS} ms`)
    await sleep(100)
  }
}

interface Launch {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env: NodeJS.ProcessEnv
  readonly cwd: string
  readonly logPath: string
}

/** One broker process at a time, restarted with the same command. */
const supervise = (launch: Launch, port: number, what: string) => {
  let child: ChildProcess | undefined

  const start = async () => {
    const log = openSync(launch.logPath, "a")
    child = spawn(launch.command, [...launch.args], {
      env: launch.env,
      cwd: launch.cwd,
      // Its own process group: a kill reaches what the broker started (RabbitMQ: beam and its helpers), nothing else.
      detached: true,
      stdio: ["ignore", log, log]
    })
    closeSync(log)
    await waitForPort(port, what)
  }

  const signalGroup = (target: ChildProcess, signal: NodeJS.Signals) => {
    try {
      process.kill(-target.pid!, signal)
    } catch {
      // already gone
    }
  }

  const stop = async (kill: boolean) => {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    const exited = new Promise((resolve) => running.once("exit", resolve))
    // SIGTERM to the leader: nats-server and rabbitmq-server's script both stop the broker cleanly on it.
    if (kill) signalGroup(running, "SIGKILL")
    else running.kill("SIGTERM")
    const stopped = await Promise.race([exited.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)])
    if (!stopped) {
      signalGroup(running, "SIGKILL")
      await exited
    }
  }

  return {
    start,
    restart: async (downMs: number, kill: boolean) => {
      const began = performance.now()
      await stop(kill)
      await sleep(downMs)
      await start()
      return performance.now() - began
    },
    stop,
    killNow: () => {
      if (child !== undefined) signalGroup(child, "SIGKILL")
    }
  }
}

export interface BrokerOptions {
  /** Where its data and logs go (the soak's temporary directory). */
  readonly dir: string
  /** Stop with SIGKILL rather than SIGTERM. */
  readonly kill: boolean
  /** NATS: JetStream on, its store in `dir` (kept across restarts). */
  readonly jetstream: boolean
}

const startNats = async ({ dir, kill, jetstream }: BrokerOptions): Promise<Broker> => {
  const port = await freePort()
  const broker = supervise({
    command: process.env.SOAK_NATS_SERVER ?? "nats-server",
    args: ["-a", "127.0.0.1", "-p", String(port), ...(jetstream ? ["-js", "-sd", join(dir, "jetstream")] : [])],
    env: process.env,
    cwd: dir,
    logPath: join(dir, "nats-server.log")
  }, port, "nats-server")
  await broker.start()
  return {
    url: `nats://127.0.0.1:${port}`,
    description: `private nats-server on 127.0.0.1:${port} (${
      jetstream ? "JetStream on, its store kept across restarts" : "core NATS, no JetStream"
    })`,
    restart: (downMs) => broker.restart(downMs, kill),
    close: () => broker.stop(false),
    killNow: broker.killNow
  }
}

/** The server script itself: the Debian wrapper in /usr/sbin would switch to the rabbitmq user (as root). */
const rabbitmqServerCommand = () => {
  const direct = "/usr/lib/rabbitmq/bin/rabbitmq-server"
  return process.env.SOAK_RABBITMQ_SERVER ?? (existsSync(direct) ? direct : "rabbitmq-server")
}

const startRabbitmq = async ({ dir, kill }: BrokerOptions): Promise<Broker> => {
  const port = await freePort()
  const distPort = await freePort()
  const node = `soak-${randomBytes(4).toString("hex")}@localhost`
  const home = join(dir, "home")
  mkdirSync(home, { recursive: true })
  const file = (name: string, text: string) => {
    const path = join(dir, name)
    writeFileSync(path, text)
    return path
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // The Erlang cookie is created there, not in the user's home.
    HOME: home,
    // Not /etc/rabbitmq/rabbitmq-env.conf: it names the shared node.
    RABBITMQ_CONF_ENV_FILE: file("rabbitmq-env.conf", ""),
    RABBITMQ_CONFIG_FILE: file("rabbitmq.conf", `listeners.tcp.default = 127.0.0.1:${port}\n`),
    RABBITMQ_ENABLED_PLUGINS_FILE: file("enabled_plugins", "[].\n"),
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
    RABBITMQ_LOG_BASE: join(dir, "log"),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}",
    ERL_CRASH_DUMP: join(dir, "erl_crash.dump"),
    ERL_EPMD_ADDRESS: "127.0.0.1"
  }
  const broker = supervise({
    command: rabbitmqServerCommand(),
    args: [],
    env,
    cwd: dir,
    logPath: join(dir, "rabbitmq-server.log")
  }, port, "rabbitmq-server")
  await broker.start()
  return {
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    description: `private RabbitMQ node ${node} on 127.0.0.1:${port} (durable queues kept across restarts)`,
    restart: (downMs) => broker.restart(downMs, kill),
    close: () => broker.stop(false),
    killNow: broker.killNow
  }
}

export const startBroker = (kind: BusKind, options: BrokerOptions): Promise<Broker> =>
  kind === "nats" ? startNats(options) : startRabbitmq(options)
