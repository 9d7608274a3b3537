/**
 * @effect-ipc/transport-pipe: local processes over the kernel's sockets and pipes.
 *
 * @since 0.1.0
 */
import * as Registry from "@effect-ipc/core/Registry"
import * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Effect from "effect/Effect"
import * as ChildPipe from "./ChildPipe.ts"
import * as Fifo from "./Fifo.ts"
import * as UnixSocket from "./UnixSocket.ts"

/** Channels to child processes over anonymous pipes (`child:`). */
export * as ChildPipe from "./ChildPipe.ts"
/** FIFO pairs (`fifo:///dir/name`). */
export * as Fifo from "./Fifo.ts"
/** Windows named pipes (`pipe://name` on Windows), restricted to this user. */
export * as NamedPipe from "./NamedPipe.ts"
/** Where `unix:` and `pipe:` addresses live. */
export * as SocketPath from "./SocketPath.ts"
/** Unix domain sockets (`unix:///path`, `unix:@name`, `pipe://name`). */
export * as UnixSocket from "./UnixSocket.ts"

/**
 * The options of every transport of this package at once: those of a stream
 * channel (each scheme), `mode` (`unix:`, `pipe:`, `fifo:`), `pipeSize` and
 * `helloTimeout` (`fifo:`), and `maxMessageSize`, the name every effect-ipc
 * transport gives its message limit (here the same as `maxFrameSize`).
 */
export interface PipeOptions extends UnixSocket.UnixSocketOptions, Fifo.FifoOptions {
  /** Largest message sent or accepted: `maxFrameSize` under the name the other transports use. */
  readonly maxMessageSize?: number | undefined
}

/** Every transport of this package, routed by scheme: `unix:`, `pipe:`, `fifo:`, `child:`. */
export const make = (options: PipeOptions = {}): Transport.TransportShape => {
  // options that are not an object go to each transport as given: each one's listen and dial refuse them
  if (TransportOptions.notAnObject(options) !== undefined) {
    return Transport.route([UnixSocket.make(options), Fifo.make(options), ChildPipe.make(options)])
  }
  const { maxMessageSize, ...rest } = options
  const all = { ...rest, maxFrameSize: rest.maxFrameSize ?? maxMessageSize }
  return Transport.route([UnixSocket.make(all), Fifo.make(all), ChildPipe.make(all)])
}

/**
 * The options `IPC_OPTIONS` / `IPC_OPTIONS_<NAME>` may set for `IPC_TRANSPORT=pipe`
 * (see `PipeOptions`; `authorize` is code, not configuration).
 */
export const options: TransportOptions.Declaration = TransportOptions.declare<PipeOptions>()({
  ...TransportOptions.streamChannelFields,
  maxMessageSize: TransportOptions.Bytes,
  mode: TransportOptions.Mode,
  pipeSize: TransportOptions.Bytes,
  helloTimeout: TransportOptions.Duration
}, (chosen) => Effect.sync(() => make(chosen)))

/**
 * The `pipe` transport for `IPC_TRANSPORT=pipe` (Unix sockets, named pipes, FIFOs,
 * child-process pipes); a service's default address is `pipe://effect-ipc-<service>`.
 */
export const descriptor: Registry.TransportDescriptor = {
  name: "pipe",
  schemes: ["unix", "pipe", "fifo", "child"],
  make: Effect.sync(() => make()),
  options,
  defaultAddress: (service) => `pipe://effect-ipc-${service}`,
  lacks: {
    fifo: { "multi-peer": "a FIFO pair serves one peer at a time" },
    child: {
      "in-process": "a child-process pipe joins a parent and the child it starts",
      "shared-address": "each dial starts its own child: there is no address a second listener could take"
    }
  }
}
