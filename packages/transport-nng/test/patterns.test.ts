import { Pair, Pipeline, PubSub } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const text = (bytes: Uint8Array) => decoder.decode(bytes)

/** Publishes `message` every 10 ms until `until` holds (a subscriber connects in the background). */
const publishUntil = (publish: Effect.Effect<void, unknown>, until: () => boolean) =>
  Effect.gen(function*() {
    while (!until()) {
      yield* Effect.ignore(publish)
      yield* Effect.sleep("10 millis")
    }
  })

/** Waits (on a 10 ms poll, up to 20 s) until `done` holds. */
const until = (done: () => boolean) =>
  Effect.gen(function*() {
    while (!done()) yield* Effect.sleep("10 millis")
  }).pipe(Effect.timeoutOrElse({ duration: "20 seconds", orElse: () => Effect.die("the condition never held") }))

describe("pub/sub", () => {
  it.live("delivers by topic prefix, to every subscriber, and follows subscribe/unsubscribe", () =>
    Effect.gen(function*() {
      const publisher = yield* PubSub.publisher({ listen: "tcp://127.0.0.1:0" })
      const address = publisher.bound.listening[0]!
      const weather = yield* PubSub.subscriber({ dial: address, topics: ["weather."] })
      const everything = yield* PubSub.subscriber({ dial: address, topics: [""] })
      const got: Array<string> = []
      yield* Effect.forkScoped(Stream.runForEach(weather.messages, (m) => Effect.sync(() => got.push(text(m)))))
      const all: Array<string> = []
      yield* Effect.forkScoped(Stream.runForEach(everything.messages, (m) => Effect.sync(() => all.push(text(m)))))
      yield* publishUntil(
        publisher.publishTo("weather.", encoder.encode("oslo 3C")),
        () => got.length > 0 && all.length > 0
      )
      yield* publisher.publishTo("sports.", encoder.encode("1-0"))
      yield* publisher.publishTo("weather.", encoder.encode("rome 21C"))
      yield* until(() => got.includes("weather.rome 21C") && all.includes("sports.1-0"))
      assert.isTrue(got.every((m) => m.startsWith("weather.")), got.join(" | "))
      assert.include(all, "sports.1-0")
      // unsubscribing stops the flow; subscribing to another topic starts it
      // (nng filters on the subscriber's side: a change of topics applies at once)
      yield* weather.unsubscribe("weather.")
      yield* weather.subscribe("sports.")
      const before = got.length
      yield* publisher.publishTo("weather.", encoder.encode("paris 12C"))
      yield* publisher.publishTo("sports.", encoder.encode("2-2"))
      // in order on one connection: had paris passed the filter, it would have arrived first
      yield* until(() => got.includes("sports.2-2"))
      assert.deepStrictEqual(got.slice(before), ["sports.2-2"])
    }).pipe(Effect.scoped))
})

describe("push/pull", () => {
  it.live("hands each message to one puller, spread over the pullers, none lost", () =>
    Effect.gen(function*() {
      const pusher = yield* Pipeline.pusher({ listen: "tcp://127.0.0.1:0" })
      const address = pusher.bound.listening[0]!
      const pullers = yield* Effect.forEach([1, 2, 3], () => Pipeline.puller({ dial: address }))
      const seen = pullers.map(() => [] as Array<number>)
      const probed = pullers.map(() => false)
      for (const [i, puller] of pullers.entries()) {
        yield* Effect.forkScoped(
          Stream.runForEach(puller.messages, (m) =>
            Effect.sync(() => {
              if (text(m) === "probe") probed[i] = true
              else seen[i]!.push(Number(text(m)))
            }))
        )
      }
      // every puller is connected once each has had a probe: the round robin has three to choose from
      while (!probed.every(Boolean)) {
        yield* pusher.push(encoder.encode("probe"))
        yield* Effect.sleep("5 millis")
      }
      for (let i = 0; i < 300; i++) yield* pusher.push(encoder.encode(String(i)))
      const total = () => seen.reduce((n, s) => n + s.length, 0)
      yield* until(() => total() >= 300)
      const all = seen.flat().toSorted((a, b) => a - b)
      assert.deepStrictEqual(all, Array.from({ length: 300 }, (_, i) => i))
      for (const s of seen) assert.isAbove(s.length, 50, `spread: ${seen.map((x) => x.length).join(", ")}`)
    }).pipe(Effect.scoped))

  it.live("a push waits while no puller can take it", () =>
    Effect.gen(function*() {
      const address = `inproc://pipeline-${Math.random()}`
      const pusher = yield* Pipeline.pusher({ listen: address, sendBuffer: 0 })
      let pushed = false
      const pushing = yield* Effect.forkScoped(
        Effect.andThen(pusher.push(encoder.encode("patient")), Effect.sync(() => void (pushed = true)))
      )
      yield* Effect.sleep("200 millis")
      assert.isFalse(pushed, "the push is still waiting")
      const puller = yield* Pipeline.puller({ dial: address })
      yield* Fiber.join(pushing)
      assert.strictEqual(text(yield* puller.pull), "patient")
    }).pipe(Effect.scoped))

  it.live("a puller stops reading above maxBufferedMessages, so its pushers wait (back-pressure)", () =>
    Effect.gen(function*() {
      const address = `inproc://backpressure-${Math.random()}`
      const puller = yield* Pipeline.puller({ listen: address, recvBuffer: 1, maxBufferedMessages: 4 })
      const pusher = yield* Pipeline.pusher({ dial: address, sendBuffer: 1 })
      let pushed = 0
      const pushing = yield* Effect.forkScoped(Effect.gen(function*() {
        for (let i = 0; i < 500; i++) {
          yield* pusher.push(encoder.encode(String(i)))
          pushed++
        }
      }))
      yield* Effect.sleep("500 millis")
      // 4 buffered, plus nng's one-message queues on each side: far from all 500
      assert.isBelow(pushed, 50, `pushed ${pushed} to a puller that reads nothing`)
      // reading resumes: every message arrives, in order
      const got: Array<string> = []
      for (let i = 0; i < 500; i++) got.push(text(yield* puller.pull))
      yield* Fiber.join(pushing)
      assert.deepStrictEqual(got, Array.from({ length: 500 }, (_, i) => String(i)))
    }).pipe(Effect.scoped))

  it.live("linger: closing waits that long first", () =>
    Effect.gen(function*() {
      const address = `inproc://linger-${Math.random()}`
      const started = Date.now()
      yield* Effect.scoped(Pipeline.pusher({ listen: address, linger: "300 millis" }))
      assert.isAtLeast(Date.now() - started, 290)
    }))
})

describe("pair", () => {
  it.live("carries messages both ways, in order, and leaves no socket file behind", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-pair-"))
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          // the scope's sockets closed first (finalizers run in reverse): nng removed its file
          assert.deepStrictEqual(Fs.readdirSync(dir), [])
          Fs.rmSync(dir, { recursive: true, force: true })
        })
      )
      const address = `ipc://${Path.join(dir, "pair.ipc")}`
      const a = yield* Pair.make({ listen: address })
      assert.strictEqual(Fs.statSync(Path.join(dir, "pair.ipc")).mode & 0o777, 0o600)
      const b = yield* Pair.make({ dial: address })
      yield* Effect.forkScoped(Stream.runForEach(a.messages, a.send))
      const echoed = yield* Effect.forkScoped(Stream.runCollect(Stream.take(b.messages, 100)))
      for (let i = 0; i < 100; i++) yield* b.send(encoder.encode(String(i)))
      const replies = (yield* Fiber.join(echoed)).map(text)
      assert.deepStrictEqual(replies, Array.from({ length: 100 }, (_, i) => String(i)))
    }).pipe(Effect.scoped))
})

describe("interruption and close", () => {
  it.live("fibers waiting on nng are interrupted at once, and closing never hangs", () =>
    Effect.gen(function*() {
      const address = `inproc://interrupt-${Math.random()}`
      const started = Date.now()
      yield* Effect.scoped(Effect.gen(function*() {
        const puller = yield* Pipeline.puller({ listen: address })
        const pusher = yield* Pipeline.pusher({ dial: `inproc://nobody-${Math.random()}`, sendBuffer: 0 })
        // one waits for a message, one for a puller to push to, one for a reply
        const pulling = yield* Effect.forkScoped(puller.pull)
        const pushing = yield* Effect.forkScoped(pusher.push(encoder.encode("nobody takes this")))
        yield* Effect.sleep("50 millis")
        yield* Fiber.interrupt(pulling)
        yield* Fiber.interrupt(pushing)
        // and one is still waiting when the scope closes: it ends with the socket
        yield* Effect.forkScoped(puller.pull)
        yield* Effect.sleep("20 millis")
      }))
      // a generous bound: it tells "at once" from a hang
      assert.isBelow(Date.now() - started, 10_000)
    }))
})
