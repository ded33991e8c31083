/**
 * The process logger: flat JSON lines (for log collectors), or pretty on a terminal, at the configured
 * minimum level. Secrets never reach it: they are Redacted values everywhere in the config.
 */
import { Cause, HashMap, Inspectable, Layer, Logger, LogLevel } from "effect"
import type { LogFormat, LogLevelName } from "../config/ProxyConfig.js"

const levels: Record<LogLevelName, LogLevel.LogLevel> = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error
}

export const logLevelOf = (name: LogLevelName): LogLevel.LogLevel => levels[name]

/** The level as log collectors spell it (Loki, Elastic, Datadog all read `warn`). */
const levelName = (level: LogLevel.LogLevel): string => level._tag === "Warning" ? "warn" : level._tag.toLowerCase()

/** A value as JSON can hold it: Redacted and other Inspectables through their toJSON, functions as text. */
const jsonValue = (value: unknown): unknown =>
  typeof value === "bigint" || typeof value === "function" || typeof value === "symbol"
    ? String(value)
    : Inspectable.toJSON(value)

const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (typeof value !== "object" || value === null) return false
  const prototype = Object.getPrototypeOf(value)
  return prototype === Object.prototype || prototype === null
}

/** Keys the line itself owns: an annotation or a field of the message never replaces them. */
const ownKeys = new Set(["time", "level", "msg"])

/**
 * One flat JSON object per line: `time` (RFC 3339, milliseconds, UTC), `level`, `msg` (always a
 * string), the log annotations at the top level (`dialog_id`, `channel_id`, `reason`, ...), and
 * `error` with the cause when the line carries one. The parts of a message that are not text
 * become fields (a plain object) or `error` (an Error), or are written into `msg` as JSON.
 */
export const flatJsonLogger: Logger.Logger<unknown, string> = Logger.make(
  ({ annotations, cause, date, logLevel, message }) => {
    const line: Record<string, unknown> = { time: date.toISOString(), level: levelName(logLevel), msg: "" }
    const words: Array<string> = []
    for (const part of Array.isArray(message) ? message : [message]) {
      if (typeof part === "string") words.push(part)
      else if (part instanceof Error) line.error = part.message
      else if (isPlainObject(part)) {
        for (const [key, value] of Object.entries(part)) if (!ownKeys.has(key)) line[key] = jsonValue(value)
      } else if (typeof part === "object" && part !== null) words.push(Inspectable.stringifyCircular(jsonValue(part)))
      else words.push(String(part))
    }
    // A line logged with an Error alone still says something in `msg`.
    line.msg = words.length === 0 && typeof line.error === "string" ? line.error : words.join(" ")
    for (const [key, value] of HashMap.toEntries(annotations)) if (!ownKeys.has(key)) line[key] = jsonValue(value)
    if (!Cause.isEmpty(cause)) line.error = Cause.pretty(cause, { renderErrorCause: true })
    return Inspectable.stringifyCircular(line)
  }
)

export const loggerLayer = (format: LogFormat, level: LogLevelName): Layer.Layer<never> => {
  const pretty = format === "pretty" || (format === "auto" && process.stdout.isTTY === true)
  return Layer.merge(
    pretty ? Logger.pretty : Logger.replace(Logger.defaultLogger, Logger.withConsoleLog(flatJsonLogger)),
    Logger.minimumLogLevel(logLevelOf(level))
  )
}
