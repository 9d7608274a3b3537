/**
 * The private directory of an `nng+ipc://` listener's conversations
 * (`internal/conversations.ts`) against whoever can rename entries in the
 * directory of the socket file: it is made only where no other user can (this
 * user's or root's directory, not writable by others, or sticky as /tmp); its
 * mode is set through a descriptor of what was made, never by a path another
 * user could point at something else; and on close only that same directory
 * (device and inode, not a link) is removed. A swap in the instant after
 * `mkdtemp` is played by wrapping `node:fs`'s `mkdtempSync`; the other user is
 * uid 65534 (root gives it directories).
 */
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { vi } from "vitest"

/** What runs right after `mkdtempSync` made a directory (unset: nothing). */
const hooks = vi.hoisted(() => ({ afterMkdtemp: undefined as ((made: string) => void) | undefined }))

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>()
  const mkdtempSync = ((prefix: string, options?: unknown) => {
    const made = actual.mkdtempSync(prefix, options as never) as string
    const hook = hooks.afterMkdtemp
    if (hook !== undefined && Path.basename(made).startsWith(".eipc-")) {
      hooks.afterMkdtemp = undefined
      hook(made)
    }
    return made
  }) as typeof actual.mkdtempSync
  return { ...actual, default: { ...actual, mkdtempSync }, mkdtempSync }
})

const NOBODY = 65534
const isRoot = process.getuid?.() === 0
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A fresh directory with a short path and `mode`, removed after. */
const tempDir = (mode = 0o700) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-cdir-"))
      Fs.chmodSync(dir, mode)
      return dir
    }),
    (dir) =>
      Effect.sync(() => {
        hooks.afterMkdtemp = undefined
        Fs.rmSync(dir, { recursive: true, force: true })
      })
  )

/** The names in `dir` of conversations' directories (`.eipc-...`). */
const conversationDirs = (dir: string) => Fs.readdirSync(dir).filter((name) => name.startsWith(".eipc-"))

/** A listener at `address` serves a client. */
const serves = (address: string) =>
  Effect.gen(function*() {
    const transport = NngTransport.make()
    const listener = yield* transport.listen(address)
    const client = yield* transport.dial(address)
    const server = yield* listener.accept
    yield* client.send(encoder.encode("hi"))
    assert.strictEqual(decoder.decode(yield* server.receive), "hi")
  })

/** The error that a listener at `address` fails with; an assertion error when it serves. */
const refused = (address: string) =>
  Effect.flatMap(Effect.result(Effect.scoped(serves(address))), (result) =>
    result._tag === "Failure"
      ? Effect.succeed(result.failure)
      : Effect.sync(() => assert.fail(`listen at ${address} was not refused`)))

describe("the conversations' directory of an nng+ipc:// listener", () => {
  it.live("its mode is set through a descriptor: a link swapped in right after mkdtemp is not followed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const victim = Path.join(dir, "victim")
      Fs.mkdirSync(victim)
      Fs.chmodSync(victim, 0o755)
      // as someone who may rename entries in the socket's directory could, between mkdtemp and chmod
      hooks.afterMkdtemp = (made) => {
        Fs.renameSync(made, Path.join(dir, "moved"))
        Fs.symlinkSync(victim, made)
      }
      const result = yield* Effect.result(Effect.scoped(serves(`nng+ipc://${Path.join(dir, "l.ipc")}`)))
      assert.strictEqual(Fs.statSync(victim).mode & 0o7777, 0o755, "the link's target kept its mode")
      assert.strictEqual(result._tag, "Failure", "listen failed")
      if (result._tag === "Failure") assert.include(result.failure.detail, "cannot make the conversations' directory")
      const link = conversationDirs(dir)
      assert.strictEqual(link.length, 1)
      assert.isTrue(Fs.lstatSync(Path.join(dir, link[0]!)).isSymbolicLink(), "the link is left alone")
    }).pipe(Effect.scoped))

  it.live.skipIf(!isRoot)(
    "a directory of another user swapped in right after mkdtemp: PermissionDenied, its mode kept",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir()
        hooks.afterMkdtemp = (made) => {
          Fs.renameSync(made, Path.join(dir, "moved"))
          Fs.mkdirSync(made, { mode: 0o777 })
          Fs.chmodSync(made, 0o777)
          Fs.chownSync(made, NOBODY, NOBODY)
        }
        const result = yield* Effect.result(Effect.scoped(serves(`nng+ipc://${Path.join(dir, "l.ipc")}`)))
        const theirs = conversationDirs(dir)
        assert.strictEqual(theirs.length, 1, "their directory is where it was")
        assert.strictEqual(Fs.lstatSync(Path.join(dir, theirs[0]!)).mode & 0o7777, 0o777, "its mode kept")
        assert.strictEqual(result._tag, "Failure", "listen failed")
        if (result._tag === "Failure") assert.strictEqual(result.failure.reason._tag, "PermissionDenied")
      }).pipe(Effect.scoped)
  )

  it.live("is not made where others may rename entries (0777, 0770 not sticky): listen fails PermissionDenied", () =>
    Effect.gen(function*() {
      for (const mode of [0o777, 0o770]) {
        const dir = yield* tempDir(mode)
        const error = yield* refused(`nng+ipc://${Path.join(dir, "l.ipc")}`)
        assert.strictEqual(error.reason._tag, "PermissionDenied", error.message)
        assert.include(error.detail, "lets other users rename or replace what is in it")
        assert.deepStrictEqual(Fs.readdirSync(dir), [], `${mode.toString(8)}: nothing left there`)
      }
    }).pipe(Effect.scoped))

  it.live.skipIf(!isRoot)(
    "is not made in another user's directory either (uid 65534's, 0755)",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir(0o755)
        Fs.chownSync(dir, NOBODY, NOBODY)
        const error = yield* refused(`nng+ipc://${Path.join(dir, "l.ipc")}`)
        assert.strictEqual(error.reason._tag, "PermissionDenied", error.message)
        assert.deepStrictEqual(Fs.readdirSync(dir), [])
      }).pipe(Effect.scoped)
  )

  it.live("is made in a sticky directory open to all (as /tmp), and removed on close", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir(0o1777)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* serves(`nng+ipc://${Path.join(dir, "l.ipc")}`)
        assert.strictEqual(conversationDirs(dir).length, 1)
      }))
      assert.deepStrictEqual(Fs.readdirSync(dir), [])
    }).pipe(Effect.scoped))

  it.live("on close, a directory or a link swapped in for it is left alone, with what is in it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const elsewhere = Path.join(dir, "elsewhere")
      Fs.mkdirSync(elsewhere)
      Fs.writeFileSync(Path.join(elsewhere, "keep"), "keep me")
      for (const swap of ["directory", "link"] as const) {
        const name = yield* Effect.scoped(Effect.gen(function*() {
          yield* serves(`nng+ipc://${Path.join(dir, `${swap}.ipc`)}`)
          const [made] = conversationDirs(dir)
          const path = Path.join(dir, made!)
          // our directory moved away, something else of ours in its place
          Fs.renameSync(path, Path.join(dir, `moved-${swap}`))
          if (swap === "link") {
            Fs.symlinkSync(elsewhere, path)
          } else {
            Fs.mkdirSync(path)
            Fs.writeFileSync(Path.join(path, "keep"), "keep me")
          }
          return made!
        }))
        const left = Path.join(dir, name)
        assert.isTrue(Fs.existsSync(Path.join(left, "keep")), `${swap}: what was swapped in is still there`)
        assert.strictEqual(Fs.readFileSync(Path.join(left, "keep"), "utf8"), "keep me", `${swap}: left alone`)
        assert.strictEqual(Fs.lstatSync(left).isSymbolicLink(), swap === "link")
        Fs.rmSync(left, { recursive: true })
      }
      assert.strictEqual(Fs.readFileSync(Path.join(elsewhere, "keep"), "utf8"), "keep me")
    }).pipe(Effect.scoped))
})
