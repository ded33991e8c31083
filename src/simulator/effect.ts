/**
 * The simulator as a scoped Effect service: started on acquire, closed on release.
 */
import { Context, Effect, Layer, Schema } from "effect"
import type { Scope } from "effect"
import type { SimulatorOptions } from "./options.js"
import type { SimulatorHandle } from "./server.js"
import { startSimulator } from "./server.js"

export class SimulatorStartError extends Schema.TaggedError<SimulatorStartError>()("SimulatorStartError", {
  message: Schema.String,
  cause: Schema.Defect
}) {}

export class Simulator extends Context.Tag("ari-proxy/Simulator")<Simulator, SimulatorHandle>() {
  /** A simulator living as long as the layer. */
  static readonly layer = (options: SimulatorOptions = {}): Layer.Layer<Simulator, SimulatorStartError> =>
    Layer.scoped(Simulator, makeSimulator(options))
}

/** Starts a simulator that closes when the scope closes. */
export const makeSimulator = (
  options: SimulatorOptions = {}
): Effect.Effect<SimulatorHandle, SimulatorStartError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => startSimulator(options),
      catch: (cause) =>
        new SimulatorStartError({
          message: `ARI simulator could not start: ${cause instanceof Error ? cause.message : String(cause)}`,
          cause
        })
    }),
    (handle) => Effect.promise(() => handle.close())
  )
