/**
 * What `listen` does with whatever is already at an `nng+ipc://` path. libnng
 * on its own removes anything whose connect is refused (a regular file too);
 * the transport must first apply transport-pipe's rule: only an absent path
 * or a stale socket of this user is taken; anything else is `AddressInUse`
 * naming its kind and owner, and is left exactly as it was. Also the default
 * policy: a peer without readable credentials is refused on ipc.
 */
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-path-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** Listening at `path` fails AddressInUse naming `kind` and our uid. */
const refusedAt = (path: string, kind: string) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(NngTransport.make().listen(`nng+ipc://${path}`))
    assert.strictEqual(error.reason._tag, "AddressInUse")
    assert.include(error.detail, `${kind} owned by uid ${process.getuid?.()}`)
  })

describe("nng+ipc:// listen leaves what is at its path alone", () => {
  it.live("a directory that does not exist, or no socket file: NotFound naming what is missing (nng said Entry not found)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const inMissing = `nng+ipc://${dir}/no-such-dir/a.ipc`
      const listen = yield* Effect.flip(NngTransport.make().listen(inMissing))
      assert.strictEqual(listen.reason._tag, "NotFound")
      assert.strictEqual(listen.detail, `cannot listen: directory ${dir}/no-such-dir does not exist`)
      assert.isFalse(Fs.existsSync(Path.join(dir, "no-such-dir")))
      const dial = yield* Effect.flip(Effect.scoped(NngTransport.make().dial(inMissing)))
      assert.strictEqual(dial.reason._tag, "NotFound")
      assert.strictEqual(dial.detail, `cannot connect: directory ${dir}/no-such-dir does not exist`)
      const absent = yield* Effect.flip(Effect.scoped(NngTransport.make().dial(`nng+ipc://${dir}/absent.ipc`)))
      assert.strictEqual(absent.reason._tag, "NotFound")
      assert.strictEqual(absent.detail, `cannot connect: nothing listens at ${dir}/absent.ipc: there is no socket file`)
    }).pipe(Effect.scoped))

  it.live("a regular file: AddressInUse naming it, content unchanged", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "notes.txt")
      Fs.writeFileSync(path, "precious\n")
      yield* refusedAt(path, "regular file")
      assert.strictEqual(Fs.readFileSync(path, "utf8"), "precious\n")
    }).pipe(Effect.scoped))

  it.live("a symbolic link: AddressInUse, link and target untouched", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const target = Path.join(dir, "target.txt")
      const path = Path.join(dir, "link.ipc")
      Fs.writeFileSync(target, "kept\n")
      Fs.symlinkSync(target, path)
      yield* refusedAt(path, "symbolic link")
      assert.strictEqual(Fs.readlinkSync(path), target)
      assert.strictEqual(Fs.readFileSync(target, "utf8"), "kept\n")
    }).pipe(Effect.scoped))

  it.live("a directory: AddressInUse, directory and its content untouched", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "dir.ipc")
      Fs.mkdirSync(path)
      Fs.writeFileSync(Path.join(path, "inside"), "x")
      yield* refusedAt(path, "directory")
      assert.strictEqual(Fs.readFileSync(Path.join(path, "inside"), "utf8"), "x")
    }).pipe(Effect.scoped))

  it.live("a live socket: AddressInUse, its server still reachable", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "live.ipc")
      const server = yield* Effect.acquireRelease(
        Effect.callback<Net.Server>((resume) => {
          const s = Net.createServer((c) => c.end())
          s.listen(path, () => resume(Effect.succeed(s)))
        }),
        (s) => Effect.callback<void>((resume) => void s.close(() => resume(Effect.void)))
      )
      const error = yield* Effect.flip(NngTransport.make().listen(`nng+ipc://${path}`))
      assert.strictEqual(error.reason._tag, "AddressInUse")
      assert.include(error.detail, "live")
      assert.isTrue(server.listening)
      assert.isTrue(Fs.lstatSync(path).isSocket())
    }).pipe(Effect.scoped))

  it.live("a stale socket of ours (connect refused) is replaced, and clients reach the new listener", () =>
    Effect.gen(function*() {
      const path = Path.join(yield* tempDir, "stale.ipc")
      // a socket file bound and never listened on: connecting is refused
      const made = ChildProcess.spawnSync("python3", [
        "-c",
        "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
        path
      ])
      assert.strictEqual(made.status, 0)
      assert.isTrue(Fs.lstatSync(path).isSocket())
      const transport = NngTransport.make()
      const listener = yield* transport.listen(`nng+ipc://${path}`)
      const client = yield* transport.dial(`nng+ipc://${path}`)
      const server = yield* listener.accept
      yield* client.send(encoder.encode("hi"))
      assert.strictEqual(decoder.decode(yield* server.receive), "hi")
    }).pipe(Effect.scoped))
})

describe("the default policy", () => {
  it("refuses a peer whose credentials could not be read", () => {
    const unknown: IpcChannel.PeerInfo = { description: "nng+ipc:///tmp/x" }
    assert.isFalse(NngTransport.sameUserOrRoot(unknown))
    assert.isTrue(NngTransport.sameUserOrRoot({ description: "x", uid: process.getuid?.() ?? 0 }))
    assert.isTrue(NngTransport.sameUserOrRoot({ description: "x", uid: 0 }))
    assert.isFalse(NngTransport.sameUserOrRoot({ description: "x", uid: 65534 }))
  })
})
