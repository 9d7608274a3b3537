/**
 * The effect-ipc modes of the benchmark's peer process (loaded by `peer.ts`
 * only for them, so that the raw peer runs without effect): `ipc-echo` and
 * `ipc-sink` serve channels over `UnixSocket.make()`; `rpc` serves the
 * DemoApi with `IpcRpc` over Unix sockets.
 */
import { IpcRpc, Transport } from "@effect-ipc/core"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import { DemoApi, DemoHandlers } from "effect-ipc/DemoApi"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RpcServer from "effect/rpc/RpcServer"
import { echo, sink } from "./handlers.ts"

const serveChannels = (mode: "ipc-echo" | "ipc-sink", address: string, ready: () => void) =>
  Effect.gen(function*() {
    const listener = yield* UnixSocket.make().listen(address)
    ready()
    yield* Transport.serve(listener, mode === "ipc-echo" ? echo : sink)
  }).pipe(Effect.scoped)

const serveRpc = (address: string, ready: () => void) =>
  Effect.gen(function*() {
    yield* Layer.build(
      RpcServer.layer(DemoApi).pipe(
        Layer.provide(DemoHandlers),
        Layer.provide(IpcRpc.layerServerProtocol(address)),
        Layer.provide(IpcRpc.layerSerialization),
        Layer.provide(UnixSocket.layer())
      )
    )
    ready()
    yield* Effect.never
  }).pipe(Effect.scoped)

/** Serves `mode` at `address`, calling `ready` once listening; settles only if serving fails. */
export const serve = (mode: "ipc-echo" | "ipc-sink" | "rpc", address: string, ready: () => void): Promise<void> =>
  Effect.runPromise(mode === "rpc" ? serveRpc(address, ready) : serveChannels(mode, address, ready))
