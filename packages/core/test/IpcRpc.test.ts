import { IpcRpc, Memory, Transport } from "@effect-ipc/core"
import { ConformanceApi, ConformanceHandlers, Refused } from "@effect-ipc/core/testing/ConformanceApi"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import { RpcClientDefect, RpcClientError } from "effect/rpc/RpcClientError"
import type * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Stream from "effect/Stream"

let n = 0

const serveAndCall = (serialization: Layer.Layer<RpcSerialization.RpcSerialization>) =>
  Effect.gen(function*() {
    const address = `memory://rpc-test-${n++}`
    const transport = Layer.succeed(Transport.Transport, Memory.make())
    yield* Layer.build(
      RpcServer.layer(ConformanceApi).pipe(
        Layer.provide(ConformanceHandlers),
        Layer.provide(IpcRpc.layerServerProtocol(address)),
        Layer.provide(serialization),
        Layer.provide(transport)
      )
    )
    const protocol = yield* Layer.build(
      IpcRpc.layerClientProtocol(address).pipe(Layer.provide(serialization), Layer.provide(transport))
    )
    return yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))
  })

describe("IpcRpc", () => {
  for (
    const [name, serialization] of [
      ["binary (default)", IpcRpc.layerSerialization],
      ["JSON", IpcRpc.layerSerializationJson]
    ] as const
  ) {
    it.live(`carries calls, typed errors and streams with ${name} serialization`, () =>
      Effect.gen(function*() {
        const client = yield* serveAndCall(serialization)
        assert.strictEqual(yield* client.Echo({ n: 41 }), 41)
        const error = yield* Effect.flip(client.Fail({ why: "no" }))
        assert.instanceOf(error, Refused)
        assert.deepStrictEqual(yield* Stream.runCollect(client.Range({ n: 3 })), [1, 2, 3])
      }).pipe(Effect.scoped))
  }

  it.live("fails listening at a taken address when the server layer is built", () =>
    Effect.gen(function*() {
      const address = `memory://rpc-taken-${n++}`
      const transport = Layer.succeed(Transport.Transport, Memory.make())
      yield* Transport.listen(address).pipe(Effect.provide(transport))
      const error = yield* Effect.flip(
        Layer.build(
          IpcRpc.layerServerProtocol(address).pipe(Layer.provide(IpcRpc.layerSerialization), Layer.provide(transport))
        )
      )
      assert.strictEqual(error.reason, "AddressInUse")
    }).pipe(Effect.scoped))

  it.live("retryIdempotent retries transport failures only, not the procedure's typed errors", () =>
    Effect.gen(function*() {
      let attempts = 0
      const flaky = Effect.suspend(() =>
        ++attempts < 3
          ? Effect.fail(new RpcClientError({ reason: new RpcClientDefect({ message: "link lost", cause: null }) }))
          : Effect.succeed("done")
      )
      assert.strictEqual(yield* IpcRpc.retryIdempotent(flaky), "done")
      assert.strictEqual(attempts, 3)
      let refusals = 0
      const refusing = Effect.suspend(() => (refusals++, Effect.fail(new Refused({ why: "typed" }))))
      yield* Effect.flip(IpcRpc.retryIdempotent(refusing))
      assert.strictEqual(refusals, 1)
    }))
})
