/**
 * The operations endpoint, with a real HTTP client against the real application (simulator,
 * in-memory bus, proxy, HTTP server on http_port).
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Logger, LogLevel, Queue, Scope } from "effect"
import { readFileSync } from "node:fs"
import { AriConnectionState } from "../../src/ari/socket.js"
import { makeMemoryBus } from "../../src/bus/memory.js"
import type { NatsBusStats } from "../../src/bus/nats/index.js"
import { PresenceAnnouncement } from "../../src/protocol/messages.js"
import { makeTopics } from "../../src/protocol/topics.js"
import { proxyApplication } from "../../src/proxy/application.js"
import { ProxyMetrics } from "../../src/observability/metrics.js"
import { noProxyStats, renderMetrics } from "../../src/proxy/http.js"
import type { ProxyShape } from "../../src/proxy/Proxy.js"
import { startApp } from "../support/apps.js"
import { eventually, startSim } from "../support/harness.js"
import { quietAddress } from "../support/ports.js"
import { httpGet, parsePrometheus, pollUntil, proxyConfigFor, startOpsProxy, valueOf } from "./support.js"

const readyBody = (body: string) =>
  JSON.parse(body) as { ready: boolean; ari: string; bus: string; draining: boolean; reasons: Array<string> }

describe("/healthz and /readyz", () => {
  it.scopedLive("not ready before ARI connects, while ARI is down and while draining; ready otherwise", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      sim.setWebsocketMode("refuse")
      const { base, bus, proxy } = yield* startOpsProxy(yield* proxyConfigFor(sim))

      const health = yield* httpGet(`${base}/healthz`)
      expect(health.status).toBe(200)
      const before = yield* httpGet(`${base}/readyz`)
      expect(before.status).toBe(503)
      expect(before.contentType).toContain("application/json")
      expect(readyBody(before.body)).toMatchObject({ ready: false, bus: "connected", draining: false })
      expect(readyBody(before.body).reasons.join()).toMatch(/ARI websocket/)

      sim.setWebsocketMode("accept")
      const up = yield* pollUntil(`${base}/readyz`, (answer) => answer.status === 200)
      expect(readyBody(up.body)).toEqual({
        ready: true,
        ari: "Connected",
        bus: "connected",
        draining: false,
        reasons: []
      })

      // ARI goes away
      sim.setWebsocketMode("refuse")
      sim.dropWebsockets()
      const down = yield* pollUntil(`${base}/readyz`, (answer) => answer.status === 503)
      expect(readyBody(down.body).ari).not.toBe("Connected")
      expect((yield* httpGet(`${base}/healthz`)).status).toBe(200)
      sim.setWebsocketMode("accept")
      yield* pollUntil(`${base}/readyz`, (answer) => answer.status === 200)

      // draining with a command in flight: 503 (not a refused connection) until the end
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      sim.setTimings({ restResponseDelayMs: 400 })
      const answering = yield* Effect.fork(dialog.request("POST", `/channels/${channelId}/answer`))
      yield* eventually(() => sim.requests().some((r) => r.path.endsWith("/answer")))
      const drain = yield* Effect.fork(proxy.drain.pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
      const draining = yield* pollUntil(`${base}/readyz`, (answer) => answer.status === 503)
      expect(readyBody(draining.body)).toMatchObject({ ready: false, ari: "Connected", draining: true })
      expect(readyBody(draining.body).reasons).toEqual(["draining (shutting down)"])
      expect((yield* Fiber.join(answering)).status_code).toBe(204)
      yield* Fiber.join(drain)
      expect((yield* Deferred.await(dialog.ended)).ari.reason).toBe("shutdown")
      expect((yield* httpGet(`${base}/readyz`)).status).toBe(503)
    }))

  it.scopedLive("answer while the proxy still waits for its bus at startup: alive, not ready", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const broker = yield* quietAddress // nobody listens there
      const config = yield* proxyConfigFor(sim, {
        messageBus: "NATS",
        bus: { url: `nats://${broker.host}:${broker.port}` }
      })
      const scope = yield* Scope.make()
      const starting = yield* Effect.fork(
        Layer.buildWithScope(proxyApplication(config), scope).pipe(Logger.withMinimumLogLevel(LogLevel.None))
      )
      const base = `http://${config.httpHost}:${config.httpPort}`
      yield* pollUntil(`${base}/healthz`, (answer) => answer.status === 200)
      const notReady = yield* httpGet(`${base}/readyz`)
      expect(notReady.status).toBe(503)
      expect(readyBody(notReady.body).ready).toBe(false)
      const metrics = parsePrometheus((yield* httpGet(`${base}/metrics`)).body)
      expect(valueOf(metrics, "ari_proxy_ready")).toBe(0)
      yield* Fiber.interrupt(starting)
      yield* Scope.close(scope, Exit.void).pipe(Logger.withMinimumLogLevel(LogLevel.None))
    }))

  it.scopedLive("unknown paths are 404", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const { base } = yield* startOpsProxy(yield* proxyConfigFor(sim))
      expect((yield* httpGet(`${base}/nope`)).status).toBe(404)
    }))
})

describe("/metrics", () => {
  it.scopedLive("is Prometheus text whose counters and histograms move with a call", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const { base, bus } = yield* startOpsProxy(yield* proxyConfigFor(sim))
      yield* pollUntil(`${base}/readyz`, (answer) => answer.status === 200)
      const first = yield* httpGet(`${base}/metrics`)
      expect(first.status).toBe(200)
      expect(first.contentType).toBe("text/plain; version=0.0.4; charset=utf-8")
      const before = parsePrometheus(first.body)
      expect(valueOf(before, "ari_proxy_ari_connected")).toBe(1)
      expect(valueOf(before, "ari_proxy_bus_connected")).toBe(1)
      expect(valueOf(before, "ari_proxy_ready")).toBe(1)

      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      expect((yield* dialog.request("POST", `/channels/${channelId}/answer`)).status_code).toBe(204)
      expect((yield* dialog.request("GET", `/channels/${channelId}`)).status_code).toBe(200)
      expect((yield* dialog.request("GET", "/channels/no-such-channel")).status_code).toBe(404)
      expect((yield* dialog.request("POST", "http://evil.example/ari/channels")).status_code).toBe(400)
      yield* dialog.sendRaw("{\"unique_id\":\"bad\",\"url\":7}")
      sim.sendDtmf(channelId, "1234", 5)
      yield* dialog.waitFor("ChannelDtmfReceived", (event) => event.ari.digit === "4")

      const during = parsePrometheus((yield* httpGet(`${base}/metrics`)).body)
      expect(valueOf(during, "ari_proxy_dialogs_active")).toBe(1)
      expect(valueOf(during, "ari_proxy_bound_entities")).toBeGreaterThanOrEqual(1)

      sim.hangup(channelId)
      yield* Deferred.await(dialog.ended)
      const after = parsePrometheus((yield* httpGet(`${base}/metrics`)).body)
      const moved = (name: string, labels: Record<string, string> = {}) =>
        valueOf(after, name, labels) - valueOf(before, name, labels)

      expect(moved("ari_proxy_events_received_total", { type: "StasisStart" })).toBe(1)
      expect(moved("ari_proxy_events_received_total", { type: "ChannelDtmfReceived" })).toBe(4)
      expect(moved("ari_proxy_events_published_total", { type: "ChannelDtmfReceived" })).toBe(4)
      expect(moved("ari_proxy_events_published_total", { type: "DialogEnded" })).toBe(1)
      expect(moved("ari_proxy_dialogs_started_total")).toBe(1)
      expect(moved("ari_proxy_dialogs_ended_total", { reason: "channels_left" })).toBe(1)
      expect(valueOf(after, "ari_proxy_dialogs_active")).toBe(0)
      expect(moved("ari_proxy_commands_total", { method: "ATTACH", status_class: "2xx" })).toBe(1)
      expect(moved("ari_proxy_commands_total", { method: "POST", status_class: "2xx" })).toBe(1)
      expect(moved("ari_proxy_commands_total", { method: "GET", status_class: "2xx" })).toBe(1)
      expect(moved("ari_proxy_commands_total", { method: "GET", status_class: "4xx" })).toBe(1)
      expect(moved("ari_proxy_commands_total", { method: "POST", status_class: "4xx" })).toBe(1)
      expect(moved("ari_proxy_commands_total", { method: "INVALID", status_class: "4xx" })).toBe(1)
      expect(moved("ari_proxy_command_duration_seconds_count")).toBe(6)
      expect(moved("ari_proxy_command_duration_seconds_sum")).toBeGreaterThan(0)
      // the refused url never reached ARI
      expect(moved("ari_proxy_ari_request_duration_seconds_count")).toBe(3)
      // events after the end (the simulator's ChannelDestroyed follows StasisEnd) are unrouted
      expect(moved("ari_proxy_events_unrouted_total", { type: "ChannelDestroyed" })).toBeLessThanOrEqual(1)
    }))

  it.scopedLive("two proxies in one process count apart: each /metrics shows only its own calls", () =>
    Effect.gen(function*() {
      /** A whole proxy application (its own simulator, memory bus and endpoint) taking `calls` calls. */
      const proxyTaking = (calls: number, method: "POST" | "GET") =>
        Effect.gen(function*() {
          const sim = yield* startSim()
          const { base, bus } = yield* startOpsProxy(yield* proxyConfigFor(sim))
          yield* pollUntil(`${base}/readyz`, (answer) => answer.status === 200)
          const dialogs = yield* startApp(bus, "app")
          for (let call = 0; call < calls; call++) {
            const channelId = sim.placeCall({ app: "app" })
            const dialog = yield* Queue.take(dialogs)
            const url = method === "POST" ? `/channels/${channelId}/answer` : `/channels/${channelId}`
            expect((yield* dialog.request(method, url)).status_code).toBeLessThan(300)
            sim.hangup(channelId)
            yield* Deferred.await(dialog.ended)
          }
          return base
        })
      const first = yield* proxyTaking(2, "POST")
      const second = yield* proxyTaking(1, "GET")

      const firstMetrics = parsePrometheus((yield* httpGet(`${first}/metrics`)).body)
      const secondMetrics = parsePrometheus((yield* httpGet(`${second}/metrics`)).body)
      expect(valueOf(firstMetrics, "ari_proxy_events_received_total", { type: "StasisStart" })).toBe(2)
      expect(valueOf(secondMetrics, "ari_proxy_events_received_total", { type: "StasisStart" })).toBe(1)
      expect(valueOf(firstMetrics, "ari_proxy_dialogs_ended_total", { reason: "channels_left" })).toBe(2)
      expect(valueOf(secondMetrics, "ari_proxy_dialogs_ended_total", { reason: "channels_left" })).toBe(1)
      expect(valueOf(firstMetrics, "ari_proxy_commands_total", { method: "POST", status_class: "2xx" })).toBe(2)
      expect(valueOf(firstMetrics, "ari_proxy_commands_total", { method: "GET", status_class: "2xx" })).toBe(0)
      expect(valueOf(secondMetrics, "ari_proxy_commands_total", { method: "GET", status_class: "2xx" })).toBe(1)
      expect(valueOf(secondMetrics, "ari_proxy_commands_total", { method: "POST", status_class: "2xx" })).toBe(0)
      // Every call's commands (its ATTACH included) timed by its own proxy: twice the calls, twice the count.
      const timed = (metrics: typeof firstMetrics) => valueOf(metrics, "ari_proxy_command_duration_seconds_count")
      expect(timed(secondMetrics)).toBeGreaterThan(0)
      expect(timed(firstMetrics)).toBe(2 * timed(secondMetrics))
    }))

  it.scopedLive("says which build runs, and the process's CPU time and event-loop delay", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const { base } = yield* startOpsProxy(yield* proxyConfigFor(sim))
      const first = parsePrometheus((yield* httpGet(`${base}/metrics`)).body)
      const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
        version: string
      }
      expect(valueOf(first, "ari_proxy_build_info", { version, node: process.version })).toBe(1)
      expect(first.get("process_cpu_seconds_total")?.type).toBe("counter")
      expect(first.get("nodejs_eventloop_delay_seconds")?.type).toBe("summary")

      yield* Effect.sleep("200 millis")
      const second = parsePrometheus((yield* httpGet(`${base}/metrics`)).body)
      expect(valueOf(second, "process_cpu_seconds_total")).toBeGreaterThan(valueOf(first, "process_cpu_seconds_total"))
      expect(valueOf(second, "nodejs_eventloop_delay_seconds_count"))
        .toBeGreaterThan(valueOf(first, "nodejs_eventloop_delay_seconds_count"))
      for (const quantile of ["0.5", "0.9", "0.99"]) {
        expect(valueOf(second, "nodejs_eventloop_delay_seconds", { quantile })).toBeGreaterThanOrEqual(0)
      }
    }))

  it.scopedLive("says which Asterisk is behind the proxy, since when it runs, and the presence it published", () =>
    Effect.gen(function*() {
      const sim = yield* startSim({ asteriskId: "02:fc:00:00:00:42" })
      const before = Date.now()
      const { base } = yield* startOpsProxy(yield* proxyConfigFor(sim, { presenceIntervalMs: 100 }))
      const metrics = yield* pollUntil(`${base}/metrics`, (answer) =>
        valueOf(parsePrometheus(answer.body), "ari_proxy_presence_messages_total", { type: "heartbeat" }) >= 2 &&
        answer.body.includes("ari_proxy_asterisk_info{"))
      const parsed = parsePrometheus(metrics.body)
      expect(valueOf(parsed, "ari_proxy_asterisk_info", { version: "23.4.1", entity_id: "02:fc:00:00:00:42" })).toBe(1)
      const started = valueOf(parsed, "ari_proxy_start_time_seconds")
      expect(started).toBeGreaterThanOrEqual(Math.floor(before / 1000))
      expect(started).toBeLessThanOrEqual(Date.now() / 1000)
      const requests = sim.requests().filter((request) => request.path === "/ari/asterisk/info")
      expect(requests.map((request) => request.query.only)).toEqual(["system"])
    }))

  it.scopedLive("counts ARI reconnects", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const { base } = yield* startOpsProxy(yield* proxyConfigFor(sim))
      yield* pollUntil(`${base}/readyz`, (answer) => answer.status === 200)
      const before = parsePrometheus((yield* httpGet(`${base}/metrics`)).body)
      sim.dropWebsockets()
      yield* pollUntil(`${base}/metrics`, (answer) =>
        valueOf(parsePrometheus(answer.body), "ari_proxy_ari_reconnects_total") >
          valueOf(before, "ari_proxy_ari_reconnects_total"))
    }))
})

describe("/metrics: the bus", () => {
  const idleProxy: ProxyShape = {
    topics: makeTopics(""),
    stats: Effect.succeed(noProxyStats),
    ready: Effect.succeed(true),
    draining: Effect.succeed(false),
    ariState: Effect.succeed(AriConnectionState.Connected({ connections: 1 })),
    drain: Effect.void,
    dialogs: () => [],
    presence: Effect.succeed(new PresenceAnnouncement({
      type: "heartbeat",
      server_id: "ast-idle",
      asterisk: null,
      applications: [],
      ready: true,
      draining: false,
      active_dialogs: 0,
      proxy_version: "0.0.0",
      started_at: "2026-01-01T00:00:00.000Z",
      interval_ms: 5000
    }))
  }

  it.scoped("reports the driver's buffer, acknowledgements and every loss by reason", () =>
    Effect.gen(function*() {
      const stats: NatsBusStats = {
        published: 20_000,
        buffered: 12,
        bufferedBytes: 3456,
        dropped: 7754,
        unconfirmedLost: 30,
        acknowledged: 19_000,
        awaitingAck: 40,
        republished: 800,
        rejected: 2,
        lost: 7786,
        reconnects: 1,
        subscriptions: 0
      }
      const bus = { ...(yield* makeMemoryBus), stats: () => stats }
      const metrics = parsePrometheus(yield* renderMetrics({ proxy: idleProxy, bus, metrics: new ProxyMetrics() }))
      expect(valueOf(metrics, "ari_proxy_bus_buffered_messages")).toBe(12)
      expect(valueOf(metrics, "ari_proxy_bus_buffered_bytes")).toBe(3456)
      expect(valueOf(metrics, "ari_proxy_bus_dropped_messages_total")).toBe(7754)
      expect(valueOf(metrics, "ari_proxy_bus_lost_messages_total", { reason: "buffer_full" })).toBe(7754)
      expect(valueOf(metrics, "ari_proxy_bus_lost_messages_total", { reason: "unconfirmed_at_disconnect" })).toBe(30)
      expect(valueOf(metrics, "ari_proxy_bus_lost_messages_total", { reason: "rejected" })).toBe(2)
      expect(valueOf(metrics, "ari_proxy_bus_published_messages_total")).toBe(20_000)
      expect(valueOf(metrics, "ari_proxy_bus_republished_messages_total")).toBe(800)
      expect(valueOf(metrics, "ari_proxy_bus_acknowledged_messages_total")).toBe(19_000)
      expect(valueOf(metrics, "ari_proxy_bus_awaiting_ack_messages")).toBe(40)
      expect(valueOf(metrics, "ari_proxy_bus_reconnects_total")).toBe(1)
    }))
})
