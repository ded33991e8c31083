import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, FastCheck, Fiber, Layer, Option, Redacted } from "effect"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { AriRest, type AriRestOptions, describeRequest, validateAriRequest } from "../../src/ari/rest.js"
import { ProxyMetricsService } from "../../src/observability/metrics.js"
import { quietAddress } from "../support/ports.js"

interface SeenRequest {
  readonly method: string
  readonly url: string
  readonly headers: IncomingMessage["headers"]
  readonly body: string
}

type Handler = (request: SeenRequest, response: ServerResponse) => void

const answerJson: Handler = (request, response) => {
  response.writeHead(200, { "content-type": "application/json" })
  response.end(JSON.stringify({ method: request.method, url: request.url }))
}

/** A small fake ARI REST server on 127.0.0.1 that records what reaches it. */
const fakeAri = (handler: Handler = answerJson) =>
  Effect.acquireRelease(
    Effect.async<{ port: number; seen: Array<SeenRequest>; connections: () => number; close: () => void }>(
      (resume) => {
        const seen: Array<SeenRequest> = []
        let connections = 0
        const server = createServer((request, response) => {
          const chunks: Array<Buffer> = []
          request.on("data", (chunk: Buffer) => chunks.push(chunk))
          request.on("end", () => {
            const entry = {
              method: request.method ?? "",
              url: request.url ?? "",
              headers: request.headers,
              body: Buffer.concat(chunks).toString("utf8")
            }
            seen.push(entry)
            handler(entry, response)
          })
        })
        server.on("connection", () => connections++)
        server.listen(0, "127.0.0.1", () => {
          const port = (server.address() as AddressInfo).port
          resume(Effect.succeed({
            port,
            seen,
            connections: () => connections,
            close: () => {
              server.closeAllConnections()
              server.close()
            }
          }))
        })
      }
    ),
    (server) => Effect.sync(() => server.close())
  )

const optionsFor = (port: number, overrides: Partial<AriRestOptions> = {}, host = "127.0.0.1"): AriRestOptions => ({
  stasisUrl: `http://${host}:${port}/ari`,
  user: "asterisk",
  password: Redacted.make("s3cr&t:pässword"),
  commandTimeoutMs: 2_000,
  connections: 4,
  ...overrides
})

const restOn = (port: number, overrides: Partial<AriRestOptions> = {}, host?: string) =>
  Layer.build(AriRest.layer(optionsFor(port, overrides, host)).pipe(Layer.provide(ProxyMetricsService.layer))).pipe(
    Effect.map(Context.get(AriRest))
  )

describe("AriRest: what reaches ARI", () => {
  it.scopedLive("sends path, query, Basic auth, no api_key; content-type only with a body", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri()
      const rest = yield* restOn(server.port)

      const post = yield* rest.execute({
        method: "post",
        url: "/channels/1428589529.12/play?media=sound%3Avm-login&lang=en",
        body: "{\"playbackId\":\"pb-1\"}"
      })
      expect(post.status).toBe(200)
      const get = yield* rest.execute({ method: "GET", url: "/channels", body: "" })
      expect(get.status).toBe(200)

      const [first, second] = server.seen
      expect(first!.method).toBe("POST")
      expect(first!.url).toBe("/ari/channels/1428589529.12/play?media=sound%3Avm-login&lang=en")
      expect(first!.body).toBe("{\"playbackId\":\"pb-1\"}")
      expect(first!.headers["content-type"]).toBe("application/json")
      const expectedAuth = "Basic " + Buffer.from("asterisk:s3cr&t:pässword", "utf8").toString("base64")
      expect(first!.headers.authorization).toBe(expectedAuth)
      expect(first!.url).not.toContain("api_key")

      expect(second!.method).toBe("GET")
      expect(second!.url).toBe("/ari/channels")
      expect(second!.body).toBe("")
      expect(second!.headers["content-type"]).toBeUndefined()
      expect(second!.headers.authorization).toBe(expectedAuth)
    }))

  it.scopedLive("turns the top-level scalars of a GET/DELETE body into query parameters", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri()
      const rest = yield* restOn(server.port)
      yield* rest.execute({
        method: "GET",
        url: "/channels/c1/variable",
        body: "{\"variable\":\"FOO BAR&x\",\"n\":3,\"on\":true,\"skip\":null}"
      })
      yield* rest.execute({ method: "DELETE", url: "/channels/c1?x=1", body: "{\"reason\":\"normal\"}" })
      yield* rest.execute({ method: "delete", url: "/bridges/b1", body: "{}" })
      expect(server.seen.map((request) => `${request.method} ${request.url} [${request.body}]`)).toEqual([
        "GET /ari/channels/c1/variable?variable=FOO%20BAR%26x&n=3&on=true []",
        "DELETE /ari/channels/c1?x=1&reason=normal []",
        "DELETE /ari/bridges/b1 []"
      ])
      expect(server.seen.every((request) => request.headers["content-type"] === undefined)).toBe(true)
    }))

  it.scopedLive("passes ARI's status and body through; 204 gives an empty body", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri((request, response) => {
        if (request.url.endsWith("/answer")) {
          response.writeHead(204)
          response.end()
        } else {
          response.writeHead(404, "Not found", { "content-type": "application/json" })
          response.end("{\"message\":\"Channel not found\"}")
        }
      })
      const rest = yield* restOn(server.port)
      expect(yield* rest.execute({ method: "POST", url: "/channels/c1/answer", body: "" }))
        .toEqual({ status: 204, body: "" })
      expect(yield* rest.execute({ method: "GET", url: "/channels/nope", body: "" }))
        .toEqual({ status: 404, body: "{\"message\":\"Channel not found\"}" })
    }))

  // undici waits one event-loop turn before reusing a socket (pipelining 1), so a request sent in
  // the same turn as the very first answer may open a second socket; after that nothing new opens.
  it.scopedLive("reuses keep-alive sockets: 50 sequential requests open at most 2, then none", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri()
      const rest = yield* restOn(server.port)
      const run50 = Effect.gen(function*() {
        for (let index = 0; index < 50; index++) {
          const reply = yield* rest.execute({ method: "GET", url: `/channels/c${index}`, body: "" })
          expect(reply.status).toBe(200)
        }
      })
      yield* run50
      const afterFirst = server.connections()
      expect(afterFirst).toBeLessThanOrEqual(2)
      yield* run50
      expect(server.seen.length).toBe(100)
      expect(server.connections()).toBe(afterFirst)
    }))

  it.scopedLive("sequential requests with a pause between them use a single socket", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri()
      const rest = yield* restOn(server.port)
      for (let index = 0; index < 20; index++) {
        yield* rest.execute({ method: "GET", url: "/asterisk/ping", body: "" })
        yield* Effect.sleep("1 millis")
      }
      expect(server.connections()).toBe(1)
    }))

  it.scopedLive("listChannels returns the channels and the Stasis application each is in", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri((_request, response) => {
        response.writeHead(200, { "content-type": "application/json" })
        response.end(JSON.stringify([
          { id: "a.1", name: "PJSIP/x", dialplan: { app_name: "Stasis", app_data: "my-app,arg1" } },
          { id: "b.2", dialplan: { app_name: "Wait", app_data: "30" } },
          { id: "c.3" }
        ]))
      })
      const rest = yield* restOn(server.port)
      expect(yield* rest.listChannels()).toEqual([
        { id: "a.1", stasisApplication: "my-app" },
        { id: "b.2", stasisApplication: undefined },
        { id: "c.3", stasisApplication: undefined }
      ])
    }))
})

describe("AriRest: refused commands never reach ARI", () => {
  const refused: ReadonlyArray<readonly [string, string, string, string?]> = [
    ["absolute http url", "GET", "http://evil.example/ari/channels"],
    ["absolute https url", "GET", "https://evil.example/"],
    ["scheme-relative url", "GET", "//evil.example/channels"],
    ["relative without slash", "GET", "channels"],
    ["empty url", "GET", ""],
    ["dot-dot segment", "GET", "/channels/../../etc/passwd"],
    ["trailing dot-dot", "GET", "/channels/.."],
    ["dot segment", "GET", "/./channels"],
    ["encoded dot-dot", "GET", "/channels/%2e%2e/asterisk"],
    ["encoded dot-dot upper case", "GET", "/channels/%2E%2E"],
    ["double-encoded dot-dot", "GET", "/channels/%252e%252e/x"],
    ["encoded slash", "GET", "/channels/a%2fb"],
    ["backslash", "GET", "/channels\\..\\x"],
    ["CRLF in url", "GET", "/channels\r\nX-Injected: 1"],
    ["LF in url", "GET", "/channels\nfoo"],
    ["NUL in url", "GET", "/channels\u0000"],
    ["space in url", "GET", "/channels HTTP/1.1"],
    ["tab in url", "GET", "/channels\tx"],
    ["fragment", "GET", "/channels#frag"],
    ["malformed percent-encoding", "GET", "/channels/%zz"],
    ["CRLF in method", "GET\r\n", "/channels"],
    ["space in method", "GET ", "/channels"],
    ["unknown method", "PATCH", "/asterisk/info"],
    ["CONNECT", "CONNECT", "/channels"],
    ["TRACE", "trace", "/channels"],
    ["non-ASCII method", "po\u017Ft", "/channels"],
    ["non-object body", "POST", "/channels", "[1,2]"],
    ["invalid JSON body", "POST", "/channels", "{\"media\":\"x\"\"}"],
    ["DUMMY body", "POST", "/channels", "DUMMY"],
    ["nested field in GET body", "GET", "/channels", "{\"variables\":{\"a\":\"b\"}}"]
  ]

  it.scopedLive("answers 400 with a JSON reason and sends nothing", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri()
      const rest = yield* restOn(server.port)
      for (const [name, method, url, body] of refused) {
        const reply = yield* rest.execute({ method, url, body: body ?? "" })
        expect(reply.status, name).toBe(400)
        const parsed = JSON.parse(reply.body) as { message: string; status: number; source: string }
        expect(parsed.status, name).toBe(400)
        expect(parsed.source, name).toBe("ari-proxy")
        expect(parsed.message.length, name).toBeGreaterThan(0)
      }
      expect(server.seen).toEqual([])
    }))

  it("says what is wrong", () => {
    const absolute = validateAriRequest({ method: "GET", url: "http://x/", body: "" })
    expect(absolute.ok ? "" : absolute.reason).toContain("url must be a path under stasis_url")
    const method = validateAriRequest({ method: "PATCH", url: "/x", body: "" })
    expect(method.ok ? "" : method.reason).toContain("GET, POST, PUT, DELETE")
  })

  it("accepts ordinary commands; empty method is GET; non-ASCII is percent-encoded", () => {
    expect(validateAriRequest({ method: "", url: "/asterisk/info", body: "" }))
      .toEqual({ ok: true, request: { method: "GET", pathAndQuery: "/asterisk/info", body: undefined } })
    expect(validateAriRequest({ method: "put", url: "/x?a=%2e%2e/..", body: "{}" }))
      .toEqual({ ok: true, request: { method: "PUT", pathAndQuery: "/x?a=%2e%2e/..", body: "{}" } })
    expect(validateAriRequest({ method: "POST", url: "/channels/é?callerId=José", body: "" }))
      .toEqual({
        ok: true,
        request: { method: "POST", pathAndQuery: "/channels/%C3%A9?callerId=Jos%C3%A9", body: undefined }
      })
  })

  // Each generated url is hostile wherever the random text lands (no `?` before the injection).
  const anywhereInjection = FastCheck.constantFrom("\r\n", "\n", "\r", "\\", "#", " ", "\t", "\u0000", "\u007f")
  const dotSegment = FastCheck.constantFrom("/..", "/.", "/%2e%2e", "/%2E.", "/.%2e", "/%252e%252e", "/%2f", "/%5C")
  const pathText = FastCheck.stringMatching(/^[A-Za-z0-9_~:-]{0,10}$/)
  const text = FastCheck.string({ maxLength: 12 })
  const hostileUrl = FastCheck.oneof(
    FastCheck.tuple(FastCheck.constant("/"), text, anywhereInjection, text).map((parts) => parts.join("")),
    FastCheck.tuple(FastCheck.constant("/"), pathText, dotSegment, FastCheck.oneof(FastCheck.constant(""),
      text.map((rest) => `/${rest}`), text.map((rest) => `?${rest}`))).map((parts) => parts.join("")),
    FastCheck.tuple(FastCheck.constantFrom("http://", "https://", "//", "HTTP://", "ws://"), text)
      .map((parts) => parts.join("")),
    text.filter((value) => !value.startsWith("/"))
  )
  const injection = anywhereInjection
  const hostileMethod = FastCheck.tuple(FastCheck.constantFrom("GET", "POST", "DELETE"), injection, text)
    .map((parts) => parts.join(""))

  it.scopedLive("property: hostile urls and methods never reach the server", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri()
      const rest = yield* restOn(server.port)
      const samples = FastCheck.sample(
        FastCheck.oneof(
          FastCheck.record({ method: FastCheck.constantFrom("GET", "POST", ""), url: hostileUrl }),
          FastCheck.record({ method: hostileMethod, url: FastCheck.constant("/channels") })
        ),
        { numRuns: 400, seed: 42 }
      )
      for (const sample of samples) {
        const reply = yield* rest.execute({ ...sample, body: "" })
        expect(reply.status, JSON.stringify(sample)).toBe(400)
      }
      expect(server.seen).toEqual([])
    }))

  it.prop("property: validation refuses every hostile url", [hostileUrl], ([url]) => {
    expect(validateAriRequest({ method: "GET", url, body: "" }).ok).toBe(false)
  }, { fastCheck: { numRuns: 300 } })
})

describe("AriRest: ARI trouble becomes a reply", () => {
  // The deadline is undici's own timer (src/ari/rest.ts says why), so it cannot run on TestClock;
  // undici checks it on a coarse tick (about half a second), never early. Rather than a window of
  // wall-clock time, which a busy machine stretches, the test compares it with timers started with
  // it: a 190 ms timer has fired first, a 5 s deadline of the same kind has not.
  it.scopedLive("504 when ARI does not answer within the deadline: not before it, not at a longer one", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri(() => {
        // never answers
      })
      const rest = yield* restOn(server.port, { commandTimeoutMs: 200 })
      const patient = yield* restOn(server.port, { commandTimeoutMs: 5_000 })
      let almostDeadline = false
      const timer = setTimeout(() => {
        almostDeadline = true
      }, 190)
      yield* Effect.addFinalizer(() => Effect.sync(() => clearTimeout(timer)))
      const longer = yield* Effect.fork(patient.execute({ method: "POST", url: "/channels/c2/answer", body: "" }))
      const reply = yield* rest.execute({ method: "POST", url: "/channels/c1/answer", body: "" })
      expect(reply).toEqual({
        status: 504,
        body: "{\"message\":\"ARI did not answer within 200 ms\",\"status\":504,\"source\":\"ari-proxy\"}"
      })
      expect(almostDeadline, "answered before 190 ms").toBe(true)
      expect(Option.isNone(yield* Fiber.poll(longer)), "the 5 s deadline fired as early").toBe(true)
      server.close() // the patient request fails now rather than at its deadline
      expect((yield* Fiber.join(longer)).status).toBe(502)
    }))

  it.scopedLive("504 when the body stalls after the headers", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri((_request, response) => {
        response.writeHead(200, { "content-type": "application/json" })
        response.write("[")
      })
      const rest = yield* restOn(server.port, { commandTimeoutMs: 200 })
      const reply = yield* rest.execute({ method: "GET", url: "/channels", body: "" })
      expect(reply.status).toBe(504)
    }))

  it.scopedLive("502 when the port refuses connections, never a failure", () =>
    Effect.gen(function*() {
      const nobody = yield* quietAddress
      const rest = yield* restOn(nobody.port, {}, nobody.host)
      const reply = yield* rest.execute({ method: "GET", url: "/channels", body: "" })
      expect(reply.status).toBe(502)
      expect(JSON.parse(reply.body)).toMatchObject({ status: 502, source: "ari-proxy" })
      expect(reply.body).toContain("connection refused")
      const listed = yield* Effect.flip(rest.listChannels())
      expect(listed._tag).toBe("AriUnavailable")
    }))

  it.scopedLive("502 then 503 once ARI is known to be gone, and back to normal when it returns", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri()
      const rest = yield* restOn(server.port)
      expect((yield* rest.execute({ method: "GET", url: "/channels", body: "" })).status).toBe(200)
      server.close()
      yield* Effect.sleep("20 millis")
      const first = yield* rest.execute({ method: "GET", url: "/channels", body: "" })
      expect([502, 503]).toContain(first.status)
      const replies: Array<number> = []
      for (let index = 0; index < 3; index++) {
        replies.push((yield* rest.execute({ method: "POST", url: "/channels/c/answer", body: "" })).status)
      }
      expect(replies).toEqual([503, 503, 503])
    }))

  it.scopedLive("answers 502 with a reason when the server resets mid-response", () =>
    Effect.gen(function*() {
      const server = yield* fakeAri((_request, response) => {
        response.socket?.destroy()
      })
      const rest = yield* restOn(server.port)
      const reply = yield* rest.execute({ method: "GET", url: "/channels", body: "" })
      expect(reply.status).toBe(502)
      expect(JSON.parse(reply.body)).toMatchObject({ source: "ari-proxy" })
    }))

  it.effect("refuses a stasis_url it cannot use when the layer is built", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(restOn(1, { stasisUrl: "not a url" })))
      expect(error._tag).toBe("AriConfigError")
    }))
})

describe("describeRequest", () => {
  it("has no credentials and masks api_key", () => {
    expect(describeRequest({ method: "POST", url: "/channels/c1/play?api_key=u:p&x=1", body: "{\"a\":1}" }))
      .toBe("POST /channels/c1/play?api_key=<redacted>&x=1 (body 7 chars)")
    expect(describeRequest({ method: "GET", url: "/x\r\ny", body: "" })).toBe("\"GET\" \"/x\\r\\ny\"")
  })
})
