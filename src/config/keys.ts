/**
 * Every configuration key, once: the file's snake_case key, its path, its environment variable.
 * The file normaliser, the environment overlay and the Config reader all walk this table, so a key
 * added here is accepted everywhere at once.
 */

export interface KeySpec {
  /** Dotted snake_case key as written in config.json, e.g. `bus_config.url`. */
  readonly key: string
  readonly path: ReadonlyArray<string>
  /** `ARI_PROXY_` + the key in upper snake case, dots become underscores. */
  readonly env: string
  /** A list (JSON array, comma-separated in the environment). */
  readonly list: boolean
}

const spec = (key: string, list = false): KeySpec => ({
  key,
  path: key.split("."),
  env: envName(key),
  list
})

export const ENV_PREFIX = "ARI_PROXY_"

export const envName = (key: string): string => ENV_PREFIX + key.replaceAll(".", "_").toUpperCase()

export const KEYS: ReadonlyArray<KeySpec> = [
  // the seed's keys (seed-protocol §1.2)
  spec("origin"),
  spec("server_id"),
  spec("applications", true),
  spec("websocket_url"),
  spec("stasis_url"),
  spec("ws_user"),
  spec("ws_password"),
  spec("message_bus"),
  spec("bus_config.url"),
  spec("bus_config.queue"),
  // ours
  spec("bus_config.subject_prefix"),
  spec("bus_config.user"),
  spec("bus_config.password"),
  spec("bus_config.token"),
  spec("bus_config.nkey_seed"),
  spec("bus_config.creds_file"),
  spec("bus_config.tls.ca"),
  spec("bus_config.tls.cert"),
  spec("bus_config.tls.key"),
  spec("bus_config.publish_buffer_size"),
  spec("bus_config.prefetch"),
  spec("bus_config.queue_delete_grace_ms"),
  spec("log_level"),
  spec("log_format"),
  spec("http_port"),
  spec("http_host"),
  spec("command_timeout_ms"),
  spec("rest_connections"),
  spec("attach_grace_ms"),
  spec("max_held_events"),
  spec("ended_linger_ms"),
  spec("requested_dialog_idle_ms"),
  spec("dialog_mailbox_size"),
  spec("unrouted_events"),
  spec("subscribe_all"),
  spec("reconnect_min_ms"),
  spec("reconnect_max_ms"),
  spec("ping_interval_ms"),
  spec("shutdown_timeout_ms")
]

/** Keys whose values are secrets: never echoed, kept as `Redacted`. */
export const SECRET_KEYS: ReadonlySet<string> = new Set([
  "ws_password",
  "bus_config.password",
  "bus_config.token",
  "bus_config.nkey_seed"
])
