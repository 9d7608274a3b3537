/**
 * The seed's request / response / event messages over a native file
 * channel, across processes: typed requests and error responses, events,
 * waiting for a response without dropping anything, invalid records, and
 * resuming after a restart.
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import { FileChannel, Log, Messages } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Scheduler from "effect/Scheduler"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fresh, node, tempRoot } from "./helpers.ts"

const root = tempRoot("messages")

describe("Messages", () => {
  it.effect("bad options are InvalidOption naming them on every entry point, and nothing is made", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [FileChannel.FileChannelOptions, RegExp]> = [
        [{ durability: "always" as never }, /^durability "always" is not one of os, fsync/],
        [{ whenFull: "drop" as never }, /^whenFull "drop" is not one of wait, fail/],
        [{ maxBytes: -1 }, /^maxBytes -1 is not a whole number/],
        [{ maxMessageSize: -5 }, /^maxMessageSize -5 is not a whole number/],
        [{ livenessInterval: "soon" as Duration.Input }, /^livenessInterval "soon" is not a duration/],
        [{ fullTimeout: "x" as Duration.Input }, /^fullTimeout "x" is not a duration/],
        // more than the stream can hold: it was InvalidAddress, after the directory was made
        [
          { maxBytes: 1024 * 1024, maxMessageSize: 2 * 1024 * 1024 },
          /^maxMessageSize 2097152 must leave room in maxBytes 1048576/
        ]
      ]
      type Opener = (
        dir: string,
        options: FileChannel.FileChannelOptions
      ) => Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>
      const openers: ReadonlyArray<readonly [string, Opener]> = [
        ["Messages.open", (dir, options) => Messages.open(dir, "frontend", options)],
        ["FileChannel.open", (dir, options) => FileChannel.open(dir, "frontend", options)]
      ]
      for (const [options, detail] of cases) {
        for (const [what, opening] of openers) {
          const dir = fresh(root)
          const error = yield* Effect.flip(Effect.scoped(opening(dir, options)))
          assert.strictEqual(error.reason._tag, "InvalidOption", `${what}: ${error.message}`)
          assert.match(error.detail, detail, what)
          assert.isFalse(Fs.existsSync(dir), `${what}: nothing is made`)
        }
      }
      const stream = Path.join(fresh(root), "s")
      const writer = yield* Effect.flip(Effect.scoped(Log.openWriter(stream, { whenFull: "drop" as never })))
      assert.strictEqual(writer.reason._tag, "InvalidOption")
      assert.isFalse(Fs.existsSync(stream))
    }))

  it.live(
    "requests get responses (or error responses) from another process; events arrive",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const server = yield* node(["messages-serve", dir, "backend"])
        yield* server.waitFor((l) => l === "open")
        const frontend = yield* Messages.open(dir, "frontend")
        const sum = yield* frontend.request("add", { a: 2, b: 40 }, "5 seconds")
        assert.strictEqual(sum.type, "response")
        assert.deepStrictEqual(sum.payload, { sum: 42 })
        const unknown = yield* frontend.request("divide", { a: 1, b: 0 }, "5 seconds")
        assert.strictEqual(unknown.error, "unknown method divide")
        assert.isNull(unknown.payload)
        yield* frontend.sendEvent("saved", { file: "scene.ma" })
        yield* server.waitFor((l) => l === `event saved {"file":"scene.ma"}`)
        // many at once, answered by id
        const sums = yield* Effect.forEach(
          Array.from({ length: 50 }, (_, i) => i),
          (i) =>
            Effect.map(
              frontend.request("add", { a: i, b: 1 }, "10 seconds"),
              (m) => (m.payload as { sum: number }).sum
            ),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(
          sums,
          Array.from({ length: 50 }, (_, i) => i + 1)
        )
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "waiting for a response keeps every other message, in order; an early response is found too",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* Messages.open(dir, "backend")
        const frontend = yield* Messages.open(dir, "frontend")
        const id = yield* frontend.sendRequest("work", {})
        const request = yield* backend.receive
        assert.strictEqual(request.id, id)
        yield* backend.sendEvent("progress", 1)
        yield* backend.sendEvent("progress", 2)
        yield* backend.sendResponse(id, "done")
        yield* backend.sendEvent("progress", 3)
        assert.strictEqual((yield* frontend.waitResponse(id, "5 seconds")).payload, "done")
        const events = [yield* frontend.receive, yield* frontend.receive, yield* frontend.receive]
        assert.deepStrictEqual(events.map((m) => m.payload), [1, 2, 3])
        // a response that came before anyone waited for it
        const early = yield* frontend.sendRequest("quick", {})
        yield* backend.sendResponse((yield* backend.receive).id, "fast")
        yield* Effect.sleep("50 millis")
        assert.strictEqual((yield* frontend.waitResponse(early, "5 seconds")).payload, "fast")
        const timeout = yield* Effect.flip(frontend.waitResponse("no-such-request", "50 millis"))
        assert.strictEqual(timeout.reason._tag, "Timeout")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a record that is not a message fails that one receive with Decode; the next message arrives",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const raw = yield* FileChannel.backend(dir)
        yield* raw.send(new TextEncoder().encode("not json"))
        yield* raw.send(new TextEncoder().encode(`{"id":"x","timestamp":1,"type":"nonsense","payload":null}`))
        yield* raw.send(Messages.encode(Messages.event("fine", { ok: true })) as Uint8Array)
        const frontend = yield* Messages.open(dir, "frontend")
        const first = yield* Effect.flip(frontend.receive)
        assert.strictEqual(first.reason._tag, "Decode")
        const second = yield* Effect.flip(frontend.receive)
        assert.strictEqual(second.reason._tag, "Decode")
        assert.strictEqual((yield* frontend.receive).method, "fine")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live("a restarted side resumes after what it was handed: no gaps, no repeats", () =>
    Effect.gen(function*() {
      const dir = fresh(root)
      yield* Effect.scoped(Effect.gen(function*() {
        const backend = yield* Messages.open(dir, "backend")
        for (let i = 0; i < 6; i++) yield* backend.sendEvent("n", i)
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const frontend = yield* Messages.open(dir, "frontend")
        assert.strictEqual((yield* frontend.receive).payload, 0)
        assert.strictEqual((yield* frontend.receive).payload, 1)
        assert.strictEqual((yield* frontend.receive).payload, 2)
      }))
      const again = yield* Messages.open(dir, "frontend")
      for (let i = 3; i < 6; i++) assert.strictEqual((yield* again.receive).payload, i)
    }).pipe(Effect.scoped), 30_000)

  it.live(
    "a process killed while handling a message gets that message again (at-least-once: handled once the next is asked for)",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* Messages.open(dir, "backend")
        for (let i = 0; i < 10; i++) yield* backend.sendEvent("n", i)
        // a frontend in another process that says what it handles, and hangs handling 3
        const handler = yield* node(["messages-handler", dir, "3"])
        yield* handler.waitFor((l) => l === "handled 3")
        yield* handler.signal("SIGKILL")
        yield* handler.exit
        assert.deepStrictEqual(handler.lines(), ["handled 0", "handled 1", "handled 2", "handled 3"])
        // 0..2 were handled (their next was asked for); 3 was not: it comes again, then the rest
        const again = yield* Messages.open(dir, "frontend")
        assert.strictEqual((yield* again.receive).payload, 3, "the message being handled is given again")
        for (let i = 4; i < 10; i++) assert.strictEqual((yield* again.receive).payload, i)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a response waitResponse took ahead of messages not yet received is given again after a restart, behind them (the cursor is one position)",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        yield* Effect.scoped(Effect.gen(function*() {
          const backend = yield* Messages.open(dir, "backend")
          for (let i = 0; i < 3; i++) yield* backend.sendEvent("n", i)
          yield* backend.sendResponse("req-1", "the answer")
          yield* backend.sendEvent("n", 3)
        }))
        yield* Effect.scoped(Effect.gen(function*() {
          const frontend = yield* Messages.open(dir, "frontend")
          assert.strictEqual((yield* frontend.waitResponse("req-1", "5 seconds")).payload, "the answer")
        }))
        const again = yield* Messages.open(dir, "frontend")
        const next = Effect.map(again.receive, (m) => `${m.type} ${JSON.stringify(m.payload)}`)
        const got = [yield* next, yield* next, yield* next, yield* next, yield* next]
        assert.deepStrictEqual(got, ["event 0", "event 1", "event 2", "response \"the answer\"", "event 3"])
      }).pipe(Effect.scoped),
    30_000
  )
})

describe("Messages under effect's yields", () => {
  // A fiber yields to the event loop every `MaxOpsBeforeYield` steps. A `receive` or `waitResponse`
  // that looked at the queue, yielded, and then waited, slept through what the reader queued
  // meanwhile (until the next message, or a false Timeout). Small budgets put a yield at every step.
  it.live("receive and waitResponse see what came while they yielded, at every budget", () =>
    Effect.gen(function*() {
      for (let budget = 3; budget <= 10; budget++) {
        yield* Effect.gen(function*() {
          const dir = fresh(root)
          const backend = yield* Messages.open(dir, "backend")
          const frontend = yield* Messages.open(dir, "frontend")
          for (let i = 0; i < 6; i++) {
            const id = yield* frontend.sendRequest("work", i)
            const request = yield* backend.receive
            assert.strictEqual(request.payload, i)
            yield* backend.sendEvent("progress", i)
            yield* backend.sendResponse(id, i * 2)
            assert.strictEqual((yield* frontend.waitResponse(id, "20 seconds")).payload, i * 2)
            assert.strictEqual((yield* frontend.receive).payload, i)
          }
        }).pipe(
          Effect.scoped,
          Effect.timeoutOrElse({
            duration: "8 seconds",
            orElse: () => Effect.fail(new Error(`a message went unseen with a yield every ${budget} steps`))
          }),
          Effect.provideService(Scheduler.MaxOpsBeforeYield, budget)
        )
      }
    }), 120_000)
})

/** A source of `count` events (then a response to `req-1`), one per pull, counting what was pulled. */
const counted = (count: number) => {
  let pulled = 0
  const source: Messages.Source = {
    send: () => Effect.void,
    pull: Effect.suspend(() => {
      pulled++
      const item: Messages.Message = pulled <= count
        ? { id: `e${pulled}`, timestamp: 0, type: "event", method: "tick", payload: pulled }
        : { id: `r${pulled}`, timestamp: 0, type: "response", reply_to: "req-1", payload: "the answer" }
      return Effect.succeed([{ item, token: pulled, bytes: 100 }] as const)
    }).pipe(Effect.flatMap((batch) => pulled > count + 1 ? Effect.never : Effect.succeed(batch))),
    commit: () => {}
  }
  return { source, pulled: () => pulled }
}

describe("Messages' read-ahead", () => {
  it.live(
    "reads ahead of receive only up to maxBufferedMessages / maxBufferedBytes, and on while a response is awaited",
    () =>
      Effect.gen(function*() {
        const byCount = counted(100_000)
        const channel = yield* Messages.make(byCount.source, { maxBufferedMessages: 50 })
        yield* Effect.sleep("200 millis")
        // the queue holds 50; one more pull waits for room
        assert.isAtMost(byCount.pulled(), 51, `${byCount.pulled()} messages read ahead`)
        // a waited response behind everything queued is reached: the reader reads on for it
        const answer = yield* channel.waitResponse("req-1", "20 seconds")
        assert.strictEqual(answer.payload, "the answer")
        // and every event is still there, in order
        for (let i = 1; i <= 3; i++) assert.strictEqual((yield* channel.receive).payload, i)

        const byBytes = counted(100_000)
        yield* Messages.make(byBytes.source, { maxBufferedBytes: 1000 })
        yield* Effect.sleep("200 millis")
        assert.isAtMost(byBytes.pulled(), 11, `${byBytes.pulled()} messages of 100 bytes read ahead`)
      }).pipe(Effect.scoped),
    60_000
  )
})
