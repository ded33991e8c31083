/**
 * The raw pipe: the ceiling the proxy is measured against (shared/docs/performance-notes.md). ARI
 * websocket → JSON.parse → the dialog by channel id → publish `{server_id,timestamp,type,ari_body}`;
 * `commands_<dialog>` → ARI over HTTP keep-alive → `responses_<dialog>`. No routing beyond the
 * channel id, no hold, no validation, no reconnects, no logging: a ceiling, not a product.
 *
 * It talks to each broker through its client library directly, with the same tricks as our drivers
 * (NATS: 256 KiB flush threshold; RabbitMQ: Nagle off, publisher confirms counted in the background).
 */
import { connect as natsConnect } from "@nats-io/transport-node"
import amqp from "amqplib"
import { randomUUID } from "node:crypto"
import { Pool } from "undici"
import { WebSocket } from "ws"

/** What the raw pipe needs of a broker. */
export interface RawTransport {
  /** Resolves once the topics exist where that matters (RabbitMQ declares its queues). */
  readonly prepare: (topics: ReadonlyArray<string>) => Promise<void>
  readonly publish: (topic: string, payload: string) => void
  /** Resolves once subscribed; the returned function unsubscribes. */
  readonly subscribe: (topic: string, handler: (payload: string) => void) => Promise<() => void>
  readonly close: () => Promise<void>
}

export const natsRawTransport = async (servers: string): Promise<RawTransport> => {
  const options = { servers, name: "raw-pipe", pendingLimit: 256 * 1024 }
  const nc = await natsConnect(options)
  return {
    prepare: async () => undefined,
    publish: (topic, payload) => nc.publish(topic, payload),
    subscribe: async (topic, handler) => {
      const subscription = nc.subscribe(topic, {
        callback: (error, msg) => {
          if (error === null) handler(msg.string())
        }
      })
      await nc.flush()
      return () => subscription.unsubscribe()
    },
    close: () => nc.close()
  }
}

const SEED_QUEUE = { durable: true, autoDelete: false, exclusive: false }
const PROPERTIES = { contentType: "application/json", deliveryMode: 1 }

export const amqpRawTransport = async (url: string): Promise<RawTransport & { readonly created: Set<string> }> => {
  const connection = await amqp.connect(url, { noDelay: true })
  const publisher = await connection.createConfirmChannel()
  const consumer = await connection.createChannel()
  await consumer.prefetch(256)
  // The broker serves channels in parallel: declaring durable queues on a few is several times faster.
  const declarers = await Promise.all([1, 2, 3, 4].map(() => connection.createChannel()))
  let nextDeclarer = 0
  const declared = new Set<string>()
  let unconfirmed = 0
  const confirmed = () => {
    unconfirmed--
  }
  return {
    created: declared,
    prepare: async (topics) => {
      await Promise.all(
        topics.filter((t) => !declared.has(t)).map((t) =>
          declarers[nextDeclarer++ % declarers.length]!.assertQueue(t, SEED_QUEUE)
        )
      )
      for (const topic of topics) declared.add(topic)
    },
    publish: (topic, payload) => {
      unconfirmed++
      publisher.publish("", topic, Buffer.from(payload, "utf8"), PROPERTIES, confirmed)
    },
    subscribe: async (topic, handler) => {
      if (!declared.has(topic)) {
        await declarers[nextDeclarer++ % declarers.length]!.assertQueue(topic, SEED_QUEUE)
        declared.add(topic)
      }
      const { consumerTag } = await consumer.consume(topic, (message) => {
        if (message === null) return
        handler(message.content.toString("utf8"))
        consumer.ack(message)
      })
      return () => {
        consumer.cancel(consumerTag).catch(() => undefined)
      }
    },
    close: async () => {
      await publisher.waitForConfirms().catch(() => undefined)
      await connection.close().catch(() => undefined)
    }
  }
}

export interface RawPipeOptions {
  readonly wsUrl: string
  readonly stasisUrl: string
  readonly username: string
  readonly password: string
  readonly application: string
  readonly serverId: string
  readonly transport: RawTransport
}

export interface RawPipe {
  readonly dialogs: () => number
  readonly close: () => Promise<void>
}

interface RawDialog {
  readonly id: string
  /** Events that arrived while the dialog's topics were being prepared, in order. */
  pending: Array<string> | undefined
  unsubscribe: (() => void) | undefined
}

let stampMillis = -1
let stamp = ""
const timestamp = () => {
  const now = Date.now()
  if (now !== stampMillis) {
    stampMillis = now
    stamp = new Date(now).toISOString()
  }
  return stamp
}

const goUnsafe = /[<>&]/
const goEscape = (json: string) =>
  goUnsafe.test(json) ? json.replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026") : json

export const startRawPipe = async (options: RawPipeOptions): Promise<RawPipe> => {
  const { transport, application } = options
  const serverId = JSON.stringify(options.serverId)
  const base = new URL(options.stasisUrl)
  const pool = new Pool(base.origin, { connections: 16, pipelining: 1 })
  const authorization = "Basic " + Buffer.from(`${options.username}:${options.password}`).toString("base64")
  const byChannel = new Map<string, RawDialog>()
  const dialogs = new Map<string, RawDialog>()

  const execute = async (dialog: RawDialog, payload: string) => {
    let command: { unique_id?: string; url?: string; method?: string; body?: string }
    try {
      command = JSON.parse(payload)
    } catch {
      return // DUMMY
    }
    const body = command.body === undefined || command.body === "" ? undefined : command.body
    const response = await pool.request({
      path: base.pathname + (command.url ?? ""),
      method: (command.method || "GET") as "GET",
      headers: body === undefined ?
        { authorization } :
        { authorization, "content-type": "application/json" },
      ...(body === undefined ? {} : { body })
    }).then(
      async (r) => ({ status: r.statusCode, text: await r.body.text() }),
      (error: unknown) => ({ status: 502, text: String(error) })
    )
    transport.publish(
      "responses_" + dialog.id,
      "{\"unique_id\":" + JSON.stringify(command.unique_id ?? "") + ",\"status_code\":" + response.status +
        ",\"response_body\":" + goEscape(JSON.stringify(response.text)) + "}"
    )
  }

  const wrap = (type: string, frame: string) =>
    "{\"server_id\":" + serverId + ",\"timestamp\":\"" + timestamp() + "\",\"type\":\"" + type + "\",\"ari_body\":" +
    goEscape(JSON.stringify(frame)) + "}"

  const open = (channelId: string, frame: string) => {
    const dialog: RawDialog = { id: randomUUID(), pending: [frame], unsubscribe: undefined }
    byChannel.set(channelId, dialog)
    dialogs.set(dialog.id, dialog)
    const topics = ["events_" + dialog.id, "commands_" + dialog.id, "responses_" + dialog.id, application]
    void transport.prepare(topics).then(async () => {
      dialog.unsubscribe = await transport.subscribe("commands_" + dialog.id, (payload) => {
        void execute(dialog, payload)
      })
      transport.publish(
        application,
        "{\"application\":" + JSON.stringify(application) + ",\"dialog_id\":\"" + dialog.id + "\",\"server_id\":" +
          serverId + "}"
      )
      for (const held of dialog.pending ?? []) transport.publish("events_" + dialog.id, held)
      dialog.pending = undefined
    })
  }

  const onFrame = (frame: string) => {
    const event = JSON.parse(frame) as { type: string; channel?: { id?: string } }
    const channelId = event.channel?.id
    if (channelId === undefined) return
    if (event.type === "StasisStart" && !byChannel.has(channelId)) {
      open(channelId, wrap(event.type, frame))
      return
    }
    const dialog = byChannel.get(channelId)
    if (dialog === undefined) return
    const wrapped = wrap(event.type, frame)
    if (dialog.pending !== undefined) dialog.pending.push(wrapped)
    else transport.publish("events_" + dialog.id, wrapped)
    if (event.type === "StasisEnd") {
      byChannel.delete(channelId)
      dialogs.delete(dialog.id)
      dialog.unsubscribe?.()
    }
  }

  const socket = new WebSocket(`${options.wsUrl}?app=${encodeURIComponent(application)}`, {
    headers: { authorization },
    perMessageDeflate: false,
    skipUTF8Validation: true
  })
  socket.on("message", (data) => onFrame(data.toString()))
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve())
    socket.once("error", reject)
  })
  return {
    dialogs: () => dialogs.size,
    close: async () => {
      socket.terminate()
      await pool.close()
      await transport.close()
    }
  }
}
