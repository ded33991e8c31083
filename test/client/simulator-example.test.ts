/**
 * The README's "Test your call flows without a PBX" example, as a real test: an application's call
 * flow (here the IVR example) against the ARI simulator and an in-process proxy on the in-memory
 * bus. An application imports the same names from "ari-proxy", "ari-proxy/client" and
 * "ari-proxy/simulator"; the paths below are those entry points' sources.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Layer } from "effect"
import { Bus, makeMemoryBus, makeProxyConfig, Proxy, ProxyConfigService, proxyLayerWithAri } from "../../src/index.js"
import { makeAriClient } from "../../src/client/index.js"
import { makeSimulator } from "../../src/simulator/index.js"
import { ivr, type IvrOutcome } from "../../examples/ivr.js"

/** The simulator, a proxy connected to it and a client of `application`, all on one in-memory bus. */
const pbxInABox = (application: string) =>
  Effect.gen(function*() {
    const sim = yield* makeSimulator()
    const bus = yield* makeMemoryBus
    const config = makeProxyConfig({
      applications: [application],
      stasisUrl: sim.url,
      websocketUrl: sim.wsUrl,
      wsUser: sim.credentials.username,
      wsPassword: sim.credentials.password
    })
    const proxyLayer = proxyLayerWithAri.pipe(
      Layer.provide(Layer.succeed(Bus, bus)),
      Layer.provide(ProxyConfigService.layerFrom(config))
    )
    const proxy = Context.get(yield* Layer.build(proxyLayer), Proxy)
    while (!(yield* proxy.ready)) yield* Effect.sleep(10) // until it holds the simulator's websocket
    return { sim, client: yield* makeAriClient(bus, { application }) }
  })

describe("testing a call flow against the simulator", () => {
  it.scopedLive("a caller who presses 9 hears the goodbye and is hung up on", () =>
    Effect.gen(function*() {
      const { sim, client } = yield* pbxInABox("my-ivr")
      const outcome = yield* Deferred.make<IvrOutcome>()
      yield* client.serve((dialog) =>
        ivr(dialog, { agentEndpoint: "PJSIP/bob" }).pipe(Effect.flatMap((done) => Deferred.succeed(outcome, done)))
      ).pipe(Effect.forkScoped)

      const caller = sim.placeCall({ app: "my-ivr", caller: { name: "Alice", number: "1001" } })
      yield* Effect.promise(() => sim.waitForEvent((event) => event.type === "PlaybackStarted"))
      sim.sendDtmf(caller, "9")

      expect(yield* Deferred.await(outcome)).toBe("goodbye")
      const played = sim.requests().flatMap((request) => request.query.media ?? [])
      expect(played).toEqual(["sound:hello-world", "sound:demo-congrats"])
      expect(sim.channels()).toHaveLength(0)
    }))
})
