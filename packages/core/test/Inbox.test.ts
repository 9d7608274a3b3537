import { Inbox, IpcError } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"

const m = (n: number) => new Uint8Array([n])

describe("Inbox", () => {
  it.effect("asks its source to pause at the limit and to resume when drained to half", () =>
    Effect.gen(function*() {
      let resumed = 0
      const inbox = Inbox.make({ maxMessages: 4, onResume: () => resumed++ })
      assert.isTrue(inbox.push(m(1)))
      assert.isTrue(inbox.push(m(2)))
      assert.isTrue(inbox.push(m(3)))
      assert.isFalse(inbox.push(m(4)))
      assert.isTrue(inbox.isPaused())
      assert.strictEqual(inbox.size(), 4)
      yield* inbox.take
      assert.strictEqual(inbox.size(), 3)
      assert.strictEqual(resumed, 0)
      yield* inbox.take
      assert.strictEqual(resumed, 1)
      assert.isFalse(inbox.isPaused())
    }))

  it.effect("delivers buffered messages before a graceful end or an error", () =>
    Effect.gen(function*() {
      const ended = Inbox.make()
      ended.push(m(1))
      ended.end()
      assert.deepStrictEqual([...(yield* ended.take)], [1])
      assert.strictEqual((yield* Effect.flip(ended.take)).reason._tag, "Closed")

      const failed = Inbox.make()
      failed.push(m(1))
      failed.push(m(2))
      failed.fail(IpcError.make("ConnectionLost", "gone"))
      assert.strictEqual((yield* failed.pull).length, 2)
      const error = yield* Effect.flip(failed.pull)
      assert.strictEqual(error._tag === "IpcError" ? error.reason._tag : "Done", "ConnectionLost")
    }))

  it.effect("wakes waiting takers in order, one message each", () =>
    Effect.gen(function*() {
      const inbox = Inbox.make()
      const a = yield* Effect.forkChild(inbox.take, { startImmediately: true })
      const b = yield* Effect.forkChild(inbox.take, { startImmediately: true })
      inbox.push(m(1))
      inbox.push(m(2))
      assert.deepStrictEqual([...(yield* Fiber.join(a))], [1])
      assert.deepStrictEqual([...(yield* Fiber.join(b))], [2])
    }))

  it.effect("shutdown drops what is buffered and fails takers", () =>
    Effect.gen(function*() {
      const inbox = Inbox.make()
      inbox.push(m(1))
      inbox.shutdown(IpcError.make("Closed", "closed here"))
      assert.strictEqual((yield* Effect.flip(inbox.take)).detail, "closed here")
      assert.isFalse(inbox.push(m(2)))
    }))
})
