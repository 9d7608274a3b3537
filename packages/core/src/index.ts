/**
 * @effect-ipc/core: typed, scoped inter-process channels and RPC for Effect.
 *
 * @since 0.1.0
 */

/** Addresses by scheme (`unix://`, `pipe://`, `memory://`, ...). */
export * as Address from "./Address.ts"
/** Bounded, back-pressuring receive buffers for transport authors. */
export * as Inbox from "./Inbox.ts"
/** The message channel between two processes, and its typed view. */
export * as IpcChannel from "./IpcChannel.ts"
/** The error of every effect-ipc operation. */
export * as IpcError from "./IpcError.ts"
/** The in-process `memory://` transport. */
export * as Memory from "./Memory.ts"
/** The service that listens and dials. */
export * as Transport from "./Transport.ts"
/** Frame format of the byte-stream transports. */
export * as Framing from "./Framing.ts"
/** Typed RPC (`effect/rpc`) over any transport. */
export * as IpcRpc from "./IpcRpc.ts"
/** Metrics and spans of every transport. */
export * as Observability from "./Observability.ts"
/** Retry, reconnect and heartbeat policies. */
export * as Policy from "./Policy.ts"
/** The channel engine every transport runs on: a transport supplies a link. */
export * as ChannelEngine from "./ChannelEngine.ts"
/** Channels over Node byte streams, for transport authors. */
export * as StreamChannel from "./StreamChannel.ts"
/** Transport choice by configuration (`IPC_TRANSPORT` / `IPC_ADDRESS`). */
export * as Registry from "./Registry.ts"
/** Transport options from configuration (`IPC_OPTIONS`, `IPC_OPTIONS_<NAME>`), declared per transport. */
export * as TransportOptions from "./TransportOptions.ts"
/** Lazy loading of koffi and native libraries for transport authors; errno names. */
export * as Native from "./Native.ts"
/** Process identities that survive pid reuse (start time, pid namespace). */
export * as Process from "./Process.ts"
/** Whether `$XDG_RUNTIME_DIR` may hold this user's private runtime files. */
export * as RuntimeDir from "./RuntimeDir.ts"
