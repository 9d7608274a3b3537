import {
  IpcChannel,
  IpcError,
  IpcRpc,
  Memory,
  Observability,
  Registry,
  StreamChannel,
  Transport
} from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import * as Fs from "node:fs/promises"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { PassThrough } from "node:stream"
import * as Util from "node:util"
import * as Eager from "../src/internal/eager.ts"

let counterOfNames = 0

/** A one-procedure RPC group for the trace tests. */
class EchoApi extends RpcGroup.make(Rpc.make("Echo", { payload: { value: Schema.Number }, success: Schema.Number })) {}
const EchoHandlers = EchoApi.toLayer({ Echo: ({ value }) => Effect.succeed(value) })
/** What an address's token must never show as. */
const SECRET = "SECRETxOBSERVED"
const fresh = (name: string) => `memory://observability-${name}-${process.pid}-${counterOfNames++}`

/** A tracer that keeps every span it makes. */
const recordingTracer = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, tracer }
}

/** Runs `effect` with its own metric registry and a recording tracer. */
const observed = <A, E, R>(
  f: (spans: ReadonlyArray<Tracer.NativeSpan>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  const { spans, tracer } = recordingTracer()
  return f(spans).pipe(Effect.withTracer(tracer), Effect.provideService(Metric.MetricRegistry, new Map()))
}

/** The metrics as they are now (a channel's counts are current as its operation returns, with no turn to wait). */
const settled = Metric.snapshot

/** The value of counter `name` with `attributes` in the current registry (0 when never updated). */
const counter = (name: string, attributes: Record<string, string>) =>
  Effect.map(settled, (snapshots) => {
    let total = 0
    for (const s of snapshots) {
      if (s.id !== name || s.type !== "Counter") continue
      const attrs: Record<string, unknown> = { ...s.attributes }
      if (Object.entries(attributes).every(([k, v]) => attrs[k] === v)) total += Number(s.state.count)
    }
    return total
  })

const histogramCount = (name: string, attributes: Record<string, string>) =>
  Effect.map(settled, (snapshots) => {
    let total = 0
    for (const s of snapshots) {
      if (s.id !== name || s.type !== "Histogram") continue
      const attrs: Record<string, unknown> = { ...s.attributes }
      if (Object.entries(attributes).every(([k, v]) => attrs[k] === v)) total += s.state.count
    }
    return total
  })

const bytes = (size: number, fill: number) => new Uint8Array(size).fill(fill)

/** The `bytes_out` series as [tenant attribute or "-", count], sorted. */
const byTenant = (snapshots: ReadonlyArray<Metric.Metric.Snapshot>) =>
  snapshots.filter((s) => s.id === Observability.MetricNames.bytesOut).map((s) => [
    (s.attributes as Record<string, string>)["tenant"] ?? "-",
    Number((s.state as Metric.CounterState<number>).count)
  ]).toSorted()
const memory = { transport: "memory" }
const named = (spans: ReadonlyArray<Tracer.NativeSpan>, name: string) => spans.filter((s) => s.name === name)

describe("Observability", () => {
  it.effect("counts connections, messages and bytes of a known exchange", () =>
    observed(() =>
      Effect.gen(function*() {
        const transport = Transport.instrument(Memory.make())
        const address = fresh("counts")
        const listener = yield* transport.listen(address)
        const client = yield* transport.dial(address)
        const server = yield* listener.accept
        for (let i = 0; i < 3; i++) yield* client.send(bytes(10, i))
        yield* server.receive
        const rest = yield* Effect.all([server.receive, server.receive])
        assert.strictEqual(rest.length, 2)
        for (let i = 0; i < 2; i++) yield* server.send(bytes(5, i))
        const back = yield* Stream.runCollect(Stream.take(client.messages, 2))
        assert.strictEqual(back.length, 2)

        assert.strictEqual(yield* counter(Observability.MetricNames.dialled, memory), 1)
        assert.strictEqual(yield* counter(Observability.MetricNames.accepted, memory), 1)
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesOut, memory), 5)
        assert.strictEqual(yield* counter(Observability.MetricNames.bytesOut, memory), 40)
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesIn, memory), 5)
        assert.strictEqual(yield* counter(Observability.MetricNames.bytesIn, memory), 40)
        // one send in SEND_WAIT_SAMPLE is timed, starting with each channel's first
        assert.strictEqual(yield* histogramCount(Observability.MetricNames.sendWait, memory), 2)
        assert.strictEqual(yield* counter(Observability.MetricNames.refused, memory), 0)
      }).pipe(Effect.scoped)
    ))

  it.effect("counts a batch received with receiveAll, and one sent with sendAll", () =>
    observed(() =>
      Effect.gen(function*() {
        const transport = Transport.instrument(Memory.make())
        const address = fresh("batch")
        const listener = yield* transport.listen(address)
        const client = yield* transport.dial(address)
        const server = yield* listener.accept
        for (let i = 0; i < 3; i++) yield* client.send(bytes(10, i))
        let received = 0
        while (received < 3) received += (yield* server.receiveAll).length
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesIn, memory), 3)
        assert.strictEqual(yield* counter(Observability.MetricNames.bytesIn, memory), 30)
        // and one sent with sendAll, through the channel's own (counted as it is handed over)
        assert.isFunction(client.sendAll)
        yield* IpcChannel.sendAll(client, [bytes(4, 1), bytes(6, 2)])
        while (received < 5) received += (yield* server.receiveAll).length
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesOut, memory), 5)
        assert.strictEqual(yield* counter(Observability.MetricNames.bytesOut, memory), 40)
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesIn, memory), 5)
      }).pipe(Effect.scoped)
    ))

  it.effect("counts every write of an RPC socket over an instrumented channel, the timed ones too", () =>
    observed(() =>
      Effect.gen(function*() {
        const transport = Transport.instrument(Memory.make())
        const address = fresh("socket")
        const listener = yield* transport.listen(address)
        const client = yield* transport.dial(address)
        const server = yield* listener.accept
        // the socket sends through the channel's eager send: counted and sampled as `send` is
        assert.isDefined(Eager.of(client))
        const socket = IpcRpc.toSocket(Effect.succeed(client))
        yield* socket.reader
        const writer = yield* socket.writer
        const count = 2 * Observability.SEND_WAIT_SAMPLE + 2
        for (let i = 0; i < count; i++) yield* writer.write(bytes(3, i))
        const got: Array<number> = []
        while (got.length < count) for (const m of yield* server.receiveAll) got.push(m[0]!)
        assert.deepStrictEqual(got, Array.from({ length: count }, (_, i) => i & 0xff))
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesOut, memory), count)
        assert.strictEqual(yield* counter(Observability.MetricNames.bytesOut, memory), 3 * count)
        // sends 1, 65 and 129 are timed
        assert.strictEqual(yield* histogramCount(Observability.MetricNames.sendWait, memory), 3)
      }).pipe(Effect.scoped)
    ))

  // over Unix sockets, where the stream channel encodes text into its batch (Memory would encode it first)
  it.live("counts an RPC socket's text writes by their UTF-8 bytes, the timed ones too", () =>
    observed(() =>
      Effect.gen(function*() {
        const dir = yield* Effect.acquireRelease(
          Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "effect-ipc-obs-"))),
          (made) => Effect.promise(() => Fs.rm(made, { recursive: true, force: true }))
        )
        const path = Path.join(dir, "s")
        const [ours, theirs] = yield* Effect.acquireRelease(
          Effect.promise(async () => {
            const listening = Net.createServer()
            await new Promise<void>((resolve) => listening.listen(path, resolve))
            const accepted = new Promise<Net.Socket>((resolve) => listening.once("connection", resolve))
            const dialled = Net.createConnection(path)
            await new Promise<void>((resolve) => dialled.once("connect", () => resolve()))
            listening.close()
            return [dialled, await accepted] as const
          }),
          (pair) => Effect.sync(() => pair.forEach((socket) => socket.destroy()))
        )
        const address = `unix://${path}`
        const plain = yield* StreamChannel.makeScoped({ readable: ours, writable: ours }, address)
        const client = Observability.instrumentChannel(plain, "dialled", yield* Effect.context<never>())
        const server = yield* StreamChannel.makeScoped({ readable: theirs, writable: theirs }, "test://server")
        // text goes through the channel's eager text send, counted and sampled as `send` is
        assert.isDefined(Eager.textOf(client))
        const socket = IpcRpc.toSocket(Effect.succeed(client))
        yield* socket.reader
        const writer = yield* socket.writer
        const count = Observability.SEND_WAIT_SAMPLE + 2
        // 4 UTF-16 units, 6 UTF-8 bytes
        for (let i = 0; i < count; i++) yield* writer.write(`é${String.fromCharCode(65 + (i % 26))}€`)
        const got: Array<string> = []
        while (got.length < count) for (const m of yield* server.receiveAll) got.push(Buffer.from(m).toString("utf8"))
        assert.deepStrictEqual(got, Array.from({ length: count }, (_, i) => `é${String.fromCharCode(65 + (i % 26))}€`))
        const unix = { transport: "unix" }
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesOut, unix), count)
        assert.strictEqual(yield* counter(Observability.MetricNames.bytesOut, unix), 6 * count)
        // sends 1 and 65 are timed
        assert.strictEqual(yield* histogramCount(Observability.MetricNames.sendWait, unix), 2)
      }).pipe(Effect.scoped)
    ))

  it.effect("counts errors by reason, once each, and a refusal", () =>
    observed(() =>
      Effect.gen(function*() {
        const transport = Transport.instrument(Memory.make())
        const address = fresh("errors")
        const notFound = yield* Effect.flip(transport.dial(address))
        assert.strictEqual(notFound.reason._tag, "NotFound")
        yield* transport.listen(address)
        const taken = yield* Effect.flip(transport.listen(address))
        assert.strictEqual(taken.reason._tag, "AddressInUse")
        const client = yield* transport.dial(address)
        const tooLarge = yield* Effect.flip(
          Transport.instrument(Memory.make({ maxMessageSize: 4 })).dial(address).pipe(
            Effect.flatMap((small) => small.send(bytes(5, 0)))
          )
        )
        assert.strictEqual(tooLarge.reason._tag, "FrameTooLarge")
        yield* client.close
        // the same error seen twice is counted once
        const closed1 = yield* Effect.flip(client.receive)
        const closed2 = yield* Effect.flip(client.receive)
        assert.strictEqual(closed1.reason._tag, "Closed")
        assert.strictEqual(closed2, closed1)
        // a transport that refuses the peer it dialled
        const refusing: Transport.TransportShape = {
          schemes: ["memory"],
          listen: (a) => Effect.fail(IpcError.make("Closed", "unused", a)),
          dial: (a) => Effect.fail(IpcError.make("PeerRejected", "the server runs as someone else", a))
        }
        yield* Effect.flip(Transport.instrument(refusing).dial(address))

        const reason = (r: string) => counter(Observability.MetricNames.errors, { transport: "memory", reason: r })
        assert.strictEqual(yield* reason("NotFound"), 1)
        assert.strictEqual(yield* reason("AddressInUse"), 1)
        assert.strictEqual(yield* reason("FrameTooLarge"), 1)
        assert.strictEqual(yield* reason("Closed"), 1)
        assert.strictEqual(yield* reason("PeerRejected"), 1)
        assert.strictEqual(yield* counter(Observability.MetricNames.refused, memory), 1)
        // a listener's refusal, as a transport reports it
        yield* Observability.refused(address, IpcError.make("PeerRejected", "uid 65534 refused", address))
        assert.strictEqual(yield* counter(Observability.MetricNames.refused, memory), 2)
        assert.strictEqual(yield* reason("PeerRejected"), 2)
      }).pipe(Effect.scoped)
    ))

  it.effect("counts what the channel took, as the send runs; the channel's end once; a scheme by its lower case", () =>
    observed(() =>
      Effect.gen(function*() {
        const transport = Transport.instrument(Memory.make({ maxMessageSize: 10 }))
        const address = fresh("took")
        const listener = yield* transport.listen(address)
        const client = yield* transport.dial(address)
        const server = yield* listener.accept
        // one send effect run three times: three messages; one built and never run: none
        const once = client.send(bytes(2, 1))
        yield* once
        yield* once
        yield* once
        const never = client.send(bytes(9, 1))
        assert.isDefined(never)
        // refused, past the timed first send: not counted (the first of the channel is timed, and refused too)
        for (let i = 0; i < 3; i++) {
          const refused = yield* Effect.flip(client.send(bytes(11, 1)))
          assert.strictEqual(refused.reason._tag, "FrameTooLarge")
        }
        // a batch that fails on its second message: not counted; one that goes: counted
        yield* Effect.flip(IpcChannel.sendAll(client, [bytes(1, 0), bytes(11, 0)]))
        yield* IpcChannel.sendAll(client, [bytes(3, 0), bytes(4, 0)])
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesOut, memory), 5)
        assert.strictEqual(yield* counter(Observability.MetricNames.bytesOut, memory), 3 * 2 + 3 + 4)
        for (let i = 0; i < 6; i++) yield* server.receive
        // the peer's end, reported by receive and send alike, again and again: one Closed
        yield* server.close
        for (let i = 0; i < 3; i++) {
          yield* Effect.flip(client.receive)
          yield* Effect.flip(client.send(bytes(1, 0)))
        }
        assert.strictEqual(
          yield* counter(Observability.MetricNames.errors, { transport: "memory", reason: "Closed" }),
          1
        )
        // an address whose scheme is written in capitals counts as its scheme
        const caps = `MEMORY${fresh("caps").slice("memory".length)}`
        yield* transport.listen(caps)
        yield* transport.dial(caps)
        assert.strictEqual(yield* counter(Observability.MetricNames.dialled, memory), 2)
        assert.strictEqual(yield* counter(Observability.MetricNames.dialled, { transport: "unknown" }), 0)
      }).pipe(Effect.scoped)
    ))

  it.effect("counts the end that receiveAll and the messages stream meet: a close, a lost peer", () =>
    observed(() =>
      Effect.gen(function*() {
        const context = yield* Effect.context<never>()
        const errors = (reason: string) => counter(Observability.MetricNames.errors, { transport: "test", reason })
        // a peer that closed: receiveAll fails with Closed, counted; the messages stream just ends
        for (const reading of ["receiveAll", "messages"] as const) {
          const [a, b] = yield* Effect.sync(() => {
            const one = new PassThrough()
            const two = new PassThrough()
            return [{ readable: one, writable: two }, { readable: two, writable: one }] as const
          })
          const ours = yield* StreamChannel.makeScoped(a, `test://closed-${reading}`)
          const theirs = yield* StreamChannel.makeScoped(b, "other://peer")
          const client = Observability.instrumentChannel(ours, "dialled", context)
          yield* theirs.send(bytes(3, 1))
          yield* theirs.close
          if (reading === "receiveAll") {
            assert.strictEqual((yield* client.receiveAll).length, 1)
            const closed = yield* Effect.flip(client.receiveAll)
            assert.strictEqual(closed.reason._tag, "Closed")
            assert.strictEqual(yield* errors("Closed"), 1)
          } else {
            assert.strictEqual((yield* Stream.runCollect(client.messages)).length, 1)
            assert.strictEqual(yield* errors("Closed"), 1, "a stream's end is no error")
          }
        }
        // a peer lost: each way of reading fails with ConnectionLost, counted once per channel
        for (const reading of ["receiveAll", "messages"] as const) {
          const one = new PassThrough()
          const ours = yield* StreamChannel.makeScoped({ readable: one, writable: new PassThrough() }, `test://lost`)
          const client = Observability.instrumentChannel(ours, "dialled", context)
          one.write(Buffer.from([1, 0, 0, 0, 0, 1, 7]))
          one.destroy(new Error("gone"))
          const lost = reading === "receiveAll"
            ? yield* Effect.flip(Effect.andThen(client.receiveAll, client.receiveAll))
            : yield* Effect.flip(Stream.runDrain(client.messages))
          assert.strictEqual(lost.reason._tag, "ConnectionLost")
        }
        assert.strictEqual(yield* errors("ConnectionLost"), 2)
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesIn, { transport: "test" }), 4)
      }).pipe(Effect.scoped)
    ))

  it.effect("traces listen, dial, accept and close with address and scheme", () =>
    observed((spans) =>
      Effect.gen(function*() {
        const transport = Transport.instrument(Memory.make())
        const address = fresh("spans")
        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* transport.listen(address)
          yield* transport.dial(address) // closed with this scope
          const server = yield* listener.accept
          yield* server.close
          yield* server.close // traced once
        }))
        const [listen] = named(spans, Observability.SpanNames.listen)
        const [dial] = named(spans, Observability.SpanNames.dial)
        const [accept] = named(spans, Observability.SpanNames.accept)
        const closes = named(spans, Observability.SpanNames.close)
        assert.isDefined(listen)
        assert.isDefined(dial)
        assert.isDefined(accept)
        assert.strictEqual(closes.length, 2) // the accepted channel's, and the dialled one's at scope close
        for (const span of [listen!, dial!, accept!, ...closes]) {
          assert.strictEqual(span.attributes.get("address"), address)
          assert.strictEqual(span.attributes.get("scheme"), "memory")
          assert.strictEqual(span.status._tag, "Ended")
        }
        assert.strictEqual(dial!.kind, "client")
        assert.strictEqual(accept!.kind, "server")
      })
    ))

  it.effect("spans show an address without its token: listen, the address bound, dial, accept and close", () =>
    observed((spans) =>
      Effect.gen(function*() {
        const transport = Transport.instrument(Memory.make())
        const where = fresh("secret")
        const address = `${where}?token=${SECRET}`
        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* transport.listen(address)
          assert.include(listener.address, SECRET) // the transport's own word, which the spans must not repeat
          yield* transport.dial(address)
          const server = yield* listener.accept
          yield* server.close
        }))
        const shown = spans.flatMap((span) => [...span.attributes].map(([key, value]) => `${key}=${String(value)}`))
        assert.deepStrictEqual(
          [...new Set(spans.map((span) => span.name))].toSorted(),
          Object.values(Observability.SpanNames).toSorted()
        )
        assert.isFalse(shown.some((line) => line.includes(SECRET)), shown.join("\n"))
        assert.include(shown, `bound=${where}`)
        assert.include(shown, `address=${where}`)
      })
    ))

  it.effect("refusals are logged with the address's token removed, one by one and summed up", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ message }) => {
        lines.push(Util.inspect(message, { depth: 4 }))
      })
      const where = "ws://127.0.0.1:1/app"
      const address = `${where}?token=${SECRET}`
      const rejected = IpcError.make("PeerRejected", `uid 65534 refused at ${address}`, address)
      yield* Effect.scoped(Effect.gen(function*() {
        const refuse = yield* Observability.refusals(address)
        for (let i = 0; i <= Observability.LOGGED_REFUSALS_PER_MINUTE; i++) yield* refuse(rejected)
        yield* Observability.refused(address, rejected)
      })).pipe(Effect.provide(Logger.layer([logger])))
      // ten one by one, one by `refused`, and the one past ten summed up as the scope closes
      assert.strictEqual(lines.length, Observability.LOGGED_REFUSALS_PER_MINUTE + 2, lines.join("\n"))
      assert.isTrue(lines.some((line) => line.includes(`1 more refused in the last minute at ${where}`)))
      assert.isFalse(lines.some((line) => line.includes(SECRET)), lines.join("\n"))
      assert.isTrue(lines.some((line) => line.includes(`uid 65534 refused at ${where}`)), lines.join("\n"))
    }))

  it.effect("instruments once: route, instrument and the registry do not count twice", () =>
    observed((spans) =>
      Effect.gen(function*() {
        const inner = Memory.make()
        const transport = Transport.route([Transport.instrument(Transport.instrument(inner))])
        assert.strictEqual(Transport.instrument(transport), transport)
        const address = fresh("once")
        const listener = yield* transport.listen(address)
        const client = yield* transport.dial(address)
        yield* listener.accept
        yield* client.send(bytes(7, 1))
        assert.strictEqual(yield* counter(Observability.MetricNames.dialled, memory), 1)
        assert.strictEqual(yield* counter(Observability.MetricNames.bytesOut, memory), 7)
        // through Registry.layerConfig
        const viaConfig = yield* Transport.dial(address).pipe(
          Effect.provide(
            Registry.layerConfig([Registry.memory]).pipe(
              Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ IPC_ADDRESS: address })))
            )
          )
        )
        yield* viaConfig.send(bytes(3, 1))
        assert.strictEqual(yield* counter(Observability.MetricNames.dialled, memory), 2)
        assert.strictEqual(yield* counter(Observability.MetricNames.bytesOut, memory), 10)
        assert.strictEqual(named(spans, Observability.SpanNames.dial).length, 2)
        assert.strictEqual(named(spans, Observability.SpanNames.listen).length, 1)
      }).pipe(Effect.scoped)
    ))

  it.effect("a channel instrumented twice into one series counts each message it receives once, through either", () =>
    observed(() =>
      Effect.gen(function*() {
        const transport = Memory.make()
        const address = fresh("twice")
        const listener = yield* transport.listen(address)
        const base = yield* transport.dial(address)
        const server = yield* listener.accept
        const context = yield* Effect.context<never>()
        const first = Observability.instrumentChannel(base, "dialled", context)
        const second = Observability.instrumentChannel(base, "dialled", context)
        yield* server.send(bytes(10, 1))
        yield* second.receive
        yield* server.send(bytes(10, 2))
        yield* first.receive
        yield* server.send(bytes(10, 3))
        yield* second.receiveAll
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesIn, memory), 3)
        assert.strictEqual(yield* counter(Observability.MetricNames.bytesIn, memory), 30)
      }).pipe(Effect.scoped)
    ))

  it.effect("counts channels into the series of their attributes, and on into series removed and made again", () =>
    observed(() =>
      Effect.gen(function*() {
        const transport = Transport.instrument(Memory.make())
        const address = fresh("series")
        const listener = yield* transport.listen(address)
        const plain = yield* transport.dial(address)
        yield* listener.accept
        const tagged = { transport: "memory", tenant: "a" }
        const withTenant = Effect.provideService(Metric.CurrentMetricAttributes, { tenant: "a" })
        const a1 = yield* withTenant(transport.dial(address))
        yield* listener.accept
        const a2 = yield* withTenant(transport.dial(address))
        yield* listener.accept
        yield* plain.send(bytes(1, 0))
        yield* a1.send(bytes(2, 0))
        yield* a2.send(bytes(4, 0))
        // the dialled ones with the attribute count into one series; the plain one into its own
        assert.deepStrictEqual(byTenant(yield* Metric.snapshot), [["-", 1], ["a", 6]])
        assert.strictEqual(
          yield* counter(Observability.MetricNames.messagesOut, tagged).pipe(withTenant),
          2
        )
        // the series removed (as a user may): the channels already open count into the one made again, from zero
        yield* Metric.remove(Metric.counter(Observability.MetricNames.bytesOut, {
          description: "payload bytes sent",
          attributes: { transport: "memory" },
          incremental: true
        })).pipe(withTenant)
        assert.deepStrictEqual(byTenant(yield* Metric.snapshot), [["-", 1]])
        const a3 = yield* withTenant(transport.dial(address))
        yield* listener.accept
        yield* a1.send(bytes(8, 0))
        yield* a3.send(bytes(16, 0))
        assert.deepStrictEqual(byTenant(yield* Metric.snapshot), [["-", 1], ["a", 24]])
        // the other series of that channel kept counting where they were
        assert.strictEqual(yield* counter(Observability.MetricNames.messagesOut, tagged), 4)
      }).pipe(Effect.scoped)
    ))

  it.live("an RPC server span continues the client's trace over memory://", () =>
    observed((spans) =>
      Effect.gen(function*() {
        const address = fresh("rpc")
        const transport = Memory.layer()
        yield* Layer.build(
          RpcServer.layer(EchoApi).pipe(
            Layer.provide(EchoHandlers),
            Layer.provide(IpcRpc.layerServerProtocol(address)),
            Layer.provide(IpcRpc.layerSerialization),
            Layer.provide(transport)
          )
        )
        const protocol = yield* Layer.build(
          IpcRpc.layerClientProtocol(address).pipe(Layer.provide(IpcRpc.layerSerialization), Layer.provide(transport))
        )
        const client = yield* RpcClient.make(EchoApi).pipe(Effect.provide(protocol))
        assert.strictEqual(yield* client.Echo({ value: 7 }), 7)
        const clientSpan = spans.find((s) => s.kind === "client" && s.name.endsWith("Echo"))
        const serverSpan = spans.find((s) => s.kind === "server" && s.name.endsWith("Echo"))
        assert.isDefined(clientSpan)
        assert.isDefined(serverSpan)
        assert.strictEqual(serverSpan!.traceId, clientSpan!.traceId)
        assert.strictEqual(
          serverSpan!.parent._tag === "Some" ? serverSpan!.parent.value.spanId : "",
          clientSpan!.spanId
        )
      }).pipe(Effect.scoped)
    ))

  it.effect("spell: one warning as each spell begins, none while it lasts", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        lines.push(`${logLevel} ${Array.isArray(message) ? message.map(String).join(" ") : String(message)}`)
      })
      const short = Observability.spell()
      assert.isFalse(short.end())
      // decided as begin is called: two asked for before either runs log once
      const first = short.begin("no room", "EMFILE")
      const second = short.begin("no room", "EMFILE")
      assert.isTrue(short.active())
      yield* Effect.andThen(first, second).pipe(Effect.provide(Logger.layer([logger])))
      assert.deepStrictEqual(lines, ["Warn no room EMFILE"])
      assert.isTrue(short.end())
      assert.isFalse(short.active())
      yield* short.begin("no room again").pipe(Effect.provide(Logger.layer([logger])))
      assert.deepStrictEqual(lines, ["Warn no room EMFILE", "Warn no room again"])
    }))
})
