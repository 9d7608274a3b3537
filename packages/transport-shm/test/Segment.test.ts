/**
 * Named segments: scoped creation and mapping, errno mapped to typed reasons,
 * bad names, and views that cannot outlive their mapping.
 */
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Libc from "../src/internal/libc.ts"
import { fdTruncate, leftovers, NOBODY } from "./helpers.ts"

const prefix = `seg-test-${process.pid}`
let n = 0
const fresh = () => `${prefix}-${n++}`

describe("Segment", () => {
  it.effect("creates exclusively with mode 0600, opens, shares memory, and removes its name on close", () =>
    Effect.gen(function*() {
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        const created = yield* Shm.Segment.create(name, 10_000)
        assert.isTrue(created.owner)
        assert.strictEqual(created.size, 10_000)
        assert.strictEqual(Fs.statSync(`/dev/shm/${name}`).mode & 0o777, 0o600)
        const taken = yield* Effect.flip(Shm.Segment.create(name, 10))
        assert.strictEqual(taken.reason._tag, "AlreadyExists")
        const opened = yield* Shm.Segment.open(name)
        assert.isFalse(opened.owner)
        assert.strictEqual(opened.size, 10_000)
        created.bytes[1234] = 42
        assert.strictEqual(opened.bytes[1234], 42)
      }))
      assert.isFalse(Fs.existsSync(`/dev/shm/${name}`))
      const gone = yield* Effect.flip(Effect.scoped(Shm.Segment.open(name)))
      assert.strictEqual(gone.reason._tag, "NotFound")
      assert.strictEqual((yield* Effect.flip(Shm.Segment.unlink(name))).reason._tag, "NotFound")
    }))

  // the name is removed by identity: a segment someone made again under the name meanwhile keeps it
  it.effect("a scope's close leaves the name alone when it names another segment by then", () =>
    Effect.gen(function*() {
      const name = fresh()
      const outer = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(outer, Exit.void))
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Shm.Segment.create(name, 4096)
        yield* Shm.Segment.unlink(name)
        // another scope takes the name for a segment of its own, and outlives the first
        yield* Scope.provide(Shm.Segment.create(name, 8192), outer)
      }))
      assert.isTrue(Fs.existsSync(`/dev/shm/${name}`), "the second segment's name stays")
      assert.strictEqual(Fs.statSync(`/dev/shm/${name}`).size, 8192)
      yield* Scope.close(outer, Exit.void)
      assert.isFalse(Fs.existsSync(`/dev/shm/${name}`))
    }).pipe(Effect.scoped))

  it.effect("detaches every view when the scope closes: late reads see nothing, never unmapped memory", () =>
    Effect.gen(function*() {
      const name = fresh()
      const views = yield* Effect.scoped(Effect.gen(function*() {
        const segment = yield* Shm.Segment.create(name, 65536)
        segment.bytes.fill(7)
        const words = new Int32Array(segment.bytes.buffer)
        Atomics.store(words, 3, 99)
        return {
          bytes: segment.bytes,
          sub: segment.bytes.subarray(100, 200),
          buffer: Buffer.from(segment.bytes.buffer, 10, 20),
          words,
          isMapped: segment.isMapped
        }
      }))
      assert.isFalse(views.isMapped())
      assert.strictEqual(views.bytes.length, 0)
      assert.strictEqual(views.sub.length, 0)
      assert.strictEqual(views.buffer.length, 0)
      assert.strictEqual(views.bytes[5], undefined)
      views.bytes[5] = 1 // ignored, as on any detached buffer
      assert.strictEqual(views.bytes[5], undefined)
      assert.throws(() => Atomics.load(views.words, 3), TypeError)
    }))

  it.live("keeps memory valid for native I/O still reading a view after the scope closed", () =>
    Effect.gen(function*() {
      const name = fresh()
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shm-seg-"))
      const file = Path.join(dir, "out")
      const size = 32 * 1024 * 1024
      try {
        // an asynchronous write of the whole segment, still in flight when the segment is released
        const written = yield* Effect.scoped(Effect.gen(function*() {
          const segment = yield* Shm.Segment.create(name, size)
          segment.bytes.fill(5)
          const fd = Fs.openSync(file, "w")
          const done = Deferred.makeUnsafe<number>()
          Fs.write(fd, segment.bytes, 0, size, 0, (error, bytes) => {
            Fs.closeSync(fd)
            Deferred.doneUnsafe(done, error === null ? Effect.succeed(bytes) : Effect.die(error))
          })
          return done
        }))
        // the process is alive: the write read either the segment or the zero pages that replaced it
        const bytes = yield* Deferred.await(written)
        assert.strictEqual(bytes, size)
        assert.strictEqual(Fs.statSync(file).size, size)
      } finally {
        Fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("rejects bad names: a slash, too long, odd characters", () =>
    Effect.gen(function*() {
      const slash = yield* Effect.flip(Effect.scoped(Shm.Segment.create("a/b", 10)))
      assert.strictEqual(slash.reason._tag, "InvalidAddress")
      const long = yield* Effect.flip(Effect.scoped(Shm.Segment.create("x".repeat(Shm.Segment.maxNameLength + 1), 10)))
      assert.strictEqual(long.reason._tag, "NameTooLong")
      const odd = yield* Effect.flip(Effect.scoped(Shm.Segment.open("héllo wörld")))
      assert.strictEqual(odd.reason._tag, "InvalidAddress")
      const dot = yield* Effect.flip(Effect.scoped(Shm.Segment.open("..")))
      assert.strictEqual(dot.reason._tag, "InvalidAddress")
      const empty = yield* Effect.flip(Effect.scoped(Shm.Segment.create(fresh(), 0)))
      assert.strictEqual(empty.reason._tag, "InvalidOption")
      // the longest allowed name works
      const longest = `${prefix}-${"y".repeat(Shm.Segment.maxNameLength - prefix.length - 1)}`
      assert.strictEqual((yield* Effect.scoped(Shm.Segment.create(longest, 10))).name, longest)
    }))

  it.effect("maps errno to typed reasons at the system call (no name checks in between)", () =>
    Effect.gen(function*() {
      // 256 bytes: the kernel's limit is 255
      const tooLong = yield* Effect.flip(Libc.shmOpen("z".repeat(256), "create", 0o600))
      assert.strictEqual(tooLong.reason._tag, "NameTooLong")
      assert.strictEqual(tooLong.errno, "ENAMETOOLONG")
      const slash = yield* Effect.flip(Libc.shmOpen("a/b", "create", 0o600))
      assert.strictEqual(slash.reason._tag, "InvalidAddress")
      const missing = yield* Effect.flip(Libc.shmOpen(fresh(), "open", 0))
      assert.strictEqual(missing.reason._tag, "NotFound")
      // more address space than a process has
      const name = fresh()
      const fd = yield* Libc.shmOpen(name, "create", 0o600)
      try {
        yield* fdTruncate(fd, 2 ** 47)
        const noSpace = yield* Effect.flip(Libc.mapShared(fd, 2 ** 47))
        assert.strictEqual(noSpace.reason._tag, "NoSpace")
      } finally {
        Libc.closeFd(fd)
        yield* Libc.shmUnlink(name)
      }
    }))

  it.effect("reports PermissionDenied to another user", () =>
    Effect.gen(function*() {
      if (process.getuid?.() !== 0) return // needs root to run a child as someone else
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Shm.Segment.create(name, 4096)
        const script =
          `import("${
            new URL("../src/Segment.ts", import.meta.url).href
          }").then(async (S) => { const E = await import("effect/Effect"); ` +
          `const exit = await E.runPromiseExit(E.scoped(S.open("${name}"))); ` +
          `console.log(exit._tag === "Failure" ? JSON.stringify(exit.cause.reasons[0].error.reason._tag) : "opened") })`
        const result = ChildProcess.spawnSync(
          process.execPath,
          [
            "--conditions=@effect-ipc/source",
            "--disable-warning=ExperimentalWarning",
            "--input-type=module",
            "-e",
            script
          ],
          { uid: NOBODY, gid: NOBODY, encoding: "utf8", cwd: import.meta.dirname }
        )
        assert.include(result.stdout, `"PermissionDenied"`, result.stderr)
      }))
    }))

  it("on Windows, every operation fails with UnsupportedPlatform instead of crashing", () => {
    // a child that believes it runs on Windows before the package loads libc (the modules that
    // do not import transport-pipe, whose koffi import needs the win32 binary installed)
    const script = `Object.defineProperty(process, "platform", { value: "win32" })
        const Segment = await import("@effect-ipc/transport-shm/Segment")
        const ResourceLink = await import("@effect-ipc/transport-shm/ResourceLink")
        const SegmentGc = await import("@effect-ipc/transport-shm/SegmentGc")
        const { Effect } = await import("effect")
        const reason = (effect) => Effect.runPromise(Effect.flip(Effect.scoped(effect))).then((e) => e.reason._tag)
        console.log(JSON.stringify(await Promise.all([
          reason(Segment.create("windows-test", 4096)),
          reason(Segment.open("windows-test")),
          reason(ResourceLink.create("windows-test", 10)),
          reason(ResourceLink.acquire("windows-test")),
          reason(SegmentGc.list)
        ])))`
    const result = ChildProcess.spawnSync(
      process.execPath,
      ["--conditions=@effect-ipc/source", "--disable-warning=ExperimentalWarning", "--input-type=module", "-e", script],
      { encoding: "utf8", cwd: import.meta.dirname }
    )
    assert.strictEqual(result.status, 0, result.stderr)
    assert.deepStrictEqual(JSON.parse(result.stdout), Array(5).fill("UnsupportedPlatform"))
  })

  it.effect("releases on failure and interruption", () =>
    Effect.gen(function*() {
      const a = fresh()
      const exit = yield* Effect.exit(Effect.scoped(Effect.andThen(Shm.Segment.create(a, 4096), Effect.fail("boom"))))
      assert.isTrue(Exit.isFailure(exit))
      assert.isFalse(Fs.existsSync(`/dev/shm/${a}`))
      const b = fresh()
      const fiber = yield* Effect.forkChild(Effect.scoped(Effect.andThen(Shm.Segment.create(b, 4096), Effect.never)), {
        startImmediately: true
      })
      yield* Effect.yieldNow
      assert.isTrue(Fs.existsSync(`/dev/shm/${b}`))
      yield* Fiber.interrupt(fiber)
      assert.isFalse(Fs.existsSync(`/dev/shm/${b}`))
    }))

  it.effect("lists /dev/shm", () =>
    Effect.gen(function*() {
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Shm.Segment.create(name, 12345)
        const listed = yield* Shm.Segment.list
        const entry = listed.find((e) => e.name === name)
        assert.strictEqual(entry?.size, 12345)
        assert.strictEqual(entry?.uid, process.getuid?.())
      }))
    }))

  it("leaves nothing in /dev/shm", () => {
    assert.deepStrictEqual(leftovers(prefix), [])
  })
})
