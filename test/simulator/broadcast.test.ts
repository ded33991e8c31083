/**
 * StasisBroadcast and `POST /events/claim`, as Asterisk 23.4.1 was seen doing them (docs/asterisk.md,
 * "Two proxies for one Asterisk"): the offer to the applications matching the filter, the first
 * claim winning, 409 for the others, 404 past the timeout, TIMEOUT when nobody claims.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { SimulatorHandle } from "../../src/simulator/index.js"
import { startSimulator } from "../../src/simulator/index.js"
import type { EventClient, Json } from "./helpers.js"
import { ari, connectEvents, keysOf, sleep } from "./helpers.js"

let sim: SimulatorHandle

beforeAll(async () => {
  sim = await startSimulator({
    // An unclaimed call of extension `bcq` goes on to Answer (priority 3) after StasisBroadcast.
    dialplan: { "from-sipp": { bcq: [{ app: "NoOp" }, { app: "StasisBroadcast" }, { app: "Answer" }] } }
  })
})
afterAll(async () => {
  await sim.close()
})
afterEach(() => {
  sim.reset()
})

const claim = (channelId: string, application: string) =>
  ari(sim, "POST", `/events/claim?channelId=${encodeURIComponent(channelId)}&application=${application}`)

/** An application subscribed to everything: it sees the channel's dialplan variables, as an operator would. */
const observe = () => connectEvents(sim, "observer", { subscribeAll: true })

const stasisStatus = (observer: EventClient, channelId: string) =>
  observer.waitFor((e) =>
    e.type === "ChannelVarset" && e.variable === "STASISSTATUS" && e.value !== "" &&
    (e.channel as Json).id === channelId
  ).then((e) => e.value)

describe("StasisBroadcast", () => {
  it("offers the call to the matching applications only, with caller and called, and the first claim wins", async () => {
    const bc1 = await connectEvents(sim, "bc1")
    const bc2 = await connectEvents(sim, "bc2")
    const other = await connectEvents(sim, "other")
    const observer = await observe()
    const channelId = sim.placeBroadcastCall({
      appFilter: "^bc[12]$",
      timeoutMs: 3000,
      args: ["sales", "prio"],
      notifyClaimed: true,
      caller: { name: "sipp", number: "1001" },
      exten: "capbc"
    })
    const offer1 = await bc1.waitForType("CallBroadcast")
    const offer2 = await bc2.waitForType("CallBroadcast")
    expect(keysOf(bc1.raw[bc1.events.indexOf(offer1)]!)).toEqual([
      "type",
      "timestamp",
      "channel",
      "caller",
      "called",
      "asterisk_id",
      "application"
    ])
    expect(offer1).toMatchObject({ caller: "1001", called: "capbc", application: "bc1" })
    expect(offer2).toMatchObject({ application: "bc2" })
    expect(offer1.channel).toMatchObject({
      id: channelId,
      state: "Ring",
      dialplan: { app_name: "StasisBroadcast", app_data: "3000,^bc[12]$,sales:prio,yes" }
    })

    const won = await claim(channelId, "bc2")
    expect(won.status).toBe(204)
    const lost = await claim(channelId, "bc1")
    expect(lost.status).toBe(409)
    expect(lost.statusText).toBe("Conflict")
    expect(lost.json()).toEqual({ message: "Channel has already been claimed by another application" })

    const start = await bc2.waitForType("StasisStart")
    expect(start).toMatchObject({ args: ["sales", "prio"], application: "bc2" })
    expect((start.channel as Json).dialplan).toMatchObject({ app_name: "StasisBroadcast" })
    for (const client of [bc1, bc2]) {
      expect(await client.waitForType("CallClaimed")).toMatchObject({ winner_app: "bc2" })
    }
    await sleep(20)
    expect(bc1.types()).not.toContain("StasisStart")
    expect(other.events).toEqual([])

    // The winner's StasisEnd sends the call back to the dialplan with SUCCESS.
    sim.hangup(channelId)
    await bc2.waitForType("StasisEnd")
    expect(await stasisStatus(observer, channelId)).toBe("SUCCESS")
    expect(observer.types()).not.toContain("CallBroadcast")
    expect(observer.types()).not.toContain("StasisStart")
    await Promise.all([bc1.close(), bc2.close(), other.close(), observer.close()])
  })

  it("without notify_claimed no CallClaimed is sent", async () => {
    const bc1 = await connectEvents(sim, "bc1")
    const channelId = sim.placeBroadcastCall({ appFilter: "^bc1$" })
    await bc1.waitForType("CallBroadcast")
    expect((await claim(channelId, "bc1")).status).toBe(204)
    await bc1.waitForType("StasisStart")
    expect(bc1.types()).not.toContain("CallClaimed")
    await bc1.close()
  })

  it("nobody claiming: STASISSTATUS=TIMEOUT, the dialplan goes on, no event to any application, a late claim 404", async () => {
    const bc1 = await connectEvents(sim, "bc1")
    const observer = await observe()
    const channelId = sim.placeBroadcastCall({ appFilter: "^bc1$", timeoutMs: 30, exten: "bcq" })
    await bc1.waitForType("CallBroadcast")
    expect(await stasisStatus(observer, channelId)).toBe("TIMEOUT")
    // Priority 3 of bcq: Answer.
    await observer.waitFor((e) => e.type === "ChannelStateChange" && (e.channel as Json).state === "Up")
    expect(bc1.types()).toEqual(["CallBroadcast"])
    const late = await claim(channelId, "bc1")
    expect(late.status).toBe(404)
    expect(late.json()).toEqual({ message: "Channel not found or not in broadcast state" })
    await Promise.all([bc1.close(), observer.close()])
  })

  it("an unclaimed call with no more dialplan hangs up", async () => {
    const bc1 = await connectEvents(sim, "bc1")
    const observer = await observe()
    const channelId = sim.placeBroadcastCall({ appFilter: "^bc1$", timeoutMs: 10 })
    await bc1.waitForType("CallBroadcast")
    await observer.waitFor((e) => e.type === "ChannelDestroyed" && (e.channel as Json).id === channelId)
    expect(sim.channels()).toEqual([])
    await Promise.all([bc1.close(), observer.close()])
  })

  it("refuses claims without parameters, of unknown channels, and by GET; takes them in a JSON body", async () => {
    const bc1 = await connectEvents(sim, "bc1")
    expect((await ari(sim, "POST", "/events/claim?application=bc1")).json()).toEqual({
      message: "channelId parameter is required"
    })
    expect((await ari(sim, "POST", "/events/claim?channelId=1")).json()).toEqual({
      message: "application parameter is required"
    })
    expect((await claim("no-such", "bc1")).status).toBe(404)
    expect((await ari(sim, "GET", "/events/claim")).status).toBe(405)
    // An ordinary Stasis channel is not on offer.
    const plain = sim.placeCall({ app: "bc1" })
    expect((await claim(plain, "bc1")).status).toBe(404)

    const channelId = sim.placeBroadcastCall({ appFilter: "^bc1$" })
    const byBody = await ari(sim, "POST", "/events/claim", {
      body: JSON.stringify({ channelId, application: "bc1" }),
      contentType: "application/json"
    })
    expect(byBody.status).toBe(204)
    await bc1.waitFor((e) => e.type === "StasisStart" && (e.channel as Json).id === channelId)
    await bc1.close()
  })

  it("the StasisStart goes to the application the claim names, even one outside the filter", async () => {
    const bc1 = await connectEvents(sim, "bc1")
    const outside = await connectEvents(sim, "outside")
    const channelId = sim.placeBroadcastCall({ appFilter: "^bc1$" })
    await bc1.waitForType("CallBroadcast")
    expect((await claim(channelId, "outside")).status).toBe(204)
    await outside.waitForType("StasisStart")
    expect(outside.types()).toEqual(["StasisStart"])
    await Promise.all([bc1.close(), outside.close()])
  })

  it("a claim naming an application with no websocket wins, and the Stasis fails", async () => {
    const bc1 = await connectEvents(sim, "bc1")
    const observer = await observe()
    const channelId = sim.placeBroadcastCall({ appFilter: "^bc1$", exten: "bcq" })
    await bc1.waitForType("CallBroadcast")
    expect((await claim(channelId, "ghost")).status).toBe(204)
    expect(await stasisStatus(observer, channelId)).toBe("FAILED")
    expect((await claim(channelId, "bc1")).status).toBe(409)
    await Promise.all([bc1.close(), observer.close()])
  })

  it("an event filter that disallows CallBroadcast keeps the offer away, not the CallClaimed", async () => {
    const bc1 = await connectEvents(sim, "bc1")
    const bc2 = await connectEvents(sim, "bc2")
    const filter = await ari(sim, "PUT", "/applications/bc2/eventFilter", {
      body: JSON.stringify({ disallowed: [{ type: "CallBroadcast" }] }),
      contentType: "application/json"
    })
    expect(filter.status).toBe(200)
    const channelId = sim.placeBroadcastCall({ appFilter: "^bc[12]$", notifyClaimed: true })
    await bc1.waitForType("CallBroadcast")
    expect((await claim(channelId, "bc1")).status).toBe(204)
    expect(await bc2.waitForType("CallClaimed")).toMatchObject({ winner_app: "bc1" })
    expect(bc2.types()).toEqual(["CallClaimed"])
    await Promise.all([bc1.close(), bc2.close()])
  })

  it("claims over REST on the websocket: one 204, the other 409, one StasisStart", async () => {
    const bc1 = await connectEvents(sim, "bc1")
    const bc2 = await connectEvents(sim, "bc2")
    const channelId = sim.placeBroadcastCall({ appFilter: "^bc[12]$" })
    await Promise.all([bc1.waitForType("CallBroadcast"), bc2.waitForType("CallBroadcast")])
    const claimFrame = (requestId: string, application: string) =>
      JSON.stringify({
        type: "RESTRequest",
        request_id: requestId,
        method: "POST",
        uri: "events/claim",
        query_strings: [{ name: "channelId", value: channelId }, { name: "application", value: application }]
      })
    bc1.ws.send(claimFrame("c-1", "bc1"))
    bc2.ws.send(claimFrame("c-2", "bc2"))
    const answers = await Promise.all([
      bc1.waitFor((e) => e.type === "RESTResponse" && e.request_id === "c-1"),
      bc2.waitFor((e) => e.type === "RESTResponse" && e.request_id === "c-2")
    ])
    expect(answers.map((a) => a.status_code).sort()).toEqual([204, 409])
    const winner = answers[0]!.status_code === 204 ? bc1 : bc2
    const loser = winner === bc1 ? bc2 : bc1
    await winner.waitForType("StasisStart")
    await sleep(20)
    expect(loser.types()).not.toContain("StasisStart")
    await Promise.all([bc1.close(), bc2.close()])
  })
})
