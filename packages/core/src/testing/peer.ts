/**
 * The child-process peer of the conformance suite. Usage:
 *
 *   node peer.ts MODULE EXPORT ROLE ADDRESS
 *
 * `MODULE`'s export `EXPORT` is a `TransportDescriptor`; ROLE is one of
 * `echo-server` (echo every message), `rpc-server` (serve `ConformanceApi`),
 * `streamer` (dial and send numbered messages until killed). Servers print
 * `ready` on stdout once they listen; the streamer prints it once connected.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as RpcServer from "effect/rpc/RpcServer"
import * as IpcRpc from "../IpcRpc.ts"
import type * as Registry from "../Registry.ts"
import * as Transport from "../Transport.ts"
import { ConformanceApi, ConformanceHandlers } from "./ConformanceApi.ts"

const [moduleName, exportName, role, address] = process.argv.slice(2)

// a child-process peer may be talking over its stdout: it says nothing else there
const ready = address === "child:parent" ? Effect.void : Effect.sync(() => process.stdout.write("ready\n"))

const loadDescriptor = Effect.tryPromise({
  try: () => import(moduleName!) as Promise<Record<string, Registry.TransportDescriptor>>,
  catch: (cause) => new Error(`cannot load ${moduleName}: ${String(cause)}`)
}).pipe(Effect.map((mod) => mod[exportName!]!))

const program = Effect.gen(function*() {
  const descriptor = yield* loadDescriptor
  const transport = yield* descriptor.make
  const TransportLive = Layer.succeed(Transport.Transport, transport)
  switch (role) {
    case "echo-server": {
      const listener = yield* transport.listen(address!)
      yield* ready
      return yield* Transport.serve(
        listener,
        (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send))
      )
    }
    case "rpc-server": {
      return yield* Layer.launch(
        RpcServer.layer(ConformanceApi).pipe(
          Layer.provide(ConformanceHandlers),
          Layer.provide(IpcRpc.layerServerProtocol(address!)),
          Layer.provide(IpcRpc.layerSerialization),
          Layer.provide(TransportLive),
          Layer.tap(() => ready)
        )
      )
    }
    case "streamer": {
      // a child-process peer streams to its parent; any other dials the test's listener
      const channel = address === "child:parent"
        ? yield* Effect.flatMap(transport.listen(address), (listener) => listener.accept)
        : yield* transport.dial(address!)
      yield* ready
      const message = new Uint8Array(1024)
      let i = 0
      return yield* Effect.forever(Effect.suspend(() => {
        new DataView(message.buffer).setUint32(0, i++)
        return channel.send(message)
      }))
    }
    default:
      return yield* Effect.die(new Error(`unknown role ${role}`))
  }
})

NodeRuntime.runMain(Effect.scoped(program).pipe(Effect.provideService(Logger.LogToStderr, true)))
