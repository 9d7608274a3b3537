/**
 * The buffer options change how much a sender gets through to a reader that takes nothing (README:
 * `maxBufferedMessages` / `maxBufferedBytes`: "reading pauses (back-pressure) above these"; `highWaterMark`:
 * "`send` waits while this much is queued for the peer"). Each is varied alone, the other bounds far away, and
 * what is sent before the sender is held back is counted: with the small value a few hundred of 2048 messages,
 * with the large one all of them. Both then arrive whole and in order.
 */
import { stalls } from "@effect-ipc/testing/Progress"
import { UnixSocket } from "@effect-ipc/transport-pipe"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Path from "node:path"
import { tempDir } from "./helpers.ts"

const MiB = 1024 * 1024
const TOTAL = 2048
const SIZE = 64 * 1024

interface Sides {
  readonly reader: UnixSocket.UnixSocketOptions
  readonly sender: UnixSocket.UnixSocketOptions
}

/** How many of TOTAL 64 KiB messages (128 MiB) the sender gets through before it is held back, nothing read. */
const heldWith = ({ reader, sender }: Sides) =>
  Effect.gen(function*() {
    const dir = yield* tempDir("effect-ipc-buffers-")
    const listener = yield* UnixSocket.make(reader).listen(`unix://${Path.join(dir, "b.sock")}`)
    const client = yield* UnixSocket.make(sender).dial(listener.address)
    const server = yield* listener.accept
    let sent = 0
    const flood = yield* Effect.forkScoped(Effect.gen(function*() {
      for (let i = 0; i < TOTAL; i++) {
        const message = new Uint8Array(SIZE)
        message[0] = i & 0xff
        yield* client.send(message)
        sent++
      }
    }))
    const held = yield* stalls(() => sent)
    // then the reader reads: everything arrives, in order
    for (let i = 0; i < TOTAL; i++) assert.strictEqual((yield* server.receive)[0], i & 0xff)
    yield* Fiber.join(flood)
    return held
  }).pipe(Effect.scoped)

/** Far above what is sent: never the bound that holds the sender back. */
const far = { maxBufferedMessages: 1_000_000, maxBufferedBytes: 512 * MiB, highWaterMark: 512 * MiB }
const low = { highWaterMark: 64 * 1024 }

describe("unix:// buffer options", () => {
  it.live(
    "maxBufferedBytes: a reader taking nothing holds its sender back at 1 MiB, not at 512 MiB",
    () =>
      Effect.gen(function*() {
        const small = yield* heldWith({ reader: { ...far, maxBufferedBytes: MiB }, sender: low })
        assert.isBelow(small, TOTAL / 2, "64 KiB messages sent to a reader buffering 1 MiB")
        const large = yield* heldWith({ reader: far, sender: low })
        assert.strictEqual(large, TOTAL, "64 KiB messages sent to a reader buffering 512 MiB")
      }),
    120_000
  )

  it.live(
    "maxBufferedMessages: a reader taking nothing holds its sender back at 4 messages, not at 1000000",
    () =>
      Effect.gen(function*() {
        const small = yield* heldWith({ reader: { ...far, maxBufferedMessages: 4 }, sender: low })
        assert.isBelow(small, TOTAL / 2, "64 KiB messages sent to a reader buffering 4")
        const large = yield* heldWith({ reader: far, sender: low })
        assert.strictEqual(large, TOTAL, "64 KiB messages sent to a reader buffering 1000000")
      }),
    120_000
  )

  it.live(
    "highWaterMark: a sender to a reader taking nothing waits at 64 KiB queued, not at 512 MiB",
    () =>
      Effect.gen(function*() {
        const reader = { maxBufferedMessages: 4, maxBufferedBytes: MiB }
        const small = yield* heldWith({ reader, sender: low })
        assert.isBelow(small, TOTAL / 2, "64 KiB messages sent with a high-water mark of 64 KiB")
        const large = yield* heldWith({ reader, sender: { highWaterMark: 512 * MiB } })
        assert.strictEqual(large, TOTAL, "64 KiB messages sent with a high-water mark of 512 MiB")
      }),
    120_000
  )
})
