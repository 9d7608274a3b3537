/**
 * Duration options given in code that are not durations (`"x"`, `{}`, NaN,
 * a negative number), and sizes or counts that are not whole numbers, on
 * every transport's `listen` and `dial`: each is `InvalidOption` naming the
 * option, before anything is made. They were defects (`ws://`'s
 * `lingerTimeout`, read in the socket's `open` handler, threw there and ended
 * the process), hangs, or a `NaN` limit that was no limit at all.
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import type * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import { FileTransport } from "@effect-ipc/transport-file"
import { NngTransport } from "@effect-ipc/transport-nng"
import { Fifo, UnixSocket } from "@effect-ipc/transport-pipe"
import { ShmTransport } from "@effect-ipc/transport-shm"
import { WsTransport } from "@effect-ipc/transport-ws"
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

describe("TransportOptions.millisOf", () => {
  it("takes what Duration takes, and nothing that is not a duration", () => {
    const good: ReadonlyArray<readonly [unknown, number]> = [
      [100, 100],
      ["5 seconds", 5000],
      [Duration.seconds(2), 2000],
      [[1, 0], 1000],
      [Infinity, Infinity]
    ]
    for (const [value, millis] of good) assert.strictEqual(TransportOptions.millisOf(value), millis, String(value))
    for (const bad of ["x", {}, Number.NaN, -1, "-1 seconds", null, true]) {
      assert.isUndefined(TransportOptions.millisOf(bad), String(bad))
    }
  })
})

describe("duration, size and count options that are not ones", () => {
  it.live(
    "are InvalidOption on every transport's listen and dial, naming the option; nothing is made",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-bad-options-"))
        try {
          const n = process.pid
          const cases: ReadonlyArray<readonly [string, Transport.TransportShape, string]> = [
            ["lingerTimeout", UnixSocket.make({ lingerTimeout: "x" as Duration.Input }), `unix://${dir}/u.sock`],
            ["frameTimeout", UnixSocket.make({ frameTimeout: -1 }), `unix://${dir}/u.sock`],
            [
              "heartbeat.interval",
              UnixSocket.make({ heartbeat: { interval: {} as Duration.Input, timeout: 1 } }),
              `unix://${dir}/u.sock`
            ],
            ["helloTimeout", Fifo.make({ helloTimeout: "x" as Duration.Input }), `fifo://${dir}/pair`],
            ["handshakeTimeout", ShmTransport.make({ handshakeTimeout: Number.NaN }), `shm://bad-options-${n}`],
            ["spin", ShmTransport.make({ spin: "abc" as Duration.Input }), `shm://bad-options-${n}`],
            ["livenessInterval", FileTransport.make({ livenessInterval: "x" as Duration.Input }), `file://${dir}/f`],
            ["connectTimeout", NngTransport.make({ connectTimeout: "x" as Duration.Input }), `nng+ipc://${dir}/n.ipc`],
            ["lingerTimeout", WsTransport.make({ lingerTimeout: "x" as Duration.Input }), "ws://127.0.0.1:0/bad"],
            // sizes and counts: a NaN limit was none, a negative one refused every message, a NaN mark hung
            ["maxFrameSize", UnixSocket.make({ maxFrameSize: Number.NaN }), `unix://${dir}/u.sock`],
            ["highWaterMark", Fifo.make({ highWaterMark: -1 }), `fifo://${dir}/pair`],
            ["maxBufferedMessages", ShmTransport.make({ maxBufferedMessages: 0 }), `shm://bad-options-${n}`],
            ["maxBytes", FileTransport.make({ maxBytes: Number.NaN }), `file://${dir}/f`],
            ["sendBuffer", NngTransport.make({ sendBuffer: "x" as unknown as number }), `nng+ipc://${dir}/n.ipc`],
            ["maxBufferedBytes", WsTransport.make({ maxBufferedBytes: 1.5 }), "ws://127.0.0.1:0/bad"]
          ]
          for (const [option, transport, address] of cases) {
            for (
              const [what, attempt] of [["listen", transport.listen(address)], [
                "dial",
                transport.dial(address)
              ]] as const
            ) {
              const error = yield* Effect.flip(
                Effect.scoped(attempt as Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>)
              )
              assert.strictEqual(error.reason._tag, "InvalidOption", `${address} ${what}: ${error.message}`)
              assert.include(error.detail, `${option} `, `${address} ${what}`)
              assert.match(error.detail, /is not a duration|is not a whole number/)
            }
          }
          assert.deepStrictEqual(Fs.readdirSync(dir), [], "nothing made")
        } finally {
          Fs.rmSync(dir, { recursive: true, force: true })
        }
      }),
    60_000
  )
})
