/**
 * The renaming between the application names bus clients know and the names a proxy registers at
 * Asterisk with `stasis_broadcast`: frames come back under the bus name, commands go out under the
 * registered one, and nothing else in either is touched.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { makeBroadcastNames } from "../../src/ari/broadcast.js"

const names = makeBroadcastNames("{app}-{server_id}", ["sales", "support"], "ast1")

describe("broadcast names", () => {
  it("registers each application under the template", () => {
    expect(names.registered).toEqual(["sales-ast1", "support-ast1"])
    expect(names.onBus("support-ast1")).toBe("support")
    expect(names.atAsterisk("sales")).toBe("sales-ast1")
    expect(names.onBus("someone-else")).toBe("someone-else")
  })

  it("renames the event's own application, not one named inside it", () => {
    const frame = "{\"type\":\"ChannelUserevent\",\"userevent\":{\"application\":\"sales-ast1\"},\"asterisk_id\":\"x\"," +
      "\"application\":\"sales-ast1\"}"
    expect(names.frameOnBus(frame)).toBe(
      "{\"type\":\"ChannelUserevent\",\"userevent\":{\"application\":\"sales-ast1\"},\"asterisk_id\":\"x\"," +
        "\"application\":\"sales\"}"
    )
    const other = "{\"type\":\"StasisStart\",\"application\":\"sales-ast2\"}"
    expect(names.frameOnBus(other)).toBe(other)
  })

  it("renames app= and application= in the query and the JSON body, and /applications/<app>", () => {
    expect(names.commandAtAsterisk({ method: "POST", url: "/channels?endpoint=PJSIP%2Fbob&app=sales", body: "" }))
      .toEqual({ method: "POST", url: "/channels?endpoint=PJSIP%2Fbob&app=sales-ast1", body: "" })
    expect(names.commandAtAsterisk({ method: "POST", url: "/channels", body: "{\"app\":\"support\",\"x\":1}" }))
      .toEqual({ method: "POST", url: "/channels", body: "{\"app\":\"support-ast1\",\"x\":1}" })
    expect(names.commandAtAsterisk({ method: "POST", url: "/events/user/ping?application=sales", body: "" }).url)
      .toBe("/events/user/ping?application=sales-ast1")
    expect(names.commandAtAsterisk({ method: "GET", url: "/applications/sales", body: "" }).url)
      .toBe("/applications/sales-ast1")
    // Another application's name is left as it is.
    const elsewhere = { method: "POST", url: "/channels?app=billing", body: "{\"app\":\"billing\"}" }
    expect(names.commandAtAsterisk(elsewhere)).toBe(elsewhere)
  })

  it("leaves every command that names none of the applications exactly as it was", () => {
    // Names of parameters that may carry an application, so that the renaming is looked for.
    const segment = fc.oneof(
      fc.stringMatching(/^[A-Za-z0-9._~+-]{0,12}$/),
      fc.constantFrom("app", "application", "applications")
    )
    const query = fc.array(fc.tuple(segment, segment).map(([name, value]) => `${name}=${value}`), { maxLength: 4 })
    fc.assert(fc.property(fc.array(segment, { minLength: 1, maxLength: 4 }), query, fc.json(), (path, pairs, body) => {
      const url = "/" + path.join("/") + (pairs.length === 0 ? "" : "?" + pairs.join("&"))
      const request = { method: "POST", url, body }
      const named = /(^|[^A-Za-z0-9])(sales|support)([^A-Za-z0-9-]|$)/.test(url + body)
      fc.pre(!named)
      expect(names.commandAtAsterisk(request)).toEqual(request)
    }), { numRuns: 500 })
  })
})
