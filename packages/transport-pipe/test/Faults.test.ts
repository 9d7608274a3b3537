import * as IpcError from "@effect-ipc/core/IpcError"
import * as Transport from "@effect-ipc/core/Transport"
import { UnixSocket } from "@effect-ipc/transport-pipe"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { openFds, waitFor } from "./helpers.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-faults-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))
let n = 0
const fresh = () => `unix://${Path.join(dir, `f${n++}.sock`)}`

/** Runs `body` and checks that every file descriptor it opened is closed again. */
const noLeaks = <A, E>(body: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const before = openFds()
    const result = yield* body
    // a hang guard, not a timing assert: descriptors are closed asynchronously
    yield* waitFor(() => openFds() <= before, 15_000)
    assert.isAtMost(openFds(), before, "file descriptors leaked")
    return result
  })

/** A raw client that connects and then does only what the test makes it do. */
const rawClient = (address: string) =>
  Effect.acquireRelease(
    Effect.callback<Net.Socket>((resume) => {
      const socket = Net.createConnection({ path: new URL(address).pathname })
      socket.on("error", () => {})
      socket.once("connect", () => resume(Effect.succeed(socket)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )

/** Serves `address` with an echo handler, collecting each connection's final error. */
const echoServer = (transport: Transport.TransportShape, address: string) =>
  Effect.gen(function*() {
    const listener = yield* transport.listen(address)
    const errors: Array<IpcError.IpcError> = []
    yield* Effect.forkScoped(Transport.serve(listener, (channel) =>
      Effect.forever(Effect.flatMap(channel.receive, channel.send)).pipe(
        Effect.tapError((error) => Effect.sync(() => errors.push(error)))
      )))
    return errors
  })

describe("Unix socket faults", () => {
  it.live("drops a client that connects and never answers (heartbeat), keeps a live one", () =>
    noLeaks(Effect.scoped(Effect.gen(function*() {
      const heartbeat = { interval: "100 millis", timeout: "1 second" } as const
      const transport = UnixSocket.make({ heartbeat })
      const address = fresh()
      const errors = yield* echoServer(transport, address)
      yield* rawClient(address) // silent: never sends, never answers pings
      const live = yield* transport.dial(address) // answers pings by itself
      assert.isTrue(yield* waitFor(() => errors.length === 1, 20_000), "the silent client was dropped")
      assert.strictEqual(errors[0]!.reason._tag, "Timeout")
      // the live client has outlived the timeout by now (the silent one was dropped after it): it still works
      yield* live.send(new Uint8Array([1]))
      assert.deepStrictEqual([...(yield* live.receive)], [1])
      assert.strictEqual(errors.length, 1)
    }))))

  it.live("drops a client that sends one byte at a time too slowly (frame timeout)", () =>
    noLeaks(Effect.scoped(Effect.gen(function*() {
      const transport = UnixSocket.make({ frameTimeout: "300 millis" })
      const address = fresh()
      const errors = yield* echoServer(transport, address)
      const slow = yield* rawClient(address)
      const frame = [1, 0, 0, 0, 0, 50, ...Array.from({ length: 50 }, () => 7)]
      let sent = 0
      while (errors.length === 0 && sent < frame.length) {
        slow.write(Uint8Array.of(frame[sent++]!))
        yield* Effect.sleep("100 millis")
      }
      assert.strictEqual(errors[0]?.reason._tag, "Timeout")
      assert.isBelow(sent, frame.length)
      // another client is served all along
      const good = yield* transport.dial(address)
      yield* good.send(new Uint8Array([2]))
      assert.deepStrictEqual([...(yield* good.receive)], [2])
    }))))

  it.live("drops a client that stops reading after the write timeout; others keep flowing", () =>
    noLeaks(Effect.scoped(Effect.gen(function*() {
      const transport = UnixSocket.make({ writeTimeout: "2 seconds", highWaterMark: 1024 * 1024 })
      const address = fresh()
      const listener = yield* transport.listen(address)
      const stuck = yield* rawClient(address)
      stuck.pause() // reads nothing
      const stuckChannel = yield* listener.accept
      const reader = yield* transport.dial(address)
      const readerChannel = yield* listener.accept
      const chunk = new Uint8Array(256 * 1024)
      // the server pushes to both; the stuck one fails, the reader gets everything
      const toStuck = yield* Effect.forkScoped(Effect.flip(Effect.forever(stuckChannel.send(chunk))))
      let received = 0
      yield* Effect.forkScoped(Effect.forever(Effect.andThen(reader.receive, Effect.sync(() => received++))))
      for (let i = 0; i < 200; i++) yield* readerChannel.send(chunk)
      const error = yield* Fiber.join(toStuck)
      assert.strictEqual(error.reason._tag, "Timeout")
      assert.isTrue(yield* waitFor(() => received === 200, 20_000))
    }))))

  it.live("serves 1000 concurrent clients", () =>
    noLeaks(Effect.scoped(Effect.gen(function*() {
      const transport = UnixSocket.make()
      const address = fresh()
      yield* echoServer(transport, address)
      const replies = yield* Effect.forEach(
        Array.from({ length: 1000 }, (_, i) => i),
        (i) =>
          Effect.scoped(Effect.gen(function*() {
            const client = yield* transport.dial(address)
            const message = new Uint8Array(4)
            new DataView(message.buffer).setUint32(0, i)
            yield* client.send(message)
            const reply = yield* client.receive
            return new DataView(reply.buffer, reply.byteOffset, reply.byteLength).getUint32(0)
          })),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(replies, Array.from({ length: 1000 }, (_, i) => i))
    }))), 60_000)
})
