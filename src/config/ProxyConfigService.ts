/**
 * The validated configuration as a service. The reader is a plain `Config`, so a host Effect
 * application can feed it through its own ConfigProvider; the file loader is one such provider.
 */
import { Config, ConfigError, Context, Effect, Either, Layer } from "effect"
import { FileSystem } from "@effect/platform"
import { ConfigInvalid } from "./errors.js"
import { KEYS } from "./keys.js"
import type { BusConfig, ConfigInput, ProxyConfig } from "./ProxyConfig.js"
import type { RawValue } from "./setting.js"
import { makeConfigSource, parseJson } from "./source.js"
import type { ConfigSource, Env } from "./source.js"
import { validate, withDefaults } from "./validate.js"
import type { RawValues } from "./validate.js"

// Every key is read as optional text: typing and defaults live in the definition (settings.ts), which
// validate() applies, reporting all problems at once and in our own words.
const rawValues: Config.Config<RawValues> = Config.all(
  KEYS.map((spec) => {
    const name = spec.path[spec.path.length - 1]!
    const leaf: Config.Config<RawValue> = spec.setting.list ?
      Config.array(Config.string(), name) :
      Config.string(name)
    const nested = spec.path.slice(0, -1).reduceRight((c, segment) => Config.nested(c, segment), leaf)
    return Config.map(Config.option(nested), (value) => [spec.key, value] as const)
  })
).pipe(Config.map((entries) => {
  const values = new Map<string, RawValue>()
  for (const [key, value] of entries) if (value._tag === "Some") values.set(key, value.value)
  return values
}))

/**
 * The proxy's configuration, read from the current ConfigProvider under snake_case keys
 * (`ws_password`, `bus_config.url`, ...). Fails with one `InvalidData` per problem.
 */
export const proxyConfig: Config.Config<ProxyConfig> = Config.mapOrFail(rawValues, (raw) =>
  Either.mapLeft(
    validate(raw),
    (problems) =>
      problems.map((p) => ConfigError.InvalidData([...p.path], p.message)).reduce((a, b) => ConfigError.And(a, b))
  ))

/** One line per leaf of a ConfigError: `path: message`. */
export const configErrorProblems = (error: ConfigError.ConfigError): Array<string> => {
  switch (error._op) {
    case "And":
    case "Or":
      return [...configErrorProblems(error.left), ...configErrorProblems(error.right)]
    case "InvalidData":
    case "MissingData":
    case "Unsupported":
      return [error.path.length > 0 ? `${error.path.join(".").replaceAll(".[", "[")}: ${error.message}` : error.message]
    case "SourceUnavailable":
      return [`${error.path.join(".")}: ${error.message}`]
  }
}

/** Unknown keys and similar notes from loading, for main.ts to log once. */
export class ConfigWarnings extends Context.Tag("ari-proxy/ConfigWarnings")<ConfigWarnings, ReadonlyArray<string>>() {}

export interface LoadedConfig {
  readonly config: ProxyConfig
  readonly warnings: ReadonlyArray<string>
}

export interface LoadOptions {
  /** Environment variables to overlay; `process.env` when absent. */
  readonly env?: Env
}

interface FileSource extends ConfigSource {
  readonly path: string
  readonly missing: boolean
}

const readSource = (path: string, options?: LoadOptions) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const env = options?.env ?? process.env
    const invalid = (problem: string) => new ConfigInvalid({ source: path, problems: [problem] })
    const text = yield* fs.readFileString(path).pipe(
      Effect.catchTag("SystemError", (e) => e.reason === "NotFound" ? Effect.succeed(undefined) : Effect.fail(e)),
      Effect.mapError((e) => invalid(`${path}: cannot be read (${e._tag === "SystemError" ? e.reason : e.message})`))
    )
    if (text === undefined) {
      return { ...makeConfigSource({ env, label: path }), path, missing: true } satisfies FileSource
    }
    const parsed = parseJson(text)
    if (!parsed.ok) return yield* invalid(`${path}: ${parsed.error}`)
    return { ...makeConfigSource({ json: parsed.value, env, label: path }), path, missing: false } satisfies FileSource
  })

// Reads proxyConfig from the current provider and merges in what the file itself got wrong.
const readWith = (source: FileSource) =>
  Effect.gen(function*() {
    const result = yield* Effect.either(proxyConfig)
    const problems = [...source.problems, ...(Either.isLeft(result) ? configErrorProblems(result.left) : [])]
    if (problems.length > 0 || Either.isLeft(result)) {
      if (source.missing) {
        const hint = "put the settings there or in ARI_PROXY_* environment variables"
        problems.unshift(`${source.path}: file not found; ${hint}`)
      }
      return yield* new ConfigInvalid({ source: source.path, problems })
    }
    const warnings = source.missing ?
      [`${source.path} not found; configured from the environment only`, ...source.warnings] :
      source.warnings
    return { config: result.right, warnings } satisfies LoadedConfig
  })

/**
 * Loads the seed's config.json with `ARI_PROXY_*` environment variables over it. A missing file is
 * fine when the environment supplies every required key.
 */
export const loadConfigFile = (
  path: string,
  options?: LoadOptions
): Effect.Effect<LoadedConfig, ConfigInvalid, FileSystem.FileSystem> =>
  Effect.flatMap(readSource(path, options), (source) => Effect.withConfigProvider(readWith(source), source.provider))

export class ProxyConfigService extends Context.Tag("ari-proxy/ProxyConfigService")<
  ProxyConfigService,
  ProxyConfig
>() {
  /** Reads `proxyConfig` from the current ConfigProvider (the host application's). */
  static readonly layer: Layer.Layer<ProxyConfigService, ConfigInvalid> = Layer.effect(
    this,
    Effect.mapError(
      proxyConfig,
      (e) => new ConfigInvalid({ source: "config provider", problems: configErrorProblems(e) })
    )
  )

  /** config.json (or `path`) with the environment over it; also provides the loading warnings. */
  static readonly layerFromFile = (
    path: string,
    options?: LoadOptions
  ): Layer.Layer<ProxyConfigService | ConfigWarnings, ConfigInvalid, FileSystem.FileSystem> =>
    Layer.unwrapEffect(Effect.map(readSource(path, options), (source) =>
      Layer.effectContext(Effect.map(readWith(source), ({ config, warnings }) =>
        Context.make(ProxyConfigService, config).pipe(Context.add(ConfigWarnings, warnings)))).pipe(
          // gotcha 6: the provider is provided *to* the layer that reads Config.
          Layer.provide(Layer.setConfigProvider(source.provider))
        )))

  /** An already validated value (tests, embedding). */
  static readonly layerFrom = (config: ProxyConfig): Layer.Layer<ProxyConfigService> => Layer.succeed(this, config)

  /** `layerFrom(makeProxyConfig(partial))`. */
  static readonly layerTest = (partial: ProxyConfigInput = {}): Layer.Layer<ProxyConfigService> =>
    Layer.succeed(this, makeProxyConfig(partial))
}

/** What makeProxyConfig takes: any settings, secrets as plain text or redacted. */
export type ProxyConfigInput = ConfigInput<ProxyConfig>
export type BusConfigInput = ConfigInput<BusConfig>

/**
 * A ProxyConfig from a partial camelCase object, every default filled in (MEMORY bus, application
 * `app`, ARI at 127.0.0.1:8088, serverId `test`). No validation: for tests and embedding.
 */
export const makeProxyConfig = (partial: ProxyConfigInput = {}): ProxyConfig =>
  withDefaults({
    serverId: "test",
    applications: ["app"],
    websocketUrl: "ws://127.0.0.1:8088/ari/events",
    stasisUrl: "http://127.0.0.1:8088/ari",
    messageBus: "MEMORY",
    ...partial
  })
