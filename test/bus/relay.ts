/**
 * A TCP relay for tests: listens on 127.0.0.1 (port 0) and forwards to a broker. `cut()` destroys
 * every relayed connection (as a network failure would) and keeps listening; `refuse(true)`
 * makes new connections fail until `refuse(false)`; `stall()` stops forwarding without closing
 * anything (a broker that stopped answering). The shared broker is never restarted.
 */
import { Effect } from "effect"
import * as net from "node:net"

export interface Relay {
  readonly port: number
  /** Destroys all relayed sockets, both sides. */
  readonly cut: () => void
  /** While on, accepted connections are destroyed at once (the broker looks down). */
  readonly refuse: (on: boolean) => void
  /** Connections relayed so far (a reconnect makes it grow). */
  readonly connections: () => number
  /** Stops forwarding, both ways, on the connections open now: they stay open, silent. */
  readonly stall: () => void
}

export const makeRelay = (targetPort: number, targetHost = "127.0.0.1") =>
  Effect.acquireRelease(
    Effect.async<{ relay: Relay; server: net.Server; sockets: Set<net.Socket> }>((resume) => {
      const sockets = new Set<net.Socket>()
      const pairs = new Set<readonly [net.Socket, net.Socket]>()
      let refusing = false
      let relayed = 0
      const track = (socket: net.Socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        socket.on("error", () => socket.destroy())
      }
      const server = net.createServer((client) => {
        if (refusing) {
          client.destroy()
          return
        }
        relayed++
        track(client)
        const upstream = net.connect(targetPort, targetHost)
        track(upstream)
        upstream.setNoDelay(true)
        client.setNoDelay(true)
        client.pipe(upstream)
        upstream.pipe(client)
        const pair = [client, upstream] as const
        pairs.add(pair)
        client.on("close", () => pairs.delete(pair))
        client.on("close", () => upstream.destroy())
        upstream.on("close", () => client.destroy())
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as net.AddressInfo
        const relay: Relay = {
          port: address.port,
          cut: () => {
            for (const socket of sockets) socket.destroy()
          },
          refuse: (on) => {
            refusing = on
          },
          connections: () => relayed,
          stall: () => {
            for (const [client, upstream] of pairs) {
              client.unpipe(upstream)
              upstream.unpipe(client)
              client.pause()
              upstream.pause()
            }
          }
        }
        resume(Effect.succeed({ relay, server, sockets }))
      })
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ relay }) => relay))
