/**
 * The collector and the socket files of `shm://` listeners: a socket whose
 * listener died is removed; a socket judged stale whose path a listener has
 * taken since is judged again under the listener's lock and kept.
 */
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Rendezvous from "../src/internal/rendezvous.ts"
import { AS_NOBODY, NOBODY } from "./helpers.ts"

const prefix = `gcsock-test-${process.pid}`
let n = 0
const fresh = () => `${prefix}-${n++}`

/** Leaves a dead listener's socket file at `path` (a process killed with SIGKILL while listening). */
const staleSocket = (path: string) => {
  const result = ChildProcess.spawnSync(process.execPath, [
    "-e",
    `require("net").createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, "SIGKILL"))`
  ])
  assert.strictEqual(result.signal, "SIGKILL")
  assert.isTrue(Fs.lstatSync(path).isSocket(), "the dead listener left its socket file")
}

/** Runs the CLI's `shm gc --prefix NAME --dir DIR`. */
const shmGc = (name: string, dir: string) =>
  ChildProcess.spawnSync(process.execPath, [
    ...process.execArgv,
    Path.join(import.meta.dirname, "../../cli/src/bin.ts"),
    "shm",
    "gc",
    "--prefix",
    name,
    "--dir",
    dir
  ], { encoding: "utf8" })

/** The rendezvous socket of `name`, removed when the scope closes if still there. */
const socketOf = (name: string) =>
  Effect.acquireRelease(
    Effect.map(Rendezvous.directory(), (dir) => Shm.ShmTransport.controlPath(name, dir)),
    (path) => Effect.sync(() => Fs.rmSync(path, { force: true }))
  )

describe("SegmentGc and listeners' socket files", () => {
  it.live("removes the socket file of a listener that died", () =>
    Effect.gen(function*() {
      const name = fresh()
      const path = yield* socketOf(name)
      staleSocket(path)
      const report = yield* Shm.SegmentGc.collect({ prefix: name })
      assert.deepStrictEqual(report.removed.map((r) => [r.kind, r.name]), [["socket", `${name}.sock`]])
      assert.isFalse(Fs.existsSync(path))
    }).pipe(Effect.scoped), 30_000)

  it.live(
    "removes it from a rendezvous directory given as `directory` too (collect, and the CLI's shm gc --dir)",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-gc-dir-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
        for (const sweep of ["collect", "cli"] as const) {
          const name = fresh()
          // a listener of that directory, killed: its socket file stays
          const path = Shm.ShmTransport.controlPath(name, dir)
          staleSocket(path)
          // the default directory's sweep does not see it
          assert.deepStrictEqual((yield* Shm.SegmentGc.collect({ prefix: name })).removed, [])
          if (sweep === "collect") {
            const report = yield* Shm.SegmentGc.collect({ prefix: name, directory: dir })
            assert.deepStrictEqual(report.removed.map((r) => [r.kind, r.name]), [["socket", `${name}.sock`]])
          } else {
            const cli = shmGc(name, dir)
            assert.include(cli.stdout, `removed socket ${name}.sock`, `${cli.stdout}${cli.stderr}`)
          }
          assert.isFalse(Fs.existsSync(path))
        }
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a `directory` given that is missing or not this user's private directory fails the collection, which removes nothing",
    () =>
      Effect.gen(function*() {
        const base = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-gc-bad-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(base, { recursive: true, force: true })))
        // an orphan the sweep would remove: a link nobody holds, past its TTL
        const name = fresh()
        yield* Effect.scoped(Shm.ResourceLink.create(name, 100, { ttl: "1 millis" }))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(`/dev/shm/${name}`, { force: true })))
        yield* Effect.sleep("20 millis")
        assert.isTrue(Fs.existsSync(`/dev/shm/${name}`))
        const open = Path.join(base, "open")
        Fs.mkdirSync(open, { mode: 0o755 })
        Fs.chmodSync(open, 0o755)
        const private_ = Path.join(base, "private")
        Fs.mkdirSync(private_, { mode: 0o700 })
        const link = Path.join(base, "link")
        Fs.symlinkSync(private_, link)
        const file = Path.join(base, "file")
        Fs.writeFileSync(file, "")
        const cases: ReadonlyArray<[string, string, string]> = [
          [Path.join(base, "missing"), "NotFound", "no such file or directory"],
          [open, "PermissionDenied", "is open to other users (mode 755, expected 700)"],
          [link, "PermissionDenied", "is not a directory"],
          [file, "PermissionDenied", "is not a directory"]
        ]
        for (const [directory, reason, says] of cases) {
          const error = yield* Effect.flip(Shm.SegmentGc.collect({ prefix: name, directory }))
          assert.strictEqual(error.reason._tag, reason, directory)
          assert.include(error.message, directory)
          assert.include(error.message, says)
          assert.isTrue(Fs.existsSync(`/dev/shm/${name}`), "the failed collection removed nothing")
        }
        // the CLI says so and exits 1
        const cli = shmGc(name, Path.join(base, "missing"))
        assert.strictEqual(cli.status, 1, `${cli.stdout}${cli.stderr}`)
        assert.include(cli.stderr, "NotFound")
        // the scheduled collector (a transport's, whose directory appears at its first listen or dial) sweeps
        // the segments all the same
        yield* Effect.scoped(Effect.andThen(
          Shm.SegmentGc.run({ prefix: name, directory: Path.join(base, "missing") }),
          Effect.sleep("500 millis")
        ))
        assert.isFalse(Fs.existsSync(`/dev/shm/${name}`), "the scheduled sweep removed the orphan segment")
        // a private directory of this user is swept, and the orphan goes
        const report = yield* Shm.SegmentGc.collect({ prefix: name, directory: private_ })
        assert.deepStrictEqual(report.removed, [])
      }).pipe(Effect.scoped),
    30_000
  )

  // README: "a missing default directory is nothing to sweep": a user who never listened has no rendezvous
  // directory, and `shm gc` there succeeds (a `directory` given that is missing is NotFound, above). Uid 65534, whose
  // home in the password database is not its own, with $XDG_RUNTIME_DIR unset: its default is <TMPDIR>/effect-ipc-shm-<uid>
  it.live.skipIf(process.getuid?.() !== 0)(
    "a missing default rendezvous directory is nothing to sweep: shm gc succeeds, and makes nothing",
    () =>
      Effect.gen(function*() {
        const tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-gc-default-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(tmp, { recursive: true, force: true })))
        Fs.chownSync(tmp, NOBODY, NOBODY)
        const cli = ChildProcess.spawnSync(AS_NOBODY[0], [
          ...AS_NOBODY.slice(1),
          "env",
          "-u",
          "XDG_RUNTIME_DIR",
          `TMPDIR=${tmp}`,
          process.execPath,
          ...process.execArgv,
          Path.join(import.meta.dirname, "../../cli/src/bin.ts"),
          "shm",
          "gc",
          "--prefix",
          fresh()
        ], { encoding: "utf8" })
        assert.strictEqual(cli.status, 0, `${cli.stdout}${cli.stderr}`)
        assert.include(cli.stdout, "removed 0")
        assert.deepStrictEqual(Fs.readdirSync(tmp), [], "the collection made no rendezvous directory")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a hashed socket file (a name too long for a socket path) is swept by a collection without a prefix",
    () =>
      Effect.gen(function*() {
        // a name long enough that its socket path is too long: its file is named for its hash
        const base = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-gc-hash-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(base, { recursive: true, force: true })))
        const dir = Path.join(base, "d".repeat(Math.max(1, 50 - base.length)))
        Fs.mkdirSync(dir, { mode: 0o700 })
        const name = `${fresh()}-${"n".repeat(75 - prefix.length)}`
        const path = Shm.ShmTransport.controlPath(name, dir)
        assert.match(Path.basename(path), /^~[0-9a-f]{40}\.sock$/)
        staleSocket(path)
        assert.deepStrictEqual((yield* Shm.SegmentGc.collect({ prefix: name, directory: dir })).removed, [])
        assert.isTrue(Fs.existsSync(path))
        // what a collection without a prefix sweeps (one here would judge every segment of this user's, the
        // other test files' among them: the directory's part of it is asked alone)
        const judged = yield* Rendezvous.staleSockets(undefined, dir)
        assert.deepStrictEqual(judged.map((stale) => stale.file), [Path.basename(path)])
        assert.isTrue(yield* Rendezvous.removeStale(judged[0]!))
        assert.isFalse(Fs.existsSync(path))
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a socket judged stale whose path a live listener took since (same inode) is kept",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        const path = yield* socketOf(name)
        staleSocket(path)
        const judged = yield* Rendezvous.staleSockets(name)
        assert.deepStrictEqual(judged.map((s) => s.path), [path])
        // a listener replaces the stale socket before the collector removes it
        const listener = yield* Shm.ShmTransport.make().listen(`shm://${name}`)
        const live = Fs.lstatSync(path)
        // the collector now removes what it judged (before judging again under the lock,
        // this unlinked the live socket when the file system gave it the judged inode)
        assert.isFalse(yield* Rendezvous.removeStale(judged[0]!))
        assert.strictEqual(Fs.lstatSync(path).ino, live.ino, "the live socket is still there")
        const client = yield* Shm.ShmTransport.make().dial(`shm://${name}`)
        const server = yield* listener.accept
        yield* client.send(new Uint8Array([1]))
        assert.deepStrictEqual([...(yield* server.receive)], [1])
        // and a whole collection leaves it too
        const report = yield* Shm.SegmentGc.collect({ prefix: name })
        assert.deepStrictEqual(report.removed.filter((r) => r.kind === "socket"), [])
        assert.isTrue(Fs.lstatSync(path).isSocket())
        const refused = yield* Effect.flip(UnixSocket.removeStale(path))
        assert.strictEqual(refused.reason._tag, "AddressInUse")
      }).pipe(Effect.scoped),
    30_000
  )
})
