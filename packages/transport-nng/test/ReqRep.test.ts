import { stalls } from "@effect-ipc/testing/Progress"
import { Rep, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Scheduler from "effect/Scheduler"
import { unusedPort } from "./fixtures/ports.ts"
import * as Child from "./fixtures/process.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const text = (bytes: Uint8Array) => decoder.decode(bytes)
const bytes = (value: string) => encoder.encode(value)

/** effect's default scheduler, counting the operations fibers run under it (each asks whether to yield). */
class CountingScheduler extends Scheduler.MixedScheduler {
  ops = 0
  override shouldYield(fiber: Parameters<Scheduler.Scheduler["shouldYield"]>[0]) {
    this.ops++
    return super.shouldYield(fiber)
  }
}

describe("Req / Rep", () => {
  it.live("answers requests, concurrently and in any order", () =>
    Effect.gen(function*() {
      const address = `inproc://reqrep-${Math.random()}`
      // request n is answered only once request n+1 has been answered: only handling them all at
      // once, answering in any order, gets them all through
      const answered = yield* Effect.forEach([0, 1, 2, 3], () => Deferred.make<void>())
      const order: Array<number> = []
      yield* Rep.serve({ listen: address }, (body) => {
        const n = Number(text(body))
        const after = n < 3 ? Deferred.await(answered[n + 1]!) : Effect.void
        return after.pipe(
          Effect.andThen(Effect.sync(() => order.push(n))),
          Effect.andThen(Deferred.succeed(answered[n]!, undefined)),
          Effect.as(body)
        )
      })
      const requester = yield* Req.make({ dial: address, pool: { max: 4 } })
      const replies = yield* Effect.forEach(
        ["0", "1", "2", "3"],
        (n) => Effect.map(requester.request(bytes(n)), text),
        {
          concurrency: "unbounded"
        }
      )
      assert.deepStrictEqual(replies, ["0", "1", "2", "3"])
      assert.deepStrictEqual(order, [3, 2, 1, 0])
    }).pipe(Effect.scoped))

  it.live("grows the pool to its maximum under load, and no further, and balances it", () =>
    Effect.gen(function*() {
      const bound = yield* Rep.serve({ listen: "tcp://127.0.0.1:0" }, (body) =>
        Effect.as(Effect.sleep("20 millis"), body))
      const address = bound.listening[0]!
      const requester = yield* Req.make({ dial: address, pool: { min: 1, max: 4 } })
      assert.strictEqual(yield* requester.size, 1)
      // one at a time: one socket is enough
      for (let i = 0; i < 5; i++) {
        yield* requester.request(bytes(String(i)))
      }
      assert.strictEqual(yield* requester.size, 1)
      // 16 at a time: the pool grows to 4, not beyond, and every socket carries its share
      const replies = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) =>
          i),
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
      // nothing listens there yet (the server comes later, at this very port)
      const address = `tcp://127.0.0.1:${unusedPort()}`
      const requester = yield* Req.make({ dial: address, timeout: "300 millis" })
      const error = yield* Effect.flip(requester.request(bytes("early")))
      assert.strictEqual(error.reason._tag, "Timeout")
      // the server comes later: the dialer connects by itself
      yield* Rep.serve({ listen: address }, Effect.succeed)
      const reply = yield* requester.request(bytes("later"), { timeout: "5 seconds" })
      assert.strictEqual(text(reply), "later")
    }).pipe(Effect.scoped))

  it.live(
    "a request in flight when the server dies fails with ConnectionLost and is not replayed",
    () =>
      Effect.gen(function*() {
        const { address, child: first } = yield* Child.server("rep", () => `tcp://127.0.0.1:${unusedPort()}`)
        const requester = yield* Req.make({ dial: address, timeout: "20 seconds" })
        assert.strictEqual(text(yield* requester.request(bytes("hello"))), "hello")
        const inFlight = yield* Effect.forkScoped(Effect.flip(requester.request(bytes("sleep 60000 lost"))))
        yield* first.waitFor((line) => line === "handled lost")
        const killedAt = Date.now()
        yield* first.kill
        const error = yield* Fiber.join(inFlight)
        assert.strictEqual(error.reason._tag, "ConnectionLost")
        assert.strictEqual(error.errno, "NNG_ECONNRESET")
        // at once, not after the 20 s timeout (a generous bound; bench/nng.ts measures the real figure)
        assert.isBelow(Date.now() - killedAt, 10_000)
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
        const { address, child: first } = yield* Child.server("rep", () => `tcp://127.0.0.1:${unusedPort()}`)
        // an attempt's timeout far above the second server's start on a loaded machine: a retry that
        // came from a timed-out attempt (allowed: the request is idempotent) would reach it twice
        const requester = yield* Req.make({
          dial: address,
          timeout: "20 seconds",
          retry: Schedule.spaced("100 millis").pipe(Schedule.upTo({ times: 100 }))
        })
        const call = yield* Effect.forkScoped(requester.request(bytes("sleep 300 again"), { idempotent: true }))
        yield* first.waitFor((line) => line === "handled again")
        yield* first.kill
        const second = yield* Child.node("peer.ts", ["rep", address])
        assert.strictEqual(text(yield* Fiber.join(call)), "again")
        // the second server handled it once: the retry after the lost connection
        assert.deepStrictEqual(second.lines.filter((line) => line.startsWith("handled")), ["handled again"])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("a requester with nothing to dial, or a bad address, is a typed error", () =>
    Effect.gen(function*() {
      const none = yield* Effect.flip(Req.make({}))
      assert.strictEqual(none.reason._tag, "InvalidAddress")
      const scheme = yield* Effect.flip(Req.make({ dial: "carrier://pigeon" }))
      assert.strictEqual(scheme.reason._tag, "UnsupportedScheme")
      const busy = (yield* Rep.make({ listen: "tcp://127.0.0.1:0" })).bound.listening[0]!
      const inUse = yield* Effect.flip(Rep.make({ listen: busy }))
      assert.strictEqual(inUse.reason._tag, "AddressInUse")
      assert.strictEqual(inUse.errno, "NNG_EADDRINUSE")
      // port 0 is listen's free port: a dial of it reached nothing and said "Connection refused"
      const zero = yield* Effect.flip(Req.make({ dial: "tcp://127.0.0.1:0" }))
      assert.strictEqual(zero.reason._tag, "InvalidAddress")
      assert.include(zero.detail, "port 0")
    }).pipe(Effect.scoped))

  it.live("without pool options, the pool grows to 8 sockets under load, and no further", () =>
    Effect.gen(function*() {
      const address = `inproc://reqpool-default-${Math.random()}`
      yield* Rep.serve({ listen: address }, (body) => Effect.as(Effect.sleep("100 millis"), body))
      const requester = yield* Req.make({ dial: address })
      assert.strictEqual(yield* requester.size, 1)
      const replies = yield* Effect.forEach(
        Array.from({ length: 24 }, (_, i) => String(i)),
        (n) => Effect.map(requester.request(bytes(n)), text),
        { concurrency: 12 }
      )
      assert.deepStrictEqual(replies, Array.from({ length: 24 }, (_, i) => String(i)))
      assert.strictEqual(yield* requester.size, 8)
    }).pipe(Effect.scoped))

  it.live("without concurrency, a Rep runs at most 64 handlers at once, and answers the rest after", () =>
    Effect.gen(function*() {
      const address = `inproc://rep-default-${Math.random()}`
      const gate = yield* Deferred.make<void>()
      let running = 0
      let most = 0
      yield* Rep.serve({ listen: address }, (body) =>
        Effect.gen(function*() {
          running++
          most = Math.max(most, running)
          yield* Deferred.await(gate)
          running--
          return body
        }))
      const requester = yield* Req.make({ dial: address, pool: { max: 100 }, timeout: "30 seconds" })
      const requests = yield* Effect.forkScoped(Effect.forEach(
        Array.from({ length: 100 }, (_, i) => String(i)),
        (n) => Effect.map(requester.request(bytes(n)), text),
        { concurrency: "unbounded" }
      ))
      // 100 requests in flight: the handlers started reach the limit, and stop growing there
      yield* Effect.suspend(() => most >= 64 ? Effect.void : Effect.fail(`${most} handlers started`)).pipe(
        Effect.retry(Schedule.spaced("20 millis")),
        Effect.timeout("20 seconds")
      )
      assert.strictEqual(yield* stalls(() => most, { what: "handlers started" }), 64)
      assert.strictEqual(running, 64)
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual(yield* Fiber.join(requests), Array.from({ length: 100 }, (_, i) => String(i)))
    }).pipe(Effect.scoped))

  it.live("each request goes to the idle socket that has carried the fewest", () =>
    Effect.gen(function*() {
      const address = `inproc://reqpool-fewest-${Math.random()}`
      yield* Rep.serve({ listen: address }, Effect.succeed)
      const requester = yield* Req.make({ dial: address, pool: { min: 3, max: 3 } })
      // one at a time, every socket is idle each time: they take turns
      for (let i = 0; i < 9; i++) yield* requester.request(bytes(String(i)))
      assert.deepStrictEqual(yield* requester.load, [3, 3, 3])
    }).pipe(Effect.scoped))

  it.live("an idempotent request is tried again after a timeout; another one is not", () =>
    Effect.gen(function*() {
      const address = `inproc://reqpool-timeout-${Math.random()}`
      // the first request of each body is never answered, the next one is
      const seen = new Map<string, number>()
      yield* Rep.serve({ listen: address }, (body) => {
        const n = (seen.get(text(body)) ?? 0) + 1
        seen.set(text(body), n)
        return n === 1 ? Effect.never : Effect.succeed(body)
      })
      const requester = yield* Req.make({
        dial: address,
        timeout: "300 millis",
        retry: Schedule.spaced("20 millis").pipe(Schedule.upTo({ times: 3 }))
      })
      assert.strictEqual(text(yield* requester.request(bytes("again"), { idempotent: true })), "again")
      assert.strictEqual(seen.get("again"), 2)
      const once = yield* Effect.flip(requester.request(bytes("once")))
      assert.strictEqual(once.reason._tag, "Timeout")
      assert.strictEqual(seen.get("once"), 1)
    }).pipe(Effect.scoped))

  it.live("a request whose handler fails gets no reply: its requester times out", () =>
    Effect.gen(function*() {
      const address = `inproc://reqpool-failing-${Math.random()}`
      yield* Rep.serve({ listen: address }, (body) =>
        text(body) === "fail" ? Effect.fail("refused") : Effect.succeed(body))
      const requester = yield* Req.make({ dial: address, timeout: "500 millis" })
      const error = yield* Effect.flip(requester.request(bytes("fail")))
      assert.strictEqual(error.reason._tag, "Timeout")
      // the server goes on answering
      assert.strictEqual(text(yield* requester.request(bytes("fine"))), "fine")
    }).pipe(Effect.scoped))

  it.live("a timeout says whether a peer was ever connected: the address and why not, or no reply", () =>
    Effect.gen(function*() {
      // nothing listens there: every connect is refused
      const refused = `tcp://127.0.0.1:${unusedPort()}`
      const alone = yield* Req.make({ dial: refused, timeout: "1 second" })
      const unconnected = yield* Effect.flip(alone.request(bytes("anyone?")))
      assert.strictEqual(unconnected.reason._tag, "Timeout")
      assert.strictEqual(unconnected.detail, `no peer connected to ${refused} within 1s (connection refused)`)
      assert.strictEqual(unconnected.address, refused)
      // a live server that never answers: the request went out, no reply came
      const bound = yield* Rep.serve({ listen: "tcp://127.0.0.1:0" }, () => Effect.never)
      const address = bound.listening[0]!
      const served = yield* Req.make({ dial: address, timeout: "1 second" })
      const unanswered = yield* Effect.flip(served.request(bytes("hello?")))
      assert.strictEqual(unanswered.reason._tag, "Timeout")
      assert.strictEqual(unanswered.detail, "no reply within 1s")
      assert.strictEqual(unanswered.address, address)
    }).pipe(Effect.scoped))

  it.live(
    "a freed socket wakes one waiting request, not all: the work per request does not grow with the queue",
    () =>
      Effect.gen(function*() {
        const bound = yield* Rep.serve({ listen: "tcp://127.0.0.1:0" }, Effect.succeed)
        const requester = yield* Req.make({ dial: bound.listening[0]!, pool: { min: 1, max: 1 } })
        yield* requester.request(bytes("warm"))
        // effect's operations run by the requests' fibers, counted by the scheduler they consult before each one
        const opsPerRequest = (count: number) =>
          Effect.gen(function*() {
            const scheduler = new CountingScheduler()
            const replies = yield* Effect.forEach(
              Array.from({ length: count }, (_, i) => String(i)),
              (n) => Effect.map(requester.request(bytes(n)), text),
              { concurrency: "unbounded" }
            ).pipe(Effect.provideService(Scheduler.Scheduler, scheduler))
            assert.deepStrictEqual(replies, Array.from({ length: count }, (_, i) => String(i)))
            return scheduler.ops / count
          })
        const few = yield* opsPerRequest(250)
        const many = yield* opsPerRequest(2000)
        // every waiter woken by every freed socket: 8 times the waiters, 8 times the work per request
        assert.isBelow(many, few * 2, `${few} operations per request of 250 waiting, ${many} of 2000`)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "20 000 requests that fail at once, queued behind a busy socket, each get their error",
    () =>
      Effect.gen(function*() {
        const bound = yield* Rep.serve(
          { listen: "tcp://127.0.0.1:0" },
          (body) => Effect.as(Effect.sleep("50 millis"), body)
        )
        const requester = yield* Req.make({ dial: bound.listening[0]!, pool: { min: 1, max: 1 } })
        // each frees the socket and wakes the next as it fails: wakes taken within wakes overflowed the stack
        const failures = yield* Effect.forEach(
          Array.from({ length: 20_000 }, (_, i) => i),
          (i) =>
            Effect.map(
              Effect.result(requester.request(i === 0 ? bytes("slow") : "not bytes" as unknown as Uint8Array)),
              (result) => result._tag === "Success" ? "sent" : result.failure.reason._tag
            ),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(failures[0], "sent")
        assert.deepStrictEqual(new Set(failures.slice(1)), new Set(["Encode"]))
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("a timeout while every socket of the pool is busy says so, and that the request was not sent", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const bound = yield* Rep.serve(
        { listen: "tcp://127.0.0.1:0" },
        (body) => Effect.andThen(Effect.sync(() => seen.push(text(body))), Effect.never)
      )
      const address = bound.listening[0]!
      const requester = yield* Req.make({ dial: address, timeout: "1 second", pool: { min: 1, max: 1 } })
      // the only socket carries a request the server never answers
      const first = yield* Effect.forkChild(Effect.flip(requester.request(bytes("first"))))
      while (seen.length === 0) yield* Effect.sleep("10 millis")
      const second = yield* Effect.flip(requester.request(bytes("second"), { timeout: "300 millis" }))
      assert.strictEqual(second.reason._tag, "Timeout")
      assert.strictEqual(
        second.detail,
        "every socket of the pool (1 open) was busy with an earlier request for 300ms: this one was not sent"
      )
      assert.strictEqual((yield* Fiber.join(first)).detail, "no reply within 1s")
      assert.deepStrictEqual(seen, ["first"])
    }).pipe(Effect.scoped))

  it.live(
    "a timeout with a peer connected that reads no more requests does not say no peer connected",
    () =>
      Effect.gen(function*() {
        // a server that reads nothing more once one request is held: its connection fills up, then the socket's
        // next request waits for it to be read
        const bound = yield* Rep.serve(
          { listen: "tcp://127.0.0.1:0", concurrency: 1, maxHeldBytes: 1 },
          () => Effect.never
        )
        const address = bound.listening[0]!
        const requester = yield* Req.make({ dial: address, timeout: "1 second", pool: { min: 1, max: 1 } })
        const body = new Uint8Array(16 * 1024 * 1024)
        const details: Array<string> = []
        // sent at first (no reply), until one is not taken (it said "no peer connected")
        while (details.length < 16 && (details.length === 0 || details.at(-1) === "no reply within 1s")) {
          const error = yield* Effect.flip(requester.request(body))
          assert.strictEqual(error.reason._tag, "Timeout")
          details.push(error.detail ?? "")
        }
        assert.strictEqual(
          details.at(-1),
          `a peer is connected to ${address} but took no request within 1s (it has not read those sent before)`,
          details.join("; ")
        )
      }).pipe(Effect.scoped),
    60_000
  )
})
