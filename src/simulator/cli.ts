#!/usr/bin/env node
/**
 * Runs the ARI simulator for manual use:
 *   node dist/simulator/cli.js --port 8088 [--host 127.0.0.1] [--user asterisk] [--password asterisk]
 */
import { parseArgs } from "node:util"
import { startSimulator } from "./server.js"

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8088" },
    host: { type: "string", default: "127.0.0.1" },
    user: { type: "string", default: "asterisk" },
    password: { type: "string", default: "asterisk" },
    help: { type: "boolean", default: false }
  }
})

if (values.help) {
  process.stdout.write("usage: cli.js [--port 8088] [--host 127.0.0.1] [--user asterisk] [--password asterisk]\n")
  process.exit(0)
}

const handle = await startSimulator({
  port: Number(values.port),
  host: values.host,
  credentials: { username: values.user, password: values.password }
})
process.stdout.write(`ARI simulator: REST ${handle.url}, events ${handle.wsUrl}, control ${handle.controlUrl}\n`)

const stop = () => {
  void handle.close().then(() => process.exit(0))
}
process.on("SIGINT", stop)
process.on("SIGTERM", stop)
