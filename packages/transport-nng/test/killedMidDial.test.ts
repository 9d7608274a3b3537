/**
 * Dials under way as their listener (another process) is killed: each one
 * ends, typed, by its `connectTimeout`. One that found its rendezvous
 * connection gone between the connect and the send of its hello waited for
 * ever (nng's dialer reconnecting to the dead path, the send never taken).
 * The window is narrow: many dials, over a few rounds, meet it. None is
 * `PeerRejected`: a listener killed just after it answered has no credentials
 * left to read, and was taken for a peer refused for unreadable credentials.
 */
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const DIALS = 60
const ROUNDS = 4

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-kd-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

describe("a listener killed while clients dial it (nng+ipc://)", () => {
  it.live("every dial ends, with a typed error or a channel, and none is a refusal", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const transport = NngTransport.make({ connectTimeout: "2 seconds" })
      for (let round = 0; round < ROUNDS; round++) {
        const address = `nng+ipc://${Path.join(dir, `r${round}.ipc`)}`
        const server = yield* Child.node("peer.ts", ["channels", address])
        yield* server.waitFor((line) => line.startsWith("ready"))
        // killed as the dials go on
        const killing = yield* Effect.forkChild(Effect.andThen(Effect.sleep("30 millis"), server.kill))
        const ends = yield* Effect.forEach(
          Array.from({ length: DIALS }, (_, i) => i),
          (i) =>
            Effect.andThen(
              Effect.sleep(i),
              // far past connectTimeout: only a dial that never ends reaches it
              Effect.timeoutOption(Effect.result(Effect.scoped(transport.dial(address))), "20 seconds")
            ),
          { concurrency: "unbounded" }
        )
        yield* Fiber.join(killing)
        const stuck = ends.filter(Option.isNone).length
        assert.strictEqual(stuck, 0, `round ${round}: ${stuck} of ${DIALS} dials never ended`)
        const refused = ends.flatMap((end) =>
          Option.isSome(end) && Result.isFailure(end.value) && end.value.failure.reason._tag === "PeerRejected"
            ? [end.value.failure.detail]
            : []
        )
        assert.deepStrictEqual(refused, [], `round ${round}: a killed listener was taken for a refusal`)
      }
    }).pipe(Effect.scoped), 120_000)
})
