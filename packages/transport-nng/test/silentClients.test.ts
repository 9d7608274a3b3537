/**
 * Clients that connect to a listener's port and then say nothing, or a byte
 * now and then, are dropped after a bounded time, over every scheme that
 * takes connections from a network: tcp (nng's 10 s SP negotiation), tls+tcp
 * (the TLS negotiation), ws and wss (the HTTP upgrade request). Before
 * vendor/nng-1.12.0-close.patch, libnng kept such clients of tls+tcp (the
 * negotiation's timeout was lost) and of ws and wss (its HTTP server had no
 * timeout) for good: a descriptor and a connection's memory each, so a flood
 * of them took the listener's descriptors. A client that speaks the protocol
 * is served meanwhile.
 */
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Net from "node:net"
import * as Certs from "./fixtures/certs.ts"

const encoder = new TextEncoder()

/** What a trickling client sends, a byte at a time: the start of what the scheme expects, never finished. */
const trickled: Record<string, Buffer> = {
  tcp: Buffer.from([0, 0x53, 0x50, 0]),
  tls: Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, ...Array<number>(200).fill(1)]),
  ws: Buffer.from(`GET /silent HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ${"a".repeat(200)}`)
}

describe.each(
  [
    ["nng+tcp://127.0.0.1:0", "tcp", false],
    ["nng+tls+tcp://127.0.0.1:0", "tls", true],
    ["nng+ws://127.0.0.1:0/silent", "ws", false],
    ["nng+wss://127.0.0.1:0/silent", "tls", true]
  ] as const
)("%s: clients that connect and say nothing", (scheme, kind, secure) => {
  it.live(
    "are dropped after the negotiation's timeout (silent ones, and ones sending a byte every 2 s); a real client is served",
    () =>
      Effect.gen(function*() {
        const certs = secure ? yield* Certs.make : undefined
        const listener = yield* NngTransport.make({ tls: certs?.good.server }).listen(scheme)
        const port = Number(/:(\d+)/.exec(listener.address.replace(/^[a-z+]+:\/\//, ""))![1])
        const started = Date.now()
        const clients = yield* Effect.acquireRelease(
          Effect.sync(() =>
            Array.from({ length: 8 }, (_, i) => {
              const socket = Net.connect(port, "127.0.0.1")
              socket.on("error", () => {})
              // read (and drop) what the listener sends: a socket that does not read never sees the end
              socket.resume()
              if (i >= 6) {
                let sent = 0
                const timer = setInterval(() => {
                  if (sent < trickled[kind]!.length && socket.writable) {
                    socket.write(trickled[kind]!.subarray(sent, ++sent))
                  }
                }, 2000)
                socket.once("close", () => clearInterval(timer))
              }
              return socket
            })
          ),
          (sockets) => Effect.sync(() => sockets.forEach((socket) => socket.destroy()))
        )
        const closedAfter = Effect.forEach(clients, (socket) =>
          Effect.callback<number>((resume) => {
            if (socket.closed) return resume(Effect.succeed(Date.now() - started))
            socket.once("close", () => resume(Effect.succeed(Date.now() - started)))
          }), { concurrency: "unbounded" })
        // meanwhile a client that speaks the protocol is served
        const client = yield* NngTransport.make({
          tls: certs === undefined ? undefined : { caFile: certs.good.caFile }
        })
          .dial(listener.address)
        const server = yield* listener.accept
        yield* client.send(encoder.encode("ping"))
        assert.deepStrictEqual(yield* server.receive, encoder.encode("ping"))
        const after = yield* Effect.timeoutOrElse(closedAfter, {
          duration: "45 seconds",
          orElse: () =>
            Effect.die(
              new Error(`still connected after 45 s: ${clients.filter((s) => !s.closed).length} of ${clients.length}`)
            )
        })
        for (const millis of after) assert.isAtLeast(millis, 9_000, "dropped by a timeout, not at once")
      }).pipe(Effect.scoped),
    90_000
  )
})
