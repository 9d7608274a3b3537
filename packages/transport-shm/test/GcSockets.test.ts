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
            const cli = ChildProcess.spawnSync(process.execPath, [
              ...process.execArgv,
              Path.join(import.meta.dirname, "../../cli/src/bin.ts"),
              "shm",
              "gc",
              "--prefix",
              name,
              "--dir",
              dir
            ], { encoding: "utf8" })
            assert.include(cli.stdout, `removed socket ${name}.sock`, `${cli.stdout}${cli.stderr}`)
          }
          assert.isFalse(Fs.existsSync(path))
        }
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
