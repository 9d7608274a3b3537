/**
 * nng listened at a ws path with `?`, `#`, a `%` escape or a space, and no
 * dial could reach it (a timeout, a refusal or a protocol error): such paths
 * are `InvalidAddress` at listen and dial, for the transport and the pattern
 * sockets; a path of RFC 3986's path characters is listened and dialled.
 */
import { NngTransport, Rep, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const unreachable = ["/a?b", "/a#b", "/a%20b", "/a b", "/rpc?x=1"]

describe("nng+ws:// paths", () => {
  it.live("with ?, #, a % escape or a space: InvalidAddress at listen and at dial", () =>
    Effect.gen(function*() {
      const transport = NngTransport.make({ connectTimeout: "2 seconds" })
      for (const scheme of ["nng+ws", "nng+wss"]) {
        for (const path of unreachable) {
          const listened = yield* Effect.flip(transport.listen(`${scheme}://127.0.0.1:0${path}`))
          assert.strictEqual(listened.reason._tag, "InvalidAddress", `${scheme} ${path}: ${listened.message}`)
          const dialled = yield* Effect.flip(transport.dial(`${scheme}://127.0.0.1:4706${path}`))
          assert.strictEqual(dialled.reason._tag, "InvalidAddress", `${scheme} ${path}: ${dialled.message}`)
        }
      }
      for (const path of unreachable) {
        const served = yield* Effect.flip(Rep.serve({ listen: `ws://127.0.0.1:0${path}` }, Effect.succeed))
        assert.strictEqual(served.reason._tag, "InvalidAddress", `${path}: ${served.message}`)
        const requester = yield* Effect.flip(Req.make({ dial: `ws://127.0.0.1:4706${path}` }))
        assert.strictEqual(requester.reason._tag, "InvalidAddress", `${path}: ${requester.message}`)
      }
    }).pipe(Effect.scoped))

  it.live("a path of RFC 3986's path characters is listened and dialled", () =>
    Effect.gen(function*() {
      const transport = NngTransport.make({ connectTimeout: "5 seconds" })
      const listener = yield* transport.listen("nng+ws://127.0.0.1:0/a-b_c.~!$&'()*+,;=:@/d")
      const client = yield* transport.dial(listener.address)
      const server = yield* listener.accept
      yield* client.send(encoder.encode("path"))
      assert.strictEqual(decoder.decode(yield* server.receive), "path")
    }).pipe(Effect.scoped))
})
