import { Memory, Transport } from "@effect-ipc/core"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import { assert, it } from "@effect/vitest"
import { Effect } from "effect"

it.live("memory echo", () =>
  Effect.gen(function*() {
    const t = Memory.make()
    const l = yield* t.listen("memory://smoke")
    const c = yield* t.dial("memory://smoke")
    const s = yield* l.accept
    yield* c.send(new Uint8Array([1, 2, 3]))
    const got = yield* s.receive
    assert.deepStrictEqual([...got], [1, 2, 3])
  }).pipe(Effect.scoped))

it.live("unix echo", () =>
  Effect.gen(function*() {
    const t = UnixSocket.make()
    const path = `unix:///tmp/effect-ipc-smoke-${process.pid}.sock`
    const l = yield* t.listen(path)
    const c = yield* t.dial(path)
    const s = yield* l.accept
    for (let i = 0; i < 1000; i++) yield* c.send(new Uint8Array([i & 255, 2, 3]))
    for (let i = 0; i < 1000; i++) {
      const got = yield* s.receive
      assert.strictEqual(got[0], i & 255)
    }
    yield* s.send(new Uint8Array(10_000_000))
    const big = yield* c.receive
    assert.strictEqual(big.byteLength, 10_000_000)
    yield* c.close
    const e = yield* Effect.flip(s.receive)
    assert.strictEqual(e.reason, "Closed")
  }).pipe(Effect.scoped))
void Transport
