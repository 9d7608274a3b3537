/**
 * A secret in an address (`?token=...`, a URL password) is never shown by
 * core: not in spans, log lines, an RpcClientError's message, nor the
 * address of the IpcError core hands back.
 */
import { Address, IpcError, IpcRpc, Memory, Registry, Transport } from "@effect-ipc/core"
import { ConformanceApi } from "@effect-ipc/testing/ConformanceApi"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import * as RpcClient from "effect/rpc/RpcClient"
import * as Tracer from "effect/Tracer"

const SECRET = "SECRETxCORE"

/** A transport that puts the address as given into its errors (core must not show it as it is). */
const careless: Transport.TransportShape = {
  schemes: ["ws"],
  listen: (address) => Effect.fail(IpcError.make("UnsupportedPlatform", "no listener here", address)),
  dial: (address) => Effect.fail(IpcError.make("NotFound", "nothing answered", address))
}

describe("Address.redact", () => {
  it("removes a token query parameter however it is written, and URL passwords", () => {
    assert.strictEqual(Address.redact(`ws://h:1/app?token=${SECRET}`), "ws://h:1/app")
    assert.strictEqual(Address.redact(`ws://h:1/app?%74oken=${SECRET}`), "ws://h:1/app")
    assert.strictEqual(Address.redact(`ws://h:1/app?TOKEN=${SECRET}&x=1`), "ws://h:1/app?x=1")
    assert.strictEqual(Address.redact(`ws://h:1/app?token=a&token=${SECRET}`), "ws://h:1/app")
    assert.strictEqual(Address.redact(`ws://h:1/app?x=1&to%6Ben=${SECRET}#top`), "ws://h:1/app?x=1#top")
    assert.strictEqual(Address.redact(`nng+tcp://user:${SECRET}@host:5555`), "nng+tcp://user@host:5555")
    assert.strictEqual(Address.redact(`memory://name?token=${SECRET}`), "memory://name")
    // written after # by mistake: shown in the "no #fragment" error before
    assert.strictEqual(Address.redact(`ws://h:1/app#token=${SECRET}`), "ws://h:1/app")
    // an escaped `=`: a key that holds the secret (`token=...` once decoded) was kept whole
    assert.strictEqual(Address.redact(`ws://h:1/app?token%3D${SECRET}`), "ws://h:1/app")
    assert.strictEqual(Address.redact(`ws://h:1/app?x=1&%74oken%3d${SECRET}`), "ws://h:1/app?x=1")
    assert.strictEqual(Address.redact(`ws://h:1/app#top&token=${SECRET}`), "ws://h:1/app#top")
    // tabs and newlines, which a URL parser (transport-ws reads addresses with one) drops wherever they are
    assert.strictEqual(Address.redact(`ws://h:1/app?to\tken=${SECRET}`), "ws://h:1/app")
    assert.strictEqual(Address.redact(`ws://h:1/app?x=1&tok\r\nen=${SECRET}`), "ws://h:1/app?x=1")
    assert.strictEqual(Address.redact(`ws:\t//user:${SECRET}@h:1/app`), "ws://user@h:1/app")
    // a password where a URL parser finds one without the slashes, or after a backslash
    assert.strictEqual(Address.redact(`ws:user:${SECRET}@h:1/app`), "ws:user@h:1/app")
    assert.strictEqual(Address.redact(`ws:/user:${SECRET}@h:1/app`), "ws:/user@h:1/app")
    assert.strictEqual(Address.redact(`ws:\\\\user:${SECRET}@h:1/app`), "ws:\\\\user@h:1/app")
    assert.strictEqual(Address.redact(` ws://user:${SECRET}@h:1/app`), " ws://user@h:1/app")
    for (const raw of [`ws://h:1/app?to\tken=${SECRET}`, `ws:user:${SECRET}@h:1/app`, `ws:\\\\u:${SECRET}@h:1/`]) {
      const url = new URL(raw)
      // what the URL parser reads as the secret is what is removed
      assert.isTrue(url.searchParams.get("token") === SECRET || url.password === SECRET, raw)
      assert.notInclude(Address.redact(raw), SECRET, raw)
    }
    // nothing to hide: the address as written
    for (const plain of ["unix:///tmp/a.sock", "unix:@abstract", "ws://127.0.0.1:8/x?y=1", "pipe://name"]) {
      assert.strictEqual(Address.redact(plain), plain)
    }
  })
})

describe("Address.redact: a password without a user name", () => {
  it("`scheme://:password@host`, whose password a URL parser reads, loses it", () => {
    const raw = `ws://:${SECRET}@h:1/app`
    assert.strictEqual(new URL(raw).password, SECRET)
    assert.strictEqual(Address.redact(raw), "ws://@h:1/app")
    assert.strictEqual(Address.redact(` nng+tcp://:${SECRET}@host:5555`), " nng+tcp://@host:5555")
  })
})

describe("core never shows an address's secret", () => {
  it.effect("a transport's error that names the address in its detail: the detail shows it redacted", () =>
    Effect.gen(function*() {
      const wordy: Transport.TransportShape = {
        schemes: ["ws"],
        listen: (address) => Effect.fail(IpcError.make("AddressInUse", `cannot listen at ${address}`, address)),
        dial: (address) => Effect.fail(IpcError.make("NotFound", `nothing answered at ${address}`, address))
      }
      const transport = Transport.route([wordy])
      const address = `ws://127.0.0.1:1/app?token=${SECRET}`
      const dialled = yield* Effect.flip(Effect.scoped(transport.dial(address)))
      const listened = yield* Effect.flip(Effect.scoped(transport.listen(address)))
      assert.strictEqual(dialled.detail, "nothing answered at ws://127.0.0.1:1/app")
      assert.strictEqual(listened.detail, "cannot listen at ws://127.0.0.1:1/app")
      for (const error of [dialled, listened]) assert.notInclude(error.message, SECRET)
    }))

  it.effect("Registry: an address no listed transport serves (IPC_ADDRESS with a token or a password)", () =>
    Effect.gen(function*() {
      for (const address of [`ws://127.0.0.1:1/x?token=${SECRET}`, `ws://user:${SECRET}@127.0.0.1:1/x`]) {
        const error = yield* Effect.flip(Registry.resolve([Registry.memory], { address, service: "app" }))
        assert.strictEqual(error.reason._tag, "UnsupportedScheme")
        assert.notInclude(error.message, SECRET)
        assert.notInclude(String(error.address), SECRET)
        assert.include(error.message, "127.0.0.1:1")
      }
    }))

  for (const address of [`memory://nobody?token=${SECRET}`, `ws://127.0.0.1:1/app?token=${SECRET}`]) {
    it.live(`spans, logs and the RpcClientError of a client of ${address.split("?")[0]}`, () => {
      const shown: Array<string> = []
      class Recording extends Tracer.NativeSpan {
        override attribute(key: string, value: unknown): void {
          shown.push(`span ${this.name} ${key}=${String(value)}`)
          super.attribute(key, value)
        }
      }
      const tracer = Tracer.make({ span: (options) => new Recording(options) })
      const logger = Logger.make(({ cause, message }) => {
        shown.push(`log ${JSON.stringify(message)} ${Cause.pretty(cause)}`)
      })
      return Effect.gen(function*() {
        // memory:// finds no listener; the ws:// stand-in fails as a careless transport would, the raw address in its error
        const transport = Transport.route([Memory.make(), careless])
        const protocol = yield* Layer.build(
          IpcRpc.layerClientProtocol(address, { connectTimeout: "300 millis" }).pipe(
            Layer.provide(IpcRpc.layerSerialization),
            Layer.provide(Layer.succeed(Transport.Transport, transport))
          )
        )
        const client = yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))
        const error = yield* Effect.flip(client.Echo({ n: 1 }))
        shown.push(error.message)
        const cause = (error.reason as { readonly cause?: unknown }).cause
        assert.isTrue(IpcError.isIpcError(cause))
        shown.push(String((cause as IpcError.IpcError).address), (cause as IpcError.IpcError).message)
        // and directly: the dial's own error
        const dialled = yield* Effect.flip(Effect.scoped(transport.dial(address)))
        shown.push(String(dialled.address), dialled.message)
        const where = address.split("?")[0]!
        assert.include(shown, `span effect-ipc.dial address=${where}`, shown.join("\n"))
        assert.isTrue(shown.some((line) => line.startsWith("log")), shown.join("\n"))
        assert.isFalse(shown.some((line) => line.includes(SECRET)), shown.join("\n"))
        assert.include(error.message, where)
      }).pipe(
        Effect.scoped,
        Effect.withTracer(tracer),
        Effect.provide(Logger.layer([logger])),
        Effect.provideService(References.MinimumLogLevel, "Debug")
      )
    })
  }
})
