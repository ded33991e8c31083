/**
 * Topic names: NATS subjects, RabbitMQ queue names. The seed's names exactly, with an optional
 * prefix (off by default, so unmodified seed clients interoperate).
 */
export interface Topics {
  /** Where AppStart is announced: the application name itself. */
  readonly app: (application: string) => string
  readonly events: (dialogId: string) => string
  readonly commands: (dialogId: string) => string
  readonly responses: (dialogId: string) => string
  /** Extension: ARI events that no dialog owns, per application. */
  readonly unrouted: (application: string) => string
  /**
   * Extension: where applications ask for a dialog of their own (app-initiated): any proxy
   * serving the application, or the one whose server_id is given.
   */
  readonly dialogRequests: (application: string, serverId?: string) => string
  /**
   * Extension: presence, a broadcast topic (every subscriber gets every message): the proxies'
   * heartbeats and goodbyes, the clients' probes. Not an application name a seed client would use.
   */
  readonly presence: string
}

export const makeTopics = (prefix = ""): Topics => ({
  app: (application) => prefix + application,
  events: (dialogId) => prefix + "events_" + dialogId,
  commands: (dialogId) => prefix + "commands_" + dialogId,
  responses: (dialogId) => prefix + "responses_" + dialogId,
  unrouted: (application) => prefix + "unrouted_" + application,
  dialogRequests: (application, serverId) =>
    prefix + "dialogs_" + application + (serverId === undefined ? "" : "@" + serverId),
  presence: prefix + "ari_proxy_presence"
})

export const seedTopics: Topics = makeTopics()
