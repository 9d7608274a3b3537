/**
 * Duration options given in code that are not durations (`"x"`, `{}`, NaN,
 * a negative number), on every transport's `listen` and `dial`: each is
 * `InvalidOption` naming the option, before anything is made. They were
 * defects, and `ws://`'s `lingerTimeout`, read in the socket's `open`
 * handler, threw there and ended the process.
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

describe("duration options that are not durations", () => {
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
            ["lingerTimeout", WsTransport.make({ lingerTimeout: "x" as Duration.Input }), "ws://127.0.0.1:0/bad"]
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
              assert.include(error.detail, "is not a duration")
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
