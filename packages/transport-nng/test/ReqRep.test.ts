import { Rep, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import { freePort } from "./fixtures/ports.ts"
import * as Child from "./fixtures/process.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const text = (bytes: Uint8Array) => decoder.decode(bytes)
const bytes = (value: string) => encoder.encode(value)

describe("Req / Rep", () => {
  it.live("answers requests, concurrently and in any order", () =>
    Effect.gen(function*() {
      const address = `inproc://reqrep-${Math.random()}`
      // a reply waits as many ms as the request says: later requests overtake earlier ones
      yield* Rep.serve({ listen: address }, (body) => Effect.as(Effect.sleep(Number(text(body))), body))
      const requester = yield* Req.make({ dial: address, pool: { max: 4 } })
      const finished: Array<string> = []
      yield* Effect.forEach(["300", "200", "100", "0"], (delay) =>
        Effect.tap(requester.request(bytes(delay)), (reply) => Effect.sync(() => finished.push(text(reply)))), {
        concurrency: "unbounded"
      })
      assert.deepStrictEqual(finished, ["0", "100", "200", "300"])
    }).pipe(Effect.scoped))

  it.live("grows the pool to its maximum under load, and no further, and balances it", () =>
    Effect.gen(function*() {
      const address = `tcp://127.0.0.1:${freePort()}`
      yield* Rep.serve({ listen: address }, (body) => Effect.as(Effect.sleep("20 millis"), body))
      const requester = yield* Req.make({ dial: address, pool: { min: 1, max: 4 } })
      assert.strictEqual(yield* requester.size, 1)
      // one at a time: one socket is enough
      for (let i = 0; i < 5; i++) yield* requester.request(bytes(String(i)))
      assert.strictEqual(yield* requester.size, 1)
      // 16 at a time: the pool grows to 4, not beyond, and every socket carries its share
      const replies = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i),
        (i) => Effect.map(requester.request(bytes(String(i))), text),
        { concurrency: 16 }
      )
      assert.deepStrictEqual(replies, Array.from({ length: 200 }, (_, i) => String(i)))
      assert.strictEqual(yield* requester.size, 4)
      const load = yield* requester.load
      assert.strictEqual(load.reduce((a, b) => a + b, 0), 205)
      for (const served of load) assert.isAbove(served, 30, `balanced: ${load.join(", ")}`)
    }).pipe(Effect.scoped), 30_000)

  it.live("a request waits for the server to come up, and fails with Timeout if it does not", () =>
    Effect.gen(function*() {
      const address = `tcp://127.0.0.1:${freePort()}`
      const requester = yield* Req.make({ dial: address, timeout: "300 millis" })
      const error = yield* Effect.flip(requester.request(bytes("early")))
      assert.strictEqual(error.reason, "Timeout")
      // the server comes later: the dialer connects by itself
      yield* Rep.serve({ listen: address }, Effect.succeed)
      const reply = yield* requester.request(bytes("later"), { timeout: "5 seconds" })
      assert.strictEqual(text(reply), "later")
    }).pipe(Effect.scoped))

  it.live(
    "a request in flight when the server dies fails with ConnectionLost and is not replayed",
    () =>
      Effect.gen(function*() {
        const address = `tcp://127.0.0.1:${freePort()}`
        const first = yield* Child.node("peer.ts", ["rep", address])
        yield* first.waitFor((line) => line === "ready")
        const requester = yield* Req.make({ dial: address, timeout: "20 seconds" })
        assert.strictEqual(text(yield* requester.request(bytes("hello"))), "hello")
        const inFlight = yield* Effect.forkScoped(Effect.flip(requester.request(bytes("sleep 60000 lost"))))
        yield* first.waitFor((line) => line === "handled lost")
        const killedAt = Date.now()
        yield* first.kill
        const error = yield* Fiber.join(inFlight)
        assert.strictEqual(error.reason, "ConnectionLost")
        assert.strictEqual(error.errno, "NNG_ECONNRESET")
        assert.isBelow(Date.now() - killedAt, 1000)
        // a new server at the same address: the requester reconnects, and the lost request never reached it
        const second = yield* Child.node("peer.ts", ["rep", address])
        yield* second.waitFor((line) => line === "ready")
        assert.strictEqual(text(yield* requester.request(bytes("count"))), "0")
        assert.isFalse(second.lines.some((line) => line.startsWith("handled")))
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "an idempotent request is retried after the server dies, and answered by the next one",
    () =>
      Effect.gen(function*() {
        const address = `tcp://127.0.0.1:${freePort()}`
        const first = yield* Child.node("peer.ts", ["rep", address])
        yield* first.waitFor((line) => line === "ready")
        const requester = yield* Req.make({
          dial: address,
          timeout: "2 seconds",
          retry: Schedule.spaced("100 millis").pipe(Schedule.upTo({ times: 100 }))
        })
        const call = yield* Effect.forkScoped(requester.request(bytes("sleep 300 again"), { idempotent: true }))
        yield* first.waitFor((line) => line === "handled again")
        yield* first.kill
        const second = yield* Child.node("peer.ts", ["rep", address])
        assert.strictEqual(text(yield* Fiber.join(call)), "again")
        // the second server handled it once
        assert.deepStrictEqual(second.lines.filter((line) => line.startsWith("handled")), ["handled again"])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("a requester with nothing to dial, or a bad address, is a typed error", () =>
    Effect.gen(function*() {
      const none = yield* Effect.flip(Req.make({}))
      assert.strictEqual(none.reason, "InvalidAddress")
      const scheme = yield* Effect.flip(Req.make({ dial: "carrier://pigeon" }))
      assert.strictEqual(scheme.reason, "UnsupportedScheme")
      const busy = `tcp://127.0.0.1:${freePort()}`
      yield* Rep.make({ listen: busy })
      const inUse = yield* Effect.flip(Rep.make({ listen: busy }))
      assert.strictEqual(inUse.reason, "AddressInUse")
      assert.strictEqual(inUse.errno, "NNG_EADDRINUSE")
    }).pipe(Effect.scoped))
})
