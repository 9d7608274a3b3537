import * as Memory from "@effect-ipc/core/Memory"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"

let n = 0

describe("memory://", () => {
  // the receiver owns what it receives: a sender that reuses its buffer after `send` (as effect's
  // binary encoder does) changes nothing already sent, and a message stays valid after later receives
  it.effect("delivers copies that the sender's later writes and later messages leave alone", () =>
    Effect.gen(function*() {
      const transport = Memory.make()
      const address = `memory://ownership-${process.pid}-${n++}`
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      for (const size of [16, 4096, 1024 * 1024]) {
        const buffer = new Uint8Array(size).fill(1)
        yield* client.send(buffer)
        buffer.fill(2)
        yield* client.send(buffer)
        buffer.fill(3)
        const first = yield* server.receive
        const second = yield* server.receive
        assert.strictEqual(first.byteLength, size)
        assert.strictEqual(second.byteLength, size)
        assert.isTrue(first.every((byte) => byte === 1), `${size} B: the first message changed`)
        assert.isTrue(second.every((byte) => byte === 2), `${size} B: the second message changed`)
        assert.notStrictEqual(first.buffer, second.buffer)
      }
    }))
})
