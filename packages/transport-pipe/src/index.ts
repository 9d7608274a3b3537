/**
 * @effect-ipc/transport-pipe: local processes over the kernel's sockets and pipes.
 *
 * @since 0.1.0
 */
import * as Registry from "@effect-ipc/core/Registry"
import * as Effect from "effect/Effect"
import * as Os from "node:os"
import * as Path from "node:path"
import * as UnixSocket from "./UnixSocket.ts"

/** Unix domain sockets (`unix:///path`, `unix:@name`). */
export * as UnixSocket from "./UnixSocket.ts"

/** The directory for this user's sockets: `$XDG_RUNTIME_DIR`, else the temp directory. */
export const runtimeDir = (): string => process.env["XDG_RUNTIME_DIR"] ?? Os.tmpdir()

/** The `pipe` transport for `IPC_TRANSPORT=pipe`: Unix sockets, with a per-service default path. */
export const descriptor: Registry.TransportDescriptor = {
  name: "pipe",
  schemes: ["unix"],
  make: Effect.sync(() => UnixSocket.make()),
  defaultAddress: (service) => `unix://${Path.join(runtimeDir(), `effect-ipc-${service}.sock`)}`
}
