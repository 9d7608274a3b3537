import { Inbox, IpcError, Memory } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Scheduler from "effect/Scheduler"
import * as V8 from "node:v8"
import * as Vm from "node:vm"

const m = (n: number) => new Uint8Array([n])
const sized = (n: number) => new Uint8Array(n)

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
      // asked once the taker has gone on with its message (a microtask later: see the race below)
      assert.strictEqual(resumed, 0)
      yield* Effect.yieldNow
      assert.strictEqual(resumed, 1)
      assert.isFalse(inbox.isPaused())
    }))

  it.effect("poll and pollAll take what is buffered now, in order, and resume a paused source as take does", () =>
    Effect.gen(function*() {
      let resumed = 0
      const inbox = Inbox.make({ maxMessages: 4, onResume: () => resumed++ })
      assert.isUndefined(inbox.poll())
      assert.isUndefined(inbox.pollAll())
      for (let i = 1; i <= 4; i++) inbox.push(m(i))
      assert.isTrue(inbox.isPaused())
      assert.deepStrictEqual(inbox.poll(), m(1))
      assert.deepStrictEqual(inbox.poll(), m(2))
      // half drained: the source resumes once the taker has gone on (a microtask later), as after a take
      assert.strictEqual(resumed, 0)
      yield* Effect.yieldNow
      assert.strictEqual(resumed, 1)
      inbox.push(m(5))
      assert.deepStrictEqual(inbox.pollAll(), [m(3), m(4), m(5)])
      assert.strictEqual(inbox.size(), 0)
      assert.isUndefined(inbox.pollAll())
      // the end is for the takes to report: poll finds nothing
      inbox.end()
      assert.isUndefined(inbox.poll())
      const ended = yield* Effect.flip(inbox.take)
      assert.strictEqual(ended.reason._tag, "Closed")
    }))

  it.effect("pauses its source at the byte limit, whatever the count, and resumes at half the bytes", () =>
    Effect.gen(function*() {
      let resumed = 0
      const inbox = Inbox.make({ maxMessages: 1000, maxBytes: 100, onResume: () => resumed++ })
      assert.isTrue(inbox.push(sized(40)))
      assert.isTrue(inbox.push(sized(59)))
      assert.isFalse(inbox.isPaused())
      // 100 bytes in 3 messages: paused, far under the message limit
      assert.isFalse(inbox.push(sized(1)))
      assert.isTrue(inbox.isPaused())
      // 60 bytes left, over half: still paused
      yield* inbox.take
      assert.isTrue(inbox.isPaused())
      assert.strictEqual(resumed, 0)
      // 1 byte left: resumed, once
      yield* inbox.take
      yield* Effect.yieldNow
      assert.isFalse(inbox.isPaused())
      assert.strictEqual(resumed, 1)
      // one message larger than the limit pauses at once
      assert.isFalse(inbox.push(sized(500)))
      assert.isTrue(inbox.isPaused())
    }))

  // the resume runs a microtask after a take: the source must stay paused past it until half is drained
  it.effect("stays paused above half, once the taker has gone on too, by count and by bytes", () =>
    Effect.gen(function*() {
      let resumed = 0
      const counted = Inbox.make({ maxMessages: 4, onResume: () => resumed++ })
      for (let i = 1; i <= 4; i++) counted.push(m(i))
      assert.isTrue(counted.isPaused())
      // 3 of 4 left: under the limit, over half
      yield* counted.take
      yield* Effect.yieldNow
      assert.isTrue(counted.isPaused())
      assert.strictEqual(resumed, 0)
      // 2 of 4 left: half, resumed
      yield* counted.take
      yield* Effect.yieldNow
      assert.isFalse(counted.isPaused())
      assert.strictEqual(resumed, 1)

      const sizedInbox = Inbox.make({ maxMessages: 1000, maxBytes: 100, onResume: () => resumed++ })
      sizedInbox.push(sized(40))
      sizedInbox.push(sized(59))
      sizedInbox.push(sized(1))
      assert.isTrue(sizedInbox.isPaused())
      // 60 of 100 bytes left: under the limit, over half
      yield* sizedInbox.take
      yield* Effect.yieldNow
      assert.isTrue(sizedInbox.isPaused())
      assert.strictEqual(resumed, 1)
      // 1 byte left: resumed
      yield* sizedInbox.take
      yield* Effect.yieldNow
      assert.isFalse(sizedInbox.isPaused())
      assert.strictEqual(resumed, 2)
    }))

  it.effect("delivers buffered messages before a graceful end or an error", () =>
    Effect.gen(function*() {
      const ended = Inbox.make({ address: "memory://inbox" })
      ended.push(m(1))
      ended.end()
      assert.deepStrictEqual([...(yield* ended.take)], [1])
      const closed = yield* Effect.flip(ended.take)
      assert.strictEqual(closed.reason._tag, "Closed")
      // it names the channel, as a send's Closed does
      assert.strictEqual(closed.address, "memory://inbox")

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

  it.effect("shutdown drops what is buffered and what comes later, fails takers, and resumes a paused source", () =>
    Effect.gen(function*() {
      let resumed = 0
      const inbox = Inbox.make({ maxMessages: 2, onResume: () => void resumed++ })
      inbox.push(m(1))
      assert.isFalse(inbox.push(m(2)), "full: the source pauses")
      inbox.shutdown(IpcError.make("Closed", "closed here"))
      assert.strictEqual(resumed, 1, "the paused source was resumed")
      assert.strictEqual((yield* Effect.flip(inbox.take)).detail, "closed here")
      // dropped, and the source reads on (the peer's goodbye comes after what it sent)
      for (let i = 0; i < 10; i++) assert.isTrue(inbox.push(m(3)))
      assert.strictEqual(inbox.size(), 0)
      assert.strictEqual((yield* Effect.flip(inbox.take)).detail, "closed here")
      assert.strictEqual(resumed, 1)
      // a flood is not read for ever: past eight inboxes' worth dropped, the source pauses for good
      const small = Inbox.make({ maxBytes: 1000 })
      small.shutdown(IpcError.make("Closed", "closed here"))
      let taken = 0
      while (small.push(new Uint8Array(100)) && taken < 1000) taken++
      assert.strictEqual(taken, 80)
      assert.isFalse(small.push(new Uint8Array(1)))
    }))

  it.effect("options that are not (null, a maxMessages of \"x\") make an inbox whose takes fail with InvalidOption", () =>
    Effect.gen(function*() {
      const given: ReadonlyArray<[unknown, string]> = [
        [null, "the inbox's options are not an object (got null)"],
        [{ maxMessages: "x" }, `maxMessages "x" is not a whole number of at least 1`],
        [{ maxMessages: Number.NaN }, "maxMessages NaN is not a whole number of at least 1"],
        [{ maxBytes: -1 }, "maxBytes -1 is not a whole number of at least 1"],
        [{ onResume: 42 }, "onResume number is not a function"],
        [{ address: 5 }, "address (a number) is not a string"],
        [{ address: null }, "address (null) is not a string"]
      ]
      for (const [options, detail] of given) {
        const inbox = Inbox.make(options as Inbox.InboxOptions)
        assert.isTrue(inbox.isDone())
        assert.isFalse(inbox.push(m(1)))
        const error = yield* Effect.flip(inbox.take)
        assert.strictEqual(error.reason._tag, "InvalidOption")
        assert.isTrue(error.detail.startsWith(detail), error.detail)
      }
    }))

  it.effect("a paused source resumes under a maxBytes of 2 GiB or more (halving it wrapped to a negative 32-bit number)", () =>
    Effect.gen(function*() {
      let resumed = 0
      const inbox = Inbox.make({ maxMessages: 4, maxBytes: 3 * 2 ** 30, onResume: () => resumed++ })
      for (let i = 1; i <= 4; i++) inbox.push(m(i))
      assert.isTrue(inbox.isPaused())
      yield* inbox.take
      yield* inbox.take
      yield* Effect.yieldNow
      assert.strictEqual(resumed, 1)
      assert.isFalse(inbox.isPaused())
    }))
})

/** Resolves after `n` turns of the event loop's check phase (where effect's yields run). */
const immediates = (n: number): Promise<void> =>
  n === 0 ? Promise.resolve() : new Promise((resolve) => setImmediate(() => resolve(immediates(n - 1))))

/** A fiber that pulls from `inbox` forever, recording each batch's first bytes. */
const puller = (inbox: Inbox.Inbox) => {
  const batches: Array<Array<number>> = []
  const fiber = Effect.runFork(Effect.gen(function*() {
    while (true) {
      const batch = yield* inbox.pull
      batches.push(batch.map((message) => message[0]!))
    }
  }))
  return { batches, fiber }
}
const turn = () => new Promise((resolve) => setTimeout(resolve, 0))

describe("Inbox.deliver", () => {
  it("resumes a waiting taker once, as it returns, with everything pushed inside it", async () => {
    const inbox = Inbox.make()
    const { batches, fiber } = puller(inbox)
    await turn()
    inbox.deliver(() => {
      inbox.push(m(1))
      inbox.push(m(2))
      assert.deepStrictEqual(batches, [], "no taker runs inside the delivery")
    })
    assert.deepStrictEqual(batches, [[1, 2]], "the taker ran before deliver returned")
    // outside a delivery a push wakes the taker a microtask later, not inside the push
    inbox.push(m(3))
    assert.deepStrictEqual(batches, [[1, 2]])
    await turn()
    assert.deepStrictEqual(batches, [[1, 2], [3]])
    await Effect.runPromise(Fiber.interrupt(fiber))
  })

  it("wakes at the outermost delivery's end, and still wakes when the delivery throws", async () => {
    const inbox = Inbox.make()
    const { batches, fiber } = puller(inbox)
    await turn()
    inbox.deliver(() => {
      inbox.deliver(() => inbox.push(m(1)))
      assert.deepStrictEqual(batches, [], "an inner delivery leaves the wake to the outer one")
      inbox.push(m(2))
    })
    assert.deepStrictEqual(batches, [[1, 2]])
    await turn()
    assert.throws(() =>
      inbox.deliver(() => {
        inbox.push(m(3))
        throw new Error("the source failed")
      })
    )
    assert.deepStrictEqual(batches, [[1, 2], [3]], "a delivery that threw still woke the taker")
    // and the inbox is not left holding wakes: the next delivery wakes at its end again
    await turn()
    inbox.deliver(() => inbox.push(m(4)))
    assert.deepStrictEqual(batches, [[1, 2], [3], [4]])
    await Effect.runPromise(Fiber.interrupt(fiber))
  })

  // shm's link reads its ring again from `onResume`: it may push the rest and end the input right there,
  // while the inbox is handing what it took to a waiting taker
  it("a source that refills and ends from onResume: every message arrives once, in order", async () => {
    for (const one of [false, true]) {
      let refilled = false
      const inbox: Inbox.Inbox = Inbox.make({
        maxMessages: 4,
        onResume: () => {
          if (refilled) return
          refilled = true
          inbox.push(m(5))
          inbox.push(m(6))
          inbox.end()
        }
      })
      const got: Array<number> = []
      const taker = Effect.runFork(Effect.gen(function*() {
        while (true) {
          const result = yield* Effect.result(one ? Effect.map(inbox.take, (message) => [message]) : inbox.pull)
          if (result._tag === "Failure") return
          for (const message of result.success) got.push(message[0]!)
        }
      }))
      await turn()
      assert.doesNotThrow(() =>
        inbox.deliver(() => {
          for (let i = 1; i <= 4; i++) inbox.push(m(i))
        })
      )
      await Effect.runPromise(Fiber.join(taker))
      assert.deepStrictEqual(got, [1, 2, 3, 4, 5, 6], one ? "take" : "pull")
    }
  })

  it("a delivery with no taker waiting keeps the messages for the next take", async () => {
    const inbox = Inbox.make()
    assert.strictEqual(inbox.deliver(() => inbox.push(m(1))), true)
    assert.deepStrictEqual([...(await Effect.runPromise(inbox.pull))].map((message) => message[0]), [1])
  })
})

describe("Inbox waiters", () => {
  // A fiber yields to the event loop every `MaxOpsBeforeYield` steps. A yield that falls between a
  // take's look at the empty buffer and its wait let a message in with nobody to wake: the taker
  // then slept with the message buffered. Small budgets put a yield at every step boundary in turn
  // (from 3: with a budget of 2 a fiber makes no progress at all).
  it("a message pushed while the taker yields is taken, at every step a yield can fall on", async () => {
    const stuck: Array<string> = []
    for (let budget = 3; budget <= 24; budget++) {
      for (let turns = 0; turns <= 3; turns++) {
        for (const kind of ["take", "pull"] as const) {
          const inbox = Inbox.make()
          const taking: Effect.Effect<unknown, unknown> = kind === "take" ? inbox.take : inbox.pull
          const fiber = Effect.runFork(
            Effect.andThen(Effect.yieldNow, taking).pipe(Effect.provideService(Scheduler.MaxOpsBeforeYield, budget))
          )
          await immediates(turns)
          inbox.push(m(7))
          const result = await Promise.race([
            Effect.runPromise(Fiber.join(fiber)).then(() => "taken"),
            new Promise<string>((resolve) => setTimeout(() => resolve("stuck"), 200))
          ])
          if (result === "stuck") {
            stuck.push(`${kind} budget ${budget} turns ${turns}`)
            await Effect.runPromise(Fiber.interrupt(fiber))
          }
        }
      }
    }
    assert.deepStrictEqual(stuck, [])
  })
})

/** Runs a full collection (V8's `gc`, exposed for the call). */
const collectGarbage = (): void => {
  V8.setFlagsFromString("--expose-gc")
  ;(Vm.runInNewContext("gc") as () => void)()
}

describe("Inbox: takers interrupted while they wait", () => {
  it("a message that comes after its taker was interrupted goes to the next taker, or stays buffered", async () => {
    for (const kind of ["take", "pull", "next"] as const) {
      const inbox = Inbox.make()
      const taking = (): Effect.Effect<unknown, unknown> =>
        kind === "take" ? inbox.take : kind === "pull" ? inbox.pull : inbox.next
      const gone = Effect.runFork(taking())
      await turn()
      const live = Effect.runFork(taking())
      await turn()
      await Effect.runPromise(Fiber.interrupt(gone))
      inbox.deliver(() => inbox.push(m(1)))
      const got = await Effect.runPromise(Fiber.join(live))
      assert.deepStrictEqual(
        got instanceof Uint8Array ? [...got] : (got as Array<Uint8Array>).map((x) => [...x]),
        kind === "take" ? [1] : [[1]],
        kind
      )
      // interrupted, with nobody else waiting: the message stays for the next take
      const alone = Effect.runFork(taking())
      await turn()
      await Effect.runPromise(Fiber.interrupt(alone))
      inbox.push(m(2))
      await turn()
      assert.strictEqual(inbox.size(), 1, kind)
      assert.deepStrictEqual([...(await Effect.runPromise(inbox.take))], [2])
    }
  })

  it("takers interrupted while nothing comes are let go of, and one still waiting gets the next message", async () => {
    const inbox = Inbox.make()
    const live = Effect.runFork(inbox.pull)
    await turn()
    const refs: Array<WeakRef<object>> = []
    // receives under a timeout, in a loop, on a quiet channel
    for (let i = 0; i < 2000; i++) {
      const fiber = Effect.runFork(inbox.take)
      refs.push(new WeakRef(fiber))
      await Effect.runPromise(Fiber.interrupt(fiber))
    }
    await turn()
    collectGarbage()
    await turn()
    collectGarbage()
    const held = refs.filter((ref) => ref.deref() !== undefined).length
    assert.isBelow(held, 40, `${held} of 2000 interrupted takers still held`)
    inbox.deliver(() => inbox.push(m(3)))
    const batch = await Effect.runPromise(Fiber.join(live))
    assert.deepStrictEqual(batch.map((x) => x[0]), [3])
  })
})

/**
 * An inbox of two messages whose source, the first time it is told to resume, ends it, or reads on (a
 * message 3 pushed inside `deliver`, or pushed alone): shm's reads its ring there
 */
const resumingSource = (how: "end" | "deliver" | "push"): Inbox.Inbox => {
  let resumed = 0
  const inbox: Inbox.Inbox = Inbox.make({
    maxMessages: 2,
    onResume: () => {
      if (resumed++ > 0) return
      if (how === "end") inbox.end()
      else if (how === "deliver") inbox.deliver(() => inbox.push(m(3)))
      else inbox.push(m(3))
    }
  })
  return inbox
}

/** Every message left in `inbox`, as numbers. */
const leftIn = async (inbox: Inbox.Inbox): Promise<Array<number>> => {
  const left: Array<number> = []
  while (inbox.size() > 0) left.push((await Effect.runPromise(inbox.take))[0]!)
  return left
}

describe("Inbox: a source that ends or delivers from onResume", () => {
  // a woken taker's take asks the source to resume; a source that ends or delivers right there woke the
  // next taker before the first held its message, so the second won a race of the two and the first's
  // message was dropped
  it("while a woken taker takes: the first taker wins a race of two, nothing lost", async () => {
    for (const how of ["end", "deliver"] as const) {
      const inbox = resumingSource(how)
      const race = Effect.runFork(Effect.race(inbox.take, inbox.take))
      await turn()
      inbox.deliver(() => {
        inbox.push(m(1))
        inbox.push(m(2))
      })
      const won = await Effect.runPromise(Fiber.join(race))
      assert.deepStrictEqual([won[0], ...await leftIn(inbox)], how === "end" ? [1, 2] : [1, 2, 3], how)
    }
  })

  it("a take that finds a message there: its race partner, woken by what the source sends as it resumes, does not win", async () => {
    for (const how of ["end", "deliver", "push"] as const) {
      const inbox = resumingSource(how)
      const go = Deferred.makeUnsafe<void>()
      // the first racer takes once let go; the second waits at once
      const race = Effect.runFork(Effect.race(Effect.andThen(Deferred.await(go), inbox.take), inbox.take))
      await turn()
      // two messages (the source paused at 2), their wake due in a microtask: the first racer takes before it,
      // without waiting, which drains the inbox to half and resumes the source
      inbox.push(m(1))
      inbox.push(m(2))
      Deferred.doneUnsafe(go, Effect.void)
      const won = await Effect.runPromise(Fiber.join(race))
      await turn()
      const all = [won[0]!, ...await leftIn(inbox)].toSorted((a, b) => a - b)
      assert.deepStrictEqual(all, how === "end" ? [1, 2] : [1, 2, 3], how)
    }
  })

  it("over memory://: a producer held by back-pressure that sends its last message and closes", async () => {
    const got = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const transport = Memory.make({ maxBufferedMessages: 2 })
      const address = `memory://inbox-race-${process.pid}`
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      const race = yield* Effect.forkChild(Effect.race(client.receive, client.receive))
      yield* Effect.yieldNow
      const producer = yield* Effect.forkChild(Effect.gen(function*() {
        yield* server.send(m(1))
        yield* server.send(m(2))
        yield* server.close
      }))
      const won = yield* Fiber.join(race)
      yield* Fiber.join(producer)
      const all = [won[0]!]
      while (true) {
        const next = yield* Effect.result(client.receive)
        if (next._tag === "Failure") return all
        all.push(next.success[0]!)
      }
    })))
    assert.deepStrictEqual(got, [1, 2])
  })
})
