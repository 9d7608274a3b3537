/**
 * Reference-counted shared-memory segments for large payloads (meshes,
 * textures, frames) handed between processes by name: the producer
 * `create`s a link and writes its payload, consumers `acquire` it by name
 * and read the payload in place.
 *
 * The count lives in the segment's header (see `README.md` for the layout),
 * with one holder slot per process (pid, start time, count), so a process
 * that dies holding a reference can be recognised as dead. Holding is a
 * scoped resource: the reference is dropped by the scope's finalizer, on
 * success, failure and interruption alike, and the payload view is detached
 * then (it reads as empty afterwards; it can never reach unmapped memory).
 *
 * When the last reference is dropped, a link without a TTL is removed at once;
 * a link with a TTL stays for late consumers until its TTL has passed, and
 * `SegmentGc` removes it then. `SegmentGc` also removes the links whose
 * holders all died (a `kill -9`ed producer's frames).
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Header from "./internal/header.ts"
import * as Processes from "./internal/processes.ts"
import * as Reclaim from "./internal/reclaim.ts"
import * as Segments from "./internal/segments.ts"
import * as Segment from "./Segment.ts"

/** Options of `create`. */
export interface CreateOptions {
  /**
   * How long the link may outlive its last holder, waiting for a consumer
   * (default: none, removed with its last reference). Counted from creation.
   */
  readonly ttl?: Duration.Input | undefined
  /** Permission bits (default 0o600: this user only); group and others may read at most (see `Segment.invalidMode`). */
  readonly mode?: number | undefined
}

/** A process recorded in a header, and whether it still runs. */
export interface ProcessInfo {
  readonly pid: number
  readonly alive: boolean
}

/** A snapshot of a link's header (it may be stale as soon as it is read). */
export interface LinkInfo {
  readonly name: string
  /** Payload bytes. */
  readonly payloadLength: number
  /** References held, by every process. */
  readonly refcount: number
  /** The processes holding references, with how many each. */
  readonly holders: ReadonlyArray<ProcessInfo & { readonly count: number }>
  /** The process that created it. */
  readonly creator: ProcessInfo
  /** When it was created (ms since the epoch). */
  readonly createdAt: number
  /** Its TTL, if it has one. */
  readonly ttl: Duration.Duration | undefined
}

/** A held reference to a link. */
export interface ResourceLink {
  /** The link's name. */
  readonly name: string
  /**
   * The payload, in shared memory (no copy): what one holder writes, every
   * holder sees. Valid while the scope that created or acquired this
   * reference is open; detached (empty) after.
   */
  readonly payload: Uint8Array
  /** The header as it is now. */
  readonly info: Effect.Effect<LinkInfo>
}

const alive = (p: Processes.ProcessId): boolean => Processes.liveness(p) !== "dead"

/** Reads a link's header as `LinkInfo`. */
export const infoOf = (name: string, snapshot: Header.Snapshot): LinkInfo => ({
  name,
  payloadLength: snapshot.payloadLength,
  refcount: snapshot.refcount,
  holders: snapshot.holders.map((h) => ({ pid: h.pid, count: h.count, alive: alive(h) })),
  creator: { pid: snapshot.creator.pid, alive: alive(snapshot.creator) },
  createdAt: snapshot.createdAt,
  ttl: snapshot.ttlMillis > 0 ? Duration.millis(snapshot.ttlMillis) : undefined
})

/** A mapped link this process holds a reference to. */
interface Held {
  readonly mapped: Segments.Mapped
  readonly header: Header.HeaderView
}

/** Drops this process's reference; removes the link when it was the last and there is no TTL (or a damaged one). */
const release = ({ header, mapped }: Held): Effect.Effect<void> =>
  Header.withLock(header, mapped.name, () => {
    const left = Header.removeHolder(header)
    if (left === 0 && Header.state(header) === Header.State.ready && !(Header.snapshot(header).ttlMillis > 0)) {
      Reclaim.removeLocked(header, mapped.name, mapped.ino)
    }
  }).pipe(
    Effect.catch((error) => Effect.logWarning("could not drop a resource-link reference", error)),
    Effect.ensuring(Effect.sync(() => mapped.mapping.release()))
  )

const toLink = ({ header, mapped }: Held, payloadLength: number): ResourceLink => ({
  name: mapped.name,
  payload: new Uint8Array(mapped.mapping.buffer, Header.HEADER_SIZE, payloadLength),
  info: Effect.sync(() => infoOf(mapped.name, Header.snapshot(header)))
})

// the largest payload length `create` takes: the header and payload are one segment of a safe-integer size
const maxPayloadLength: number = Number.MAX_SAFE_INTEGER - Header.HEADER_SIZE

/**
 * Creates the link `name` with a zero-filled payload of `payloadLength`
 * bytes and holds its first reference. Fails with `AlreadyExists` when the
 * name is taken, and with `InvalidOption` for a length that is not a whole
 * number of bytes (at least 0, its segment's size a safe integer).
 */
export const create = (
  name: string,
  payloadLength: number,
  options: CreateOptions = {}
): Effect.Effect<ResourceLink, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* Segment.validateNewName(name)
    const notObject = TransportOptions.notAnObject(options, "the options of ResourceLink.create")
    if (notObject !== undefined) return yield* notObject
    // a bad length is a bad argument, not a bad name; past this the segment's size is no longer a safe integer
    if (!Number.isSafeInteger(payloadLength) || payloadLength < 0 || payloadLength > maxPayloadLength) {
      return yield* IpcError.make(
        "InvalidOption",
        `a payload length is a whole number of bytes from 0 to ${maxPayloadLength} (got ${String(payloadLength)})`
      )
    }
    const ttlMillis = options.ttl === undefined ? 0 : TransportOptions.millisOf(options.ttl)
    if (ttlMillis === undefined || ttlMillis === Infinity) {
      return yield* IpcError.make(
        "InvalidOption",
        `ttl ${String(options.ttl)} is not a finite duration (milliseconds, "10 minutes", or a Duration)`
      )
    }
    const badMode = Segment.invalidMode(options.mode)
    if (badMode !== undefined) return yield* badMode
    // the link takes its name once its header is published: a creator killed half-way leaves nothing under it
    const held = yield* Effect.acquireRelease(
      Effect.map(
        Segments.createReady(name, Header.HEADER_SIZE + payloadLength, { mode: options.mode }, (mapped) => {
          // one synchronous critical section: the header lock is held from the first field to `ready`
          const header = Header.view(mapped.mapping.buffer)
          Header.initialise(header, { kind: Header.Kind.link, ttlMillis, payloadLength, createdAt: Date.now() })
          Header.addHolder(header)
          Header.publish(header)
        }),
        (mapped): Held => ({ mapped, header: Header.view(mapped.mapping.buffer) })
      ),
      release
    )
    return toLink(held, payloadLength)
  })

/**
 * Acquires a reference to the existing link `name`. Fails with `NotFound`
 * when there is none (or it was just removed), `Protocol` when the segment
 * is not a valid link (bad magic, version or size), `Full` when every holder
 * slot is taken by other live processes.
 */
export const acquire = (name: string): Effect.Effect<ResourceLink, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* Segment.validateName(name)
    // acquiring is uninterruptible from the open to the registration of the release
    const held = yield* Effect.acquireRelease(
      Effect.gen(function*() {
        const opened: Held = yield* Segments.openWithHeader(name, Header.Kind.link)
        const { header, mapped } = opened
        const added = yield* Header.withLock(header, name, () => {
          if (Header.state(header) !== Header.State.ready) return "gone" as const
          return Header.addHolder(header) ? "held" as const : "full" as const
        }).pipe(Effect.tapError(() => Effect.sync(() => mapped.mapping.release())))
        if (added === "held") return opened
        mapped.mapping.release()
        return yield* added === "gone"
          ? IpcError.make("NotFound", `resource link ${name} was removed`)
          : IpcError.make("Full", `resource link ${name} has ${Header.SLOTS} holders already`)
      }),
      release
    )
    // read again now that it is held: a header rewritten since it was checked (by a process of this user) is
    // Protocol, never a view past the mapping (a RangeError)
    const checked = yield* Header.validate(held.header, held.mapped.size, Header.Kind.link, name)
    return toLink(held, checked.payloadLength)
  })

/** The header of the link `name`, without holding it. */
export const info = (name: string): Effect.Effect<LinkInfo, IpcError.IpcError> =>
  Effect.gen(function*() {
    yield* Segment.validateName(name)
    const { header, mapped } = yield* Segments.openWithHeader(name, Header.Kind.link, undefined, { headerOnly: true })
    const snapshot = Header.snapshot(header)
    mapped.mapping.release()
    return infoOf(name, snapshot)
  })

/** Removes the name of the link `name` at once, whoever holds it (holders keep their memory). */
export const remove = (name: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.gen(function*() {
    yield* Segment.validateName(name)
    const { header, mapped } = yield* Segments.openWithHeader(name, Header.Kind.link, undefined, { headerOnly: true })
    yield* Header.withLock(header, name, () => Reclaim.removeLocked(header, name, mapped.ino)).pipe(
      Effect.ensuring(Effect.sync(() => mapped.mapping.release()))
    )
  })
