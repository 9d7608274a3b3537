import * as Transport from "@effect-ipc/core/Transport"
import { SocketPath, UnixSocket } from "@effect-ipc/transport-pipe"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { pythonPeer, run } from "./helpers.ts"

// a directory other users may enter, so that only the socket's own mode protects it
const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-sec-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))
Fs.chmodSync(dir, 0o755)
const nobody = 65534
const isRoot = process.getuid?.() === 0

const echo = (transport: Transport.TransportShape, address: string) =>
  Effect.gen(function*() {
    const listener = yield* transport.listen(address)
    yield* Effect.forkScoped(
      Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
    )
  })

/** Runs the Python peer as another user. */
const pythonAs = (uid: number, args: ReadonlyArray<string>) =>
  Effect.map(run("python3", [pythonPeer, ...args], { uid }), (r) => ({ ...r, stdout: r.stdout.toString() }))

describe("Unix socket security", () => {
  it.live("creates the socket file with mode 0600, or the mode asked for", () =>
    Effect.gen(function*() {
      const a = Path.join(dir, "mode-a.sock")
      const b = Path.join(dir, "mode-b.sock")
      yield* UnixSocket.make().listen(`unix://${a}`)
      yield* UnixSocket.make({ mode: 0o660 }).listen(`unix://${b}`)
      assert.strictEqual(Fs.statSync(a).mode & 0o777, 0o600)
      assert.strictEqual(Fs.statSync(b).mode & 0o777, 0o660)
      // no staging directory is left behind
      assert.deepStrictEqual(Fs.readdirSync(dir).filter((f) => f.startsWith(".eipc-")), [])
    }).pipe(Effect.scoped))

  it.live("puts each side's pid, uid and gid on the channel", () =>
    Effect.gen(function*() {
      const transport = UnixSocket.make()
      const address = `unix://${Path.join(dir, "cred.sock")}`
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      for (const peer of [client.peer, server.peer]) {
        assert.strictEqual(peer.pid, process.pid)
        assert.strictEqual(peer.uid, process.getuid!())
        assert.strictEqual(peer.gid, process.getgid!())
      }
    }).pipe(Effect.scoped))

  it.live("puts pipe://name sockets in a private runtime directory", () =>
    Effect.gen(function*() {
      const name = `sec-${process.pid}`
      const { path } = yield* SocketPath.resolve(`pipe://${name}`)
      const transport = UnixSocket.make()
      yield* echo(transport, `pipe://${name}`)
      const stat = Fs.statSync(Path.dirname(path))
      assert.strictEqual(stat.mode & 0o777, 0o700)
      assert.strictEqual(stat.uid, process.getuid!())
      const client = yield* transport.dial(`pipe://${name}`)
      yield* client.send(new Uint8Array([5]))
      assert.deepStrictEqual([...(yield* client.receive)], [5])
      const bad = yield* Effect.flip(SocketPath.resolve("pipe://../../etc/passwd"))
      assert.strictEqual(bad.reason, "InvalidAddress")
    }).pipe(Effect.scoped))

  // switching to another uid needs root, which CI has
  it.live.runIf(isRoot)("another user cannot connect to a 0600 socket", () =>
    Effect.gen(function*() {
      const path = Path.join(dir, "private.sock")
      yield* echo(UnixSocket.make(), `unix://${path}`)
      const result = yield* pythonAs(nobody, [path, "hi"])
      assert.notStrictEqual(result.status, 0)
      assert.include(result.stderr, "Permission denied")
    }).pipe(Effect.scoped))

  it.live.runIf(isRoot)("refuses a peer running as another user and keeps serving", () =>
    Effect.gen(function*() {
      // an abstract socket has no file mode: only the credential check stands in the way
      const address = `unix:@effect-ipc-sec-${process.pid}`
      const transport = UnixSocket.make()
      yield* echo(transport, address)
      const refused = yield* pythonAs(nobody, [`@effect-ipc-sec-${process.pid}`, "hi"])
      assert.notStrictEqual(refused.status, 0)
      assert.match(refused.stderr, /stream ended|Broken pipe|Connection reset/)
      const client = yield* transport.dial(address)
      yield* client.send(new Uint8Array([1]))
      assert.deepStrictEqual([...(yield* client.receive)], [1])
    }).pipe(Effect.scoped))

  it.live.runIf(isRoot)("serves another user when authorize says so", () =>
    Effect.gen(function*() {
      const name = `effect-ipc-auth-${process.pid}`
      yield* echo(UnixSocket.make({ authorize: (peer) => peer.uid === nobody }), `unix:@${name}`)
      const result = yield* pythonAs(nobody, [`@${name}`, "hi"])
      assert.strictEqual(result.status, 0, result.stderr)
      assert.strictEqual(result.stdout, "hi\nclosed\n")
    }).pipe(Effect.scoped))
})
