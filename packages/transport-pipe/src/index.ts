/**
 * @effect-ipc/transport-pipe: local processes over the kernel's sockets and pipes.
 *
 * @since 0.1.0
 */
import * as Registry from "@effect-ipc/core/Registry"
import * as Effect from "effect/Effect"
import * as UnixSocket from "./UnixSocket.ts"

/** Where `unix:` and `pipe:` addresses live. */
export * as SocketPath from "./SocketPath.ts"
/** Unix domain sockets (`unix:///path`, `unix:@name`, `pipe://name`). */
export * as UnixSocket from "./UnixSocket.ts"

/** The `pipe` transport for `IPC_TRANSPORT=pipe`; a service's default address is `pipe://effect-ipc-<service>`. */
export const descriptor: Registry.TransportDescriptor = {
  name: "pipe",
  schemes: ["unix", "pipe"],
  make: Effect.sync(() => UnixSocket.make()),
  defaultAddress: (service) => `pipe://effect-ipc-${service}`
}
