/**
 * The proxy under soak, in its own process (forked by soak/run.ts with `--expose-gc`, its output
 * going to a log file): the production composition (`proxyApplication`) with its default settings
 * (but `dialog_lease_ms` when given), its metrics endpoint on `httpPort`, JSON logs at info. Over
 * IPC it answers its memory after a full GC, and closes (the production drain) when asked.
 */
import { Effect, Exit, Layer, Scope } from "effect"
import { makeProxyConfig } from "../src/config/ProxyConfigService.js"
import { proxyApplication } from "../src/proxy/application.js"
import { loggerLayer } from "../src/proxy/logging.js"
import type { BusKind } from "./broker.js"

export interface ProxySpec {
  readonly bus: BusKind
  readonly busUrl: string
  readonly httpPort: number
  readonly application: string
  readonly stasisUrl: string
  readonly websocketUrl: string
  readonly username: string
  readonly password: string
  /** `dialog_lease_ms`; the default when undefined. */
  readonly leaseMs: number | undefined
  /** NATS: `bus_config.jetstream.enabled`, under `subject_prefix`. */
  readonly jetstream: boolean
  readonly subjectPrefix: string
}

export type ProxyRequest = { readonly id: number; readonly op: "memory" | "close" }

/** Bytes, after a full GC. */
export interface ProxyMemory {
  readonly rss: number
  readonly heap: number
}

const collectGarbage = () => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run with --expose-gc")
  gc()
  gc()
}

// A Ctrl-C reaches the whole process group: the soak stops this process itself, once its calls are over.
process.on("SIGINT", () => undefined)

const spec = JSON.parse(process.argv[2] ?? "{}") as ProxySpec
const config = makeProxyConfig({
  applications: [spec.application],
  serverId: "soak",
  stasisUrl: spec.stasisUrl,
  websocketUrl: spec.websocketUrl,
  wsUser: spec.username,
  wsPassword: spec.password,
  messageBus: spec.bus === "nats" ? "NATS" : "RABBITMQ",
  bus: { url: spec.busUrl, subjectPrefix: spec.subjectPrefix, jetstream: { enabled: spec.jetstream } },
  httpPort: spec.httpPort,
  logLevel: "info",
  logFormat: "json",
  ...(spec.leaseMs !== undefined ? { dialogLeaseMs: spec.leaseMs } : {})
})
const scope = Effect.runSync(Scope.make())
await Effect.runPromise(
  Layer.build(proxyApplication(config)).pipe(Scope.extend(scope), Effect.provide(loggerLayer("json", "info")))
)
process.on("message", async (request: ProxyRequest) => {
  switch (request.op) {
    case "memory": {
      collectGarbage()
      const usage = process.memoryUsage()
      process.send!({ id: request.id, value: { rss: usage.rss, heap: usage.heapUsed } satisfies ProxyMemory })
      return
    }
    case "close":
      await Effect.runPromise(Scope.close(scope, Exit.void))
      process.send!({ id: request.id, value: 0 })
      process.exit(0)
  }
})
process.send!({ ready: true })
