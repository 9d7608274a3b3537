/**
 * What an `ipc` listener removes as it closes: its own socket file, and only
 * that. libnng unlinks the path it bound whatever is there by then; so a
 * listener (in another process, stopped gracefully) whose file was removed,
 * and whose path a successor took since, must leave the successor's socket
 * in place and reachable, as transport-pipe's `unix://` does
 * (`Listen.test.ts` "a listener closing after a successor took its path leaves the successor's socket").
 */
import { NngTransport, Rep, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-close-path-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** Starts `peer.ts ROLE ADDRESS` and waits until it listens. */
const peer = (role: string, address: string) =>
  Effect.gen(function*() {
    const child = yield* Child.node("peer.ts", [role, address])
    yield* child.waitFor((line) => line.startsWith("ready"))
    return child
  })

/** Stops `child` gracefully (SIGTERM: its scope closes) and waits for it to exit. */
const stop = (child: Child.Child) =>
  Effect.gen(function*() {
    child.process.kill("SIGTERM")
    yield* child.exited
  })

describe("an ipc listener closing in another process", () => {
  it.live("a Rep whose file was removed leaves the socket of the Rep that took its path since", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "svc.ipc")
      const address = `ipc://${path}`
      const first = yield* peer("rep", address)
      Fs.unlinkSync(path)
      yield* Rep.serve({ listen: address }, (body) => Effect.succeed(body))
      const ino = Fs.lstatSync(path).ino
      yield* stop(first)
      assert.strictEqual(Fs.lstatSync(path, { throwIfNoEntry: false })?.ino, ino, "the successor's socket is there")
      const requester = yield* Req.make({ dial: address, timeout: "10 seconds" })
      const reply = yield* requester.request(encoder.encode("still here"))
      assert.strictEqual(decoder.decode(reply), "still here")
    }).pipe(Effect.scoped))

  it.live("a transport listener whose file was removed leaves its successor's socket, reachable", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "chan.ipc")
      const address = `nng+ipc://${path}`
      const first = yield* peer("channels", address)
      Fs.unlinkSync(path)
      const transport = NngTransport.make()
      const successor = yield* transport.listen(address)
      const ino = Fs.lstatSync(path).ino
      yield* stop(first)
      assert.strictEqual(Fs.lstatSync(path, { throwIfNoEntry: false })?.ino, ino, "the successor's socket is there")
      const client = yield* transport.dial(address)
      const server = yield* successor.accept
      yield* client.send(encoder.encode("hi"))
      assert.strictEqual(decoder.decode(yield* server.receive), "hi")
    }).pipe(Effect.scoped))

  it.live("a listener still owning its file removes it as it closes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const rep = Path.join(dir, "own.ipc")
      const channels = Path.join(dir, "own-channels.ipc")
      const children = [yield* peer("rep", `ipc://${rep}`), yield* peer("channels", `nng+ipc://${channels}`)]
      assert.isTrue(Fs.existsSync(rep) && Fs.existsSync(channels))
      yield* Effect.forEach(children, stop, { discard: true })
      assert.deepStrictEqual(Fs.readdirSync(dir), [])
    }).pipe(Effect.scoped))
})

// a mount namespace whose /proc is an empty tmpfs (a container or chroot without /proc): root and unshare only
const canHideProc = process.getuid?.() === 0 &&
  ChildProcess.spawnSync("unshare", ["-m", "sh", "-c", "mount -t tmpfs none /proc"]).status === 0

describe.skipIf(!canHideProc)("an ipc listener in a process without /proc", () => {
  it.live("listens (bound by its path) and answers", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "noproc.ipc")
      const address = `ipc://${path}`
      const child = yield* Child.spawn("unshare", [
        "-m",
        "sh",
        "-c",
        "mount -t tmpfs none /proc && exec \"$0\" \"$@\"",
        process.execPath,
        ...Child.nodeArgs("peer.ts", ["rep", address])
      ])
      yield* child.waitFor((line) => line.startsWith("ready"))
      const requester = yield* Req.make({ dial: address, timeout: "10 seconds" })
      assert.strictEqual(decoder.decode(yield* requester.request(encoder.encode("no proc"))), "no proc")
      yield* stop(child)
      assert.isFalse(Fs.existsSync(path), "its socket file went as it closed")
    }).pipe(Effect.scoped))
})

describe("an ipc listener whose directory on the path was swapped for a link to another", () => {
  // its file was looked at and removed by path: with a link swapped in for `d` it looked at the other directory's
  // file (not its own: left), and a swap between the two steps removed that file instead
  it.live("removes its socket file from the directory it bound in as it closes, nothing from the other", () =>
    Effect.gen(function*() {
      const base = yield* tempDir
      const [d, real, other] = ["d", "real", "other"].map((name) => Path.join(base, name))
      Fs.mkdirSync(d)
      Fs.mkdirSync(other)
      Fs.writeFileSync(Path.join(other, "x.ipc"), "precious")
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Rep.serve({ listen: `ipc://${Path.join(d, "x.ipc")}` }, (body) => Effect.succeed(body))
        assert.isTrue(Fs.lstatSync(Path.join(d, "x.ipc")).isSocket())
        Fs.renameSync(d, real)
        Fs.symlinkSync(other, d)
      }))
      assert.deepStrictEqual(Fs.readdirSync(real), [], "its socket file is removed")
      assert.strictEqual(Fs.readFileSync(Path.join(other, "x.ipc"), "utf8"), "precious")
    }).pipe(Effect.scoped))
})
