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
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
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

/**
 * Kills `child` and waits, without a turn of the event loop (where the socket's error event would run), until it is
 * gone; then sends up to `SENDS` messages of 64 KiB on `channel` at once: how many succeeded before one failed (it
 * must fail `ConnectionLost`). Once the kernel has the peer's reset, the next write fails and the send after it is
 * refused; until then (a loaded machine may deliver it late) the kernel's buffers take a few MiB, and then the
 * channel's high-water mark holds the sender, whose wait lets the error event run. Without the check, every send
 * after the reset "succeeded".
 */
const SENDS = 400

const sendsAfterKilling = (child: ChildProcess.ChildProcess, channel: IpcChannel.IpcChannel) =>
  Effect.sync(() => {
    child.kill("SIGKILL")
    while (!gone(child.pid!)) {
      // the kernel closes its sockets as it exits
    }
  }).pipe(Effect.andThen(Effect.gen(function*() {
    const message = new Uint8Array(64 * 1024)
    let count = 0
    for (let i = 0; i < SENDS; i++) {
      const result = yield* Effect.result(channel.send(message))
      if (Result.isFailure(result)) {
        assert.strictEqual(result.failure.reason._tag, "ConnectionLost", result.failure.message)
        return count
      }
      count++
    }
    return count
  })))

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
      // unread data in the reader's socket (its end answers with a reset once the process is gone), little enough
      // for the kernel's buffers to take at once: nothing waits in the socket when the reader dies
      for (let i = 0; i < 8; i++) yield* channel.send(new Uint8Array(1024))
      const sent = yield* sendsAfterKilling(child, channel)
      assert.isBelow(sent, SENDS, `sends that succeeded after the reader was gone: ${sent}`)
      assert.deepStrictEqual([...(yield* channel.receive)], [7])
    }).pipe(Effect.scoped))
})
