/**
 * Where a messaging-pattern socket (`Req`, `Rep`, `PubSub`, `Pipeline`,
 * `Pair`) listens and dials, and the nng options it runs with. A socket may
 * listen and dial any number of addresses at once, as nng sockets do; each
 * address is an nng URL (`tcp://127.0.0.1:5555`, `ipc:///tmp/x.ipc`,
 * `inproc://name`, `ws://host:port/path`, `abstract://name`, and over TLS
 * `tls+tcp://host:port` and `wss://host:port/path`, configured by `tls`) or the same
 * with effect-ipc's `nng+` prefix.
 *
 * Dialers connect in the background and reconnect whenever the link drops,
 * with nng's own exponential backoff: `reconnect.min` doubling up to
 * `reconnect.max`, by default the numbers of core's `Policy.reconnect`
 * (20 ms doubling, at most 1 s).
 *
 * An `ipc://` path is listened on only when it is absent or a stale socket of
 * this user (removed), as for the transport's `nng+ipc://`: anything else
 * there (a regular file, a directory, a FIFO, a live socket) is
 * `AddressInUse` and left untouched.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as NngTls from "./NngTls.ts"

/** Where a pattern socket listens and dials, and its options. */
export interface EndpointsOptions {
  /** Addresses to listen at (`tcp://0.0.0.0:5555`, ...). */
  readonly listen?: string | ReadonlyArray<string> | undefined
  /** Addresses to dial; nng connects in the background and reconnects after a loss. */
  readonly dial?: string | ReadonlyArray<string> | undefined
  /** Largest message accepted from a peer, in bytes (default 256 MiB). */
  readonly maxMessageSize?: number | undefined
  /** Backoff of the dialers' reconnects: from `min`, doubling, at most `max` (default 20 ms and 1 s, or `min` if longer; `min` over `max` is `InvalidOption`). */
  readonly reconnect?: {
    readonly min?: Duration.Input | undefined
    readonly max?: Duration.Input | undefined
  } | undefined
  /** Messages nng queues for sending before a send waits (nng's `send-buffer`). */
  readonly sendBuffer?: number | undefined
  /** Messages nng queues on receipt before it stops reading (nng's `recv-buffer`). */
  readonly recvBuffer?: number | undefined
  /** Permission bits of ipc socket files this socket listens on (default 0o600). */
  readonly mode?: number | undefined
  /**
   * Connections its listeners keep at once (default: no limit); past it, the newest are closed (within a
   * sweep, 200 ms), with what they sent and nng had not handed on.
   */
  readonly maxConnections?: number | undefined
  /** Incoming messages buffered before reading pauses (default 4096). */
  readonly maxBufferedMessages?: number | undefined
  /** Incoming bytes buffered before reading pauses (default 8 MiB). */
  readonly maxBufferedBytes?: number | undefined
  /**
   * How long closing waits first, so that the last messages sent leave nng's
   * queues (nng's sockets drop what is still queued when they close; default
   * 0, `nngcat` waits 200 ms).
   */
  readonly linger?: Duration.Input | undefined
  /** Certificates and verification of the `tls+tcp` and `wss` addresses (see `NngTls`). */
  readonly tls?: NngTls.TlsOptions | undefined
}

/** The addresses a socket ended up at: those it listens on (with the ports bound) and those it dials. */
export interface Bound {
  readonly listening: ReadonlyArray<string>
  readonly dialing: ReadonlyArray<string>
}
