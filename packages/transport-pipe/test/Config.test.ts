/**
 * `IPC_TRANSPORT=pipe` options from configuration (`IPC_OPTIONS`,
 * `IPC_OPTIONS_<NAME>`): they reach `unix:`, `fifo:` and `child:` channels,
 * and a bad one fails the layer's build with reason `InvalidOption`.
 */
import { Registry, Transport } from "@effect-ipc/core"
import * as Pipe from "@effect-ipc/transport-pipe"
import { Fifo, UnixSocket } from "@effect-ipc/transport-pipe"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-pipe-config-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

const configured = (env: Record<string, string>) =>
  Registry.layerConfig([Pipe.descriptor]).pipe(
    Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { IPC_TRANSPORT: "pipe", ...env } })))
  )

/** What sending `size` bytes from a dialled channel gives: `ok` or the failure's reason. */
const send = (channel: { send: (m: Uint8Array) => Effect.Effect<void, { reason: { _tag: string } }> }, size: number) =>
  channel.send(new Uint8Array(size)).pipe(Effect.as("ok"), Effect.catch((e) => Effect.succeed(e.reason._tag)))

describe("pipe options from configuration", () => {
  it.live(
    "IPC_OPTIONS_MAX_MESSAGE_SIZE limits unix:// and fifo:// messages; IPC_OPTIONS_MODE sets the socket's mode",
    () =>
      Effect.gen(function*() {
        for (const address of [`unix://${dir}/limit.sock`, `fifo://${dir}/limit`]) {
          yield* Effect.gen(function*() {
            const listener = yield* Transport.listen(address)
            const client = yield* Transport.dial(address)
            yield* listener.accept
            assert.strictEqual(yield* send(client, 100), "ok", address)
            assert.strictEqual(yield* send(client, 101), "FrameTooLarge", address)
          }).pipe(
            Effect.scoped,
            Effect.provide(configured({ IPC_ADDRESS: address, IPC_OPTIONS_MAX_MESSAGE_SIZE: "100" }))
          )
        }
        const socket = `${dir}/mode.sock`
        yield* Effect.gen(function*() {
          yield* Transport.listen(`unix://${socket}`)
          assert.strictEqual(Fs.statSync(socket).mode & 0o777, 0o640)
        }).pipe(
          Effect.scoped,
          Effect.provide(configured({ IPC_ADDRESS: `unix://${socket}`, IPC_OPTIONS_MODE: "0640" }))
        )
        // the default, for comparison
        yield* Effect.gen(function*() {
          yield* Transport.listen(`unix://${socket}`)
          assert.strictEqual(Fs.statSync(socket).mode & 0o777, 0o600)
        }).pipe(Effect.scoped, Effect.provide(configured({ IPC_ADDRESS: `unix://${socket}` })))
      }),
    60_000
  )

  it.live("IPC_OPTIONS (JSON) maxFrameSize limits a child: channel", () =>
    Effect.gen(function*() {
      const address = `child:${
        encodeURIComponent(JSON.stringify([process.execPath, "-e", "setTimeout(() => {}, 20000)"]))
      }`
      const client = yield* Transport.dial(address)
      assert.strictEqual(yield* send(client, 64), "ok")
      assert.strictEqual(yield* send(client, 65), "FrameTooLarge")
    }).pipe(
      Effect.scoped,
      Effect.provide(configured({ IPC_ADDRESS: `unix://${dir}/unused.sock`, IPC_OPTIONS: `{"maxFrameSize": 64}` }))
    ), 60_000)

  it.effect("a bad option fails the build with InvalidOption naming it and the transport", () =>
    Effect.gen(function*() {
      const wrong = yield* Effect.flip(Layer.build(configured({ IPC_OPTIONS_HIGH_WATER_MARK: "lots" })))
      assert.strictEqual(wrong._tag, "IpcError")
      if (wrong._tag !== "IpcError") return
      assert.strictEqual(wrong.reason._tag, "InvalidOption")
      assert.strictEqual(
        wrong.detail,
        `transport "pipe": option highWaterMark (IPC_OPTIONS_HIGH_WATER_MARK): expected a size in bytes (65536, "64 KiB", "4 MiB"), got "lots"`
      )
      const unknown = yield* Effect.flip(Layer.build(configured({ IPC_OPTIONS: `{"ringSize": 1024}` })))
      assert.include(unknown.message, `InvalidOption: transport "pipe": "ringSize" (in IPC_OPTIONS) is not an option`)
    }).pipe(Effect.scoped))
})

describe("options given in code that are not an object (a caller without types)", () => {
  it.effect("make and layer take them, and each listen and dial fails with InvalidOption saying so", () =>
    Effect.gen(function*() {
      let n = 0
      for (const given of [null, "fast", 42]) {
        const bad = given as never
        const cases = [
          [UnixSocket.layer(bad), `unix://${dir}/bad-${n++}.sock`],
          [Fifo.layer(bad), `fifo://${dir}/bad-${n++}`],
          [Layer.succeed(Transport.Transport, Pipe.make(bad)), `pipe://bad-${n++}`]
        ] as const
        for (const [layer, address] of cases) {
          for (
            const attempt of [Effect.asVoid(Transport.listen(address)), Effect.asVoid(Transport.dial(address))]
          ) {
            const error = yield* Effect.flip(Effect.scoped(attempt).pipe(Effect.provide(layer)))
            assert.strictEqual(error.reason._tag, "InvalidOption", `${address}: ${error.detail}`)
            assert.match(error.detail, /^the options are not an object \(got (null|a string|a number)\)$/)
          }
        }
      }
    }))
})
