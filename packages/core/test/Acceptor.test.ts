import { Memory, Transport } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"

describe("Transport.makeAcceptor", () => {
  it.effect("shutdown closes the channels offered and never accepted, also those offered after end", () =>
    Effect.gen(function*() {
      const memory = Memory.make()
      const listener = yield* memory.listen("memory://acceptor-test")
      // channels to offer: the dialled ends of memory connections (their peers wait in `listener`)
      const [early, late, taken] = yield* Effect.all([
        memory.dial("memory://acceptor-test"),
        memory.dial("memory://acceptor-test"),
        memory.dial("memory://acceptor-test")
      ])
      const peers = yield* Effect.all([listener.accept, listener.accept, listener.accept])
      const acceptor = yield* Transport.makeAcceptor("test://acceptor")
      acceptor.offer(taken)
      acceptor.offer(early)
      assert.strictEqual(yield* acceptor.listener.accept, taken)
      acceptor.end()
      acceptor.offer(late)
      const error = yield* Effect.flip(acceptor.listener.accept)
      assert.strictEqual(error.reason._tag, "Closed")
      yield* acceptor.shutdown
      // after shutdown nothing is kept: the offer says so, and its caller closes the channel
      assert.isFalse(acceptor.offer(taken))
      // the two never accepted were closed (their peers hear the goodbye); the one handed out is its user's
      for (const peer of [peers[0], peers[1]]) {
        const ended = yield* Effect.flip(peer.receive)
        assert.strictEqual(ended.reason._tag, "Closed")
      }
      yield* taken.send(new Uint8Array([1]))
      assert.deepStrictEqual(yield* peers[2].receive, new Uint8Array([1]))
    }).pipe(Effect.scoped))
})
