/**
 * A Node socket whose write failed (EPIPE, ECONNRESET: the peer process was
 * killed) takes further writes without a word and holds none of them
 * (`bufferedAmount` 0) until its error event runs; a sender that never waits
 * holds that event off. With the reader SIGKILLed mid-stream on a busy
 * machine, 256 messages of 1 to 8 MiB were "sent" into nothing over 2 to 20 s
 * before `ConnectionLost`. The server's link looks at the socket's error
 * before each write: the send after the failed write fails `ConnectionLost`,
 * and what the peer sent before it went is still read.
 *
 * Here the reader is a `ws` client in a process of its own that sends one
 * message and then reads nothing; once the listener has filled its socket a
 * little, it is killed, and the listener, without giving its event loop a
 * turn, waits for the process to be gone (its sockets closed: the kernel
 * answers the next write with a reset, unread data being left) and sends on.
 */
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { freshAddress, sweepTokenFiles } from "./helpers.ts"

afterAll(sweepTokenFiles)

const root = Path.resolve(import.meta.dirname, "../../..")

/** A `ws` client that offers the token, sends one message [7], stops reading and says `ready`. */
const stalledReader = `
const WebSocket = require("ws")
const [url, token] = process.argv.slice(1)
const ws = new WebSocket(url, ["effect-ipc.v1", "effect-ipc.token." + token])
ws.on("open", () => {
  ws.send(Buffer.from([7]))
  Reflect.get(ws, "_socket").pause()
  process.stdout.write("ready\\n")
})
// a paused socket holds no event loop open: the process lives until it is killed
setInterval(() => {}, 60_000)
ws.on("error", (e) => { process.stderr.write(String(e) + "\\n"); process.exit(2) })
`

/** True once `pid` has exited (a zombie or reaped): its descriptors are closed. */
const gone = (pid: number): boolean => {
  try {
    return Fs.readFileSync(`/proc/${pid}/stat`, "latin1").replace(/^.*\) /s, "").startsWith("Z")
  } catch {
    return true
  }
}

describe("a reader killed while the listener sends without waiting", () => {
  it.live("the send after the failed write fails ConnectionLost; what the reader sent is still read", () =>
    Effect.gen(function*() {
      const token = Crypto.randomBytes(32).toString("base64url")
      const listener = yield* Ws.WsServer.listen(freshAddress("killed"), { token, tokenFile: false })
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.spawn(process.execPath, ["-e", stalledReader, listener.url.split("?")[0]!, token], {
            cwd: root,
            stdio: ["ignore", "pipe", "inherit"]
          })
        ),
        (spawned) => Effect.sync(() => spawned.kill("SIGKILL"))
      )
      yield* Effect.callback<void>((resume) => {
        child.stdout.on("data", (chunk: Buffer) => {
          if (chunk.toString().includes("ready")) resume(Effect.void)
        })
      })
      const channel = yield* listener.accept
      const message = new Uint8Array(64 * 1024)
      // unread data in the reader's socket: its end answers with a reset once the process is gone
      for (let i = 0; i < 8; i++) yield* channel.send(message)
      // killed, and waited for without a turn of the event loop, where the socket's error event would run
      const sent = yield* Effect.sync(() => {
        child.kill("SIGKILL")
        while (!gone(child.pid!)) {
          // the kernel closes its sockets as it exits
        }
      }).pipe(Effect.andThen(Effect.gen(function*() {
        let count = 0
        for (let i = 0; i < 50; i++) {
          const result = yield* Effect.result(channel.send(message))
          if (Result.isFailure(result)) {
            assert.strictEqual(result.failure.reason._tag, "ConnectionLost", result.failure.message)
            return count
          }
          count++
        }
        return count
      })))
      // the first write after the kill meets the reset; the next send is refused
      assert.isAtMost(sent, 2, `sends that succeeded after the reader was gone: ${sent}`)
      assert.deepStrictEqual([...(yield* channel.receive)], [7])
    }).pipe(Effect.scoped))

  it.live("the same for a client whose listener was killed: the send after the failed write fails ConnectionLost", () =>
    Effect.gen(function*() {
      const address = freshAddress("killed-server")
      const server = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.spawn(
            "bash",
            ["scripts/node.sh", "packages/transport-ws/test/fixtures/echo-server.ts", address],
            { cwd: root, stdio: ["pipe", "pipe", "inherit"] }
          )
        ),
        (spawned) => Effect.sync(() => spawned.kill("SIGKILL"))
      )
      const token = yield* Effect.callback<string>((resume) => {
        let out = ""
        server.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString()
          const ready = /^ready (\S+)$/m.exec(out)
          if (ready !== null) resume(Effect.succeed(ready[1]!))
        })
      })
      const channel = yield* Ws.WsTransport.make().dial(`${address}?token=${token}`)
      // stopped, the listener reads nothing: what is sent stays unread in its socket
      process.kill(server.pid!, "SIGSTOP")
      const message = new Uint8Array(64 * 1024)
      for (let i = 0; i < 8; i++) yield* channel.send(message)
      const sent = yield* Effect.sync(() => {
        server.kill("SIGKILL")
        while (!gone(server.pid!)) {
          // the kernel closes its sockets as it exits
        }
      }).pipe(Effect.andThen(Effect.gen(function*() {
        let count = 0
        for (let i = 0; i < 50; i++) {
          const result = yield* Effect.result(channel.send(message))
          if (Result.isFailure(result)) {
            assert.strictEqual(result.failure.reason._tag, "ConnectionLost", result.failure.message)
            return count
          }
          count++
        }
        return count
      })))
      assert.isAtMost(sent, 2, `sends that succeeded after the listener was gone: ${sent}`)
    }).pipe(Effect.scoped))
})
