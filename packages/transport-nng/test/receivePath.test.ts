/**
 * The receive path of an nng channel, as a round trip needs it short:
 *
 * - small messages received are carved out of their channel's slabs (one
 *   ArrayBuffer of V8's per message cost more than the rest of the receive):
 *   each must keep its own bytes whatever arrives after it, and its `buffer`
 *   must never show memory left from before (only zeros and other messages of
 *   the same channel) nor another channel's (another peer's) messages;
 * - a receiver that waits gets the first message of a readiness event before
 *   nng is asked for the rest (the ask that finds nothing cost about 1 µs on
 *   the way of every answer).
 */
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"

const COUNT = 200
const SIZE = 100

/** Blocks this thread (nng's own threads go on receiving) for `ms`. */
const blockThread = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

const pair = Effect.gen(function*() {
  const transport = NngTransport.make()
  const listener = yield* transport.listen("nng+tcp://127.0.0.1:0")
  const client = yield* transport.dial(listener.address)
  const server = yield* listener.accept
  return { client, server }
})

describe("nng receive path", () => {
  it.live(
    "small messages received one by one share memory, each intact after later ones",
    () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair
        // one buffer, overwritten after each send; each message waits to be received before the next goes
        const buffer = new Uint8Array(SIZE)
        const received: Array<Uint8Array> = []
        for (let i = 0; i < COUNT; i++) {
          buffer.fill(i + 1)
          yield* client.send(buffer)
          received.push(yield* server.receive)
        }
        const large = new Uint8Array(8192).fill(7)
        yield* client.send(large)
        const largeReceived = yield* server.receive

        for (let i = 0; i < COUNT; i++) {
          const message = received[i]!
          assert.strictEqual(message.byteLength, SIZE)
          assert.isTrue(message.every((byte) => byte === i + 1), `message ${i} kept its bytes`)
        }
        assert.isTrue(largeReceived.byteLength === 8192 && largeReceived.every((byte) => byte === 7))

        // far fewer ArrayBuffers than messages (one per message before)
        const buffers = new Set(received.map((message) => message.buffer))
        assert.isAtMost(buffers.size, COUNT / 20, "ArrayBuffers behind the messages")

        // the room of a slab not handed out yet is zero: a slab is never memory left from before
        const last = received[COUNT - 1]!
        const tail = new Uint8Array(last.buffer, last.byteOffset + last.byteLength)
        assert.isAbove(tail.byteLength, 0)
        assert.isTrue(tail.every((byte) => byte === 0), "no stale memory in a slab")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a receiver waiting as a burst arrives is resumed with its first message, then the rest, in order",
    () =>
      Effect.gen(function*() {
        const { client, server } = yield* pair
        const waiting = yield* Effect.forkScoped(server.receiveAll)
        yield* Effect.yieldNow
        for (let i = 0; i < 10; i++) yield* client.send(new Uint8Array([i]))
        // nng's threads queue the burst for the server (16 messages fit) while this thread cannot read
        blockThread(200)
        const first = yield* Fiber.join(waiting)
        assert.deepStrictEqual(first.map((message) => message[0]), [0])
        const rest: Array<number> = []
        while (rest.length < 9) for (const message of yield* server.receiveAll) rest.push(message[0]!)
        assert.deepStrictEqual(rest, [1, 2, 3, 4, 5, 6, 7, 8, 9])
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "two channels' messages never share memory: a message's buffer shows nothing of another peer's",
    () =>
      Effect.gen(function*() {
        const one = yield* pair
        const other = yield* pair
        const received: Array<Uint8Array> = []
        for (let i = 0; i < 20; i++) {
          for (const { client, server } of [one, other]) {
            yield* client.send(new Uint8Array(SIZE).fill(i + 1))
            received.push(yield* server.receive)
          }
        }
        const ofOne = new Set(received.filter((_, i) => i % 2 === 0).map((message) => message.buffer))
        const ofOther = new Set(received.filter((_, i) => i % 2 === 1).map((message) => message.buffer))
        assert.isAtMost(ofOne.size, 2, "one channel's messages share its slab")
        for (const buffer of ofOne) assert.isFalse(ofOther.has(buffer), "a slab shared by two channels")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live("a message whose buffer was transferred away leaves the next messages whole", () =>
    Effect.gen(function*() {
      const { client, server } = yield* pair
      yield* client.send(new Uint8Array(SIZE).fill(1))
      const first = yield* server.receive
      // the slab goes with it (and with it any message of the same slab not yet taken)
      const slab = first.buffer
      assert.instanceOf(slab, ArrayBuffer)
      if (slab instanceof ArrayBuffer) structuredClone(slab, { transfer: [slab] })
      assert.strictEqual(first.byteLength, 0)
      for (let i = 2; i < 5; i++) {
        yield* client.send(new Uint8Array(SIZE).fill(i))
        const next = yield* server.receive
        assert.isTrue(next.byteLength === SIZE && next.every((byte) => byte === i))
      }
    }).pipe(Effect.scoped), 30_000)
})
