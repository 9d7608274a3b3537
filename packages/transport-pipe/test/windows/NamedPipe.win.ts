// What makes `pipe://` secure by default on Windows, checked under Wine (run by ./run.mjs; see
// ../Windows.test.ts): the pipe's DACL, and the pid and user each side reads and `authorize` judges.
// Wine runs every process as one user: another user's refusal cannot be shown here (see the README).
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import { NamedPipe, UnixSocket } from "@effect-ipc/transport-pipe"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import * as Win32 from "../../src/internal/win32.ts"

const peerScript = Path.resolve(import.meta.dirname, "../../../testing/src/peer.ts")
let n = 0
const address = () => `pipe://namedpipe-${process.pid}-${n++}`
const nameOf = (raw: string) => `\\\\.\\pipe\\${raw.slice("pipe://".length)}`
const text = (s: string) => new TextEncoder().encode(s)

/** A child Node process dialling `raw` (the conformance peer's streamer role), killed with the scope. */
const streamer = (raw: string) =>
  Effect.acquireRelease(
    Effect.callback<ChildProcess.ChildProcess, Error>((resume) => {
      const child = ChildProcess.spawn(
        process.execPath,
        [peerScript, "@effect-ipc/transport-pipe", "descriptor", "streamer", raw],
        { stdio: ["ignore", "pipe", "inherit"] }
      )
      resume(Effect.succeed(child))
    }),
    (child) => Effect.sync(() => void child.kill())
  )

/** The client end's handle on `name`, opened raw (closed with the scope). */
const rawClient = (name: string) =>
  Effect.acquireRelease(
    Effect.sync(() => Win32.openPipe(name)),
    (handle) => Effect.sync(() => Win32.isError(handle) ? undefined : Win32.closeHandle(handle))
  )

describe("NamedPipe (win32)", () => {
  it.live("every instance of the pipe allows only this user: its DACL read back with GetSecurityInfo", () =>
    Effect.gen(function*() {
      const user = NamedPipe.currentUser()
      assert.match(user ?? "", /^S-1-5-/)
      const transport = UnixSocket.make()
      const raw = address()
      const listener = yield* transport.listen(raw)
      // the first instance, and the one created after a client was accepted
      for (let i = 0; i < 2; i++) {
        const handle = yield* rawClient(nameOf(raw))
        assert.isFalse(Win32.isError(handle), `opened instance ${i}`)
        assert.strictEqual(Win32.daclOf(handle as number), `D:P(A;;GA;;;${user})`)
        yield* listener.accept
      }
    }).pipe(Effect.scoped))

  it.live("both ends see the other's pid and user, and the default authorize accepts this user", () =>
    Effect.gen(function*() {
      const transport = UnixSocket.make()
      const raw = address()
      const listener = yield* transport.listen(raw)
      const client = yield* transport.dial(raw)
      const server = yield* listener.accept
      const me = { pid: process.pid, user: NamedPipe.currentUser() }
      assert.deepStrictEqual({ pid: client.peer.pid, user: client.peer.user }, me)
      assert.deepStrictEqual({ pid: server.peer.pid, user: server.peer.user }, me)
      yield* client.send(text("hello"))
      assert.strictEqual(new TextDecoder().decode(yield* server.receive), "hello")
    }).pipe(Effect.scoped))

  it.live(
    "a listener reads a client process's pid: authorize admits only that process's connection",
    () =>
      Effect.gen(function*() {
        const raw = address()
        let allowed = -1
        const seen: Array<IpcChannel.PeerInfo> = []
        const listener = yield* UnixSocket.make({
          authorize: (peer) => {
            seen.push(peer)
            return peer.pid === allowed
          }
        }).listen(raw)
        // this process's own connection is refused: the listener drops it
        const refused = yield* UnixSocket.make().dial(raw)
        const error = yield* Effect.flip(refused.receive)
        assert.include(["ConnectionLost", "Closed"], error.reason._tag)
        // the child's is accepted, and its pid is on the channel
        const child = yield* streamer(raw)
        allowed = child.pid!
        const server = yield* listener.accept
        assert.strictEqual(server.peer.pid, child.pid)
        assert.strictEqual(server.peer.user, NamedPipe.currentUser())
        yield* server.receive
        assert.deepStrictEqual(seen.map((peer) => peer.pid), [process.pid, child.pid])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("dial reads the server's pid and user: a server authorize refuses is PeerRejected, nothing sent", () =>
    Effect.gen(function*() {
      const raw = address()
      const listener = yield* UnixSocket.make().listen(raw)
      const byPid = yield* Effect.flip(UnixSocket.make({ authorize: (peer) => peer.pid !== process.pid }).dial(raw))
      assert.strictEqual(byPid.reason._tag, "PeerRejected")
      assert.include(byPid.detail, `pid ${process.pid}`)
      const byUser = yield* Effect.flip(
        UnixSocket.make({ authorize: (peer) => peer.user !== NamedPipe.currentUser() }).dial(raw)
      )
      assert.strictEqual(byUser.reason._tag, "PeerRejected")
      // the listener served the refused dials (its own authorize admits this user), which left
      // without a byte; the next client is served as well
      const client = yield* UnixSocket.make().dial(raw)
      yield* listener.accept
      yield* listener.accept
      const server = yield* listener.accept
      yield* client.send(text("after"))
      assert.strictEqual(new TextDecoder().decode(yield* server.receive), "after")
    }).pipe(Effect.scoped))
})
