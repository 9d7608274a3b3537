/**
 * Under load: 500 dials at once against one listener, in one process, so
 * that both sides run far more native asynchronous calls (listener starts,
 * socket closes) than koffi allows at once (256). Every dial succeeds or
 * fails typed, and once everything is closed the process holds the same
 * descriptors as before (counted in /proc/self/fd).
 */
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Nng from "../src/internal/nng.ts"

const fds = () => Fs.readdirSync("/proc/self/fd").length
const encoder = new TextEncoder()

/** Waits (up to `timeout` ms) until the descriptor count is at most `limit`; yields the last count. */
const settle = (limit: number, timeout = 30_000) =>
  Effect.gen(function*() {
    const until = Date.now() + timeout
    let count = fds()
    while (count > limit && Date.now() < until) {
      yield* Effect.sleep("100 millis")
      count = fds()
    }
    return count
  })

describe("nng under load", () => {
  it.live(
    "500 concurrent dials over nng+tcp: all succeed or fail typed, no descriptor left behind",
    () =>
      Effect.gen(function*() {
        yield* Nng.warmUp
        const baseline = fds()
        const results = yield* Effect.scoped(Effect.gen(function*() {
          const transport = NngTransport.make({ connectTimeout: "60 seconds", maxPendingHandshakes: 1000 })
          const listener = yield* transport.listen("nng+tcp://127.0.0.1:0")
          // every dial at once; then every channel closed at once, clients first, then servers
          const channels: Array<IpcChannel.IpcChannel> = []
          const outcomes = yield* Effect.forEach(
            Array.from({ length: 500 }, (_, i) => i),
            (i) =>
              Effect.gen(function*() {
                const client = yield* transport.dial(listener.address)
                channels.push(client)
                const server = yield* listener.accept
                channels.push(server)
                yield* client.send(encoder.encode(String(i)))
                yield* server.receive
                return "ok"
              }).pipe(
                // a typed failure is an outcome; a defect (an exception from koffi) fails the test at once
                Effect.catch((error) => Effect.succeed(error.reason._tag))
              ),
            { concurrency: "unbounded" }
          )
          yield* Effect.forEach(channels, (channel) => channel.close, { concurrency: "unbounded", discard: true })
          return outcomes
        }))
        const counts = new Map<string, number>()
        for (const outcome of results) counts.set(outcome, (counts.get(outcome) ?? 0) + 1)
        // on a loaded machine some may time out (typed)
        assert.isAbove(counts.get("ok") ?? 0, 0, JSON.stringify([...counts]))
        const after = yield* settle(baseline + 4)
        assert.isAtMost(after, baseline + 4, `descriptors: ${baseline} before, ${after} after`)
      }),
    120_000
  )
})
