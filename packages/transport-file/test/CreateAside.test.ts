/**
 * A stream is built in a directory made beside it (`<dir>.<hex>.tmp`) and renamed into place. A user who may
 * rename entries beside it (a directory of theirs on the path, or one writable by all and not sticky) can rename
 * the directory made away and one of root's beside it (no write permission on it needed) in its place. What root
 * builds must not land in that directory, it must not be renamed into the stream's place, nor removed with all it
 * holds when the build fails. The swap is played right after a step of the build by wrapping `node:fs`'s
 * `mkdirSync` (or just before its rename into place, by wrapping `renameSync`): the rename is the one another user would make.
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import { Log } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Result from "effect/Result"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { vi } from "vitest"
import { fresh, tempRoot } from "./helpers.ts"

/** What runs right after `mkdirSync` makes a directory, or before `renameSync` renames one (unset: nothing): once, when it returns true. */
const hooks = vi.hoisted(() => ({
  afterMkdir: undefined as ((made: string) => boolean) | undefined,
  beforeRename: undefined as ((from: string) => boolean) | undefined,
  // `/proc/self/fd/N` is not there (no /proc mounted; macOS has none): its directory is reached by path
  noProcFd: false
}))

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>()
  const mkdirSync = ((path: string, options?: unknown) => {
    const made = actual.mkdirSync(path, options as never)
    const hook = hooks.afterMkdir
    // unset while it runs (its own calls are not hooked), and after, once it has acted
    hooks.afterMkdir = undefined
    if (hook !== undefined && !hook(String(path))) hooks.afterMkdir = hook
    return made
  }) as typeof actual.mkdirSync
  const renameSync = ((from: string, to: string) => {
    const hook = hooks.beforeRename
    hooks.beforeRename = undefined
    if (hook !== undefined && !hook(String(from))) hooks.beforeRename = hook
    return actual.renameSync(from, to)
  }) as typeof actual.renameSync
  const statSync = ((path: string, options?: unknown) => {
    if (hooks.noProcFd && String(path).startsWith("/proc/self/fd/")) {
      throw Object.assign(new Error(`ENOENT: no such file or directory, stat '${path}'`), { code: "ENOENT" })
    }
    return actual.statSync(path, options as never)
  }) as typeof actual.statSync
  return {
    ...actual,
    default: { ...actual, mkdirSync, renameSync, statSync },
    mkdirSync,
    renameSync,
    statSync
  }
})

const root = tempRoot("aside")

/** A directory of root's beside the stream, holding a file, and the stream's path in the same folder. */
const setup = () => {
  const folder = fresh(root, "shared")
  Fs.mkdirSync(folder, { mode: 0o700 })
  const important = Path.join(folder, "important")
  Fs.mkdirSync(important, { mode: 0o755 })
  Fs.chmodSync(important, 0o755)
  Fs.writeFileSync(Path.join(important, "data"), "precious")
  return { folder, important, stream: Path.join(folder, "stream") }
}

/** Renames the building directory in `folder` away and `important` in its place; its name. */
const swap = (folder: string, important: string): string => {
  const building = Fs.readdirSync(folder).find((name) => name.endsWith(".tmp"))
  assert.isDefined(building, "no building directory to swap")
  const at = Path.join(folder, building!)
  Fs.renameSync(at, Path.join(folder, "theirs"))
  Fs.renameSync(important, at)
  return at
}

/** The directory of root's is as it was (wherever it was renamed to): only its file, its mode unchanged. */
const untouched = (at: string) => {
  assert.deepStrictEqual(Fs.readdirSync(at), ["data"])
  assert.strictEqual(Fs.readFileSync(Path.join(at, "data"), "utf8"), "precious")
  assert.strictEqual(Fs.statSync(at).mode & 0o777, 0o755)
}

/** The create was refused: `PermissionDenied` (the directory was replaced). */
const refused = (result: Result.Result<void, IpcError.IpcError>) => {
  assert.strictEqual(result._tag, "Failure", "the create was not refused")
  if (result._tag === "Failure") {
    assert.strictEqual(result.failure.reason._tag, "PermissionDenied", result.failure.message)
  }
}

describe("Log.create against a directory swapped in as the stream is built", () => {
  it.effect("swapped right after the building directory is made: refused, the one swapped in neither filled nor moved", () =>
    Effect.gen(function*() {
      const { folder, important, stream } = setup()
      let swappedTo: string | undefined
      hooks.afterMkdir = (made) => {
        if (!made.endsWith(".tmp")) return false
        swappedTo = swap(folder, important)
        return true
      }
      const result = yield* Effect.result(Log.create(stream, { readers: ["b"] }))
      hooks.afterMkdir = undefined
      assert.isDefined(swappedTo)
      assert.isFalse(Fs.existsSync(stream), "a stream was made of the directory swapped in")
      untouched(swappedTo!)
      refused(result)
    }))

  it.effect("swapped after its first entry is made: refused, the one swapped in kept whole, not removed", () =>
    Effect.gen(function*() {
      const { folder, important, stream } = setup()
      let swappedTo: string | undefined
      hooks.afterMkdir = (made) => {
        if (Path.basename(made) !== "readers") return false
        swappedTo = swap(folder, important)
        return true
      }
      const result = yield* Effect.result(Log.create(stream, { readers: ["b"] }))
      hooks.afterMkdir = undefined
      assert.isDefined(swappedTo)
      assert.isTrue(Fs.existsSync(swappedTo!), "the directory swapped in was removed with what it held")
      assert.isFalse(Fs.existsSync(stream))
      untouched(swappedTo!)
      refused(result)
      // what was built in the directory made (renamed away) was removed through its descriptor
      assert.deepStrictEqual(Fs.readdirSync(Path.join(folder, "theirs")), [])
    }))

  it.effect("swapped just before the rename into place: refused, what was built removed, nothing used as the stream", () =>
    Effect.gen(function*() {
      const { folder, important, stream } = setup()
      hooks.beforeRename = (from) => {
        if (!from.endsWith(".tmp") || Path.dirname(from) !== folder) return false
        swap(folder, important)
        return true
      }
      const result = yield* Effect.result(Log.create(stream, { readers: ["b"] }))
      hooks.beforeRename = undefined
      // root's directory was renamed to the stream's place by the rename (after the last look): moved, not changed
      untouched(stream)
      assert.deepStrictEqual(Fs.readdirSync(Path.join(folder, "theirs")), [])
      refused(result)
    }))

  it.effect("undisturbed: the stream is made and nothing is left beside it", () =>
    Effect.gen(function*() {
      const { folder, stream } = setup()
      yield* Log.create(stream, { readers: ["b"] })
      assert.deepStrictEqual(Fs.readdirSync(folder).toSorted(), ["important", "stream"])
      assert.deepStrictEqual(Fs.readdirSync(Path.join(stream, "readers")), ["b.cursor"])
    }))

  // with no /proc/self/fd the descriptor of the directory made was closed before its mode was set: the stream's
  // directory kept the umask's mode (0700 under umask 077, for a dirMode of 0750 that shares it with the group)
  it.effect("with no /proc/self/fd: the stream's directory has its dirMode exactly, whatever the umask", () =>
    Effect.gen(function*() {
      const { folder, stream } = setup()
      hooks.noProcFd = true
      const umask = process.umask(0o077)
      const result = yield* Effect.result(Log.create(stream, { readers: ["b"], dirMode: 0o750, fileMode: 0o640 }))
      process.umask(umask)
      hooks.noProcFd = false
      assert.strictEqual(result._tag, "Success")
      assert.strictEqual((Fs.statSync(stream).mode & 0o777).toString(8), "750")
      assert.deepStrictEqual(Fs.readdirSync(folder).toSorted(), ["important", "stream"])
    }))
})
