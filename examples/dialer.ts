/**
 * An outbound dialer with the Promise client: ask a proxy for a dialog of our own, call a number
 * into it, play a message when the callee answers, hang up.
 *
 *   const client = await connectAriClient({ bus: "nats", application: "dialer" })
 *   await dial(client, { endpoint: "PJSIP/bob" })
 */
import { type AriClientPromise, Gone } from "ari-proxy/client"

export interface DialerOptions {
  readonly endpoint: string
  readonly message?: string
  /** Call through the Asterisk with this server_id; by default any proxy serving the application. */
  readonly serverId?: string
}

export interface DialResult {
  readonly dialogId: string
  readonly channelId: string
  readonly answered: boolean
}

export const dial = async (client: AriClientPromise, options: DialerOptions): Promise<DialResult> => {
  const dialog = await client.createDialog(options.serverId === undefined ? {} : { serverId: options.serverId })
  try {
    const callee = await dialog.channels.originate({ endpoint: options.endpoint, callerId: "Dialer <200>" })
    // Gone: the callee's channel was destroyed before it answered (busy, no answer, ...).
    const answered = await callee.started.then(
      () => true,
      (error) => error instanceof Gone ? false : Promise.reject(error)
    )
    if (answered) {
      const message = await callee.play({ media: options.message ?? "sound:tt-monkeys" })
      await message.finished
      await callee.hangup()
      await dialog.ended
    }
    return { dialogId: dialog.id, channelId: callee.id, answered }
  } finally {
    await dialog.close()
  }
}
