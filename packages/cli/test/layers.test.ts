/**
 * Every transport's own `layer` is instrumented as the registry's descriptors
 * are: a message through a channel built by `X.layer` shows in the metrics,
 * and its dial in the spans.
 */
import { Observability, Transport } from "@effect-ipc/core"
import { FileTransport } from "@effect-ipc/transport-file"
import { NngTransport } from "@effect-ipc/transport-nng"
import { UnixSocket } from "@effect-ipc/transport-pipe"
import { ShmChannel, ShmTransport } from "@effect-ipc/transport-shm"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Tracer from "effect/Tracer"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-layers-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

const layers: ReadonlyArray<readonly [string, Layer.Layer<Transport.Transport, unknown>, string]> = [
  ["UnixSocket.layer", UnixSocket.layer(), `unix://${dir}/u.sock`],
  ["ShmTransport.layer", ShmTransport.layer({ collector: false }), `shm://eipc-layers-${process.pid}`],
  ["FileTransport.layer", FileTransport.layer(), `file://${dir}/f`],
  ["NngTransport.layer", NngTransport.layer(), `nng+ipc://${dir}/n.sock`]
]

describe("each transport's layer is instrumented", () => {
  for (const [name, layer, address] of layers) {
    it.live(`${name}: a message is counted, its dial traced`, () => {
      const spans: Array<string> = []
      const tracer = Tracer.make({
        span(options) {
          spans.push(options.name)
          return new Tracer.NativeSpan(options)
        }
      })
      return Effect.gen(function*() {
        const listener = yield* Transport.listen(address)
        const client = yield* Transport.dial(address)
        const server = yield* listener.accept
        yield* client.send(new Uint8Array(10))
        assert.strictEqual((yield* server.receive).byteLength, 10)
        yield* Effect.promise(() => Promise.resolve())
        const scheme = Observability.schemeOf(address)
        const sent = (yield* Metric.snapshot).filter((s) =>
          s.id === Observability.MetricNames.messagesOut && s.type === "Counter" &&
          (s.attributes as Record<string, unknown> | undefined)?.transport === scheme
        )
        assert.strictEqual(sent.reduce((n, s) => n + Number((s.state as { count: number }).count), 0), 1, name)
        assert.include(spans, Observability.SpanNames.dial)
      }).pipe(
        Effect.scoped,
        Effect.provide(layer),
        Effect.withTracer(tracer),
        Effect.provideService(Metric.MetricRegistry, new Map())
      )
    }, 60_000)
  }

  it.live(
    "ShmTransport.layer: an instrumented channel still reads a large message in place",
    () =>
      Effect.gen(function*() {
        const address = `shm://eipc-layers-view-${process.pid}`
        const listener = yield* Transport.listen(address)
        const client = yield* Transport.dial(address)
        const server = yield* listener.accept
        yield* client.send(new Uint8Array(1024 * 1024).fill(7))
        let seen: Uint8Array | undefined
        const length = yield* Effect.scoped(Effect.map(ShmChannel.receiveView(server), (view) => {
          seen = view
          return view.byteLength
        }))
        assert.strictEqual(length, 1024 * 1024)
        // in place: the view is detached once its scope closed (a copy would keep its bytes)
        assert.strictEqual(seen!.byteLength, 0)
      }).pipe(Effect.scoped, Effect.provide(ShmTransport.layer({ collector: false }))),
    60_000
  )
})
