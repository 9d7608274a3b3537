import { NngAddress, NngError } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"

describe("NngAddress", () => {
  it.effect("reads every nng transport, with and without the nng+ prefix", () =>
    Effect.gen(function*() {
      const tcp = yield* NngAddress.parse("nng+tcp://127.0.0.1:5555")
      assert.deepInclude(tcp, { transport: "tcp", url: "tcp://127.0.0.1:5555", host: "127.0.0.1", port: 5555 })
      const v6 = yield* NngAddress.parse("nng+tcp://[::1]:0")
      assert.deepInclude(v6, { host: "[::1]", port: 0 })
      const ipc = yield* NngAddress.parse("nng+ipc:///tmp/app.ipc")
      assert.deepInclude(ipc, { transport: "ipc", url: "ipc:///tmp/app.ipc", path: "/tmp/app.ipc" })
      const ws = yield* NngAddress.parse("nng+ws://localhost:8080/rpc")
      assert.deepInclude(ws, { transport: "ws", host: "localhost", port: 8080, path: "/rpc" })
      const plain = yield* NngAddress.parse("inproc://jobs", { plain: true })
      assert.deepInclude(plain, { transport: "inproc", url: "inproc://jobs", path: "jobs" })
      assert.strictEqual(NngAddress.withPort(tcp, 41000), "nng+tcp://127.0.0.1:41000")
      assert.strictEqual(NngAddress.withPort(v6, 41000), "nng+tcp://[::1]:41000")
      // over TLS
      const tls = yield* NngAddress.parse("nng+tls+tcp://127.0.0.1:0")
      assert.deepInclude(tls, { transport: "tls+tcp", url: "tls+tcp://127.0.0.1:0", host: "127.0.0.1", port: 0 })
      assert.strictEqual(NngAddress.withPort(tls, 41000), "nng+tls+tcp://127.0.0.1:41000")
      const wss = yield* NngAddress.parse("nng+wss://example.org:443/rpc")
      assert.deepInclude(wss, { transport: "wss", url: "wss://example.org:443/rpc", port: 443, path: "/rpc" })
      const plainTls = yield* NngAddress.parse("tls+tcp://[::1]:5555", { plain: true })
      assert.deepInclude(plainTls, { transport: "tls+tcp", host: "[::1]", port: 5555 })
      assert.isTrue(NngAddress.isTls("wss") && NngAddress.isTls("tls+tcp") && !NngAddress.isTls("tcp"))
    }))

  it.effect("refuses what nng would not take, with typed reasons", () =>
    Effect.gen(function*() {
      const reasons = yield* Effect.forEach([
        "tcp://127.0.0.1:5555", // the transport wants nng+ (plain URLs are for the pattern APIs)
        "nng+udp://127.0.0.1:5555",
        "nng+tcp://127.0.0.1",
        "nng+tcp://127.0.0.1:99999",
        "nng+ipc://relative/path",
        "nng+tls+tcp://127.0.0.1:5555/path", // tcp has no path
        "no scheme"
      ], (raw) => Effect.map(Effect.flip(NngAddress.parse(raw)), (e) => e.reason._tag))
      assert.deepStrictEqual(reasons, [
        "UnsupportedScheme",
        "UnsupportedScheme",
        "InvalidAddress",
        "InvalidAddress",
        "InvalidAddress",
        "InvalidAddress",
        "InvalidAddress"
      ])
    }))
})

describe("NngError", () => {
  it("maps nng's codes to typed reasons, keeping nng's name", () => {
    const cases: Array<[number, string, string]> = [
      [NngError.Code.ECONNREFUSED, "NotFound", "NNG_ECONNREFUSED"],
      [NngError.Code.ECONNRESET, "ConnectionLost", "NNG_ECONNRESET"],
      [NngError.Code.ECONNSHUT, "ConnectionLost", "NNG_ECONNSHUT"],
      [NngError.Code.ETIMEDOUT, "Timeout", "NNG_ETIMEDOUT"],
      [NngError.Code.EADDRINUSE, "AddressInUse", "NNG_EADDRINUSE"],
      [NngError.Code.EADDRINVAL, "InvalidAddress", "NNG_EADDRINVAL"],
      [NngError.Code.ECLOSED, "Closed", "NNG_ECLOSED"],
      [NngError.Code.EMSGSIZE, "FrameTooLarge", "NNG_EMSGSIZE"],
      [NngError.Code.EPERM, "PermissionDenied", "NNG_EPERM"],
      [NngError.Code.EPEERAUTH, "PeerRejected", "NNG_EPEERAUTH"],
      [NngError.Code.EPROTO, "Protocol", "NNG_EPROTO"],
      [NngError.SYSERR | 24, "Unknown", "NNG_ESYSERR(24)"],
      [NngError.TRANERR | 3, "Protocol", "NNG_ETRANERR(3)"]
    ]
    for (const [code, reason, name] of cases) {
      const error = NngError.make(code, "what failed", { address: "nng+tcp://h:1" })
      assert.strictEqual(error.reason._tag, reason, name)
      assert.strictEqual(error.errno, name)
      assert.strictEqual(error.address, "nng+tcp://h:1")
    }
  })
})
