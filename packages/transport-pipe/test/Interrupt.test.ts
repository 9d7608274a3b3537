/**
 * A dial interrupted at any point leaves no descriptor open: the listener runs
 * in another process, this one starts dials and interrupts them after a varying
 * number of scheduler turns and milliseconds, then counts /proc/self/fd.
 */
import type * as Transport from "@effect-ipc/core/Transport"
import { Fifo, UnixSocket } from "@effect-ipc/transport-pipe"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Path from "node:path"
import { node, nodeFixture, openFds, start, tempDir, waitFor } from "./helpers.ts"

/** Starts the echo listener fixture at `address` in another process. */
const listenElsewhere = (address: string) =>
  Effect.gen(function*() {
    const listener = yield* start(node, [...nodeFixture("listen.ts"), address])
    yield* listener.line(/^armed$/)
    yield* listener.say("go")
    assert.strictEqual(yield* listener.line(/^(won|lost)/), "won")
  })

/** Dials `rounds` times, interrupting each dial at a different point; returns the descriptors left over. */
const interruptedDials = (transport: Transport.TransportShape, address: string, rounds: number) =>
  Effect.gen(function*() {
    const before = openFds()
    for (let k = 0; k < rounds; k++) {
      yield* Effect.scoped(Effect.gen(function*() {
        const dialing = yield* Effect.forkScoped(
          Effect.scoped(Effect.flatMap(transport.dial(address), () => Effect.never)),
          { startImmediately: true }
        )
        for (let turn = 0; turn < k % 9; turn++) yield* Effect.yieldNow
        if (k % 3 !== 0) yield* Effect.sleep(`${k % 4} millis`)
        yield* Fiber.interrupt(dialing)
      }))
    }
    yield* waitFor(() => openFds() <= before, 15_000)
    return openFds() - before
  })

describe("interrupted dials", () => {
  it.live("unix://: no descriptor leaks, whatever the point of interruption", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-interrupt-")
      const address = `unix://${Path.join(dir, "s.sock")}`
      yield* listenElsewhere(address)
      const transport = UnixSocket.make()
      assert.strictEqual(yield* interruptedDials(transport, address, 300), 0, "descriptors leaked")
      // and the listener still serves
      const client = yield* transport.dial(address)
      yield* client.send(new Uint8Array([1]))
      assert.deepStrictEqual([...(yield* client.receive)], [1])
    }).pipe(Effect.scoped), 60_000)

  it.live("fifo://: no descriptor leaks, whatever the point of interruption", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-interrupt-")
      const address = `fifo://${Path.join(dir, "pair")}`
      yield* listenElsewhere(address)
      const transport = Fifo.make()
      assert.strictEqual(yield* interruptedDials(transport, address, 60), 0, "descriptors leaked")
    }).pipe(Effect.scoped), 60_000)
})
