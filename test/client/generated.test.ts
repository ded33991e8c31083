import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { existsSync, readFileSync } from "node:fs"
import path from "node:path"
import { expectTypeOf } from "vitest"
import { apiDocsDir, generate, outputDir } from "../../scripts/generate-ari.mjs"
import {
  buildRequest,
  decodeAriEvent,
  decodeAriEventJson,
  isUnknownAriEvent,
  makeAriApiEffect,
  makeAriApiPromise,
  UnknownAriEventTypeId
} from "../../src/client/ari.js"
import * as Models from "../../src/client/generated/models.js"
import { ariEventSchemas, ariEventTypes, ariModelNames, AriEventSchema } from "../../src/client/generated/models.js"
import type { AriEvent, Channel, Playback } from "../../src/client/generated/models.js"
import { allOperations, operations } from "../../src/client/generated/operations.js"
import type { OperationDescriptor } from "../../src/client/generated/operations.js"

const docsDir = apiDocsDir()

interface SwaggerParam {
  readonly name: string
  readonly paramType: string
  readonly description?: string
}
interface SwaggerOperation {
  readonly httpMethod: string
  readonly nickname: string
  readonly summary?: string
  readonly notes?: string
  readonly parameters?: ReadonlyArray<SwaggerParam>
}
interface SwaggerModel {
  readonly description?: string
  readonly subTypes?: ReadonlyArray<string>
  readonly properties: Readonly<Record<string, { readonly description?: string }>>
}
interface SwaggerDeclaration {
  readonly apis: ReadonlyArray<{ readonly path: string; readonly operations: ReadonlyArray<SwaggerOperation> }>
  readonly models: Readonly<Record<string, SwaggerModel>>
}

// The api-docs read independently of the generator, so the coverage checks do not trust it.
const requireDocs = (): void => {
  if (!existsSync(path.join(docsDir, "resources.json"))) {
    throw new Error(`ARI api-docs not found at ${docsDir}: the repository ships them in vendor/ari-api-docs (or set ARI_API_DOCS)`)
  }
}

const declarations = (): ReadonlyArray<{ readonly resource: string; readonly declaration: SwaggerDeclaration }> => {
  requireDocs()
  const listing = JSON.parse(readFileSync(path.join(docsDir, "resources.json"), "utf8")) as {
    readonly apis: ReadonlyArray<{ readonly path: string }>
  }
  return listing.apis.map((entry) => {
    const resource = entry.path.replace("/api-docs/", "").replace(".{format}", "")
    const file = path.join(docsDir, "api-docs", `${resource}.json`)
    return { resource, declaration: JSON.parse(readFileSync(file, "utf8")) as SwaggerDeclaration }
  })
}

describe("generated ARI surface: staleness", () => {
  it("the committed files are what scripts/generate-ari.mjs produces from the api-docs", () => {
    requireDocs()
    const files = generate(docsDir)
    expect(Object.keys(files).sort()).toEqual(["api.ts", "index.ts", "models.ts", "operations.ts"])
    for (const [name, expected] of Object.entries(files)) {
      const file = path.join(outputDir, name)
      const committed = existsSync(file) ? readFileSync(file, "utf8") : "<missing>"
      const committedLines = committed.split("\n")
      const firstDifference = expected.split("\n").findIndex((line, index) => line !== committedLines[index]) + 1
      const where = firstDifference > 0 ? ` (first difference at line ${firstDifference})` : ""
      expect(committed === expected, `src/client/generated/${name} is stale${where}: run \`npm run generate:ari\``)
        .toBe(true)
    }
  })

  it("carries no description text from the api-docs", () => {
    const output = Object.values(generate(docsDir)).join("\n")
    const texts = new Set<string>()
    for (const { declaration } of declarations()) {
      for (const api of declaration.apis) {
        for (const operation of api.operations) {
          for (const text of [operation.summary, operation.notes]) if (text !== undefined) texts.add(text)
          for (const param of operation.parameters ?? []) {
            if (param.description !== undefined) texts.add(param.description)
          }
        }
      }
      for (const model of Object.values(declaration.models)) {
        if (model.description !== undefined) texts.add(model.description)
        for (const property of Object.values(model.properties)) {
          if (property.description !== undefined) texts.add(property.description)
        }
      }
    }
    // Short texts ("Channel's id") could coincide with names; anything sentence-long must not appear.
    const leaked = [...texts].filter((text) => text.length >= 24 && output.includes(text))
    expect(texts.size).toBeGreaterThan(300)
    expect(leaked).toEqual([])
  })
})

describe("generated ARI surface: coverage", () => {
  it("has one descriptor per operation of every api-docs file, with its method and path", () => {
    const expected: Array<string> = []
    for (const { resource, declaration } of declarations()) {
      for (const api of declaration.apis) {
        for (const operation of api.operations) {
          expected.push(`${resource}.${operation.nickname} ${operation.httpMethod.toUpperCase()} ${api.path}`)
        }
      }
    }
    const actual = allOperations.map((op) => `${op.resource}.${op.nickname} ${op.method} ${op.path}`)
    expect(actual.sort()).toEqual(expected.sort())
    expect(actual).toHaveLength(109)
    expect(Object.keys(operations)).toEqual([
      "asterisk",
      "endpoints",
      "channels",
      "bridges",
      "recordings",
      "sounds",
      "playbacks",
      "deviceStates",
      "mailboxes",
      "events",
      "applications"
    ])
  })

  it("declares every parameter of every operation where it travels", () => {
    for (const { resource, declaration } of declarations()) {
      for (const api of declaration.apis) {
        for (const operation of api.operations) {
          const descriptor = (operations as unknown as Record<string, Record<string, OperationDescriptor>>)[resource]![
            operation.nickname
          ]!
          const where = (param: SwaggerParam) => `${param.paramType}:${param.name}`
          const declared = [
            ...descriptor.pathParams.map((param) => `path:${param.name}`),
            ...descriptor.queryParams.map((param) => `query:${param.name}`),
            ...descriptor.bodyParams.map((param) => `body:${param.name}`)
          ]
          expect(declared.sort(), `${resource}.${operation.nickname}`).toEqual(
            (operation.parameters ?? []).map(where).sort()
          )
        }
      }
    }
  })

  it("has an interface for every model and event, and a schema for every concrete one", () => {
    const modelsSource = readFileSync(path.join(outputDir, "models.ts"), "utf8")
    const all = declarations().flatMap(({ declaration }) => Object.entries(declaration.models))
    expect(all).toHaveLength(85)
    expect([...ariModelNames].sort()).toEqual(all.map(([name]) => name).sort())
    const exported = Models as unknown as Record<string, unknown>
    for (const [name, model] of all) {
      expect(modelsSource, name).toMatch(new RegExp(`^export interface ${name}( extends \\w+)? \\{$`, "m"))
      if ((model.subTypes ?? []).length === 0) expect(Schema.isSchema(exported[`${name}Schema`]), name).toBe(true)
    }
  })

  it("has every concrete message of the event hierarchy in AriEvent", () => {
    const events = declarations().find(({ resource }) => resource === "events")!.declaration.models
    const concrete: Array<string> = []
    const walk = (name: string): void => {
      const subTypes = events[name]!.subTypes ?? []
      if (subTypes.length === 0) concrete.push(name)
      subTypes.forEach(walk)
    }
    walk("Message")
    expect(concrete).toHaveLength(46)
    expect([...ariEventTypes].sort()).toEqual(concrete.sort())
    expect(Object.keys(ariEventSchemas).sort()).toEqual(concrete.sort())
    expect(modelsSourceLine("export interface StasisStart extends Event {")).toBe(true)
    expect(modelsSourceLine("export interface Event extends Message {")).toBe(true)
  })
})

const modelsSourceLine = (line: string): boolean =>
  readFileSync(path.join(outputDir, "models.ts"), "utf8").split("\n").includes(line)

describe("buildRequest", () => {
  it("originate: query string for scalars, JSON body for variables", () => {
    const request = buildRequest(operations.channels.originate, {
      endpoint: "PJSIP/bob",
      app: "x",
      appArgs: "a,b",
      variables: { "CALLERID(name)": "Bob", MYVAR: "v1" }
    })
    expect(request).toEqual({
      method: "POST",
      url: "/channels?endpoint=PJSIP%2Fbob&app=x&appArgs=a%2Cb",
      body: "{\"variables\":{\"CALLERID(name)\":\"Bob\",\"MYVAR\":\"v1\"}}"
    })
  })

  it("encodes path parameters, so ; / and spaces stay inside their segment", () => {
    expect(buildRequest(operations.channels.get, { channelId: "1796034496.2;x/y z" })).toEqual({
      method: "GET",
      url: "/channels/1796034496.2%3Bx%2Fy%20z",
      body: ""
    })
    expect(buildRequest(operations.endpoints.get, { tech: "PJSIP", resource: "alice@example" }).url)
      .toBe("/endpoints/PJSIP/alice%40example")
  })

  it("writes booleans as true/false, numbers in decimal (0 included) and arrays comma-joined", () => {
    expect(
      buildRequest(operations.bridges.addChannel, {
        bridgeId: "b1",
        channel: ["c1", "c2"],
        absorbDTMF: true,
        mute: false
      }).url
    ).toBe("/bridges/b1/addChannel?channel=c1%2Cc2&absorbDTMF=true&mute=false")
    expect(
      buildRequest(operations.channels.play, {
        channelId: "c1",
        media: ["sound:hello-world", "digits:42"],
        skipms: 0
      }).url
    ).toBe("/channels/c1/play?media=sound%3Ahello-world%2Cdigits%3A42&skipms=0")
    expect(
      buildRequest(operations.channels.record, {
        channelId: "c1",
        name: "rec 1",
        format: "wav",
        maxDurationSeconds: 30,
        beep: true,
        terminateOn: "#"
      }).url
    ).toBe("/channels/c1/record?name=rec%201&format=wav&maxDurationSeconds=30&beep=true&terminateOn=%23")
    expect(buildRequest(operations.asterisk.getInfo, { only: ["build", "status"] }).url).toBe(
      "/asterisk/info?only=build%2Cstatus"
    )
  })

  it("sends DELETE and GET without a body and drops parameters left undefined", () => {
    expect(buildRequest(operations.channels.hangup, { channelId: "c1", reason: "busy" })).toEqual({
      method: "DELETE",
      url: "/channels/c1?reason=busy",
      body: ""
    })
    expect(buildRequest(operations.channels.list)).toEqual({ method: "GET", url: "/channels", body: "" })
  })

  it("puts fields and the event filter in the JSON body the way Asterisk reads them", () => {
    const fields = [{ attribute: "directmedia", value: "false" }]
    expect(
      buildRequest(operations.asterisk.updateObject, {
        configClass: "res_pjsip",
        objectType: "endpoint",
        id: "bob",
        fields
      })
    ).toEqual({
      method: "PUT",
      url: "/asterisk/config/dynamic/res_pjsip/endpoint/bob",
      body: "{\"fields\":[{\"attribute\":\"directmedia\",\"value\":\"false\"}]}"
    })
    // An "object" body parameter is the body itself, not wrapped under its name.
    expect(
      buildRequest(operations.applications.filter, {
        applicationName: "app",
        filter: { allowed: [{ type: "StasisStart" }] }
      }).body
    ).toBe("{\"allowed\":[{\"type\":\"StasisStart\"}]}")
    expect(
      buildRequest(operations.endpoints.sendMessageToEndpoint, {
        tech: "PJSIP",
        resource: "bob",
        from: "sip:alice",
        body: "hi",
        variables: { "X-Header": "1" }
      })
    ).toEqual({
      method: "PUT",
      url: "/endpoints/PJSIP/bob/sendMessage?from=sip%3Aalice&body=hi",
      body: "{\"variables\":{\"X-Header\":\"1\"}}"
    })
  })

  it("refuses to build a path with a missing path parameter", () => {
    expect(() => buildRequest(operations.channels.answer, {})).toThrow(/channels\.answer: path parameter channelId/)
  })
})

describe("makeAriApi", () => {
  it("Promise surface: each method sends its descriptor and the caller's params", async () => {
    const sent: Array<{ readonly operation: OperationDescriptor; readonly params: object }> = []
    const api = makeAriApiPromise((operation, params) => {
      sent.push({ operation, params })
      return Promise.resolve({ id: "c1" })
    })
    const channel = await api.channels.originate({ endpoint: "PJSIP/bob", app: "x" })
    expectTypeOf(channel).toEqualTypeOf<Channel>()
    await api.deviceStates.update({ deviceName: "Stasis:x", deviceState: "BUSY" })
    await api.channels.list()
    expect(sent.map(({ operation }) => `${operation.resource}.${operation.nickname}`)).toEqual([
      "channels.originate",
      "deviceStates.update",
      "channels.list"
    ])
    expect(sent[0]!.operation).toBe(operations.channels.originate)
    expect(sent[0]!.params).toEqual({ endpoint: "PJSIP/bob", app: "x" })
    expect(sent[2]!.params).toEqual({})
    // The event websocket is the proxy's business, not a request a client can send.
    expect((api.events as unknown as Record<string, unknown>)["eventWebsocket"]).toBeUndefined()
    expect(typeof api.events.userEvent).toBe("function")
  })

  it.effect("Effect surface: typed results and the client's error type", () =>
    Effect.gen(function*() {
      const api = makeAriApiEffect((operation, params) =>
        operation.nickname === "play"
          ? Effect.succeed({ id: "pb-1", params })
          : Effect.fail({ _tag: "AriRequestError" as const, status: 404 })
      )
      const playback = yield* api.channels.play({ channelId: "c1", media: "sound:hello-world" })
      expectTypeOf(playback).toEqualTypeOf<Playback>()
      expect(playback).toEqual({ id: "pb-1", params: { channelId: "c1", media: "sound:hello-world" } })
      const failure = yield* Effect.flip(api.bridges.get({ bridgeId: "nope" }))
      expect(failure).toEqual({ _tag: "AriRequestError", status: 404 })
    }))
})

// Frames as a real Asterisk 23.4.1 sent them (samples A and D of the captures this project's simulator follows).
const stasisStartFrame = [
  `{"type":"StasisStart","timestamp":"2026-11-30T10:28:16.331+0000","args":[],"channel":{"id":"17960344`,
  `96.2","name":"PJSIP/sipp-00000002","state":"Ring","protocol_id":"1-23982@127.0.0.1","caller":{"name"`,
  `:"sipp","number":"sipp"},"connected":{"name":"","number":""},"accountcode":"","dialplan":{"context":`,
  `"from-sipp","exten":"100","priority":2,"app_name":"Stasis","app_data":"test-app"},"creationtime":"20`,
  `26-11-30T10:28:16.330+0000","language":"en"},"asterisk_id":"02:fc:00:00:00:01","application":"test-a`,
  `pp"}`
].join("")

const channelVarsetFrame = [
  `{"variable":"RTPAUDIOQOSRTT","value":"     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.`,
  `000000;     stdevrtt=000.000000;","type":"ChannelVarset","timestamp":"2026-11-30T10:28:17.848+0000",`,
  `"channel":{"id":"1796034496.2","name":"PJSIP/sipp-00000002","state":"Up","protocol_id":"1-23982@127.`,
  `0.0.1","caller":{"name":"sipp","number":"sipp"},"connected":{"name":"","number":""},"accountcode":""`,
  `,"dialplan":{"context":"from-sipp","exten":"100","priority":2,"app_name":"Stasis","app_data":"test-a`,
  `pp"},"creationtime":"2026-11-30T10:28:16.330+0000","language":"en"},"asterisk_id":"02:fc:00:00:00:01`,
  `","application":"test-app"}`
].join("")

const dialFrame = [
  `{"type":"Dial","timestamp":"2026-11-30T10:29:01.051+0000","dialstatus":"RINGING","forward":"","dials`,
  `tring":"sipp","peer":{"id":"test-chan-1","name":"PJSIP/sipp-00000004","state":"Down","protocol_id":"`,
  `20bc5485-83c1-4600-a64a-50fa6512a8b4","caller":{"name":"ARI","number":"1000"},"connected":{"name":"A`,
  `RI","number":"1000"},"accountcode":"","dialplan":{"context":"from-sipp","exten":"s","priority":1,"ap`,
  `p_name":"AppDial2","app_data":"(Outgoing Line)"},"creationtime":"2026-11-30T10:29:01.045+0000","lang`,
  `uage":"en"},"asterisk_id":"02:fc:00:00:00:01","application":"test-app"}`
].join("")

const playbackFinishedFrame = [
  `{"type":"PlaybackFinished","timestamp":"2026-11-30T10:29:03.684+0000","playback":{"id":"pb-2","media`,
  `_uri":"sound:no-such-sound-file","target_uri":"channel:test-chan-1","language":"en","state":"failed"`,
  `},"asterisk_id":"02:fc:00:00:00:01","application":"test-app"}`
].join("")

const known = (event: ReturnType<typeof decodeAriEvent>): AriEvent => {
  if (isUnknownAriEvent(event)) throw new Error(`did not decode: ${JSON.stringify(event)}`)
  return event
}

describe("decodeAriEvent", () => {
  it("decodes real frames into their typed events", () => {
    const stasisStart = known(decodeAriEventJson(stasisStartFrame))
    if (stasisStart.type !== "StasisStart") throw new Error(stasisStart.type)
    expect(stasisStart.channel.id).toBe("1796034496.2")
    expect(stasisStart.channel.state).toBe("Ring")
    expect(stasisStart.channel.dialplan.priority).toBe(2)
    expect(stasisStart.args).toEqual([])
    expect(stasisStart.application).toBe("test-app")

    const varset = known(decodeAriEventJson(channelVarsetFrame))
    if (varset.type !== "ChannelVarset") throw new Error(varset.type)
    expect(varset.variable).toBe("RTPAUDIOQOSRTT")
    expect(varset.channel?.state).toBe("Up")

    const dial = known(decodeAriEvent(JSON.parse(dialFrame)))
    if (dial.type !== "Dial") throw new Error(dial.type)
    expect(dial.dialstatus).toBe("RINGING")
    expect(dial.peer.id).toBe("test-chan-1")
    expect(dial.caller).toBeUndefined()

    const finished = known(decodeAriEventJson(playbackFinishedFrame))
    if (finished.type !== "PlaybackFinished") throw new Error(finished.type)
    expect(finished.playback.state).toBe("failed")
    expect(finished.playback.target_uri).toBe("channel:test-chan-1")
  })

  it("keeps fields a newer Asterisk adds, at every level", () => {
    const frame = JSON.parse(stasisStartFrame) as Record<string, Record<string, unknown>>
    const newer = { ...frame, future_top: 1, channel: { ...frame["channel"], future_nested: "x" } }
    const event = known(decodeAriEvent(newer))
    expect(event).toMatchObject({ future_top: 1, channel: { future_nested: "x" } })
  })

  it("passes an unknown event type through untyped, as received", () => {
    const event = decodeAriEvent({ type: "FutureEvent", x: 1 })
    expect(isUnknownAriEvent(event)).toBe(true)
    if (!isUnknownAriEvent(event)) return
    expect(event.type).toBe("FutureEvent")
    expect(event["x"]).toBe(1)
    expect(event[UnknownAriEventTypeId]).toEqual({ reason: "unknown-type" })
    expect(JSON.stringify(event)).toBe("{\"type\":\"FutureEvent\",\"x\":1}")
  })

  it("never throws: invalid frames of known types, non-objects and broken JSON come back untyped", () => {
    const missingChannel = decodeAriEvent({ type: "StasisStart", application: "a", timestamp: "t", args: [] })
    expect(isUnknownAriEvent(missingChannel)).toBe(true)
    if (isUnknownAriEvent(missingChannel)) {
      expect(missingChannel[UnknownAriEventTypeId].reason).toBe("invalid")
      expect(missingChannel[UnknownAriEventTypeId].detail).toMatch(/channel/)
    }
    for (const input of [42, null, "StasisStart", [1], { noType: true }]) {
      expect(isUnknownAriEvent(decodeAriEvent(input))).toBe(true)
    }
    const broken = decodeAriEventJson("{\"type\":")
    expect(isUnknownAriEvent(broken) && broken[UnknownAriEventTypeId].reason).toBe("not-json")
  })

  it("AriEventSchema decodes any concrete event and rejects an unknown type", () => {
    const decode = Schema.decodeUnknownEither(AriEventSchema)
    expect(decode(JSON.parse(playbackFinishedFrame))._tag).toBe("Right")
    expect(decode({ type: "FutureEvent" })._tag).toBe("Left")
  })
})
