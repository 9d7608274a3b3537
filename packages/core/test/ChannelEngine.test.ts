import { ChannelEngine, IpcChannel, IpcError, Memory } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Stream from "effect/Stream"

const m = (n: number) => new Uint8Array([n])
/** A message of 128 KiB whose first byte is `n`. */
const large = (n: number) => {
  const message = new Uint8Array(128 * 1024)
  message[0] = n
  return message
}

/** A link over nothing: it records what the engine asks of it, and the test plays the medium. */
const testLink = (
  options: {
    readonly answerGoodbye?: boolean
    readonly ping?: boolean
    /** What the medium does, synchronously, when the engine resumes it (a ring read at once). */
    readonly onResume?: (sink: ChannelEngine.Sink) => void
  } = {}
) => {
  const state = {
    written: [] as Array<number>,
    flushes: [] as Array<number>,
    pending: 0,
    resumes: 0,
    pings: 0,
    goodbyes: 0,
    destroys: 0,
    sink: undefined as unknown as ChannelEngine.Sink
  }
  const open = (sink: ChannelEngine.Sink): ChannelEngine.Link => {
    state.sink = sink
    return {
      write: (message) => {
        state.written.push(message[0]!)
        state.pending += message.byteLength
      },
      flush: () => {
        state.flushes.push(state.written.length)
      },
      pending: () => state.pending,
      resume: () => {
        state.resumes++
        options.onResume?.(sink)
      },
      ...(options.ping === true ? { ping: () => void state.pings++ } : {}),
      goodbye: (sent) => {
        state.goodbyes++
        if (options.answerGoodbye !== false) {
          sent()
          sink.closed()
        }
      },
      destroy: () => {
        state.destroys++
      }
    }
  }
  return { state, open }
}

const isDone = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Effect.yieldNow, () => fiber.pollUnsafe() !== undefined)

describe("ChannelEngine", () => {
  it.live("a burst of sends reaches the link in order: its first message is flushed at once, the rest together after it", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a" }, open)
      // the first message goes out as `send` returns (a reply leaves before the sender's other work runs)
      yield* channel.send(m(1))
      assert.deepStrictEqual(state.flushes, [1])
      yield* channel.send(m(2))
      yield* channel.send(m(3))
      assert.deepStrictEqual(state.written, [1, 2, 3])
      assert.deepStrictEqual(state.flushes, [1])
      yield* Effect.yieldNow
      yield* Effect.promise(() => Promise.resolve())
      // the rest of the burst: one flush
      assert.deepStrictEqual(state.flushes, [1, 3])
      // a later burst starts again with a message that goes at once
      yield* channel.send(m(4))
      yield* channel.send(m(5))
      assert.deepStrictEqual(state.flushes, [1, 3, 4])
      yield* Effect.promise(() => Promise.resolve())
      assert.deepStrictEqual(state.flushes, [1, 3, 4, 5])
    }))

  it.live("a long burst is also written out every maxBurstDelay, so the peer starts on it while the rest is made", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxBurstDelay: "1 millis" }, open)
      yield* channel.send(m(1))
      assert.deepStrictEqual(state.flushes, [1])
      // the burst's clock starts at its 8th send after the first
      for (let i = 2; i <= 9; i++) yield* channel.send(m(i))
      assert.deepStrictEqual(state.flushes, [1])
      // the same turn goes on for longer than maxBurstDelay (no yield to the event loop)
      const until = performance.now() + 3
      while (performance.now() < until) {
        // busy
      }
      for (let i = 10; i <= 17; i++) yield* channel.send(m(i))
      // looked at on the 16th send of the burst: written out then, not at the end of the turn
      assert.deepStrictEqual(state.flushes, [1, 17])
      yield* Effect.promise(() => Promise.resolve())
      assert.deepStrictEqual(state.flushes, [1, 17, 17])
    }))

  it.live("a slow burst is looked at more often: the clock's stride halves while sends take long", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxBurstDelay: "1 millis" }, open)
      // every send after the first comes at least 0.6 ms after the one before (more than half of maxBurstDelay)
      yield* channel.send(m(0))
      for (let i = 1; i <= 24; i++) {
        const until = performance.now() + 0.6
        while (performance.now() < until) {
          // busy
        }
        yield* channel.send(m(i))
      }
      // looked at on the 8th send (the clock starts), the 16th (8 sends took over 0.5 ms: every 4th from here),
      // the 20th (every 2nd), the 22nd (every send): each look past maxBurstDelay writes the burst out
      assert.deepStrictEqual(state.flushes.slice(0, 4), [1, 17, 21, 23])
    }))

  it.live("a large message counts as several sends between looks at the clock (one more per 16 KiB)", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxBurstDelay: "1 millis" }, open)
      yield* channel.send(large(1))
      // 128 KiB count as 9 sends: the clock starts at the burst's second message
      yield* channel.send(large(2))
      const until = performance.now() + 3
      while (performance.now() < until) {
        // busy
      }
      yield* channel.send(large(3))
      assert.deepStrictEqual(state.flushes, [1, 3])
    }))

  it.live("a fast burst reads the clock every 16 sends, not every 8", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxBurstDelay: "10 seconds" }, open)
      const reads = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const counter = { reads: 0 }
          const now = performance.now
          performance.now = () => {
            counter.reads++
            return now.call(performance)
          }
          return { counter, now }
        }),
        ({ now }) => Effect.sync(() => void (performance.now = now))
      )
      for (let i = 0; i <= 300; i++) yield* channel.send(m(i))
      // looked at on the 8th send after the first (the clock starts), the 16th, then every 16th (32nd ... 288th)
      assert.strictEqual(reads.counter.reads, 19)
      assert.deepStrictEqual(state.flushes, [1])
    }).pipe(Effect.scoped))

  it.live("a fast burst that turns slow is written out within 16 of its slow sends", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxBurstDelay: "1 millis" }, open)
      // fast: the stride grows to its largest
      for (let i = 0; i <= 300; i++) yield* channel.send(m(i))
      const before = state.flushes.length
      // then every send comes 0.6 ms after the one before: the peer waits for the burst's start no more than 16
      // of them (a stride of 64 left it up to 64)
      for (let i = 1; i <= 17; i++) {
        const until = performance.now() + 0.6
        while (performance.now() < until) {
          // busy
        }
        yield* channel.send(m(300 + i))
      }
      assert.isAbove(state.flushes.length, before, `flushes: ${state.flushes.join(", ")}`)
    }))

  it.live("a burst shorter than maxBurstDelay is written once after its first message", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxBurstDelay: "10 seconds" }, open)
      for (let i = 1; i <= 64; i++) yield* channel.send(m(i))
      assert.deepStrictEqual(state.flushes, [1])
      yield* Effect.promise(() => Promise.resolve())
      assert.deepStrictEqual(state.flushes, [1, 64])
    }))

  it.live("sendAll: a batch that starts a burst is written out once, as it ends; one inside a burst joins it", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxBurstDelay: "10 seconds" }, open)
      yield* channel.sendAll!([m(1), m(2), m(3)])
      assert.deepStrictEqual(state.written, [1, 2, 3])
      assert.deepStrictEqual(state.flushes, [3])
      yield* channel.send(m(4))
      yield* channel.sendAll!([m(5), m(6)])
      assert.deepStrictEqual(state.flushes, [3])
      yield* Effect.promise(() => Promise.resolve())
      assert.deepStrictEqual(state.flushes, [3, 6])
      yield* channel.sendAll!([])
      assert.deepStrictEqual(state.written, [1, 2, 3, 4, 5, 6])
    }))

  it.live("sendAll: a long batch lets the event loop run between its parts", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", highWaterMark: Infinity }, open)
      let writtenWhenTimerRan: number | undefined
      setImmediate(() => {
        writtenWhenTimerRan = state.written.length
      })
      yield* channel.sendAll!(Array.from({ length: 10_000 }, (_, i) => m(i & 0xff)))
      assert.strictEqual(state.written.length, 10_000)
      assert.isDefined(writtenWhenTimerRan)
      assert.isBelow(writtenWhenTimerRan!, 10_000)
    }))

  it.live("sendAll: past the high-water mark it writes out, waits, and goes on once the link drains", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", highWaterMark: 2 }, open)
      const batch = yield* Effect.forkChild(channel.sendAll!([m(1), m(2), m(3), m(4), m(5)]), {
        startImmediately: true
      })
      assert.isFalse(yield* isDone(batch))
      // stopped after the message that passed the mark, all of it written out
      assert.deepStrictEqual(state.written, [1, 2, 3])
      assert.deepStrictEqual(state.flushes.at(0), 3)
      state.pending = 0
      state.sink.writable()
      yield* Fiber.join(batch)
      assert.deepStrictEqual(state.written, [1, 2, 3, 4, 5])
    }))

  it.live("sendAll: a message over the limit fails the batch after those before it; a closed channel sends none", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxMessageSize: 4 }, open)
      const error = yield* Effect.flip(channel.sendAll!([m(1), new Uint8Array(5), m(2)]))
      assert.strictEqual(error.reason._tag, "FrameTooLarge")
      assert.deepStrictEqual(state.written, [1])
      assert.deepStrictEqual(state.flushes, [1])
      yield* channel.close
      const closed = yield* Effect.flip(channel.sendAll!([m(3)]))
      assert.strictEqual(closed.reason._tag, "Closed")
      assert.deepStrictEqual(state.written, [1])
    }))

  it.live("IpcChannel.sendAll uses a channel's own sendAll only with the send it was made for", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a" }, open)
      // a wrapper that replaces send (here: prefixes each message) keeps the engine's sendAll from the spread
      const wrapped: IpcChannel.IpcChannel = {
        ...channel,
        send: (message) => channel.send(new Uint8Array([0xee, ...message]))
      }
      yield* IpcChannel.sendAll(wrapped, [m(1), m(2)])
      assert.deepStrictEqual(state.written, [0xee, 0xee])
      // the engine's own pair, and a wrapper that pairs its own
      yield* IpcChannel.sendAll(channel, [m(3)])
      let batches = 0
      const counting: IpcChannel.IpcChannel = {
        ...channel,
        sendAll: IpcChannel.pairSendAll(channel.send, (messages) => {
          batches++
          return channel.sendAll!(messages)
        })
      }
      yield* IpcChannel.sendAll(counting, [m(4), m(5)])
      assert.strictEqual(batches, 1)
      assert.deepStrictEqual(state.written, [0xee, 0xee, 3, 4, 5])
    }))

  it.live("a link that fails as it writes: send and sendAll fail with its error, they do not wait", () =>
    Effect.gen(function*() {
      for (const batch of [false, true]) {
        const { open, state } = testLink()
        const { channel } = ChannelEngine.make({ address: "test://a", highWaterMark: 0 }, (sink) => {
          const link = open(sink)
          return {
            ...link,
            write: (message) => {
              link.write(message)
              sink.lost(IpcError.make("ConnectionLost", "gone while writing"))
            }
          }
        })
        const error = yield* Effect.flip(
          (batch ? channel.sendAll!([m(1), m(2)]) : channel.send(m(1))).pipe(Effect.timeout("2 seconds"))
        )
        assert.strictEqual(IpcError.isIpcError(error) ? error.reason._tag : String(error), "ConnectionLost")
        assert.deepStrictEqual(state.written, [1])
      }
    }))

  it.live("close works where timers are plain numbers, as in a browser (no unref)", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a" }, open)
      const real = globalThis.setTimeout
      const numbered = ((f: () => void, ms?: number) => {
        const timer = real(f, ms)
        return Number(timer[Symbol.toPrimitive]())
      }) as unknown as typeof setTimeout
      globalThis.setTimeout = numbered
      try {
        yield* channel.close
      } finally {
        globalThis.setTimeout = real
      }
      assert.strictEqual(state.goodbyes, 1)
    }))

  it.live("rejects a message over the limit with FrameTooLarge and stays open", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxMessageSize: 4 }, open)
      const error = yield* Effect.flip(channel.send(new Uint8Array(5)))
      assert.strictEqual(error.reason._tag, "FrameTooLarge")
      yield* channel.send(m(7))
      assert.deepStrictEqual(state.written, [7])
    }))

  it.live("a message of exactly maxMessageSize is sent, alone and in a batch", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxMessageSize: 4 }, open)
      yield* channel.send(new Uint8Array(4).fill(7))
      yield* channel.sendAll!([new Uint8Array(4).fill(8), new Uint8Array(4).fill(9)])
      assert.deepStrictEqual(state.written, [7, 8, 9])
    }))

  it.live("a send waiting above the high-water mark goes on once the burst's flush has written the link out", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      // a medium that takes everything as it is flushed (a socket the kernel copies into at once): no drain follows
      const { channel } = ChannelEngine.make({ address: "test://a", highWaterMark: 4 }, (sink) => {
        const link = open(sink)
        return {
          ...link,
          flush: () => {
            link.flush!()
            state.pending = 0
          }
        }
      })
      // the second send of the turn waits for the burst's flush (in a microtask), which leaves the link empty
      const sends = yield* Effect.forkChild(
        Effect.andThen(channel.send(new Uint8Array(8).fill(1)), channel.send(new Uint8Array(8).fill(2))),
        { startImmediately: true }
      )
      yield* Fiber.join(sends).pipe(Effect.timeout("2 seconds"))
      assert.deepStrictEqual(state.written, [1, 2])
    }))

  it.live("once the goodbye has left, a peer that never answers is let go of after another lingerTimeout", () =>
    Effect.gen(function*() {
      const { open, state } = testLink({ answerGoodbye: false })
      // the goodbye leaves at once, and the peer stays silent: no `closed` from the link
      const { channel } = ChannelEngine.make({ address: "test://a", lingerTimeout: "100 millis" }, (sink) => {
        const link = open(sink)
        return {
          ...link,
          goodbye: (sent) => {
            link.goodbye(sent)
            sent()
          }
        }
      })
      yield* channel.close
      yield* channel.closed.pipe(Effect.timeout("2 seconds"))
      assert.strictEqual(state.destroys, 1)
    }))

  it.live("close: one goodbye, sends fail Closed, the link is destroyed once, closed completes", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a" }, open)
      state.sink.message(m(1))
      yield* channel.close
      yield* channel.close
      assert.strictEqual(state.goodbyes, 1)
      assert.strictEqual(state.destroys, 1)
      yield* channel.closed
      assert.strictEqual((yield* Effect.flip(channel.send(m(2)))).reason._tag, "Closed")
      // our own close drops what was not read
      assert.strictEqual((yield* Effect.flip(channel.receive)).reason._tag, "Closed")
      // late calls from the link are ignored
      state.sink.lost(IpcError.make("ConnectionLost", "late"))
      state.sink.closed()
      assert.strictEqual(state.destroys, 1)
    }))

  it.live("the peer's goodbye: what it sent is read first, then Closed; the engine answers once", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a" }, open)
      state.sink.message(m(1))
      state.sink.message(m(2))
      state.sink.peerClosed()
      state.sink.peerClosed()
      assert.strictEqual(state.goodbyes, 1)
      const all = yield* Stream.runCollect(channel.messages)
      assert.deepStrictEqual(all.map((b) => b[0]), [1, 2])
      assert.strictEqual((yield* Effect.flip(channel.receive)).reason._tag, "Closed")
      assert.strictEqual((yield* Effect.flip(channel.send(m(3)))).reason._tag, "Closed")
      yield* channel.closed
      assert.strictEqual(state.destroys, 1)
    }))

  // closing wakes a waiting receiver at once; a receiver that closes on its way out (Effect.ensuring) closes
  // inside the first close: still one goodbye, and no linger timer left behind
  it.live("a close that wakes a receiver which closes too says goodbye once and leaves no timer", () =>
    Effect.gen(function*() {
      for (const answerGoodbye of [true, false]) {
        const { open, state } = testLink({ answerGoodbye })
        const { channel } = ChannelEngine.make({ address: "test://a", lingerTimeout: "1 hour" }, open)
        const timersBefore = process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length
        const receiver = yield* Effect.forkChild(Effect.ensuring(Effect.ignore(channel.receive), channel.close), {
          startImmediately: true
        })
        yield* Effect.forkChild(channel.close, { startImmediately: true })
        assert.strictEqual(state.goodbyes, 1, `answerGoodbye ${answerGoodbye}`)
        if (!answerGoodbye) {
          // the goodbye leaves: both closes return, and the one linger timer goes with them
          state.sink.closed()
        }
        yield* Fiber.join(receiver)
        yield* channel.closed
        const timersAfter = process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length
        assert.isAtMost(timersAfter, timersBefore, `answerGoodbye ${answerGoodbye}: a linger timer was left`)
      }
    }))

  // the peer's goodbye ends our input: a receiver woken by it that answers must be told the peer is gone,
  // not see its message accepted and then dropped by a peer that reads no more
  it.live("a receiver woken by the peer's goodbye cannot send: Closed, by the peer", () =>
    Effect.gen(function*() {
      const { open, state } = testLink({ answerGoodbye: false })
      const { channel } = ChannelEngine.make({ address: "test://a" }, open)
      const answered = yield* Effect.forkChild(
        Effect.flatMap(Effect.flip(channel.receive), () => Effect.flip(channel.send(m(9)))),
        { startImmediately: true }
      )
      state.sink.peerClosed()
      const error = yield* Fiber.join(answered)
      assert.strictEqual(error.reason._tag, "Closed")
      assert.match(error.message, /by its peer/)
      assert.deepStrictEqual(state.written, [], "nothing was queued after the peer's goodbye")
      assert.strictEqual(state.goodbyes, 1)
    }))

  // a full inbox pauses the medium; our close resumes it (to drop what is left), and a medium may hand over the
  // peer's goodbye inside that (in-memory: the peer's sender that waited on our inbox goes on, and closes): it meets
  // our close, it does not start one
  it.live("a close that resumes a paused medium, which hands over the peer's goodbye at once, is still our close", () =>
    Effect.gen(function*() {
      const { open, state } = testLink({
        answerGoodbye: false,
        onResume: (sink) => {
          sink.message(m(3))
          sink.peerClosed()
        }
      })
      const { channel } = ChannelEngine.make({ address: "test://a", maxBufferedMessages: 2 }, open)
      state.sink.message(m(1))
      assert.isFalse(state.sink.message(m(2)), "the inbox is full: the medium pauses")
      const closing = yield* Effect.forkChild(channel.close, { startImmediately: true })
      assert.strictEqual(state.resumes, 1, "the close resumed the medium")
      const error = yield* Effect.flip(channel.send(m(9)))
      assert.strictEqual(error.reason._tag, "Closed")
      // not "closed by its peer": the user closed it
      assert.match(error.message, /the channel is closed/)
      assert.strictEqual(state.goodbyes, 1)
      state.sink.closed()
      yield* Fiber.join(closing)
      assert.match((yield* Effect.flip(channel.receive)).message, /the channel is closed/)
    }))

  // the same over the in-memory transport, where it happens
  it.live("over memory://: the peer's sender, freed by our close, closes inside it: sends say the channel is closed", () =>
    Effect.gen(function*() {
      const transport = Memory.make({ maxBufferedMessages: 2 })
      const address = `memory://engine-close-${process.pid}`
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      const producer = yield* Effect.forkChild(
        Effect.andThen(Effect.forEach([1, 2, 3], (n) => server.send(m(n))), server.close),
        { startImmediately: true }
      )
      // the third send waits on the client's full inbox
      yield* Effect.sleep("20 millis")
      assert.isUndefined(producer.pollUnsafe(), "the server's third send waits")
      const closing = yield* Effect.forkChild(IpcChannel.closeChecked(client), { startImmediately: true })
      const error = yield* Effect.flip(client.send(m(9)))
      assert.strictEqual(error.reason._tag, "Closed")
      assert.match(error.message, /the channel is closed/)
      yield* Fiber.join(closing)
      yield* Fiber.join(producer)
    }).pipe(Effect.scoped))

  // a link that ends with no goodbye either way while our close resumes it is lost, as at any other time
  it.live("a link that ends without a goodbye inside our close's resume: closeChecked fails ConnectionLost", () =>
    Effect.gen(function*() {
      const { open, state } = testLink({ answerGoodbye: false, onResume: (sink) => sink.closed() })
      const { channel } = ChannelEngine.make({ address: "test://a", maxBufferedMessages: 1 }, open)
      assert.isFalse(state.sink.message(m(1)))
      const error = yield* Effect.flip(IpcChannel.closeChecked(channel))
      assert.strictEqual(error.reason._tag, "ConnectionLost", error.message)
      assert.strictEqual(state.goodbyes, 0, "nothing to say it on")
    }))

  it.live("a lost link: what arrived is delivered, then the error; sends fail with it", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a" }, open)
      state.sink.message(m(1))
      state.sink.lost(IpcError.make("ConnectionLost", "gone"))
      assert.deepStrictEqual([...(yield* channel.receive)], [1])
      assert.strictEqual((yield* Effect.flip(channel.receive)).reason._tag, "ConnectionLost")
      assert.strictEqual((yield* Effect.flip(channel.send(m(2)))).reason._tag, "ConnectionLost")
      yield* channel.closed
      assert.strictEqual(state.destroys, 1)
      yield* channel.close
      assert.strictEqual(state.goodbyes, 0)
    }))

  it.live("a link that closes without any goodbye is a lost peer", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a" }, open)
      state.sink.closed()
      assert.strictEqual((yield* Effect.flip(channel.receive)).reason._tag, "ConnectionLost")
    }))

  it.live("back-pressure: send waits above the high-water mark and goes on once the link drains", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", highWaterMark: 2 }, open)
      yield* channel.send(m(1))
      yield* channel.send(m(2))
      const third = yield* Effect.forkChild(channel.send(m(3)), { startImmediately: true })
      assert.isFalse(yield* isDone(third))
      // the medium has not taken anything yet: still waiting
      state.sink.writable()
      assert.isFalse(yield* isDone(third))
      state.pending = 0
      state.sink.writable()
      yield* Fiber.join(third)
      assert.deepStrictEqual(state.written, [1, 2, 3])
    }))

  it.live("pending senders fail with Closed when the channel closes, and with the failure when it fails", () =>
    Effect.gen(function*() {
      for (const end of ["close", "lost"] as const) {
        // the goodbye stays unanswered: the waiting sender must not wait for the end of the linger
        const { open, state } = testLink({ answerGoodbye: false })
        const { channel } = ChannelEngine.make(
          { address: "test://a", highWaterMark: 0, lingerTimeout: "1 minute" },
          open
        )
        const waiting = yield* Effect.forkChild(channel.send(m(1)), { startImmediately: true })
        assert.isFalse(yield* isDone(waiting))
        if (end === "close") yield* Effect.forkChild(channel.close, { startImmediately: true })
        else state.sink.lost(IpcError.make("ConnectionLost", "gone"))
        const error = yield* Effect.flip(Fiber.join(waiting))
        assert.strictEqual(error.reason._tag, end === "close" ? "Closed" : "ConnectionLost")
      }
    }))

  it.live("a send waiting longer than writeTimeout drops the peer with Timeout", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make(
        { address: "test://a", highWaterMark: 0, writeTimeout: "50 millis" },
        open
      )
      const error = yield* Effect.flip(channel.send(m(1)))
      assert.strictEqual(error.reason._tag, "Timeout")
      assert.strictEqual((yield* Effect.flip(channel.receive)).reason._tag, "Timeout")
      yield* channel.closed
      assert.strictEqual(state.destroys, 1)
    }))

  it.live("close gives up on a goodbye that never leaves after lingerTimeout, and lets go of the link", () =>
    Effect.gen(function*() {
      const { open, state } = testLink({ answerGoodbye: false })
      const { channel } = ChannelEngine.make({ address: "test://a", lingerTimeout: "50 millis" }, open)
      yield* Effect.all([channel.close, channel.close], { concurrency: "unbounded" })
      assert.strictEqual(state.goodbyes, 1)
      assert.strictEqual(state.destroys, 1)
      yield* channel.closed
    }))

  it.live("a close that gives up with messages still queued says so in a warning (the peer sees ConnectionLost)", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        lines.push(`${logLevel} ${Array.isArray(message) ? message.map(String).join(" ") : String(message)}`)
      })
      const quiet = testLink()
      const given = ChannelEngine.make({ address: "test://a", lingerTimeout: "50 millis" }, quiet.open)
      yield* given.channel.close.pipe(Effect.provide(Logger.layer([logger])))
      assert.deepStrictEqual(lines, [], "a goodbye that left: nothing to say")
      // the medium takes nothing: 3 bytes and the goodbye stay queued
      const { open, state } = testLink({ answerGoodbye: false })
      const { channel } = ChannelEngine.make({ address: "test://b", lingerTimeout: "50 millis" }, open)
      yield* channel.send(new Uint8Array(3))
      yield* Effect.all([channel.close, channel.close], { concurrency: "unbounded" }).pipe(
        Effect.provide(Logger.layer([logger]))
      )
      assert.strictEqual(state.destroys, 1)
      assert.strictEqual(lines.length, 1, lines.join("\n"))
      assert.match(lines[0]!, /^Warn .*gave up.*3 bytes.*ConnectionLost/)
    }))

  it.live("heartbeats: pings while idle, fails with Timeout when the peer stays silent", () =>
    Effect.gen(function*() {
      const { open, state } = testLink({ ping: true })
      const { channel } = ChannelEngine.make(
        { address: "test://a", heartbeat: { interval: "10 millis", timeout: "1 second" } },
        open
      )
      // a peer that answers keeps the channel (a timeout far above the answers' 5 ms: a worker
      // descheduled for a while on a loaded machine must not look like a silent peer)
      const answering = yield* Effect.forkChild(
        Effect.forever(Effect.andThen(Effect.sleep("5 millis"), Effect.sync(() => state.sink.heard())))
      )
      yield* Effect.sleep("200 millis")
      assert.isFalse(yield* isDone(yield* Effect.forkChild(channel.closed, { startImmediately: true })))
      assert.isAbove(state.pings, 0)
      yield* Fiber.interrupt(answering)
      const error = yield* Effect.flip(channel.receive)
      assert.strictEqual(error.reason._tag, "Timeout")
      assert.strictEqual(state.destroys, 1)
    }))

  it.live("a link whose writes are Effects: send waits for the write; closing aborts it with Closed", () =>
    Effect.gen(function*() {
      let sink: ChannelEngine.Sink | undefined
      const written = yield* Deferred.make<void>()
      const { channel } = ChannelEngine.make({ address: "test://a" }, (s) => {
        sink = s
        return {
          write: (message) =>
            message[0] === 1 ? Deferred.succeed(written, undefined) : Effect.andThen(s.aborted, Effect.void),
          pending: () => 0,
          resume: () => {},
          goodbye: (sent) => {
            sent()
            s.closed()
          },
          destroy: () => {}
        }
      })
      assert.isDefined(sink)
      yield* channel.send(m(1))
      assert.isTrue(yield* Deferred.isDone(written))
      const stuck = yield* Effect.forkChild(channel.send(m(2)), { startImmediately: true })
      assert.isFalse(yield* isDone(stuck))
      yield* channel.close
      assert.strictEqual((yield* Effect.flip(Fiber.join(stuck))).reason._tag, "Closed")
    }))

  it.live("the inbox pauses the link when full and resumes it once drained", () =>
    Effect.gen(function*() {
      const { open, state } = testLink()
      const { channel } = ChannelEngine.make({ address: "test://a", maxBufferedMessages: 2 }, open)
      assert.isTrue(state.sink.message(m(1)))
      assert.isFalse(state.sink.message(m(2)))
      assert.strictEqual(state.resumes, 0)
      yield* channel.receiveAll
      // asked once the receiver has gone on with its messages, a microtask later (see Inbox.test.ts)
      yield* Effect.yieldNow
      assert.strictEqual(state.resumes, 1)
    }))
})
