/**
 * A busy `Rep` (another process) and requesters that leave mid-call: nng
 * reads nothing more from a connection whose request waits in its queue, so
 * each requester that left held a descriptor of the Rep's process until its
 * request's turn came, and then its handler ran for nobody. Now requests are
 * read ahead of busy handlers and those whose requester left are dropped:
 * the descriptors come back while the handlers are still busy, and no
 * handler runs for a departed requester.
 */
import { Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const LEAVING = 40
const encoder = new TextEncoder()
const decoder = new TextDecoder()

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-rl-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** The descriptors process `pid` holds. */
const descriptors = (pid: number) => Fs.readdirSync(`/proc/${pid}/fd`).length

describe("a busy Rep and requesters that leave mid-call (ipc://)", () => {
  it.live("gives their descriptors back while busy, and runs no handler for them", () =>
    Effect.gen(function*() {
      const address = `ipc://${Path.join(yield* tempDir, "rep.ipc")}`
      // two handlers at once
      const server = yield* Child.node("peer.ts", ["rep", address, "2"])
      yield* server.waitFor((line) => line === "ready")
      const pid = server.process.pid!
      const staying = yield* Req.make({ dial: address, timeout: "30 seconds", pool: { min: 2, max: 2 } })
      const idle = descriptors(pid)
      // both handlers busy for a while (long enough for a loaded machine to do what follows first), with
      // requesters that stay
      const busy = yield* Effect.forkChild(
        Effect.forEach(["a", "b"], (id) => staying.request(encoder.encode(`sleep 10000 ${id}`)), {
          concurrency: "unbounded"
        })
      )
      yield* server.waitFor((line) => line === "handled b")
      yield* server.waitFor((line) => line === "handled a")
      // requesters that send and leave before their turn
      yield* Effect.forEach(
        Array.from({ length: LEAVING }, (_, i) => i),
        (i) =>
          Effect.scoped(Effect.gen(function*() {
            const leaving = yield* Req.make({ dial: address, timeout: "200 millis" })
            yield* Effect.ignore(leaving.request(encoder.encode(`sleep 100 left${i}`)))
          })),
        { concurrency: "unbounded" }
      )
      // the descriptors of those that left come back while both handlers are still busy
      let held = descriptors(pid)
      const settled = yield* Effect.raceFirst(
        Effect.gen(function*() {
          while ((held = descriptors(pid)) > idle + 2) yield* Effect.sleep("20 millis")
          return true
        }),
        Effect.as(Fiber.join(busy), false)
      )
      assert.isTrue(settled, `the Rep held ${held} descriptors (${idle} before) until its handlers were free`)
      yield* Fiber.join(busy)
      // asked after them all (two at a time, in order): how many requests were handled
      const handled = decoder.decode(yield* staying.request(encoder.encode("count")))
      const departed = server.lines.filter((line) => line.startsWith("handled left"))
      assert.deepStrictEqual(departed, [], "handlers ran for requesters that had left")
      assert.strictEqual(handled, "2")
    }).pipe(Effect.scoped), 60_000)
})
