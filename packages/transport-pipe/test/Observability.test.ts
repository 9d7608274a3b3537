/**
 * Metrics, spans and logs over real sockets and FIFOs: what a user's own
 * MetricRegistry, Tracer and Logger see of listen, dial, accept, close, a
 * refused peer, a dropped connection and RPC calls.
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import * as Observability from "@effect-ipc/core/Observability"
import * as Registry from "@effect-ipc/core/Registry"
import * as Transport from "@effect-ipc/core/Transport"
import * as Observed from "@effect-ipc/testing/Observed"
import * as Pipe from "@effect-ipc/transport-pipe"
import { ChildPipe, Fifo, UnixSocket } from "@effect-ipc/transport-pipe"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as References from "effect/References"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import * as Net from "node:net"
import * as Path from "node:path"
import { isRoot, nobody, python, run, squatter, tempDir } from "./helpers.ts"

let counterOfNames = 0

/** A one-procedure RPC group for the trace tests. */
class EchoApi extends RpcGroup.make(Rpc.make("Echo", { payload: { value: Schema.Number }, success: Schema.Number })) {}
const EchoHandlers = EchoApi.toLayer({ Echo: ({ value }) => Effect.succeed(value) })
const unique = (what: string) => `effect-ipc-obs-${what}-${process.pid}-${counterOfNames++}`

/** What a user's own Tracer and Logger recorded. */
const recorder = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const logs: Array<{ readonly level: string; readonly text: string; readonly values: ReadonlyArray<unknown> }> = []
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  const logger = Logger.make(({ logLevel, message }) => {
    const values = Array.isArray(message) ? message : [message]
    logs.push({ level: logLevel, text: values.filter((v) => typeof v === "string").join(" "), values })
  })
  const layer = Layer.mergeAll(
    Logger.layer([logger]),
    Layer.succeed(Tracer.Tracer, tracer),
    Layer.succeed(References.MinimumLogLevel, "Debug")
  )
  return { spans, logs, layer }
}

/** The counter `name` with `attributes` in `registry`, once the current burst's counts are published (a microtask). */
const counter = (registry: Metric.MetricRegistry, name: string, attributes: Record<string, string>) =>
  Effect.andThen(Effect.promise(() => Promise.resolve()), Metric.snapshot).pipe(
    Effect.provideService(Metric.MetricRegistry, registry),
    Effect.map((snapshots) => {
      let total = 0
      for (const s of snapshots) {
        if (s.id !== name || s.type !== "Counter") continue
        const attrs: Record<string, unknown> = { ...s.attributes }
        if (Object.entries(attributes).every(([k, v]) => attrs[k] === v)) total += Number(s.state.count)
      }
      return total
    })
  )

const unix = { transport: "unix" }

const named = (spans: ReadonlyArray<Tracer.NativeSpan>, name: string) => spans.filter((s) => s.name === name)

/** The pipe transport as `Registry.layerConfig` builds it, for `address`. */
const configured = (address: string) =>
  Registry.layerConfig([Pipe.descriptor]).pipe(
    Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ IPC_ADDRESS: address })))
  )

/** Connects a raw socket to `path`, writes `bytes`, and waits until the server drops it. */
const sendGarbage = (path: string, bytes: Uint8Array) =>
  Effect.callback<void>((resume) => {
    const socket = Net.createConnection({ path }, () => socket.write(bytes))
    socket.on("error", () => {})
    socket.on("close", () => resume(Effect.void))
    socket.resume()
    return Effect.sync(() => socket.destroy())
  })

/** Serves and calls `EchoApi` at `address` (through `Registry.layerConfig`); checks the server span continues the client's trace. */
const rpcTraces = (address: string) => {
  const { spans, layer } = recorder()
  return Effect.gen(function*() {
    const transport = configured(address)
    yield* Layer.build(
      RpcServer.layer(EchoApi).pipe(
        Layer.provide(EchoHandlers),
        Layer.provide(IpcRpc.layerServer),
        Layer.provide(IpcRpc.layerSerialization),
        Layer.provide(transport)
      )
    )
    const protocol = yield* Layer.build(
      IpcRpc.layerClient().pipe(Layer.provide(IpcRpc.layerSerialization), Layer.provide(transport))
    )
    const client = yield* RpcClient.make(EchoApi).pipe(Effect.provide(protocol))
    assert.strictEqual(yield* client.Echo({ value: 7 }), 7)
    const clientSpan = spans.find((s) => s.kind === "client" && s.name.endsWith("Echo"))
    const serverSpan = spans.find((s) => s.kind === "server" && s.name.endsWith("Echo"))
    assert.isDefined(clientSpan)
    assert.isDefined(serverSpan)
    assert.strictEqual(serverSpan!.traceId, clientSpan!.traceId)
    assert.strictEqual(serverSpan!.parent._tag === "Some" ? serverSpan!.parent.value.spanId : "", clientSpan!.spanId)
    // and the transport's own spans were recorded too
    assert.isTrue(spans.some((s) => s.name === Observability.SpanNames.dial))
    assert.isTrue(spans.some((s) => s.name === Observability.SpanNames.accept))
  }).pipe(Effect.scoped, Effect.provide(layer))
}

describe("Observability over transport-pipe", () => {
  it.live("counts 3 messages of 10 bytes each way, per side, through Registry.layerConfig", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-obs-")
      const address = `unix://${Path.join(dir, "counts.sock")}`
      const server = new Map() as Metric.MetricRegistry
      const client = new Map() as Metric.MetricRegistry
      const transport = yield* Layer.build(configured(address))
      const listener = yield* Transport.listen(address).pipe(
        Effect.provide(transport),
        Effect.provideService(Metric.MetricRegistry, server)
      )
      const dialled = yield* Transport.dial(address).pipe(
        Effect.provide(transport),
        Effect.provideService(Metric.MetricRegistry, client)
      )
      const accepted = yield* listener.accept.pipe(Effect.provideService(Metric.MetricRegistry, server))
      for (let i = 0; i < 3; i++) yield* dialled.send(new Uint8Array(10).fill(i))
      for (let i = 0; i < 3; i++) yield* accepted.send(yield* accepted.receive)
      for (let i = 0; i < 3; i++) {
        assert.deepStrictEqual(
          [...(yield* dialled.receive)],
          Array.from({ length: 10 }, () => i)
        )
      }
      for (const registry of [server, client]) {
        assert.strictEqual(yield* counter(registry, Observability.MetricNames.messagesOut, unix), 3)
        assert.strictEqual(yield* counter(registry, Observability.MetricNames.bytesOut, unix), 30)
        assert.strictEqual(yield* counter(registry, Observability.MetricNames.messagesIn, unix), 3)
        assert.strictEqual(yield* counter(registry, Observability.MetricNames.bytesIn, unix), 30)
      }
      assert.strictEqual(yield* counter(client, Observability.MetricNames.dialled, unix), 1)
      assert.strictEqual(yield* counter(client, Observability.MetricNames.accepted, unix), 0)
      assert.strictEqual(yield* counter(server, Observability.MetricNames.accepted, unix), 1)
      assert.strictEqual(yield* counter(server, Observability.MetricNames.dialled, unix), 0)
    }).pipe(Effect.scoped))

  it.live("a flood of refused peers: each counted, 10 warned one by one, then one line for the rest", () =>
    Effect.gen(function*() {
      // a warning per refused connection let a flood write the log without bound
      const { lines, refusals, services } = Observed.make()
      const path = Path.join(yield* tempDir("effect-ipc-obs-refusals-"), "refusing.sock")
      yield* Effect.scoped(Effect.gen(function*() {
        yield* UnixSocket.make({ authorize: () => false }).listen(`unix://${path}`).pipe(Effect.provide(services))
        for (let i = 0; i < 25; i++) {
          yield* Effect.callback<void>((resume) => {
            const socket = Net.connect(path)
            socket.on("error", () => {})
            socket.on("close", () => resume(Effect.void))
            socket.resume()
          })
        }
        assert.strictEqual(yield* refusals, 25)
        assert.strictEqual(lines.filter((line) => line.startsWith("refused a connection")).length, 10, lines.join("\n"))
      }))
      // closing the listener says how many more there were
      assert.isTrue(lines.some((line) => line.startsWith("15 more refused in the last minute")), lines.join("\n"))
    }).pipe(Effect.scoped))

  it.live.runIf(isRoot)("counts and logs a peer the listener's default policy refuses (another uid)", () => {
    const { logs, layer } = recorder()
    const registry = new Map() as Metric.MetricRegistry
    return Effect.gen(function*() {
      const name = unique("refused")
      yield* Transport.listen(`unix:@${name}`)
      // the listener destroys the connection after counting it: the probe sees the end
      const probe = yield* run(python, [squatter, "probe", `@${name}`], { uid: nobody })
      assert.oneOf(probe.stdout.toString().trim(), ["eof", "reset"])
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.refused, unix), 1)
      assert.strictEqual(
        yield* counter(registry, Observability.MetricNames.errors, { transport: "unix", reason: "PeerRejected" }),
        1
      )
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.accepted, unix), 0)
      // logged by the listener's background fiber, with the caller's logger
      const warning = logs.find((l) => l.text.includes("refused a connection"))
      assert.isDefined(warning)
      assert.strictEqual(warning!.level, "Warn")
      const error = warning!.values[1]
      assert.isTrue(IpcError.isIpcError(error) && error.reason._tag === "PeerRejected", String(error))
      assert.include(String(error), `refused a peer running as uid ${nobody}`)
    }).pipe(
      Effect.scoped,
      Effect.provide(UnixSocket.layer()),
      Effect.provide(layer),
      Effect.provideService(Metric.MetricRegistry, registry)
    )
  })

  it.live("Fifo.layer and ChildPipe.layer count what their channels carry, as UnixSocket.layer does", () => {
    const registry = new Map() as Metric.MetricRegistry
    return Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-obs-")
      const fifo = `fifo://${Path.join(dir, "layer")}`
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* Transport.listen(fifo)
        const client = yield* Transport.dial(fifo)
        const server = yield* listener.accept
        yield* client.send(new Uint8Array([1, 2, 3]))
        assert.deepStrictEqual([...(yield* server.receive)], [1, 2, 3])
      })).pipe(Effect.provide(Fifo.layer()))
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.dialled, { transport: "fifo" }), 1)
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.accepted, { transport: "fifo" }), 1)
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.messagesOut, { transport: "fifo" }), 1)
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.messagesIn, { transport: "fifo" }), 1)
      // a child that never reads: the message is sent into its stdin's pipe
      const child = `child:${
        encodeURIComponent(JSON.stringify([process.execPath, "-e", "setTimeout(() => {}, 20000)"]))
      }`
      yield* Effect.scoped(Effect.gen(function*() {
        const channel = yield* Transport.dial(child)
        yield* channel.send(new Uint8Array(5))
      })).pipe(Effect.provide(ChildPipe.layer()))
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.dialled, { transport: "child" }), 1)
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.bytesOut, { transport: "child" }), 5)
    }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, registry))
  })

  it.live("counts a server that dial's authorize refuses", () =>
    Effect.gen(function*() {
      const registry = new Map() as Metric.MetricRegistry
      const address = `unix:@${unique("dial-refused")}`
      yield* Transport.instrument(UnixSocket.make()).listen(address)
      const error = yield* Effect.flip(
        Transport.instrument(UnixSocket.make({ authorize: () => false })).dial(address).pipe(
          Effect.provideService(Metric.MetricRegistry, registry)
        )
      )
      assert.strictEqual(error.reason._tag, "PeerRejected")
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.refused, unix), 1)
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.dialled, unix), 0)
    }).pipe(Effect.scoped))

  it.live("a user's Logger and Tracer see every span and log line of accept, dial, close and a dropped connection", () => {
    const { logs, spans, layer } = recorder()
    const registry = new Map() as Metric.MetricRegistry
    return Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-obs-")
      const path = Path.join(dir, "user.sock")
      const address = `unix://${path}`
      const listener = yield* Transport.listen(address)
      yield* Effect.forkScoped(
        Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
      )
      // a dial, an echo, a close
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* Transport.dial(address)
        yield* client.send(new Uint8Array([1, 2, 3]))
        assert.deepStrictEqual([...(yield* client.receive)], [1, 2, 3])
        yield* client.close
      }))
      // a connection the listener drops: a bad frame version
      yield* sendGarbage(path, new Uint8Array([0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
      // both connections end in the server's handler fibers: wait for their close spans
      yield* Effect.repeat(
        Effect.sync(() => spans.filter((s) => s.name === Observability.SpanNames.close).length),
        { until: (closes) => closes >= 3 }
      )
      assert.strictEqual(named(spans, Observability.SpanNames.listen).length, 1)
      assert.strictEqual(named(spans, Observability.SpanNames.dial).length, 1)
      assert.strictEqual(named(spans, Observability.SpanNames.accept).length, 2)
      assert.strictEqual(named(spans, Observability.SpanNames.close).length, 3)
      for (const span of spans.filter((s) => s.name.startsWith("effect-ipc."))) {
        assert.strictEqual(span.attributes.get("address"), address)
        assert.strictEqual(span.attributes.get("scheme"), "unix")
      }
      for (
        const span of [...named(spans, Observability.SpanNames.dial), ...named(spans, Observability.SpanNames.accept)]
      ) {
        assert.strictEqual(span.attributes.get("peer.pid"), process.pid)
        assert.strictEqual(span.attributes.get("peer.uid"), process.getuid?.())
      }
      // the dropped connection is logged by serve's handler fiber, with the user's logger
      const dropped = logs.find((l) => l.text.includes("connection ended"))
      assert.isDefined(dropped)
      assert.strictEqual(dropped!.level, "Debug")
      const reason = dropped!.values[1]
      assert.isTrue(IpcError.isIpcError(reason) && reason.reason._tag === "Protocol", String(reason))
      assert.include(String(reason), "bad frame version byte 0xff")
      assert.strictEqual(
        yield* counter(registry, Observability.MetricNames.errors, { transport: "unix", reason: "Protocol" }),
        1
      )
      assert.strictEqual(yield* counter(registry, Observability.MetricNames.accepted, unix), 2)
    }).pipe(
      Effect.scoped,
      Effect.provide(UnixSocket.layer()),
      Effect.provide(layer),
      Effect.provideService(Metric.MetricRegistry, registry)
    )
  })

  it.live("an RPC server span continues the client's trace over unix://", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-obs-")
      yield* rpcTraces(`unix://${Path.join(dir, "rpc.sock")}`)
    }).pipe(Effect.scoped))

  it.live("an RPC server span continues the client's trace over fifo://", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-obs-")
      yield* rpcTraces(`fifo://${Path.join(dir, "rpc")}`)
    }).pipe(Effect.scoped))
})
