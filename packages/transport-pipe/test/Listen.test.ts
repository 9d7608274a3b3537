/**
 * `listen` never destroys what is at its path: only a socket proven stale (a
 * socket, owned by this user, connection refused) is replaced; anything else is
 * `AddressInUse` naming what is there, and is left exactly as it was.
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Process from "@effect-ipc/core/Process"
import type * as Transport from "@effect-ipc/core/Transport"
import { Fifo, SocketPath, UnixSocket } from "@effect-ipc/transport-pipe"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { isRoot, nobody, node, nodeFixture, python, run, squatter, start, tempDir, waitFor } from "./helpers.ts"

const transport = UnixSocket.make()
const fifos = Fifo.make()

/** A snapshot of what is at `path` (no link followed), to prove it was not touched. */
const snapshot = (path: string) => {
  const stat = Fs.lstatSync(path)
  return {
    ino: stat.ino,
    mode: stat.mode,
    uid: stat.uid,
    mtimeMs: stat.mtimeMs,
    content: stat.isFile() ? Fs.readFileSync(path, "utf8") : stat.isSymbolicLink() ? Fs.readlinkSync(path) : ""
  }
}

/** Asserts the typed refusal: `AddressInUse` whose detail names the kind and owner found. */
const assertInUse = (error: IpcError.IpcError, kind: string, uid: number) => {
  assert.strictEqual(error.reason._tag, "AddressInUse", error.message)
  assert.include(error.detail, kind)
  assert.include(error.detail, `uid ${uid}`)
}

/** Leaves a dead server's socket file at `path` (a server killed with SIGKILL). */
const staleSocket = (path: string) => {
  const result = ChildProcess.spawnSync(process.execPath, [
    "-e",
    `require("net").createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, "SIGKILL"))`
  ])
  assert.strictEqual(result.signal, "SIGKILL")
  assert.isTrue(Fs.lstatSync(path).isSocket(), "the dead server left its socket file")
}

const me = process.getuid!()

/** Python: takes flock(LOCK_EX) on argv[1], prints "locked", holds it until stdin ends. */
const holdLock = "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n" +
  "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\nsys.stdin.read()"

/** Python: listens at argv[1] with the smallest backlog, fills it with connections it never accepts, prints "full". */
const fullBacklog = "import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(0)\n" +
  "held = []\nwhile True:\n    c = socket.socket(socket.AF_UNIX)\n    c.setblocking(False)\n    try:\n" +
  "        c.connect(sys.argv[1])\n    except BlockingIOError:\n        break\n    held.append(c)\n" +
  "print('full', flush=True)\ntime.sleep(60)"

/** The pid of a process that has exited (for a dead listener's lock). */
const deadPid = (): number => {
  const result = ChildProcess.spawnSync(process.execPath, ["-e", "console.log(process.pid)"])
  return Number(result.stdout.toString().trim())
}

describe("listen leaves what is at its path alone", () => {
  it.live("a user's regular file (unix://)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-listen-")
      const path = Path.join(dir, "notes.txt")
      Fs.writeFileSync(path, "my precious notes\n")
      const before = snapshot(path)
      const error = yield* Effect.flip(Effect.scoped(transport.listen(`unix://${path}`)))
      assertInUse(error, "regular file", me)
      assert.deepStrictEqual(snapshot(path), before)
      assert.deepStrictEqual(Fs.readdirSync(dir), ["notes.txt"], "nothing else was created")
    }).pipe(Effect.scoped))

  it.live("a directory, a FIFO, a symlink (to a file and dangling)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-listen-")
      const target = Path.join(dir, "target.txt")
      Fs.writeFileSync(target, "target content")
      Fs.mkdirSync(Path.join(dir, "d.sock"))
      ChildProcess.execFileSync("mkfifo", [Path.join(dir, "f.sock")])
      Fs.symlinkSync(target, Path.join(dir, "l.sock"))
      Fs.symlinkSync(Path.join(dir, "missing"), Path.join(dir, "dangling.sock"))
      const cases = [["d.sock", "directory"], ["f.sock", "FIFO"], ["l.sock", "symbolic link"], [
        "dangling.sock",
        "symbolic link"
      ]] as const
      for (const [name, kind] of cases) {
        const path = Path.join(dir, name)
        const before = snapshot(path)
        const error = yield* Effect.flip(Effect.scoped(transport.listen(`unix://${path}`)))
        assertInUse(error, kind, me)
        assert.deepStrictEqual(snapshot(path), before, name)
      }
      assert.strictEqual(Fs.readFileSync(target, "utf8"), "target content")
      assert.isFalse(Fs.existsSync(Path.join(dir, "missing")), "nothing was created through the dangling link")
      assert.deepStrictEqual(Fs.readdirSync(dir).toSorted(), [
        "d.sock",
        "dangling.sock",
        "f.sock",
        "l.sock",
        "target.txt"
      ])
    }).pipe(Effect.scoped))

  it.live("a live socket of ours", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-listen-")
      const address = `unix://${Path.join(dir, "live.sock")}`
      const listener = yield* transport.listen(address)
      const error = yield* Effect.flip(Effect.scoped(transport.listen(address)))
      assertInUse(error, "live", me)
      // the second listener's look (a connection) says goodbye: the first sees a client come and go, not a
      // connection lost (a CLI listener printed "connection dropped: ConnectionLost")
      const looked = yield* listener.accept
      const ended = yield* Effect.flip(looked.receive).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(ended.reason._tag, "Closed", String(ended))
      const client = yield* transport.dial(address) // the first server still serves
      yield* client.close
    }).pipe(Effect.scoped))

  it.live("a live socket of ours whose server accepts nothing (its backlog full): not stale, left untouched", () =>
    Effect.gen(function*() {
      // connecting is refused with EAGAIN, not ECONNREFUSED: the server is alive, only busy
      const dir = yield* tempDir("effect-ipc-listen-")
      const path = Path.join(dir, "busy.sock")
      const busy = yield* start(python, ["-c", fullBacklog, path])
      yield* busy.line(/^full$/)
      const before = snapshot(path)
      const error = yield* Effect.flip(Effect.scoped(transport.listen(`unix://${path}`)))
      assertInUse(error, "answers EAGAIN", me)
      assert.deepStrictEqual(snapshot(path), before)
    }).pipe(Effect.scoped))

  it.live("replaces a stale socket of ours", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-listen-")
      const path = Path.join(dir, "stale.sock")
      staleSocket(path)
      const listener = yield* transport.listen(`unix://${path}`)
      const client = yield* transport.dial(`unix://${path}`)
      const server = yield* listener.accept
      yield* client.send(new Uint8Array([1]))
      assert.deepStrictEqual([...(yield* server.receive)], [1])
    }).pipe(Effect.scoped))

  // a listener removes its own socket file on close, and only its own: one whose file was removed and whose
  // path a successor bound since leaves the successor's socket in place
  it.live("a listener closing after a successor took its path leaves the successor's socket", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-listen-")
      const path = Path.join(dir, "taken.sock")
      const address = `unix://${path}`
      const first = yield* Scope.make()
      yield* Scope.provide(transport.listen(address), first)
      Fs.unlinkSync(path)
      const successor = yield* transport.listen(address)
      const ino = Fs.lstatSync(path).ino
      yield* Scope.close(first, Exit.void)
      assert.strictEqual(Fs.lstatSync(path).ino, ino, "the successor's socket file is still there")
      const client = yield* transport.dial(address)
      const server = yield* successor.accept
      yield* client.send(new Uint8Array([7]))
      assert.deepStrictEqual([...(yield* server.receive)], [7])
    }).pipe(Effect.scoped))

  it.live("a user's regular file in the pipe:// runtime directory", () =>
    Effect.gen(function*() {
      const runtime = yield* tempDir("effect-ipc-xdg-", 0o700)
      const saved = process.env["XDG_RUNTIME_DIR"]
      process.env["XDG_RUNTIME_DIR"] = runtime
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (saved === undefined) delete process.env["XDG_RUNTIME_DIR"]
          else process.env["XDG_RUNTIME_DIR"] = saved
        })
      )
      Fs.mkdirSync(Path.join(runtime, "effect-ipc"), { mode: 0o700 })
      const path = Path.join(runtime, "effect-ipc", "notes.sock")
      Fs.writeFileSync(path, "keep me")
      const before = snapshot(path)
      const error = yield* Effect.flip(Effect.scoped(transport.listen("pipe://notes")))
      assertInUse(error, "regular file", me)
      assert.deepStrictEqual(snapshot(path), before)
    }).pipe(Effect.scoped))

  it.live("fifo://: a user's files at name.in, name.out, name.lock, name.ready", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-listen-")
      for (const suffix of [".in", ".out", ".lock", ".ready"]) {
        const base = Path.join(dir, `n${suffix.slice(1)}`)
        Fs.writeFileSync(`${base}${suffix}`, `data of ${suffix}`)
        const before = snapshot(`${base}${suffix}`)
        const error = yield* Effect.flip(Effect.scoped(fifos.listen(`fifo://${base}`)))
        assert.strictEqual(error.reason._tag, "AddressInUse", `${suffix}: ${error.message}`)
        assert.include(error.detail, "regular file")
        assert.deepStrictEqual(snapshot(`${base}${suffix}`), before, suffix)
        assert.deepStrictEqual(
          Fs.readdirSync(dir).filter((f) => f.startsWith(`n${suffix.slice(1)}`)),
          [`n${suffix.slice(1)}${suffix}`],
          "nothing else was left"
        )
      }
      // a planted symlink at name.in
      const base = Path.join(dir, "linked")
      Fs.writeFileSync(Path.join(dir, "victim"), "victim")
      Fs.symlinkSync(Path.join(dir, "victim"), `${base}.in`)
      const error = yield* Effect.flip(Effect.scoped(fifos.listen(`fifo://${base}`)))
      assertInUse(error, "symbolic link", me)
      assert.strictEqual(Fs.readFileSync(Path.join(dir, "victim"), "utf8"), "victim")
      assert.isTrue(Fs.lstatSync(`${base}.in`).isSymbolicLink())
    }).pipe(Effect.scoped))

  it.live("fifo://: a dead listener's lock and ready token are replaced; a ready token not its own is not", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-listen-")
      const base = Path.join(dir, "n")
      const token = `${deadPid()}:dead1`
      Fs.writeFileSync(`${base}.lock`, token)
      Fs.writeFileSync(`${base}.ready`, "99999999:someone-else")
      const before = snapshot(`${base}.ready`)
      const error = yield* Effect.flip(Effect.scoped(fifos.listen(`fifo://${base}`)))
      assertInUse(error, "regular file", me)
      assert.deepStrictEqual(snapshot(`${base}.ready`), before)
      Fs.rmSync(`${base}.ready`)
      // the ready token a dead listener left: it holds its lock's text
      const other = Path.join(dir, "m")
      const left = `${deadPid()}:dead2`
      Fs.writeFileSync(`${other}.lock`, left)
      Fs.writeFileSync(`${other}.ready`, left)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* fifos.listen(`fifo://${other}`)
        const lock = Fs.readFileSync(`${other}.lock`, "utf8")
        assert.notStrictEqual(lock, left)
        assert.strictEqual(Fs.readFileSync(`${other}.ready`, "utf8"), lock)
      }))
      assert.deepStrictEqual(Fs.readdirSync(dir), [], "all of it removed on close")
    }).pipe(Effect.scoped))

  // opening a FIFO for reading without O_NONBLOCK waits for a writer: a FIFO planted where the lock or the
  // ready token is read would freeze the event loop (run in child processes, so a hang is a failed line)
  it.live(
    "fifo://: a FIFO planted at name.lock or name.ready is AddressInUse at once, for listen and dial",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-listen-")
        for (const suffix of [".lock", ".ready"]) {
          const base = Path.join(dir, `planted${suffix.slice(1)}`)
          ChildProcess.execFileSync("mkfifo", [`${base}${suffix}`])
          const racer = yield* start(node, [...nodeFixture("listen.ts"), `fifo://${base}`])
          yield* racer.line(/^armed$/)
          yield* racer.say("go")
          assert.match(yield* racer.line(/^(won|lost)/), /^lost AddressInUse: .* is a FIFO owned by uid /, suffix)
          assert.isTrue(Fs.lstatSync(`${base}${suffix}`).isFIFO(), "left untouched")
        }
        // a client finds a FIFO where the ready token should be, next to a pair's FIFOs
        const base = Path.join(dir, "dialled")
        for (const suffix of [".in", ".out", ".ready"]) ChildProcess.execFileSync("mkfifo", [`${base}${suffix}`])
        const dialled = yield* run(node, [...nodeFixture("dial.ts"), `fifo://${base}`])
        assert.match(
          dialled.stdout.toString(),
          /^error AddressInUse: .*\.ready is a FIFO owned by uid /,
          dialled.stderr
        )
        assert.isTrue(Fs.lstatSync(`${base}.ready`).isFIFO(), "left untouched")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live.runIf(isRoot)(
    "fifo://: another user's FIFOs at name.in and name.out (a shared sticky directory)",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-listen-", 0o1777)
        const base = Path.join(dir, "pair")
        const squat = yield* start(python, [squatter, "fifo", base], { uid: nobody })
        yield* squat.line(/^ready$/)
        Fs.rmSync(`${base}.ready`) // its FIFOs alone are in the way
        const before = [snapshot(`${base}.in`), snapshot(`${base}.out`)]
        const error = yield* Effect.flip(Effect.scoped(fifos.listen(`fifo://${base}`)))
        assertInUse(error, "FIFO", nobody)
        assert.deepStrictEqual([snapshot(`${base}.in`), snapshot(`${base}.out`)], before)
        assert.strictEqual((yield* squat.finish).at(-1), "bytes 0")
      }).pipe(Effect.scoped)
  )

  // a dead listener's lock of ours is taken over, and what it left at name.in and name.out is cleared: FIFOs
  // another user put there since (root may remove anything in a sticky directory) are not its to remove
  it.live.runIf(isRoot)(
    "fifo://: another user's FIFOs where a dead listener of ours left its lock",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-listen-", 0o1777)
        const base = Path.join(dir, "pair")
        const squat = yield* start(python, [squatter, "fifo", base], { uid: nobody })
        yield* squat.line(/^ready$/)
        Fs.rmSync(`${base}.ready`)
        Fs.writeFileSync(`${base}.lock`, `${deadPid()}:dead`)
        const before = [snapshot(`${base}.in`), snapshot(`${base}.out`)]
        const error = yield* Effect.flip(Effect.scoped(fifos.listen(`fifo://${base}`)))
        assertInUse(error, "FIFO", nobody)
        assert.deepStrictEqual([snapshot(`${base}.in`), snapshot(`${base}.out`)], before)
        assert.strictEqual((yield* squat.finish).at(-1), "bytes 0")
      }).pipe(Effect.scoped)
  )

  it.live.runIf(isRoot)(
    "where it may not look (EACCES): a typed PermissionDenied, not a defect",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-listen-", 0o700)
        for (const address of [`unix://${Path.join(dir, "x.sock")}`, `fifo://${Path.join(dir, "x")}`]) {
          const racer = yield* start(node, [...nodeFixture("listen.ts"), address], { uid: nobody })
          yield* racer.line(/^armed$/)
          yield* racer.say("go")
          assert.match(yield* racer.line(/^(won|lost)/), /^lost PermissionDenied: .*EACCES/, address)
        }
        assert.deepStrictEqual(Fs.readdirSync(dir), [])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live.runIf(isRoot)(
    "a socket of another user, live or stale, in a shared sticky directory",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-listen-", 0o1777)
        const path = Path.join(dir, "shared.sock")
        const squat = yield* start(python, [squatter, "unix", path], { uid: nobody })
        yield* squat.line(/^ready$/)
        const before = snapshot(path)
        const live = yield* Effect.flip(Effect.scoped(transport.listen(`unix://${path}`)))
        assertInUse(live, "socket", nobody)
        yield* squat.finish // its socket file stays: stale now
        const stale = yield* Effect.flip(Effect.scoped(transport.listen(`unix://${path}`)))
        assertInUse(stale, "socket", nobody)
        assert.deepStrictEqual(snapshot(path), before)
      }).pipe(Effect.scoped)
  )
})

/** Starts `n` listeners in separate processes, releases them at once; returns each one's verdict. */
const race = (n: number, address: string) =>
  Effect.gen(function*() {
    const racers = yield* Effect.forEach(
      Array.from({ length: n }),
      () => start(node, [...nodeFixture("listen.ts"), address]),
      { concurrency: "unbounded" }
    )
    yield* Effect.forEach(racers, (r) => r.line(/^armed$/), { concurrency: "unbounded" })
    yield* Effect.forEach(racers, (r) => r.say("go"))
    return yield* Effect.forEach(racers, (r) => r.line(/^(won|lost)/), { concurrency: "unbounded" })
  })

describe("racing listeners", () => {
  it.live(
    "N processes listen on one fresh path: exactly one wins, the others get AddressInUse",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-race-")
        const address = `unix://${Path.join(dir, "race.sock")}`
        const verdicts = yield* race(4, address)
        assert.strictEqual(verdicts.filter((v) => v === "won").length, 1, verdicts.join("\n"))
        for (const lost of verdicts.filter((v) => v !== "won")) assert.match(lost, /^lost AddressInUse: /)
        const client = yield* transport.dial(address)
        yield* client.send(new Uint8Array([3]))
        assert.deepStrictEqual([...(yield* client.receive)], [3])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "fifo://: N processes race to take over one dead listener's lock: exactly one wins",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-race-")
        for (let round = 0; round < 2; round++) {
          const base = Path.join(dir, `pair${round}`)
          const token = `${deadPid()}:dead${round}`
          Fs.writeFileSync(`${base}.lock`, token)
          Fs.writeFileSync(`${base}.ready`, token)
          yield* Effect.scoped(Effect.gen(function*() {
            const verdicts = yield* race(4, `fifo://${base}`)
            assert.strictEqual(verdicts.filter((v) => v === "won").length, 1, verdicts.join("\n"))
            for (const lost of verdicts.filter((v) => v !== "won")) assert.match(lost, /^lost AddressInUse: /)
            const client = yield* fifos.dial(`fifo://${base}`)
            yield* client.send(new Uint8Array([5]))
            assert.deepStrictEqual([...(yield* client.receive)], [5])
          }))
        }
      }).pipe(Effect.scoped),
    120_000
  )

  it.live.runIf(isRoot)(
    "another user holding a lock on the shared directory forever does not stop us replacing our stale socket",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-sticky-", 0o1777)
        const path = Path.join(dir, "app.sock")
        staleSocket(path)
        const holder = yield* start(python, ["-c", holdLock, dir], { uid: nobody })
        yield* holder.line(/^locked$/)
        const listener = yield* transport.listen(`unix://${path}`)
        const client = yield* transport.dial(`unix://${path}`)
        const server = yield* listener.accept
        yield* client.send(new Uint8Array([6]))
        assert.deepStrictEqual([...(yield* server.receive)], [6])
        // our lock file for that path is in our runtime directory, and gone once released
        const key = Crypto.createHash("sha256").update(path).digest("hex").slice(0, 32)
        assert.isFalse(Fs.existsSync(Path.join(yield* SocketPath.runtimeDir(), `.lock-${key}`)))
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("N processes race to replace one stale socket: exactly one wins", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-race-")
      const path = Path.join(dir, "stale.sock")
      staleSocket(path)
      const verdicts = yield* race(4, `unix://${path}`)
      assert.strictEqual(verdicts.filter((v) => v === "won").length, 1, verdicts.join("\n"))
      for (const lost of verdicts.filter((v) => v !== "won")) assert.match(lost, /^lost AddressInUse: /)
      const client = yield* transport.dial(`unix://${path}`)
      yield* client.send(new Uint8Array([4]))
      assert.deepStrictEqual([...(yield* client.receive)], [4])
    }).pipe(Effect.scoped), 60_000)
})

describe("a socket path near the limit, in a long directory", () => {
  it.live.runIf(process.platform === "linux")(
    "up to the limit it is served (its staging name, 15 bytes longer, is bound through /proc); one byte past it is NameTooLong",
    () =>
      Effect.gen(function*() {
        const base = yield* tempDir("effect-ipc-long-")
        // a directory of 96 bytes: the staging name `.eipc-XXXXXX/s` under it passes the limit for every name below
        const dir = Path.join(base, "d".repeat(96 - base.length - 1))
        Fs.mkdirSync(dir)
        assert.strictEqual(Buffer.byteLength(dir), 96)
        for (const length of [100, 105, UnixSocket.maxPathBytes]) {
          const path = Path.join(dir, "s".repeat(length - dir.length - 1))
          assert.strictEqual(Buffer.byteLength(path), length)
          yield* Effect.scoped(Effect.gen(function*() {
            const listener = yield* transport.listen(`unix://${path}`)
            assert.isTrue(Fs.lstatSync(path).isSocket(), `a socket at the ${length}-byte path`)
            assert.strictEqual(Fs.lstatSync(path).mode & 0o777, 0o600)
            const client = yield* transport.dial(`unix://${path}`)
            const server = yield* listener.accept
            yield* client.send(new TextEncoder().encode(`${length}`))
            assert.strictEqual(new TextDecoder().decode(yield* server.receive), `${length}`)
          }))
          assert.isFalse(Fs.existsSync(path), "removed as the listener closed")
        }
        assert.deepStrictEqual(Fs.readdirSync(dir), [], "no staging directory left")
        const tooLong = Path.join(dir, "s".repeat(UnixSocket.maxPathBytes + 1 - dir.length - 1))
        const error = yield* Effect.flip(transport.listen(`unix://${tooLong}`))
        assert.strictEqual(error.reason._tag, "NameTooLong", error.message)
      }).pipe(Effect.scoped)
  )
})

describe("a directory on the path swapped for a link to another (by a user who may rename entries above it)", () => {
  // the stale socket was looked at, removed and replaced by path: a link swapped in for `d` while the listener
  // waited for the path's lock steered the removal (and the link) to a socket of that name in the other directory
  it.live(
    "a stale socket is replaced in the directory the listener opened, nothing in the other",
    () =>
      Effect.gen(function*() {
        const base = yield* tempDir("effect-ipc-swapped-")
        const [d, real, other] = ["d", "real", "other"].map((name) => Path.join(base, name))
        Fs.mkdirSync(d)
        Fs.mkdirSync(other)
        const path = Path.join(d, "x.sock")
        staleSocket(path)
        staleSocket(Path.join(other, "x.sock"))
        const theirs = Fs.lstatSync(Path.join(other, "x.sock")).ino
        // hold the path's lock: the listener waits for it with its socket bound in its staging directory
        const key = Crypto.createHash("sha256").update(path).digest("hex").slice(0, 32)
        const lockFile = Path.join(yield* SocketPath.lockDir(), `.lock-${key}`)
        Fs.writeFileSync(lockFile, "", { mode: 0o600 })
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(lockFile, { force: true })))
        const holder = yield* start(python, ["-c", holdLock, lockFile])
        yield* holder.line(/^locked$/)
        const listening = yield* Effect.forkScoped(transport.listen(`unix://${path}`))
        const staged = () =>
          Fs.readdirSync(d).some((name) => name.startsWith(".eipc-") && Fs.existsSync(Path.join(d, name, "s")))
        yield* waitFor(() => staged() || listening.pollUnsafe() !== undefined, 4_000)
        assert.isTrue(staged(), "the listener bound its socket in its staging directory")
        // the swap, between the listener's look at the path and its replacement of the stale socket
        Fs.renameSync(d, real)
        Fs.symlinkSync(other, d)
        yield* holder.finish
        yield* Fiber.join(listening)
        assert.strictEqual(Fs.lstatSync(Path.join(other, "x.sock")).ino, theirs, "the other directory's is untouched")
        const client = yield* transport.dial(`unix://${Path.join(real, "x.sock")}`)
        yield* client.send(new Uint8Array([1]))
      }).pipe(Effect.scoped),
    60_000
  )

  // close looked at its socket file by path and removed it by path: with a link swapped in for `d` it looked at
  // the other directory's file (not its own: left), and a swap between the two steps removed that file instead
  it.live(
    "close removes its socket file from the directory the listener opened, nothing from the other",
    () =>
      Effect.gen(function*() {
        const base = yield* tempDir("effect-ipc-swapped-")
        const [d, real, other] = ["d", "real", "other"].map((name) => Path.join(base, name))
        Fs.mkdirSync(d)
        Fs.mkdirSync(other)
        Fs.writeFileSync(Path.join(other, "x.sock"), "precious")
        const scope = yield* Scope.make()
        yield* Scope.provide(transport.listen(`unix://${Path.join(d, "x.sock")}`), scope)
        Fs.renameSync(d, real)
        Fs.symlinkSync(other, d)
        yield* Scope.close(scope, Exit.void)
        assert.deepStrictEqual(Fs.readdirSync(real), [], "its socket file is removed")
        assert.strictEqual(Fs.readFileSync(Path.join(other, "x.sock"), "utf8"), "precious")
      }).pipe(Effect.scoped),
    60_000
  )
})

/** The files in `dir`, each with its inode and text (a FIFO's is not read: that would wait): what must stay as it was. */
const contents = (dir: string) =>
  Fs.readdirSync(dir).toSorted().map((name) => {
    const file = Path.join(dir, name)
    const stat = Fs.lstatSync(file)
    return [name, stat.ino, stat.isFile() ? Fs.readFileSync(file, "utf8") : "not a regular file"] as const
  })

/** `d` renamed to `real` and a link to `other` put in its place, as such a user can. */
const swap = (d: string, real: string, other: string) => {
  Fs.renameSync(d, real)
  Fs.symlinkSync(other, d)
}

/** Sends a byte each way between a client dialled at `address` and the next peer `listener` accepts. */
const converse = (listener: Transport.Listener, address: string, byte: number) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* fifos.dial(address)
    const server = yield* listener.accept
    yield* client.send(new Uint8Array([byte]))
    assert.deepStrictEqual([...(yield* server.receive)], [byte])
    yield* server.send(new Uint8Array([byte + 1]))
    assert.deepStrictEqual([...(yield* client.receive)], [byte + 1])
    yield* server.close
  }))

// Linux: elsewhere the files are reached by path (no /proc/self/fd)
describe.runIf(process.platform === "linux")(
  "fifo://: a directory on the path swapped for a link to another (by a user who may rename entries above it)",
  () => {
    // the lock was read and a dead listener's removed by path, and the pair's files looked at and made by path: a
    // link swapped in for `d` while the listener waited for the lock's path lock took over (removed) a dead lock of
    // that name in the other directory, and made the pair there
    it.live(
      "a dead listener's lock is taken over in the directory the listener opened; the other's is untouched",
      () =>
        Effect.gen(function*() {
          const base = yield* tempDir("effect-ipc-fifo-swapped-")
          const [d, real, other] = ["d", "real", "other"].map((name) => Path.join(base, name))
          Fs.mkdirSync(d)
          Fs.mkdirSync(other)
          const dead = `${deadPid()}:dead1`
          Fs.writeFileSync(Path.join(d, "x.lock"), dead)
          Fs.writeFileSync(Path.join(d, "x.ready"), dead)
          // another pair's leftovers of that name, root's: what a takeover by path removed
          const theirs = `${deadPid()}:dead2`
          Fs.writeFileSync(Path.join(other, "x.lock"), theirs)
          Fs.writeFileSync(Path.join(other, "x.ready"), theirs)
          const before = contents(other)
          // hold the lock's path lock: the listener waits for it, its directory opened
          const key = Crypto.createHash("sha256").update(Path.join(d, "x.lock")).digest("hex").slice(0, 32)
          const lockFile = Path.join(yield* SocketPath.lockDir(), `.lock-${key}`)
          Fs.writeFileSync(lockFile, "", { mode: 0o600 })
          yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(lockFile, { force: true })))
          const holder = yield* start(python, ["-c", holdLock, lockFile])
          yield* holder.line(/^locked$/)
          const listening = yield* Effect.forkScoped(fifos.listen(`fifo://${Path.join(d, "x")}`))
          const opened = () =>
            Fs.readdirSync("/proc/self/fd").some((fd) => {
              try {
                return Fs.readlinkSync(`/proc/self/fd/${fd}`) === d
              } catch {
                return false
              }
            })
          yield* waitFor(() => opened() || listening.pollUnsafe() !== undefined, 4_000)
          // the swap, between the listener's opening of its directory and its look at the lock
          swap(d, real, other)
          yield* holder.finish
          const listener = yield* Fiber.join(listening)
          assert.deepStrictEqual(contents(other), before, "the other directory's files are untouched")
          assert.match(
            Fs.readFileSync(Path.join(real, "x.lock"), "utf8"),
            new RegExp(`^${Process.encode(Process.self())}:`)
          )
          yield* converse(listener, `fifo://${Path.join(real, "x")}`, 1)
        }).pipe(Effect.scoped),
      60_000
    )

    // each conversation's fresh FIFOs were made, swapped in and removed by path: with a link swapped in for `d`
    // they went to the other directory (and what was there was looked at as the pair: the listener stopped)
    it.live(
      "between conversations, fresh FIFOs are made and swapped in where the listener opened; nothing in the other",
      () =>
        Effect.gen(function*() {
          const base = yield* tempDir("effect-ipc-fifo-swapped-")
          const [d, real, other] = ["d", "real", "other"].map((name) => Path.join(base, name))
          Fs.mkdirSync(d)
          Fs.mkdirSync(other)
          for (const name of ["x.in", "x.out"]) Fs.writeFileSync(Path.join(other, name), "precious")
          const before = contents(other)
          const listener = yield* fifos.listen(`fifo://${Path.join(d, "x")}`)
          swap(d, real, other)
          for (const round of [1, 3, 5]) yield* converse(listener, `fifo://${Path.join(real, "x")}`, round)
          assert.deepStrictEqual(contents(other), before, "the other directory's files are untouched")
        }).pipe(Effect.scoped),
      60_000
    )

    // close looked at its files by path and removed them by path: with a link swapped in for `d` it looked at the
    // other directory's files (not its own: left), and a swap between the two steps removed those instead
    it.live(
      "close removes its FIFOs, lock and ready token from the directory the listener opened, nothing from the other",
      () =>
        Effect.gen(function*() {
          const base = yield* tempDir("effect-ipc-fifo-swapped-")
          const [d, real, other] = ["d", "real", "other"].map((name) => Path.join(base, name))
          Fs.mkdirSync(d)
          Fs.mkdirSync(other)
          for (const name of ["x.in", "x.out", "x.lock", "x.ready"]) {
            Fs.writeFileSync(Path.join(other, name), "precious")
          }
          const before = contents(other)
          const scope = yield* Scope.make()
          yield* Scope.provide(fifos.listen(`fifo://${Path.join(d, "x")}`), scope)
          swap(d, real, other)
          yield* Scope.close(scope, Exit.void)
          assert.deepStrictEqual(Fs.readdirSync(real), [], "its files are removed")
          assert.deepStrictEqual(contents(other), before, "the other directory's files are untouched")
        }).pipe(Effect.scoped),
      60_000
    )
  }
)

describe("a listener killed while it binds", () => {
  // it left its staging directory (`.eipc-...`, with its bound socket) beside the socket path for good
  it.live(
    "leaves its staging directory; the next listener at the path removes it, and nothing else",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-killed-")
        const path = Path.join(dir, "app.sock")
        staleSocket(path)
        // hold the path's lock (as a listener replacing the stale socket would), so that the next one waits for it
        // with its socket bound in its staging directory
        const key = Crypto.createHash("sha256").update(path).digest("hex").slice(0, 32)
        const lockFile = Path.join(yield* SocketPath.lockDir(), `.lock-${key}`)
        Fs.writeFileSync(lockFile, "", { mode: 0o600 })
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(lockFile, { force: true })))
        const holder = yield* start(python, ["-c", holdLock, lockFile])
        yield* holder.line(/^locked$/)
        const listener = yield* start(node, [...nodeFixture("listen.ts"), `unix://${path}`])
        yield* listener.line(/^armed$/)
        yield* listener.say("go")
        const staging = () => Fs.readdirSync(dir).filter((name) => name.startsWith(".eipc-"))
        const bound = () => staging().some((name) => Fs.existsSync(Path.join(dir, name, "s")))
        for (let i = 0; i < 400 && !bound(); i++) yield* Effect.sleep("5 millis")
        assert.lengthOf(staging(), 1, "the listener made its staging directory")
        const [left] = staging()
        assert.isTrue(Fs.lstatSync(Path.join(dir, left!, "s")).isSocket(), "its socket is bound there")
        process.kill(listener.pid, "SIGKILL")
        yield* listener.finish
        yield* holder.finish
        // a directory of the same name and process but with something else in it is not the listener's to remove
        const other = `${left!.slice(0, -6)}ZZZZZZ`
        Fs.mkdirSync(Path.join(dir, other), { mode: 0o700 })
        Fs.writeFileSync(Path.join(dir, other, "keep"), "keep")
        assert.includeMembers(staging(), [left!, other], "left behind by the killed listener")
        yield* transport.listen(`unix://${path}`)
        assert.deepStrictEqual(staging(), [other], "the dead listener's staging directory is removed, only it")
        assert.strictEqual(Fs.readFileSync(Path.join(dir, other, "keep"), "utf8"), "keep")
      }).pipe(Effect.scoped),
    60_000
  )

  // the sweep after a listen must not take the staging directory of a listener still binding in another process
  it.live(
    "a live listener's staging directory is left to it by the next listener at the path",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-binding-")
        const path = Path.join(dir, "app.sock")
        staleSocket(path)
        const key = Crypto.createHash("sha256").update(path).digest("hex").slice(0, 32)
        const lockFile = Path.join(yield* SocketPath.lockDir(), `.lock-${key}`)
        Fs.writeFileSync(lockFile, "", { mode: 0o600 })
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(lockFile, { force: true })))
        const holder = yield* start(python, ["-c", holdLock, lockFile])
        yield* holder.line(/^locked$/)
        // a listener in another process, alive, held at the path's lock with its socket bound in its staging directory
        const binding = yield* start(node, [...nodeFixture("listen.ts"), `unix://${path}`])
        yield* binding.line(/^armed$/)
        yield* binding.say("go")
        const staging = () => Fs.readdirSync(dir).filter((name) => name.startsWith(".eipc-"))
        const bound = () => staging().some((name) => Fs.existsSync(Path.join(dir, name, "s")))
        for (let i = 0; i < 400 && !bound(); i++) yield* Effect.sleep("5 millis")
        const [its] = staging()
        assert.isTrue(its !== undefined && bound(), "the other listener's socket is bound in its staging directory")
        const inode = Fs.lstatSync(Path.join(dir, its!, "s")).ino
        // the path is free again: this listener takes it without the lock, then sweeps
        Fs.unlinkSync(path)
        yield* transport.listen(`unix://${path}`)
        assert.deepStrictEqual(staging(), [its], "the live listener's staging directory is still there")
        assert.strictEqual(Fs.lstatSync(Path.join(dir, its!, "s")).ino, inode, "with its socket")
        // let it go on: it finds this listener's live socket, and removes its own staging directory
        yield* holder.finish
        const outcome = yield* binding.line(/^(won|lost)/)
        assert.match(outcome, /^lost AddressInUse/)
        yield* binding.finish
        assert.deepStrictEqual(staging(), [], "it removed its own")
      }).pipe(Effect.scoped),
    60_000
  )
})

/** How many of this process's descriptors are open on the directory `dir`. */
const descriptorsOn = (dir: string) => {
  const real = Fs.realpathSync(dir)
  return Fs.readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return Fs.readlinkSync(`/proc/self/fd/${fd}`) === real
    } catch {
      return false // closed since it was listed
    }
  }).length
}

// Linux: elsewhere no descriptor of the directory is opened
describe.runIf(process.platform === "linux")("a refused listen returns its directory's descriptor at once", () => {
  // the descriptor was opened in the caller's scope and held until it closed: a listen retried in one scope (as a
  // server waiting for the address to come free) held one more each attempt
  it.live("unix:// and fifo:// refused ten times in one scope hold no descriptor of the directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-refused-fds-")
      const busy = Path.join(dir, "busy.sock")
      Fs.writeFileSync(busy, "not a socket")
      yield* fifos.listen(`fifo://${Path.join(dir, "x")}`)
      const held = descriptorsOn(dir)
      for (let attempt = 0; attempt < 10; attempt++) {
        const unix = yield* Effect.flip(transport.listen(`unix://${busy}`))
        assert.strictEqual(unix.reason._tag, "AddressInUse", unix.message)
        const fifo = yield* Effect.flip(fifos.listen(`fifo://${Path.join(dir, "x")}`))
        assert.strictEqual(fifo.reason._tag, "AddressInUse", fifo.message)
      }
      assert.strictEqual(descriptorsOn(dir), held)
    }))
})
