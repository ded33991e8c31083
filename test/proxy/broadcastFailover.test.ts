/**
 * Two proxies for one Asterisk with StasisBroadcast, one of them a process of its own
 * (`src/main.ts` run with vite-node, on NATS) that is killed with SIGKILL: its websocket is gone
 * without a word. Before the kill the calls split between the two proxies; after it, the other
 * proxy takes every call; no call ever enters Stasis twice.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Logger, LogLevel, Queue } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { makeNatsBus } from "../../src/bus/nats/index.js"
import { makeTopics } from "../../src/protocol/topics.js"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { pollUntil } from "../ops/support.js"
import { startApp, type TestDialog } from "../support/apps.js"
import { eventually, startProxy, startSim } from "../support/harness.js"
import { quietAddress } from "../support/ports.js"

const root = path.resolve(import.meta.dirname, "../..")
const NATS = "nats://127.0.0.1:4222"
const APP = "sales"

const quiet = Logger.withMinimumLogLevel(LogLevel.Warning)

/** The proxy as a process of its own, with broadcast on; ready once its /readyz answers 200. */
const spawnProxy = (sim: SimulatorHandle, prefix: string, serverId: string) =>
  Effect.gen(function*() {
    const http = yield* quietAddress
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ari-proxy-broadcast-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
    const configPath = path.join(dir, "config.json")
    fs.writeFileSync(configPath, JSON.stringify({
      applications: [APP],
      websocket_url: sim.wsUrl,
      stasis_url: sim.url,
      ws_user: sim.credentials.username,
      ws_password: sim.credentials.password,
      server_id: serverId,
      message_bus: "NATS",
      bus_config: { url: NATS, subject_prefix: prefix },
      stasis_broadcast: { enabled: true },
      http_port: http.port,
      http_host: http.host,
      log_format: "json",
      log_level: "warning",
      ended_linger_ms: 100
    }))
    const output: Array<string> = []
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = spawn(
          process.execPath,
          [path.join(root, "node_modules/vite-node/vite-node.mjs"), "src/main.ts", "--", "-config", configPath],
          { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
        )
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => output.push(chunk))
        child.stderr.setEncoding("utf8").on("data", (chunk: string) => output.push(chunk))
        return child
      }),
      (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
    )
    const exited = yield* Deferred.make<void>()
    child.on("exit", () => Deferred.unsafeDone(exited, Effect.void))
    // Ready: connected to the simulator and to NATS, taking calls. Starting vite-node takes seconds.
    yield* pollUntil(`http://${http.host}:${http.port}/readyz`, (answer) => answer.status === 200, 50).pipe(
      Effect.timeoutFail({ duration: 60_000, onTimeout: () => new Error(`proxy not ready:\n${output.join("")}`) })
    )
    return { kill: Effect.sync(() => child.kill("SIGKILL")), exited }
  })

/** The application hangs every call up at once; returns the proxy that had it and the channel. */
const handleCall = (dialog: TestDialog) =>
  Effect.gen(function*() {
    const start = yield* dialog.waitFor("StasisStart")
    const channelId: string = start.ari.channel.id
    expect((yield* dialog.request("DELETE", `/channels/${channelId}`)).status_code).toBe(204)
    yield* Deferred.await(dialog.ended)
    return { serverId: dialog.serverId, channelId }
  })

const stasisStarts = (sim: SimulatorHandle, channelId: string) =>
  sim.events().filter((e) => e.type === "StasisStart" && (e.channel as { id: string }).id === channelId)

describe("two proxies on one Asterisk, one SIGKILLed", () => {
  it.scopedLive("calls split between them; after the kill every call is taken by the survivor; none twice", () =>
    Effect.gen(function*() {
      const prefix = `bc-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e6)}.`
      const sim = yield* startSim()
      const doomed = yield* spawnProxy(sim, prefix, "ast-doomed")
      const proxyBus = yield* makeNatsBus({ servers: NATS, name: "broadcast-survivor" }).pipe(quiet)
      const { proxy: survivor } = yield* startProxy(sim, proxyBus, {
        applications: [APP],
        serverId: "ast-survivor",
        stasisBroadcast: { enabled: true },
        bus: { subjectPrefix: prefix },
        endedLingerMs: 100
      })
      const appBus = yield* makeNatsBus({ servers: NATS, name: "broadcast-app" }).pipe(quiet)
      const dialogs = yield* startApp(appBus, APP, { topics: makeTopics(prefix) })
      const offer = () => sim.placeBroadcastCall({ appFilter: `^${APP}-`, timeoutMs: 5_000 })

      // Both claim every call; whichever claim reaches Asterisk first wins it.
      const taken = new Map<string, number>()
      const calls = (serverId: string) => taken.get(serverId) ?? 0
      for (let i = 0; i < 60 && (calls("ast-doomed") < 2 || calls("ast-survivor") < 2); i++) {
        const channelId = offer()
        const call = yield* handleCall(yield* Queue.take(dialogs))
        expect(call.channelId).toBe(channelId)
        expect(stasisStarts(sim, channelId)).toHaveLength(1)
        taken.set(call.serverId, (taken.get(call.serverId) ?? 0) + 1)
      }
      expect(calls("ast-doomed")).toBeGreaterThanOrEqual(2)
      expect(calls("ast-survivor")).toBeGreaterThanOrEqual(2)

      yield* doomed.kill
      yield* Deferred.await(doomed.exited)
      // Asterisk sees the socket close when the kernel closes it for the dead process.
      yield* eventually(() => !sim.connectedApps().includes(`${APP}-ast-doomed`))
      const lostBefore = (yield* survivor.stats).broadcastClaims.lost
      for (let i = 0; i < 10; i++) {
        const channelId = offer()
        const call = yield* handleCall(yield* Queue.take(dialogs))
        expect(call).toEqual({ serverId: "ast-survivor", channelId })
        expect(stasisStarts(sim, channelId)).toHaveLength(1)
      }
      const after = (yield* survivor.stats).broadcastClaims
      expect(after.lost).toBe(lostBefore)
      expect(yield* Queue.size(dialogs)).toBe(0)
    }), { timeout: 120_000 })
})
