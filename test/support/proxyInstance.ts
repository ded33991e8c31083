/**
 * A proxy in a process of its own, for the presence tests (run with vite-node): the whole proxy
 * application on NATS or RabbitMQ against a simulator of the test, stopped by the test with SIGTERM
 * (it drains and says goodbye, as `main.ts` does) or SIGKILL (it says nothing more).
 * Arguments: a JSON object `{ "bus": "nats" | "rabbitmq", "url", "prefix", "serverId", "application",
 * "presenceIntervalMs", "ari": { "url", "wsUrl", "user", "password" } }`.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer, Logger, LogLevel } from "effect"
import { makeProxyConfig } from "../../src/config/ProxyConfigService.js"
import { proxyApplication } from "../../src/proxy/application.js"

const spec = JSON.parse(process.argv[2] ?? "{}") as {
  readonly bus: "nats" | "rabbitmq"
  readonly url: string
  readonly prefix: string
  readonly serverId: string
  readonly application: string
  readonly presenceIntervalMs: number
  readonly ari: { readonly url: string; readonly wsUrl: string; readonly user: string; readonly password: string }
}

const config = makeProxyConfig({
  applications: [spec.application],
  serverId: spec.serverId,
  stasisUrl: spec.ari.url,
  websocketUrl: spec.ari.wsUrl,
  wsUser: spec.ari.user,
  wsPassword: spec.ari.password,
  messageBus: spec.bus === "nats" ? "NATS" : "RABBITMQ",
  bus: { url: spec.url, subjectPrefix: spec.prefix },
  presenceIntervalMs: spec.presenceIntervalMs,
  reconnectMinMs: 20,
  reconnectMaxMs: 200
})

// runMain turns SIGTERM into an interruption: the proxy drains, says goodbye, and the process exits 0.
NodeRuntime.runMain(Layer.launch(proxyApplication(config)).pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
