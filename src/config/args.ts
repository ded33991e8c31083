/**
 * The command line: the seed's single `-config <path>` flag (Go's flag package also took
 * `--config`, `-config=x`, `--config=x`) and a mode word.
 */
import { Either } from "effect"

export type Mode = "proxy" | "demo" | "help"

export interface ParsedArgs {
  readonly configPath: string
  readonly mode: Mode
}

export const DEFAULT_CONFIG_PATH = "./config.json"

export const usage = `Usage: ari-proxy [proxy|demo] [-config <path>]

  proxy            run the proxy (default)
  demo             run the demo
  -config <path>   configuration file (default ${DEFAULT_CONFIG_PATH}); also --config, -config=<path>
  -help            show this help

Every setting can also come from an ARI_PROXY_* environment variable (see docs/configuration.md).`

/** Parses `process.argv.slice(2)`; the error is a one-line message for the user. */
export const parseArgs = (argv: ReadonlyArray<string>): Either.Either<ParsedArgs, string> => {
  let configPath = DEFAULT_CONFIG_PATH
  let mode: Mode | undefined
  let help = false
  let flagsDone = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!flagsDone && arg === "--") {
      flagsDone = true
      continue
    }
    if (!flagsDone && arg.startsWith("-") && arg !== "-") {
      const body = arg.replace(/^--?/, "")
      const eq = body.indexOf("=")
      const name = eq < 0 ? body : body.slice(0, eq)
      if (name === "help" || name === "h") {
        help = true
      } else if (name === "config") {
        const value = eq < 0 ? argv[++i] : body.slice(eq + 1)
        if (value === undefined || value === "") return Either.left("flag -config needs a path")
        configPath = value
      } else {
        return Either.left(`unknown flag ${JSON.stringify(arg)} (try -help)`)
      }
      continue
    }
    if (mode !== undefined) return Either.left(`unexpected argument ${JSON.stringify(arg)} (try -help)`)
    if (arg === "proxy" || arg === "demo" || arg === "help") mode = arg
    else return Either.left(`unknown command ${JSON.stringify(arg)}: expected proxy or demo (try -help)`)
  }
  return Either.right({ configPath, mode: help ? "help" : mode ?? "proxy" })
}
