/**
 * The process logger: JSON lines (for log collectors), or pretty on a terminal, at the configured
 * minimum level. Secrets never reach it: they are Redacted values everywhere in the config.
 */
import { Layer, Logger, LogLevel } from "effect"
import type { LogFormat, LogLevelName } from "../config/ProxyConfig.js"

const levels: Record<LogLevelName, LogLevel.LogLevel> = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error
}

export const logLevelOf = (name: LogLevelName): LogLevel.LogLevel => levels[name]

export const loggerLayer = (format: LogFormat, level: LogLevelName): Layer.Layer<never> => {
  const pretty = format === "pretty" || (format === "auto" && process.stdout.isTTY === true)
  return Layer.merge(
    pretty ? Logger.pretty : Logger.json,
    Logger.minimumLogLevel(logLevelOf(level))
  )
}
