/**
 * What a killed `nng+ipc://` listener leaves: the private directory of its
 * conversations (`.eipc-<key>-<pid@start.ns>-XXXXXX`, beside the socket file
 * or in the temporary directory), perhaps with sockets in it. The next
 * listener at the same path removes it, under the path's lock; it leaves
 * everything else alone: another path's directories, a live listener's,
 * another user's, links, names that do not match exactly, and whatever is not
 * a conversation socket of this user. The listener is killed with SIGKILL in
 * a child process (`fixtures/peer.ts channels`).
 */
import * as Process from "@effect-ipc/core/Process"
import type * as Transport from "@effect-ipc/core/Transport"
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const isRoot = process.getuid?.() === 0

/** A fresh directory with a short path (conversations' directories then fit beside the lobby), removed after. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-stale-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** The names in `dir` of conversations' directories (`.eipc-...`). */
const conversationDirs = (dir: string) => Fs.readdirSync(dir).filter((name) => name.startsWith(".eipc-")).toSorted()

/** Makes socket files (bound, never listened on) at `paths`. */
const bindSockets = (...paths: ReadonlyArray<string>) => {
  const made = ChildProcess.spawnSync("python3", [
    "-c",
    "import socket,sys\nfor p in sys.argv[1:]: socket.socket(socket.AF_UNIX).bind(p)",
    ...paths
  ])
  assert.strictEqual(made.status, 0, made.stderr.toString())
}

/**
 * A listener at `address` in a child process, dialled once from here with its
 * channel left open (a conversation socket exists), then killed with SIGKILL.
 * Returns the child's pid.
 */
const listenDialAndKill = (address: string) =>
  Effect.gen(function*() {
    const listener = yield* Child.node("peer.ts", ["channels", address, "60000"])
    yield* listener.waitFor((line) => line.startsWith("ready"))
    const client = yield* NngTransport.make({ closeTimeout: "100 millis" }).dial(address)
    yield* client.send(encoder.encode("hello"))
    assert.strictEqual(decoder.decode(yield* client.receive), "hello")
    yield* listener.kill
    assert.strictEqual(listener.process.signalCode, "SIGKILL")
    return listener.process.pid!
  })

/** The conversations' directory in `parent` named for process `pid`; fails when there is none. */
const leftBy = (parent: string, pid: number): string => {
  const found = conversationDirs(parent).filter((name) => name.includes(`-${pid}@`))
  assert.strictEqual(found.length, 1, `the killed listener (pid ${pid}) left its directory in ${parent}`)
  return found[0]!
}

/** A listener at `address` from this process serves a client. */
const serves = (listener: Transport.Listener, address: string) =>
  Effect.gen(function*() {
    const client = yield* NngTransport.make().dial(address)
    const server = yield* listener.accept
    yield* client.send(encoder.encode("again"))
    assert.strictEqual(decoder.decode(yield* server.receive), "again")
  })

describe("a killed nng+ipc:// listener's conversations", () => {
  it.live(
    "the next listener at the path removes the directory it left beside the socket",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const path = Path.join(dir, "l.ipc")
        const address = `nng+ipc://${path}`
        const killed = yield* listenDialAndKill(address)
        // what the audit saw: the stale socket, and a directory with the open conversation's socket in it
        assert.isTrue(Fs.lstatSync(path).isSocket())
        const left = conversationDirs(dir)
        assert.strictEqual(left.length, 1, `left: ${left.join(", ")}`)
        assert.strictEqual(Fs.readdirSync(Path.join(dir, left[0]!)).length, 1, "the conversation's socket")

        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* NngTransport.make().listen(address)
          const now = conversationDirs(dir)
          assert.notInclude(now, left[0], `the dead listener's directory (pid ${killed}) is gone`)
          assert.strictEqual(now.length, 1, `only the new listener's own directory: ${now.join(", ")}`)
          assert.include(now[0], `-${Process.encode(Process.self())}-`)
          yield* serves(listener, address)
        }))
        assert.deepStrictEqual(Fs.readdirSync(dir), [], "nothing left once the new listener closed")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("another path's directories stay until a listener takes that path", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const [first, second] = [`nng+ipc://${Path.join(dir, "a.ipc")}`, `nng+ipc://${Path.join(dir, "b.ipc")}`]
      const killedA = yield* listenDialAndKill(first)
      const killedB = yield* listenDialAndKill(second)
      const leftA = leftBy(dir, killedA)
      const leftB = leftBy(dir, killedB)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* NngTransport.make().listen(first)
        const now = conversationDirs(dir)
        assert.notInclude(now, leftA)
        assert.include(now, leftB, "b.ipc's directory is not a.ipc's listener's to remove")
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        yield* NngTransport.make().listen(second)
        assert.notInclude(conversationDirs(dir), leftB)
      }))
    }).pipe(Effect.scoped), 60_000)

  it.live(
    "a directory left in the temporary directory (lobby path too long) is removed from there",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        // a conversation's path beside this lobby would not fit in 107 bytes
        const deep = Path.join(dir, "d".repeat(100 - dir.length - 12))
        Fs.mkdirSync(deep)
        const address = `nng+ipc://${Path.join(deep, "lobby.ipc")}`
        const killed = yield* listenDialAndKill(address)
        assert.deepStrictEqual(conversationDirs(deep), [])
        const left = leftBy(Os.tmpdir(), killed)
        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* NngTransport.make().listen(address)
          assert.isFalse(Fs.existsSync(Path.join(Os.tmpdir(), left)), `${left} is gone from ${Os.tmpdir()}`)
          yield* serves(listener, address)
        }))
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "only what is exactly a dead listener's directory of this user goes, and in it only conversation sockets",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const address = `nng+ipc://${Path.join(dir, "l.ipc")}`
        const killed = yield* listenDialAndKill(address)
        const real = leftBy(dir, killed)
        const dead = real.split("-")[2]!
        assert.strictEqual(Process.liveness(Process.decode(dead)!), "dead")
        // names of this path's directories, as the listener makes them, with another owner or suffix
        const named = (owner: string, suffix: string) => real.replace(`-${dead}-`, `-${owner}-`).slice(0, -6) + suffix
        const socketName = "0123456789abcdef01234567"

        // a live listener's (another process of ours that still runs)
        const sleeper = yield* Child.spawn("sleep", ["60"])
        const live = Path.join(dir, named(Process.encode(Process.identify(sleeper.process.pid!)!), "LIVE01"))
        // a dead listener's, with something in it that is not a conversation socket
        const mixed = Path.join(dir, named(dead, "MIXED1"))
        // a symbolic link with a dead listener's name, to a directory holding a conversation-like socket
        const target = Path.join(dir, "target")
        const link = Path.join(dir, named(dead, "LINK01"))
        // names that are not exactly the pattern: the old `mkdtemp` form (as transport-pipe's staging too), a tail
        const old = Path.join(dir, ".eipc-AbC123")
        const tailed = Path.join(dir, named(dead, "TAIL01") + "x")
        // another user's, with a dead listener's name (root can make one for uid 65534)
        const theirs = Path.join(dir, named(dead, "THEIRS"))
        const holders = [live, mixed, target, old, tailed, ...(isRoot ? [theirs] : [])]
        for (const holder of holders) Fs.mkdirSync(holder, { mode: 0o700 })
        bindSockets(...holders.map((holder) => Path.join(holder, socketName)), Path.join(mixed, "other.sock"))
        Fs.writeFileSync(Path.join(mixed, "notes.txt"), "precious\n")
        Fs.writeFileSync(Path.join(mixed, "fedcba9876543210fedcba98"), "a file, not a socket\n")
        Fs.symlinkSync(target, link)
        if (isRoot) {
          Fs.chownSync(Path.join(theirs, socketName), 65534, 65534)
          Fs.chownSync(theirs, 65534, 65534)
        }

        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* NngTransport.make().listen(address)
          assert.isFalse(Fs.existsSync(Path.join(dir, real)), "the killed listener's directory is gone")
          // the live listener's directory and socket
          assert.isTrue(Fs.lstatSync(Path.join(live, socketName)).isSocket())
          // the dead one's conversation socket went; the rest, and so the directory, stayed
          assert.deepStrictEqual(Fs.readdirSync(mixed).toSorted(), [
            "fedcba9876543210fedcba98",
            "notes.txt",
            "other.sock"
          ])
          assert.strictEqual(Fs.readFileSync(Path.join(mixed, "notes.txt"), "utf8"), "precious\n")
          // the link and what it points to
          assert.strictEqual(Fs.readlinkSync(link), target)
          assert.isTrue(Fs.lstatSync(Path.join(target, socketName)).isSocket())
          for (const other of [old, tailed]) assert.isTrue(Fs.lstatSync(Path.join(other, socketName)).isSocket())
          if (isRoot) assert.isTrue(Fs.lstatSync(Path.join(theirs, socketName)).isSocket())
          yield* serves(listener, address)
        }))
      }).pipe(Effect.scoped),
    60_000
  )
})
