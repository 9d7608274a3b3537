/**
 * @effect-ipc/transport-pipe: local processes over the kernel's sockets and pipes.
 *
 * @since 0.1.0
 */
import * as Registry from "@effect-ipc/core/Registry"
import * as Transport from "@effect-ipc/core/Transport"
import * as Effect from "effect/Effect"
import * as ChildPipe from "./ChildPipe.ts"
import * as Fifo from "./Fifo.ts"
import * as UnixSocket from "./UnixSocket.ts"

/** Channels to child processes over anonymous pipes (`child:`). */
export * as ChildPipe from "./ChildPipe.ts"
/** FIFO pairs (`fifo:///dir/name`). */
export * as Fifo from "./Fifo.ts"
/** Where `unix:` and `pipe:` addresses live. */
export * as SocketPath from "./SocketPath.ts"
/** Unix domain sockets (`unix:///path`, `unix:@name`, `pipe://name`). */
export * as UnixSocket from "./UnixSocket.ts"

/** Every transport of this package, routed by scheme: `unix:`, `pipe:`, `fifo:`, `child:`. */
export const make = (): Transport.TransportShape => Transport.route([UnixSocket.make(), Fifo.make(), ChildPipe.make()])

/**
 * The `pipe` transport for `IPC_TRANSPORT=pipe` (Unix sockets, named pipes, FIFOs,
 * child-process pipes); a service's default address is `pipe://effect-ipc-<service>`.
 */
export const descriptor: Registry.TransportDescriptor = {
  name: "pipe",
  schemes: ["unix", "pipe", "fifo", "child"],
  make: Effect.sync(make),
  defaultAddress: (service) => `pipe://effect-ipc-${service}`,
  lacks: {
    fifo: { "multi-peer": "a FIFO pair serves one peer at a time" },
    child: {
      "in-process": "a child-process pipe joins a parent and the child it starts",
      "shared-address": "each dial starts its own child: there is no address a second listener could take"
    }
  }
}
