/**
 * Unscoped segment operations that the public modules build on: create or
 * open a named segment and map it (closing the descriptor at once: the
 * mapping keeps the memory), read a header safely, list `/dev/shm`.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Header from "./header.ts"
import * as Libc from "./libc.ts"
import * as Ring from "./ring.ts"

/** A mapped segment. */
export interface Mapped {
  readonly name: string
  readonly mapping: Libc.Mapping
  /** Owner of the segment (uid). */
  readonly uid: number
  /** Size of the segment (the mapping may cover only its start). */
  readonly size: number
  /** Identity of the segment (to check that its name still names it before removing the name). */
  readonly ino: number
}

/** The directory where Linux shows POSIX segments as files. */
export const SHM_DIR = "/dev/shm"

/** Names of channel segments (`eipc-r-…` rings, `eipc-m-…` large messages); the first number is the creator's pid. */
export const channelNamePattern = /^eipc-[rm]-([a-z0-9]{1,8})-[a-z0-9-]{1,30}$/

let counter = 0
/** Names under which a resource link is made before it takes its own (`eipc-l-…`); the number is the creator's pid. */
export const stagingNamePattern = /^eipc-l-([a-z0-9]{1,8})-[a-z0-9-]{1,30}$/

/**
 * A fresh channel segment name for this process: `eipc-<tag>-<pid>-<n>-<random>`
 * (short enough for macOS; the random part cannot be predicted, so nobody can
 * create the name first).
 */
export const freshName = (tag: "r" | "m" | "l"): string =>
  `eipc-${tag}-${process.pid.toString(36)}-${(counter++).toString(36)}-${
    Crypto.randomBytes(5).readUIntBE(0, 5).toString(36)
  }`

/** This process's uid (undefined where the OS has none). */
const myUid = (): number | undefined => RuntimeDir.userId()

/** `PermissionDenied` for a segment that another user owns (it could have been planted under our name). */
const foreignOwner = (name: string, uid: number, address?: string) =>
  IpcError.make(
    "PermissionDenied",
    `segment ${name} belongs to uid ${uid}, not to this user (uid ${myUid()}): refused, it may have been planted`,
    address
  )

/** Refuses a segment that group or others may write: another user who shrinks it kills whoever maps it. */
const othersWrite = (name: string, mode: number, address?: string) =>
  IpcError.make(
    "PermissionDenied",
    `segment ${name} lets other users write (mode 0o${mode.toString(8)}): refused, one who shrinks it would kill ` +
      "its mappers (SIGBUS); chmod it to 0o600 (or 0o644) to use it",
    address
  )

/** Options of `createMapped`. */
export interface CreateOptions {
  readonly mode?: number | undefined
  readonly address?: string | undefined
  /**
   * Allocate every page now (default true): no room in `/dev/shm` is `NoSpace` here, not a `SIGBUS` at the
   * first write of a page; false for a channel ring, whose pages come as they are touched.
   */
  readonly reserve?: boolean | undefined
}

/**
 * Creates `/name` exclusively (mode `mode`), sizes it to `size` bytes (its
 * pages allocated, unless `reserve` is false) and maps it. On any failure
 * after the name was taken, the name is removed again.
 */
export const createMapped = (
  name: string,
  size: number,
  options: CreateOptions
): Effect.Effect<Mapped, IpcError.IpcError> => Libc.fromNow(() => createMappedNow(name, size, options))

/** `createMapped`, now. */
export const createMappedNow = (name: string, size: number, options: CreateOptions): Libc.Now<Mapped> => {
  const fd = Libc.shmOpenNow(name, "create", options.mode ?? 0o600, options.address)
  if (fd instanceof IpcError.IpcError) {
    if (fd.reason._tag !== "AlreadyExists" || process.platform !== "linux") return fd
    const owner = ownerOf(name)
    return owner === undefined || owner === myUid()
      ? fd
      : new IpcError.IpcError({ ...fd, detail: `${fd.detail} (it belongs to uid ${owner})` })
  }
  const mapped = ((): Libc.Now<Mapped> => {
    const sized = Libc.fdSizeNow(fd, size, options.reserve !== false, options.address)
    if (sized instanceof IpcError.IpcError) return sized
    const stat = Libc.fdStatNow(fd, options.address)
    if (stat instanceof IpcError.IpcError) return stat
    const mapping = Libc.mapSharedNow(fd, size, { address: options.address })
    if (mapping instanceof IpcError.IpcError) return mapping
    return { name, mapping, uid: stat.uid, size, ino: stat.ino }
  })()
  Libc.closeFd(fd)
  if (mapped instanceof IpcError.IpcError) Libc.shmUnlinkNow(name)
  return mapped
}

/**
 * Creates `/name` as `createMapped` does, and calls `ready` on it before the
 * name shows: on Linux the segment is made under a fresh name of this process
 * (`eipc-l-<pid>-…`), made ready, then linked to `name` (exclusively) and the
 * fresh name removed. A creator killed half-way leaves no segment under
 * `name`, only one under a name whose pid tells `SegmentGc` it is an orphan.
 * Elsewhere (no `/dev/shm` to link in) it is made under `name` at once.
 */
export const createReady = (
  name: string,
  size: number,
  options: CreateOptions,
  ready: (mapped: Mapped) => void
): Effect.Effect<Mapped, IpcError.IpcError> =>
  Libc.fromNow((): Libc.Now<Mapped> => {
    if (process.platform !== "linux") {
      const mapped = createMappedNow(name, size, options)
      if (!(mapped instanceof IpcError.IpcError)) ready(mapped)
      return mapped
    }
    const staging = freshName("l")
    const mapped = createMappedNow(staging, size, options)
    if (mapped instanceof IpcError.IpcError) return mapped
    ready(mapped)
    let linked: IpcError.IpcError | undefined
    try {
      Fs.linkSync(`${SHM_DIR}/${staging}`, `${SHM_DIR}/${name}`)
    } catch (cause) {
      const error = IpcError.fromSystemError(cause, "Open", `cannot create shared memory /${name}`, options.address)
      const owner = error.reason._tag === "AlreadyExists" ? ownerOf(name) : undefined
      linked = owner === undefined || owner === myUid()
        ? error
        : new IpcError.IpcError({ ...error, detail: `${error.detail} (it belongs to uid ${owner})` })
    }
    Libc.shmUnlinkNow(staging)
    if (linked !== undefined) {
      mapped.mapping.release()
      return linked
    }
    return { ...mapped, name }
  })

/** The owner of `/dev/shm/name` (Linux), if it exists. */
const ownerOf = (name: string): number | undefined => {
  try {
    return Fs.lstatSync(`${SHM_DIR}/${name}`).uid
  } catch {
    return undefined
  }
}

/**
 * Opens `/name` and maps it (all of it, or its first `mapLength` bytes);
 * `minSize`: a smaller segment fails with `Protocol`, "truncated", before
 * anything is mapped. A segment another user owns, or one that group or
 * others may write (made so by hand, or by a version that allowed it), is
 * `PermissionDenied` (checked on the open descriptor, so a name swapped
 * meanwhile changes nothing).
 */
export const openMapped = (
  name: string,
  options: {
    readonly minSize?: number | undefined
    /** A segment larger than this is refused unmapped (with its error). */
    readonly maxSize?: Sizes | undefined
    readonly mapLength?: number | undefined
    readonly address?: string | undefined
  } = {}
): Effect.Effect<Mapped, IpcError.IpcError> =>
  Effect.flatMap(Libc.shmOpen(name, "open", 0, options.address), (fd) =>
    Libc.fdStat(fd, options.address).pipe(
      Effect.flatMap((stat) => {
        const uid = myUid()
        if (uid !== undefined && stat.uid !== uid) return Effect.fail(foreignOwner(name, stat.uid, options.address))
        if ((stat.mode & 0o022) !== 0) return Effect.fail(othersWrite(name, stat.mode, options.address))
        const minSize = Math.max(1, options.minSize ?? 1)
        if (stat.size < minSize) {
          return Effect.fail(
            IpcError.make(
              "Protocol",
              `segment ${name}: truncated: ${stat.size} bytes, expected at least ${minSize}`,
              options.address
            )
          )
        }
        if (options.maxSize !== undefined && stat.size > options.maxSize.max) {
          return Effect.fail(options.maxSize.tooLarge(stat.size))
        }
        const length = Math.min(stat.size, options.mapLength ?? stat.size)
        return Effect.map(
          Libc.mapShared(fd, length, { address: options.address }),
          (mapping): Mapped => ({ name, mapping, uid: stat.uid, size: stat.size, ino: stat.ino })
        )
      }),
      Effect.ensuring(Effect.sync(() => Libc.closeFd(fd)))
    ))

/**
 * Opens `/name`, checks its header (magic, version, `kind`, size) and maps it
 * (`headerOnly`: just the header); a header still being written (magic 0 in a
 * fresh segment) is waited for briefly. Fails with `Protocol` for anything
 * that is not a valid segment.
 */
export const openWithHeader = (
  name: string,
  kind: Header.Kind | undefined,
  address?: string,
  options: { readonly headerOnly?: boolean | undefined; readonly retry?: boolean | undefined } = {}
): Effect.Effect<{ readonly mapped: Mapped; readonly header: Header.HeaderView }, IpcError.IpcError> =>
  Effect.gen(function*() {
    for (let attempt = 0;; attempt++) {
      const mapped = yield* openMapped(name, {
        minSize: Header.HEADER_SIZE,
        mapLength: options.headerOnly === true ? Header.HEADER_SIZE : undefined,
        address
      })
      const header = Header.view(mapped.mapping.buffer)
      const checked = yield* Effect.result(Header.validate(header, mapped.size, kind, name))
      if (checked._tag === "Success") return { mapped, header }
      const fresh = Atomics.load(header.words, 0) === 0
      mapped.mapping.release()
      // a creator writes its header within microseconds of sizing the segment
      if (!fresh || options.retry === false || attempt >= 20) {
        return yield* Effect.fail(IpcError.make(checked.failure.reason, checked.failure.detail, address))
      }
      yield* Effect.sleep("5 millis")
    }
  })

/** A name in `/dev/shm` with its size, owner, modification time and identity. */
export interface Listed {
  readonly name: string
  readonly size: number
  readonly uid: number
  readonly mtimeMs: number
  readonly ino: number
}

/** The segments in `/dev/shm` (Linux); `UnsupportedPlatform` where the OS does not list them. */
export const list: Effect.Effect<ReadonlyArray<Listed>, IpcError.IpcError> = Effect.gen(function*() {
  if (process.platform !== "linux") {
    return yield* IpcError.make(
      "UnsupportedPlatform",
      `${process.platform} does not list POSIX shared-memory segments (Linux shows them in ${SHM_DIR})`
    )
  }
  const names = yield* Effect.tryPromise({
    try: () => Fs.promises.readdir(SHM_DIR, { withFileTypes: true }),
    catch: (cause) => IpcError.fromSystemError(cause, "Open", `cannot list ${SHM_DIR}`)
  })
  const out: Array<Listed> = []
  for (const entry of names) {
    if (!entry.isFile()) continue
    const stat = yield* Effect.promise(() => Fs.promises.stat(`${SHM_DIR}/${entry.name}`).catch(() => undefined))
    if (stat !== undefined) {
      out.push({ name: entry.name, size: stat.size, uid: stat.uid, mtimeMs: stat.mtimeMs, ino: stat.ino })
    }
  }
  return out
})

// ---- channel segments ------------------------------------------------------------

/**
 * How a channel segment is named to the peer. Linux: `fd:<fd>:<inode>`, a
 * sealed memory file (`memfd`) that the peer opens through
 * `/proc/<our pid>/fd/<fd>` (the kernel allows that to our own user only); it
 * is never in `/dev/shm`. Elsewhere: the name of a POSIX segment, `eipc-r-…` /
 * `eipc-m-…`.
 */
export const tokenPattern: RegExp = Libc.sealedSegments ? /^fd:(\d{1,9}):(\d{1,20})$/ : /^eipc-[rm]-[a-z0-9-]{1,40}$/

/** A channel segment we made for the peer: mapped here, named by `token` until `handedOver`. */
export interface Outgoing {
  readonly token: string
  readonly mapping: Libc.Mapping
  /** The peer has it mapped (or will never map it): close our descriptor, or remove the name. Idempotent. */
  readonly handedOver: () => void
}

/**
 * Creates a channel segment of `size` bytes (sealed memfd on Linux, a 0600 named segment elsewhere). A large
 * message's (`m`) pages are allocated now, as it is written whole at once: no memory for them is `NoSpace`
 * here, not a `SIGBUS` as they are written; a ring's (`r`) come as they are touched.
 */
export const createOutgoing = (
  tag: "r" | "m",
  size: number,
  address?: string
): Effect.Effect<Outgoing, IpcError.IpcError> => Libc.fromNow(() => createOutgoingNow(tag, size, address))

/** `createOutgoing`, now (for a sender that makes a segment inside a synchronous step). */
export const createOutgoingNow = (tag: "r" | "m", size: number, address?: string): Libc.Now<Outgoing> => {
  if (!Libc.sealedSegments) {
    const mapped = createMappedNow(freshName(tag), size, { address, reserve: tag === "m" })
    if (mapped instanceof IpcError.IpcError) return mapped
    let done = false
    return {
      token: mapped.name,
      mapping: mapped.mapping,
      handedOver: () => {
        if (done) return
        done = true
        Libc.shmUnlinkNow(mapped.name)
      }
    }
  }
  const fd = Libc.memfdSealedNow(`eipc-${tag}`, size, tag === "m", address)
  if (fd instanceof IpcError.IpcError) return fd
  const stat = Libc.fdStatNow(fd, address)
  if (stat instanceof IpcError.IpcError) {
    Libc.closeFd(fd)
    return stat
  }
  const mapping = Libc.mapSharedNow(fd, size, { address })
  if (mapping instanceof IpcError.IpcError) {
    Libc.closeFd(fd)
    return mapping
  }
  let done = false
  return {
    token: `fd:${fd}:${stat.ino}`,
    mapping,
    handedOver: () => {
      if (done) return
      done = true
      Libc.closeFd(fd)
    }
  }
}

/** After opening the peer's segment `token`: removes its name where segments have names (not on Linux). */
export const consumed = (token: string): void => {
  if (!Libc.sealedSegments) Libc.shmUnlinkNow(token)
}

/**
 * Whether the process `pid` is not dumpable: then the kernel makes its
 * `/proc/<pid>` entries root's and lets no other user's process open its
 * descriptors, even one of its own effective user. A process that changed its
 * user ids (`setuid`, `seteuid`) or runs a set-user-id program is not.
 */
const notDumpable = (pid: number): boolean => {
  try {
    // Uid: real, effective, saved, file system
    const effective = /^Uid:\s+\d+\s+(\d+)/m.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]
    return effective !== undefined && effective !== "0" && Fs.statSync(`/proc/${pid}/fd`).uid === 0
  } catch {
    return false
  }
}

const NOT_DUMPABLE = ": that process is not dumpable (it changed its user ids, with setuid or seteuid, or runs a " +
  "set-user-id program), so the kernel lets no other process open its descriptors; it can call " +
  "prctl(PR_SET_DUMPABLE, 1) after changing them, or use pipe://"

/** The sizes a peer's segment may have: at least `min` bytes, at most `max`, else `tooLarge` of its size. */
export interface Sizes {
  readonly min: number
  readonly max: number
  readonly tooLarge: (size: number) => IpcError.IpcError
}

/** The sizes of a peer's ring segment `token`: a header, and at most the largest ring. */
export const ringSizes = (token: string, address?: string): Sizes => ({
  min: Header.HEADER_SIZE,
  max: Header.HEADER_SIZE + Ring.MAX_CAPACITY,
  tooLarge: (bytes) =>
    IpcError.make("Protocol", `ring segment ${token} holds ${bytes} bytes, more than any ring`, address)
})

/**
 * Opens and maps the channel segment `token` that the peer (process `peerPid`)
 * made. Linux: the descriptor must be a sealed memory file (it can never
 * shrink under our mapping), with the inode the token names, owned by this
 * user. Elsewhere: a named segment owned by this user. A segment smaller than
 * `size.min` is `Protocol` ("truncated"); one larger than `size.max` is
 * `size.tooLarge` of its size, and is not mapped (a peer's sparse file of a
 * terabyte would take that much of our address space).
 */
export const openIncoming = (
  token: string,
  peerPid: number | undefined,
  size: Sizes,
  address?: string
): Effect.Effect<Mapped, IpcError.IpcError> => {
  const match = tokenPattern.exec(token)
  if (match === null) {
    return Effect.fail(IpcError.make("Protocol", `the peer named an invalid segment "${token}"`, address))
  }
  if (!Libc.sealedSegments) return openMapped(token, { minSize: size.min, maxSize: size, address })
  if (peerPid === undefined || peerPid <= 0) {
    return Effect.fail(IpcError.make("Protocol", "the peer's pid is unknown: cannot open its segments", address))
  }
  const path = `/proc/${peerPid}/fd/${match[1]}`
  return Effect.flatMap(
    Effect.try({
      // non-blocking: a descriptor that names a FIFO must not freeze the event loop
      try: () => Fs.openSync(path, Fs.constants.O_RDWR | Fs.constants.O_NONBLOCK | Fs.constants.O_NOCTTY),
      catch: (cause) =>
        IpcError.fromSystemError(
          cause,
          "NotFound",
          `cannot open the peer's segment ${token}${notDumpable(peerPid) ? NOT_DUMPABLE : ""}`,
          address
        )
    }),
    (fd) =>
      Effect.try({
        try: () => Fs.fstatSync(fd),
        catch: (cause) => IpcError.fromSystemError(cause, "Open", "cannot stat the peer's segment", address)
      }).pipe(
        Effect.flatMap((stat) => {
          const uid = myUid()
          if (!stat.isFile() || String(stat.ino) !== match[2]) {
            return Effect.fail(IpcError.make("Protocol", `the peer's ${token} is not the segment it named`, address))
          }
          if (uid !== undefined && stat.uid !== uid) return Effect.fail(foreignOwner(token, stat.uid, address))
          const sealed = Libc.seals(fd)
          if ((sealed & (Libc.SEALS.shrink | Libc.SEALS.grow)) !== (Libc.SEALS.shrink | Libc.SEALS.grow)) {
            return Effect.fail(
              IpcError.make("Protocol", `the peer's segment ${token} is not sealed against resizing`, address)
            )
          }
          if (stat.size < size.min) {
            return Effect.fail(
              IpcError.make(
                "Protocol",
                `segment ${token}: truncated: ${stat.size} bytes, expected at least ${size.min}`,
                address
              )
            )
          }
          if (stat.size > size.max) return Effect.fail(size.tooLarge(stat.size))
          return Effect.map(
            Libc.mapShared(fd, stat.size, { address }),
            (mapping): Mapped => ({ name: token, mapping, uid: stat.uid, size: stat.size, ino: stat.ino })
          )
        }),
        Effect.ensuring(Effect.sync(() => Libc.closeFd(fd)))
      )
  )
}
