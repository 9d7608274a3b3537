import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as StreamChannel from "@effect-ipc/core/StreamChannel"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "node:stream"

/** Sends 16, 4 KiB, 64 KiB and 1 MiB messages from a buffer rewritten after each `send`; checks what arrives. */
const reuseAfterSend = (client: IpcChannel.IpcChannel, server: IpcChannel.IpcChannel) =>
  Effect.gen(function*() {
    for (const size of [16, 4096, 64 * 1024, 1024 * 1024 + 17]) {
      const buffer = new Uint8Array(size).fill(1)
      yield* client.send(buffer)
      buffer.fill(2)
      yield* client.send(buffer)
      buffer.fill(3)
      const first = yield* server.receive
      const second = yield* server.receive
      yield* client.send(buffer)
      buffer.fill(4)
      const third = yield* server.receive
      // later sends of the same size, once the first ones were written: nothing received may change
      yield* client.send(buffer)
      yield* server.receive
      assert.strictEqual(first.byteLength, size)
      assert.strictEqual(second.byteLength, size)
      assert.strictEqual(third.byteLength, size)
      assert.isTrue(first.every((byte) => byte === 1), `${size} B: the first message changed`)
      assert.isTrue(second.every((byte) => byte === 2), `${size} B: the second message changed`)
      assert.isTrue(third.every((byte) => byte === 3), `${size} B: the third message changed`)
    }
  })

describe("StreamChannel", () => {
  // a stream that is not an OS socket may hand the very chunk written to its reader (an in-process pair):
  // the channel must not write into a chunk again once it has been written
  it.live("over an in-process stream pair too, messages are intact", () =>
    Effect.gen(function*() {
      const [a, b] = Stream.duplexPair()
      const client = yield* StreamChannel.makeScoped({ readable: a, writable: a }, "test://a")
      const server = yield* StreamChannel.makeScoped({ readable: b, writable: b }, "test://b")
      yield* reuseAfterSend(client, server)
    }).pipe(Effect.scoped))
})
