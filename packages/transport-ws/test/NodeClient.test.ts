/**
 * The Node client (`WsTransport`'s dial, on the `ws` library's socket) keeps
 * its promises where the browser API cannot: a client that does not read
 * holds its server back (reading pauses at the inbox's bound, so the server's
 * `send` waits), and a message over its limit is `FrameTooLarge` on both
 * sides, as with the browser API's client (`Wire.test.ts`). The other half, a client whose server does not read still
 * ends (`close` drops the connection after its linger, and the process
 * exits), is the conformance suite's case of a peer that sends, closes and
 * exits, and `Linger.test.ts`'s.
 */
import { stalls } from "@effect-ipc/testing/Progress"
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Net from "node:net"
import { freshAddress, sweepTokenFiles } from "./helpers.ts"

afterAll(sweepTokenFiles)

const MiB = 1024 * 1024

/** Polls `check` every 20 ms until it holds (a guard of 20 s against a hang). */
const until = (check: () => boolean) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out waiting: ${String(check)}`))
      yield* Effect.sleep("20 millis")
    }
  })

describe("ws:// Node client", () => {
  it.live(
    "a client that does not read holds its server back: the server's sends wait, nothing is lost",
    () =>
      Effect.gen(function*() {
        // the client's inbox holds 4 MiB; the server's socket queues up to 1 MiB before send waits
        const transport = Ws.WsTransport.make({
          tokenFile: false,
          token: "pressure-token-7f3a91c24b",
          maxBufferedBytes: 4 * MiB,
          highWaterMark: MiB
        })
        const listener = yield* transport.listen(freshAddress("pressure"))
        const client = yield* transport.dial(listener.address)
        const server = yield* listener.accept
        const message = new Uint8Array(MiB)
        let sent = 0
        // 1 GiB if nothing holds it back
        const flood = yield* Effect.forkScoped(Effect.gen(function*() {
          for (let i = 0; i < 1024; i++) {
            message[0] = i & 0xff
            yield* server.send(message)
            sent++
          }
        }))
        const held = yield* stalls(() => sent)
        // inbox, kernel buffers and the server's queue: a few tens of MiB, far from 1 GiB
        assert.isBelow(held, 64, "MiB the server sent to a client that does not read")
        // then the client reads: everything arrives, in order
        for (let i = 0; i < 1024; i++) assert.strictEqual((yield* client.receive)[0], i & 0xff)
        yield* Fiber.join(flood)
      }).pipe(Effect.scoped),
    120_000
  )

  // maxBufferedMessages was observed by no test (only decoded from configuration): the inbox's bound in messages
  it.live(
    "maxBufferedMessages bounds what a client that does not read takes in, counted in messages",
    () =>
      Effect.gen(function*() {
        const total = 50_000
        /** How many 1 KiB messages the server sends before it is held back, the client reading none. */
        const heldWith = (maxBufferedMessages: number) =>
          Effect.gen(function*() {
            // the bytes bound far above what is sent: only the count can hold the server back
            const transport = Ws.WsTransport.make({
              tokenFile: false,
              token: "count-token-5d0c7e2a91b84f36",
              maxBufferedMessages,
              maxBufferedBytes: 256 * MiB,
              highWaterMark: 64 * 1024
            })
            const listener = yield* transport.listen(freshAddress(`count-${maxBufferedMessages}`))
            const client = yield* transport.dial(listener.address)
            const server = yield* listener.accept
            let sent = 0
            const flood = yield* Effect.forkScoped(Effect.gen(function*() {
              for (let i = 0; i < total; i++) {
                const message = new Uint8Array(1024)
                message[0] = i & 0xff
                yield* server.send(message)
                sent++
              }
            }))
            const held = yield* stalls(() => sent)
            // then the client reads: everything arrives, in order
            for (let i = 0; i < total; i++) assert.strictEqual((yield* client.receive)[0], i & 0xff)
            yield* Fiber.join(flood)
            return held
          }).pipe(Effect.scoped)
        // the kernel's buffers and the server's queue hold a few MiB at most: a few thousand of them
        assert.isBelow(yield* heldWith(4), total / 2, "messages sent to a client that takes in 4")
        assert.strictEqual(yield* heldWith(100_000), total, "messages sent to a client that takes in 100000")
      }),
    120_000
  )

  // maxBufferedBytes was observed by no test (the 4 MiB above would pass at the 8 MiB default): the bound in bytes
  it.live(
    "maxBufferedBytes bounds what a client that does not read takes in, counted in bytes",
    () =>
      Effect.gen(function*() {
        const total = 2048
        /** How many 64 KiB messages (128 MiB in all) the server sends before it is held back, the client reading none. */
        const heldWith = (maxBufferedBytes: number) =>
          Effect.gen(function*() {
            // the count bound far above what is sent: only the bytes can hold the server back
            const transport = Ws.WsTransport.make({
              tokenFile: false,
              token: "bytes-token-3e8b1f6a0c2d9e47",
              maxBufferedMessages: 1_000_000,
              maxBufferedBytes,
              highWaterMark: 64 * 1024
            })
            const listener = yield* transport.listen(freshAddress(`bytes-${maxBufferedBytes}`))
            const client = yield* transport.dial(listener.address)
            const server = yield* listener.accept
            let sent = 0
            const flood = yield* Effect.forkScoped(Effect.gen(function*() {
              for (let i = 0; i < total; i++) {
                const message = new Uint8Array(64 * 1024)
                message[0] = i & 0xff
                yield* server.send(message)
                sent++
              }
            }))
            const held = yield* stalls(() => sent)
            // then the client reads: everything arrives, in order
            for (let i = 0; i < total; i++) assert.strictEqual((yield* client.receive)[0], i & 0xff)
            yield* Fiber.join(flood)
            return held
          }).pipe(Effect.scoped)
        // 1 MiB of inbox, the kernel's buffers and the server's queue: a few hundred at most
        assert.isBelow(yield* heldWith(MiB), total / 2, "64 KiB messages sent to a client that takes in 1 MiB")
        assert.strictEqual(yield* heldWith(512 * MiB), total, "64 KiB messages sent to a client that takes in 512 MiB")
      }),
    120_000
  )

  for (const sender of ["server", "client"] as const) {
    it.live(
      `a ${sender}'s large messages are the bytes at send time: it reuses its buffer once send returns while the other side does not read`,
      () =>
        Effect.gen(function*() {
          const transport = Ws.WsTransport.make({ tokenFile: false, token: "reuse-token-7f3a91c24be05d68" })
          const listener = yield* transport.listen(freshAddress(`reuse-${sender}`))
          const client = yield* transport.dial(listener.address)
          const server = yield* listener.accept
          const [from, to] = sender === "server" ? [server, client] : [client, server]
          // one buffer for every message, overwritten with the next message's bytes as soon as send returns
          const buffer = new Uint8Array(MiB)
          let sent = 0
          const sending = yield* Effect.forkScoped(Effect.gen(function*() {
            for (let i = 0; i < 24; i++) {
              buffer.fill(i + 1)
              yield* from.send(buffer)
              sent++
            }
            buffer.fill(0xee)
          }))
          // the reader starts once the sender is through or stalls: what was overwritten is still on its way
          yield* stalls(() => sent)
          for (let i = 0; i < 24; i++) {
            const message = yield* to.receive
            assert.strictEqual(message.byteLength, MiB)
            const wrong = message.findIndex((byte) => byte !== i + 1)
            assert.strictEqual(wrong, -1, `message ${i} has byte ${message[wrong]} at ${wrong}`)
          }
          yield* Fiber.join(sending)
        }).pipe(Effect.scoped),
      60_000
    )
  }

  it.live("a message over the client's limit: FrameTooLarge on both sides (close 1009)", () =>
    Effect.gen(function*() {
      const token = "limit-token-7f3a91c24be05d68"
      const listener = yield* Ws.WsTransport.make({ tokenFile: false, token }).listen(freshAddress("limit"))
      const client = yield* Ws.WsTransport.make({ token, maxMessageSize: 1024 }).dial(listener.address)
      const server = yield* listener.accept
      yield* server.send(new Uint8Array(1024))
      yield* server.send(new Uint8Array(1025))
      assert.strictEqual((yield* client.receive).byteLength, 1024)
      assert.strictEqual((yield* Effect.flip(client.receive)).reason._tag, "FrameTooLarge")
      const seen = yield* Effect.flip(server.receive).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(seen.reason._tag, "FrameTooLarge")
      assert.include(seen.message, "1009")
    }).pipe(Effect.scoped))

  it.live(
    "a server that accepts and never answers the handshake: dial fails with Timeout, or ends when interrupted",
    () =>
      Effect.gen(function*() {
        let opened = 0
        let closed = 0
        const silent = Net.createServer((socket) => {
          opened++
          socket.on("close", () => closed++)
          socket.on("error", () => {})
          socket.resume()
        })
        yield* Effect.acquireRelease(
          Effect.callback<void>((resume) => void silent.listen(0, "127.0.0.1", () => resume(Effect.void))),
          () => Effect.sync(() => silent.close())
        )
        const address = `ws://127.0.0.1:${(silent.address() as Net.AddressInfo).port}/silent`
        const token = "silent-token-7f3a91c24be05d68"
        const dials = [
          (timeout: Duration.Input) => Ws.WsTransport.make({ token, handshakeTimeout: timeout }).dial(address),
          (timeout: Duration.Input) => Ws.WsClient.dial(address, { token, handshakeTimeout: timeout })
        ]
        for (const dial of dials) {
          const timedOut = yield* Effect.flip(Effect.scoped(dial("300 millis")))
          assert.strictEqual(timedOut.reason._tag, "Timeout", timedOut.message)
          // a long handshake timeout, interrupted by the caller: the dial ends at once
          const interrupted = yield* Effect.scoped(dial("1 minute")).pipe(Effect.timeout("300 millis"), Effect.flip)
          assert.strictEqual(interrupted._tag, "TimeoutError")
        }
        // every connection the dials opened is closed again (a dial may open more than one)
        yield* until(() => opened >= 4 && closed === opened)
      }).pipe(Effect.scoped),
    60_000
  )
})
