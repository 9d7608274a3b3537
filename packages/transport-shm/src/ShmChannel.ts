/**
 * The `shm://` channel: an `IpcChannel` over two shared-memory rings, one per
 * direction, with a Unix socket beside them for the doorbell and for knowing
 * that the peer is alive (see `ShmTransport` for how the two ends meet).
 *
 * - `send` copies the message into the outbound ring and publishes it with
 *   one atomic store; when the ring is full it waits (back-pressure), in
 *   order with other waiting sends. A message larger than half the ring goes
 *   into a segment of its own and only its name travels through the ring;
 *   the segments the reader has not opened yet hold at most the ring's
 *   capacity (or one message), beyond that the sender waits as for a full
 *   ring. A send interrupted while it waits leaves its message queued: it
 *   goes in its turn, read then from the caller's buffer if 64 KiB or more.
 * - The inbound ring is read on demand: when a receiver finds nothing
 *   buffered it reads the ring; finding it empty it spins for `spin` (if
 *   set), then sets its "reader waiting" flag and sleeps until the writer
 *   rings the doorbell (one byte on the socket). A writer rings only when
 *   that flag was set, so a busy channel makes no syscalls at all.
 * - The peer's death closes the socket: the reader gets `ConnectionLost` at
 *   once (after the complete messages already in the ring).
 * - `receiveView` reads large messages in place: the bytes view shared
 *   memory until the receiving scope closes (see `receiveView`).
 *
 * @since 0.1.0
 */
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import type * as IpcError from "@effect-ipc/core/IpcError"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import type * as Scope from "effect/Scope"

/** Runtime marker of a `ShmChannel`. */
export const TypeId = "~@effect-ipc/transport-shm/ShmChannel"

/** Tuning of a shared-memory channel. */
export interface ShmChannelOptions {
  /** Bytes of each direction's ring (rounded up to a power of two, at most 1 GiB: a larger one is `InvalidOption`; default 4 MiB). */
  readonly ringSize?: number | undefined
  /**
   * How long a receiver (or a sender facing a full ring) busy-waits before it
   * sleeps on the doorbell (default 0: sleep at once). Spinning holds the
   * event loop for up to this long per wait and buys latency: about 2 us
   * round trips instead of a socket wake-up each way.
   */
  readonly spin?: Duration.Input | undefined
  /**
   * How long a receiver with nothing to read keeps looking at the ring, once
   * per turn of the event loop (which runs on meanwhile), before it sleeps
   * on the doorbell (default 200 us; 0: sleep at once). A message that comes
   * within this window is read without a system call on either side; the
   * CPU is busy for at most this long after the last receive.
   */
  readonly poll?: Duration.Input | undefined
  /** Largest message `send` accepts (default 256 MiB). */
  readonly maxMessageSize?: number | undefined
  /**
   * Messages of at least this many bytes (default 64 KiB) stay in shared
   * memory until they are taken: `receive` copies them then, `receiveView`
   * hands them out in place. Smaller ones are copied out of the ring at once.
   */
  readonly inPlaceThreshold?: number | undefined
  /** Incoming messages buffered before the ring is left to fill (default 4096). */
  readonly maxBufferedMessages?: number | undefined
  /** Incoming bytes buffered before the ring is left to fill (default 8 MiB). */
  readonly maxBufferedBytes?: number | undefined
  /** How long `close` waits for the peer to pick up large messages in flight, then to answer its goodbye (default 2 s). */
  readonly lingerTimeout?: Duration.Input | undefined
  /**
   * How long a `send` may wait for the peer to read (room in the ring, or its
   * large messages opened) before the channel fails with `Timeout` (default: no limit).
   */
  readonly writeTimeout?: Duration.Input | undefined
}

/** How a channel has waited so far (counters since it was made). */
export interface ShmChannelStats {
  /** Waits for input that spinning ended: the message came while the reader spun. */
  readonly spinHits: number
  /** Waits for input that polling ended: the message came while the reader polled the ring. */
  readonly pollHits: number
  /** Waits for input that neither spinning nor polling ended: the reader armed its doorbell. */
  readonly sleeps: number
  /** Doorbells this side rang to wake the peer. */
  readonly doorbells: number
}

/** An `IpcChannel` over shared memory, which can also hand out large messages in place. */
export interface ShmChannel extends IpcChannel.IpcChannel {
  readonly [TypeId]: typeof TypeId
  /** How this end has waited so far: did spinning pay off, how many doorbells. */
  readonly stats: Effect.Effect<ShmChannelStats>
  /**
   * Receives the next message without copying it when it is large (at least
   * `inPlaceThreshold` bytes): the bytes view shared memory and stay valid
   * until the current scope closes (or the channel closes, if sooner). The
   * scope's finalizer then gives the memory back to the sender and detaches
   * the view, which from then on reads as empty. Smaller messages are plain
   * copies. Hand code that detaches buffers by itself (a bytes
   * `ReadableStream`'s `enqueue`) a copy (`slice()`), never the view.
   */
  readonly receiveView: Effect.Effect<Uint8Array, IpcError.IpcError, Scope.Scope>
}

/** True for a `ShmChannel`. */
export const isShmChannel = (u: unknown): u is ShmChannel => Predicate.hasProperty(u, TypeId)

/**
 * `channel.receiveView` for a `ShmChannel`, `channel.receive` for any other
 * channel: code that reads large messages in place where it can, and
 * copies elsewhere.
 */
export const receiveView = (
  channel: IpcChannel.IpcChannel
): Effect.Effect<Uint8Array, IpcError.IpcError, Scope.Scope> =>
  isShmChannel(channel) ? channel.receiveView : channel.receive

/** Default ring size per direction. */
export const DEFAULT_RING_SIZE = 4 * 1024 * 1024
/** Default `poll`. */
export const DEFAULT_POLL: Duration.Input = "200 micros"
/** Default `maxMessageSize`. */
export const DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024
/** Default `inPlaceThreshold`. */
export const DEFAULT_IN_PLACE_THRESHOLD = 64 * 1024
