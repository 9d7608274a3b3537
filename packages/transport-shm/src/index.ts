/**
 * @effect-ipc/transport-shm: shared-memory channels (`shm://name`), named
 * segments and ref-counted resource links, through koffi.
 *
 * @since 0.1.0
 */
import type * as Registry from "@effect-ipc/core/Registry"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as ShmTransport from "./ShmTransport.ts"

/** Reference-counted segments for large payloads handed between processes by name. */
export * as ResourceLink from "./ResourceLink.ts"
/** Named POSIX shared-memory segments as scoped resources. */
export * as Segment from "./Segment.ts"
/** Listing segments and removing orphans, once or on a schedule. */
export * as SegmentGc from "./SegmentGc.ts"
/** The `shm://` channel, with in-place reads of large messages. */
export * as ShmChannel from "./ShmChannel.ts"
/** The `shm://name` transport: listen and dial. */
export * as ShmTransport from "./ShmTransport.ts"

/**
 * The options `IPC_OPTIONS` / `IPC_OPTIONS_<NAME>` may set for `IPC_TRANSPORT=shm`:
 * those of `ShmTransport.ShmTransportOptions`, with `collector` a flag (`false`:
 * no orphan collector); `authorize` is code, not configuration.
 */
export const options: TransportOptions.Declaration = TransportOptions.declare<ShmTransport.ShmConfigOptions>()({
  ringSize: TransportOptions.Bytes,
  spin: TransportOptions.Duration,
  poll: TransportOptions.Duration,
  maxMessageSize: TransportOptions.Bytes,
  inPlaceThreshold: TransportOptions.Bytes,
  maxBufferedMessages: TransportOptions.Count,
  maxBufferedBytes: TransportOptions.Bytes,
  lingerTimeout: TransportOptions.Duration,
  writeTimeout: TransportOptions.Duration,
  handshakeTimeout: TransportOptions.Duration,
  maxPendingHandshakes: TransportOptions.Count,
  directory: TransportOptions.Text,
  collector: TransportOptions.Flag
}, ({ collector, ...rest }) => ShmTransport.makeScoped(collector === false ? { ...rest, collector: false } : rest))

/**
 * The `shm` transport for `IPC_TRANSPORT=shm`, as `ShmTransport.layer()` builds
 * it (`ShmTransport.makeScoped`): `shm://name` channels, and an orphan
 * collector (`SegmentGc.run`, every 60 s from 60 s after start) for as long as
 * the transport lives; a service's default address is `shm://effect-ipc-<service>`.
 */
export const descriptor: Registry.TransportDescriptor = {
  name: "shm",
  schemes: ["shm"],
  make: ShmTransport.makeScoped(),
  options,
  defaultAddress: (service) => `shm://effect-ipc-${service}`,
  lacks: { shm: { "raw-stream": "messages in a shared ring, not a byte stream" } }
}
