/**
 * The production log format: one flat JSON object per line, as log collectors index it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Data, Effect, Logger, LogLevel, Redacted, TestClock } from "effect"
import { vi } from "vitest"
import { flatJsonLogger, loggerLayer } from "../../src/proxy/logging.js"

/** Runs `effect` at debug level with the flat JSON logger writing into the returned array (parsed). */
const linesOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<Record<string, unknown>> = []
    const capture = Logger.map(flatJsonLogger, (line) => {
      lines.push(JSON.parse(line) as Record<string, unknown>)
    })
    yield* effect.pipe(
      Effect.exit,
      Logger.withMinimumLogLevel(LogLevel.Debug),
      Effect.provide(Logger.replace(Logger.defaultLogger, capture))
    )
    return lines
  })

class DialogFailure extends Data.TaggedError("DialogFailure")<{ readonly message: string }> {}

describe("JSON log lines", () => {
  it.effect("carry the time (RFC 3339, ms), a lower-case level, msg as a string, annotations at the top level", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.parse("2025-03-04T05:06:07.089Z"))
      const lines = yield* linesOf(
        Effect.all([
          Effect.logDebug("connecting"),
          Effect.logInfo("dialog opened"),
          Effect.logWarning("ARI websocket cannot connect", "(retrying)"),
          Effect.logError("publish refused")
        ]).pipe(
          Effect.annotateLogs({ dialog_id: "d-1", channel_id: "c-1", application: "app", server_id: "ast-1" })
        )
      )
      expect(lines.map((line) => [line.level, line.msg])).toEqual([
        ["debug", "connecting"],
        ["info", "dialog opened"],
        ["warn", "ARI websocket cannot connect (retrying)"],
        ["error", "publish refused"]
      ])
      for (const line of lines) {
        expect(line.time).toBe("2025-03-04T05:06:07.089Z")
        expect(line).toMatchObject({ dialog_id: "d-1", channel_id: "c-1", application: "app", server_id: "ast-1" })
        expect(Object.keys(line).slice(0, 3)).toEqual(["time", "level", "msg"])
        expect(line).not.toHaveProperty("annotations")
        expect(line).not.toHaveProperty("error")
      }
    }))

  it.effect("turn the parts of a message that are not text into fields, or JSON inside msg", () =>
    Effect.gen(function*() {
      const [config, mixed, errorOnly] = yield* linesOf(
        Effect.all([
          Effect.logInfo("ari-proxy starting", { applications: ["app"], wsPassword: "<set>", msg: "not mine" }),
          Effect.logInfo("retry", 3, "of", 5, ["a", "b"], null),
          Effect.logError(new Error("socket hang up"))
        ])
      )
      expect(config).toMatchObject({ msg: "ari-proxy starting", applications: ["app"], wsPassword: "<set>" })
      expect(mixed!.msg).toBe("retry 3 of 5 [\"a\",\"b\"] null")
      expect(errorOnly).toMatchObject({ msg: "socket hang up", error: "socket hang up" })
    }))

  it.effect("put the cause under error, and an annotated reason beside it", () =>
    Effect.gen(function*() {
      const [failed, died] = yield* linesOf(
        Effect.all([
          Effect.logError("dialog failed", Cause.fail(new DialogFailure({ message: "bridge vanished" }))).pipe(
            Effect.annotateLogs("reason", "failed")
          ),
          Effect.die(new Error("actor crashed")).pipe(
            Effect.tapErrorCause((cause) => Effect.logError("actor failed", cause))
          )
        ], { mode: "either" })
      )
      expect(failed).toMatchObject({ msg: "dialog failed", level: "error", reason: "failed" })
      expect(failed!.error).toMatch(/bridge vanished/)
      expect(died!.msg).toBe("actor failed")
      expect(died!.error).toMatch(/actor crashed/)
    }))

  it.effect("never print a Redacted value, in the message or an annotation", () =>
    Effect.gen(function*() {
      const secret = Redacted.make("Ari$ecret")
      const lines = yield* linesOf(
        Effect.logInfo("config", { wsPassword: secret }, secret).pipe(Effect.annotateLogs("token", secret))
      )
      expect(JSON.stringify(lines)).not.toContain("Ari$ecret")
      expect(lines[0]).toMatchObject({ wsPassword: "<redacted>", token: "<redacted>" })
    }))

  it.effect("are what log_format json writes on standard output, one per line, from the minimum level", () =>
    Effect.gen(function*() {
      const written: Array<string> = []
      const spy = vi.spyOn(console, "log").mockImplementation((line: string) => {
        written.push(line)
      })
      yield* Effect.all([Effect.logDebug("hidden"), Effect.logInfo("shown")]).pipe(
        Effect.annotateLogs("dialog_id", "d-2"),
        Effect.provide(loggerLayer("json", "info")),
        Effect.ensuring(Effect.sync(() => spy.mockRestore()))
      )
      expect(written).toHaveLength(1)
      expect(written[0]).not.toContain("\n")
      expect(JSON.parse(written[0]!)).toMatchObject({ level: "info", msg: "shown", dialog_id: "d-2" })
    }))
})
