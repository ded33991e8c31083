import { Schema } from "effect"

/**
 * The configuration is unusable. `problems` names each bad key and why, never a secret;
 * `message` is the text main.ts prints before exiting 1.
 */
export class ConfigInvalid extends Schema.TaggedError<ConfigInvalid>()("ConfigInvalid", {
  /** The file path, or "config provider" when a host application supplied the values. */
  source: Schema.String,
  problems: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `Invalid configuration (${this.source}):\n${this.problems.map((p) => `  - ${p}`).join("\n")}`
  }
}
