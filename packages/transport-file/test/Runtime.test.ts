/**
 * Work the file transport starts from the event loop (a watcher or a timer
 * noticing a corrupt record, a new connection) runs with the services of
 * whoever opened the channel or listener: a custom logger sees its lines,
 * the default logger does not print them.
 */
import { FileChannel, FileTransport, Log } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import * as Schedule from "effect/Schedule"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fresh, tempRoot } from "./helpers.ts"

const root = tempRoot("runtime")
const text = new TextDecoder()
const bytes = (s: string) => new TextEncoder().encode(s)

/** A logger that keeps every line (level and message) it is given. */
const collector = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push(`${logLevel} ${Array.isArray(message) ? message.map(String).join(" ") : String(message)}`)
  })
  /** Waits (bounded) until a line matching `pattern` has been logged. */
  const waitFor = (pattern: RegExp) =>
    Effect.suspend(() =>
      lines.some((line) => pattern.test(line))
        ? Effect.void
        : Effect.fail(`no line matches ${pattern}: ${JSON.stringify(lines)}`)
    ).pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "10 seconds" }))))
  return { lines, logger, waitFor }
}

describe("background work runs in the user's runtime", () => {
  it.live(
    "the warning about a skipped corrupt record reaches the logger of whoever opened the channel",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        yield* Effect.scoped(Effect.gen(function*() {
          const backend = yield* FileChannel.backend(dir)
          for (const m of ["alpha", "bravo", "charlie"]) yield* backend.send(bytes(m))
        }))
        const segment = Log.paths(Path.join(dir, FileChannel.streamOf("backend"))).segment(0)
        const file = Fs.readFileSync(segment)
        file[file.indexOf("bravo")] = "B".charCodeAt(0)
        Fs.writeFileSync(segment, file)

        const log = collector()
        yield* Effect.gen(function*() {
          const frontend = yield* FileChannel.frontend(dir, { onCorrupt: "skip" })
          assert.strictEqual(text.decode(yield* frontend.receive), "alpha")
          assert.strictEqual(text.decode(yield* frontend.receive), "charlie")
          yield* log.waitFor(/^Warn skipped \d+ bytes of a corrupt record/)
        }).pipe(Effect.scoped, Effect.provide(Logger.layer([log.logger])))
      }),
    30_000
  )

  it.live(
    "a peer lock that cannot be looked at is said once per spell, not passed over in silence",
    () =>
      Effect.gen(function*() {
        // liveness checks that failed were dropped without a word: a durable channel whose peer's lock was
        // replaced (here by a symlink, which the checks never follow) could never report its loss
        const dir = fresh(root)
        const log = collector()
        yield* Effect.gen(function*() {
          yield* FileChannel.backend(dir)
          const lock = Path.join(dir, "frontend.lock")
          const warning = /^Warn cannot tell whether the frontend is alive \(.*\): its loss is not reported/
          const warnings = () => log.lines.filter((line) => warning.test(line)).length
          Fs.symlinkSync("/dev/null", lock)
          yield* log.waitFor(warning)
          yield* Effect.sleep("700 millis") // about three more checks
          assert.strictEqual(warnings(), 1, JSON.stringify(log.lines))
          // looked at again (missing: a peer still to come), then replaced again: a new spell, said again
          Fs.rmSync(lock)
          yield* Effect.sleep("500 millis")
          assert.strictEqual(warnings(), 1, JSON.stringify(log.lines))
          Fs.symlinkSync("/dev/null", lock)
          yield* Effect.sleep("700 millis")
          assert.strictEqual(warnings(), 2, JSON.stringify(log.lines))
        }).pipe(Effect.scoped, Effect.provide(Logger.layer([log.logger])))
      }),
    30_000
  )

  it.live(
    "a connection the listener cannot accept is logged by the listener's logger",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const log = collector()
        // every accept fails: the listener's channels may not be that large in so small a stream
        const listener = FileTransport.make({ maxBytes: 64 * 1024, maxMessageSize: 1024 * 1024 })
        yield* Effect.gen(function*() {
          yield* listener.listen(`file://${dir}`)
          yield* FileTransport.make().dial(`file://${dir}`)
          yield* log.waitFor(/^Warn could not accept connection .*; it is left until the listener closes/)
          // a failure that does not pass (an option the stream cannot take) is not tried again on later scans
          yield* Effect.sleep("700 millis")
          const tries = log.lines.filter((line) => line.includes("could not accept connection"))
          assert.lengthOf(tries, 1, JSON.stringify(tries))
        }).pipe(
          Effect.scoped,
          Effect.provide(Logger.layer([log.logger])),
          Effect.provideService(References.MinimumLogLevel, "Debug")
        )
      }),
    30_000
  )
})
