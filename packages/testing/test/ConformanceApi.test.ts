import { ConformanceApi, ConformanceHandlers } from "@effect-ipc/testing/ConformanceApi"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as RpcTest from "effect/rpc/RpcTest"
import * as Stream from "effect/Stream"

describe("ConformanceHandlers", () => {
  // the README: "Calls counts the calls this server received"; a Range (a stream) was not counted
  it.live("Calls counts every call this server received: Echo, Fail, Range (a stream) and Sleep", () =>
    Effect.gen(function*() {
      const client = yield* RpcTest.makeClient(ConformanceApi)
      assert.strictEqual(yield* client.Calls(), 0)
      assert.strictEqual(yield* client.Echo({ n: 7 }), 7)
      yield* Effect.flip(client.Fail({ why: "no" }))
      assert.deepStrictEqual(Array.from(yield* Stream.runCollect(client.Range({ n: 3 }))), [1, 2, 3])
      yield* client.Sleep({ millis: 1 })
      assert.strictEqual(yield* client.Calls(), 4)
    }).pipe(Effect.provide(ConformanceHandlers), Effect.scoped))
})
