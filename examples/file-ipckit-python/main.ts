/**
 * `file://` in ipckit mode with a Python backend: this program is the
 * frontend of an ipckit `FileChannel` (`Ipckit.frontend`), `backend.py` the
 * backend, and the two share nothing but a directory of JSON files in
 * ipckit's format. It waits for the backend's `ready` event, calls it (a
 * result, a string, an error response), then sends the `shutdown` event and
 * waits for the backend to exit. The directory is removed at the end.
 *
 *   node main.ts            (needs python3; `python3 backend.py DIR` also serves any ipckit frontend)
 */
import { Ipckit } from "@effect-ipc/transport-file"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Effect } from "effect"
import { ChildProcess } from "effect/process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const program = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "ipckit-example-"))),
    (made) => Effect.sync(() => Fs.rmSync(made, { recursive: true, force: true }))
  )
  const channel = yield* Ipckit.frontend(dir)
  const backend = yield* ChildProcess.make("python3", [fileURLToPath(new URL("backend.py", import.meta.url)), dir], {
    stdout: "inherit",
    stderr: "inherit"
  })

  // what the backend sends unasked arrives on `receive`
  const ready = yield* channel.receive
  console.log(`event ${ready.method} ${JSON.stringify(ready.payload)}`)

  // request waits for the response with the request's id (other messages stay queued)
  const sum = yield* channel.request("add", { a: 20, b: 22 })
  console.log(`add -> ${JSON.stringify(sum.payload)}`)
  const greeting = yield* channel.request("greet", "node")
  console.log(`greet -> ${JSON.stringify(greeting.payload)}`)
  const unknown = yield* channel.request("divide", { a: 1, b: 0 })
  console.log(`divide -> error: ${unknown.error}`)

  yield* channel.sendEvent("shutdown", null)
  console.log(`backend exited with code ${yield* backend.exitCode}`)
})

// the scope closes the channel, ends the backend if it still runs and removes the directory (Ctrl-C too)
program.pipe(Effect.scoped, Effect.provide(NodeServices.layer), NodeRuntime.runMain)
