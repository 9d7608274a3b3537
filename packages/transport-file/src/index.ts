/**
 * @effect-ipc/transport-file: lossless, crash-safe channels over a shared
 * directory, and ipckit's FileChannel format for talking to ipckit peers.
 *
 * @since 0.1.0
 */
import type * as Registry from "@effect-ipc/core/Registry"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Path from "node:path"
import * as FileTransport from "./FileTransport.ts"

/** The seed's two fixed roles over append-only logs: `backend(dir)`, `frontend(dir)`. */
export * as FileChannel from "./FileChannel.ts"
/** The `file://` transport: `listen` / `dial` on a directory, and `?role=` addresses. */
export * as FileTransport from "./FileTransport.ts"
/** Reading a channel or listener directory's state, and following its messages (the CLI's `inspect` and `tail`). */
export * as Inspect from "./Inspect.ts"
/** ipckit's `FileChannel` files and lock protocol, for talking to ipckit peers. */
export * as Ipckit from "./Ipckit.ts"
/** The append-only, crash-safe log behind every channel. */
export * as Log from "./Log.ts"
/** The on-disk format of a log, for other languages. */
export * as LogFormat from "./LogFormat.ts"
/** The seed's request / response / event messages, over a file channel or ipckit's files. */
export * as Messages from "./Messages.ts"

/** Makes the file transport (`file://`). */
export const make = FileTransport.make

/**
 * The options `IPC_OPTIONS` / `IPC_OPTIONS_<NAME>` may set for `IPC_TRANSPORT=file`:
 * those of `FileTransport.FileTransportOptions` (each channel's and its logs').
 */
export const options: TransportOptions.Declaration = TransportOptions.declare<FileTransport.FileTransportOptions>()({
  maxMessageSize: TransportOptions.Bytes,
  maxBufferedMessages: TransportOptions.Count,
  maxBufferedBytes: TransportOptions.Bytes,
  livenessInterval: TransportOptions.Duration,
  onCorrupt: TransportOptions.Choice(["fail", "skip"]),
  peerLoss: TransportOptions.Choice(["fail", "wait"]),
  maxBytes: TransportOptions.Bytes,
  segmentBytes: TransportOptions.Bytes,
  whenFull: TransportOptions.Choice(["wait", "fail"]),
  fullTimeout: TransportOptions.Duration,
  lockTimeout: TransportOptions.Duration,
  durability: TransportOptions.Choice(["os", "fsync"]),
  fileMode: TransportOptions.Mode,
  dirMode: TransportOptions.Mode,
  watch: TransportOptions.Choice(["auto", "poll"]),
  pollInterval: TransportOptions.Duration
}, (chosen) => FileTransport.build(chosen))

/**
 * The `file` transport for `IPC_TRANSPORT=file`; a service's default address
 * is `file://<tmp>/effect-ipc-<uid>/<service>` (a directory).
 */
export const descriptor: Registry.TransportDescriptor = {
  name: "file",
  schemes: ["file"],
  make: FileTransport.build(),
  options,
  defaultAddress: (service) =>
    `file://${
      Path.join(RuntimeDir.directoryOn({ ...RuntimeDir.currentHost(), env: {} }, { sockets: false }), service)
    }`,
  lacks: { file: { "raw-stream": "a log of checksummed records, not a byte stream" } }
}
