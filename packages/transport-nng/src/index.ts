/**
 * @effect-ipc/transport-nng: nng (nanomsg-next-gen) through koffi. The
 * effect-ipc transport over nng's pair protocol (`nng+ipc://`, `nng+tcp://`,
 * `nng+inproc://`, `nng+ws://`, `nng+abstract://`, over TLS `nng+tls+tcp://`
 * and `nng+wss://`), and typed APIs for nng's
 * messaging patterns: req/rep (with a growing, balancing client pool and
 * typed RPC), pub/sub, push/pull and pair, interoperable with any nng peer.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import type * as IpcError from "@effect-ipc/core/IpcError"
import type * as Registry from "@effect-ipc/core/Registry"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as SocketPath from "@effect-ipc/transport-pipe/SocketPath"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import * as Nng from "./internal/nng.ts"
import * as NngAddressModule from "./NngAddress.ts"
import * as NngTransport from "./NngTransport.ts"

/** Where a pattern socket listens and dials, and its options. */
export * as Endpoints from "./Endpoints.ts"
/** nng addresses (`nng+tcp://host:port`, ...). */
export * as NngAddress from "./NngAddress.ts"
/** nng's error codes and the `IpcError` reasons they map to. */
export * as NngError from "./NngError.ts"
/** TLS options of `nng+tls+tcp://` and `nng+wss://` endpoints. */
export * as NngTls from "./NngTls.ts"
/** Typed RPC (`effect/rpc`) over request/reply. */
export * as NngRpc from "./NngRpc.ts"
/** The effect-ipc transport (`IpcChannel`s) over nng. */
export * as NngTransport from "./NngTransport.ts"
/** openclaw-ipc's JSON messages, served and spoken over request/reply. */
export * as OpenClaw from "./OpenClaw.ts"
/** nng's pair pattern, unframed. */
export * as Pair from "./Pair.ts"
/** nng's pipeline pattern (push/pull). */
export * as Pipeline from "./Pipeline.ts"
/** nng's publish/subscribe pattern, with topic prefixes. */
export * as PubSub from "./PubSub.ts"
/** The replying side of request/reply. */
export * as Rep from "./Rep.ts"
/** The requesting side of request/reply: a growing, balancing pool. */
export * as Req from "./Req.ts"

/** The version of the libnng this process loaded; fails with `LibraryMissing` when there is none. */
export const libraryVersion: Effect.Effect<string, IpcError.IpcError> = Effect.map(
  Nng.library,
  (nng) => nng.version
)

/**
 * The options `IPC_OPTIONS` / `IPC_OPTIONS_<NAME>` may set for `IPC_TRANSPORT=nng`:
 * those of `NngTransport.NngTransportOptions` (`authorize` is code, not configuration).
 */
export const options: TransportOptions.Declaration = TransportOptions.declare<NngTransport.NngTransportOptions>()({
  maxMessageSize: TransportOptions.Bytes,
  sendBuffer: TransportOptions.Count,
  highWaterMark: TransportOptions.Bytes,
  writeTimeout: TransportOptions.Duration,
  recvBuffer: TransportOptions.Count,
  maxBufferedMessages: TransportOptions.Count,
  maxBufferedBytes: TransportOptions.Bytes,
  connectTimeout: TransportOptions.Duration,
  closeTimeout: TransportOptions.Duration,
  maxPendingHandshakes: TransportOptions.Count,
  handshakeTimeout: TransportOptions.Duration,
  mode: TransportOptions.Mode,
  tls: Schema.Struct({
    certFile: Schema.optionalKey(TransportOptions.Text),
    keyFile: Schema.optionalKey(TransportOptions.Text),
    caFile: Schema.optionalKey(TransportOptions.Text),
    authMode: Schema.optionalKey(TransportOptions.Choice(["none", "optional", "required"])),
    serverName: Schema.optionalKey(TransportOptions.Text)
  })
}, (chosen) => NngTransport.makeScoped(chosen))

/**
 * Whether `service` may name a default address: a `pipe://` name (1-200 of
 * A-Z a-z 0-9 . _ -, transport-pipe's `SocketPath.isPipeName`), and neither
 * `.` nor `..`; so the socket stays a file of the runtime directory itself
 * (`..` or a `/` would lead out of it or into a subdirectory).
 */
const isServiceName = (service: string): boolean =>
  SocketPath.isPipeName(service) && service !== "." && service !== ".."

/**
 * The socket path of a service's default address: `<service>.ipc` in this
 * user's private runtime directory, the one `pipe://` uses (transport-pipe's
 * `SocketPath.runtimeDirOn`: `$XDG_RUNTIME_DIR/effect-ipc` when that is this
 * user's directory closed to others' writes, else a 0700 `effect-ipc-<uid>` in
 * the temporary directory), which `listen` makes or checks. A name too long
 * for a socket path (107 bytes on Linux) is cut and told apart by a hash of
 * the whole name. Only for names `isServiceName` takes.
 */
const defaultPath = (service: string): string => {
  const dir = SocketPath.runtimeDirOn(SocketPath.currentHost())
  const plain = Path.posix.join(dir, `${service}.ipc`)
  if (Buffer.byteLength(plain) <= SocketPath.maxPathBytes) return plain
  const hash = Crypto.createHash("sha256").update(service).digest("hex").slice(0, 16)
  // "<dir>/<cut>-<hash>.ipc"
  const room = SocketPath.maxPathBytes - Buffer.byteLength(dir) - 1 - 1 - hash.length - 4
  let cut = service
  while (cut.length > 0 && Buffer.byteLength(cut) > room) cut = cut.slice(0, -1)
  return Path.posix.join(dir, `${cut}-${hash}.ipc`)
}

/**
 * The default address of a service, for a name `isServiceName` takes:
 * `nng+ipc://<runtime directory>/<service>.ipc`. For any other name (`""`,
 * `"../svc"`, `"a/b"`, `"."`, ...) a descriptor's `defaultAddress` cannot
 * fail (it returns a string), so it returns `nng+ipc:<service>`, which no one
 * can listen or dial at: the registry's `resolve` refuses it at once
 * (`InvalidAddress`) when it is empty or holds a `%` that is not an escape,
 * and `listen` and `dial` refuse it (`InvalidAddress`, naming the rule for
 * service names) before they touch the file system, as `pipe://` refuses a
 * bad name.
 */
const defaultAddress = (service: string): string =>
  isServiceName(service) ? `nng+ipc://${Address.encodePath(defaultPath(service))}` : `nng+ipc:${service}`

/**
 * The `nng` transport for `IPC_TRANSPORT=nng`, as `NngTransport.layer()` builds
 * it (`NngTransport.makeScoped`); a service's default address is an ipc socket
 * in this user's private runtime directory,
 * `nng+ipc://$XDG_RUNTIME_DIR/effect-ipc/<service>.ipc` (else
 * `nng+ipc:///tmp/effect-ipc-<uid>/<service>.ipc`), never in a directory other
 * users can write. A service name that `isServiceName` refuses (a `/`, `..`,
 * ...) gives an address that `listen` and `dial` refuse (`InvalidAddress`,
 * see `defaultAddress`). Building it loads libnng (failing with
 * `LibraryMissing` when it is absent).
 */
export const descriptor: Registry.TransportDescriptor = {
  name: "nng",
  schemes: NngAddressModule.schemes,
  make: NngTransport.makeScoped(),
  options,
  defaultAddress,
  // nng frames and checks its own connections (the SP protocol): raw bytes never reach the transport
  lacks: Object.fromEntries(NngAddressModule.schemes.map((scheme) => [scheme, {
    "raw-stream": "nng's SP protocol frames its connections",
    ...(scheme === "nng+inproc" ? { "peer-process": "nng+inproc:// lives inside one process" } : {})
  }]))
}
