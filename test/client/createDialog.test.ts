/**
 * App-initiated dialogs through the client, over every bus driver.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeAriClient } from "../../src/client/AriClient.js"
import { makeRig, startProxy, startSim } from "../support/harness.js"
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
        const client = makeAriClient(clientBus, { application: app })
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

    it.scopedLive("fails with DialogRequestTimeout when no proxy serves the server_id", () =>
      Effect.gen(function*() {
        const app = uniqueApp("nobody")
        const { proxyBus, clientBus } = yield* driver.connect
        const sim = yield* startSim()
        yield* startProxy(sim, proxyBus, { applications: [app] })
        const client = makeAriClient(clientBus, { application: app })
        const error = yield* Effect.flip(client.createDialog({ serverId: "no-such-server", timeoutMs: 200 }))
        expect(error).toMatchObject({ _tag: "DialogRequestTimeout", topic: `dialogs_${app}@no-such-server` })
      }))
  })
}

describe("createDialog refused", () => {
  it.scopedLive("a proxy without a connection to Asterisk answers 503: DialogRequestRefused with its message", () =>
    Effect.gen(function*() {
      const { sim, bus, proxy } = yield* makeRig()
      sim.setWebsocketMode("refuse")
      sim.dropWebsockets()
      while (yield* proxy.ready) yield* Effect.sleep(5)
      const error = yield* Effect.flip(makeAriClient(bus, { application: "app" }).createDialog())
      expect(error).toMatchObject({ _tag: "DialogRequestRefused", status: 503, serverId: "ast-test" })
      expect(error.message).toContain("no connection to Asterisk")
    }))
})
