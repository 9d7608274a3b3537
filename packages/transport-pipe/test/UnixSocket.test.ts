import { SocketPath, UnixSocket } from "@effect-ipc/transport-pipe"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
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

  it.live("a close that gives up on a peer that does not read: a warning at the sender, ConnectionLost at the peer", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        lines.push(`${logLevel} ${Array.isArray(message) ? message.map(String).join(" ") : String(message)}`)
      })
      const slow = UnixSocket.make({ lingerTimeout: "200 millis", maxBufferedBytes: 1024 * 1024 })
      const listener = yield* slow.listen(`unix:${Path.join(dir, "linger.sock")}`)
      const client = yield* slow.dial(listener.address)
      const server = yield* listener.accept
      // 32 MiB to a reader that does not read: far more than its inbox and the kernel's buffers hold
      const sender = yield* Effect.forkScoped(
        Effect.forEach(Array.from({ length: 32 }), () => client.send(new Uint8Array(1024 * 1024)), { discard: true })
      )
      yield* Effect.sleep("500 millis")
      yield* client.close.pipe(Effect.provide(Logger.layer([logger])))
      yield* Fiber.await(sender)
      assert.strictEqual(lines.length, 1, lines.join("\n"))
      assert.match(lines[0]!, /^Warn close gave up after 200 ms: [1-9][0-9]* bytes sent before it never left/)
      // the reader gets what had arrived, then the loss: never a graceful end
      const end = yield* Effect.flip(Effect.forever(server.receive))
      assert.strictEqual(end.reason._tag, "ConnectionLost")
    }).pipe(Effect.scoped))
})
