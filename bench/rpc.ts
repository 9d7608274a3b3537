/**
 * The typed-RPC stacks of the benchmark, each serving and calling the same
 * DemoApi (`Add`, `Echo`) from a peer process:
 *
 * - `ipc`: effect-ipc `IpcRpc` over `unix://` (`UnixSocket.layer()`), with
 *   its default serialization (`packed`, `IpcRpc.layerSerialization`),
 *   effect's SchemaBinary (`IpcRpc.layerSerializationSchemaBinary`) or JSON
 *   (`IpcRpc.layerSerializationJson`, one JSON document per channel message);
 * - `effect`: effect's own RPC over a Node Unix socket, the way an Effect user
 *   writes it without effect-ipc: `RpcServer.layerProtocolSocketServer` over
 *   `NodeSocketServer.layer({ path })`, `RpcClient.layerProtocolSocket()` over
 *   `NodeSocket.layerNet({ path })`, with the same SchemaBinary serialization
 *   or effect's NDJSON (`RpcSerialization.layerNdjson`, JSON framed by
 *   newlines on the byte stream).
 *
 * `serveStack` runs in the peer process (`peer.ts`), `connectStack` in the driver.
 */
import { IpcRpc } from "@effect-ipc/core"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import { DemoApi, DemoHandlers } from "effect-ipc/DemoApi"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Scope from "effect/Scope"
import { EventEmitter } from "node:events"
import type { RpcStack } from "./shared.ts"

// effect's NodeSocket adds a `drain`, an `error` and a `close` listener to its socket for each write that
// waits for room: with 64 callers Node warned (MaxListenersExceededWarning, a stack trace written to stderr)
// for every socket, in the processes being measured. The warning is not about a leak here; it is turned off
// in every process that loads this module (the driver, and peers serving RPC), for both stacks alike
EventEmitter.defaultMaxListeners = 0

/** How a stack is named in the report. */
export const stackLabel = (stack: RpcStack): string => {
  switch (stack) {
    case "ipc-packed":
      return "effect-ipc IpcRpc unix:// (packed, the default)"
    case "ipc-binary":
      return "effect-ipc IpcRpc unix:// (SchemaBinary)"
    case "ipc-json":
      return "effect-ipc IpcRpc unix:// (JSON)"
    case "effect-binary":
      return "effect RPC over NodeSocket (SchemaBinary)"
    case "effect-ndjson":
      return "effect RPC over NodeSocket (NDJSON)"
  }
}

/** The address a stack's peer listens at: `unix://PATH` for effect-ipc, a plain socket path for effect's own. */
export const stackAddress = (stack: RpcStack, path: string): string =>
  stack.startsWith("ipc-") ? `unix://${path}` : path

/** The serialization a stack uses. */
export const stackSerialization = (stack: RpcStack): Layer.Layer<RpcSerialization.RpcSerialization> => {
  switch (stack) {
    case "ipc-packed":
      return IpcRpc.layerSerialization
    case "ipc-binary":
      // effect's SchemaBinary, no frame limit, one message per channel message
      return IpcRpc.layerSerializationSchemaBinary
    case "effect-binary":
      // the same format and limit over a byte stream: effect's own parser, which joins frames split across reads
      // (IpcRpc's refuses a frame longer than its message: there is no such thing as a message on a stream)
      return RpcSerialization.layerSchemaBinary({ maxFrameSize: "unbounded" })
    case "ipc-json":
      return IpcRpc.layerSerializationJson
    case "effect-ndjson":
      return RpcSerialization.layerNdjson
  }
}

const serverProtocol = (
  stack: RpcStack,
  address: string
): Layer.Layer<RpcServer.Protocol, unknown, RpcSerialization.RpcSerialization> =>
  stack.startsWith("ipc-")
    ? IpcRpc.layerServerProtocol(address).pipe(Layer.provide(UnixSocket.layer()))
    : RpcServer.layerProtocolSocketServer.pipe(Layer.provide(NodeSocketServer.layer({ path: address })))

const clientProtocol = (
  stack: RpcStack,
  address: string
): Layer.Layer<RpcClient.Protocol, unknown, RpcSerialization.RpcSerialization> =>
  stack.startsWith("ipc-")
    ? IpcRpc.layerClientProtocol(address).pipe(Layer.provide(UnixSocket.layer()))
    : RpcClient.layerProtocolSocket({ retryTransientErrors: true }).pipe(
      Layer.provide(NodeSocket.layerNet({ path: address }))
    )

/** What a measurement may change in a stack: its serialization (wrapped), and the server's handlers. */
export interface StackOptions {
  readonly serialization: (
    layer: Layer.Layer<RpcSerialization.RpcSerialization>
  ) => Layer.Layer<RpcSerialization.RpcSerialization>
  readonly handlers: typeof DemoHandlers
}

const asIs: StackOptions = { serialization: (layer) => layer, handlers: DemoHandlers }

/** Serves the DemoApi with `stack` at `address`, calling `ready` once listening; settles only if serving fails. */
export const serveStack = (
  stack: RpcStack,
  address: string,
  ready: () => void,
  options: StackOptions = asIs
): Promise<void> =>
  Effect.runPromise(
    Effect.gen(function*() {
      yield* Layer.build(
        RpcServer.layer(DemoApi).pipe(
          Layer.provide(options.handlers),
          Layer.provide(serverProtocol(stack, address)),
          Layer.provide(options.serialization(stackSerialization(stack)))
        )
      )
      ready()
      return yield* Effect.never
    }).pipe(Effect.scoped)
  )

const makeClient = RpcClient.make(DemoApi)

/** A DemoApi client. */
export type DemoClient = Effect.Success<typeof makeClient>

/** Connects a DemoApi client with `stack` to the peer at `address`; `close` disconnects it. */
export const connectStack = async (
  stack: RpcStack,
  address: string,
  options: StackOptions = asIs
): Promise<{ readonly client: DemoClient; readonly close: () => Promise<void> }> => {
  const scope = Scope.makeUnsafe()
  const layer = clientProtocol(stack, address).pipe(Layer.provide(options.serialization(stackSerialization(stack))))
  const client = await Effect.runPromise(
    Scope.provide(scope)(Effect.flatMap(Layer.build(layer), (context) => Effect.provideContext(makeClient, context)))
  ).catch(async (error: unknown) => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  })
  return { client, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}
