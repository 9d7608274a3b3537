/**
 * The README's wire section: a text message is its UTF-8 bytes, a close 1001
 * (a page going away) is a graceful end, a client's own message limit closes
 * with 4009 (FrameTooLarge on both sides), another path on the port is
 * NotFound, and the listener's channels close gracefully with its scope.
 */
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { WebSocketServer } from "ws"
import { collect, frame, freshPort, handshake, rawConnect, sweepTokenFiles } from "./helpers.ts"

afterAll(sweepTokenFiles)

/** Polls `check` every 20 ms until it holds (a guard of 20 s against a hang). */
const until = (check: () => boolean, what: string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out waiting: ${what}`))
      yield* Effect.sleep("20 millis")
    }
  })

describe("ws:// wire", () => {
  it.live("a WebSocket server that selects another subprotocol than effect-ipc.v1 is not a channel: Protocol, nothing sent", () =>
    Effect.gen(function*() {
      const port = freshPort()
      const heard: Array<string> = []
      // another program's WebSocket server on the port: it accepts any client, selecting the last subprotocol
      // offered (the token's; a server that selects none is refused by the WebSocket client itself)
      const other = yield* Effect.acquireRelease(
        Effect.callback<WebSocketServer>((resume) => {
          const server: WebSocketServer = new WebSocketServer(
            { host: "127.0.0.1", port, handleProtocols: (offered) => [...offered].at(-1) ?? false },
            () => resume(Effect.succeed(server))
          )
          server.on("connection", (socket) => socket.on("message", (data) => heard.push(String(data))))
        }),
        (server) => Effect.callback<void>((resume) => server.close(() => resume(Effect.void)))
      )
      assert.isDefined(other)
      const refused = yield* Effect.flip(Effect.scoped(Effect.gen(function*() {
        const channel = yield* Ws.WsClient.dial(`ws://127.0.0.1:${port}/w`, { token: "t".repeat(43) })
        yield* channel.send(new TextEncoder().encode("for effect-ipc only"))
      })))
      assert.strictEqual(refused.reason._tag, "Protocol", refused.message)
      assert.deepStrictEqual(heard, [])
    }).pipe(Effect.scoped))

  it.live("a text message arrives as its UTF-8 bytes; close 1001 ends the input gracefully", () =>
    Effect.gen(function*() {
      const port = freshPort()
      const listener = yield* Ws.WsServer.listen(`ws://127.0.0.1:${port}/w`, { tokenFile: false })
      const socket = yield* rawConnect(port)
      const reply = collect(socket)
      socket.write(handshake("/w", port, { Authorization: `Bearer ${listener.token}` }))
      yield* until(() => reply.text().includes("\r\n\r\n"), "the handshake")
      const server = yield* listener.accept
      socket.write(frame(1, new TextEncoder().encode("héllo")))
      socket.write(frame(2, new Uint8Array([1, 2, 3])))
      // close 1001: going away (a page unloading)
      socket.write(frame(8, new Uint8Array([0x03, 0xe9])))
      const all = yield* Stream.runCollect(server.messages)
      assert.deepStrictEqual(all.map((m) => [...m]), [[...new TextEncoder().encode("héllo")], [1, 2, 3]])
      assert.strictEqual((yield* Effect.flip(server.receive)).reason._tag, "Closed")
    }).pipe(Effect.scoped))

  it.live("close 1002, 1003 or 1007 from the peer is Protocol, on either side", () =>
    Effect.gen(function*() {
      for (const code of [1002, 1003, 1007]) {
        // the server's side: a client closes with the code
        const port = freshPort()
        const listener = yield* Ws.WsServer.listen(`ws://127.0.0.1:${port}/w`, { tokenFile: false })
        const socket = yield* rawConnect(port)
        const reply = collect(socket)
        socket.write(handshake("/w", port, { Authorization: `Bearer ${listener.token}` }))
        yield* until(() => reply.text().includes("\r\n\r\n"), "the handshake")
        const server = yield* listener.accept
        socket.write(frame(8, new Uint8Array([code >> 8, code & 0xff])))
        const seen = yield* Effect.flip(server.receive).pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(seen.reason._tag, "Protocol", `server, close ${code}: ${seen.message}`)
        assert.include(seen.message, String(code))
        // the clients' side: a WebSocket server accepts effect-ipc.v1, then closes with the code
        const otherPort = freshPort()
        yield* Effect.acquireRelease(
          Effect.callback<WebSocketServer>((resume) => {
            const other: WebSocketServer = new WebSocketServer(
              { host: "127.0.0.1", port: otherPort, handleProtocols: () => "effect-ipc.v1" },
              () => resume(Effect.succeed(other))
            )
            other.on("connection", (peer) => peer.close(code))
          }),
          (other) => Effect.callback<void>((resume) => other.close(() => resume(Effect.void)))
        )
        const address = `ws://127.0.0.1:${otherPort}/w?token=${"t".repeat(43)}`
        for (
          const [who, dial] of [["WsClient", Ws.WsClient.dial(address)], [
            "WsTransport",
            Ws.WsTransport.make().dial(address)
          ]] as const
        ) {
          const error = yield* Effect.flip(Effect.scoped(Effect.flatMap(dial, (channel) => channel.receive)))
          assert.strictEqual(error.reason._tag, "Protocol", `${who}, close ${code}: ${error.message}`)
        }
      }
    }).pipe(Effect.scoped))

  it.live("a message over the client's limit: FrameTooLarge on both sides (close 4009)", () =>
    Effect.gen(function*() {
      const port = freshPort()
      const address = `ws://127.0.0.1:${port}/w`
      const listener = yield* Ws.WsServer.listen(address, { tokenFile: false })
      const client = yield* Ws.WsClient.dial(address, { token: listener.token, maxMessageSize: 1024 })
      const server = yield* listener.accept
      yield* server.send(new Uint8Array(1025))
      assert.strictEqual((yield* Effect.flip(client.receive)).reason._tag, "FrameTooLarge")
      const seen = yield* Effect.flip(server.receive).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(seen.reason._tag, "FrameTooLarge")
      assert.include(seen.message, "4009")
    }).pipe(Effect.scoped))

  it.live("another path on the port is NotFound; closing the listener closes its channels gracefully", () =>
    Effect.gen(function*() {
      const port = freshPort()
      const address = `ws://127.0.0.1:${port}/w`
      // the client lives in the test's scope, the listener in an inner one
      const outer = yield* Effect.scope
      const channel = yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* Ws.WsServer.listen(address, { tokenFile: false })
        const wrong = yield* Effect.flip(
          Ws.WsClient.dial(`ws://127.0.0.1:${port}/elsewhere`, { token: listener.token })
        )
        assert.strictEqual(wrong.reason._tag, "NotFound")
        const dialled = yield* Ws.WsClient.dial(address, { token: listener.token }).pipe(Scope.provide(outer))
        yield* listener.accept
        return dialled
      }))
      // the listener closed its end with 1000: the client's reader sees the end, not an error
      const error = yield* Effect.flip(channel.receive).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(error.reason._tag, "Closed")
    }).pipe(Effect.scoped))

  it.live(
    "a small message is the sender's bytes at send time, even if the sender reuses its buffer at once",
    () =>
      Effect.gen(function*() {
        const port = freshPort()
        const address = `ws://127.0.0.1:${port}/w`
        const listener = yield* Ws.WsServer.listen(address, { tokenFile: false })
        const client = yield* Ws.WsClient.dial(address, { token: listener.token })
        const server = yield* listener.accept
        const total = 20_000
        // the client starts reading late: the server's socket backs up while it sends
        const reader = yield* Effect.forkScoped(Effect.gen(function*() {
          yield* Effect.sleep("300 millis")
          const wrong: Array<number> = []
          for (let i = 0; i < total; i++) {
            const message = yield* client.receive
            if (message.byteLength !== 4096 || message.some((byte) => byte !== (i & 0xff))) wrong.push(i)
          }
          return wrong
        }))
        // one buffer, refilled for each message (as effect's binary encoder reuses its arena)
        const buffer = new Uint8Array(4096)
        for (let i = 0; i < total; i++) {
          buffer.fill(i & 0xff)
          yield* server.send(buffer)
        }
        assert.deepStrictEqual((yield* Fiber.join(reader)).slice(0, 10), [])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("closing the listener delivers what its channels sent before the goodbye", () =>
    Effect.gen(function*() {
      const port = freshPort()
      const address = `ws://127.0.0.1:${port}/w`
      const outer = yield* Effect.scope
      const total = 256
      const client = yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* Ws.WsServer.listen(address, { tokenFile: false })
        const dialled = yield* Ws.WsClient.dial(address, { token: listener.token }).pipe(Scope.provide(outer))
        const server = yield* listener.accept
        // 16 MiB queued toward the client as the listener closes
        for (let i = 0; i < total; i++) yield* server.send(new Uint8Array(64 * 1024).fill(i & 0xff))
        return dialled
      }))
      let received = 0
      const error = yield* Effect.flip(Effect.forever(Effect.flatMap(client.receive, (message) =>
        Effect.sync(() => {
          assert.strictEqual(message[0], received & 0xff)
          received++
        }))))
      assert.strictEqual(received, total)
      assert.strictEqual(error.reason._tag, "Closed")
    }).pipe(Effect.scoped), 60_000)
})
