/**
 * `WsTransport.layer` and `WsClient.layer` are instrumented as the registry's
 * descriptors are: a message through their channels shows in the metrics
 * (transport "ws"), their dial in the spans.
 */
import { Observability, Transport } from "@effect-ipc/core"
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Tracer from "effect/Tracer"
import { freshAddress, sweepTokenFiles } from "./helpers.ts"

afterAll(sweepTokenFiles)

const sentCount = Effect.map(
  Metric.snapshot,
  (snapshots) =>
    snapshots.filter((s) =>
      s.id === Observability.MetricNames.messagesOut && s.type === "Counter" &&
      (s.attributes as Record<string, unknown> | undefined)?.transport === "ws"
    ).reduce((n, s) => n + Number((s.state as { count: number }).count), 0)
)

describe("the ws layers are instrumented", () => {
  it.live("WsTransport.layer and WsClient.layer: messages counted, dials traced", () => {
    const spans: Array<string> = []
    const tracer = Tracer.make({
      span(options) {
        spans.push(options.name)
        return new Tracer.NativeSpan(options)
      }
    })
    return Effect.gen(function*() {
      const address = freshAddress("observed")
      const listener = yield* Ws.WsServer.listen(address, { tokenFile: false })
      yield* Effect.forkScoped(Transport.serve(listener, (c) => Effect.forever(Effect.flatMap(c.receive, c.send))))
      for (
        const layer of [Ws.WsTransport.layer({ token: listener.token }), Ws.WsClient.layer({ token: listener.token })]
      ) {
        yield* Effect.gen(function*() {
          const client = yield* Transport.dial(address)
          yield* client.send(new Uint8Array(10))
          assert.strictEqual((yield* client.receive).byteLength, 10)
        }).pipe(Effect.scoped, Effect.provide(layer))
      }
      yield* Effect.promise(() => Promise.resolve())
      assert.strictEqual(yield* sentCount, 2)
      assert.strictEqual(spans.filter((name) => name === Observability.SpanNames.dial).length, 2)
    }).pipe(Effect.scoped, Effect.withTracer(tracer), Effect.provideService(Metric.MetricRegistry, new Map()))
  }, 60_000)
})
