import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Context, Deferred, Effect, Layer, Logger, LogLevel, Queue } from "effect"
import { Bus } from "../../src/bus/Bus.js"
import { ariProxyLayer } from "../../src/proxy/application.js"
import { Proxy } from "../../src/proxy/Proxy.js"
import { startApp } from "../support/apps.js"
import { startSim, waitUntilReady } from "../support/harness.js"

describe("the proxy as a Layer in a host application", () => {
  it.scopedLive("needs only its configuration, read from the host's ConfigProvider", () =>
    Effect.gen(function*() {
      const sim = yield* startSim()
      const provider = ConfigProvider.fromJson({
        applications: ["host-app"],
        stasis_url: sim.url,
        websocket_url: sim.wsUrl,
        ws_user: sim.credentials.username,
        ws_password: sim.credentials.password,
        message_bus: "MEMORY",
        server_id: "embedded"
      })
      const context = yield* Layer.build(ariProxyLayer.pipe(Layer.provide(Layer.setConfigProvider(provider)))).pipe(
        Logger.withMinimumLogLevel(LogLevel.Warning)
      )
      const proxy = Context.get(context, Proxy)
      const bus = Context.get(context, Bus)
      yield* waitUntilReady(proxy)
      const dialogs = yield* startApp(bus, "host-app")
      const channelId = sim.placeCall({ app: "host-app" })
      const dialog = yield* Queue.take(dialogs)
      expect(dialog.serverId).toBe("embedded")
      sim.hangup(channelId)
      yield* Deferred.await(dialog.ended)
    }))
})
