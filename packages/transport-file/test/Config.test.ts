/**
 * `IPC_TRANSPORT=file` options from configuration (`IPC_OPTIONS`,
 * `IPC_OPTIONS_<NAME>`): they reach every channel the transport opens, and a
 * bad one fails the layer's build with reason `InvalidOption`.
 */
import { Registry, RuntimeDir, Transport } from "@effect-ipc/core"
import * as File from "@effect-ipc/transport-file"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { modeFor } from "./helpers.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-file-config-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

const configured = (env: Record<string, string>) =>
  Registry.layerConfig([File.descriptor]).pipe(
    Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { IPC_TRANSPORT: "file", ...env } })))
  )

describe("file options from configuration", () => {
  it.live(
    "IPC_OPTIONS_MAX_MESSAGE_SIZE limits messages; IPC_OPTIONS_FILE_MODE sets the logs' file mode",
    () =>
      Effect.gen(function*() {
        const address = `file://${dir}/limited`
        yield* Effect.gen(function*() {
          const listener = yield* Transport.listen(address)
          const client = yield* Transport.dial(address)
          const server = yield* listener.accept
          yield* client.send(new Uint8Array(1000))
          assert.strictEqual((yield* server.receive).byteLength, 1000)
          const error = yield* Effect.flip(client.send(new Uint8Array(1001)))
          assert.strictEqual(error.reason._tag, "FrameTooLarge")
          // every file the channel made carries the configured mode (the locked ones: their owner's only)
          const files = Fs.readdirSync(`${dir}/limited`, { recursive: true, withFileTypes: true })
            .filter((entry) => entry.isFile())
          assert.isAbove(files.length, 0)
          for (const file of files) {
            const path = Path.join(file.parentPath, file.name)
            assert.strictEqual(Fs.statSync(path).mode & 0o777, modeFor(path, 0o640), path)
          }
        }).pipe(
          Effect.scoped,
          Effect.provide(configured({
            IPC_ADDRESS: address,
            IPC_OPTIONS: `{"maxMessageSize": 1000}`,
            IPC_OPTIONS_FILE_MODE: "0640"
          }))
        )
      }),
    60_000
  )

  it.effect("a bad option fails the build with InvalidOption naming it and the transport", () =>
    Effect.gen(function*() {
      const wrong = yield* Effect.flip(
        Layer.build(configured({ IPC_ADDRESS: `file://${dir}/bad`, IPC_OPTIONS_DURABILITY: "always" }))
      )
      assert.strictEqual(wrong._tag, "IpcError")
      if (wrong._tag !== "IpcError") return
      assert.strictEqual(wrong.reason._tag, "InvalidOption")
      assert.strictEqual(
        wrong.detail,
        `transport "file": option durability (IPC_OPTIONS_DURABILITY): expected one of "os", "fsync", got "always"`
      )
      const unknown = yield* Effect.flip(Layer.build(configured({ IPC_OPTIONS_RING_SIZE: "1024" })))
      assert.include(unknown.message, `InvalidOption: transport "file": IPC_OPTIONS_RING_SIZE is not an option`)
      // permission bits that let other users write what the channels make: refused when the layer is built
      for (
        const [variable, value, shown] of [
          ["IPC_OPTIONS_FILE_MODE", "0666", "option fileMode (IPC_OPTIONS_FILE_MODE): 0o666"],
          ["IPC_OPTIONS_DIR_MODE", "0770", "option dirMode (IPC_OPTIONS_DIR_MODE): 0o770"]
        ] as const
      ) {
        const wide = yield* Effect.flip(
          Layer.build(configured({ IPC_ADDRESS: `file://${dir}/wide`, [variable]: value }))
        )
        assert.strictEqual(wide._tag, "IpcError")
        if (wide._tag !== "IpcError") return
        assert.strictEqual(wide.reason._tag, "InvalidOption", wide.message)
        assert.include(wide.detail, `transport "file": ${shown} lets other users write`)
      }
      // sizes no channel could be opened with: refused as the layer is built (a maxBytes of 1 made every send
      // fail "exceeds the limit of -55")
      for (
        const [vars, detail] of [
          [
            { IPC_OPTIONS_MAX_BYTES: "1" },
            `option maxBytes (IPC_OPTIONS_MAX_BYTES): 1 leaves no room for a message (a stream's headers take 56 bytes)`
          ],
          [
            { IPC_OPTIONS_MAX_BYTES: "1 MiB", IPC_OPTIONS_MAX_MESSAGE_SIZE: "2 MiB" },
            `option maxMessageSize (IPC_OPTIONS_MAX_MESSAGE_SIZE): 2097152 must leave room in maxBytes 1048576 (at most 1048520)`
          ]
        ] as const
      ) {
        const unfit = yield* Effect.flip(Layer.build(configured({ IPC_ADDRESS: `file://${dir}/unfit`, ...vars })))
        assert.strictEqual(unfit._tag, "IpcError")
        if (unfit._tag !== "IpcError") return
        assert.strictEqual(unfit.reason._tag, "InvalidOption", unfit.message)
        assert.strictEqual(unfit.detail, `transport "file": ${detail}`)
        assert.isFalse(Fs.existsSync(Path.join(dir, "unfit")))
      }
      // the most that error allows is allowed
      const fits = yield* Layer.build(configured({
        IPC_ADDRESS: `file://${dir}/fits`,
        IPC_OPTIONS_MAX_BYTES: "1 MiB",
        IPC_OPTIONS_MAX_MESSAGE_SIZE: "1048520"
      }))
      assert.isDefined(fits)
    }).pipe(Effect.scoped))

  // a dirMode of 0750 made the shared <tmp>/effect-ipc-<uid> on the way to the default address 0750 too, and
  // pipe://, nng's default addresses and ws:// token files then refused that directory as not private
  it.live("IPC_OPTIONS_DIR_MODE=0750 with the default address: the service's directory is 0750, the runtime one 0700", () =>
    Effect.gen(function*() {
      const tmp = Fs.mkdtempSync(Path.join(dir, "tmp-"))
      const saved = process.env["TMPDIR"]
      process.env["TMPDIR"] = tmp
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (saved === undefined) delete process.env["TMPDIR"]
          else process.env["TMPDIR"] = saved
        })
      )
      const address = File.descriptor.defaultAddress("svc")
      const runtime = Path.join(tmp, `effect-ipc-${process.geteuid!()}`)
      assert.strictEqual(address, `file://${runtime}/svc`)
      const transport = yield* Layer.build(configured({ IPC_OPTIONS_DIR_MODE: "0750" }))
      const listener = yield* Transport.Transport.pipe(
        Effect.provide(transport),
        Effect.flatMap((t) => t.listen(address))
      )
      assert.isDefined(listener)
      assert.strictEqual(Fs.statSync(Path.join(runtime, "svc")).mode & 0o777, 0o750)
      assert.strictEqual(Fs.statSync(runtime).mode & 0o777, 0o700)
      assert.strictEqual(yield* RuntimeDir.ensurePrivate(runtime), runtime)
    }).pipe(Effect.scoped))
})
