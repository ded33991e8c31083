/**
 * Addresses for tests without the race of a "free port" helper (a port released, then bound again
 * by whoever comes first): servers listen on port 0 and report the port they got.
 *
 * An address nobody listens on (a refused connection, a server that comes up later, a child
 * process told where to listen) is made the same way: we listen on 127.0.0.1 port 0, keep that
 * server, and hand out 127.0.0.2 with its port. Linux routes all of 127.0.0.0/8 to the loopback;
 * nothing binds 127.0.0.2 but these tests; and while we hold the port on 127.0.0.1, the OS gives it
 * to nobody else (neither listen(0) nor an outgoing connection picks a port bound to an address).
 */
import { Effect, type Scope } from "effect"
import { createServer, type AddressInfo, type Server } from "node:net"

export interface QuietAddress {
  readonly host: string
  readonly port: number
}

/** The host of quiet addresses: a loopback address nothing else binds. */
export const quietHost = "127.0.0.2"

const listenOn = (server: Server, port: number, host: string) =>
  Effect.async<number, Error>((resume) => {
    const onError = (error: Error) => resume(Effect.fail(error))
    server.once("error", onError)
    server.listen(port, host, () => {
      server.off("error", onError)
      resume(Effect.succeed((server.address() as AddressInfo).port))
    })
  })

/**
 * An address where nobody listens until the test does, held for the scope. Connections to it are
 * refused (ECONNREFUSED) until something listens on `host`:`port`.
 */
export const quietAddress: Effect.Effect<QuietAddress, never, Scope.Scope> = Effect.acquireRelease(
  Effect.gen(function*() {
    const holder = createServer((connection) => connection.destroy())
    const port = yield* Effect.orDie(listenOn(holder, 0, "127.0.0.1"))
    return { holder, address: { host: quietHost, port } }
  }),
  ({ holder }) => Effect.sync(() => holder.close())
).pipe(Effect.map(({ address }) => address))
