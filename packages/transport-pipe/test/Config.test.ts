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
import { python, start } from "./helpers.ts"

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

/** What sending each of `sizes` from a client of the `Transport` service at `address` gives: `<size> ok` or the reason. */
const limits = (address: string, sizes: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const listener = yield* Transport.listen(address)
    const client = yield* Transport.dial(address)
    yield* listener.accept
    const verdicts: Array<string> = []
    for (const size of sizes) verdicts.push(`${size} ${yield* send(client, size)}`)
    return verdicts
  }).pipe(Effect.scoped)

describe("maxFrameSize and maxMessageSize both set: maxFrameSize wins", () => {
  it.live("in code (make) and from configuration, whichever of the two is smaller", () =>
    Effect.gen(function*() {
      const address = `unix://${dir}/both.sock`
      const cases = [
        [{ maxFrameSize: 50, maxMessageSize: 100 }, ["50 ok", "51 FrameTooLarge", "100 FrameTooLarge"]],
        [{ maxFrameSize: 100, maxMessageSize: 50 }, ["50 ok", "51 ok", "100 ok", "101 FrameTooLarge"]]
      ] as const
      for (const [options, expected] of cases) {
        const sizes = expected.map((verdict) => Number(verdict.split(" ")[0]))
        const inCode = Layer.succeed(Transport.Transport, Pipe.make(options))
        assert.deepStrictEqual(yield* Effect.provide(limits(address, sizes), inCode), [...expected], "in code")
        const fromEnv = configured({
          IPC_ADDRESS: address,
          IPC_OPTIONS_MAX_FRAME_SIZE: `${options.maxFrameSize}`,
          IPC_OPTIONS_MAX_MESSAGE_SIZE: `${options.maxMessageSize}`
        })
        assert.deepStrictEqual(yield* Effect.provide(limits(address, sizes), fromEnv), [...expected], "variables")
        const fromJson = configured({ IPC_ADDRESS: address, IPC_OPTIONS: JSON.stringify(options) })
        assert.deepStrictEqual(yield* Effect.provide(limits(address, sizes), fromJson), [...expected], "IPC_OPTIONS")
      }
    }), 60_000)
})

/** Python: connects to the socket argv[1], says "connected", then neither reads nor writes (a stuck peer). */
const silentPeer = "import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n" +
  "print('connected', flush=True)\ntime.sleep(60)"

describe("IPC_OPTIONS_<NAME> from a structured provider (ConfigProvider.fromUnknown) reaches the transport", () => {
  it.live(
    "IPC_OPTIONS_HEARTBEAT_INTERVAL / _TIMEOUT: a peer process that answers no ping is dropped (Timeout)",
    () =>
      Effect.gen(function*() {
        const path = `${dir}/heartbeat.sock`
        const layer = Registry.layerConfig([Pipe.descriptor]).pipe(
          Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
            IPC_TRANSPORT: "pipe",
            IPC_ADDRESS: `unix://${path}`,
            // a duration as a number (milliseconds, given as its digits) and as text
            IPC_OPTIONS_HEARTBEAT_INTERVAL: 100,
            IPC_OPTIONS_HEARTBEAT_TIMEOUT: "400 millis"
          })))
        )
        const error = yield* Effect.gen(function*() {
          const listener = yield* Transport.listen(`unix://${path}`)
          const peer = yield* start(python, ["-c", silentPeer, path])
          yield* peer.line(/^connected$/)
          const server = yield* listener.accept
          // without a heartbeat the channel would wait for ever (here: until the hang guard)
          return yield* Effect.flip(server.receive).pipe(
            Effect.timeoutOrElse({
              duration: "20 seconds",
              orElse: () => Effect.die(new Error("hang guard: the silent peer was never dropped"))
            })
          )
        }).pipe(Effect.scoped, Effect.provide(layer))
        assert.strictEqual(error.reason._tag, "Timeout", error.message)
        assert.include(error.detail, "no word from the peer for 400 ms")
      }),
    60_000
  )
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
