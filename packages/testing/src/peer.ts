/**
 * The child-process peer of the conformance suite. Usage:
 *
 *   node peer.js MODULE EXPORT ROLE ADDRESS [TAG]
 *
 * `MODULE` (a package name, an absolute path or a `file:` URL)'s export
 * `EXPORT` is a `TransportDescriptor`; ROLE is one of
 * `echo-server` (echo every message), `rpc-server` (serve `ConformanceApi`),
 * `streamer` (dial and send numbered messages until killed), `sink` (send 0
 * once armed, read nothing until SIGUSR1, then acknowledge every message with
 * the count so far),
 * `closer` (send ten numbered messages, then close the channel gracefully).
 * Servers print `ready` on stdout once they listen; the streamer
 * prints it once connected. TAG is ignored: it lets a test find its process.
 *
 * @since 0.1.0
 */
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import type * as Registry from "@effect-ipc/core/Registry"
import * as Transport from "@effect-ipc/core/Transport"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { ConformanceApi, ConformanceHandlers } from "./ConformanceApi.ts"

const [moduleName, exportName, role, address] = process.argv.slice(2)
const parent = address === "child:parent"

// a child-process peer may be talking over its stdout: it says nothing else there
const ready = parent ? Effect.void : Effect.sync(() => process.stdout.write("ready\n"))

const loadDescriptor = Effect.tryPromise({
  // an absolute path is imported as a file URL; a package name resolves from this script's node_modules
  try: () =>
    import(Path.isAbsolute(moduleName!) ? pathToFileURL(moduleName!).href : moduleName!) as Promise<
      Record<string, Registry.TransportDescriptor>
    >,
  catch: (cause) => new Error(`cannot load ${moduleName}: ${String(cause)}`)
}).pipe(Effect.map((mod) => mod[exportName!]!))

// the sink's go signal is armed before anything else: SIGUSR1 otherwise starts Node's inspector
const go = Deferred.makeUnsafe<void>()
if (role === "sink") process.once("SIGUSR1", () => Deferred.doneUnsafe(go, Effect.void))

/**
 * How many messages the "leaver" sends before it closes and exits: a few more
 * than a reader's inbox holds (4096 by default), so that the rest and the close
 * wait in the medium, and few enough that any medium holds them (nng's queues
 * count messages, and hold only a few dozen); kept in step with the conformance case.
 */
const LEAVER_COUNT = 4100

const echo = (c: IpcChannel.IpcChannel) => Effect.forever(Effect.flatMap(c.receive, c.send))

const numbered = (i: number): Uint8Array => {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setUint32(0, i)
  return out
}

const program = Effect.gen(function*() {
  const descriptor = yield* loadDescriptor
  const transport = yield* descriptor.make
  const TransportLive = Layer.succeed(Transport.Transport, transport)
  // the one channel of a child-process peer, or the first one accepted / dialled
  const connect = (dial: boolean) =>
    parent || !dial
      ? Effect.flatMap(transport.listen(address!), (listener) => Effect.tap(listener.accept, () => ready))
      : Effect.tap(transport.dial(address!), () => ready)
  switch (role) {
    case "echo-server": {
      // a child-process peer has one channel: it exits when that ends
      if (parent) return yield* Effect.ignore(Effect.flatMap(connect(false), echo))
      const listener = yield* transport.listen(address!)
      yield* ready
      return yield* Transport.serve(listener, echo)
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
      const c = yield* connect(true)
      const message = new Uint8Array(1024)
      let i = 0
      return yield* Effect.forever(Effect.suspend(() => {
        new DataView(message.buffer).setUint32(0, i++)
        return c.send(message)
      }))
    }
    case "sink": {
      const c = yield* connect(true)
      // armed: tell the other end, then read nothing until the signal
      yield* c.send(numbered(0))
      yield* Deferred.await(go)
      let count = 0
      return yield* Effect.ignore(Effect.forever(Effect.flatMap(c.receive, () => c.send(numbered(++count)))))
    }
    case "closer": {
      const c = yield* connect(true)
      for (let i = 0; i < 10; i++) yield* c.send(numbered(i))
      return yield* c.close
    }
    case "leaver": {
      const c = yield* connect(true)
      for (let i = 0; i < LEAVER_COUNT; i++) yield* c.send(numbered(i))
      // then the program ends, as a user's would: the scope closes and the process exits
      return yield* c.close
    }
    default:
      return yield* Effect.die(new Error(`unknown role ${role}`))
  }
})

NodeRuntime.runMain(Effect.scoped(program).pipe(Effect.provideService(Logger.LogToStderr, true)))
