import * as Transport from "@effect-ipc/core/Transport"
import { UnixSocket } from "@effect-ipc/transport-pipe"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { pythonPeer, run } from "./helpers.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-interop-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))
const transport = UnixSocket.make()

/** An echo server that records who connected. */
const echoServer = (address: string) =>
  Effect.gen(function*() {
    const listener = yield* transport.listen(address)
    const peers: Array<{ pid: number | undefined; uid: number | undefined }> = []
    yield* Effect.forkScoped(Transport.serve(listener, (channel) => {
      peers.push({ pid: channel.peer.pid, uid: channel.peer.uid })
      return Effect.forever(Effect.flatMap(channel.receive, channel.send))
    }))
    return peers
  })

describe("wire-format interop", () => {
  it.live("a Python peer written from the README talks to the server", () =>
    Effect.gen(function*() {
      const path = Path.join(dir, "py.sock")
      const peers = yield* echoServer(`unix://${path}`)
      const result = yield* run("python3", [pythonPeer, path, "hello", "", "ünïcödé", "x".repeat(100_000)])
      assert.strictEqual(result.status, 0, result.stderr)
      assert.deepStrictEqual(result.stdout.toString().split("\n"), [
        "hello",
        "",
        "ünïcödé",
        "x".repeat(100_000),
        "closed",
        ""
      ])
      assert.strictEqual(peers.length, 1)
      assert.strictEqual(peers[0]!.uid, process.getuid!())
      assert.notStrictEqual(peers[0]!.pid, process.pid)
    }).pipe(Effect.scoped))

  it.live("socat piping raw frames gets the same frames back", () =>
    Effect.gen(function*() {
      const path = Path.join(dir, "socat.sock")
      yield* echoServer(`unix://${path}`)
      const frames = Buffer.from([
        [1, 0, 0, 0, 0, 2, 0x68, 0x69], // data "hi"
        [1, 0, 0, 0, 0, 0], // data ""
        [1, 1, 0, 0, 0, 0] // close
      ].flat())
      const result = yield* run("socat", ["-t", "5", "-", `UNIX-CONNECT:${path}`], { input: frames })
      assert.strictEqual(result.status, 0, result.stderr)
      assert.deepStrictEqual([...result.stdout], [1, 0, 0, 0, 0, 2, 0x68, 0x69, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0])
    }).pipe(Effect.scoped))
})
