/**
 * The client: calls the server of `server.ts` at the same IPC_TRANSPORT /
 * IPC_ADDRESS, prints what it gets, and exits.
 *
 *   node client.ts            IPC_TRANSPORT=shm node client.ts
 */
import { IpcRpc, Registry } from "@effect-ipc/core"
import * as File from "@effect-ipc/transport-file"
import * as Nng from "@effect-ipc/transport-nng"
import * as Pipe from "@effect-ipc/transport-pipe"
import * as Shm from "@effect-ipc/transport-shm"
import { Effect, Layer, Stream } from "effect"
import { RpcClient } from "effect/rpc"
import { Api } from "./api.ts"

const program = Effect.gen(function*() {
  const calc = yield* RpcClient.make(Api)
  console.log("Add", yield* calc.Add({ a: 2, b: 40 }))
  console.log("Withdraw", yield* calc.Withdraw({ amount: 30 }))
  // a typed error: catch it by its tag
  const refused = yield* calc.Withdraw({ amount: 1000 }).pipe(
    Effect.catchTag("Overdrawn", (error) => Effect.succeed(`refused, balance ${error.balance}`))
  )
  console.log("Withdraw", refused)
  // a streamed response
  console.log("Countdown", yield* Stream.runCollect(calc.Countdown({ from: 3 })))
  // cancellation: the call is interrupted on both sides after 100 ms
  const slow = yield* calc.Slow({ millis: 60_000 }).pipe(Effect.timeoutOption("100 millis"))
  console.log("Slow", slow._tag === "None" ? "cancelled" : slow.value)
})

program.pipe(
  Effect.scoped,
  Effect.provide(IpcRpc.layerClient().pipe(Layer.provide(IpcRpc.layerSerialization))),
  Effect.provide(Registry.layerConfig([Pipe.descriptor, Shm.descriptor, File.descriptor, Nng.descriptor], {
    service: "calc"
  })),
  Effect.runPromise
).then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(String(error))
    process.exit(1)
  }
)
