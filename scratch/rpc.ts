import { IpcRpc, Transport } from "@effect-ipc/core"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import { Effect, Layer, Stream } from "effect"
import { DemoApi, DemoHandlers } from "effect-ipc/DemoApi"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcServer from "effect/rpc/RpcServer"

const address = `unix:///tmp/effect-ipc-rpc-${process.pid}.sock`
const TransportLive = UnixSocket.layer()
const Server = RpcServer.layer(DemoApi).pipe(
  Layer.provide(DemoHandlers),
  Layer.provide(IpcRpc.layerServerProtocol(address)),
  Layer.provide(IpcRpc.layerSerialization),
  Layer.provide(TransportLive)
)
const ClientProto = IpcRpc.layerClientProtocol(address).pipe(
  Layer.provide(IpcRpc.layerSerialization),
  Layer.provide(TransportLive)
)
const prog = Effect.gen(function*() {
  const client = yield* RpcClient.make(DemoApi)
  console.log(yield* client.Greet({ name: "x" }))
  console.log(yield* client.Add({ a: 1, b: 2 }))
  console.log(yield* Effect.flip(client.Divide({ a: 1, b: 0 })))
  console.log(yield* Stream.runCollect(client.Countdown({ from: 3 })))
  yield* client.Record({ note: "hi" }, { discard: true })
  console.log(yield* client.Notes())
  const t0 = Date.now()
  const r = yield* Effect.forEach(Array.from({ length: 1000 }, (_, i) => i), (i) => client.Add({ a: i, b: 1 }), {
    concurrency: "unbounded"
  })
  console.log(r.length, r[999], Date.now() - t0, "ms")
}).pipe(Effect.scoped, Effect.provide(Layer.merge(Server, ClientProto)))
Effect.runPromise(prog).then(() => console.log("done"), (e) => console.error("ERR", e))
