/**
 * `Inspect.describe` and the lock files it names holders from. A role or
 * listener lock holds what a holder writes in it (`pid token`, a newline); a
 * lock file holding anything else (garbage, or a holder's text with more after
 * it, however much) names nobody: `describe` read a prefix of it and showed
 * the number it began with as the holder's pid.
 */
import { FileChannel, Inspect } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Layout from "../src/internal/layout.ts"
import { fresh, tempRoot } from "./helpers.ts"

const root = tempRoot("inspect")

/** What lock files hold, and the pid `describe` shows for each. */
const holders: ReadonlyArray<readonly [string, string, number | undefined]> = [
  ["a holder's text", "4242 0123456789abcdef\n", 4242],
  ["a holder's text with a longer token", "4242 lrx1k2-0123456789abcdef\n", 4242],
  ["garbage after a pid", "4242 is not a holder, just text\n", undefined],
  ["a pid and nothing else", "4242\n", undefined],
  ["binary garbage", "\u0000\u0001\u0002 4242", undefined],
  ["a pid past 2^31 - 1", "99999999999 0123456789abcdef\n", undefined],
  [
    "a holder's text followed by more than a small file holds",
    `4242 0123456789abcdef\n${" ".repeat(Layout.SMALL_FILE_MAX_BYTES * 4)}`,
    undefined
  ],
  ["a huge file beginning with a pid", `4242 ${"x".repeat(8 << 20)}\n`, undefined]
]

describe("Inspect.describe names a lock's holder only from a holder's text", () => {
  it.live(
    "a channel's role locks: the pid of a holder's text, none for garbage or a huge file",
    () =>
      Effect.gen(function*() {
        for (const [what, content, pid] of holders) {
          const dir = fresh(root, "channel")
          yield* FileChannel.create(dir)
          Fs.writeFileSync(Path.join(dir, "backend.lock"), content, { mode: 0o600 })
          const report = yield* Inspect.describe(dir)
          assert.strictEqual(report._tag, "Channel", what)
          if (report._tag !== "Channel") return
          const backend = report.channel.ends.find((end) => end.role === "backend")
          assert.strictEqual(backend?.pid, pid, what)
          assert.isFalse(backend?.open, what)
          assert.strictEqual(
            Fs.readFileSync(Path.join(dir, "backend.lock"), "utf8"),
            content,
            `${what}: kept as it was`
          )
        }
      }),
    30_000
  )

  it.live(
    "a listener's lock: the pid of a holder's text, none for garbage or a huge file",
    () =>
      Effect.gen(function*() {
        for (const [what, content, pid] of holders) {
          const dir = fresh(root, "listener")
          Fs.mkdirSync(dir, { mode: 0o700 })
          Fs.writeFileSync(
            Path.join(dir, ".effect-ipc"),
            `${JSON.stringify({ format: "effect-ipc-file", version: 1, kind: "listener" })}\n`,
            { mode: 0o600 }
          )
          Fs.writeFileSync(Path.join(dir, "listener.lock"), content, { mode: 0o600 })
          const report = yield* Inspect.describe(dir)
          assert.strictEqual(report._tag, "Listener", what)
          if (report._tag !== "Listener") return
          assert.strictEqual(report.pid, pid, what)
          assert.isFalse(report.listening, what)
        }
      }),
    30_000
  )
})
