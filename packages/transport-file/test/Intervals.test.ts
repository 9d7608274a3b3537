/**
 * `watch: "poll"`, `pollInterval` and `livenessInterval` change what a reader sees, not only when (README, Wake-up:
 * "a 250 ms liveness check also notices a dead peer and reads anything a lost notification left"; "`watch: "poll"`
 * with a `pollInterval`"). Two channels side by side, each with an echo in another process: one reads on a short
 * period, the other on an hour's. Counted in round trips: while the short one completes 20, each waiting for the
 * period, the long one receives nothing (with both at one period it would receive as many).
 */
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import { FileChannel } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { fresh, node, tempRoot } from "./helpers.ts"

const root = tempRoot("intervals")
const encoder = new TextEncoder()
const decoder = new TextDecoder()
const ROUNDS = 20

/**
 * A backend with `options` in a fresh directory, its frontend an echo in another process. With `echoFirst`, the
 * echo opens first: the backend sees it at its open, not only at a liveness check (a session that comes and dies
 * between two checks without a word is never seen, so never lost).
 */
const echoed = (options: FileChannel.FileChannelOptions, echoFirst = false) =>
  Effect.gen(function*() {
    const dir = fresh(root)
    const early = echoFirst ? yield* node(["echo", dir, "frontend"]) : undefined
    if (early !== undefined) yield* early.waitFor((line) => line === "open")
    const backend = yield* FileChannel.backend(dir, options)
    const echo = early ?? (yield* node(["echo", dir, "frontend"]))
    if (early === undefined) yield* echo.waitFor((line) => line === "open")
    return { backend, echo }
  })

/**
 * Sends round `i` on both channels; waits for the echo on `quick` only. Returns how many echoes `slow` had
 * received (a reader in its own fiber) once `quick` finished every round.
 */
const race = (quick: IpcChannel.IpcChannel, slow: IpcChannel.IpcChannel) =>
  Effect.gen(function*() {
    let slowGot = 0
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(slow.receive, Effect.sync(() => slowGot++))))
    for (let i = 0; i < ROUNDS; i++) {
      yield* slow.send(encoder.encode(`r${i}`))
      yield* quick.send(encoder.encode(`r${i}`))
      assert.strictEqual(decoder.decode(yield* quick.receive), `r${i}`)
    }
    return slowGot
  })

describe("file:// reading periods", () => {
  it.live(
    "watch: poll reads on pollInterval alone: an hour's period receives nothing while 5 ms completes 20 round trips",
    () =>
      Effect.gen(function*() {
        // the liveness check reads too: an hour's, so that only the poll reads
        const quick = yield* echoed({ watch: "poll", pollInterval: "5 millis", livenessInterval: "1 hour" })
        const slow = yield* echoed({ watch: "poll", pollInterval: "1 hour", livenessInterval: "1 hour" })
        assert.strictEqual(yield* race(quick.backend, slow.backend), 0, "echoes read by the hour's poll")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "the liveness check reads what no wake-up announced: an hour's receives nothing while 20 ms completes 20 round trips",
    () =>
      Effect.gen(function*() {
        // polling an hour: only the liveness check reads
        const quick = yield* echoed({ watch: "poll", pollInterval: "1 hour", livenessInterval: "20 millis" })
        const slow = yield* echoed({ watch: "poll", pollInterval: "1 hour", livenessInterval: "1 hour" })
        assert.strictEqual(yield* race(quick.backend, slow.backend), 0, "echoes read by the hour's liveness check")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "livenessInterval is how a killed peer is noticed: ConnectionLost with 20 ms, none with an hour's while the other is told",
    () =>
      Effect.gen(function*() {
        const quick = yield* echoed({ livenessInterval: "20 millis" }, true)
        const slow = yield* echoed({ livenessInterval: "1 hour" }, true)
        const slowEnd = yield* Effect.forkScoped(Effect.flip(slow.backend.receive))
        yield* slow.echo.signal("SIGKILL")
        yield* slow.echo.exit
        yield* quick.echo.signal("SIGKILL")
        yield* quick.echo.exit
        const lost = yield* Effect.flip(quick.backend.receive).pipe(
          Effect.timeoutOrElse({
            duration: "20 seconds",
            orElse: () => Effect.succeed(IpcError.make("Timeout", "the loss was never reported"))
          })
        )
        assert.strictEqual(lost.reason._tag, "ConnectionLost", lost.message)
        // and 20 round trips more on a new quick channel (each waiting for its poll): the hour's still waits
        const again = yield* echoed({ watch: "poll", pollInterval: "20 millis", livenessInterval: "1 hour" })
        for (let i = 0; i < ROUNDS; i++) {
          yield* again.backend.send(encoder.encode(`r${i}`))
          assert.strictEqual(decoder.decode(yield* again.backend.receive), `r${i}`)
        }
        assert.isUndefined(slowEnd.pollUnsafe(), "the hour's liveness check noticed the kill")
        yield* Fiber.interrupt(slowEnd)
      }).pipe(Effect.scoped),
    60_000
  )
})
