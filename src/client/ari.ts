/**
 * The runtime half of the typed ARI surface: decoding events, building requests, and the API
 * objects. The generated modules (`./generated/`) hold names, types, schemas and operation
 * descriptors only; this file is written by hand.
 */
import { Either, ParseResult, Schema } from "effect"
import type { Effect } from "effect"
import type { AriApiEffect, AriApiPromise } from "./generated/api.js"
import { type AriEvent, ariEventSchemas } from "./generated/models.js"
import { type OperationDescriptor, operations } from "./generated/operations.js"

export * from "./generated/index.js"

// Decoding: never throws. A frame of a type this build does not know (a newer Asterisk), or one
// that does not match its schema, passes through as received, marked with UnknownAriEventTypeId.

export const UnknownAriEventTypeId: unique symbol = Symbol.for("ari-proxy/UnknownAriEvent")
export type UnknownAriEventTypeId = typeof UnknownAriEventTypeId

export interface UnknownAriEventReason {
  readonly reason: "unknown-type" | "invalid" | "not-an-object" | "not-json"
  /** Why a frame of a known type did not decode, or why the input is not a frame. */
  readonly detail?: string
}

/** A frame passed through untyped: every field as received (the marker is a symbol, so JSON.stringify skips it). */
export interface UnknownAriEvent {
  readonly [UnknownAriEventTypeId]: UnknownAriEventReason
  readonly type: string
  readonly [field: string]: unknown
}

const untyped = (frame: Readonly<Record<string, unknown>>, marker: UnknownAriEventReason): UnknownAriEvent => ({
  ...frame,
  type: typeof frame["type"] === "string" ? frame["type"] : "",
  [UnknownAriEventTypeId]: marker
})

const eventDecoders: ReadonlyMap<string, (input: unknown) => Either.Either<AriEvent, ParseResult.ParseError>> = new Map(
  Object.entries(ariEventSchemas).map(([type, schema]) => [
    type,
    Schema.decodeUnknownEither(schema as Schema.Schema<AriEvent>, { onExcessProperty: "preserve", errors: "first" })
  ])
)

/** Decodes one parsed websocket frame (`ari_body` after JSON.parse). */
export const decodeAriEvent = (json: unknown): AriEvent | UnknownAriEvent => {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return untyped({}, { reason: "not-an-object", detail: Array.isArray(json) ? "array" : typeof json })
  }
  const frame = json as Readonly<Record<string, unknown>>
  const decode = typeof frame["type"] === "string" ? eventDecoders.get(frame["type"]) : undefined
  if (decode === undefined) return untyped(frame, { reason: "unknown-type" })
  const decoded = decode(frame)
  if (Either.isRight(decoded)) return decoded.right
  return untyped(frame, { reason: "invalid", detail: ParseResult.TreeFormatter.formatErrorSync(decoded.left) })
}

/** Decodes one frame from its JSON text (`ari_body` as carried on the bus). */
export const decodeAriEventJson = (text: string): AriEvent | UnknownAriEvent => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return untyped({}, { reason: "not-json", detail: String(error) })
  }
  return decodeAriEvent(json)
}

export const isUnknownAriEvent = (event: AriEvent | UnknownAriEvent): event is UnknownAriEvent =>
  UnknownAriEventTypeId in event

/** A bus Command: `url` under `stasis_url` with its query; `body` JSON text or "". */
export interface AriWireRequest {
  readonly method: string
  readonly url: string
  readonly body: string
}

// Booleans become true/false and numbers decimal (String does both); several values are comma-joined.
const wireValue = (value: unknown): string => Array.isArray(value) ? value.map(wireValue).join(",") : String(value)

/**
 * Builds the ARI request for an operation: path parameters URL-encoded into the path, query
 * parameters in the query string (several values joined by commas, booleans as true/false),
 * body parameters as one JSON object. Parameters the operation does not declare are ignored.
 */
export const buildRequest = (operation: OperationDescriptor, params: object = {}): AriWireRequest => {
  const given = params as Readonly<Record<string, unknown>>
  const path = operation.path.replace(/\{([^}]+)\}/g, (_match, name: string) => {
    const value = given[name]
    if (value === undefined || value === null) {
      throw new TypeError(`${operation.resource}.${operation.nickname}: path parameter ${name} is missing`)
    }
    return encodeURIComponent(wireValue(value))
  })
  const query = operation.queryParams
    .filter((param) => given[param.name] !== undefined)
    .map((param) => `${encodeURIComponent(param.name)}=${encodeURIComponent(wireValue(given[param.name]))}`)
    .join("&")
  let body: Record<string, unknown> | undefined
  for (const param of operation.bodyParams) {
    const value = given[param.name]
    if (value === undefined) continue
    // Asterisk reads a "containers" parameter from the body's key of that name (variables, fields),
    // an "object" parameter (the application event filter) is the whole body.
    body = param.dataType === "containers"
      ? { ...body, [param.name]: value }
      : { ...body, ...(value as Readonly<Record<string, unknown>>) }
  }
  return {
    method: operation.method,
    url: query === "" ? path : `${path}?${query}`,
    body: body === undefined ? "" : JSON.stringify(body)
  }
}

/** How a client executes one operation; `params` are the caller's (see buildRequest). */
export type AriSend<Result> = (operation: OperationDescriptor, params: object) => Result

// One runtime object serves both surfaces: each method forwards its descriptor and params to send.
const makeAriApi = (send: AriSend<unknown>): Record<string, Record<string, (params?: object) => unknown>> => {
  const api: Record<string, Record<string, (params?: object) => unknown>> = {}
  for (const [resource, byNickname] of Object.entries(operations)) {
    const methods: Record<string, (params?: object) => unknown> = {}
    for (const [nickname, operation] of Object.entries(byNickname as Readonly<Record<string, OperationDescriptor>>)) {
      if (operation.upgrade !== undefined) continue
      methods[nickname] = (params: object = {}) => send(operation, params)
    }
    api[resource] = methods
  }
  return api
}

/** The typed ARI surface over an Effect `send`; results are typed as the api-docs declare, not checked. */
export const makeAriApiEffect = <E>(send: AriSend<Effect.Effect<unknown, E>>): AriApiEffect<E> =>
  makeAriApi(send) as unknown as AriApiEffect<E>

/** The typed ARI surface over a Promise `send`; results are typed as the api-docs declare, not checked. */
export const makeAriApiPromise = (send: AriSend<Promise<unknown>>): AriApiPromise =>
  makeAriApi(send) as unknown as AriApiPromise
