/**
 * A sender whose nng is full packs small messages into batches (up to 256 KiB
 * each, tens of thousands of messages). A receiver that does not read must
 * still hold no more than its inbox's bound: a batch is unpacked only as far
 * as the inbox has room, the rest waits (in the batch's own bytes) until the
 * reader makes room, and nothing is lost or reordered.
 */
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"

const LIMIT = 64
const COUNT = 300_000

const numbered = (i: number) => {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, i)
  return out
}
const numberOf = (message: Uint8Array) => new DataView(message.buffer, message.byteOffset, 4).getUint32(0)

/**
 * A client and the server end it reached, each with an inbox of `LIMIT`
 * messages; a close waits for the peer's answer as long as the test runs
 * (the reader here starts late, and reads slowly on a loaded machine).
 */
const pair = Effect.gen(function*() {
  const transport = NngTransport.make({ maxBufferedMessages: LIMIT, closeTimeout: "60 seconds" })
  const listener = yield* transport.listen("nng+tcp://127.0.0.1:0")
  const client = yield* transport.dial(listener.address)
  const server = yield* listener.accept
  return { client, server }
})

describe("nng batches", () => {
  it.live(
    "a receiver that does not read holds at most its inbox's bound of a flood of batches; then all arrive, in order",
    () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair
        // 300,000 messages of 4 bytes: the first fill nng's buffers, the rest go out in batches
        const sender = yield* Effect.forkScoped(
          Effect.gen(function*() {
            for (let i = 0; i < COUNT; i++) yield* client.send(numbered(i))
            yield* client.close
          })
        )
        // the receiver does not read while the sender floods it (its sends are queued, not waiting)
        yield* Fiber.join(sender).pipe(Effect.timeout("1 second"), Effect.ignore)
        yield* Effect.sleep("500 millis")
        // each receiveAll takes everything the inbox holds: never more than its bound
        let next = 0
        let largest = 0
        let outOfOrder: string | undefined
        while (next < COUNT) {
          const messages = yield* server.receiveAll
          largest = Math.max(largest, messages.length)
          for (const message of messages) {
            const n = numberOf(message)
            if (n !== next && outOfOrder === undefined) outOfOrder = `message ${n} arrived in place of ${next}`
            next++
          }
        }
        assert.isUndefined(outOfOrder)
        assert.strictEqual(next, COUNT)
        assert.isAtMost(largest, LIMIT, "messages the inbox held at once")
        yield* Fiber.join(sender)
        // then the sender's close, after everything
        const end = yield* Effect.flip(server.receive)
        assert.strictEqual(end.reason._tag, "Closed")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a receiver that closes while the rest of a batch waits closes gracefully, and the sender sees the close",
    () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair
        for (let i = 0; i < COUNT; i++) yield* client.send(numbered(i))
        // a batch has begun: the inbox holds its bound and the rest of the batch waits
        let next = 0
        while (next < LIMIT * 4) {
          for (const message of yield* server.receiveAll) assert.strictEqual(numberOf(message), next++)
        }
        yield* server.close
        yield* server.closed
        const end = yield* Effect.flip(Effect.forever(client.receive))
        assert.strictEqual(end.reason._tag, "Closed")
      }).pipe(Effect.scoped),
    60_000
  )
})
