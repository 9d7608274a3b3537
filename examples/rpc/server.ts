/**
 * The server: serves `Api` at the address IPC_TRANSPORT / IPC_ADDRESS choose
 * (default: a Unix socket named after the service) and prints `ready`.
 *
 *   node server.ts            IPC_TRANSPORT=shm node server.ts
 */
import { IpcRpc, Registry } from "@effect-ipc/core"
import * as File from "@effect-ipc/transport-file"
import * as Nng from "@effect-ipc/transport-nng"
import * as Pipe from "@effect-ipc/transport-pipe"
import * as Shm from "@effect-ipc/transport-shm"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer, Stream } from "effect"
import { RpcServer } from "effect/rpc"
import { Api, Overdrawn } from "./api.ts"

let balance = 100

const Handlers = Api.toLayer({
  Add: ({ a, b }) => Effect.succeed(a + b),
  Withdraw: ({ amount }) =>
    amount > balance ? Effect.fail(new Overdrawn({ balance })) : Effect.sync(() => (balance -= amount)),
  Countdown: ({ from }) => Stream.range(0, from).pipe(Stream.map((i) => from - i)),
  Slow: ({ millis }) => Effect.as(Effect.sleep(millis), "done")
})

const Server = RpcServer.layer(Api).pipe(
  Layer.provide(Handlers),
  Layer.provide(IpcRpc.layerServer),
  Layer.provide(IpcRpc.layerSerialization),
  Layer.provide(Registry.layerConfig([Pipe.descriptor, Shm.descriptor, File.descriptor, Nng.descriptor], {
    service: "calc"
  }))
)

// Ctrl-C (SIGINT) or SIGTERM interrupts the server: its socket, files or segments are removed
Layer.launch(Server.pipe(Layer.tap(() => Effect.sync(() => console.log("ready"))))).pipe(
  NodeRuntime.runMain
)
