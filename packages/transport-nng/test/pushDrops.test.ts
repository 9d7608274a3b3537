/**
 * A pusher whose connections drop while it sends keeps running. In nng 1.12.0
 * (and every release to date) a send that completes while its pipe closes put
 * the pipe back on the push socket's ready list after the close had taken it
 * off; the pipe was then freed, and the next send took it from the list: the
 * process died of SIGSEGV in `nng_send` (`push0_sock_send`, `nni_list_remove`).
 * Found as a crash of the vitest worker running `patternOptions.test.ts` in a
 * CI run (its `maxMessageSize` case drops a pusher's connection), then in
 * about 1 of 250 loaded runs of that file. The vendored libnng's patch
 * (`vendor/nng-1.12.0-close.patch`) keeps a closed pipe off the list, as
 * nng's req and pub protocols already did.
 *
 * Three processes each drop a connection a few hundred times a second for
 * 15 s (`fixtures/pushDrops.ts`). Unpatched, this test failed in each of its
 * 5 runs here (a process died of SIGSEGV, most within 4 s).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const PROCESSES = 3
const SECONDS = 15

/** A directory for one process's socket file, removed with the scope (a process that crashed cannot). */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-push-drops-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

describe("push: connections dropped while sending", () => {
  it.live(
    "a pusher whose puller drops its connection hundreds of times a second, under load, never crashes",
    () =>
      Effect.gen(function*() {
        const runs = yield* Effect.all(
          Array.from({ length: PROCESSES }, () =>
            Effect.gen(function*() {
              const dir = yield* tempDir
              const child = yield* Child.spawn(
                process.execPath,
                Child.nodeArgs("pushDrops.ts", [dir, String(SECONDS), "1"])
              )
              const code = yield* child.exited
              return { code, signal: child.process.signalCode, lines: child.lines }
            })),
          { concurrency: "unbounded" }
        )
        for (const [index, run] of runs.entries()) {
          assert.strictEqual(run.signal, null, `process ${index} died of ${run.signal}`)
          assert.strictEqual(run.code, 0, `process ${index} exited ${run.code}`)
          const counts = JSON.parse(run.lines.at(-1)!) as { pushed: number; pulled: number }
          // connections did drop (what was in flight went with them), and messages did get through
          assert.isAbove(counts.pulled, 0, `process ${index}`)
          assert.isBelow(counts.pulled, counts.pushed, `process ${index}: no connection dropped`)
        }
      }).pipe(Effect.scoped),
    60_000
  )
})
