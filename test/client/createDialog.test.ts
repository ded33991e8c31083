/**
 * App-initiated dialogs through the client, over every bus driver.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeAriClient } from "../../src/client/AriClient.js"
import { eventually, makeRig, startProxy, startSim } from "../support/harness.js"
import { drivers, uniqueApp } from "./drivers.js"

for (const driver of drivers) {
  describe(`createDialog over ${driver.name}`, () => {
    afterAll(driver.cleanup)

    it.scopedLive("asks the proxy of a server_id for a dialog; an originate with its channelId lands there", () =>
      Effect.gen(function*() {
        const app = uniqueApp("created")
        const { proxyBus, clientBus } = yield* driver.connect
        const sim = yield* startSim()
        const { proxy } = yield* startProxy(sim, proxyBus, { applications: [app], endedLingerMs: 100 })
        const appStarts: Array<string> = []
        yield* Effect.orDie(proxyBus.subscribe(app, (payload) => Effect.sync(() => appStarts.push(payload))))
        const client = yield* makeAriClient(clientBus, { application: app })
        const dialog = yield* client.createDialog({ serverId: "ast-test" })
        expect(dialog).toMatchObject({ serverId: "ast-test", application: app })
        expect(proxy.dialogs().map((d) => d.id)).toContain(dialog.id)
        const callee = yield* dialog.channels.originate({ endpoint: "PJSIP/bob" })
        const start = yield* callee.started
        expect(start.channel.id).toBe(callee.id)
        yield* dialog.waitFor("Dial", (e) => e.peer.id === callee.id) // events before StasisStart land there too
        yield* callee.hangup()
        expect((yield* dialog.ended).reason).toBe("channels_left")
        expect(appStarts).toHaveLength(0)
      }))

    it.scopedLive("without a server_id, asks the proxy that presence says is ready and serves the application", () =>
      Effect.gen(function*() {
        const app = uniqueApp("chosen")
        const { proxyBus, clientBus } = yield* driver.connect
        // Its topics are prefixed so that no other test's proxies come into view.
        const prefix = `${app}.`
        yield* startProxy(yield* startSim(), proxyBus, {
          applications: [`${app}-other`],
          serverId: `${app}-a`,
          bus: { subjectPrefix: prefix }
        })
        const { proxy } = yield* startProxy(yield* startSim(), proxyBus, {
          applications: [app],
          serverId: `${app}-b`,
          bus: { subjectPrefix: prefix }
        })
        const client = yield* makeAriClient(clientBus, { application: app, prefix })
        const dialog = yield* client.createDialog()
        expect(dialog.serverId).toBe(`${app}-b`)
        expect(proxy.dialogs().map((d) => d.id)).toEqual([dialog.id])
        expect((yield* client.proxies.current).map((p) => p.serverId).sort()).toEqual([`${app}-a`, `${app}-b`])
      }))

    it.scopedLive("fails with DialogRequestTimeout when no proxy serves the server_id", () =>
      Effect.gen(function*() {
        const app = uniqueApp("nobody")
        const { proxyBus, clientBus } = yield* driver.connect
        const sim = yield* startSim()
        yield* startProxy(sim, proxyBus, { applications: [app] })
        const client = yield* makeAriClient(clientBus, { application: app })
        const error = yield* Effect.flip(client.createDialog({ serverId: "no-such-server", timeoutMs: 200 }))
        expect(error).toMatchObject({ _tag: "DialogRequestTimeout", topic: `dialogs_${app}@no-such-server` })
      }))
  })
}

describe("createDialog refused", () => {
  it.scopedLive("a proxy without a connection to Asterisk is not chosen; asked by its server_id it answers 503", () =>
    Effect.gen(function*() {
      const { sim, bus, proxy } = yield* makeRig()
      const client = yield* makeAriClient(bus, { application: "app" })
      yield* eventually(() => Effect.runSync(client.proxies.current).some((p) => p.ready))
      sim.setWebsocketMode("refuse")
      sim.dropWebsockets()
      while (yield* proxy.ready) yield* Effect.sleep(5)
      // Its heartbeat says so at once, not an interval later.
      yield* eventually(() => Effect.runSync(client.proxies.current).every((p) => !p.ready))
      const none = yield* Effect.flip(client.createDialog({ timeoutMs: 300 }))
      expect(none).toMatchObject({ _tag: "NoProxyAvailable", application: "app", proxies: "ast-test: not ready" })
      const error = yield* Effect.flip(client.createDialog({ serverId: "ast-test" }))
      expect(error).toMatchObject({ _tag: "DialogRequestRefused", status: 503, serverId: "ast-test" })
      expect(error.message).toContain("no connection to Asterisk")
    }))
})
