/**
 * Transport options from configuration: `IPC_OPTIONS` (JSON, or an object
 * from a structured provider) and `IPC_OPTIONS_<NAME>` reach the chosen
 * transport through `Registry.layerConfig`, decoded with the schema its
 * descriptor declares; anything unknown or malformed fails the layer's build
 * with reason `InvalidOption`, naming the transport, the option and where it
 * was set.
 */
import { IpcError, IpcRpc, Memory, Registry, Transport, TransportOptions } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

let n = 0
const fresh = () => `memory://options-${n++}`

const withProvider = (provider: ConfigProvider.ConfigProvider, descriptors = [Registry.memory]) =>
  Registry.layerConfig(descriptors, { service: "svc" }).pipe(Layer.provide(ConfigProvider.layer(provider)))

const env = (vars: Record<string, string>) => ConfigProvider.fromEnv({ env: { IPC_ADDRESS: fresh(), ...vars } })

/** Sends `size` bytes over the configured transport: the reason it failed with, or `ok`. */
const sendOf = (size: number) =>
  Effect.gen(function*() {
    const address = yield* Registry.IpcAddress
    yield* Transport.listen(address)
    const client = yield* Transport.dial(address)
    return yield* client.send(new Uint8Array(size)).pipe(
      Effect.as("ok"),
      Effect.catch((error) => Effect.succeed(error.reason._tag))
    )
  }).pipe(Effect.scoped)

/** The detail of the `InvalidOption` error a layer fails to build with. */
const buildError = <A, E extends { readonly _tag: string }>(layer: Layer.Layer<A, E>) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Layer.build(layer))
    if (!IpcError.isIpcError(error)) return assert.fail(`expected an IpcError, got ${error._tag}`)
    assert.strictEqual(error.reason._tag, "InvalidOption", error.detail)
    return error.detail
  }).pipe(Effect.scoped)

describe("transport options from configuration", () => {
  it.live("IPC_OPTIONS_MAX_MESSAGE_SIZE from the environment limits memory:// messages", () =>
    Effect.gen(function*() {
      const layer = withProvider(env({ IPC_OPTIONS_MAX_MESSAGE_SIZE: "16" }))
      assert.strictEqual(yield* Effect.provide(sendOf(16), layer), "ok")
      assert.strictEqual(yield* Effect.provide(sendOf(17), layer), "FrameTooLarge")
      // without the variable, the default limit (256 MiB) lets it through
      assert.strictEqual(yield* Effect.provide(sendOf(17), withProvider(env({}))), "ok")
    }))

  it.live("IPC_OPTIONS as a JSON string, as an object from a structured provider; a variable wins over it", () =>
    Effect.gen(function*() {
      const json = withProvider(env({ IPC_OPTIONS: `{"maxMessageSize": "1 KiB"}` }))
      assert.strictEqual(yield* Effect.provide(sendOf(1024), json), "ok")
      assert.strictEqual(yield* Effect.provide(sendOf(1025), json), "FrameTooLarge")

      const structured = withProvider(
        ConfigProvider.fromUnknown({ IPC_ADDRESS: fresh(), IPC_OPTIONS: { maxMessageSize: 8 } })
      )
      assert.strictEqual(yield* Effect.provide(sendOf(9), structured), "FrameTooLarge")

      const both = withProvider(
        env({ IPC_OPTIONS: `{"maxMessageSize": 8, "maxBufferedMessages": 2}`, IPC_OPTIONS_MAX_MESSAGE_SIZE: "100" })
      )
      assert.strictEqual(yield* Effect.provide(sendOf(100), both), "ok")
      assert.strictEqual(yield* Effect.provide(sendOf(101), both), "FrameTooLarge")
    }))

  it.effect("an unknown option fails the build, naming it and the transport", () =>
    Effect.gen(function*() {
      const inJson = yield* buildError(withProvider(env({ IPC_OPTIONS: `{"ringSize": 4096}` })))
      assert.include(inJson, `transport "memory"`)
      assert.include(inJson, `"ringSize" (in IPC_OPTIONS) is not an option`)
      assert.include(inJson, "maxMessageSize, maxBufferedMessages")

      const variable = yield* buildError(withProvider(env({ IPC_OPTIONS_MAX_MESAGE_SIZE: "10" })))
      assert.include(variable, `transport "memory"`)
      assert.include(variable, "IPC_OPTIONS_MAX_MESAGE_SIZE is not an option")

      const structured = yield* buildError(
        withProvider(ConfigProvider.fromUnknown({ IPC_OPTIONS: { maxMessageSize: 8, nope: 1 } }))
      )
      assert.include(structured, `"nope" (in IPC_OPTIONS) is not an option`)

      // a structured provider holds a variable as a key of its own: a misspelt one is refused there too
      const structuredVariable = yield* buildError(
        withProvider(ConfigProvider.fromUnknown({ IPC_ADDRESS: fresh(), IPC_OPTIONS_MAX_MESAGE_SIZE: 10 }))
      )
      assert.include(structuredVariable, "IPC_OPTIONS_MAX_MESAGE_SIZE is not an option")
      // ... and a well-spelt one applies, an empty one counting as unset (as in the environment)
      const spelt = withProvider(
        ConfigProvider.fromUnknown({ IPC_ADDRESS: fresh(), IPC_OPTIONS_MAX_MESSAGE_SIZE: 8, IPC_OPTIONS_BOGUS: "" })
      )
      assert.strictEqual(yield* Effect.provide(sendOf(9), spelt), "FrameTooLarge")
    }))

  it.effect("a value of the wrong kind fails the build, naming the option, where it was set and what was expected", () =>
    Effect.gen(function*() {
      const variable = yield* buildError(withProvider(env({ IPC_OPTIONS_MAX_MESSAGE_SIZE: "big" })))
      assert.strictEqual(
        variable,
        `transport "memory": option maxMessageSize (IPC_OPTIONS_MAX_MESSAGE_SIZE): expected a size in bytes (65536, "64 KiB", "4 MiB"), got "big"`
      )
      // a number JSON cannot write (1e400 reads as Infinity) is shown as it is, not as null
      const huge = yield* buildError(withProvider(env({ IPC_OPTIONS: `{"maxMessageSize": 1e400}` })))
      assert.match(huge, /got Infinity$/)
      const json = yield* buildError(withProvider(env({ IPC_OPTIONS: `{"maxBufferedMessages": 0}` })))
      assert.strictEqual(
        json,
        `transport "memory": option maxBufferedMessages (IPC_OPTIONS.maxBufferedMessages): expected a whole number of at least 1, got 0`
      )
    }))

  it.effect("a value of the right kind that no listen or dial would take fails the build, naming where it was set", () =>
    Effect.gen(function*() {
      // a transport with duration options (memory:// underneath)
      const timed: Registry.TransportDescriptor = {
        ...Registry.memory,
        options: TransportOptions.declare<
          { readonly lingerTimeout?: Duration.Input; readonly handshakeTimeout?: Duration.Input }
        >()(
          { lingerTimeout: TransportOptions.Duration, handshakeTimeout: TransportOptions.Duration },
          () => Effect.sync(() => Memory.make())
        )
      }
      const build = (vars: Record<string, string>) => buildError(withProvider(env(vars), [timed]))
      // a timer of 30 days fired after 1 ms: close gave up at once, and what it had not sent was lost
      assert.strictEqual(
        yield* build({ IPC_OPTIONS_LINGER_TIMEOUT: "30 days" }),
        `transport "memory": option lingerTimeout (IPC_OPTIONS_LINGER_TIMEOUT): 30d is longer than a timer can wait (2^31 - 1 ms, about 24.8 days); Infinity waits without limit`
      )
      assert.strictEqual(
        yield* build({ IPC_OPTIONS: `{"handshakeTimeout": "Infinity"}` }),
        `transport "memory": option handshakeTimeout (IPC_OPTIONS.handshakeTimeout): Infinity is not a finite duration`
      )
      assert.strictEqual(
        yield* build({ IPC_OPTIONS_HANDSHAKE_TIMEOUT: "0" }),
        `transport "memory": option handshakeTimeout (IPC_OPTIONS_HANDSHAKE_TIMEOUT): 0 is not above zero (it would time out, or poll, at once)`
      )
      // heartbeats whose timeout is no longer than their interval dropped idle, healthy peers
      const beating: Registry.TransportDescriptor = {
        ...Registry.memory,
        options: TransportOptions.declare<{ readonly heartbeat?: typeof TransportOptions.Heartbeat.Type }>()(
          { heartbeat: TransportOptions.Heartbeat },
          () => Effect.sync(() => Memory.make())
        )
      }
      assert.strictEqual(
        yield* buildError(withProvider(
          env({ IPC_OPTIONS_HEARTBEAT_INTERVAL: "10 seconds", IPC_OPTIONS_HEARTBEAT_TIMEOUT: "1 second" }),
          [beating]
        )),
        `transport "memory": option heartbeat.timeout (IPC_OPTIONS_HEARTBEAT_TIMEOUT): 1s is not longer than heartbeat.interval 10s: an idle peer answers a ping an interval after the last, so it would be dropped (give it two or three intervals)`
      )
      // Infinity where it means no limit builds
      const layer = withProvider(env({ IPC_OPTIONS_LINGER_TIMEOUT: "Infinity" }), [timed])
      assert.strictEqual(yield* Effect.provide(sendOf(16), layer), "ok")
    }))

  it.effect("a value the transport itself refuses as it is built is named with where it was set too", () =>
    Effect.gen(function*() {
      // a transport whose make refuses what its schema lets through (file://'s fileMode 0o0, shm://'s 2 GiB ring)
      const picky: Registry.TransportDescriptor = {
        ...Registry.memory,
        options: TransportOptions.declare<{ readonly ringSize?: number; readonly maxBytes?: number }>()(
          { ringSize: TransportOptions.Bytes, maxBytes: TransportOptions.Bytes },
          (options) =>
            (options.ringSize ?? 0) > 1024
              ? Effect.fail(IpcError.make("InvalidOption", `ringSize ${options.ringSize} is beyond the largest ring`))
              : (options.maxBytes ?? 1024) < 1024
              ? Effect.fail(IpcError.make("InvalidOption", `a segment of 1024 bytes is more than maxBytes allows`))
              : Effect.sync(() => Memory.make())
        )
      }
      const build = (vars: Record<string, string>) => buildError(withProvider(env(vars), [picky]))
      assert.strictEqual(
        yield* build({ IPC_OPTIONS_RING_SIZE: "2 KiB" }),
        `transport "memory": option ringSize (IPC_OPTIONS_RING_SIZE): 2048 is beyond the largest ring`
      )
      assert.strictEqual(
        yield* build({ IPC_OPTIONS: `{"ringSize": 2048}` }),
        `transport "memory": option ringSize (IPC_OPTIONS.ringSize): 2048 is beyond the largest ring`
      )
      // an option the detail names, not first: where it was set is added
      assert.strictEqual(
        yield* build({ IPC_OPTIONS_MAX_BYTES: "512" }),
        `transport "memory": a segment of 1024 bytes is more than maxBytes allows (maxBytes is set in IPC_OPTIONS_MAX_BYTES)`
      )
    }))

  it.effect("IPC_OPTIONS that is not a JSON object fails the build", () =>
    Effect.gen(function*() {
      const notJson = yield* buildError(withProvider(env({ IPC_OPTIONS: "maxMessageSize=10" })))
      assert.include(notJson, "IPC_OPTIONS is not JSON (an unexpected character)")
      // where the parser stopped, never the text around it (V8 quotes it: a token in it was shown)
      const cut = yield* buildError(withProvider(env({ IPC_OPTIONS: `{"maxMessageSize": "1 MiB"` })))
      assert.include(cut, "IPC_OPTIONS is not JSON (at character 26)")
      const quoted = yield* buildError(withProvider(env({ IPC_OPTIONS: `{"maxMessageSize": Kx81-secret-part}` })))
      assert.notInclude(quoted, "Kx81")
      const array = yield* buildError(withProvider(env({ IPC_OPTIONS: "[1]" })))
      assert.include(array, "IPC_OPTIONS must be a JSON object")
      // JSON that is not an object is named by its kind, never shown: a token put there by mistake
      const listed = yield* buildError(withProvider(env({ IPC_OPTIONS: `[{"token": "Kx81-secret-part"}]` })))
      assert.strictEqual(listed, `transport "memory": IPC_OPTIONS must be a JSON object of options, not a list`)
      const text = yield* buildError(withProvider(env({ IPC_OPTIONS: `"Kx81-secret-part"` })))
      assert.strictEqual(text, `transport "memory": IPC_OPTIONS must be a JSON object of options, not a string`)
    }))

  it.effect("a transport that declares no options refuses any", () =>
    Effect.gen(function*() {
      const { options: _, ...bare } = Registry.memory
      const detail = yield* buildError(withProvider(env({ IPC_OPTIONS_MAX_MESSAGE_SIZE: "10" }), [bare]))
      assert.strictEqual(
        detail,
        `transport "memory": IPC_OPTIONS_MAX_MESSAGE_SIZE is not an option of this transport (it declares no options)`
      )
      const json = yield* buildError(withProvider(env({ IPC_OPTIONS: `{"maxMessageSize": 10}` }), [bare]))
      assert.include(
        json,
        `"maxMessageSize" (in IPC_OPTIONS) is not an option of this transport (it declares no options)`
      )
    }))

  it.live("only the chosen transport is built with the options; the others a program may dial keep their defaults", () =>
    Effect.gen(function*() {
      const built: Array<string> = []
      const probe = (name: string): Registry.TransportDescriptor => ({
        name,
        schemes: [name],
        defaultAddress: (service) => `${name}://${service}`,
        make: Effect.sync(() => {
          built.push(`${name} with defaults`)
          return { ...Memory.make(), schemes: [name] }
        }),
        options: TransportOptions.declare<Memory.MemoryOptions>()(
          { maxMessageSize: TransportOptions.Bytes },
          (options) =>
            Effect.sync(() => {
              built.push(`${name} with ${JSON.stringify(options)}`)
              return { ...Memory.make(options), schemes: [name] }
            })
        )
      })
      yield* Effect.gen(function*() {
        // a dial of the other scheme builds the other transport (its dial then fails: no listener)
        yield* Effect.flip(Transport.dial("second://x"))
      }).pipe(
        Effect.scoped,
        Effect.provide(withProvider(
          ConfigProvider.fromEnv({ env: { IPC_TRANSPORT: "first", IPC_OPTIONS_MAX_MESSAGE_SIZE: "16" } }),
          [probe("first"), probe("second")]
        ))
      )
      assert.deepStrictEqual(built, [`first with {"maxMessageSize":16}`, "second with defaults"])
    }))

  it.effect("the kinds: sizes with units, durations, permission bits, flags, choices; nested options", () =>
    Effect.gen(function*() {
      interface Opts {
        readonly size?: number
        readonly wait?: Duration.Input
        readonly mode?: number
        readonly on?: boolean
        readonly how?: "os" | "fsync"
        readonly dir?: string
        readonly count?: number
        readonly heartbeat?: { readonly interval: Duration.Input; readonly timeout: Duration.Input }
      }
      const declaration = TransportOptions.declare<Opts>()({
        size: TransportOptions.Bytes,
        wait: TransportOptions.Duration,
        mode: TransportOptions.Mode,
        on: TransportOptions.Flag,
        how: TransportOptions.Choice(["os", "fsync"]),
        dir: TransportOptions.Text,
        count: TransportOptions.Count,
        heartbeat: TransportOptions.Heartbeat
      }, () => Effect.die("not built"))
      const read = (vars: Record<string, string>) =>
        TransportOptions.read("t", declaration).pipe(
          Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: vars }))
        )
      const got = yield* read({
        IPC_OPTIONS_SIZE: "4 MiB",
        IPC_OPTIONS_WAIT: "5 seconds",
        IPC_OPTIONS_MODE: "0640",
        IPC_OPTIONS_ON: "false",
        IPC_OPTIONS_HOW: "fsync",
        IPC_OPTIONS_DIR: "/run/app",
        IPC_OPTIONS_COUNT: "12",
        IPC_OPTIONS_HEARTBEAT_INTERVAL: "250",
        IPC_OPTIONS_HEARTBEAT_TIMEOUT: "1 second"
      })
      assert.deepStrictEqual(got, {
        size: 4 * 1024 * 1024,
        wait: Duration.seconds(5),
        mode: 0o640,
        on: false,
        how: "fsync",
        dir: "/run/app",
        count: 12,
        heartbeat: { interval: Duration.millis(250), timeout: Duration.seconds(1) }
      })
      const json = yield* read({
        IPC_OPTIONS:
          `{"size": "64 KiB", "wait": 250, "mode": 384, "on": true, "heartbeat": {"interval": 100, "timeout": "2 seconds"}}`
      })
      assert.deepStrictEqual(json, {
        size: 65536,
        wait: Duration.millis(250),
        mode: 0o600,
        on: true,
        heartbeat: { interval: Duration.millis(100), timeout: Duration.seconds(2) }
      })
      assert.isUndefined(yield* read({}))

      const problems = (yield* Effect.flip(read({ IPC_OPTIONS_HOW: "sometimes", IPC_OPTIONS_MODE: "0999" }))).detail
      const empty = (yield* Effect.flip(read({ IPC_OPTIONS: `{"dir": "", "count": 1.5}` }))).detail
      assert.include(empty, `option dir (IPC_OPTIONS.dir): expected a non-empty string, got ""`)
      assert.include(empty, `option count (IPC_OPTIONS.count): expected a whole number of at least 1, got 1.5`)
      const mode =
        `expected permission bits: octal digits in a string ("0600", "0o660"), or a JSON number, which is decimal (0o600 is 384) and at most 511`
      assert.include(problems, `option mode (IPC_OPTIONS_MODE): ${mode}, got "0999"`)
      // a JSON number is decimal: 600 would be 0o1130 (group-writable, sticky), so a number over 0o777 is refused
      const decimal = (yield* Effect.flip(read({ IPC_OPTIONS: `{"mode": 600}` }))).detail
      assert.include(decimal, `option mode (IPC_OPTIONS.mode): ${mode}, got 600`)
      // four octal digits are more than permission bits (setuid, sticky): refused as the layer is built
      // from the environment, a value is a string, read as octal: 384 is not octal digits (it said "384 is 0o600")
      const fromEnv = (yield* Effect.flip(read({ IPC_OPTIONS_MODE: "384" }))).detail
      assert.include(fromEnv, `option mode (IPC_OPTIONS_MODE): ${mode}, got "384"`)
      const special = (yield* Effect.flip(read({ IPC_OPTIONS_MODE: "4755" }))).detail
      assert.include(special, `option mode (IPC_OPTIONS_MODE): ${mode}, got "4755"`)
      assert.include(problems, `option how (IPC_OPTIONS_HOW): expected one of "os", "fsync", got "sometimes"`)
      const nested = (yield* Effect.flip(read({ IPC_OPTIONS: `{"heartbeat": {"interval": 100, "timeot": 5}}` })))
        .detail
      assert.include(nested, `"heartbeat.timeot" (in IPC_OPTIONS) is not an option`)
      const inner = (yield* Effect.flip(read({ IPC_OPTIONS_HEARTBEAT_INTERVAL: "soon" }))).detail
      assert.include(inner, "option heartbeat.interval (IPC_OPTIONS_HEARTBEAT_INTERVAL): expected a duration")
      // half a nested option: the error names the missing one and where the other was set (it said
      // "option heartbeat.timeout (IPC_OPTIONS_HEARTBEAT_INTERVAL): Missing key")
      const half = (yield* Effect.flip(read({ IPC_OPTIONS_HEARTBEAT_INTERVAL: "1 second" }))).detail
      assert.strictEqual(
        half,
        `transport "t": option heartbeat.timeout is missing: heartbeat needs it too (heartbeat is set in IPC_OPTIONS_HEARTBEAT_INTERVAL; set IPC_OPTIONS_HEARTBEAT_TIMEOUT or IPC_OPTIONS.heartbeat.timeout)`
      )
      const halfJson = (yield* Effect.flip(read({ IPC_OPTIONS: `{"heartbeat": {"timeout": 100}}` }))).detail
      assert.include(
        halfJson,
        "option heartbeat.interval is missing: heartbeat needs it too (heartbeat is set in IPC_OPTIONS.heartbeat;"
      )
      // a value in IPC_OPTIONS that a variable wins over is checked all the same (it was ignored: nothing is)
      const shadowed = (yield* Effect.flip(read({ IPC_OPTIONS: `{"size": "x"}`, IPC_OPTIONS_SIZE: "65536" }))).detail
      assert.include(shadowed, `option size (IPC_OPTIONS.size, which IPC_OPTIONS_SIZE wins over): expected a size`)
      const shadowedInner = (yield* Effect.flip(read({
        IPC_OPTIONS: `{"heartbeat": {"interval": "soon", "timeout": "3 seconds"}}`,
        IPC_OPTIONS_HEARTBEAT_INTERVAL: "1 second"
      }))).detail
      assert.include(
        shadowedInner,
        `option heartbeat.interval (IPC_OPTIONS.heartbeat.interval, which IPC_OPTIONS_HEARTBEAT_INTERVAL wins over): expected a duration`
      )
      // a good value there is won over, as before
      const won = yield* read({ IPC_OPTIONS: `{"size": 8}`, IPC_OPTIONS_SIZE: "100" })
      assert.deepInclude(won, { size: 100 })
    }))
})

/** How many sends over a fresh configured channel complete (of `limit`) while nobody receives. */
const sendsTaken = (limit: number) =>
  Effect.gen(function*() {
    const address = yield* Registry.IpcAddress
    const listener = yield* Transport.listen(address)
    const client = yield* Transport.dial(address)
    const server = yield* listener.accept
    let taken = 0
    // a send that does not complete is waiting for room (back-pressure); it is not taken back, so stop there
    while (taken < limit) {
      const done = yield* Effect.timeoutOption(client.send(new Uint8Array([taken])), "300 millis")
      if (done._tag === "None") break
      taken++
    }
    // the waiting send goes on once the receiver reads: the stop was back-pressure, not a broken channel
    assert.deepStrictEqual([...(yield* server.receive)], [0])
    return taken
  }).pipe(Effect.scoped)

describe("a count option from a structured provider's IPC_OPTIONS_<NAME> variable", () => {
  it.live(
    "IPC_OPTIONS_MAX_BUFFERED_MESSAGES (a number, as a structured provider gives it) bounds the receiver's buffer",
    () =>
      Effect.gen(function*() {
        const configured = withProvider(
          ConfigProvider.fromUnknown({ IPC_ADDRESS: fresh(), IPC_OPTIONS_MAX_BUFFERED_MESSAGES: 2 })
        )
        const bounded = yield* Effect.provide(sendsTaken(20), configured)
        // the message that fills the inbox is taken; the next waits
        assert.strictEqual(bounded, 2, "sends taken with 2 messages of room")
        // the default (4096) takes them all
        const unbounded = yield* Effect.provide(
          sendsTaken(20),
          withProvider(ConfigProvider.fromUnknown({ IPC_ADDRESS: fresh() }))
        )
        assert.strictEqual(unbounded, 20)
      }),
    30_000
  )
})

describe("millisOf: what a duration option in code may be", () => {
  it("durations as objects, with units left out as undefined; anything else is undefined, never a throw", () => {
    assert.strictEqual(TransportOptions.millisOf({ minutes: 10 }), 600_000)
    assert.strictEqual(TransportOptions.millisOf({ minutes: 10, seconds: undefined }), 600_000)
    assert.strictEqual(TransportOptions.millisOf({ hours: 1, milliseconds: 5 }), 3_600_005)
    assert.strictEqual(TransportOptions.millisOf(Duration.seconds(2)), 2000)
    assert.strictEqual(TransportOptions.millisOf("5 seconds"), 5000)
    const throwing = Object.defineProperty({}, "minutes", {
      enumerable: true,
      get: () => {
        throw new Error("a getter that throws")
      }
    })
    for (const value of [{}, { seconds: undefined }, { minutes: 1, bogus: 2 }, { minutes: -1 }, { minutes: "1" }]) {
      assert.isUndefined(TransportOptions.millisOf(value), JSON.stringify(value))
    }
    assert.isUndefined(TransportOptions.millisOf(throwing))
  })
})

describe("options given in code that are not an object (a caller without types)", () => {
  // a structured provider gives every value as text: { mode: 0o640 } arrived as "416" and was read as octal
  // text, 0o416 (others may read and write); { mode: 384 }, the README's decimal 0o600, was refused
  it.effect("permission bits from a structured provider: a number is read as a number, digits that read two ways are refused", () =>
    Effect.gen(function*() {
      const declaration = TransportOptions.declare<{ readonly mode?: number; readonly wait?: Duration.Input }>()(
        { mode: TransportOptions.Mode, wait: TransportOptions.Duration },
        () => Effect.die("not built")
      )
      const read = (values: Record<string, unknown>) =>
        TransportOptions.read("t", declaration).pipe(
          Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromUnknown(values))
        )
      assert.deepStrictEqual(yield* read({ IPC_OPTIONS: { mode: 384, wait: 250 } }), {
        mode: 0o600,
        wait: Duration.millis(250)
      })
      assert.deepStrictEqual(yield* read({ IPC_OPTIONS: { mode: 0o666 } }), { mode: 0o666 })
      assert.deepStrictEqual(yield* read({ IPC_OPTIONS: { mode: "0640" } }), { mode: 0o640 })
      assert.deepStrictEqual(yield* read({ IPC_OPTIONS_MODE: 0o700 }), { mode: 0o700 })
      for (
        const [values, where] of [[{ IPC_OPTIONS: { mode: 0o640 } }, "IPC_OPTIONS.mode"], [
          { IPC_OPTIONS_MODE: 0o640 },
          "IPC_OPTIONS_MODE"
        ]] as const
      ) {
        const detail = (yield* Effect.flip(read(values))).detail
        assert.include(detail, `option mode (${where}): "416" from a structured provider may be the number 416`)
      }
      // the environment's text is text: a variable is octal digits, IPC_OPTIONS' JSON keeps its numbers
      const fromEnv = (vars: Record<string, string>) =>
        TransportOptions.read("t", declaration).pipe(
          Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: vars }))
        )
      assert.deepStrictEqual(yield* fromEnv({ IPC_OPTIONS_MODE: "640" }), { mode: 0o640 })
      assert.deepStrictEqual(yield* fromEnv({ IPC_OPTIONS: `{"mode": 416}` }), { mode: 0o640 })
      // an IPC_OPTIONS value a variable wins over is checked as it would be read on its own: 384 is 0o600 there
      // too (it was refused as octal text), and "416" is as ambiguous there as anywhere
      assert.deepStrictEqual(yield* read({ IPC_OPTIONS: { mode: 384 }, IPC_OPTIONS_MODE: "0600" }), { mode: 0o600 })
      const shadowed = (yield* Effect.flip(read({ IPC_OPTIONS: { mode: 0o640 }, IPC_OPTIONS_MODE: "0640" }))).detail
      assert.include(
        shadowed,
        `option mode (IPC_OPTIONS.mode, which IPC_OPTIONS_MODE wins over): "416" from a structured provider may be`
      )
    }))

  it.effect("null, a string, a number, a list: InvalidOption saying so, never a TypeError defect", () =>
    Effect.gen(function*() {
      for (const given of [null, "fast", 42, ["x"]]) {
        const bad = given as never
        // a transport's listen and dial, through the `Memory.layer` a program provides
        const listen = yield* Effect.flip(
          Effect.scoped(Transport.listen(fresh())).pipe(Effect.provide(Memory.layer(bad)))
        )
        const dial = yield* Effect.flip(Effect.scoped(Transport.dial(fresh())).pipe(Effect.provide(Memory.layer(bad))))
        // the registry's layer, and the RPC client's
        const registry = yield* Effect.flip(
          Layer.build(Registry.layerConfig([Registry.memory], bad)).pipe(Effect.scoped)
        )
        const client = yield* Effect.flip(
          Layer.build(IpcRpc.layerClientProtocol(fresh(), bad)).pipe(
            Effect.provide(Memory.layer()),
            Effect.provide(IpcRpc.layerSerialization),
            Effect.scoped
          )
        )
        for (const error of [listen, dial, registry, client]) {
          assert.isTrue(IpcError.isIpcError(error), `${String(given)}: ${String(error)}`)
          assert.strictEqual((error as IpcError.IpcError).reason._tag, "InvalidOption")
          assert.match(
            (error as IpcError.IpcError).detail,
            /options( of \w+)? are not an object \(got (null|a string|a number|a list)\)$/
          )
        }
      }
      assert.isUndefined(TransportOptions.notAnObject(undefined))
      assert.isUndefined(TransportOptions.notAnObject({}))
    }))

  it.effect("a mode that String cannot write (no prototype, a throwing toString): InvalidOption, never a defect", () =>
    Effect.gen(function*() {
      const throwing = {
        toString: () => {
          throw new Error("not a string")
        }
      }
      for (const mode of [Object.create(null) as unknown, throwing]) {
        const options = { mode } as never
        const listen = yield* Effect.exit(
          Effect.scoped(Transport.listen(fresh())).pipe(Effect.provide(Memory.layer(options)))
        )
        const layer = yield* Effect.exit(Layer.build(Memory.layer(options)).pipe(Effect.scoped))
        for (const exit of [listen, layer]) {
          assert.isTrue(exit._tag === "Failure" && exit.cause.reasons[0]?._tag === "Fail", JSON.stringify(exit))
        }
        const refused = TransportOptions.checkOptions(options)
        assert.strictEqual(refused?.reason._tag, "InvalidOption")
        assert.match(refused!.detail, /^mode \(an object\) is not permission bits/)
      }
    }))
})
