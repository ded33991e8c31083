/**
 * Route templates of ARI requests: the low-cardinality name of a request's span.
 */
import { describe, expect, it } from "@effect/vitest"
import { routeTemplate } from "../../src/ari/routes.js"

describe("routeTemplate", () => {
  it("names the operation a request asks for, its ids as placeholders", () => {
    expect(routeTemplate("POST", "/channels/1796034496.2/answer")).toBe("/channels/{channelId}/answer")
    expect(routeTemplate("post", "/channels/1796034496.2/play?media=sound:hello-world")).toBe(
      "/channels/{channelId}/play"
    )
    expect(routeTemplate("", "/channels/1796034496.2")).toBe("/channels/{channelId}") // "" is GET
    expect(routeTemplate("DELETE", "/channels/1796034496.2")).toBe("/channels/{channelId}")
    expect(routeTemplate("POST", "/bridges/b-1/addChannel?channel=c-1")).toBe("/bridges/{bridgeId}/addChannel")
    expect(routeTemplate("GET", "/asterisk/info")).toBe("/asterisk/info")
  })

  it("prefers a literal segment to a placeholder", () => {
    expect(routeTemplate("POST", "/channels/create")).toBe("/channels/create")
    expect(routeTemplate("POST", "/channels/my-own-id")).toBe("/channels/{channelId}")
  })

  it("names nothing ARI does not have, nor an empty id", () => {
    expect(routeTemplate("GET", "/nothing/here")).toBeUndefined()
    expect(routeTemplate("PATCH", "/channels/c-1")).toBeUndefined()
    expect(routeTemplate("POST", "/channels//answer")).toBeUndefined()
  })
})
