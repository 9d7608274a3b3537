/**
 * An `nng+ipc://` listener (in another process) whose conversations'
 * directory was removed while it ran (a clean-up of the temporary directory,
 * or a user's `rm -rf`): it makes the directory again and serves the next
 * clients, instead of leaving each of them waiting for its `connectTimeout`;
 * and it removes the new directory as it closes.
 */
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-rm-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** The conversations' directories in `dir`. */
const conversationDirs = (dir: string) => Fs.readdirSync(dir).filter((name) => name.startsWith(".eipc-"))

describe("the conversations' directory of an nng+ipc:// listener, removed while it runs", () => {
  it.live("is made again: the next clients get their channels, and it goes as the listener closes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // short enough for the conversations to run beside the socket file
      const address = `nng+ipc://${Path.join(dir, "s.ipc")}`
      // an echoing listener in a process of its own
      const server = yield* Child.node("peer.ts", ["channels", address])
      yield* server.waitFor((line) => line.startsWith("ready"))
      const transport = NngTransport.make({ connectTimeout: "3 seconds" })
      const before = yield* transport.dial(address)
      const [removed] = conversationDirs(dir)
      assert.isDefined(removed)
      Fs.rmSync(Path.join(dir, removed!), { recursive: true })
      for (const text of ["one", "two"]) {
        const client = yield* transport.dial(address)
        yield* client.send(encoder.encode(text))
        assert.strictEqual(decoder.decode(yield* client.receive), text)
      }
      // the channel opened before goes on
      yield* before.send(encoder.encode("before"))
      assert.strictEqual(decoder.decode(yield* before.receive), "before")
      const [made] = conversationDirs(dir)
      assert.isDefined(made)
      assert.notStrictEqual(made, removed)
      // stopped gracefully, the listener leaves nothing behind
      server.process.kill("SIGTERM")
      yield* server.exited
      assert.deepStrictEqual(Fs.readdirSync(dir), [])
    }).pipe(Effect.scoped))
})
