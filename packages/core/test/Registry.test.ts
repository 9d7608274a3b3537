import { Registry, Transport } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

const other: Registry.TransportDescriptor = {
  ...Registry.memory,
  name: "other",
  schemes: ["other"],
  defaultAddress: (service) => `other://${service}`
}
const descriptors = [Registry.memory, other]

const withEnv = (env: Record<string, string>) =>
  Registry.layerConfig(descriptors, { service: "svc" }).pipe(
    Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))
  )

describe("Registry", () => {
  it.effect("picks by IPC_TRANSPORT, then by the address's scheme, then the first", () =>
    Effect.gen(function*() {
      const byName = yield* Registry.resolve(descriptors, { transport: "other", service: "svc" })
      assert.deepStrictEqual([byName.descriptor.name, byName.address], ["other", "other://svc"])
      const byScheme = yield* Registry.resolve(descriptors, { address: "other://x", service: "svc" })
      assert.strictEqual(byScheme.descriptor.name, "other")
      const byDefault = yield* Registry.resolve(descriptors, { service: "svc" })
      assert.deepStrictEqual([byDefault.descriptor.name, byDefault.address], ["memory", "memory://svc"])
    }))

  it.effect("fails with typed errors for an unknown transport or a mismatched address", () =>
    Effect.gen(function*() {
      const unknown = yield* Effect.flip(Registry.resolve(descriptors, { transport: "carrier-pigeon", service: "s" }))
      assert.strictEqual(unknown.reason._tag, "UnsupportedScheme")
      assert.include(unknown.detail, "memory, other")
      assert.notInclude(unknown.detail, "served by")
      assert.notInclude(unknown.detail, "descriptor")
      // one of effect-ipc's transports that the program did not register: the package whose descriptor to add
      const unregistered = yield* Effect.flip(Registry.resolve(descriptors, { transport: "shm", service: "s" }))
      assert.strictEqual(
        unregistered.detail,
        `unknown transport "shm" (have memory, other; @effect-ipc/transport-shm serves "shm": add its \`descriptor\`` +
          ` to the list given to Registry.layerConfig)`
      )
      const inherited = yield* Effect.flip(Registry.resolve(descriptors, { transport: "constructor", service: "s" }))
      assert.strictEqual(inherited.detail, `unknown transport "constructor" (have memory, other)`)
      // a scheme given where a transport's name belongs is named with the transport that serves it
      const serving = [Registry.memory, { ...other, name: "sockets", schemes: ["unixish"] }]
      const scheme = yield* Effect.flip(Registry.resolve(serving, { transport: "Unixish://", service: "s" }))
      assert.strictEqual(scheme.reason._tag, "UnsupportedScheme")
      assert.include(
        scheme.detail,
        `unknown transport "Unixish://" (have memory, sockets; unixish:// is served by "sockets")`
      )
      // an address where a transport's name belongs: named, shown without its secrets, pointed at IPC_ADDRESS
      const address = yield* Effect.flip(
        Registry.resolve(serving, { transport: "unixish://127.0.0.1:9/x?token=s3cr3t-value", service: "s" })
      )
      assert.strictEqual(address.reason._tag, "UnsupportedScheme")
      assert.notInclude(address.detail, "s3cr3t-value")
      assert.include(address.detail, `unixish:// is served by "sockets"; an address goes in IPC_ADDRESS`)
      const mismatch = yield* Effect.flip(
        Registry.resolve(descriptors, { transport: "memory", address: "other://x", service: "s" })
      )
      assert.strictEqual(mismatch.reason._tag, "UnsupportedScheme")
      // both settings are named, with the transport that serves the address and the fix
      assert.strictEqual(
        mismatch.detail,
        `IPC_TRANSPORT "memory" serves memory://, not the other:// of IPC_ADDRESS (other:// is served by "other"):` +
          ` change one of them, or unset IPC_TRANSPORT to let the address choose`
      )
      assert.strictEqual(mismatch.address, "other://x")
      const unserved = yield* Effect.flip(
        Registry.resolve(descriptors, { transport: "memory", address: "nowhere://x?token=s3cr3t-value", service: "s" })
      )
      assert.include(unserved.detail, `not the nowhere:// of IPC_ADDRESS (no transport here serves it):`)
      assert.notInclude(`${unserved.detail} ${unserved.address}`, "s3cr3t-value")
    }))

  it.live("layerConfig reads IPC_TRANSPORT / IPC_ADDRESS and provides a working transport", () =>
    Effect.gen(function*() {
      const address = yield* Registry.IpcAddress
      assert.strictEqual(address, "memory://from-config")
      const listener = yield* Transport.listen(address)
      const client = yield* Transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(new Uint8Array([42]))
      assert.deepStrictEqual([...(yield* server.receive)], [42])
    }).pipe(Effect.scoped, Effect.provide(withEnv({ IPC_TRANSPORT: "memory", IPC_ADDRESS: "memory://from-config" }))))

  it.effect("layerConfig fails to build on a bad configuration", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(withEnv({ IPC_TRANSPORT: "nope" })))
      assert.strictEqual(error._tag, "IpcError")
    }).pipe(Effect.scoped))
})
