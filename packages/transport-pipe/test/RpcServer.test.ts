/**
 * An RPC server (`IpcRpc.layerServerGroup` over `unix://`) and clients that do not read its replies:
 * one in another process that calls without end (dropped after `writeTimeout`), one that asks for a
 * reply larger than the channel's mark and goes away (the server's memory and shutdown are not its to
 * hold); a client whose calls and a stream's acknowledgements cross large replies finishes. And a
 * client whose server (another process) stops answering is told so, with the address.
 */
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import { UnixSocket } from "@effect-ipc/transport-pipe"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Path from "node:path"
import { node, nodeFixture, python, start, tempDir } from "./helpers.ts"

class Api extends RpcGroup.make(
  Rpc.make("Add", { payload: { a: Schema.Number, b: Schema.Number }, success: Schema.Number }),
  Rpc.make("Echo", { payload: { data: Schema.String }, success: Schema.String }),
  Rpc.make("Big", { success: Schema.String }),
  Rpc.make("Upload", { payload: { data: Schema.String }, success: Schema.Number }),
  Rpc.make("Chunks", { payload: { n: Schema.Number }, success: Schema.String, stream: true }),
  Rpc.make("Count", { payload: { n: Schema.Number }, success: Schema.Number, stream: true })
) {}

const big = "y".repeat(1 << 20)

/** The API of `fixtures/rpc-slow.ts`: an upload answered after a delay. */
class SlowApi extends RpcGroup.make(
  Rpc.make("Upload", { payload: { data: Schema.String }, success: Schema.Number })
) {}

const handlers = Api.toLayer({
  Add: ({ a, b }) => Effect.succeed(a + b),
  Echo: ({ data }) => Effect.succeed(data),
  Big: () => Effect.succeed(big),
  Upload: ({ data }) => Effect.succeed(data.length),
  Chunks: ({ n }) => Stream.range(1, n).pipe(Stream.map(() => "z".repeat(100_000))),
  Count: ({ n }) => Stream.range(1, n)
})

const fixture = Path.join(import.meta.dirname, "fixtures", "rpc_unread.py")

/** A server of `Api` at `address` over unix:// with a 64 KiB mark (and `options`), for as long as the scope. */
const serve = (address: string, options: UnixSocket.UnixSocketOptions = {}) =>
  Layer.build(
    IpcRpc.layerServerGroup(Api, address).pipe(
      Layer.provide(handlers),
      Layer.provide(UnixSocket.layer({ highWaterMark: 64 * 1024, ...options }))
    )
  )

/** One `Add` by a well-behaved client of its own. */
const add = (address: string, a: number) =>
  Effect.gen(function*() {
    const client = yield* RpcClient.make(Api)
    return yield* client.Add({ a, b: 1 })
  }).pipe(
    Effect.provide(
      IpcRpc.layerClientProtocol(address).pipe(
        Layer.provide(IpcRpc.layerSerializationJson),
        Layer.provide(UnixSocket.layer())
      )
    ),
    Effect.scoped,
    Effect.timeout("10 seconds")
  )

describe("an RPC server and clients that read no replies, or are slow to", () => {
  // a client that calls and reads no replies grows the server (1.6 GB in 12 s) until it is dropped: the README
  // tells a server open to such clients to set writeTimeout, which drops one whose replies wait past it
  it.live(
    "a client that calls without end and reads nothing is dropped after writeTimeout; others are served",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-rpc-")
        const address = `unix://${Path.join(dir, "calc.sock")}`
        yield* serve(address, { writeTimeout: "1 second" })
        const flooder = yield* start(python, [fixture, Path.join(dir, "calc.sock"), "flood", "2000000"])
        assert.strictEqual(yield* add(address, 41), 42, "another client is served meanwhile")
        const verdict = yield* flooder.line(/^(stuck|sent|dropped) /)
        assert.match(verdict, /^dropped /, "the server dropped the client that reads nothing")
        assert.strictEqual(yield* add(address, 1), 2, "and serves on")
      }).pipe(Effect.scoped),
    60_000
  )

  // a server that stopped reading a client whose replies backed up (a first mend of the flood above) hung this
  // client for good: effect's client writes a stream's acknowledgement from its read loop, which waited for
  // room the server no longer made
  it.live(
    "a client that takes a stream with acknowledgements while large calls go both ways finishes",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-rpc-")
        const address = `unix://${Path.join(dir, "calc.sock")}`
        yield* serve(address)
        const [chunks, replies, uploads] = yield* Effect.gen(function*() {
          const client = yield* RpcClient.make(Api)
          return yield* Effect.all([
            Stream.runCount(client.Chunks({ n: 40 })),
            Effect.forEach(Array.from({ length: 20 }), () => client.Big(), { concurrency: "unbounded" }),
            Effect.forEach([1, 2, 3, 4], () => client.Upload({ data: "u".repeat(6 << 20) }), {
              concurrency: "unbounded"
            })
          ], { concurrency: "unbounded" })
        }).pipe(
          Effect.provide(
            IpcRpc.layerClientProtocol(address).pipe(
              Layer.provide(IpcRpc.layerSerializationJson),
              Layer.provide(UnixSocket.layer({ highWaterMark: 64 * 1024 }))
            )
          ),
          Effect.scoped,
          Effect.timeout("30 seconds")
        )
        assert.strictEqual(chunks, 40)
        assert.deepStrictEqual(replies.map((r) => r.length), Array.from({ length: 20 }, () => 1 << 20))
        assert.deepStrictEqual(uploads, [6 << 20, 6 << 20, 6 << 20, 6 << 20])
      }).pipe(Effect.scoped),
    60_000
  )

  // the reply waited for a channel that would never come, uninterruptibly: its memory was kept and closing
  // the server hung for good
  it.live(
    "a client gone with a reply larger than the mark unsent: the server serves on and closes at once",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-rpc-")
        const address = `unix://${Path.join(dir, "calc.sock")}`
        const server = yield* Effect.forkScoped(Effect.scoped(Effect.andThen(serve(address), Effect.never)))
        yield* Effect.sleep("200 millis")
        for (let i = 0; i < 3; i++) {
          const client = yield* start(python, [fixture, Path.join(dir, "calc.sock"), "large", String(4 * 1024 * 1024)])
          yield* client.line(/^asked$/)
          yield* Effect.sleep("300 millis") // the reply is made and waits for room
          yield* client.finish
        }
        assert.strictEqual(yield* add(address, 1), 2, "served on")
        const closed = yield* Fiber.interrupt(server).pipe(Effect.timeout("5 seconds"), Effect.result)
        assert.strictEqual(closed._tag, "Success", "the server closed within 5 s")
      }).pipe(Effect.scoped),
    60_000
  )
})

describe("a client taking a stream whose server closes", () => {
  // the client writes an acknowledgement per chunk; one written as the server's close arrived failed the
  // write, which effect's RPC client makes a defect: about half the streams died with "An error occurred
  // during Write" (no address, no reason) where the others failed typed, naming the server's close
  it.live(
    "fails typed (RpcClientError naming the close), never a defect, however the close falls",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-rpc-")
        const address = `unix://${Path.join(dir, "calc.sock")}`
        for (let round = 0; round < 12; round++) {
          const server = yield* Effect.forkScoped(Effect.scoped(Effect.andThen(serve(address), Effect.never)))
          const exit = yield* Effect.gen(function*() {
            const client = yield* RpcClient.make(Api)
            let seen = 0
            return yield* Effect.exit(Stream.runForEach(client.Count({ n: 100_000_000 }), () =>
              Effect.gen(function*() {
                // the server closes, gracefully, once the stream runs
                if (++seen === 1000 + round * 777) yield* Effect.forkDetach(Fiber.interrupt(server))
              })))
          }).pipe(
            Effect.provide(
              IpcRpc.layerClientProtocol(address).pipe(
                Layer.provide(IpcRpc.layerSerializationJson),
                Layer.provide(UnixSocket.layer())
              )
            ),
            Effect.scoped,
            Effect.timeout("20 seconds")
          )
          assert.strictEqual(exit._tag, "Failure", `round ${round}: the stream ended`)
          if (exit._tag === "Failure") {
            const reasons = exit.cause.reasons
            assert.isTrue(reasons.every((r) => r._tag === "Fail"), `round ${round}: ${String(exit.cause)}`)
            assert.include(String(exit.cause), "closed the connection", `round ${round}`)
          }
          yield* Fiber.await(server)
        }
      }).pipe(Effect.scoped),
    120_000
  )
})

/** Python: listens at argv[1], accepts connections and reads them, answering nothing (a server that hangs). */
const silent = "import socket, sys\ns = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\ns.bind(sys.argv[1])\n" +
  "s.listen(8)\nprint('listening', flush=True)\nheld = []\nwhile True:\n  c, _ = s.accept()\n  held.append(c)"

describe("a call the client's channel refuses to send", () => {
  // effect's client made the write's failure a defect: the call died "An error occurred during Write", naming
  // neither the address nor the reason
  it.live(
    "fails typed (RpcClientError naming the address and FrameTooLarge); the next call is served",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-rpc-")
        const address = `unix://${Path.join(dir, "calc.sock")}`
        yield* serve(address)
        const [refused, next] = yield* Effect.gen(function*() {
          const client = yield* RpcClient.make(Api)
          const tooLarge = yield* Effect.flip(client.Echo({ data: "e".repeat(10_000) }))
          return [tooLarge, yield* client.Echo({ data: "small" })] as const
        }).pipe(
          Effect.provide(
            IpcRpc.layerClientProtocol(address).pipe(
              Layer.provide(IpcRpc.layerSerialization),
              Layer.provide(UnixSocket.layer({ maxFrameSize: 1024 }))
            )
          ),
          Effect.scoped,
          Effect.timeout("10 seconds")
        )
        assert.strictEqual(refused._tag, "RpcClientError")
        assert.match(
          refused.message,
          /^SocketWriteError: could not send to unix:\/\/.*calc\.sock: FrameTooLarge: /,
          refused.message
        )
        assert.strictEqual(next, "small")
      }).pipe(Effect.scoped),
    30_000
  )
})

describe("a client whose server stops answering (another process)", () => {
  // it failed its calls with "SocketReadError: An error occurred during Read", naming neither the address nor why
  it.live("fails its calls naming the address and that no ping was answered", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-rpc-")
      const path = Path.join(dir, "hung.sock")
      const server = yield* start(python, ["-c", silent, path])
      yield* server.line(/^listening$/)
      const error = yield* Effect.gen(function*() {
        const client = yield* RpcClient.make(Api)
        return yield* Effect.flip(client.Add({ a: 1, b: 1 }))
      }).pipe(
        Effect.provide(
          IpcRpc.layerClientProtocol(`unix://${path}`, { pingInterval: "100 millis", pingTimeout: "300 millis" }).pipe(
            Layer.provide(IpcRpc.layerSerializationJson),
            Layer.provide(UnixSocket.layer())
          )
        ),
        Effect.scoped,
        Effect.timeout("10 seconds")
      )
      assert.strictEqual(error._tag, "RpcClientError")
      assert.include(
        error.message,
        `the server at unix://${path} answered no ping for 300ms (stopped, or too busy)`,
        error.message
      )
    }).pipe(Effect.scoped), 30_000)

  // effect's client writes its ping before it judges the server's silence: a ping behind a call larger than the
  // socket's buffers waited with it, and a client whose server had stopped reading hung for good, every call too
  it.live(
    "fails its calls too when a call larger than the buffers waits for the server to read",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-rpc-")
        const path = Path.join(dir, "hung.sock")
        const server = yield* start(python, ["-c", silent, path])
        yield* server.line(/^listening$/)
        const [upload, later] = yield* Effect.gen(function*() {
          const client = yield* RpcClient.make(Api)
          const uploading = yield* Effect.forkChild(Effect.flip(client.Upload({ data: "u".repeat(16 << 20) })))
          yield* Effect.sleep("200 millis")
          const added = yield* Effect.flip(client.Add({ a: 1, b: 1 }))
          return [yield* Fiber.join(uploading), added] as const
        }).pipe(
          Effect.provide(
            IpcRpc.layerClientProtocol(`unix://${path}`, { pingInterval: "100 millis", pingTimeout: "300 millis" })
              .pipe(
                Layer.provide(IpcRpc.layerSerialization),
                Layer.provide(UnixSocket.layer())
              )
          ),
          Effect.scoped,
          Effect.timeout("15 seconds")
        )
        for (const error of [upload, later]) {
          assert.strictEqual(error._tag, "RpcClientError")
          assert.include(error.message, `the server at unix://${path} answered no ping for 300ms`, error.message)
        }
      }).pipe(Effect.scoped),
    30_000
  )

  // a ping not sent while a call waited for the server to read was never sent at all: a server that paused a
  // moment (under pingTimeout) and then took longer than the interval to answer was given up, its call failed
  it.live(
    "a server paused briefly while a large call waits, then slow to answer, is not given up",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-rpc-")
        const address = `unix://${Path.join(dir, "slow.sock")}`
        const server = yield* start(node, [...nodeFixture("rpc-slow.ts"), address, "5000"])
        yield* server.line(/^listening$/)
        const uploaded = yield* Effect.gen(function*() {
          const client = yield* RpcClient.make(SlowApi)
          // connected; the first ping goes 2 s after that: the server is stopped across it, for 0.6 s
          yield* Effect.forkChild(client.Upload({ data: "" }))
          yield* Effect.sleep("1700 millis")
          process.kill(server.pid, "SIGSTOP")
          const uploading = yield* Effect.forkChild(client.Upload({ data: "u".repeat(16 << 20) }))
          yield* Effect.sleep("600 millis")
          process.kill(server.pid, "SIGCONT")
          return yield* Fiber.join(uploading)
        }).pipe(
          Effect.provide(
            IpcRpc.layerClientProtocol(address, { pingInterval: "2 seconds" }).pipe(
              Layer.provide(IpcRpc.layerSerialization),
              Layer.provide(UnixSocket.layer())
            )
          ),
          Effect.scoped,
          Effect.timeout("20 seconds")
        )
        assert.strictEqual(uploaded, 16 << 20)
      }).pipe(Effect.scoped),
    30_000
  )
})
