/**
 * The proxy's configuration, after validation: the typed, camelCase form of the seed's config.json
 * (snake_case keys) with every default applied. Derived from the definition in settings.ts, where
 * each setting's key, default and meaning are; docs/configuration.md is generated from it.
 */
import type { Redacted } from "effect"
import type { Values } from "./setting.js"
import type { settings } from "./settings.js"

type Definition = typeof settings.fields

export interface ProxyConfig extends Values<Definition> {}
export interface BusConfig extends Values<Definition["bus"]["fields"]> {}
export interface TlsConfig extends Values<Definition["bus"]["fields"]["tls"]["fields"]> {}

export type MessageBusKind = ProxyConfig["messageBus"]
export type LogLevelName = ProxyConfig["logLevel"]
export type LogFormat = ProxyConfig["logFormat"]

/** A secret given as plain text or already redacted. */
type SecretInput = string | Redacted.Redacted<string>

type InputValue<V> = V extends Redacted.Redacted<string> ? SecretInput :
  V extends ReadonlyArray<unknown> ? V :
  V extends ReadonlyMap<unknown, unknown> ? V :
  V extends object ? ConfigInput<V> :
  V

/** Any part of a configuration, secrets as plain text or redacted: what makeProxyConfig takes. */
export type ConfigInput<T> = { readonly [K in keyof T]?: InputValue<T[K]> }
