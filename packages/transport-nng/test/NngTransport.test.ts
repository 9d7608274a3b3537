import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Transport from "@effect-ipc/core/Transport"
import { stalls } from "@effect-ipc/testing/Progress"
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { unusedPort } from "./fixtures/ports.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A fresh directory, removed (and checked empty before) when the scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** A transport whose `authorize` admits the first peer it is asked about, and no other. */
const firstOnly = () => {
  let asked = 0
  return NngTransport.make({ authorize: () => ++asked === 1, connectTimeout: "1 second" })
}

describe("NngTransport", () => {
  it.live("serves many clients at one address, each in its own conversation", () =>
    Effect.gen(function*() {
      const transport = NngTransport.make()
      const listener = yield* transport.listen("nng+tcp://127.0.0.1:0")
      const address = listener.address
      yield* Effect.forkScoped(Transport.serve(listener, (channel) =>
        Effect.forever(Effect.flatMap(channel.receive, (m) =>
          channel.send(encoder.encode(`${channel.peer.description}: ${decoder.decode(m)}`))))))
      const replies = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) =>
          i),
        (i) =>
          Effect.gen(function*() {
            const client = yield* transport.dial(address)
            yield* client.send(encoder.encode(`client ${i}`))
            return decoder.decode(yield* client.receive)
          }),
        { concurrency: 50 }
      )
      assert.deepStrictEqual(replies, Array.from({ length: 50 }, (_, i) => `${address}: client ${i}`))
    }).pipe(Effect.scoped))

  it.live(
    "a maxMessageSize over libnng's limit (4 GiB) is InvalidOption at listen and dial, not a listener that never serves",
    () =>
      Effect.gen(function*() {
        for (const size of [2 ** 32, 2 ** 40]) {
          const transport = NngTransport.make({ maxMessageSize: size })
          const openings: ReadonlyArray<Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>> = [
            transport.listen("nng+tcp://127.0.0.1:0"),
            transport.dial("nng+tcp://127.0.0.1:1")
          ]
          for (const opening of openings) {
            const refused = yield* Effect.flip(Effect.scoped(opening))
            assert.strictEqual(refused.reason._tag, "InvalidOption", refused.message)
            assert.match(refused.detail, /^maxMessageSize \d+ is over libnng's limit/)
          }
        }
        // under it: served
        const listener = yield* NngTransport.make({ maxMessageSize: 2 ** 31 }).listen("nng+tcp://127.0.0.1:0")
        const client = yield* NngTransport.make().dial(listener.address)
        const server = yield* listener.accept
        yield* client.send(new Uint8Array([1]))
        assert.deepStrictEqual([...(yield* server.receive)], [1])
      }).pipe(Effect.scoped),
    30_000
  )

  it.live("listening on port 0 reports the port it bound, and clients reach it there", () =>
    Effect.gen(function*() {
      const transport = NngTransport.make()
      const listener = yield* transport.listen("nng+tcp://127.0.0.1:0")
      assert.match(listener.address, /^nng\+tcp:\/\/127\.0\.0\.1:\d+$/)
      assert.notStrictEqual(listener.address, "nng+tcp://127.0.0.1:0")
      const client = yield* transport.dial(listener.address)
      const server = yield* listener.accept
      yield* client.send(encoder.encode("found you"))
      assert.strictEqual(decoder.decode(yield* server.receive), "found you")
    }).pipe(Effect.scoped))

  // README: "Port 0 is for listening only: a dial of it (here, and by the patterns' dial) is InvalidAddress at once"
  it.live("a dial of port 0 is InvalidAddress on every network scheme, not a refused connection or a timeout", () =>
    Effect.gen(function*() {
      // a connect timeout no test waits out: only the address check can end these dials
      const transport = NngTransport.make({ connectTimeout: "1 hour" })
      for (
        const address of [
          "nng+tcp://127.0.0.1:0",
          "nng+tcp://[::1]:0",
          "nng+ws://127.0.0.1:0/x",
          "nng+tls+tcp://127.0.0.1:0",
          "nng+wss://127.0.0.1:0/x"
        ]
      ) {
        const refused = yield* Effect.flip(Effect.scoped(transport.dial(address)))
        assert.strictEqual(refused.reason._tag, "InvalidAddress", `${address}: ${refused.message}`)
        assert.include(refused.detail, "port 0 asks listen for a free port", address)
        assert.strictEqual(refused.address, address)
      }
    }))

  it.live("carries channels over WebSocket (nng+ws://)", () =>
    Effect.gen(function*() {
      const transport = NngTransport.make()
      const listener = yield* transport.listen("nng+ws://127.0.0.1:0/effect-ipc")
      assert.match(listener.address, /^nng\+ws:\/\/127\.0\.0\.1:\d+\/effect-ipc$/)
      assert.notInclude(listener.address, ":0/")
      const clients = yield* Effect.forEach([1, 2, 3], () => transport.dial(listener.address))
      for (const [i, client] of clients.entries()) {
        const server = yield* listener.accept
        yield* client.send(encoder.encode(`ws ${i}`))
        assert.strictEqual(decoder.decode(yield* server.receive), `ws ${i}`)
        yield* server.send(encoder.encode(`back ${i}`))
        assert.strictEqual(decoder.decode(yield* client.receive), `back ${i}`)
      }
    }).pipe(Effect.scoped))

  it.live("over ipc: the peer's credentials, a 0600 socket file, and nothing left on disk", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const transport = NngTransport.make()
      const path = Path.join(dir, "creds.ipc")
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* transport.listen(`nng+ipc://${path}`)
        assert.strictEqual(Fs.statSync(path).mode & 0o777, 0o600)
        const client = yield* transport.dial(`nng+ipc://${path}`)
        const server = yield* listener.accept
        assert.strictEqual(client.peer.pid, process.pid)
        assert.strictEqual(server.peer.pid, process.pid)
        assert.strictEqual(server.peer.uid, process.getuid!())
        // conversations run on sockets in a private (0700) directory beside the lobby
        const entries = Fs.readdirSync(dir).toSorted()
        assert.strictEqual(entries.length, 2)
        assert.strictEqual(entries[1], "creds.ipc")
        const conversations = Path.join(dir, entries[0]!)
        assert.strictEqual(Fs.lstatSync(conversations).mode & 0o777, 0o700)
        assert.strictEqual(Fs.readdirSync(conversations).length, 1)
      }))
      assert.deepStrictEqual(Fs.readdirSync(dir), [], "the listener removed its socket file")
      // a mode that lets the group or others connect lets them search the conversations' directory, no more
      for (const [mode, expected] of [[0o660, 0o710], [0o606, 0o701], [0o666, 0o711]] as const) {
        yield* Effect.scoped(Effect.gen(function*() {
          yield* NngTransport.make({ mode }).listen(`nng+ipc://${path}`)
          const conversations = Fs.readdirSync(dir).find((name) => name !== "creds.ipc")!
          assert.strictEqual(Fs.lstatSync(Path.join(dir, conversations)).mode & 0o777, expected, mode.toString(8))
        }))
      }
    }).pipe(Effect.scoped))

  it.live("a socket path near the length limit still serves conversations", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const deep = Path.join(dir, "d".repeat(Math.max(1, 100 - dir.length - 12)))
      Fs.mkdirSync(deep)
      const address = `nng+ipc://${Path.join(deep, "lobby.ipc")}`
      const transport = NngTransport.make()
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(encoder.encode("long"))
      assert.strictEqual(decoder.decode(yield* server.receive), "long")
    }).pipe(Effect.scoped))

  it.live("refuses peers that `authorize` rejects, on both sides", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const address = `nng+ipc://${Path.join(dir, "strict.ipc")}`
      const strict = NngTransport.make({ authorize: (peer) => peer.uid === 4242, connectTimeout: "1 second" })
      const open = NngTransport.make({ connectTimeout: "1 second" })
      // a strict client refuses a server of another user
      yield* Effect.scoped(Effect.gen(function*() {
        yield* open.listen(address)
        const refused = yield* Effect.flip(strict.dial(address))
        assert.strictEqual(refused.reason._tag, "PeerRejected")
      }))
      // a strict server refuses a client of another user, and says so
      yield* strict.listen(address)
      const refused = yield* Effect.flip(open.dial(address))
      assert.strictEqual(refused.reason._tag, "PeerRejected")
      assert.include(refused.detail, `refused a peer running as uid ${process.getuid!()} (pid ${process.pid})`)
    }).pipe(Effect.scoped))

  // (either side's check of the conversation's peer removed): `authorize` was asked about the rendezvous only,
  // every test's answer was the same for both, and nothing noticed. An authorize that admits only its first
  // question (the rendezvous) must see the conversation refused
  it.live("the conversation's peer is put to `authorize` again, on both sides", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const address = `nng+ipc://${Path.join(dir, "twice.ipc")}`
      const open = NngTransport.make({ connectTimeout: "1 second" })
      yield* Effect.scoped(Effect.gen(function*() {
        yield* open.listen(address)
        const refused = yield* Effect.flip(firstOnly().dial(address))
        assert.strictEqual(refused.reason._tag, "PeerRejected")
      }))
      const listener = yield* firstOnly().listen(address)
      const dialed = yield* Effect.result(open.dial(address))
      assert.strictEqual(dialed._tag, "Failure")
      const accepted = yield* listener.accept.pipe(Effect.timeout("1 second"), Effect.result)
      assert.strictEqual(accepted._tag, "Failure", "no channel for a refused conversation")
    }).pipe(Effect.scoped))

  it.live("a dial with nothing behind the address is NotFound at once; an unreachable one times out, typed", () =>
    Effect.gen(function*() {
      // refused at once, not after the connect timeout (a generous bound: it only tells the two apart)
      const patient = NngTransport.make({ connectTimeout: "60 seconds" })
      const started = Date.now()
      const refused = yield* Effect.flip(patient.dial(`nng+tcp://127.0.0.1:${unusedPort()}`))
      assert.strictEqual(refused.reason._tag, "NotFound")
      assert.strictEqual(refused.errno, "NNG_ECONNREFUSED")
      assert.isBelow(Date.now() - started, 30_000)
      const transport = NngTransport.make({ connectTimeout: "500 millis" })
      // a listener that never answers the rendezvous: a raw TCP server that accepts and stays silent
      const Net = yield* Effect.promise(() => import("node:net"))
      const silent = Net.createServer(() => {})
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => void silent.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.sync(() => silent.close())
      )
      const port = (silent.address() as { port: number }).port
      const timedOut = yield* Effect.flip(transport.dial(`nng+tcp://127.0.0.1:${port}`))
      assert.strictEqual(timedOut.reason._tag, "Timeout")
    }).pipe(Effect.scoped))

  it.live("close waits for the peer to read what was sent before it", () =>
    Effect.gen(function*() {
      const transport = NngTransport.make()
      const address = `nng+inproc://close-${Math.random()}`
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      const big = new Uint8Array(1024 * 1024).fill(7)
      for (let i = 0; i < 20; i++) yield* client.send(big)
      // the close goes after the data and waits (up to closeTimeout) for the reader to get there
      const closing = yield* Effect.forkScoped(client.close)
      yield* Effect.sleep("100 millis")
      assert.isUndefined(closing.pollUnsafe(), "close waits while the peer has not read")
      let received = 0
      while (true) {
        const batch = yield* Effect.result(server.receiveAll)
        if (batch._tag === "Failure") {
          assert.strictEqual(batch.failure.reason._tag, "Closed")
          break
        }
        received += batch.success.length
      }
      assert.strictEqual(received, 20)
      yield* Fiber.join(closing)
    }).pipe(Effect.scoped))

  it.live("a sender that closed and left before the reader got there: everything, then Closed (not ConnectionLost)", () =>
    Effect.gen(function*() {
      // the sender waits only 100 ms for the peer's answer, then lets its socket go; the reader's
      // inbox holds 8 messages, so the rest (and the close) wait in nng while it does not read
      const transport = NngTransport.make({ closeTimeout: "100 millis", maxBufferedMessages: 8 })
      const listener = yield* transport.listen("nng+tcp://127.0.0.1:0")
      const client = yield* transport.dial(listener.address)
      const server = yield* listener.accept
      for (let i = 0; i < 50; i++) yield* client.send(new Uint8Array([i]))
      yield* client.close
      yield* client.closed
      // the reader comes back after the sender's connection is gone: its data and its close are here
      yield* Effect.sleep("500 millis")
      const received: Array<number> = []
      const end = yield* Effect.flip(Effect.forever(Effect.map(server.receive, (m) => received.push(m[0]!))))
      assert.deepStrictEqual(received, Array.from({ length: 50 }, (_, i) => i))
      assert.strictEqual(end.reason._tag, "Closed")
    }).pipe(Effect.scoped))

  // core's README: a peer that does not read by the linger loses the connection (ConnectionLost, never Closed),
  // and close logs a warning with the bytes that never left
  for (const scheme of ["tcp", "ipc"] as const) {
    it.live(
      `a close that gives up on a peer that does not read (nng+${scheme}://): a warning here, ConnectionLost there`,
      () =>
        Effect.gen(function*() {
          const lines: Array<string> = []
          const logger = Logger.make(({ logLevel, message }) => {
            lines.push(`${logLevel} ${Array.isArray(message) ? message.map(String).join(" ") : String(message)}`)
          })
          const transport = NngTransport.make({
            closeTimeout: "300 millis",
            maxBufferedMessages: 4,
            maxBufferedBytes: 64 * 1024
          })
          const listener = yield* transport.listen(
            scheme === "tcp" ? "nng+tcp://127.0.0.1:0" : `nng+ipc://${Path.join(yield* tempDir, "linger.ipc")}`
          )
          const client = yield* transport.dial(listener.address)
          const server = yield* listener.accept
          // far more than the reader's inbox, nng's queues and the OS's buffers hold: the sends stop
          let sent = 0
          const sender = yield* Effect.forkScoped(Effect.forever(
            Effect.andThen(client.send(new Uint8Array(64 * 1024)), Effect.sync(() => sent++))
          ))
          yield* stalls(() => sent, { what: "sends to a reader that does not read" })
          yield* client.close.pipe(Effect.provide(Logger.layer([logger])))
          yield* Fiber.interrupt(sender)
          assert.strictEqual(lines.length, 1, lines.join("\n"))
          assert.match(lines[0]!, /^Warn close gave up after 300 ms: [1-9][0-9]* bytes sent before it never left/)
          // the reader gets what had arrived, then the loss: never a graceful end
          let received = 0
          const end = yield* Effect.flip(Effect.forever(Effect.andThen(server.receive, Effect.sync(() => received++))))
          assert.strictEqual(end.reason._tag, "ConnectionLost", end.message)
          assert.isBelow(received, sent)
        }).pipe(Effect.scoped),
      30_000
    )
  }

  it.live("a typed view works end to end", () =>
    Effect.gen(function*() {
      const transport = NngTransport.make()
      const address = `nng+inproc://typed-${Math.random()}`
      const listener = yield* transport.listen(address)
      const { Schema } = yield* Effect.promise(() => import("effect"))
      const Job = Schema.Struct({ id: Schema.Number, name: Schema.String })
      const client = IpcChannel.typed(yield* transport.dial(address), Job)
      const server = IpcChannel.typed(yield* listener.accept, Job)
      yield* client.send({ id: 1, name: "render" })
      assert.deepStrictEqual(yield* server.receive, { id: 1, name: "render" })
    }).pipe(Effect.scoped))
})

/**
 * How many of `total` 1 KiB messages a client sends over ipc before it is held back, the server taking none
 * (`highWaterMark`: the client's queue beyond nng's, 64 KiB unless given).
 */
const heldWith = (total: number, maxBufferedBytes: number, highWaterMark = 64 * 1024) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    // nng's own queues one message deep, and the count bound far above what is sent: only the bytes hold it back
    const transport = NngTransport.make({
      sendBuffer: 1,
      recvBuffer: 1,
      highWaterMark,
      maxBufferedMessages: 1_000_000,
      maxBufferedBytes
    })
    const address = `nng+ipc://${Path.join(dir, "held.ipc")}`
    const listener = yield* transport.listen(address)
    const client = yield* transport.dial(address)
    const server = yield* listener.accept
    let sent = 0
    const flood = yield* Effect.forkScoped(Effect.gen(function*() {
      for (let i = 0; i < total; i++) {
        const message = new Uint8Array(1024)
        new DataView(message.buffer).setUint32(0, i)
        yield* client.send(message)
        sent++
      }
    }))
    const held = yield* stalls(() => sent)
    // then the server reads: everything arrives, in order
    for (let i = 0; i < total; i++) {
      const message = yield* server.receive
      assert.strictEqual(new DataView(message.buffer, message.byteOffset).getUint32(0), i, `message ${i}`)
    }
    yield* Fiber.join(flood)
    return held
  }).pipe(Effect.scoped)

describe("NngTransport maxBufferedBytes", () => {
  // it was observed by no test (only decoded from configuration): reading pauses above it (back-pressure)
  it.live("bounds what a channel whose program takes nothing reads in", () =>
    Effect.gen(function*() {
      const total = 4000
      // the socket's kernel buffers hold a few hundred KiB: far below the 4 MiB sent
      const bounded = yield* heldWith(total, 8 * 1024)
      assert.isBelow(bounded, total / 2, "sent to a channel that reads in 8 KiB")
      assert.strictEqual(yield* heldWith(total, 256 * 1024 * 1024), total, "sent to a channel that reads in 256 MiB")
    }), 120_000)
})

describe("NngTransport highWaterMark", () => {
  // it was only set as a test's setup, where the 4 MiB default would pass the same: send waits above it
  it.live(
    "bounds what a sender queues beyond nng's buffers for a reader that takes nothing",
    () =>
      Effect.gen(function*() {
        const total = 4000
        // the reader takes in 8 KiB: past that, only the sender's queue (the mark) lets sends return
        const bounded = yield* heldWith(total, 8 * 1024, 64 * 1024)
        assert.isBelow(bounded, total / 2, "sent with a mark of 64 KiB")
        assert.strictEqual(yield* heldWith(total, 8 * 1024, 64 * 1024 * 1024), total, "sent with a mark of 64 MiB")
      }),
    120_000
  )
})

describe("NngTransport writeTimeout", () => {
  it.live(
    "a send held back longer by a peer that reads nothing fails the channel with Timeout",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const transport = NngTransport.make({
          sendBuffer: 1,
          recvBuffer: 1,
          highWaterMark: 64 * 1024,
          maxBufferedBytes: 8 * 1024,
          writeTimeout: "300 millis"
        })
        const address = `nng+ipc://${Path.join(dir, "stalled.ipc")}`
        const listener = yield* transport.listen(address)
        const client = yield* transport.dial(address)
        yield* listener.accept
        // the server's program takes nothing: once the buffers on the way are full, a send waits, then fails
        const failed = yield* Effect.flip(Effect.forever(client.send(new Uint8Array(1024))))
        assert.strictEqual(failed.reason._tag, "Timeout", failed.message)
        assert.include(failed.detail, "did not read")
        const after = yield* Effect.flip(client.send(new Uint8Array(1)))
        assert.strictEqual(after.reason._tag, "Timeout", "the channel has failed")
      }).pipe(Effect.scoped),
    60_000
  )
})
