/**
 * The messages that travel on the bus, exactly as go-ari-proxy put them there, plus our extensions.
 * Field names, order and JSON types are the wire contract (docs/protocol.md): `ari_body`, `body` and
 * `response_body` are JSON *strings*, `status_code` a number, `timestamp` RFC 3339.
 */
import { Schema } from "effect"

/**
 * Extension: the W3C trace context (`00-<trace id>-<span id>-<flags>`) of a span, so that a span on
 * the other side of the bus can continue the trace or link to it. Only present while tracing.
 */
const traceparent = Schema.optional(Schema.String)

/**
 * Announces a new dialog on the application topic (`<app>`). `traceparent` (extension): the
 * dialog's span, while the proxy traces.
 */
export class AppStart extends Schema.Class<AppStart>("AppStart")({
  application: Schema.String,
  dialog_id: Schema.String,
  server_id: Schema.String,
  traceparent
}) {}

/**
 * One ARI event of a dialog, on `events_<dialog_id>`. `ari_body` is the websocket frame verbatim.
 * `seq` (extension): the event's number in its dialog, from 1 with no gap as published (DialogEnded
 * included); a gap means events were lost, a number seen twice a duplicate. Seed clients ignore it.
 */
export class WireEvent extends Schema.Class<WireEvent>("WireEvent")({
  server_id: Schema.String,
  timestamp: Schema.String,
  type: Schema.String,
  ari_body: Schema.String,
  seq: Schema.optional(Schema.Number),
  /** The dialog's span, while the proxy traces (extension). */
  traceparent
}) {}

/**
 * A request from the application, on `commands_<dialog_id>`. `url` is relative to `stasis_url`;
 * `body` is JSON text (or ""). `unique_id` is optional on the wire (the Go client sends "").
 */
export class Command extends Schema.Class<Command>("Command")({
  unique_id: Schema.optionalWith(Schema.String, { default: () => "" }),
  url: Schema.optionalWith(Schema.String, { default: () => "" }),
  method: Schema.optionalWith(Schema.String, { default: () => "" }),
  body: Schema.optionalWith(Schema.String, { default: () => "" }),
  /** The sender's span (extension): the proxy's spans of this command continue its trace. */
  traceparent
}) {}

/** The answer to one Command, on `responses_<dialog_id>`. */
export class CommandResponse extends Schema.Class<CommandResponse>("CommandResponse")({
  unique_id: Schema.String,
  status_code: Schema.Number,
  response_body: Schema.String
}) {}

/**
 * Extension: the method of the attach handshake. An application that sends a Command with this
 * method declares that it is subscribed to the dialog's events and responses; the proxy then
 * publishes the events it held back and answers 200 `{"dialog_id":…,"held_events":n}`.
 */
export const ATTACH_METHOD = "ATTACH"

/**
 * Extension: the method that renews an application's lease on a dialog (`{"acked":N}`: it has
 * every event up to `seq` N). Answered 200 `{"lease_ms":…}`, or 409 once the lease has lapsed.
 */
export const RENEW_METHOD = "RENEW"

/**
 * Extension: the type of the last event of every dialog, published on `events_<dialog_id>` as an
 * ordinary Event whose `ari_body` is `{"type":"DialogEnded","dialog_id":…,"reason":…,"timestamp":…}`.
 * Seed clients ignore event types they do not know.
 */
export const DIALOG_ENDED_TYPE = "DialogEnded"

/** Why a dialog ended, as carried in DialogEnded. */
export type DialogEndReason =
  | "channels_left" // the last channel left Stasis or was destroyed
  | "channels_vanished" // reconciliation after an ARI reconnect found none of its channels
  | "overloaded" // its mailbox filled up: its events could not be published fast enough (docs/architecture.md)
  | "failed" // the proxy failed while handling it (a defect, logged with its ids)
  | "shutdown" // the proxy stopped
  | "unused" // an application asked for it and never put a channel in it

/**
 * Extension: an application asks for a dialog of its own (to originate into), on
 * `dialogs_<app>` (any proxy) or `dialogs_<app>@<server_id>` (that proxy). The answer goes to
 * `reply_to`, a topic the application subscribed to before asking.
 */
export class DialogRequest extends Schema.Class<DialogRequest>("DialogRequest")({
  request_id: Schema.String,
  reply_to: Schema.String,
  /** The asking application's span: the dialog's span is its child. */
  traceparent
}) {}

/** Extension: the answer to a DialogRequest. 201 with `dialog_id`, or an error status and `message`. */
export class DialogGrant extends Schema.Class<DialogGrant>("DialogGrant")({
  request_id: Schema.String,
  status_code: Schema.Number,
  dialog_id: Schema.optional(Schema.String),
  server_id: Schema.optional(Schema.String),
  application: Schema.optional(Schema.String),
  message: Schema.optional(Schema.String),
  /** The dialog's span, while the proxy traces. */
  traceparent
}) {}

/** Extension: the Asterisk behind a proxy, as ARI's `GET /asterisk/info` describes it (`system`). */
export class AsteriskSystem extends Schema.Class<AsteriskSystem>("AsteriskSystem")({
  version: Schema.String,
  entity_id: Schema.String
}) {}

/**
 * Extension: what a proxy says of itself on the presence topic, every `interval_ms` (`heartbeat`)
 * and once when it stops (`goodbye`, after its drain). `asterisk` is null until ARI has answered;
 * `started_at` is RFC 3339. A proxy unheard of for 3 of its intervals is gone.
 */
export class PresenceAnnouncement extends Schema.Class<PresenceAnnouncement>("PresenceAnnouncement")({
  type: Schema.Literal("heartbeat", "goodbye"),
  server_id: Schema.String,
  asterisk: Schema.NullOr(AsteriskSystem),
  applications: Schema.Array(Schema.String),
  ready: Schema.Boolean,
  draining: Schema.Boolean,
  active_dialogs: Schema.Number,
  proxy_version: Schema.String,
  started_at: Schema.String,
  interval_ms: Schema.Number
}) {}

/** Extension: a client that starts listening to presence asks every proxy to announce itself now. */
export class PresenceProbe extends Schema.Class<PresenceProbe>("PresenceProbe")({
  type: Schema.Literal("probe")
}) {}

/** Every message of the presence topic, from its JSON text. */
export const PresenceMessage = Schema.parseJson(Schema.Union(PresenceAnnouncement, PresenceProbe))
