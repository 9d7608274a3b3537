/**
 * The `Host` check (DNS rebinding) reads a bracketed host strictly, and a
 * listener that serves other hosts (`allowRemote`) names the hosts it serves.
 */
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { collect, freshPort, handshake, rawConnect, sweepTokenFiles } from "./helpers.ts"

afterAll(sweepTokenFiles)

/** The status line a listener at `port` answers a handshake for `/x` with this `Host` (and its token). */
const statusFor = (port: number, host: string, token: string) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* rawConnect(port)
    const reply = collect(socket)
    socket.write(
      handshake("/x", port, { Authorization: `Bearer ${token}` }).replace(`Host: 127.0.0.1:${port}`, `Host: ${host}`)
    )
    // the status line, once it came (a refused handshake is also closed; an accepted one stays open)
    yield* Effect.suspend(() =>
      reply.text().includes("\r\n") || socket.closed ? Effect.void : Effect.fail("no reply yet")
    ).pipe(Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo({ duration: "10 seconds" }))), Effect.ignore)
    return reply.text().split("\r\n")[0]
  }))

describe("ws:// Host header", () => {
  it.live("a bracketed host is [address] alone or with :port; anything after it is refused", () =>
    Effect.gen(function*() {
      const port = freshPort()
      const listener = yield* Ws.WsServer.listen(`ws://127.0.0.1:${port}/x`, { tokenFile: false })
      for (const host of ["[::1].evil.example", "[::1]evil:80", "[::1]:80x", "[::1", "127.0.0.1:80:80"]) {
        assert.strictEqual(yield* statusFor(port, host, listener.token), "HTTP/1.1 403 Forbidden", host)
      }
      for (const host of ["[::1]", `[::1]:${port}`, `127.0.0.1:${port}`, "localhost"]) {
        assert.strictEqual(yield* statusFor(port, host, listener.token), "HTTP/1.1 101 Switching Protocols", host)
      }
    }).pipe(Effect.scoped))

  it.live("allowRemote needs allowedHosts: without, listen fails InvalidOption; with, only those hosts pass", () =>
    Effect.gen(function*() {
      const port = freshPort()
      const address = `ws://0.0.0.0:${port}/x`
      const refused = yield* Effect.flip(Ws.WsServer.listen(address, { allowRemote: true, tokenFile: false }))
      assert.strictEqual(refused.reason._tag, "InvalidOption")
      assert.include(refused.message, "allowedHosts")
      const listener = yield* Ws.WsServer.listen(address, {
        allowRemote: true,
        allowedHosts: ["daemon.lan"],
        tokenFile: false
      })
      assert.strictEqual(
        yield* statusFor(port, `daemon.lan:${port}`, listener.token),
        "HTTP/1.1 101 Switching Protocols"
      )
      assert.strictEqual(yield* statusFor(port, `evil.example:${port}`, listener.token), "HTTP/1.1 403 Forbidden")
    }).pipe(Effect.scoped))
})
