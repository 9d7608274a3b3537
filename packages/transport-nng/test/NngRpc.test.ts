import * as IpcError from "@effect-ipc/core/IpcError"
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import { ConformanceApi, Refused } from "@effect-ipc/testing/ConformanceApi"
import { NngRpc } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { unusedPort } from "./fixtures/ports.ts"
import * as Child from "./fixtures/process.ts"

const client = (options: NngRpc.ClientOptions, serialization = IpcRpc.layerSerialization) =>
  Effect.gen(function*() {
    const protocol = yield* Layer.build(NngRpc.layerClientProtocol(options).pipe(Layer.provide(serialization)))
    return yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))
  })

/** An RPC server process at `address`. */
const server = (address: string) =>
  Effect.gen(function*() {
    const peer = yield* Child.node("peer.ts", ["rpc", address])
    yield* peer.waitFor((line) => line === "ready")
    return peer
  })

/** An RPC server process at a free TCP port (another if the port was taken meanwhile). */
const serverAnywhere = Child.server("rpc", () => `tcp://127.0.0.1:${unusedPort()}`)

/** The calls of `procedure` a server process has started. */
const started = (peer: Child.Child, procedure: string) => peer.lines.filter((line) => line === `call ${procedure}`)

describe("NngRpc: effect/rpc over req/rep", () => {
  it.live(
    "1000 concurrent calls, typed errors and streams, to a server in another process",
    () =>
      Effect.gen(function*() {
        const { address } = yield* serverAnywhere
        const rpc = yield* client({ dial: address, pool: { max: 16 } })
        const results = yield* Effect.forEach(
          Array.from({ length: 1000 }, (_, i) => i),
          (n) => rpc.Echo({ n }),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(results, Array.from({ length: 1000 }, (_, i) => i))
        const error = yield* Effect.flip(rpc.Fail({ why: "no" }))
        assert.instanceOf(error, Refused)
        assert.deepStrictEqual(
          yield* Stream.runCollect(rpc.Range({ n: 100 })),
          Array.from({ length: 100 }, (_, i) => i + 1)
        )
        assert.strictEqual(yield* rpc.Calls(), 1001)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("a call in flight when the server dies fails typed and is not replayed", () =>
    Effect.gen(function*() {
      const { address, child: first } = yield* serverAnywhere
      const rpc = yield* client({ dial: address })
      assert.strictEqual(yield* rpc.Echo({ n: 1 }), 1)
      const inFlight = yield* Effect.forkScoped(Effect.flip(rpc.Sleep({ millis: 60_000 })))
      // killed once the call is being handled
      yield* first.waitFor((line) => line === "call Sleep")
      yield* first.kill
      const lost = yield* Fiber.join(inFlight)
      assert.strictEqual(lost._tag, "RpcClientError")
      assert.strictEqual(lost.reason._tag, "SocketReadError")
      const cause = "cause" in lost.reason ? lost.reason.cause : undefined
      assert.isTrue(IpcError.isIpcError(cause) && cause.reason._tag === "ConnectionLost", String(cause))
      yield* server(address)
      // the new server never saw the Sleep
      assert.strictEqual(yield* rpc.Calls(), 0)
    }).pipe(Effect.scoped), 60_000)

  it.live(
    "a procedure marked idempotent is retried after the server dies: one attempt on each server",
    () =>
      Effect.gen(function*() {
        const { address, child: first } = yield* serverAnywhere
        const rpc = yield* client({
          dial: address,
          idempotent: ["Sleep"],
          retry: Schedule.spaced("100 millis").pipe(Schedule.upTo({ times: 100 }))
        })
        const call = yield* Effect.forkScoped(rpc.Sleep({ millis: 500 }))
        // the first attempt reached the first server, which dies handling it
        yield* first.waitFor((line) => line === "call Sleep")
        yield* first.kill
        const second = yield* server(address)
        // the call completes only through a second attempt, on the second server
        yield* Fiber.join(call)
        assert.deepStrictEqual(started(first, "Sleep"), ["call Sleep"])
        assert.deepStrictEqual(started(second, "Sleep"), ["call Sleep"])
      }).pipe(Effect.scoped),
    60_000
  )

  // an endless stream was collected until the server's memory ran out (926 MB in 4.5 s), its caller long gone
  it.live(
    "a stream longer than the reply's limit is cut: the caller gets a defect saying so, the server serves on",
    () =>
      Effect.gen(function*() {
        const address = `inproc://rpc-endless-${Math.random()}`
        const { ConformanceHandlers } = yield* Effect.promise(() => import("@effect-ipc/testing/ConformanceApi"))
        const { RpcServer } = yield* Effect.promise(() => import("effect/rpc"))
        yield* Layer.build(
          RpcServer.layer(ConformanceApi).pipe(
            Layer.provide(ConformanceHandlers),
            Layer.provide(NngRpc.layerServerProtocol({ listen: address, maxMessageSize: 64 * 1024 })),
            Layer.provide(IpcRpc.layerSerialization)
          )
        )
        const rpc = yield* client({ dial: address, timeout: "20 seconds" })
        const cut = yield* Effect.exit(Stream.runCollect(rpc.Range({ n: 2 ** 31 - 1 })))
        assert.strictEqual(cut._tag, "Failure")
        assert.include(
          Cause.pretty((cut as Exit.Failure<unknown, unknown>).cause),
          "the streamed reply passed 65536 bytes"
        )
        assert.deepStrictEqual(yield* Stream.runCollect(rpc.Range({ n: 3 })), [1, 2, 3])
        assert.strictEqual(yield* rpc.Echo({ n: 7 }), 7)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("JSON serialization works too", () =>
    Effect.gen(function*() {
      const address = `inproc://rpc-json-${Math.random()}`
      const { ConformanceHandlers } = yield* Effect.promise(() => import("@effect-ipc/testing/ConformanceApi"))
      const { RpcServer } = yield* Effect.promise(() => import("effect/rpc"))
      yield* Layer.build(
        RpcServer.layer(ConformanceApi).pipe(
          Layer.provide(ConformanceHandlers),
          Layer.provide(NngRpc.layerServerProtocol({ listen: address })),
          Layer.provide(RpcSerialization.layerJson)
        )
      )
      const rpc = yield* client({ dial: address }, RpcSerialization.layerJson)
      assert.strictEqual(yield* rpc.Echo({ n: 42 }), 42)
      assert.deepStrictEqual(yield* Stream.runCollect(rpc.Range({ n: 3 })), [1, 2, 3])
    }).pipe(Effect.scoped))
})
