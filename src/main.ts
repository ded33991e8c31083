#!/usr/bin/env node
/**
 * The command line: `ari-proxy [proxy|demo] [-config path]`.
 * - proxy (default): runs the proxy from the seed's config.json (and ARI_PROXY_* variables);
 * - demo: the simulator, the proxy on the in-memory bus and a sample application in one process.
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Either, Layer } from "effect"
import { parseArgs, usage } from "./config/args.js"
import { ConfigWarnings, loadConfigFile } from "./config/ProxyConfigService.js"
import { runDemo } from "./demo/demo.js"
import { loggerLayer } from "./proxy/logging.js"
import { proxyApplication } from "./proxy/application.js"

const fail = (message: string) =>
  Effect.sync(() => {
    process.stderr.write(message.endsWith("\n") ? message : message + "\n")
    process.exitCode = 1
  })

const runProxy = (path: string) =>
  Effect.gen(function*() {
    const loaded = yield* Effect.either(loadConfigFile(path))
    if (Either.isLeft(loaded)) return yield* fail(loaded.left.message)
    const { config, warnings } = loaded.right
    const program = Effect.gen(function*() {
      for (const warning of warnings) yield* Effect.logWarning(warning)
      return yield* Layer.launch(proxyApplication(config).pipe(Layer.provide(Layer.succeed(ConfigWarnings, warnings))))
    })
    return yield* program.pipe(
      Effect.onInterrupt(() => Effect.logInfo("ari-proxy stopped")),
      Effect.tapErrorCause((cause) => Effect.logError("ari-proxy stopped", cause)),
      Effect.provide(loggerLayer(config.logFormat, config.logLevel))
    )
  })

const main = Effect.gen(function*() {
  const parsed = parseArgs(process.argv.slice(2))
  if (Either.isLeft(parsed)) return yield* fail(`${parsed.left}\n\n${usage}`)
  switch (parsed.right.mode) {
    case "help":
      return yield* Effect.sync(() => process.stdout.write(usage + "\n"))
    case "demo":
      return yield* runDemo
    case "proxy":
      return yield* runProxy(parsed.right.configPath)
  }
})

// runMain turns the first SIGINT or SIGTERM into an interruption: the proxy drains, then exits 0.
// A second signal means "stop now": exit at once, with the shell's code for that signal.
const exitCodeOfSignal = { SIGINT: 130, SIGTERM: 143 } as const
let signalsReceived = 0
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (++signalsReceived < 2) return
    process.stderr.write(`ari-proxy: second signal (${signal}), exiting without finishing the drain\n`)
    process.exit(exitCodeOfSignal[signal])
  })
}

NodeRuntime.runMain(main.pipe(Effect.provide(NodeContext.layer)), { disablePrettyLogger: true })
