/**
 * Tracing end to end: the ARI simulator, the proxy with `otel_endpoint` pointing at an OTLP/HTTP
 * receiver started by the test, the in-memory bus, and applications (the typed client, and a raw
 * one sending `traceparent` by hand). The spans are read as the exporter sent them, after the
 * proxy stopped (its exporter flushes then).
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Logger, LogLevel, Queue, Scope, type Tracer } from "effect"
import { Bus, type BusShape } from "../../src/bus/Bus.js"
import { makeAriClient } from "../../src/client/AriClient.js"
import { makeProxyConfig } from "../../src/config/ProxyConfigService.js"
import { proxyApplication } from "../../src/proxy/application.js"
import { Proxy, type ProxyShape } from "../../src/proxy/Proxy.js"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { startApp } from "../support/apps.js"
import { eventually, makeRig, startSim, waitUntilReady } from "../support/harness.js"
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "../support/otlpReceiver.js"

const kind = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const

/**
 * The whole proxy as `main` runs it (proxyApplication: memory bus, exporter), tracing to
 * `receiver`. `stop` drains it and flushes the spans; it also stops with the test's scope.
 */
const startTracedProxy = (sim: SimulatorHandle, receiver: OtlpReceiver) =>
  Effect.gen(function*() {
    const config = makeProxyConfig({
      applications: ["app"],
      stasisUrl: sim.url,
      websocketUrl: sim.wsUrl,
      wsUser: sim.credentials.username,
      wsPassword: sim.credentials.password,
      serverId: "ast-traced",
      messageBus: "MEMORY",
      otelEndpoint: receiver.endpoint,
      otelServiceName: "proxy-under-test",
      attachGraceMs: 300,
      endedLingerMs: 100
    })
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(proxyApplication(config), scope).pipe(
      Logger.withMinimumLogLevel(LogLevel.Warning)
    )
    const proxy: ProxyShape = Context.get(context, Proxy)
    const bus: BusShape = Context.get(context, Bus)
    yield* waitUntilReady(proxy)
    return { proxy, bus, stop: Scope.close(scope, Exit.void) }
  })

const childrenOf = (spans: ReadonlyArray<ReceivedSpan>, parent: ReceivedSpan) =>
  spans.filter((span) => span.parentSpanId === parent.spanId && span.traceId === parent.traceId)

const only = <A>(items: ReadonlyArray<A>, what: string): A => {
  expect(items, what).toHaveLength(1)
  return items[0]!
}

/** Every topic's messages, raw, on a plain (not queue-group) subscription. */
const recordRaw = (bus: BusShape, topic: string, into: Array<string>) =>
  Effect.orDie(bus.subscribe(topic, (payload) => Effect.sync(() => into.push(payload))))

describe("tracing (otel_endpoint set)", () => {
  it.scopedLive("a command's spans continue its traceparent: queue wait, the ARI request, the response publish", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const sim = yield* startSim()
      const { bus, stop } = yield* startTracedProxy(sim, receiver)
      const appStarts: Array<string> = []
      yield* recordRaw(bus, "app", appStarts)
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      yield* dialog.waitFor("StasisStart")

      // An application's span, as another process would send it.
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
      const callerSpanId = "00f067aa0ba902b7"
      yield* dialog.sendRaw(JSON.stringify({
        unique_id: "traced-answer",
        url: `/channels/${channelId}/answer`,
        method: "POST",
        body: "",
        traceparent: `00-${traceId}-${callerSpanId}-01`
      }))
      // Not a valid traceparent: ignored (the command is answered as ever, traced under the dialog).
      yield* dialog.sendRaw(JSON.stringify({
        unique_id: "garbled",
        url: `/channels/${channelId}`,
        method: "GET",
        body: "",
        traceparent: "00-not-a-trace-01"
      }))
      const hungUp = yield* dialog.request("DELETE", `/channels/${channelId}`)
      expect(hungUp.status_code).toBe(204)
      yield* Deferred.await(dialog.ended)
      const status = (uniqueId: string) => dialog.responses.find((r) => r.unique_id === uniqueId)?.status_code
      expect([status("traced-answer"), status("garbled")]).toEqual([204, 200])
      yield* stop
      const spans = receiver.spans
      expect(receiver.rejected).toEqual([])

      // The dialog: a root span from StasisStart to DialogEnded, whose context AppStart and events carry.
      const dialogSpan = only(spans.filter((s) => s.name === "dialog"), "one dialog span")
      expect(dialogSpan).toMatchObject({ parentSpanId: "", kind: kind.internal })
      expect(dialogSpan.attributes).toMatchObject({
        "ari_proxy.dialog_id": dialog.dialogId,
        "ari_proxy.application": "app",
        "ari_proxy.channel_id": channelId,
        "ari_proxy.server_id": "ast-traced",
        "ari_proxy.end_reason": "channels_left"
      })
      expect(dialogSpan.resource).toMatchObject({ "service.name": "proxy-under-test", "service.instance.id": "ast-traced" })
      const dialogTraceparent = `00-${dialogSpan.traceId}-${dialogSpan.spanId}-01`
      expect(JSON.parse(only(appStarts, "one AppStart"))).toEqual({
        application: "app",
        dialog_id: dialog.dialogId,
        server_id: "ast-traced",
        traceparent: dialogTraceparent
      })
      expect(dialog.events.map((e) => e.type)).toContain("DialogEnded")
      for (const event of dialog.events) expect((event as { traceparent?: string }).traceparent).toBe(dialogTraceparent)

      // The traced command: its span is a child of the caller's span, linked to the dialog's.
      const commands = spans.filter((s) => s.name === "command")
      const answer = only(commands.filter((s) => s.attributes["ari_proxy.unique_id"] === "traced-answer"), "answer")
      expect(answer).toMatchObject({ traceId, parentSpanId: callerSpanId, kind: kind.consumer })
      expect(answer.attributes).toMatchObject({
        "ari_proxy.dialog_id": dialog.dialogId,
        "ari_proxy.method": "POST",
        "ari_proxy.status_code": 204
      })
      expect(answer.links).toEqual([{ traceId: dialogSpan.traceId, spanId: dialogSpan.spanId }])
      const steps = childrenOf(spans, answer).sort((a, b) => Number(a.startNanos - b.startNanos))
      expect(steps.map((s) => s.name)).toEqual(["command queue", "POST /channels/{channelId}/answer", "publish response"])
      const [queued, ari, publish] = steps as [ReceivedSpan, ReceivedSpan, ReceivedSpan]
      expect(ari).toMatchObject({ kind: kind.client, status: 1 })
      expect(ari.attributes).toEqual({
        "http.request.method": "POST",
        "url.template": "/channels/{channelId}/answer",
        "http.response.status_code": 204
      })
      expect(publish).toMatchObject({ kind: kind.producer })
      expect(publish.attributes).toEqual({ "messaging.destination.name": `responses_${dialog.dialogId}` })
      // One after the other, inside the command's span.
      expect(queued.endNanos <= ari.startNanos && ari.endNanos <= publish.startNanos).toBe(true)
      expect(answer.startNanos <= queued.startNanos && publish.endNanos <= answer.endNanos).toBe(true)

      // Commands without a (valid) traceparent: children of the dialog span.
      for (const uniqueId of ["garbled", hungUp.unique_id]) {
        const command = only(commands.filter((s) => s.attributes["ari_proxy.unique_id"] === uniqueId), uniqueId)
        expect(command).toMatchObject({ traceId: dialogSpan.traceId, parentSpanId: dialogSpan.spanId, links: [] })
      }
      const hangup = only(commands.filter((s) => s.attributes["ari_proxy.method"] === "DELETE"), "the hangup")
      const hangupAri = only(childrenOf(spans, hangup).filter((s) => s.kind === kind.client), "its ARI request")
      expect(hangupAri.name).toBe("DELETE /channels/{channelId}")
      expect(hangupAri.attributes["http.response.status_code"]).toBe(204)
      // The ATTACH is answered by the proxy itself: a wait and a publish, no ARI request.
      const attach = only(commands.filter((s) => s.attributes["ari_proxy.method"] === "ATTACH"), "the attach")
      expect(childrenOf(spans, attach).map((s) => s.name).sort()).toEqual(["command queue", "publish response"])
    }))

  it.scopedLive("the typed client: requests inside a span carry it; dialog.trace is the proxy's dialog span", () =>
    Effect.gen(function*() {
      const receiver = yield* startOtlpReceiver
      const sim = yield* startSim()
      const { bus, stop } = yield* startTracedProxy(sim, receiver)
      const client = yield* makeAriClient(bus, { application: "app" })
      const seen = yield* Deferred.make<{ readonly trace: Tracer.ExternalSpan | undefined; readonly span: Tracer.Span }>()
      const listening = yield* Deferred.make<void>()
      yield* client.serve((dialog) =>
        Effect.gen(function*() {
          const caller = yield* dialog.firstChannel
          const span = yield* Effect.zipRight(caller.answer(), Effect.currentSpan).pipe(Effect.withSpan("app answers"))
          yield* caller.hangup()
          yield* dialog.ended
          yield* Deferred.succeed(seen, { trace: dialog.trace, span })
        }), { onListening: Deferred.succeed(listening, undefined) }).pipe(Effect.forkScoped)
      yield* Deferred.await(listening)
      sim.placeCall({ app: "app" })
      const { span, trace } = yield* Deferred.await(seen)

      // And a dialog the application asks for inside a span: the proxy's dialog span is its child.
      const asked = yield* Effect.scoped(
        Effect.zip(client.createDialog(), Effect.currentSpan).pipe(Effect.withSpan("app asks for a dialog"))
      )
      yield* stop
      const spans = receiver.spans

      const dialogSpans = spans.filter((s) => s.name === "dialog")
      expect(dialogSpans).toHaveLength(2)
      const inbound = only(dialogSpans.filter((s) => s.parentSpanId === ""), "the inbound call's dialog span")
      expect(trace).toMatchObject({ traceId: inbound.traceId, spanId: inbound.spanId })
      const answer = only(spans.filter((s) => s.name === "command" && s.attributes["ari_proxy.method"] === "POST"), "answer")
      expect(answer).toMatchObject({ traceId: span.traceId, parentSpanId: span.spanId })
      expect(childrenOf(spans, answer).map((s) => s.name)).toContain("POST /channels/{channelId}/answer")
      // Outside any span (the hangup, the lease renewals): under the dialog span.
      const hangup = only(spans.filter((s) => s.name === "command" && s.attributes["ari_proxy.method"] === "DELETE"), "hangup")
      expect(hangup).toMatchObject({ traceId: inbound.traceId, parentSpanId: inbound.spanId })

      const [requested, askingSpan] = asked
      const requestedSpan = only(dialogSpans.filter((s) => s.parentSpanId !== ""), "the requested dialog's span")
      expect(requestedSpan).toMatchObject({ traceId: askingSpan.traceId, parentSpanId: askingSpan.spanId })
      expect(requestedSpan.attributes["ari_proxy.dialog_id"]).toBe(requested.id)
      expect(requested.trace).toMatchObject({ traceId: requestedSpan.traceId, spanId: requestedSpan.spanId })
    }))
})

describe("tracing off (no otel_endpoint)", () => {
  it.scopedLive("nothing on the wire changes: AppStart and events carry no traceparent", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig()
      const appStarts: Array<string> = []
      yield* recordRaw(bus, "app", appStarts)
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      // A command may carry one all the same: it is answered as any other.
      yield* dialog.sendRaw(JSON.stringify({
        unique_id: "with-traceparent",
        url: `/channels/${channelId}`,
        method: "DELETE",
        body: "",
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
      }))
      yield* Deferred.await(dialog.ended)
      yield* eventually(() => dialog.responses.some((r) => r.unique_id === "with-traceparent"))
      expect(dialog.responses.find((r) => r.unique_id === "with-traceparent")?.status_code).toBe(204)
      expect(Object.keys(JSON.parse(only(appStarts, "one AppStart")))).toEqual(["application", "dialog_id", "server_id"])
      for (const event of dialog.events) {
        expect(Object.keys(event)).toEqual(["server_id", "timestamp", "type", "ari_body", "seq", "ari"])
      }
    }))
})
