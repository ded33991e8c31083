/**
 * `ari_event_filter`: the proxy sets each application's event filter at Asterisk after every
 * connect, so the types it names never cross the wire.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Queue } from "effect"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { startApp } from "../support/apps.js"
import { eventually, makeRig } from "../support/harness.js"

const authorization = "Basic " + Buffer.from("asterisk:asterisk").toString("base64")

/** The application as ARI shows it (its filter included). */
const application = (sim: SimulatorHandle, app: string) =>
  Effect.promise(() =>
    fetch(`${sim.url}/applications/${app}`, { headers: { authorization } }).then((r) => r.json() as Promise<{
      events_allowed: ReadonlyArray<{ type: string }>
      events_disallowed: ReadonlyArray<{ type: string }>
    }>)
  )

const filterPuts = (sim: SimulatorHandle) =>
  sim.requests().filter((r) => r.method === "PUT" && r.path.endsWith("/eventFilter"))

describe.each(["http", "websocket"] as const)("event filters pushed to Asterisk (REST over %s)", (transport) => {
  it.scopedLive("set for every application; the types it drops never reach ARI's socket or a dialog", () =>
    Effect.gen(function*() {
      const { sim, bus } = yield* makeRig({
        config: {
          applications: ["app", "other"],
          ariRestTransport: transport,
          ariEventFilter: { disallowed: ["ChannelVarset", "ChannelDtmfReceived"] }
        }
      })
      yield* eventually(() => filterPuts(sim).length === 2)
      expect(filterPuts(sim).map((r) => [r.path, r.transport])).toEqual([
        ["/ari/applications/app/eventFilter", transport],
        ["/ari/applications/other/eventFilter", transport]
      ])
      for (const app of ["app", "other"]) {
        expect(yield* application(sim, app)).toMatchObject({
          events_allowed: [],
          events_disallowed: [{ type: "ChannelVarset" }, { type: "ChannelDtmfReceived" }]
        })
      }
      const dialogs = yield* startApp(bus, "app")
      const channelId = sim.placeCall({ app: "app" })
      const dialog = yield* Queue.take(dialogs)
      sim.sendDtmf(channelId, "12", 5)
      expect((yield* dialog.request("DELETE", `/channels/${channelId}`)).status_code).toBe(204)
      yield* Deferred.await(dialog.ended)
      expect(dialog.events.map((e) => e.type)).toEqual(["StasisStart", "ChannelHangupRequest", "StasisEnd", "DialogEnded"])
      expect(sim.events("app").map((e) => e.type)).toEqual(["StasisStart", "ChannelHangupRequest", "StasisEnd"])
    }))

  it.scopedLive("set again after a reconnect, when Asterisk forgot the application with its filter", () =>
    Effect.gen(function*() {
      const { sim, proxy } = yield* makeRig({
        config: {
          ariRestTransport: transport,
          ariEventFilter: { allowed: ["StasisStart", "StasisEnd", "ChannelDestroyed", "RESTResponse", "Dial"] }
        }
      })
      yield* eventually(() => filterPuts(sim).length === 1)
      sim.setWebsocketMode("refuse")
      sim.dropWebsockets()
      yield* eventually(() => sim.connectedApps().length === 0)
      sim.setWebsocketMode("accept")
      yield* eventually(() => sim.connectedApps().includes("app"))
      yield* eventually(() => filterPuts(sim).length === 2)
      const shown = yield* application(sim, "app")
      expect(shown.events_allowed.map((e) => e.type)).toEqual([
        "StasisStart",
        "StasisEnd",
        "ChannelDestroyed",
        "RESTResponse",
        "Dial"
      ])
      expect((yield* proxy.stats).ariReconnects).toBe(1)
    }))
})
