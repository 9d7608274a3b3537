import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as StreamChannel from "@effect-ipc/core/StreamChannel"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Stream from "node:stream"

// two ends of a real Unix socket (Node's reads: 64 KiB chunks, so a 1 MiB frame spans many), in a temporary
// directory removed with the scope
const socketPair = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ readonly dir: string; readonly server: Net.Server; readonly a: Net.Socket; readonly b: Net.Socket }>(
      (resolve, reject) => {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-stream-"))
        const path = Path.join(dir, "s")
        const server = Net.createServer()
        server.once("connection", (b) => resolve({ dir, server, a, b }))
        server.listen(path)
        const a = Net.connect(path)
        a.once("error", reject)
      }
    )
  ),
  ({ dir, server }) =>
    Effect.sync(() => {
      server.close()
      Fs.rmSync(dir, { recursive: true, force: true })
    })
)

/** Sends 16, 4 KiB, 64 KiB and 1 MiB messages from a buffer rewritten after each `send`; checks what arrives. */
const reuseAfterSend = (client: IpcChannel.IpcChannel, server: IpcChannel.IpcChannel) =>
  Effect.gen(function*() {
    for (const size of [16, 4096, 64 * 1024, 1024 * 1024 + 17]) {
      const buffer = new Uint8Array(size).fill(1)
      yield* client.send(buffer)
      buffer.fill(2)
      yield* client.send(buffer)
      buffer.fill(3)
      const first = yield* server.receive
      const second = yield* server.receive
      yield* client.send(buffer)
      buffer.fill(4)
      const third = yield* server.receive
      // later sends of the same size, once the first ones were written: nothing received may change
      yield* client.send(buffer)
      yield* server.receive
      assert.strictEqual(first.byteLength, size)
      assert.strictEqual(second.byteLength, size)
      assert.strictEqual(third.byteLength, size)
      assert.isTrue(first.every((byte) => byte === 1), `${size} B: the first message changed`)
      assert.isTrue(second.every((byte) => byte === 2), `${size} B: the second message changed`)
      assert.isTrue(third.every((byte) => byte === 3), `${size} B: the third message changed`)
    }
  })

describe("StreamChannel", () => {
  // the receiver owns what it receives: a sender that reuses its buffer after `send` changes nothing already
  // sent, and a message stays valid after later receives (frames inside one chunk and frames spread over many)
  it.live("delivers messages that the sender's later writes and later messages leave alone", () =>
    Effect.gen(function*() {
      const { a, b } = yield* socketPair
      const client = yield* StreamChannel.makeScoped({ readable: a, writable: a }, "test://a")
      const server = yield* StreamChannel.makeScoped({ readable: b, writable: b }, "test://b")
      yield* reuseAfterSend(client, server)
    }).pipe(Effect.scoped))

  // a stream that is not an OS socket may hand the very chunk written to its reader (an in-process pair):
  // the channel must not write into a chunk again once it has been written
  it.live("over an in-process stream pair too, messages are intact", () =>
    Effect.gen(function*() {
      const [a, b] = Stream.duplexPair()
      const client = yield* StreamChannel.makeScoped({ readable: a, writable: a }, "test://a")
      const server = yield* StreamChannel.makeScoped({ readable: b, writable: b }, "test://b")
      yield* reuseAfterSend(client, server)
    }).pipe(Effect.scoped))
})
