/**
 * Shutdown of the real process, `node dist/main.js -config <file>` (`.ci/run` builds first; this
 * file builds only when dist/ is missing, and warns when it is older than src/): SIGTERM drains
 * (not ready, no new dialogs, calls arriving meanwhile sent back to the dialplan, in-flight
 * commands answered) and exits 0; a second signal exits at once.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Logger, LogLevel, Option, Queue } from "effect"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { makeNatsBus } from "../../src/bus/nats/index.js"
import { makeTopics } from "../../src/protocol/topics.js"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { startApp } from "../support/apps.js"
import { eventually, startSim } from "../support/harness.js"
import { quietAddress } from "../support/ports.js"
import { httpGet, pollUntil } from "./support.js"

const root = path.resolve(import.meta.dirname, "../..")
const mainJs = path.join(root, "dist/main.js")

const newestSource = (dir: string): number =>
  fs.readdirSync(dir, { withFileTypes: true }).reduce((newest, entry) => {
    const full = path.join(dir, entry.name)
    return Math.max(newest, entry.isDirectory() ? newestSource(full) : fs.statSync(full).mtimeMs)
  }, 0)

let workDir = ""

beforeAll(() => {
  // `.ci/run` builds before testing; building here too (12 s) would double the time of every run.
  if (!fs.existsSync(mainJs)) {
    try {
      const tsc = path.join(root, "node_modules/typescript/bin/tsc")
      execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: root, stdio: "ignore" })
    } catch {
      // type errors elsewhere still emit JavaScript; what matters is that dist/main.js exists
    }
  } else if (fs.statSync(mainJs).mtimeMs < newestSource(path.join(root, "src"))) {
    console.warn("test/ops/shutdown: dist/ is older than src/; run `npm run build` to test the current code")
  }
  expect(fs.existsSync(mainJs), "dist/main.js (npm run build)").toBe(true)
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "ari-proxy-ops-"))
}, 120_000)

afterAll(() => {
  fs.rmSync(workDir, { recursive: true, force: true })
})

interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface RunningProxy {
  readonly child: ChildProcess
  readonly base: string
  readonly stdout: () => Array<string>
  readonly exited: Deferred.Deferred<Exited>
}

const ariPassword = "Sh0tdown$Pw"

/** Writes a config file for `sim` (NATS bus, topics under a prefix of their own) and starts the proxy on it. */
const spawnProxy = (sim: SimulatorHandle, prefix: string, extra: Record<string, unknown> = {}) =>
  Effect.gen(function*() {
    // An address held for the test: the proxy cannot be told to take any port and report it.
    const http = yield* quietAddress
    const configPath = path.join(workDir, `config-${http.port}.json`)
    const config = {
      applications: ["app"],
      websocket_url: sim.wsUrl,
      stasis_url: sim.url,
      ws_user: sim.credentials.username,
      ws_password: sim.credentials.password,
      server_id: "ast-shutdown",
      message_bus: "NATS",
      bus_config: { url: "nats://127.0.0.1:4222", subject_prefix: prefix },
      http_port: http.port,
      http_host: http.host,
      log_format: "json",
      attach_grace_ms: 300,
      reconnect_min_ms: 20,
      reconnect_max_ms: 200,
      ...extra
    }
    fs.writeFileSync(configPath, JSON.stringify(config))
    const exited = yield* Deferred.make<Exited>()
    const output: Array<string> = []
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(process.execPath, [mainJs, "-config", configPath], { stdio: ["ignore", "pipe", "pipe"] })
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => output.push(chunk))
        child.stderr.setEncoding("utf8").on("data", (chunk: string) => output.push(chunk))
        child.on("exit", (code, signal) =>
          Deferred.unsafeDone(exited, Effect.succeed({ code, signal }))
        )
        return child
      }),
      (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
    )
    const base = `http://${http.host}:${http.port}`
    yield* pollUntil(`${base}/readyz`, (answer) => answer.status === 200, 25).pipe(
      Effect.timeoutFail({ duration: 10_000, onTimeout: () => new Error(`proxy not ready:\n${output.join("")}`) })
    )
    const stdout = () => output.join("").split("\n").filter((line) => line !== "")
    return { child, base, stdout, exited } satisfies RunningProxy
  })

const quiet = Logger.withMinimumLogLevel(LogLevel.Warning)

const uniquePrefix = () => `ops-stop-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e6)}.`

const isDraining = (body: string) => {
  try {
    return (JSON.parse(body) as { draining?: boolean }).draining === true
  } catch {
    return false
  }
}

describe("shutdown of the process", () => {
  it.scopedLive("SIGTERM: not ready, new calls back to the dialplan, in-flight command answered, exit 0", () =>
    Effect.gen(function*() {
      const sim = yield* startSim({ credentials: { username: "asterisk", password: ariPassword } })
      const prefix = uniquePrefix()
      const topics = makeTopics(prefix)
      const proxy = yield* spawnProxy(sim, prefix, { shutdown_timeout_ms: 5_000 })
      const appBus = yield* makeNatsBus({ servers: "nats://127.0.0.1:4222", name: "ops-shutdown-app" }).pipe(quiet)
      const unrouted: Array<{ type: string; ari_body: string }> = []
      yield* appBus.subscribe(topics.unrouted("app"), (payload) =>
        Effect.sync(() => {
          unrouted.push(JSON.parse(payload))
        }))
      const dialogs = yield* startApp(appBus, "app", { topics })

      const first = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      sim.setTimings({ restResponseDelayMs: 800 })
      const answering = yield* Effect.fork(dialog.request("POST", `/channels/${first}/answer`))
      yield* eventually(() => sim.requests().some((request) => request.path.endsWith(`/${first}/answer`)))

      proxy.child.kill("SIGTERM")
      const draining = yield* pollUntil(`${proxy.base}/readyz`, (answer) => answer.status === 503)
      expect(isDraining(draining.body), draining.body).toBe(true)
      expect((yield* httpGet(`${proxy.base}/healthz`)).status).toBe(200)

      // a call arriving while draining: no dialog, back to the dialplan, its StasisStart on unrouted_<app>
      const second = sim.placeCall({ app: "app" })
      yield* eventually(() => sim.requests().some((request) => request.path.endsWith(`/${second}/continue`)))
      yield* eventually(() => unrouted.some((event) => event.type === "StasisStart" && event.ari_body.includes(second)))

      expect((yield* Fiber.join(answering)).status_code).toBe(204)
      expect((yield* Deferred.await(dialog.ended)).ari.reason).toBe("shutdown")
      const exited = yield* Deferred.await(proxy.exited)
      expect({ code: exited.code, signal: exited.signal }).toEqual({ code: 0, signal: null })
      expect(yield* Queue.size(dialogs)).toBe(0) // the second call was never announced

      // one JSON line per log entry (no second logger), no secret, the drain logged once
      const lines = proxy.stdout()
      for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow()
      expect(lines.filter((line) => line.includes("draining: no new dialogs"))).toHaveLength(1)
      expect(lines.some((line) => line.includes("sent back to the dialplan"))).toBe(true)
      expect(lines.at(-1)).toContain("ari-proxy stopped")
      // the drain ended when its work was done, not at shutdown_timeout_ms
      expect(lines.filter((line) => line.includes("shutdown deadline passed"))).toEqual([])
      expect(lines.filter((line) => line.includes(ariPassword))).toEqual([])
    }))

  it.scopedLive("a second signal exits at once, without waiting for the drain", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const prefix = uniquePrefix()
      const topics = makeTopics(prefix)
      const proxy = yield* spawnProxy(sim, prefix, { shutdown_timeout_ms: 20_000, command_timeout_ms: 20_000 })
      const appBus = yield* makeNatsBus({ servers: "nats://127.0.0.1:4222", name: "ops-shutdown-app" }).pipe(quiet)
      const dialogs = yield* startApp(appBus, "app", { topics })
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      sim.setRestMode("hang")
      const answering = yield* Effect.fork(dialog.request("POST", `/channels/${channelId}/answer`))
      yield* eventually(() => sim.requests().some((request) => request.path.endsWith("/answer")))

      proxy.child.kill("SIGINT")
      yield* pollUntil(`${proxy.base}/readyz`, (answer) => isDraining(answer.body))
      proxy.child.kill("SIGINT")
      const exited = yield* Deferred.await(proxy.exited)
      expect({ code: exited.code, signal: exited.signal }).toEqual({ code: 130, signal: null })
      expect(proxy.stdout().join("\n")).toContain("second signal (SIGINT)")
      // it did not wait for the drain: the command in flight (20 s deadline) was never answered
      expect(Option.isNone(yield* Fiber.poll(answering))).toBe(true)
      expect(proxy.stdout().some((line) => line.includes("ari-proxy stopped"))).toBe(false)
    }))
})
