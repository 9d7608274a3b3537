import { SocketPath, UnixSocket } from "@effect-ipc/transport-pipe"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-unix-t-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))
const transport = UnixSocket.make()

describe("UnixSocket", () => {
  it.live("replaces a stale socket file left by a dead server", () =>
    Effect.gen(function*() {
      const path = Path.join(dir, "stale.sock")
      // a server killed with SIGKILL leaves its socket file behind
      const result = ChildProcess.spawnSync(process.execPath, [
        "-e",
        `require("net").createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, "SIGKILL"))`
      ])
      assert.strictEqual(result.signal, "SIGKILL")
      assert.isTrue(Fs.existsSync(path), "the dead server left its socket file")
      const address = `unix://${path}`
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(new Uint8Array([1]))
      assert.deepStrictEqual([...(yield* server.receive)], [1])
    }).pipe(Effect.scoped))

  it.live("never steals the socket of a live server", () =>
    Effect.gen(function*() {
      const address = `unix://${Path.join(dir, "live.sock")}`
      yield* transport.listen(address)
      const error = yield* Effect.flip(Effect.scoped(transport.listen(address)))
      assert.strictEqual(error.reason._tag, "AddressInUse")
      // the first server still works
      yield* transport.dial(address)
    }).pipe(Effect.scoped))

  it.effect("names the platform limit for a path that is too long", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(SocketPath.resolve(`unix:///tmp/${"x".repeat(200)}.sock`))
      assert.strictEqual(error.reason._tag, "NameTooLong")
      assert.include(error.detail, String(UnixSocket.maxPathBytes))
    }))

  it.live("serves Linux abstract sockets (unix:@name), which leave no file", () =>
    Effect.gen(function*() {
      const address = `unix:@effect-ipc-test-${process.pid}`
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* server.send(new Uint8Array([9, 9]))
      assert.deepStrictEqual([...(yield* client.receive)], [9, 9])
    }).pipe(Effect.scoped))
})
