import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as Observability from "@effect-ipc/core/Observability"
import { SocketPath, UnixSocket } from "@effect-ipc/transport-pipe"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Result from "effect/Result"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as V8 from "node:v8"
import * as Vm from "node:vm"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-unix-t-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))
const transport = UnixSocket.make()
V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void
/** Memory that live objects hold (after a full collection): what a flood would fill. */
const held = (): number => {
  gc()
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}

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

  // (a listener that dropped the connection over a message past its maxMessageSize: close said nothing, and the
  // CLI's send exited 0)
  it.live("closeChecked fails ConnectionLost when the peer drops the connection instead of answering the goodbye", () =>
    Effect.gen(function*() {
      // a peer that reads some bytes and then lets go of the socket: with bytes unread (1 MiB sent: a reset), and
      // with everything read (an end of stream without a close frame)
      for (const [how, size] of [["reset", 1024 * 1024], ["end", 4096]] as const) {
        const readAll = size === 4096
        const path = Path.join(dir, `drop-${how}.sock`)
        const server = Net.createServer((socket) => {
          let got = 0
          socket.on("data", (chunk) => {
            got += chunk.length
            // the 4 KiB message's frame and our close frame (6 bytes each)
            if (!readAll || got >= size + 12) socket.destroy()
          })
        })
        yield* Effect.acquireRelease(
          Effect.callback<void>((resume) => void server.listen(path, () => resume(Effect.void))),
          () => Effect.sync(() => server.close())
        )
        for (const wrapped of [false, true]) {
          const dialled = yield* transport.dial(`unix://${path}`)
          const client = wrapped ? Observability.instrumentChannel(dialled, "dialled", Context.empty()) : dialled
          yield* client.send(new Uint8Array(size))
          if (readAll) yield* Effect.sleep("100 millis")
          const ended = yield* Effect.result(IpcChannel.closeChecked(client)).pipe(Effect.timeout("10 seconds"))
          assert.isTrue(Result.isFailure(ended), `${how}, wrapped ${wrapped}: closeChecked succeeded`)
          if (Result.isFailure(ended)) {
            assert.strictEqual(ended.failure.reason._tag, "ConnectionLost", ended.failure.message)
          }
        }
      }
    }).pipe(Effect.scoped))

  it.live("closeChecked succeeds once the peer answered; a close that gave up is its error, with no warning", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ message }) => {
        lines.push(Array.isArray(message) ? message.map(String).join(" ") : String(message))
      })
      const listener = yield* transport.listen(`unix:${Path.join(dir, "checked.sock")}`)
      const client = yield* transport.dial(listener.address)
      const server = yield* listener.accept
      yield* client.send(new Uint8Array([1]))
      assert.deepStrictEqual([...(yield* server.receive)], [1])
      yield* IpcChannel.closeChecked(client).pipe(Effect.provide(Logger.layer([logger])))

      const slow = UnixSocket.make({ lingerTimeout: "200 millis", maxBufferedBytes: 1024 * 1024 })
      const slowListener = yield* slow.listen(`unix:${Path.join(dir, "checked-linger.sock")}`)
      const slowClient = yield* slow.dial(slowListener.address)
      yield* slowListener.accept
      // 32 MiB to a reader that does not read
      const sender = yield* Effect.forkScoped(
        Effect.forEach(Array.from({ length: 32 }), () => slowClient.send(new Uint8Array(1024 * 1024)), {
          discard: true
        })
      )
      yield* Effect.sleep("500 millis")
      const error = yield* Effect.flip(IpcChannel.closeChecked(slowClient)).pipe(
        Effect.provide(Logger.layer([logger]))
      )
      yield* Fiber.await(sender)
      assert.strictEqual(error.reason._tag, "ConnectionLost")
      assert.match(error.detail, /^close gave up after 200 ms: [1-9][0-9]* bytes sent before it never left/)
      // asked again it says the same, and a later close (a scope's) logs nothing: the error said it
      const again = yield* Effect.flip(IpcChannel.closeChecked(slowClient))
      assert.strictEqual(again.detail, error.detail)
      yield* slowClient.close.pipe(Effect.provide(Logger.layer([logger])))
      assert.deepStrictEqual(lines, [], "nothing logged: the error says it")
    }).pipe(Effect.scoped))

  it.live(
    "closeChecked against a peer process that floods and never reads: ConnectionLost within two lingers, memory bounded",
    () =>
      Effect.gen(function*() {
        const path = Path.join(dir, "flooder.sock")
        // a peer process that writes 64 KiB data frames as fast as we take them, reads nothing and never says goodbye
        const flooder = ChildProcess.spawn(process.execPath, [
          "-e",
          `const net = require("net")
         const frame = Buffer.alloc(6 + 65536); frame[0] = 1; frame.writeUInt32BE(65536, 2)
         let frames = 0
         net.createServer((socket) => {
           socket.pause()
           socket.on("error", () => {})
           const flood = () => { while (socket.writable && socket.write(frame)) frames++ }
           socket.on("drain", flood)
           flood()
         }).listen(${JSON.stringify(path)}, () => console.log("listening"))
         setInterval(() => console.log("frames " + frames), 100)`
        ], { stdio: ["ignore", "pipe", "inherit"] })
        const lines: Array<string> = []
        flooder.stdout.setEncoding("utf8").on("data", (chunk: string) => lines.push(...chunk.trim().split("\n")))
        yield* Effect.addFinalizer(() => Effect.sync(() => flooder.kill("SIGKILL")))
        for (let i = 0; i < 200 && !lines.includes("listening"); i++) yield* Effect.sleep("25 millis")
        const framesSent = () => Number(lines.findLast((line) => line.startsWith("frames "))?.slice(7) ?? 0)
        const linger = 300
        const flooded = UnixSocket.make({ lingerTimeout: `${linger} millis` })
        const client = yield* flooded.dial(`unix://${path}`)
        // 8 MiB the peer never reads, and its flood coming in
        yield* Effect.forkScoped(
          Effect.forEach(Array.from({ length: 8 }), () => client.send(new Uint8Array(1024 * 1024)), { discard: true })
        )
        // the flood fills what we buffer, then our reading pauses and holds it back: the peer's count stops
        const reports = () => lines.filter((line) => line.startsWith("frames ")).slice(-2)
        const heldBack = () => {
          const [a, b] = reports()
          return b !== undefined && a === b && framesSent() > 16
        }
        for (let i = 0; i < 400 && !heldBack(); i++) yield* Effect.sleep("25 millis")
        const baseline = held()
        const before = framesSent()
        // the close gives up by its linger (said in its error), not by the 10 s guard (no wall-clock assert: load)
        const error = yield* Effect.flip(IpcChannel.closeChecked(client)).pipe(Effect.timeout("10 seconds"))
        assert.strictEqual(error.reason._tag, "ConnectionLost", error.message)
        assert.match(error.detail, /^close gave up after 300 ms/)
        // the flood filled what we buffer before the close; after it, what arrives is dropped (eight inboxes' worth at
        // most): it cannot go on into our memory
        assert.isAbove(before, 16, "the peer flooded")
        // what arrived during the close is garbage, freed as the machine gets to it; what is still held after a
        // while the flood filled (less than one inbox: the inbox itself went with the channel)
        const grown = () => (held() - baseline) / (1024 * 1024)
        for (let i = 0; i < 100 && grown() >= 8; i++) yield* Effect.sleep("50 millis")
        assert.isBelow(grown(), 8, "the flood filled our memory")
      }).pipe(Effect.scoped),
    30_000
  )

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
