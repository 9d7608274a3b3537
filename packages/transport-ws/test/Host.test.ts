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
  statusOf(
    port,
    handshake("/x", port, { Authorization: `Bearer ${token}` }).replace(`Host: 127.0.0.1:${port}`, `Host: ${host}`)
  )

/** The status line a listener at `port` answers this raw handshake with. */
const statusOf = (port: number, request: string) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* rawConnect(port)
    const reply = collect(socket)
    socket.write(request)
    // the status line, once it came (a refused handshake is also closed; an accepted one stays open)
    yield* Effect.suspend(() =>
      reply.text().includes("\r\n") || socket.closed ? Effect.void : Effect.fail("no reply yet")
    ).pipe(Effect.retry(Schedule.spaced("10 millis").pipe(Schedule.upTo({ duration: "10 seconds" }))), Effect.ignore)
    return reply.text().split("\r\n")[0]
  }))

// the README's table of refusals: a client that does not offer effect-ipc.refused (no WebSocket subprotocols, as
// curl or a plain library) is answered with an HTTP status; its "another client" column had no test
describe("ws:// refusals of a client that does not offer effect-ipc.refused", () => {
  it.live("token missing or wrong: 401; Origin not allowed: 403; another path on the port: 404", () =>
    Effect.gen(function*() {
      const port = freshPort()
      const listener = yield* Ws.WsServer.listen(`ws://127.0.0.1:${port}/x`, {
        tokenFile: false,
        allowedOrigins: ["http://127.0.0.1:5173"]
      })
      const bearer = { Authorization: `Bearer ${listener.token}` }
      const cases: ReadonlyArray<readonly [string, Record<string, string>, string]> = [
        ["/x", {}, "HTTP/1.1 401 Unauthorized"],
        ["/x", { Authorization: `Bearer ${listener.token}x` }, "HTTP/1.1 401 Unauthorized"],
        [`/x?token=${listener.token}`, {}, "HTTP/1.1 401 Unauthorized"],
        ["/x", { ...bearer, Origin: "http://evil.example" }, "HTTP/1.1 403 Forbidden"],
        ["/x", { ...bearer, Origin: "null" }, "HTTP/1.1 403 Forbidden"],
        ["/elsewhere", bearer, "HTTP/1.1 404 Not Found"],
        ["/x", { ...bearer, Origin: "http://127.0.0.1:5173" }, "HTTP/1.1 101 Switching Protocols"],
        ["/x", bearer, "HTTP/1.1 101 Switching Protocols"]
      ]
      for (const [path, headers, status] of cases) {
        assert.strictEqual(
          yield* statusOf(port, handshake(path, port, headers)),
          status,
          `${path} ${JSON.stringify(headers)}`
        )
      }
    }).pipe(Effect.scoped))
})

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

  // from JavaScript without types: anything but `true` was taken as false, so `allowRemote: "true"` failed
  // PermissionDenied ("unless allowRemote is set", though it was) and `allowWeakToken: "yes"` refused the token
  it.live("allowRemote and allowWeakToken that are not booleans: InvalidOption naming them, in listen and dial", () =>
    Effect.gen(function*() {
      const port = freshPort()
      for (
        const [options, name] of [[{ allowRemote: "true", allowedHosts: ["daemon.lan"] }, "allowRemote"], [{
          allowWeakToken: "yes",
          token: "s3cret-token"
        }, "allowWeakToken"], [{ allowRemote: 1, allowedHosts: ["daemon.lan"] }, "allowRemote"]] as const
      ) {
        const given = { ...options, tokenFile: false } as unknown as Ws.WsServer.WsServerOptions
        const listened = yield* Effect.flip(Ws.WsServer.listen(`ws://0.0.0.0:${port}/x`, given))
        assert.strictEqual(listened.reason._tag, "InvalidOption", listened.message)
        assert.include(listened.message, name)
        const dialled = yield* Effect.flip(Ws.WsTransport.make(given).dial(`ws://127.0.0.1:${port}/x`))
        assert.strictEqual(dialled.reason._tag, "InvalidOption", dialled.message)
        assert.include(dialled.message, name)
      }
      // booleans as they are
      const listener = yield* Ws.WsServer.listen(`ws://127.0.0.1:${port}/x`, { allowRemote: false, tokenFile: false })
      assert.strictEqual(
        yield* statusFor(port, `127.0.0.1:${port}`, listener.token),
        "HTTP/1.1 101 Switching Protocols"
      )
    }).pipe(Effect.scoped))
})
