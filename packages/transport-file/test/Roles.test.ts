/**
 * The fixed roles' entry points given what the types rule out (JavaScript, or
 * a cast, can pass anything). A role that is neither "backend" nor
 * "frontend" ("Backend", say) was taken as a third end: it took a lock of its
 * own (`Backend.lock`, so the real backend could open beside it), wrote the
 * backend's stream and registered itself as a reader of that very stream,
 * whose cursor no one ever moves, so the stream could never be reclaimed and
 * the real backend stopped once `maxBytes` was held (and `FileChannel.remove`
 * refused the directory for the strange files). A `dir` that is not a string
 * died with an untyped defect. Each is now `InvalidAddress`, as
 * `?role=bogus` in an address is, and nothing is made.
 */
import type { IpcError } from "@effect-ipc/core/IpcError"
import { FileChannel, Ipckit, Messages } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import { fresh, tempRoot } from "./helpers.ts"

const root = tempRoot("roles")

describe("the fixed roles' entry points refuse what is not a role or a directory", () => {
  it.live("a role other than backend or frontend is InvalidAddress, and nothing is made", () =>
    Effect.gen(function*() {
      for (const role of ["Backend", "bogus", "", undefined, 3]) {
        const opens: ReadonlyArray<readonly [string, (dir: string) => Effect.Effect<unknown, IpcError, Scope.Scope>]> =
          [
            ["FileChannel.open", (dir) => FileChannel.open(dir, role as never)],
            ["FileChannel.openEndpoint", (dir) => FileChannel.openEndpoint(dir, role as never)],
            ["Messages.open", (dir) => Messages.open(dir, role as never)],
            ["Ipckit.open", (dir) => Ipckit.open(dir, role as never)]
          ]
        for (const [name, open] of opens) {
          const dir = fresh(root)
          const error = yield* Effect.flip(Effect.scoped(open(dir)))
          assert.strictEqual(error.reason._tag, "InvalidAddress", `${name} ${String(role)}`)
          assert.match(error.message, /role must be backend or frontend/, name)
          assert.isFalse(Fs.existsSync(dir), `${name} ${String(role)} made ${dir}`)
        }
      }
    }))

  it.live("a dir that is not a string is InvalidAddress, for the roles and for remove", () =>
    Effect.gen(function*() {
      for (const dir of [5, null, undefined, {}]) {
        for (
          const attempt of [
            Effect.scoped(FileChannel.backend(dir as never)),
            Effect.scoped(FileChannel.frontend(dir as never)),
            Effect.scoped(Messages.open(dir as never, "backend")),
            FileChannel.remove(dir as never)
          ]
        ) {
          const error = yield* Effect.flip(attempt)
          assert.strictEqual(error.reason._tag, "InvalidAddress", String(dir))
        }
      }
    }))

  it.live("the two roles still open, and a channel made by them is removed whole", () =>
    Effect.gen(function*() {
      const dir = fresh(root)
      yield* Effect.scoped(Effect.gen(function*() {
        const backend = yield* FileChannel.open(dir, "backend")
        const frontend = yield* FileChannel.open(dir, "frontend")
        yield* backend.send(new Uint8Array([1]))
        assert.deepStrictEqual(Array.from(yield* frontend.receive), [1])
      }))
      yield* FileChannel.remove(dir)
      assert.isFalse(Fs.existsSync(dir))
    }))
})
