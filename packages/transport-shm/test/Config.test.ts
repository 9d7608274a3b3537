/**
 * `IPC_TRANSPORT=shm` options from configuration (`IPC_OPTIONS`,
 * `IPC_OPTIONS_<NAME>`): they reach every channel the transport opens, and a
 * bad one fails the layer's build with reason `InvalidOption`.
 */
import { Registry, Transport } from "@effect-ipc/core"
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as ConfigEnv from "@effect-ipc/testing/ConfigEnv"
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { spawnChild } from "./helpers.ts"

const configured = ConfigEnv.layerFrom([Shm.descriptor], { IPC_TRANSPORT: "shm" })

/** The reasons `listen` and `dial` with `options` fail with. */
const reasons = (options: Shm.ShmTransport.ShmTransportOptions) =>
  Effect.all([
    Effect.flip(Shm.ShmTransport.make(options).listen(`shm://config-test-${process.pid}`)),
    Effect.flip(Shm.ShmTransport.make(options).dial(`shm://config-test-${process.pid}`))
  ]).pipe(Effect.map((errors) => errors.map((error) => error.reason._tag)), Effect.scoped)

describe("shm options from configuration", () => {
  it.live("IPC_OPTIONS_MAX_MESSAGE_SIZE limits messages", () =>
    Effect.gen(function*() {
      const address = yield* Registry.IpcAddress
      const listener = yield* Transport.listen(address)
      const client = yield* Transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(new Uint8Array(4096))
      assert.strictEqual((yield* server.receive).byteLength, 4096)
      const error = yield* Effect.flip(client.send(new Uint8Array(4097)))
      assert.strictEqual(error.reason._tag, "FrameTooLarge")
    }).pipe(
      Effect.scoped,
      Effect.provide(configured({
        IPC_ADDRESS: `shm://eipc-config-${process.pid}`,
        IPC_OPTIONS_MAX_MESSAGE_SIZE: "4 KiB",
        IPC_OPTIONS_COLLECTOR: "false"
      }))
    ), 60_000)

  it.live(
    "IPC_OPTIONS_POLL sets how long a receiver polls before it sleeps (0: at once)",
    () =>
      Effect.gen(function*() {
        const address = yield* Registry.IpcAddress
        const listener = yield* Transport.listen(address)
        const client = yield* Transport.dial(address)
        const server = yield* listener.accept
        yield* Effect.forkChild(Effect.forever(Effect.flatMap(server.receive, server.send)))
        for (let i = 0; i < 20; i++) {
          yield* client.send(new Uint8Array([i]))
          yield* client.receive
        }
        assert.isTrue(Shm.ShmChannel.isShmChannel(client))
        if (!Shm.ShmChannel.isShmChannel(client)) return
        const stats = yield* client.stats
        assert.strictEqual(stats.pollHits, 0, JSON.stringify(stats))
        assert.isAtLeast(stats.sleeps, 20, JSON.stringify(stats))
      }).pipe(
        Effect.scoped,
        Effect.provide(configured({
          IPC_ADDRESS: `shm://eipc-config-poll-${process.pid}`,
          IPC_OPTIONS_POLL: "0 millis",
          IPC_OPTIONS_COLLECTOR: "false"
        }))
      ),
    60_000
  )

  it.live(
    "IPC_OPTIONS_SPIN makes the channels spin: replies from another process end the waits while spinning",
    () =>
      Effect.gen(function*() {
        // the echo runs in another process: a peer in this process could not answer while we spin
        const address = yield* Registry.IpcAddress
        yield* spawnChild("echo", address, "0 millis")
        const client = yield* Transport.dial(address)
        assert.isTrue(Shm.ShmChannel.isShmChannel(client))
        if (!Shm.ShmChannel.isShmChannel(client)) return
        for (let i = 0; i < 50; i++) {
          yield* client.send(new Uint8Array([i]))
          assert.deepStrictEqual([...(yield* client.receive)], [i])
        }
        const stats = yield* client.stats
        // polling is off: without the spin every wait would sleep on the doorbell (0 spinHits)
        assert.isAbove(stats.spinHits, 0, JSON.stringify(stats))
        assert.strictEqual(stats.pollHits, 0, JSON.stringify(stats))
      }).pipe(
        Effect.scoped,
        Effect.provide(configured({
          IPC_ADDRESS: `shm://eipc-config-spin-${process.pid}`,
          IPC_OPTIONS_SPIN: "50 millis",
          IPC_OPTIONS_POLL: "0 millis",
          IPC_OPTIONS_COLLECTOR: "false"
        }))
      ),
    60_000
  )

  it.live("a ringSize beyond the largest ring (1 GiB): InvalidOption naming it at listen and dial, not a 1 GiB ring", () =>
    Effect.gen(function*() {
      for (const ringSize of [1e15, Infinity, 2 ** 30 + 1]) {
        const transport = Shm.ShmTransport.make({ ringSize })
        const address = `shm://config-test-ring-${process.pid}`
        const errors = yield* Effect.all([
          Effect.flip(transport.listen(address)),
          Effect.flip(transport.dial(address))
        ]).pipe(Effect.scoped)
        for (const error of errors) {
          assert.strictEqual(error.reason._tag, "InvalidOption", error.message)
          assert.strictEqual(
            error.detail,
            `ringSize ${ringSize} is beyond the largest ring (${2 ** 30} bytes, 1 GiB)`
          )
        }
      }
    }))

  it.effect("SegmentGc.collect and listMatching: a prefix that is not a string, a dryRun not a boolean are InvalidOption", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<[Shm.SegmentGc.CollectOptions, string]> = [
        [{ prefix: 42 as never }, "prefix 42 is not a string"],
        [{ dryRun: "true" as never }, `dryRun "true" is not a boolean (true or false)`],
        [{ directory: 7 as never }, "directory 7 is not a path (a non-empty string)"]
      ]
      for (const [options, detail] of cases) {
        const error = yield* Effect.flip(Shm.SegmentGc.collect(options))
        assert.strictEqual(error.reason._tag, "InvalidOption", error.message)
        assert.strictEqual(error.detail, detail)
      }
      const listed = yield* Effect.flip(Shm.SegmentGc.listMatching({ prefix: 42 as never }))
      assert.strictEqual(listed.detail, "prefix 42 is not a string")
    }))

  it.live("options in code that are not what they say: InvalidOption at listen and dial, or when the layer is built", () =>
    Effect.gen(function*() {
      for (const inPlaceThreshold of [-1, Number.NaN, 1.5, "abc", {}, null] as Array<never>) {
        assert.deepStrictEqual(yield* reasons({ inPlaceThreshold }), ["InvalidOption", "InvalidOption"])
      }
      for (const directory of [42, {}, "", "a\0b", "relative/dir"] as Array<never>) {
        assert.deepStrictEqual(yield* reasons({ directory }), ["InvalidOption", "InvalidOption"])
      }
      // the transport's own directory is named as such, not as the collector's
      const directory = yield* Effect.flip(Layer.build(Shm.ShmTransport.layer({ directory: "" })).pipe(Effect.scoped))
      assert.strictEqual(directory.reason._tag, "InvalidOption")
      assert.match(directory.detail, /^directory /)
      const relative = yield* Effect.flip(
        Layer.build(Shm.ShmTransport.layer({ directory: "relative/dir" })).pipe(Effect.scoped)
      )
      assert.strictEqual(relative.detail, "directory relative/dir is not an absolute path")
      // a relative collector directory would fail at every sweep, out of sight
      const sweeps = yield* Effect.flip(Effect.scoped(Shm.SegmentGc.run({ directory: "relative/dir" })))
      assert.strictEqual(sweeps.reason._tag, "InvalidOption")
      for (
        const collector of [
          42,
          "x",
          { delay: -1 },
          { delay: "abc" },
          { schedule: 5 },
          { prefix: 7 },
          { directory: "relative/dir" },
          { directory: "/tmp/a\0b" }
        ] as Array<never>
      ) {
        const error = yield* Effect.flip(Layer.build(Shm.ShmTransport.layer({ collector })).pipe(Effect.scoped))
        assert.strictEqual(error.reason._tag, "InvalidOption", JSON.stringify(collector))
        assert.include(error.detail, "collector")
      }
    }))

  it.effect("a bad option fails the build with InvalidOption naming it and the transport", () =>
    Effect.gen(function*() {
      const wrong = yield* Effect.flip(Layer.build(configured({ IPC_OPTIONS: `{"ringSize": -1}` })))
      assert.strictEqual(wrong._tag, "IpcError")
      if (wrong._tag !== "IpcError") return
      assert.strictEqual(wrong.reason._tag, "InvalidOption")
      assert.strictEqual(
        wrong.detail,
        `transport "shm": option ringSize (IPC_OPTIONS.ringSize): expected a size in bytes (65536, "64 KiB", "4 MiB"), got -1`
      )
      const unknown = yield* Effect.flip(Layer.build(configured({ IPC_OPTIONS_MODE: "0600" })))
      assert.include(unknown.message, `InvalidOption: transport "shm": IPC_OPTIONS_MODE is not an option`)
    }).pipe(Effect.scoped))

  it.effect("IPC_OPTIONS_RING_SIZE beyond the largest ring (1 GiB) fails the build, as ShmTransport.layer does", () =>
    Effect.gen(function*() {
      const detail = `ringSize ${2 ** 31} is beyond the largest ring (${2 ** 30} bytes, 1 GiB)`
      const configuredError = yield* Effect.flip(
        Layer.build(configured({ IPC_OPTIONS_RING_SIZE: "2 GiB", IPC_OPTIONS_COLLECTOR: "false" }))
      )
      assert.strictEqual(configuredError._tag, "IpcError")
      if (configuredError._tag !== "IpcError") return
      assert.strictEqual(configuredError.reason._tag, "InvalidOption")
      assert.strictEqual(
        configuredError.detail,
        `transport "shm": option ringSize (IPC_OPTIONS_RING_SIZE): ${detail.slice("ringSize ".length)}`
      )
      const layerError = yield* Effect.flip(
        Layer.build(Shm.ShmTransport.layer({ ringSize: 2 ** 31, collector: false }))
      )
      assert.strictEqual(layerError.reason._tag, "InvalidOption")
      assert.strictEqual(layerError.detail, detail)
      // the largest ring itself is still taken
      yield* Layer.build(configured({ IPC_OPTIONS_RING_SIZE: "1 GiB", IPC_OPTIONS_COLLECTOR: "false" }))
    }).pipe(Effect.scoped))

  // the generic size check said "(or Infinity: no limit)" of a ringSize, and Infinity is refused
  it.effect("a ringSize that is not a whole number of bytes is InvalidOption naming its range, not offering Infinity", () =>
    Effect.gen(function*() {
      const range = `from 1 to ${2 ** 30} (1 GiB; rounded up to a power of two from 4 KiB)`
      for (
        const [ringSize, shown] of [[0, "0"], [-1, "-1"], [1.5, "1.5"], [NaN, "NaN"], ["4 MiB", `"4 MiB"`]] as const
      ) {
        const transport = Shm.ShmTransport.make({ ringSize: ringSize as number })
        const openings: ReadonlyArray<Effect.Effect<unknown, IpcError.IpcError, Scope.Scope>> = [
          transport.listen("shm://ring-size-check"),
          transport.dial("shm://ring-size-check"),
          Layer.build(Shm.ShmTransport.layer({ ringSize: ringSize as number, collector: false }))
        ]
        for (const opening of openings) {
          const error = yield* Effect.flip(Effect.scoped(opening))
          assert.strictEqual(error.reason._tag, "InvalidOption", error.message)
          assert.strictEqual(error.detail, `ringSize ${shown} is not a whole number of bytes ${range}`)
        }
      }
      // Infinity, as any size past the largest ring, says so
      const infinite = yield* Effect.flip(
        Effect.scoped(Shm.ShmTransport.make({ ringSize: Infinity }).listen("shm://x"))
      )
      assert.strictEqual(infinite.detail, `ringSize Infinity is beyond the largest ring (${2 ** 30} bytes, 1 GiB)`)
    }).pipe(Effect.scoped))
})
