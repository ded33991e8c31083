import { FileSystem } from "@effect/platform"
import { SystemError } from "@effect/platform/Error"
import { Effect, Layer } from "effect"

/** A FileSystem holding only `files`; anything else is NotFound. */
export const memoryFs = (files: Record<string, string>): Layer.Layer<FileSystem.FileSystem> =>
  FileSystem.layerNoop({
    readFileString: (path) =>
      path in files ?
        Effect.succeed(files[path]!) :
        Effect.fail(
          new SystemError({
            reason: "NotFound",
            module: "FileSystem",
            method: "readFileString",
            pathOrDescriptor: path
          })
        )
  })

/** The seed README's config.json, with the placeholders ("RABBITMQ|NATS", url "") filled in. */
export const seedConfig = {
  origin: "http://foo.com",
  server_id: "bar",
  applications: ["foo"],
  websocket_url: "ws://localhost:8080/ari/events",
  stasis_url: "http://localhost:8080/ari",
  ws_user: "user",
  ws_password: "secret",
  message_bus: "NATS",
  bus_config: {
    url: "nats://localhost:4222",
    queue: ""
  }
}

export const seedJson = JSON.stringify(seedConfig, null, 4)
