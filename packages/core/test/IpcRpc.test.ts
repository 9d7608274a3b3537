import { ChannelEngine, IpcChannel, IpcError, IpcRpc, Memory, Policy, Registry, Transport } from "@effect-ipc/core"
import { ConformanceApi, ConformanceHandlers, Refused } from "@effect-ipc/testing/ConformanceApi"
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcClient from "effect/rpc/RpcClient"
import { RpcClientDefect, RpcClientError } from "effect/rpc/RpcClientError"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/testing/TestClock"
import * as Bound from "../src/internal/bound.ts"
import * as Eager from "../src/internal/eager.ts"
import * as Packed from "../src/internal/packed.ts"

let n = 0

const serveAndCall = (serialization: Layer.Layer<RpcSerialization.RpcSerialization>) =>
  Effect.gen(function*() {
    const address = `memory://rpc-test-${n++}`
    const transport = Layer.succeed(Transport.Transport, Memory.make())
    yield* Layer.build(
      RpcServer.layer(ConformanceApi).pipe(
        Layer.provide(ConformanceHandlers),
        Layer.provide(IpcRpc.layerServerProtocol(address)),
        Layer.provide(serialization),
        Layer.provide(transport)
      )
    )
    const protocol = yield* Layer.build(
      IpcRpc.layerClientProtocol(address).pipe(Layer.provide(serialization), Layer.provide(transport))
    )
    return yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))
  })

describe("IpcRpc", () => {
  for (
    const [name, serialization] of [
      ["packed (default)", IpcRpc.layerSerialization],
      ["effect's schema binary", IpcRpc.layerSerializationSchemaBinary],
      ["JSON", IpcRpc.layerSerializationJson]
    ] as const
  ) {
    it.live(`carries calls, typed errors and streams with ${name} serialization`, () =>
      Effect.gen(function*() {
        const client = yield* serveAndCall(serialization)
        assert.strictEqual(yield* client.Echo({ n: 41 }), 41)
        const error = yield* Effect.flip(client.Fail({ why: "no" }))
        assert.instanceOf(error, Refused)
        assert.deepStrictEqual(yield* Stream.runCollect(client.Range({ n: 3 })), [1, 2, 3])
        // many calls at once: requests and replies written and read in bursts, each reply to its own call
        const many = Array.from({ length: 300 }, (_, i) => i)
        assert.deepStrictEqual(
          yield* Effect.forEach(many, (i) => client.Echo({ n: i }), { concurrency: "unbounded" }),
          many
        )
      }).pipe(Effect.scoped))
  }

  it.live("fails listening at a taken address when the server layer is built", () =>
    Effect.gen(function*() {
      const address = `memory://rpc-taken-${n++}`
      const transport = Layer.succeed(Transport.Transport, Memory.make())
      yield* Transport.listen(address).pipe(Effect.provide(transport))
      const error = yield* Effect.flip(
        Layer.build(
          IpcRpc.layerServerProtocol(address).pipe(Layer.provide(IpcRpc.layerSerialization), Layer.provide(transport))
        )
      )
      assert.strictEqual(error.reason._tag, "AddressInUse")
    }).pipe(Effect.scoped))

  it.live("retryIdempotent retries transport failures only, not the procedure's typed errors", () =>
    Effect.gen(function*() {
      let attempts = 0
      const flaky = Effect.suspend(() =>
        ++attempts < 3
          ? Effect.fail(new RpcClientError({ reason: new RpcClientDefect({ message: "link lost", cause: null }) }))
          : Effect.succeed("done")
      )
      assert.strictEqual(yield* IpcRpc.retryIdempotent(flaky), "done")
      assert.strictEqual(attempts, 3)
      let refusals = 0
      const refusing = Effect.suspend(() => (refusals++, Effect.fail(new Refused({ why: "typed" }))))
      yield* Effect.flip(IpcRpc.retryIdempotent(refusing))
      assert.strictEqual(refusals, 1)
    }))

  it.effect("retryIdempotent given a number of retries, not a Schedule: InvalidOption, and the call is not run", () =>
    Effect.gen(function*() {
      let runs = 0
      const call = Effect.sync(() => ++runs)
      for (const schedule of [3, "5", null]) {
        const error = yield* Effect.flip(IpcRpc.retryIdempotent(call, schedule as never))
        assert.isTrue(IpcError.isIpcError(error), String(error))
        assert.strictEqual((error as IpcError.IpcError).reason._tag, "InvalidOption")
        assert.match((error as IpcError.IpcError).detail, /^schedule (3|a string|null) is not a Schedule/)
      }
      assert.strictEqual(runs, 0)
      assert.strictEqual(yield* IpcRpc.retryIdempotent(call, Policy.retry(1)), 1)
    }))

  it.effect("Policy.retry of a count that is not one (\"x\", NaN, -1, 2.5) dies naming it, where it meant no retries", () =>
    Effect.gen(function*() {
      let runs = 0
      const failing = Effect.suspend(() => (++runs, Effect.fail("nope")))
      for (const [times, shown] of [["x", `"x"`], [Number.NaN, "NaN"], [-1, "-1"], [2.5, "2.5"]] as const) {
        const exit = yield* Effect.exit(Effect.retry(failing, Policy.retry(times as number)))
        assert.isTrue(Exit.hasDies(exit), String(exit))
        assert.include(String(exit), `Policy.retry: times ${shown} is not a whole number of retries`)
      }
      runs = 0
      yield* Effect.flip(Effect.retry(failing, Policy.retry(0)))
      assert.strictEqual(runs, 1)
    }))

  it.effect("layerClientProtocol at an address that is not a string fails its build with InvalidAddress", () =>
    Effect.gen(function*() {
      for (const address of [null, 42, { href: "memory://x" }]) {
        const error = yield* Effect.flip(Layer.build(
          IpcRpc.layerClientProtocol(address as unknown as string).pipe(
            Layer.provide(IpcRpc.layerSerialization),
            Layer.provide(Layer.succeed(Transport.Transport, Memory.make()))
          )
        ))
        assert.strictEqual(error.reason._tag, "InvalidAddress", error.message)
        assert.match(error.detail, /^an address is a string, not (null|42|an object)$/)
      }
    }).pipe(Effect.scoped))
})

/** A logger that keeps every line (level and message) it is given. */
const collector = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push(`${logLevel} ${Array.isArray(message) ? message.map(String).join(" ") : String(message)}`)
  })
  /** Waits (bounded) until a line matching `pattern` has been logged. */
  const waitFor = (pattern: RegExp) =>
    Effect.suspend(() =>
      lines.some((line) => pattern.test(line))
        ? Effect.void
        : Effect.fail(`no line matches ${pattern}: ${JSON.stringify(lines)}`)
    ).pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "10 seconds" }))))
  return { lines, logger, waitFor }
}

const collectorOf = collector()

/** A client of `address` (over memory://, served by `transport`) with `options`. */
const clientOf = (transport: Transport.TransportShape, address: string, options: IpcRpc.ClientOptions) =>
  Layer.build(
    IpcRpc.layerClientProtocol(address, options).pipe(
      Layer.provide(IpcRpc.layerSerialization),
      Layer.provide(Layer.succeed(Transport.Transport, transport))
    )
  ).pipe(Effect.flatMap((protocol) => RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))))

/** Builds `layer` with `env` as the configuration (the process's environment in a real program). */
const withEnv = <A, E, R>(layer: Layer.Layer<A, E, R>, env: Record<string, string>) =>
  Layer.build(layer.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))))

/** How reading `socket` ends: its error. */
const closeOf = (socket: Socket.Socket) =>
  Effect.flip(Effect.scoped(Effect.flatMap(socket.reader, (reader) => Effect.forever(reader.pull))))

describe("a client whose server is not there", () => {
  // effect's client ends a fire-and-forget call once its request is written, and the write waited for a
  // connection without limit: the call outlived connectTimeout, and went to a server that came later (its
  // handler ran), after its caller had been told it failed
  it.live("a fire-and-forget call fails with the others at connectTimeout, and a server that comes later never runs it", () =>
    Effect.gen(function*() {
      class Recorder extends RpcGroup.make(Rpc.make("Record", { payload: { note: Schema.String } })) {}
      const address = `memory://discard-${n++}`
      const transport = Layer.succeed(Transport.Transport, Memory.make())
      const received: Array<string> = []
      const protocol = yield* Layer.build(
        IpcRpc.layerClientProtocol(address, { connectTimeout: "500 millis" }).pipe(
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provide(transport)
        )
      )
      const client = yield* RpcClient.make(Recorder).pipe(Effect.provide(protocol))
      const exit = yield* Effect.exit(client.Record({ note: "told it failed" }, { discard: true })).pipe(
        Effect.timeout("5 seconds")
      )
      assert.isTrue(Exit.isFailure(exit), "the call failed")
      if (Exit.isFailure(exit)) assert.match(String(exit.cause), /RpcClientError.*no server at/)
      yield* Layer.build(
        RpcServer.layer(Recorder).pipe(
          Layer.provide(Recorder.toLayer({ Record: ({ note }) => Effect.sync(() => void received.push(note)) })),
          Layer.provide(IpcRpc.layerServerProtocol(address)),
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provide(transport)
        )
      )
      // the client reconnects on its own schedule: calls made before it has fail at once
      yield* client.Record({ note: "later" }).pipe(
        Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo({ duration: "10 seconds" })))
      )
      yield* Effect.sleep("200 millis")
      assert.deepStrictEqual(received, ["later"], "the call its caller was told failed never ran")
    }).pipe(Effect.scoped))

  it.live("says so at once, names the address and the reason, and fails calls after connectTimeout", () =>
    Effect.gen(function*() {
      const log = collectorOf
      const address = `memory://nobody-${n++}`
      const client = yield* clientOf(Memory.make(), address, { connectTimeout: "1500 millis" })
      const call = yield* Effect.forkScoped(Effect.flip(client.Echo({ n: 1 })))
      // the warning comes while the call still waits
      yield* log.waitFor(new RegExp(`Warn.*waiting for a server at ${address}: NotFound.*in this process`))
      assert.isUndefined(call.pollUnsafe())
      const error = yield* Fiber.join(call)
      assert.instanceOf(error, RpcClientError)
      assert.match(error.message, new RegExp(`no server at ${address} after \\d+ ms: NotFound`), error.message)
      // the IpcError stays reachable as the cause
      const cause = (error.reason as { readonly cause?: unknown }).cause
      assert.isTrue(IpcError.isIpcError(cause))
      assert.strictEqual((cause as IpcError.IpcError).reason._tag, "NotFound")
    }).pipe(Effect.scoped, Effect.provide(Logger.layer([collectorOf.logger]))))

  it.live("waits for a server that comes within connectTimeout, and says when it is connected", () =>
    Effect.gen(function*() {
      const address = `memory://later-${n++}`
      const transport = Memory.make()
      const client = yield* clientOf(transport, address, { connectTimeout: "20 seconds" })
      const call = yield* Effect.forkScoped(client.Echo({ n: 7 }))
      yield* collectorOf.waitFor(new RegExp(`waiting for a server at ${address}`))
      yield* Layer.build(
        RpcServer.layer(ConformanceApi).pipe(
          Layer.provide(ConformanceHandlers),
          Layer.provide(IpcRpc.layerServerProtocol(address)),
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provide(Layer.succeed(Transport.Transport, transport))
        )
      )
      assert.strictEqual(yield* Fiber.join(call), 7)
      yield* collectorOf.waitFor(new RegExp(`Info.*connected to ${address}`))
    }).pipe(Effect.scoped, Effect.provide(Logger.layer([collectorOf.logger]))))

  it.live("a call in flight when the connection is lost fails naming the address and the reason", () =>
    Effect.gen(function*() {
      const address = `memory://lost-${n++}`
      const memory = Memory.make()
      // the client's channel, as a lost peer leaves it: its reads fail with ConnectionLost
      const lost = Deferred.makeUnsafe<never, IpcError.IpcError>()
      const losing: Transport.TransportShape = {
        ...memory,
        dial: (to) =>
          Effect.map(memory.dial(to), (channel) => ({
            ...channel,
            receiveAll: Effect.raceFirst(channel.receiveAll, Deferred.await(lost))
          }))
      }
      yield* Layer.build(
        RpcServer.layer(ConformanceApi).pipe(
          Layer.provide(ConformanceHandlers),
          Layer.provide(IpcRpc.layerServerProtocol(address)),
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provide(Layer.succeed(Transport.Transport, memory))
        )
      )
      const client = yield* clientOf(losing, address, { connectTimeout: "20 seconds" })
      assert.strictEqual(yield* client.Echo({ n: 1 }), 1)
      const call = yield* Effect.forkScoped(Effect.flip(client.Sleep({ millis: 60_000 })))
      yield* Effect.sleep("50 millis")
      Deferred.doneUnsafe(lost, Effect.fail(IpcError.make("ConnectionLost", "the peer went away", address)))
      const error = yield* Fiber.join(call)
      assert.instanceOf(error, RpcClientError)
      assert.match(error.message, new RegExp(`lost the connection to ${address}: ConnectionLost`), error.message)
    }).pipe(Effect.scoped))

  it.live("a server that closed: a call until it is back fails at once naming the address; the client is served again once it is back", () =>
    Effect.gen(function*() {
      const address = `memory://closed-${n++}`
      const memory = Memory.make()
      const serve = Layer.build(
        RpcServer.layer(ConformanceApi).pipe(
          Layer.provide(ConformanceHandlers),
          Layer.provide(IpcRpc.layerServerProtocol(address)),
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provide(Layer.succeed(Transport.Transport, memory))
        )
      )
      const first = yield* Scope.make()
      yield* serve.pipe(Scope.provide(first))
      const client = yield* clientOf(memory, address, { connectTimeout: "20 seconds" })
      assert.strictEqual(yield* client.Echo({ n: 1 }), 1)
      const inFlight = yield* Effect.forkScoped(client.Sleep({ millis: 60_000 }))
      yield* Effect.sleep("50 millis")
      yield* Scope.close(first, Exit.void)
      // the server interrupts what it was running as it closes, and says so: the call ends at once
      const ended = yield* Fiber.await(inFlight).pipe(Effect.timeout("5 seconds"))
      assert.isTrue(Exit.isFailure(ended))
      const closed = new RegExp(`the server at ${address} closed the connection`)
      const after = yield* Effect.flip(client.Echo({ n: 2 }))
      assert.match(after.message, closed, after.message)
      // back: the client reconnects (about once a second) and is served again
      yield* serve
      const again = yield* client.Echo({ n: 3 }).pipe(
        Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo({ duration: "10 seconds" })))
      )
      assert.strictEqual(again, 3)
    }).pipe(Effect.scoped))

  it.live("a socket says which side closed: the server (named when dialled by address) or the client", () =>
    Effect.gen(function*() {
      const memory = Memory.make()
      const listener = yield* memory.listen("memory://which-side")
      // a client socket without an address, whose server closes
      const client = IpcRpc.toSocket(memory.dial("memory://which-side"))
      const serverSide = yield* Effect.forkScoped(Effect.flatMap(listener.accept, (channel) => channel.close))
      const byServer = yield* closeOf(client)
      yield* Fiber.join(serverSide)
      assert.strictEqual(
        byServer.message,
        "1000: the server closed the connection (the channel was closed by its peer)"
      )
      // a server's socket (toSocketServer), whose client closes
      const served = Deferred.makeUnsafe<Socket.SocketError>()
      yield* Effect.forkScoped(
        IpcRpc.toSocketServer(listener).run((socket) =>
          Effect.flatMap(closeOf(socket), (error) => Deferred.succeed(served, error))
        )
      )
      const dialled = yield* memory.dial("memory://which-side")
      yield* dialled.close
      const byClient = yield* Deferred.await(served)
      assert.match(byClient.message, /^1000: the client closed the connection/, byClient.message)
    }).pipe(Effect.scoped))

  it.live("fails at once when waiting cannot help (an address no transport serves)", () =>
    Effect.gen(function*() {
      const client = yield* clientOf(Memory.make(), "carrier-pigeon://loft", { connectTimeout: "1 hour" })
      const error = yield* Effect.flip(client.Echo({ n: 1 }))
      assert.match(error.message, /cannot reach a server at carrier-pigeon:\/\/loft: UnsupportedScheme/, error.message)
    }).pipe(Effect.scoped))

  // a bad address, a missing permission or a refused peer stays so: the calls fail at once, not at connectTimeout
  for (const reason of ["InvalidAddress", "PermissionDenied", "PeerRejected"] as const) {
    it.live(`fails at once when the dial fails with ${reason}`, () =>
      Effect.gen(function*() {
        const address = `memory://refusing-${n++}`
        const transport: Transport.TransportShape = {
          ...Memory.make(),
          dial: (at) => Effect.fail(IpcError.make(reason, "refused by the test", at))
        }
        const client = yield* clientOf(transport, address, { connectTimeout: "30 seconds" })
        const error = yield* Effect.flip(client.Echo({ n: 1 })).pipe(
          Effect.timeoutOrElse({ duration: "2 seconds", orElse: () => Effect.die(`still waiting after 2 s`) })
        )
        assert.instanceOf(error, RpcClientError)
        assert.match(error.message, new RegExp(`cannot reach a server at ${address}: ${reason}`), error.message)
      }).pipe(Effect.scoped))
  }
})

describe("Policy", () => {
  const lost = new RpcClientError({ reason: new RpcClientDefect({ message: "link lost", cause: null }) })
  // the attempts an always failing operation gets, and whether it has ended, after a minute of backoff
  const attemptsOf = (
    retried: (failing: Effect.Effect<never, RpcClientError>) => Effect.Effect<unknown, unknown>
  ) =>
    Effect.gen(function*() {
      let attempts = 0
      const fiber = yield* Effect.forkChild(
        Effect.exit(retried(Effect.suspend(() => (attempts++, Effect.fail(lost)))))
      )
      yield* TestClock.adjust("1 minute")
      const exit = fiber.pollUnsafe()
      assert.isDefined(exit, `still retrying after ${attempts} attempts`)
      assert.isTrue(exit !== undefined && Exit.isSuccess(exit) && Exit.isFailure(exit.value), "it failed")
      return attempts
    })

  it.effect("retry(times) and retryIdempotent retry at most times times (5 by default), then fail", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* attemptsOf((failing) => IpcRpc.retryIdempotent(failing)), 6)
      assert.strictEqual(yield* attemptsOf((failing) => Effect.retry(failing, Policy.retry(2))), 3)
      assert.strictEqual(yield* attemptsOf((failing) => Effect.retry(failing, Policy.retry())), 6)
    }))

  it.effect("reconnect waits 20 ms doubling up to 1 s, jittered (0.8 to 1.2 times), and never stops", () =>
    Effect.gen(function*() {
      const at: Array<number> = []
      yield* Effect.forkChild(
        Effect.repeat(
          Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => at.push(now))),
          Policy.reconnect
        )
      )
      yield* TestClock.adjust("30 seconds")
      const delays = at.slice(1).map((t, i) => t - at[i])
      // 20 + 40 + ... + 640 then 1 s each: more than 20 attempts in 30 s, and it goes on
      assert.isAbove(delays.length, 20, JSON.stringify(delays))
      assert.isAtLeast(delays[0], 16, JSON.stringify(delays))
      assert.isAtMost(delays[0], 24, JSON.stringify(delays))
      for (const [i, delay] of delays.entries()) {
        assert.isAtMost(delay, 1200, `delay ${i + 1} of ${JSON.stringify(delays)}`)
        if (i >= 6) assert.isAtLeast(delay, 800, `delay ${i + 1} of ${JSON.stringify(delays)}`)
      }
      const before = at.length
      yield* TestClock.adjust("10 seconds")
      assert.isAbove(at.length, before + 7)
    }))
})

const readConnectTimeout = (env: Record<string, string>) =>
  IpcRpc.connectTimeoutConfig.parse(ConfigProvider.fromEnv({ env }))

describe("layerServer / layerClient", () => {
  it.live("serve and call at the address IPC_TRANSPORT / IPC_ADDRESS choose, with IPC_CONNECT_TIMEOUT", () =>
    Effect.gen(function*() {
      const address = `memory://configured-${n++}`
      const server = RpcServer.layer(ConformanceApi).pipe(
        Layer.provide(ConformanceHandlers),
        Layer.provide(IpcRpc.layerServer)
      )
      const context = yield* withEnv(
        Layer.mergeAll(server, IpcRpc.layerClient()).pipe(
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provideMerge(Registry.layerConfig([Registry.memory]))
        ),
        { IPC_ADDRESS: address }
      )
      const client = yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(context))
      assert.strictEqual(yield* client.Echo({ n: 42 }), 42)
      assert.strictEqual(Context.get(context, Registry.IpcAddress), address)

      // a client of a configured address nobody serves gives up after IPC_CONNECT_TIMEOUT
      const lonely = yield* withEnv(
        IpcRpc.layerClient().pipe(
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provide(Registry.layerConfig([Registry.memory]))
        ),
        { IPC_ADDRESS: "memory://nobody", IPC_CONNECT_TIMEOUT: "300 millis" }
      )
      const error = yield* Effect.flip(
        RpcClient.make(ConformanceApi).pipe(
          Effect.flatMap((c) => c.Echo({ n: 1 })),
          Effect.provide(lonely)
        )
      )
      const waited = Number(/no server at memory:\/\/nobody after (\d+) ms/.exec(error.message)?.[1])
      // it gave up after IPC_CONNECT_TIMEOUT (300 ms), not after the default 10 s
      assert.isAtLeast(waited, 300, error.message)
      assert.isBelow(waited, 10_000, error.message)
    }).pipe(Effect.scoped))

  // the same forms as the transport options' durations: plain milliseconds too (5000 was refused)
  it.effect("IPC_CONNECT_TIMEOUT takes milliseconds or a duration; anything else is a ConfigError naming both", () =>
    Effect.gen(function*() {
      assert.strictEqual(Duration.toMillis(yield* readConnectTimeout({ IPC_CONNECT_TIMEOUT: "5000" })), 5000)
      assert.strictEqual(Duration.toMillis(yield* readConnectTimeout({ IPC_CONNECT_TIMEOUT: "2 seconds" })), 2000)
      assert.strictEqual(Duration.toMillis(yield* readConnectTimeout({})), 10_000)
      const error = yield* Effect.flip(readConnectTimeout({ IPC_CONNECT_TIMEOUT: "soon" }))
      assert.include(String(error), `expected a duration (milliseconds, or "250 millis", "5 seconds"), got "soon"`)
      // zero failed every call at once, server or not
      const zero = yield* Effect.flip(readConnectTimeout({ IPC_CONNECT_TIMEOUT: "0" }))
      assert.include(String(zero), `IPC_CONNECT_TIMEOUT "0" is not above zero`)
    }))

  // "x" was a defect as the layer was built ("Invalid Input"); -1, NaN and {} were taken as 0: every call failed at once
  it.effect("a client's durations given in code that are not ones are InvalidOption as the layer is built", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [IpcRpc.ClientOptions, RegExp]> = [
        [{ connectTimeout: "x" as Duration.Input }, /^connectTimeout "x" is not a duration/],
        [{ connectTimeout: -1 }, /^connectTimeout -1 is not a duration/],
        [{ connectTimeout: Number.NaN }, /^connectTimeout NaN is not a duration/],
        [{ connectTimeout: {} as Duration.Input }, /^connectTimeout \[object Object\] is not a duration/],
        [{ connectTimeout: 0 }, /^connectTimeout 0 is not above zero/],
        [{ pingInterval: 0 }, /^pingInterval 0 is not above zero/],
        [{ pingTimeout: "soon" as Duration.Input }, /^pingTimeout "soon" is not a duration/]
      ]
      // a connectTimeout is compared with the time waited, never a timer: Infinity waits for ever, 30 days is one
      for (const connectTimeout of [Infinity, Duration.infinity, "30 days"] as const) {
        yield* Layer.build(
          IpcRpc.layerClientProtocol("memory://never", { connectTimeout }).pipe(
            Layer.provide(IpcRpc.layerSerialization),
            Layer.provide(Layer.succeed(Transport.Transport, Memory.make()))
          )
        )
      }
      for (const [options, detail] of cases) {
        const error = yield* Effect.flip(Layer.build(
          IpcRpc.layerClientProtocol("memory://never", options).pipe(
            Layer.provide(IpcRpc.layerSerialization),
            Layer.provide(Layer.succeed(Transport.Transport, Memory.make()))
          )
        ))
        assert.strictEqual(error.reason._tag, "InvalidOption", error.message)
        assert.match(error.detail, detail)
      }
    }).pipe(Effect.scoped))
})

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const jsonRequest = (id: string, tag: string, payload: unknown) =>
  encoder.encode(JSON.stringify({ _tag: "Request", id, tag, payload, headers: [] }))

/** Receives the JSON replies to `Echo` calls 1 and 2 (of n: 1 and n: 2) on `channel`, and checks them. */
const twoEchoes = (channel: IpcChannel.IpcChannel) =>
  Effect.gen(function*() {
    const replies = [yield* channel.receive, yield* channel.receive].map((r) => JSON.parse(decoder.decode(r)))
    assert.deepStrictEqual(replies.map((r) => [r._tag, r.requestId, r.exit?.value]), [["Exit", "1", 1], [
      "Exit",
      "2",
      2
    ]])
  })

/** The next `count` messages of `channel`, parsed as JSON (within 10 s). */
const jsonReplies = (channel: IpcChannel.IpcChannel, count: number) =>
  Effect.forEach(
    Array.from({ length: count }),
    () => Effect.map(channel.receive, (r) => JSON.parse(decoder.decode(r))),
    { concurrency: 1 }
  ).pipe(Effect.timeout("10 seconds"))

/** Serves ConformanceApi at a fresh memory address with `server`; returns the transport and the address. */
const serving = (server: (address: string) => Layer.Layer<never, IpcError.IpcError, Transport.Transport>) =>
  Effect.gen(function*() {
    const address = `memory://negotiate-${n++}`
    const transport = Memory.make()
    yield* Layer.build(server(address).pipe(Layer.provide(Layer.succeed(Transport.Transport, transport))))
    return { address, transport }
  })

/** The bytes a real client of `serialization` sends for `Echo({ n: 1 })`, recorded by a listener that answers nothing. */
const recordedRequest = (serialization: Layer.Layer<RpcSerialization.RpcSerialization>) =>
  Effect.gen(function*() {
    const transport = Memory.make()
    const address = `memory://recorder-${n++}`
    const listener = yield* transport.listen(address)
    const protocol = yield* Layer.build(
      IpcRpc.layerClientProtocol(address).pipe(
        Layer.provide(serialization),
        Layer.provide(Layer.succeed(Transport.Transport, transport))
      )
    )
    const client = yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))
    yield* Effect.forkScoped(client.Echo({ n: 1 }))
    const peer = yield* listener.accept
    yield* peer.receive // the hello
    return yield* peer.receive
  })

const group = (address: string) =>
  IpcRpc.layerServerGroup(ConformanceApi, address).pipe(Layer.provide(ConformanceHandlers))
const packedOnly = (address: string) =>
  RpcServer.layer(ConformanceApi).pipe(
    Layer.provide(ConformanceHandlers),
    Layer.provide(IpcRpc.layerServerProtocol(address)),
    Layer.provide(IpcRpc.layerSerialization)
  )

describe("serialization negotiation (the hello)", () => {
  it.live("layerServerGroup serves packed, schema-binary and JSON clients at one address, with the same handlers", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving(group)
      const packed = yield* clientOf(transport, address, {})
      const clientWith = (serialization: typeof IpcRpc.layerSerializationJson) =>
        Layer.build(
          IpcRpc.layerClientProtocol(address).pipe(
            Layer.provide(serialization),
            Layer.provide(Layer.succeed(Transport.Transport, transport))
          )
        ).pipe(Effect.flatMap((protocol) => RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))))
      const binary = yield* clientWith(IpcRpc.layerSerializationSchemaBinary)
      const json = yield* clientWith(IpcRpc.layerSerializationJson)
      assert.strictEqual(yield* packed.Echo({ n: 1 }), 1)
      assert.strictEqual(yield* json.Echo({ n: 2 }), 2)
      assert.strictEqual(yield* binary.Echo({ n: 3 }), 3)
      assert.instanceOf(yield* Effect.flip(json.Fail({ why: "typed" })), Refused)
      assert.instanceOf(yield* Effect.flip(binary.Fail({ why: "typed" })), Refused)
      assert.deepStrictEqual(yield* Stream.runCollect(json.Range({ n: 3 })), [1, 2, 3])
      // one set of handlers: each side sees the others' calls
      assert.strictEqual(yield* packed.Calls(), 6)
    }).pipe(Effect.scoped))

  it.live("a JSON client speaking raw frames: a hello, then effect's JSON messages", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving(group)
      const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      yield* channel.send(IpcRpc.hello("json"))
      yield* channel.send(jsonRequest("1", "Echo", { n: 41 }))
      assert.deepStrictEqual(JSON.parse(decoder.decode(yield* channel.receive)), {
        _tag: "Exit",
        requestId: "1",
        exit: { _tag: "Success", value: 41 }
      })
    }).pipe(Effect.scoped))

  it.live("docs/wire.md: headers as an object, or left out, are served; headers that are neither pairs nor an object end the connection", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving(group)
      const request = (headers: unknown) =>
        Effect.gen(function*() {
          const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
          yield* channel.send(IpcRpc.hello("json"))
          const message: Record<string, unknown> = { _tag: "Request", id: "1", tag: "Echo", payload: { n: 7 } }
          if (headers !== undefined) message.headers = headers
          yield* channel.send(encoder.encode(JSON.stringify(message)))
          return yield* channel.receive.pipe(
            Effect.map((reply) => JSON.parse(decoder.decode(reply)) as unknown),
            Effect.catch((error) => Effect.succeed(error.reason._tag)),
            Effect.timeout("5 seconds")
          )
        }).pipe(Effect.scoped)
      const served = { _tag: "Exit", requestId: "1", exit: { _tag: "Success", value: 7 } }
      for (const headers of [[["x-a", "b"]], {}, { "x-a": "b" }, undefined]) {
        assert.deepStrictEqual(yield* request(headers), served, JSON.stringify(headers))
      }
      for (const headers of ["x", 5, null, [1]]) {
        assert.strictEqual(yield* request(headers), "Closed", JSON.stringify(headers))
      }
    }).pipe(Effect.scoped))

  it.live("a message that does not parse in a burst of requests gets its Defect; the requests around it are served", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving(group)
      const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      yield* channel.send(IpcRpc.hello("json"))
      // one burst, read by the server at once: the bad message loses none of the requests after it, and its
      // Defect is its own reply (docs/wire.md)
      yield* IpcChannel.sendAll(channel, [
        jsonRequest("1", "Echo", { n: 1 }),
        encoder.encode("{ not json"),
        jsonRequest("2", "Echo", { n: 2 }),
        jsonRequest("3", "Echo", { n: 3 })
      ])
      const replies = yield* jsonReplies(channel, 4)
      const exits = replies.filter((r) => r._tag === "Exit").map((r) => [r.requestId, r.exit?.value])
      assert.sameDeepMembers(exits, [["1", 1], ["2", 2], ["3", 3]])
      const defects = replies.filter((r) => r._tag === "Defect")
      assert.strictEqual(defects.length, 1, JSON.stringify(replies))
      assert.match(JSON.stringify(defects[0].defect), /JSON/)
    }).pipe(Effect.scoped))

  it.live("a message nested 100 000 deep is answered (a Defect, a failed call); the requests around it are served", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving(group)
      const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      yield* channel.send(IpcRpc.hello("json"))
      const deep = "[".repeat(100_000) + "]".repeat(100_000)
      yield* IpcChannel.sendAll(channel, [
        jsonRequest("1", "Echo", { n: 1 }),
        encoder.encode(deep),
        encoder.encode(`{"_tag":"Request","id":"9","tag":"Echo","payload":${deep},"headers":[]}`),
        jsonRequest("2", "Echo", { n: 2 })
      ])
      const replies = yield* jsonReplies(channel, 4)
      // both are refused before they are parsed (deeper than 1000 levels): a Defect each
      assert.deepStrictEqual(replies.filter((r) => r._tag === "Defect").length, 2, JSON.stringify(replies))
      const exits = replies.filter((r) => r._tag === "Exit").map((r) => [r.requestId, r.exit._tag, r.exit.value])
      assert.sameDeepMembers(exits, [["1", "Success", 1], ["2", "Success", 2]])
    }).pipe(Effect.scoped))

  it.live("an id, _tag or tag nested 5000 deep gets its Defect and the connection goes on", () =>
    Effect.gen(function*() {
      // effect's server wrote such an id into its "Invalid request id" text, recursing through the arrays:
      // the RangeError ended the connection, and the requests after it got no answer
      const { address, transport } = yield* serving(group)
      const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      yield* channel.send(IpcRpc.hello("json"))
      const deep = "[".repeat(5000) + "]".repeat(5000)
      yield* IpcChannel.sendAll(channel, [
        encoder.encode(`{"_tag":"Request","id":${deep},"tag":"Echo","payload":{"n":0},"headers":[]}`),
        encoder.encode(`{"_tag":${deep}}`),
        encoder.encode(`{"_tag":"Request","id":"8","tag":${deep},"payload":{"n":0},"headers":[]}`),
        jsonRequest("2", "Echo", { n: 2 })
      ])
      const replies = yield* jsonReplies(channel, 4)
      assert.deepStrictEqual(replies.map((r) => r._tag), ["Defect", "Defect", "Defect", "Exit"])
      assert.match(JSON.stringify(replies[0].defect), /deeper than 1000/)
      assert.deepStrictEqual(replies[3], { _tag: "Exit", requestId: "2", exit: { _tag: "Success", value: 2 } })
    }).pipe(Effect.scoped))

  it.live("schema-binary: a malformed frame or a frame longer than its message gets its Defect, and the next request is served", () =>
    Effect.gen(function*() {
      // effect's parser is kept per connection: a malformed frame spent it (every later request "parser is
      // spent"), and a frame announced longer than its message was buffered across messages without end
      const request = yield* recordedRequest(IpcRpc.layerSerializationSchemaBinary)
      const binary = Context.get(
        yield* Layer.build(IpcRpc.layerSerializationSchemaBinary),
        RpcSerialization.RpcSerialization
      )
        .makeUnsafe()
      const { address, transport } = yield* serving(group)
      const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      yield* channel.send(IpcRpc.hello("binary"))
      // the reply to the recorded request on a connection nothing has damaged yet: Echo's value, encoded
      yield* channel.send(request)
      const [served] = binary.decode(yield* channel.receive) as ReadonlyArray<{ readonly _tag: string }>
      assert.strictEqual(served?._tag, "Exit")
      // a frame of 3 bytes that are no message; a frame header announcing 2^40 bytes, then 1 MiB of it
      for (const bad of [new Uint8Array([3, 0xff, 0xff, 0xff]), new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x20])]) {
        yield* channel.send(bad)
        if (bad.length === 6) yield* channel.send(new Uint8Array(1 << 20))
        yield* channel.send(request)
        const replies = yield* Effect.forEach(
          bad.length === 6 ? [1, 2, 3] : [1, 2],
          () => channel.receive,
          { concurrency: 1 }
        ).pipe(Effect.timeout("10 seconds"))
        // the Defects come first; the request's reply is the last, and it is the Echo's value
        const messages = replies.flatMap((reply) => binary.decode(reply) as ReadonlyArray<{ readonly _tag: string }>)
        assert.deepStrictEqual(messages.map((m) => m._tag), [...replies.slice(1).map(() => "Defect"), "Exit"])
        assert.deepStrictEqual(messages[messages.length - 1], served)
      }
    }).pipe(Effect.scoped))

  it.live("a hello again mid-stream (a client restarted over a channel that outlived it) is passed over", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving(group)
      const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      yield* channel.send(IpcRpc.hello("json"))
      yield* channel.send(jsonRequest("1", "Echo", { n: 1 }))
      yield* channel.send(IpcRpc.hello("json"))
      yield* channel.send(jsonRequest("2", "Echo", { n: 2 }))
      yield* twoEchoes(channel)
    }).pipe(Effect.scoped))

  it.live("docs/wire.md: an Eof ends the session with nothing sent; a request after it is served on the same connection", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving(group)
      const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      yield* channel.send(IpcRpc.hello("json"))
      yield* channel.send(jsonRequest("1", "Echo", { n: 1 }))
      yield* channel.send(encoder.encode(JSON.stringify({ _tag: "Eof" })))
      yield* channel.send(jsonRequest("2", "Echo", { n: 2 }))
      yield* twoEchoes(channel)
    }).pipe(Effect.scoped))

  it.live("docs/wire.md: a request after an Eof while a call is in flight ends the connection, neither call answered", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving(group)
      const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      yield* channel.send(IpcRpc.hello("json"))
      yield* channel.send(jsonRequest("1", "Sleep", { millis: 300 }))
      yield* channel.send(encoder.encode(JSON.stringify({ _tag: "Eof" })))
      yield* channel.send(jsonRequest("2", "Echo", { n: 2 }))
      const ended = yield* Effect.flip(channel.receive).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(ended.reason._tag, "Closed", String(ended))
    }).pipe(Effect.scoped))

  it.live("a socket's writes go through its channel's send, also where a wrapper replaced it", () =>
    Effect.gen(function*() {
      const transport = Memory.make()
      const address = `memory://rpc-socket-writes-${process.pid}`
      const listener = yield* transport.listen(address)
      const channel = yield* transport.dial(address)
      const peer = yield* listener.accept
      // a wrapper that refuses every send: its refusal is what a write gets, and nothing leaves
      const refusal = IpcError.make("PermissionDenied", "refused by the wrapper", address)
      const wrapped = { ...channel, send: () => Effect.fail(refusal) }
      assert.isDefined(Eager.of(channel))
      assert.isUndefined(Eager.of(wrapped))
      const refused = IpcRpc.toSocket(Effect.succeed(wrapped))
      yield* refused.reader
      const failure = yield* Effect.flip((yield* refused.writer).write(new Uint8Array([1])))
      assert.strictEqual(failure.reason._tag, "SocketWriteError")
      assert.strictEqual(failure.reason._tag === "SocketWriteError" ? failure.reason.cause : undefined, refusal)
      // the channel itself: a write reaches the peer; once the channel is closed a write leaves nothing and
      // is no error (effect's RPC client makes a write error a defect): the reader says the channel ended
      const socket = IpcRpc.toSocket(Effect.succeed(channel))
      const reader = yield* socket.reader
      const writer = yield* socket.writer
      yield* writer.write(new Uint8Array([2]))
      assert.deepStrictEqual([...(yield* peer.receive)], [2])
      yield* channel.close
      yield* writer.write(new Uint8Array([3]))
      const ended = yield* Effect.flip(reader.pull)
      assert.strictEqual(ended.reason._tag, "SocketCloseError", String(ended))
      const nothing = yield* Effect.flip(peer.receive)
      assert.strictEqual(nothing.reason._tag, "Closed", "the write after the close left nothing")
    }).pipe(Effect.scoped))

  it.live("a large packed message's memory is used again only once its send has completed", () =>
    Effect.gen(function*() {
      // a link that keeps each message it is given (no copy) until it is drained, over its high-water mark
      const held: Array<Uint8Array> = []
      let drained: (() => void) | undefined
      const engine = ChannelEngine.make({ address: "test://held", highWaterMark: 1024 }, (sink) => {
        drained = () => {
          held.length = 0
          sink.writable()
        }
        return {
          write: (message) => void held.push(message),
          pending: () => held.reduce((total, m) => total + m.byteLength, 0),
          resume: () => undefined,
          goodbye: (sent) => sent(),
          destroy: () => undefined
        }
      })
      const socket = IpcRpc.toSocket(Effect.succeed(engine.channel))
      yield* socket.reader
      const writer = yield* socket.writer
      const first = Packed.encode(new Uint8Array(64 * 1024).fill(1))
      const sending = yield* Effect.forkChild(writer.write(first))
      // the link has it (a loaded machine may take a while to get the writer there)
      for (let i = 0; i < 1000 && held.length === 0; i++) yield* Effect.sleep("10 millis")
      assert.isUndefined(sending.pollUnsafe(), "the send waits for room")
      assert.strictEqual(held[0], first)
      const before = first.slice()
      // while it waits, its memory is the link's: a new message gets other memory, and it stays as sent
      const second = Packed.encode(new Uint8Array(64 * 1024).fill(2))
      assert.notStrictEqual(second.buffer, first.buffer)
      assert.deepStrictEqual(held[0], before)
      drained!()
      yield* Fiber.join(sending)
      // done: the next message is written into it
      const third = Packed.encode(new Uint8Array(64 * 1024).fill(3))
      assert.strictEqual(third.buffer, first.buffer)
      yield* engine.channel.close
    }).pipe(Effect.scoped))

  it.live("a binary client without a hello (effect-ipc 0.1) is served as binary", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving(group)
      // effect's own socket protocol over our channels: it sends no hello
      const socket = IpcRpc.toSocket(
        Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      )
      const protocol = yield* RpcClient.makeProtocolSocket().pipe(
        Effect.provideService(Socket.Socket, socket),
        Effect.provide(IpcRpc.layerSerializationSchemaBinary)
      )
      const client = yield* RpcClient.make(ConformanceApi).pipe(Effect.provideService(RpcClient.Protocol, protocol))
      assert.strictEqual(yield* client.Echo({ n: 9 }), 9)
      assert.deepStrictEqual(yield* Stream.runCollect(client.Range({ n: 2 })), [1, 2])
    }).pipe(Effect.scoped))

  it.live("a JSON client without a hello is served as JSON", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving(group)
      const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
      yield* channel.send(jsonRequest("7", "Echo", { n: 5 }))
      const reply = JSON.parse(decoder.decode(yield* channel.receive))
      assert.deepStrictEqual(reply.exit, { _tag: "Success", value: 5 })
    }).pipe(Effect.scoped))

  for (const hello of [true, false]) {
    it.live(
      `a packed-only server answers a JSON client (${
        hello ? "with" : "without"
      } a hello) with a JSON Defect and logs why`,
      () =>
        Effect.gen(function*() {
          const { address, transport } = yield* serving(packedOnly)
          const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
          if (hello) yield* channel.send(IpcRpc.hello("json"))
          yield* channel.send(jsonRequest("1", "Echo", { n: 41 }))
          const reply = JSON.parse(decoder.decode(yield* channel.receive))
          assert.strictEqual(reply._tag, "Defect")
          assert.match(reply.defect, /speaks packed serialization, not "json"/)
          yield* collectorOf.waitFor(/Warn.*refused an RPC client at memory:.*not "json"/)
        }).pipe(Effect.scoped, Effect.provide(Logger.layer([collectorOf.logger])))
    )
  }

  it.live("a packed or schema-binary client of a JSON-only server fails its call with a defect naming the serializations", () =>
    Effect.gen(function*() {
      const { address, transport } = yield* serving((at) =>
        IpcRpc.layerServerGroup(ConformanceApi, at, { serializations: ["json"] }).pipe(
          Layer.provide(ConformanceHandlers)
        )
      )
      const packed = yield* clientOf(transport, address, {})
      const exit = yield* Effect.exit(packed.Echo({ n: 1 }))
      assert.match(String(exit), /speaks json serialization, not \\"packed\\"|speaks json serialization, not "packed"/)
      const binary = yield* Layer.build(
        IpcRpc.layerClientProtocol(address).pipe(
          Layer.provide(IpcRpc.layerSerializationSchemaBinary),
          Layer.provide(Layer.succeed(Transport.Transport, transport))
        )
      ).pipe(Effect.flatMap((protocol) => RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))))
      const refused = yield* Effect.exit(binary.Echo({ n: 1 }))
      assert.match(
        String(refused),
        /speaks json serialization, not \\"binary\\"|speaks json serialization, not "binary"/
      )
    }).pipe(Effect.scoped))

  // README: a value the format has no tag for (a Map in a Schema.Unknown field) travels as Schema.Defect()
  // encodes it with packed (a Map arrives as {}); JSON fails the call's encoding with a SchemaError
  // ("Expected JSON value") before anything is sent, and the connection serves the next call
  it.live("a Map in a Schema.Unknown field: {} with packed; with JSON a SchemaError before anything is sent", () =>
    Effect.gen(function*() {
      class Loose extends RpcGroup.make(
        Rpc.make("Keep", { payload: { value: Schema.Unknown }, success: Schema.Unknown })
      ) {}
      for (
        const [name, serialization] of [["packed", IpcRpc.layerSerialization], [
          "JSON",
          IpcRpc.layerSerializationJson
        ]] as const
      ) {
        let calls = 0
        const address = `memory://rpc-test-${n++}`
        const transport = Layer.succeed(Transport.Transport, Memory.make())
        yield* Layer.build(
          RpcServer.layer(Loose).pipe(
            Layer.provide(Loose.toLayer({ Keep: ({ value }) => Effect.sync(() => (calls++, value)) })),
            Layer.provide(IpcRpc.layerServerProtocol(address)),
            Layer.provide(serialization),
            Layer.provide(transport)
          )
        )
        const protocol = yield* Layer.build(
          IpcRpc.layerClientProtocol(address).pipe(Layer.provide(serialization), Layer.provide(transport))
        )
        const client = yield* RpcClient.make(Loose).pipe(Effect.provide(protocol))
        const exit = yield* Effect.exit(client.Keep({ value: new Map([[1, 2]]) }))
        if (name === "packed") {
          assert.deepStrictEqual(exit, Exit.succeed({}), name)
          assert.strictEqual(calls, 1, name)
        } else {
          assert.isTrue(Exit.isFailure(exit), name)
          assert.match(String(exit), /SchemaError[\s\S]*Expected JSON value/, name)
          assert.strictEqual(calls, 0, "nothing reached the server")
        }
        assert.strictEqual(yield* client.Keep({ value: 7 }), 7, name)
      }
    }).pipe(Effect.scoped))
})

/** `depth` arrays, each in the next. */
const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth)

describe("IpcRpc.jsonNestsDeeper", () => {
  it("counts brackets up to the limit exactly, as text or bytes", () => {
    assert.isFalse(IpcRpc.jsonNestsDeeper(nested(IpcRpc.MAX_JSON_DEPTH)))
    assert.isTrue(IpcRpc.jsonNestsDeeper(nested(IpcRpc.MAX_JSON_DEPTH + 1)))
    assert.isTrue(IpcRpc.jsonNestsDeeper(new TextEncoder().encode(nested(IpcRpc.MAX_JSON_DEPTH + 1))))
    // brackets inside strings do not count
    assert.isFalse(IpcRpc.jsonNestsDeeper(`["${"[".repeat(2000)}"]`))
  })

  it("a string ending in an escaped backslash ends there: the brackets after it count", () => {
    // `"\\"` ends at its third quote; read as an escaped quote, the deep nesting after it was passed unseen
    const deep = `["\\\\",${"[".repeat(IpcRpc.MAX_JSON_DEPTH + 1)}${"]".repeat(IpcRpc.MAX_JSON_DEPTH + 2)}`
    assert.isTrue(IpcRpc.jsonNestsDeeper(deep))
    assert.isTrue(IpcRpc.jsonNestsDeeper(new TextEncoder().encode(deep)))
    // an escaped quote inside a string does not end it
    assert.isFalse(IpcRpc.jsonNestsDeeper(`["\\"${"[".repeat(2000)}"]`))
  })
})

describe("a call interrupted while its request waits for room", () => {
  it.live("leaves the client's pings going: the server that answers them is not given up", () =>
    Effect.gen(function*() {
      const memory = Memory.make()
      const address = `memory://rpc-interrupted-send-${n++}`
      yield* Layer.build(
        IpcRpc.layerServerGroup(ConformanceApi, address).pipe(
          Layer.provide(ConformanceHandlers),
          Layer.provide(Layer.succeed(Transport.Transport, memory))
        )
      )
      const ping = Packed.encode({ _tag: "Ping" })
      const isPing = (message: Uint8Array) =>
        message.byteLength === ping.byteLength && message.every((byte, i) => byte === ping[i])
      // the next send waits for room that never comes (a server that reads nothing), until interrupted
      let holdNext = false
      const held = yield* Deferred.make<void>()
      const never = yield* Deferred.make<void>()
      let dials = 0
      let pingsOnFirst = 0
      const holding: Transport.TransportShape = {
        ...memory,
        dial: (to) =>
          Effect.map(memory.dial(to), (channel) => {
            const dial = ++dials
            return {
              ...channel,
              send: (message: Uint8Array) => {
                if (dial === 1 && isPing(message)) pingsOnFirst++
                if (!holdNext) return channel.send(message)
                holdNext = false
                return Effect.andThen(Deferred.succeed(held, undefined), Deferred.await(never))
              }
            }
          })
      }
      const protocol = yield* Layer.build(
        IpcRpc.layerClientProtocol(address, { pingInterval: "100 millis" }).pipe(
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provide(Layer.succeed(Transport.Transport, holding))
        )
      )
      const client = yield* RpcClient.make(ConformanceApi).pipe(Effect.provide(protocol))
      assert.strictEqual(yield* client.Echo({ n: 1 }), 1)
      holdNext = true
      const call = yield* Effect.forkScoped(client.Echo({ n: 2 }))
      yield* Deferred.await(held)
      yield* Fiber.interrupt(call)
      // pings go on the same connection again (a count of waiting sends left at one withheld them all)
      const before = pingsOnFirst
      yield* Effect.sync(() => pingsOnFirst).pipe(
        Effect.repeat({ until: (count) => count >= before + 3, schedule: Schedule.spaced("10 millis") }),
        Effect.timeoutOrElse({
          duration: "5 seconds",
          orElse: () => Effect.die("no ping sent after the interrupted call")
        })
      )
      assert.strictEqual(dials, 1)
      assert.strictEqual(yield* client.Echo({ n: 3 }), 3)
    }).pipe(Effect.scoped))
})

/** A server of `group`, a well-behaved client of it, and a raw channel to it that has said hello (JSON). */
const politeAndRaw = Effect.gen(function*() {
  const { address, transport } = yield* serving(group)
  const polite = yield* clientOf(transport, address, {})
  const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
  yield* channel.send(IpcRpc.hello("json"))
  return { polite, channel }
})

describe("a client that sends requests and never reads the replies", () => {
  it.live(
    "is no longer read once replies wait for it (bounded calls), others are served, and its replies all come once it reads",
    () =>
      Effect.gen(function*() {
        const { polite, channel } = yield* politeAndRaw
        const total = 50_000
        let sent = 0
        const sender = yield* Effect.forkScoped(
          Effect.forEach(
            Array.from({ length: total }, (_, i) => i),
            (i) => Effect.map(channel.send(jsonRequest(String(i), "Echo", { n: i })), () => void sent++),
            { discard: true }
          )
        )
        // wait until nothing moves: the sender done or stalled, and the server's count of calls the same
        let last = ""
        let still = 0
        yield* Effect.gen(function*() {
          const now = `${sent}/${yield* polite.Calls()}`
          still = now === last ? still + 1 : 0
          last = now
          return still
        }).pipe(Effect.repeat({ until: (count) => count >= 5, schedule: Schedule.spaced("100 millis") }))
        // the server counts the polite client's calls too (Calls excluded): all Echo calls are the silent client's
        const ran = yield* polite.Calls()
        assert.isBelow(ran, total / 4, `the server ran ${ran} of ${total} calls whose replies nobody read`)
        assert.strictEqual(yield* polite.Echo({ n: -1 }), -1)
        // reading again, the client gets every reply, in full
        const answered = new Set<string>()
        while (answered.size < total) {
          for (const reply of yield* channel.receiveAll) answered.add(JSON.parse(decoder.decode(reply)).requestId)
        }
        assert.strictEqual(answered.size, total)
        yield* Fiber.join(sender)
        assert.strictEqual(yield* polite.Calls(), total + 1)
      }).pipe(Effect.scoped),
    120_000
  )
})

describe("a client that keeps streams open without acknowledging them", () => {
  it.live(
    "runs at most MAX_CALLS_IN_FLIGHT of its calls, refuses past MAX_WAITING_CALLS, serves others, and interrupts and acknowledgements end everything",
    () =>
      Effect.gen(function*() {
        const { polite, channel } = yield* politeAndRaw
        const total = 50_000
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        const waiting = IpcRpc.MAX_WAITING_CALLS
        const send = (message: unknown) => channel.send(encoder.encode(JSON.stringify(message)))
        // every reply read; chunks kept unacknowledged until `acking`
        let acking = false
        const duplicates: Array<string> = []
        const chunked = new Set<string>()
        const unacked: Array<string> = []
        const exits = new Map<
          string,
          {
            readonly _tag: string
            readonly value?: unknown
            readonly cause?: ReadonlyArray<{ readonly _tag: string; readonly defect?: unknown }>
          }
        >()
        yield* Effect.forkScoped(Effect.forever(Effect.flatMap(channel.receiveAll, (batch) =>
          Effect.forEach(batch, (bytes) => {
            const reply = JSON.parse(decoder.decode(bytes))
            if (reply._tag === "Exit") {
              if (exits.has(reply.requestId)) duplicates.push(reply.requestId)
              exits.set(reply.requestId, reply.exit)
              return Effect.void
            }
            if (reply._tag !== "Chunk") return Effect.void
            chunked.add(reply.requestId)
            if (!acking) return Effect.sync(() => unacked.push(reply.requestId))
            return send({ _tag: "Ack", requestId: reply.requestId })
          }, { discard: true }))))
        let sent = 0
        yield* Effect.forEach(
          Array.from({ length: total }, (_, i) =>
            i),
          (i) =>
            Effect.map(
              send({ _tag: "Request", id: String(i), tag: "Range", payload: { n: 3 }, headers: [] }),
              () => void sent++
            ),
          { discard: true }
        )
        /** Waits until `done` holds (checked every 20 ms, for at most 30 s). */
        const until = (what: string, done: () => boolean) =>
          Effect.suspend(() =>
            done() ? Effect.void : Effect.fail(`${what}: ${exits.size} Exits, ${chunked.size} calls started streaming`)
          ).pipe(
            Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "30 seconds" })))
          )
        // the calls past both limits are refused at once, each with its Exit
        yield* until("the refusals", () => exits.size === total - running - waiting)
        for (const [, exit] of exits) {
          assert.strictEqual(exit.cause?.[0]?.defect, IpcRpc.TOO_MANY_CALLS)
        }
        yield* until("the first chunks", () => chunked.size === running)
        // only the calls in flight started their handlers (Calls excluded); the others wait
        assert.strictEqual(yield* polite.Calls(), running)
        assert.strictEqual(yield* polite.Echo({ n: -1 }), -1)
        for (let i = 0; i < running; i++) assert.isTrue(chunked.has(String(i)), `call ${i} runs`)
        // an interrupted call frees its slot: the first waiting call starts
        yield* send({ _tag: "Interrupt", requestId: "0" })
        yield* until("the interruption", () => exits.get("0")?.cause?.[0]?._tag === "Interrupt")
        yield* until("a waiting call started", () => chunked.has(String(running)))
        // a waiting call interrupted is answered as any other, its handler never run
        const last = String(running + waiting - 1)
        yield* send({ _tag: "Interrupt", requestId: last })
        yield* until("the waiting call's interruption", () => exits.get(last)?.cause?.[0]?._tag === "Interrupt")
        // the calls started: those that ran at first, the polite Echo, and the one the interrupted call made room for
        assert.strictEqual(yield* polite.Calls(), running + 2)
        assert.isFalse(chunked.has(last))
        // acknowledged, every call ends: nothing lost
        acking = true
        yield* Effect.forEach(unacked.splice(0), (id) => send({ _tag: "Ack", requestId: id }), { discard: true })
        yield* until("every Exit", () => exits.size === total)
        assert.strictEqual(sent, total)
        const successes = [...exits.values()].filter((exit) => exit._tag === "Success").length
        assert.strictEqual(successes, running + waiting - 2)
        // an Ack or Interrupt for a call that ended, or for none, is ignored: the next call is served
        yield* send({ _tag: "Interrupt", requestId: "1" })
        yield* send({ _tag: "Ack", requestId: "1" })
        yield* send({ _tag: "Interrupt", requestId: "none" })
        yield* send({ _tag: "Ack", requestId: "none" })
        yield* send({ _tag: "Request", id: "after", tag: "Echo", payload: { n: 5 }, headers: [] })
        yield* until("the call after", () => exits.has("after"))
        assert.deepStrictEqual(exits.get("after"), { _tag: "Success", value: 5 })
        assert.deepStrictEqual(duplicates, [])
        assert.strictEqual(exits.size, total + 1)
      }).pipe(Effect.scoped),
    120_000
  )

  /** `politeAndRaw`, the raw channel's JSON replies read as they come (chunks not acknowledged), and `until`. */
  const rawReader = Effect.gen(function*() {
    const { polite, channel } = yield* politeAndRaw
    const send = (message: unknown) => channel.send(encoder.encode(JSON.stringify(message)))
    const chunked = new Set<string>()
    const exits = new Map<string, { readonly _tag: string; readonly value?: unknown }>()
    let defects = 0
    let closed = false
    yield* Effect.forkScoped(
      Effect.forever(Effect.flatMap(channel.receiveAll, (batch) =>
        Effect.sync(() => {
          for (const bytes of batch) {
            const reply = JSON.parse(decoder.decode(bytes))
            if (reply._tag === "Exit") exits.set(reply.requestId, reply.exit)
            if (reply._tag === "Chunk") chunked.add(reply.requestId)
            if (reply._tag === "Defect") defects++
          }
        }))).pipe(Effect.catch(() => Effect.sync(() => void (closed = true))))
    )
    /** Waits until `done` holds (checked every 20 ms, for at most 30 s). */
    const until = (what: string, done: () => boolean) =>
      Effect.suspend(() =>
        done()
          ? Effect.void
          : Effect.fail(`${what}: ${exits.size} Exits, ${chunked.size} streaming, ${defects} Defects`)
      ).pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "30 seconds" }))))
    return { polite, send, chunked, exits, defects: () => defects, closed: () => closed, until }
  })

  it.live("a message of no known kind, answered with a Defect, frees no call's place", () =>
    Effect.gen(function*() {
      const { polite, send, chunked, exits, defects, until } = yield* rawReader
      const running = IpcRpc.MAX_CALLS_IN_FLIGHT
      for (let i = 0; i < running + 20; i++) {
        yield* send({ _tag: "Request", id: String(i), tag: "Range", payload: { n: 3 }, headers: [] })
      }
      yield* until("the first chunks", () => chunked.size === running)
      // each answered with a Defect: they ended no call
      for (let i = 0; i < 10; i++) yield* send({ _tag: "Bogus" })
      for (let i = 0; i < 10; i++) yield* send(42)
      yield* until("the Defects", () => defects() === 20)
      // one call ends: one waiting call starts, the first
      yield* send({ _tag: "Interrupt", requestId: "0" })
      yield* until("the interruption", () => exits.has("0"))
      yield* until("the first waiting call", () => chunked.has(String(running)))
      assert.strictEqual(yield* polite.Calls(), running + 1)
      assert.strictEqual(chunked.size, running + 1)
    }).pipe(Effect.scoped), 60_000)

  it.live(
    "fire-and-forget calls (discard, notifications) keep their place until their handlers end",
    () =>
      Effect.gen(function*() {
        const { polite, send, exits, until } = yield* rawReader
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        const sleep = { tag: "Sleep", payload: { millis: 600_000 }, headers: [] }
        for (let i = 0; i < running; i++) yield* send({ _tag: "Request", id: String(i), discard: true, ...sleep })
        for (let i = 0; i < 10; i++) yield* send({ _tag: "Request", id: "", isNotification: true, ...sleep })
        yield* send({ _tag: "Request", id: "after", tag: "Echo", payload: { n: 5 }, headers: [] })
        // every discard call acknowledged as its handler starts, and running until it ends: the others wait
        yield* until("the acknowledgements", () => exits.size >= running)
        assert.deepStrictEqual(exits.get("0"), { _tag: "Success", value: null })
        assert.strictEqual(yield* polite.Calls(), running)
        assert.isFalse(exits.has("after"), "the call behind them waits")
        // their handlers stopped, the notifications run (no reply), then the call behind them
        for (let i = 0; i < running; i++) yield* send({ _tag: "Interrupt", requestId: String(i) })
        yield* until("the call after", () => exits.has("after"))
        assert.deepStrictEqual(exits.get("after"), { _tag: "Success", value: 5 })
        assert.strictEqual(exits.size, running + 1)
        assert.strictEqual(yield* polite.Calls(), running + 10 + 1)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "an Eof behind a waiting Eof ends the connection, as one read at once does: Eofs are not kept without bound",
    () =>
      Effect.gen(function*() {
        const { polite, send, chunked, exits, closed, until } = yield* rawReader
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        for (let i = 0; i <= running; i++) {
          yield* send({ _tag: "Request", id: String(i), tag: "Range", payload: { n: 3 }, headers: [] })
        }
        yield* until("the first chunks", () => chunked.size === running)
        // a request waits, an Eof behind it; every further Eof was kept (a million held 91 MB of the server)
        yield* send({ _tag: "Eof" })
        for (let i = 0; i < 100; i++) yield* send({ _tag: "Eof" })
        yield* until("the connection's end", closed)
        assert.isFalse(exits.has(String(running)), "the waiting request never ran")
        // the server serves others
        assert.strictEqual(yield* polite.Echo({ n: 7 }), 7)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a reply too large to send ends its call once: the calls in flight stay bounded",
    () =>
      Effect.gen(function*() {
        class Big extends RpcGroup.make(
          Rpc.make("Hold", { payload: { n: Schema.Int }, success: Schema.Int, stream: true }),
          Rpc.make("Big", { payload: { size: Schema.Int }, success: Schema.String })
        ) {}
        let started = 0
        const handlers = Big.toLayer({
          Hold: () => Stream.unwrap(Effect.sync(() => (started++, Stream.range(1, 3)))),
          Big: ({ size }) => Effect.succeed("x".repeat(size))
        })
        const address = `memory://too-large-${n++}`
        const transport = Memory.make({ maxMessageSize: 4096 })
        yield* Layer.build(
          IpcRpc.layerServerGroup(Big, address).pipe(
            Layer.provide(handlers),
            Layer.provide(Layer.succeed(Transport.Transport, transport))
          )
        )
        const channel = yield* Transport.dial(address).pipe(Effect.provideService(Transport.Transport, transport))
        yield* channel.send(IpcRpc.hello("json"))
        const send = (message: unknown) => channel.send(encoder.encode(JSON.stringify(message)))
        const exits = new Map<string, { readonly _tag: string }>()
        yield* Effect.forkScoped(Effect.forever(Effect.flatMap(channel.receiveAll, (batch) =>
          Effect.sync(() => {
            for (const bytes of batch) {
              const reply = JSON.parse(decoder.decode(bytes))
              if (reply._tag === "Exit") exits.set(reply.requestId, reply.exit)
            }
          }))))
        const until = (what: string, done: () => boolean) =>
          Effect.suspend(() => done() ? Effect.void : Effect.fail(`${what}: ${started} started, ${exits.size} Exits`))
            .pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "30 seconds" }))))
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        const hold = (id: string) => send({ _tag: "Request", id, tag: "Hold", payload: { n: 3 }, headers: [] })
        for (let i = 0; i < running - 1; i++) yield* hold(String(i))
        yield* until("the streams", () => started === running - 1)
        // each reply is refused by the transport: its call ends with the Exit of a defect (it ended twice: 50 of
        // them let 49 more streams run past the bound)
        const bigs = 50
        for (let i = 0; i < bigs; i++) {
          yield* send({ _tag: "Request", id: `big${i}`, tag: "Big", payload: { size: 10_000 }, headers: [] })
          yield* until("the defect", () => exits.get(`big${i}`)?._tag === "Failure")
        }
        // one place is free: of these, one runs, the others wait
        for (let i = 0; i < bigs; i++) yield* hold(`more${i}`)
        yield* until("a stream started", () => started >= running)
        // a call answered after them all: the waiting streams have had every chance to start
        yield* send({ _tag: "Interrupt", requestId: "0" })
        yield* until("the interruption", () => exits.has("0"))
        yield* until("the stream after it", () => started >= running + 1)
        yield* send({ _tag: "Interrupt", requestId: "1" })
        yield* until("the interruption", () => exits.has("1"))
        yield* until("the stream after it", () => started >= running + 2)
        assert.strictEqual(started, running + 2)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a waiting request effect's server will not serve ends the connection, as one read at once does",
    () =>
      Effect.gen(function*() {
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        const range = { tag: "Range", payload: { n: 3 }, headers: [] }
        const echo = { _tag: "Request", id: "after", tag: "Echo", payload: { n: 5 }, headers: [] }
        // the id of a call in flight; a request behind an Eof while calls run
        for (const refused of [{ _tag: "Request", id: "5", ...range }, { _tag: "Eof" }]) {
          const { send, chunked, exits, closed, until } = yield* rawReader
          for (let i = 0; i < running; i++) yield* send({ _tag: "Request", id: String(i), ...range })
          yield* until("the first chunks", () => chunked.size === running)
          yield* send(refused)
          yield* send(echo)
          // a call ends: the waiting requests go to effect's server, which refuses one
          yield* send({ _tag: "Interrupt", requestId: "0" })
          yield* until("the connection's end", closed)
          assert.isFalse(exits.has("after"))
        }
      }).pipe(Effect.scoped),
    120_000
  )
})

/** A JSON `Echo` request of `id`, as a raw client sends it. */
const echo = (id: string) => ({ _tag: "Request", id, tag: "Echo", payload: { n: 1 }, headers: [] })

describe("the bound on a connection's calls, at its edges", () => {
  class Held extends RpcGroup.make(
    Rpc.make("Hold", { payload: { n: Schema.Int } }),
    Rpc.make("Echo", { payload: { n: Schema.Int }, success: Schema.Int })
  ) {}
  type Reply = {
    readonly _tag: string
    readonly requestId?: string
    readonly exit?: { readonly _tag: string }
  }

  /**
   * A server of `Held` whose connections fail (`Timeout`) each send of a reply `failing` picks, and `connect`
   * for a raw JSON channel to it. A `Hold` call is counted as effect's server makes its handler, while the
   * connection's reader hands it the request: a Pong read after it follows every call its requests started.
   */
  const heldServer = Effect.gen(function*() {
    const counts = { live: 0, started: 0 }
    const handlers = Held.toLayer({
      Hold: () => {
        counts.started++
        counts.live++
        return Effect.ensuring(Effect.never, Effect.sync(() => void counts.live--))
      },
      Echo: ({ n: value }) => Effect.succeed(value)
    })
    const picks: { failing: (reply: Reply) => boolean } = { failing: () => false }
    const memory = Memory.make()
    const failingSends: Transport.TransportShape = {
      ...memory,
      listen: (at) =>
        Effect.map(memory.listen(at), (listener) => ({
          ...listener,
          accept: Effect.map(listener.accept, (channel) => ({
            ...channel,
            send: (message: Uint8Array) => {
              const text = decoder.decode(message)
              const reply: Reply = text.startsWith("{") ? JSON.parse(text) : { _tag: "" }
              return picks.failing(reply)
                ? Effect.fail(IpcError.make("Timeout", "the peer read nothing"))
                : channel.send(message)
            }
          }))
        }))
    }
    const address = `memory://bound-edges-${n++}`
    yield* Layer.build(
      IpcRpc.layerServerGroup(Held, address).pipe(
        Layer.provide(handlers),
        Layer.provide(Layer.succeed(Transport.Transport, failingSends))
      )
    )
    /** A raw JSON channel to the server (closed with `scope`), its replies read as they come. */
    const connect = (scope: Scope.Scope) =>
      Effect.gen(function*() {
        const channel = yield* Transport.dial(address).pipe(
          Effect.provideService(Transport.Transport, memory),
          Scope.provide(scope)
        )
        yield* channel.send(IpcRpc.hello("json"))
        const send = (message: unknown) => channel.send(encoder.encode(JSON.stringify(message)))
        const replies = { pongs: 0, defects: 0, closed: false, exits: [] as Array<Reply> }
        yield* Effect.forkIn(
          Effect.forever(Effect.flatMap(channel.receiveAll, (batch) =>
            Effect.sync(() => {
              for (const bytes of batch) {
                const reply: Reply = JSON.parse(decoder.decode(bytes))
                if (reply._tag === "Pong") replies.pongs++
                if (reply._tag === "Defect") replies.defects++
                if (reply._tag === "Exit") replies.exits.push(reply)
              }
            }))).pipe(Effect.catch(() => Effect.sync(() => void (replies.closed = true)))),
          scope
        )
        const exitsOf = (id: string) => replies.exits.filter((exit) => exit.requestId === id)
        /** Waits until `done` holds (checked every 20 ms, for at most 30 s). */
        const until = (what: string, done: () => boolean) =>
          Effect.suspend(() =>
            done()
              ? Effect.void
              : Effect.fail(`${what}: ${counts.live} live, ${replies.exits.length} Exits, ${replies.defects} Defects`)
          ).pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "30 seconds" }))))
        /** A Ping answered: every request sent before it has been read, and each call it started has its handler. */
        const read = Effect.gen(function*() {
          const pongs = replies.pongs
          yield* send({ _tag: "Ping" })
          yield* until("the Pong", () => replies.pongs > pongs)
        })
        const hold = (id: string, discard = false) =>
          send({ _tag: "Request", id, tag: "Hold", payload: { n: 0 }, headers: [], ...(discard ? { discard } : {}) })
        return { send, hold, read, replies, exitsOf, until }
      })
    return { counts, picks, connect }
  })

  it.live(
    "a Pong or an acknowledgement that could not be sent frees no call's place: the bound holds after",
    () =>
      Effect.gen(function*() {
        const { counts, picks, connect } = yield* heldServer
        const { send, hold, read, replies, exitsOf, until } = yield* connect(yield* Effect.scope)
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        for (let i = 0; i < running - 1; i++) yield* hold(String(i))
        // a discard call whose acknowledgement cannot be sent: effect's server answers it with a defect and stops it
        picks.failing = (reply) =>
          reply._tag === "Exit" && reply.requestId === "discarded" && reply.exit?._tag === "Success"
        yield* send({ _tag: "Request", id: "discarded", discard: true, tag: "Echo", payload: { n: 1 }, headers: [] })
        yield* until("the discarded call's defect", () => exitsOf("discarded")[0]?.exit?._tag === "Failure")
        // Pongs that cannot be sent: effect's server sends a Defect for each
        picks.failing = (reply) => reply._tag === "Pong"
        for (let i = 0; i < 5; i++) yield* send({ _tag: "Ping" })
        yield* until("the Defects", () => replies.defects === 5)
        picks.failing = () => false
        // one place is free: of these calls, one runs (the discard call's place was freed twice and one was freed
        // for each Pong: 7 ran)
        for (let i = 0; i < 10; i++) yield* hold(`more${i}`)
        yield* until("a call started", () => counts.live >= running)
        yield* read
        assert.strictEqual(counts.live, running)
        assert.strictEqual(counts.started, running)
        // a call ends: the next one starts, and only it
        yield* send({ _tag: "Interrupt", requestId: "0" })
        yield* until("the interruption", () => exitsOf("0").length === 1)
        yield* until("the next call", () => counts.started > running)
        yield* read
        assert.strictEqual(counts.live, running)
        assert.strictEqual(counts.started, running + 1)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a request with the id of a waiting request ends the connection, as effect's server ends one with the id of a call in flight",
    () =>
      Effect.gen(function*() {
        const { counts, connect } = yield* heldServer
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        const waiting = IpcRpc.MAX_WAITING_CALLS
        // waiting behind the calls in flight, and with every waiting place taken (its second was refused: an Exit
        // for the id, and another once the first ran)
        for (const behind of [0, waiting - 1]) {
          const scope = yield* Scope.make()
          const { send, hold, read, replies, exitsOf, until } = yield* connect(scope)
          for (let i = 0; i < running + behind; i++) yield* hold(String(i))
          yield* send(echo("twice"))
          yield* read
          yield* send(echo("twice"))
          // the first interrupted while it waits, then a place freed (the second ran: two Exits)
          yield* send({ _tag: "Interrupt", requestId: "twice" })
          yield* send({ _tag: "Interrupt", requestId: "0" })
          yield* until("the connection's end", () => replies.closed || exitsOf("twice").length >= 2)
          assert.isTrue(replies.closed, `the connection ends (Exits for the id: ${exitsOf("twice").length})`)
          assert.deepStrictEqual(exitsOf("twice"), [])
          yield* Scope.close(scope, Exit.void)
          yield* until("its handlers' end", () => counts.live === 0)
        }
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a discard call whose acknowledgement and its defect's Exit could not be sent frees its place once",
    () =>
      Effect.gen(function*() {
        const { counts, picks, connect } = yield* heldServer
        const { send, hold, read, replies, until } = yield* connect(yield* Effect.scope)
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        for (let i = 0; i < running - 1; i++) yield* hold(String(i))
        // its acknowledgement refused, then the Exit of the defect effect's server sends for it: the Defect that
        // follows goes (it freed the call's place, and its handler's end freed it again)
        picks.failing = (reply) => reply._tag === "Exit" && reply.requestId === "discarded"
        const defects = replies.defects
        yield* send({ _tag: "Request", id: "discarded", discard: true, tag: "Echo", payload: { n: 1 }, headers: [] })
        yield* until("the discarded call's Defect", () => replies.defects > defects)
        picks.failing = () => false
        // one place is free: of these calls, one runs
        for (let i = 0; i < 10; i++) yield* hold(`more${i}`)
        yield* until("a call started", () => counts.live >= running)
        yield* read
        assert.strictEqual(counts.live, running)
        assert.strictEqual(counts.started, running)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a request with the id of a running call ends the connection, whether it would wait or be refused",
    () =>
      Effect.gen(function*() {
        const { counts, connect } = yield* heldServer
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        const waiting = IpcRpc.MAX_WAITING_CALLS
        // the first call a request/response one or a discard one; the second waits behind the calls in flight,
        // or is past every waiting place (an Interrupt of the id ended the waiting one, or the refusal was its
        // Exit, while the running one went on: two Exits for the id)
        for (const [discard, behind] of [[false, 0], [true, 0], [false, waiting]] as const) {
          const scope = yield* Scope.make()
          const { send, hold, read, replies, exitsOf, until } = yield* connect(scope)
          for (let i = 0; i < running - 1; i++) yield* hold(String(i))
          yield* hold("twice", discard)
          for (let i = 0; i < behind; i++) yield* hold(`w${i}`)
          yield* read
          const first = exitsOf("twice").length
          yield* hold("twice")
          yield* send({ _tag: "Interrupt", requestId: "twice" })
          yield* until("the connection's end", () => replies.closed || exitsOf("twice").length > first)
          assert.isTrue(replies.closed, `the connection ends (Exits for the id: ${exitsOf("twice").length - first})`)
          assert.strictEqual(exitsOf("twice").length, first)
          yield* Scope.close(scope, Exit.void)
          yield* until("its handlers' end", () => counts.live === 0)
        }
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "the requests waiting on a connection keep at most MAX_WAITING_BYTES: one past them is refused",
    () =>
      Effect.gen(function*() {
        const { counts, connect } = yield* heldServer
        const { send, hold, read, replies, exitsOf } = yield* connect(yield* Effect.scope)
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        for (let i = 0; i < running; i++) yield* hold(String(i))
        yield* read
        // far fewer than MAX_WAITING_CALLS, each of 1 MiB: they kept 1 MiB each, without bound but the count's
        const pad = "x".repeat(1024 * 1024)
        const large = Math.ceil(IpcRpc.MAX_WAITING_BYTES / pad.length) + 16
        for (let i = 0; i < large; i++) {
          yield* send({ _tag: "Request", id: `large${i}`, tag: "Hold", payload: { n: 0, pad }, headers: [] })
        }
        yield* read
        const refused = replies.exits.filter((exit) => exit.exit?._tag === "Failure")
        assert.isAbove(refused.length, 16)
        assert.isBelow(refused.length, large)
        for (const exit of refused) {
          const cause = (exit.exit as { readonly cause?: ReadonlyArray<{ readonly defect?: unknown }> }).cause
          assert.strictEqual(cause?.[0]?.defect, IpcRpc.TOO_MANY_BYTES_WAITING)
        }
        // the first of them waited: they are the ones refused last
        assert.strictEqual(exitsOf("large0").length, 0)
        assert.strictEqual(exitsOf(`large${large - 1}`).length, 1)
        // a small request still waits, and runs once a call ends
        yield* send(echo("small"))
        yield* read
        assert.strictEqual(exitsOf("small").length, 0)
        assert.strictEqual(counts.live, running)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "clients gone with calls running and waiting leave nothing: a new connection runs MAX_CALLS_IN_FLIGHT calls",
    () =>
      Effect.gen(function*() {
        const { counts, connect } = yield* heldServer
        const running = IpcRpc.MAX_CALLS_IN_FLIGHT
        const cycles = 20
        const kept = Bound.kept.connections
        for (let cycle = 0; cycle < cycles; cycle++) {
          const scope = yield* Scope.make()
          const { hold, send, read } = yield* connect(scope)
          for (let i = 0; i < running + 100; i++) yield* hold(String(i))
          // a discard call and a notification among the waiting ones
          yield* hold("discarded", true)
          yield* send({ _tag: "Request", id: "", isNotification: true, tag: "Hold", payload: { n: 0 }, headers: [] })
          yield* read
          assert.strictEqual(counts.live, running)
          assert.strictEqual(Bound.kept.connections, kept + 1)
          // gone: its handlers interrupted, its count and waiting requests dropped, and none of them run
          yield* Scope.close(scope, Exit.void)
          const left = () => `${counts.live} handlers, ${Bound.kept.connections - kept} connections left`
          yield* Effect.suspend(() =>
            counts.live === 0 && Bound.kept.connections === kept ? Effect.void : Effect.fail(left())
          ).pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "30 seconds" }))))
          assert.strictEqual(counts.started, (cycle + 1) * running)
        }
        // a new connection: as many calls as on the first, and no more
        const { hold, read, until, exitsOf, send } = yield* connect(yield* Effect.scope)
        for (let i = 0; i < running + 1; i++) yield* hold(String(i))
        yield* read
        assert.strictEqual(counts.live, running)
        yield* send({ _tag: "Interrupt", requestId: "0" })
        yield* until("the interruption", () => exitsOf("0").length === 1)
        yield* read
        assert.strictEqual(counts.live, running)
        assert.strictEqual(counts.started, (cycles + 1) * running + 1)
        // the ones gone left no handler running once their connections closed
        assert.strictEqual(counts.started - counts.live, cycles * running + 1)
      }).pipe(Effect.scoped),
    120_000
  )
})
