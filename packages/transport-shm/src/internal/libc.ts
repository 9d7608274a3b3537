/**
 * The only module of this package that makes native calls: `shm_open`,
 * `shm_unlink`, `mmap`, `munmap`, `sched_yield` (and on Linux `memfd_create`,
 * `fcntl` and `posix_fallocate`) through koffi. koffi itself is required on
 * first use, so a missing native module or libc is a typed `LibraryMissing`
 * (and Windows an `UnsupportedPlatform`), not a failed import. Each function
 * is declared once with a typed signature and wrapped so that callers get
 * values or `IpcError`s, never exceptions. (Sizes and `ftruncate` go through
 * `node:fs`, which accepts any descriptor.)
 *
 * It also owns the life of every mapping, so that no JavaScript view can ever
 * reach unmapped memory:
 *
 * - every view of a mapping is built over one `ArrayBuffer` (or over a
 *   sub-range `ArrayBuffer` made by `subView`), and `release` detaches them
 *   all: a detached view has length 0, reads `undefined` and writes nothing;
 * - `release` does not `munmap`: it replaces the shared pages in place with
 *   private anonymous ones (`MAP_FIXED`), so the shared memory is given back
 *   at once while the address range stays valid for native code that may
 *   still hold a pointer (a pending socket write of a view, say);
 * - the address range itself is unmapped by a `FinalizationRegistry` once the
 *   last `ArrayBuffer` over it has been garbage-collected;
 * - those buffers cannot be transferred (`transfer`, `transferToFixedLength`
 *   throw a `TypeError`): a transfer would move the memory into a buffer
 *   that neither `release` detaches nor keeps the range mapped, and reading
 *   it once the range is unmapped would kill the process (`SIGSEGV`);
 * - a process holds at most half the kernel's limit of mappings per process
 *   (`vm.max_map_count`), and keeps at most three quarters mapped with those
 *   released and not collected yet; past that a new mapping is `NoSpace`,
 *   not an abort.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Native from "@effect-ipc/core/Native"
import * as Effect from "effect/Effect"
import type KoffiModule from "koffi"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Memory from "./memory.ts"

type Koffi = typeof KoffiModule

type Pointer = bigint

interface Bindings {
  readonly koffi: Koffi
  readonly shmOpen: (name: string, flags: number, mode: number) => number
  readonly shmUnlink: (name: string) => number
  readonly mmap: (
    addr: Pointer | null,
    length: number,
    prot: number,
    flags: number,
    fd: number,
    offset: number
  ) => Pointer
  readonly munmap: (addr: Pointer, length: number) => number
  readonly schedYield: () => number
  /** `memfd_create` and `fcntl` (seals): Linux only. */
  readonly memfdCreate: ((name: string, flags: number) => number) | undefined
  readonly fcntl: ((fd: number, cmd: number, arg: number) => number) | undefined
  /** `posix_fallocate` (Linux): returns the error number itself (0 on success), not through `errno`. */
  readonly fallocate: ((fd: number, offset: number, length: number) => number) | undefined
  readonly errno: () => number
  readonly flags: {
    readonly O_RDWR: number
    readonly O_CREAT: number
    readonly O_EXCL: number
    readonly MAP_SHARED: number
    readonly MAP_PRIVATE: number
    readonly MAP_FIXED: number
    readonly MAP_ANONYMOUS: number
  }
}

const PROT_READ = 1
const PROT_WRITE = 2
const MAP_FAILED = 0xffff_ffff_ffff_ffffn

const unsupported = () =>
  IpcError.make(
    "UnsupportedPlatform",
    `POSIX shared memory is not available on ${process.platform} (Linux and macOS only)`
  )

/** koffi and libc, loaded on first use (see Native): a missing native module is a typed error, not a failed import. */
const bindingsOnce = Native.loader<Koffi>(import.meta.url).bindings("cannot load libc", (koffi): Bindings => {
  // load() asks only on Linux and macOS
  const linux = process.platform === "linux"
  const libc = koffi.load(linux ? "libc.so.6" : "libSystem.B.dylib")
  // untested here: shm_open is variadic on macOS (the mode travels as a promoted int)
  const shmOpen = linux
    ? libc.func("int shm_open(const char *name, int oflag, uint32_t mode)")
    : libc.func("int shm_open(const char *name, int oflag, ...)")
  const shmUnlink = libc.func("int shm_unlink(const char *name)")
  const mmap = libc.func("void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)")
  const munmap = libc.func("int munmap(void *addr, size_t length)")
  const schedYield = libc.func("int sched_yield(void)")
  const memfdCreate = linux ? libc.func("int memfd_create(const char *name, unsigned int flags)") : undefined
  const fcntl = linux ? libc.func("int fcntl(int fd, int cmd, ...)") : undefined
  const fallocate = linux ? libc.func("int posix_fallocate(int fd, int64_t offset, int64_t len)") : undefined
  return {
    koffi,
    memfdCreate: memfdCreate && ((name, flags) => memfdCreate(name, flags) as number),
    fcntl: fcntl && ((fd, cmd, arg) => fcntl(fd, cmd, "int", arg) as number),
    fallocate: fallocate && ((fd, offset, length) => fallocate(fd, offset, length) as number),
    shmOpen: linux
      ? (name, flags, mode) => shmOpen(name, flags, mode) as number
      : (name, flags, mode) => shmOpen(name, flags, "int", mode) as number,
    shmUnlink: (name) => shmUnlink(name) as number,
    mmap: (addr, length, prot, flags, fd, offset) => mmap(addr, length, prot, flags, fd, offset) as Pointer,
    munmap: (addr, length) => munmap(addr, length) as number,
    schedYield: () => schedYield() as number,
    errno: () => koffi.errno(),
    // Linux's values, then macOS's where they differ
    flags: {
      O_RDWR: 2,
      O_CREAT: linux ? 0o100 : 0x200,
      O_EXCL: linux ? 0o200 : 0x800,
      MAP_SHARED: 1,
      MAP_PRIVATE: 2,
      MAP_FIXED: 0x10,
      MAP_ANONYMOUS: linux ? 0x20 : 0x1000
    }
  }
})

const load = (): Bindings | IpcError.IpcError =>
  process.platform === "linux" || process.platform === "darwin" ? bindingsOnce() : unsupported()

/** An `IpcError` for `errno` (EEXIST -> AlreadyExists, ENOENT -> NotFound, EACCES -> PermissionDenied, ...). */
const systemError = Native.errnoError

/** What a synchronous `...Now` function returns: its value, or why there is none. */
export type Now<A> = A | IpcError.IpcError

/** The Effect of a synchronous `...Now` call: run when the Effect runs, its error a typed failure. */
export const fromNow = <A>(f: () => Now<A>): Effect.Effect<A, IpcError.IpcError> =>
  Effect.suspend(() => {
    const result = f()
    return result instanceof IpcError.IpcError ? Effect.fail(result) : Effect.succeed(result)
  })

/**
 * Gives the CPU to another runnable thread, if any (`sched_yield`): a spinning
 * reader lets its peer run on a busy machine instead of burning its time slice.
 */
export const yieldCpu = (): void => {
  const b = load()
  if (!(b instanceof IpcError.IpcError)) b.schedYield()
}

/** The bindings, or the reason there are none (for callers that must not fail, such as finalizers). */
export const available: Effect.Effect<void, IpcError.IpcError> = fromNow((): Now<void> => {
  const b = load()
  if (b instanceof IpcError.IpcError) return b
})

/** How `shmOpen` opens: `create` fails with `AlreadyExists` when the name is taken. */
export type OpenMode = "create" | "open"

/**
 * Opens the segment `/name` read-write (`create`: `O_CREAT | O_EXCL`, mode
 * `mode`); returns its descriptor, which the caller closes with `closeFd`.
 */
export const shmOpen = (
  name: string,
  how: OpenMode,
  mode: number,
  address?: string
): Effect.Effect<number, IpcError.IpcError> => fromNow(() => shmOpenNow(name, how, mode, address))

/** `shmOpen`, now. */
export const shmOpenNow = (name: string, how: OpenMode, mode: number, address?: string): Now<number> => {
  const b = load()
  if (b instanceof IpcError.IpcError) return b
  const flags = how === "create" ? b.flags.O_RDWR | b.flags.O_CREAT | b.flags.O_EXCL : b.flags.O_RDWR
  const fd = b.shmOpen(`/${name}`, flags, mode)
  if (fd >= 0) return fd
  const errno = b.errno()
  const code = Native.errnoName(errno)
  // a symbolic link (not followed: ELOOP) or a directory (glibc answers EINVAL for it) where the segment goes
  if (code === "ELOOP" || code === "EINVAL") {
    const planted = notASegment(name)
    if (planted !== undefined) {
      return IpcError.make("PermissionDenied", `cannot ${how} the segment ${name}: ${planted}`, address)
    }
  }
  // glibc answers EINVAL for a name it will not take (a slash inside, or far too long)
  const fallback = code === "EINVAL" ? "InvalidAddress" : "Open"
  return systemError(errno, fallback, `cannot ${how} the segment ${name}`, address)
}

/** What is at `/dev/shm/name` when it is not a file (a symbolic link or a directory), naming its owner; else undefined. */
const notASegment = (name: string): string | undefined => {
  try {
    const stat = Fs.lstatSync(`/dev/shm/${name}`)
    if (stat.isFile()) return undefined
    const what = stat.isSymbolicLink()
      ? "a symbolic link (not followed)"
      : stat.isDirectory()
      ? "a directory"
      : "not a file"
    return `/dev/shm/${name} is ${what}, owned by uid ${stat.uid}`
  } catch {
    return undefined
  }
}

/** Removes the name `/name` (the memory lives on while it is mapped). */
export const shmUnlink = (name: string, address?: string): Effect.Effect<void, IpcError.IpcError> =>
  fromNow(() => shmUnlinkNow(name, address))

/**
 * `shmUnlink`, now (for callers inside a header's critical section): returns
 * the error instead of failing.
 */
export const shmUnlinkNow = (name: string, address?: string): IpcError.IpcError | undefined => {
  const b = load()
  if (b instanceof IpcError.IpcError) return b
  return b.shmUnlink(`/${name}`) === 0
    ? undefined
    : systemError(b.errno(), "Unknown", `cannot unlink the segment ${name}`, address)
}

/** Seals of a memfd (`fcntl(F_ADD_SEALS)`): it can never shrink or grow, and no more seals can be added. */
export const SEALS = { seal: 1, shrink: 2, grow: 4 } as const

/** Linux's (the only system where `memfd_create` and `fcntl` are bound). */
const F_ADD_SEALS = 1033
const F_GET_SEALS = 1034
const MFD_CLOEXEC = 1
const MFD_ALLOW_SEALING = 2

/** True where channel segments are sealed memfds (Linux); elsewhere they are named POSIX segments. */
export const sealedSegments: boolean = process.platform === "linux"

/**
 * Creates an anonymous memory file of `size` bytes (`memfd_create`), sealed
 * against shrinking and growing: whoever opens it, nobody can cut off pages
 * that a mapping of it covers (which would raise SIGBUS in the mapper);
 * `reserve`: its pages are allocated now (see `fdSizeNow`). Returns its
 * descriptor, which the caller closes with `closeFd`.
 */
export const memfdSealedNow = (label: string, size: number, reserve: boolean, address?: string): Now<number> => {
  const b = load()
  if (b instanceof IpcError.IpcError) return b
  if (b.memfdCreate === undefined || b.fcntl === undefined) {
    return IpcError.make("UnsupportedPlatform", "memfd_create is Linux only", address)
  }
  const fd = b.memfdCreate(label, MFD_CLOEXEC | MFD_ALLOW_SEALING)
  if (fd < 0) return systemError(b.errno(), "NoSpace", "cannot create a memory file", address)
  const sized = fdSizeNow(fd, size, reserve, address)
  const failed = sized instanceof IpcError.IpcError
    ? sized
    : b.fcntl(fd, F_ADD_SEALS, SEALS.shrink | SEALS.grow | SEALS.seal) === 0
    ? undefined
    : systemError(b.errno(), "Unknown", "cannot seal a memory file", address)
  if (failed === undefined) return fd
  closeFd(fd)
  return failed
}

/** The seals of an open descriptor (0 for a file that cannot be sealed). */
export const seals = (fd: number): number => {
  const b = load()
  if (b instanceof IpcError.IpcError || b.fcntl === undefined) return 0
  const found = b.fcntl(fd, F_GET_SEALS, 0)
  return found < 0 ? 0 : found
}

/** What `fstat` says of a segment's descriptor. */
export interface FdStat {
  readonly size: number
  readonly uid: number
  readonly mode: number
  /** Identifies the segment itself (not its name): a segment re-created under the same name has another. */
  readonly ino: number
}

/** The size, owner and identity of an open descriptor. */
export const fdStat = (fd: number, address?: string): Effect.Effect<FdStat, IpcError.IpcError> =>
  fromNow(() => fdStatNow(fd, address))

/** `fdStat`, now. */
export const fdStatNow = (fd: number, address?: string): Now<FdStat> => {
  try {
    const stat = Fs.fstatSync(fd)
    return { size: stat.size, uid: stat.uid, mode: stat.mode & 0o777, ino: stat.ino }
  } catch (cause) {
    return IpcError.fromSystemError(cause, "Open", "cannot stat the segment", address)
  }
}

/** The identity (`ino`) of the segment that `/name` names now, if any (for callers inside a critical section). */
export const identityNow = (name: string): number | undefined => {
  if (process.platform === "linux") {
    try {
      return Fs.statSync(`/dev/shm/${name}`).ino
    } catch {
      return undefined
    }
  }
  const b = load()
  if (b instanceof IpcError.IpcError) return undefined
  const fd = b.shmOpen(`/${name}`, b.flags.O_RDWR, 0)
  if (fd < 0) return undefined
  try {
    return Fs.fstatSync(fd).ino
  } catch {
    return undefined
  } finally {
    closeFd(fd)
  }
}

/** Sets the size of a segment (`ftruncate`); running out of memory is `NoSpace`. */
export const fdTruncateNow = (fd: number, size: number, address?: string): Now<void> => {
  try {
    Fs.ftruncateSync(fd, size)
  } catch (cause) {
    return IpcError.fromSystemError(cause, "NoSpace", `cannot size the segment to ${size} bytes`, address)
  }
}

/**
 * Sizes a new segment to `size` bytes (`ftruncate`); `reserve`: allocates its
 * pages now (`posix_fallocate`, Linux only; elsewhere nothing more, see
 * `reserveNow`), so that a tmpfs (`/dev/shm`, or the memory behind a memory
 * file) without room for them is `NoSpace` here. Otherwise a page is allocated
 * at its first write through a mapping, and one that a full tmpfs cannot
 * supply kills the process then (`SIGBUS`).
 */
export const fdSizeNow = (fd: number, size: number, reserve: boolean, address?: string): Now<void> => {
  const sized = fdTruncateNow(fd, size, address)
  if (sized instanceof IpcError.IpcError || !reserve || size === 0) return sized
  const b = load()
  if (b instanceof IpcError.IpcError) return b
  const fallocate = b.fallocate
  if (fallocate === undefined) return
  return reserveWithin((offset, length) => fallocate(fd, offset, length), size, Memory.left, address)
}

const ENOMEM = Os.constants.errno.ENOMEM

/**
 * `reserveNow`, for a segment of `Memory.CHECKED_BYTES` or more only while
 * `left()` (the memory left: `Memory.left`) covers what is still to allocate,
 * checked first and before each later chunk (others take memory meanwhile): a
 * tmpfs may be larger than the memory behind it, and filling it past that
 * ends with the OOM killer. `NoSpace` when it does not.
 */
export const reserveWithin = (
  allocate: (offset: number, length: number) => number,
  size: number,
  left: () => number,
  address?: string
): Now<void> => {
  if (size < Memory.CHECKED_BYTES) return reserveNow(allocate, size, address)
  const first = left()
  if (size > first) {
    return IpcError.make(
      "NoSpace",
      `cannot allocate ${size} bytes for the segment: the memory left for it (machine, memory cgroup) is ${first} bytes`,
      address
    )
  }
  return reserveNow(
    (offset, length) => offset > 0 && size - offset > left() ? ENOMEM : allocate(offset, length),
    size,
    address
  )
}

/** The most `reserveNow` asks for in one call (64 MiB, some milliseconds of a tmpfs's time). */
export const RESERVE_CHUNK = 64 * 1024 * 1024

/** The least `reserveNow` asks for in one call once calls are interrupted (1 MiB). */
export const RESERVE_MIN_CHUNK = 1024 * 1024

/** How many calls in a row `reserveNow` lets a signal interrupt before it gives up. */
export const RESERVE_TRIES = 16

/**
 * What a file system without `fallocate` answers (musl passes the kernel's
 * EOPNOTSUPP on; an old kernel says ENOSYS, some file systems EINVAL): the
 * pages cannot be allocated ahead there, and come as they are written.
 */
const cannotReserve: ReadonlySet<string> = new Set(["EOPNOTSUPP", "ENOTSUP", "ENOSYS", "EINVAL"])

/**
 * Allocates bytes `0` to `size` of a file through `allocate` (`posix_fallocate`
 * of the file at `offset` for `length` bytes: 0, or the error number), at most
 * `RESERVE_CHUNK` at a time, moving on from where the last call ended.
 *
 * A call interrupted by a signal (EINTR) gives back what it had allocated (a
 * tmpfs undoes the pages that call added; earlier calls keep theirs), so one
 * call over a large segment might never finish under a steady source of
 * signals (kernels that stop it for any pending signal): a call is asked again
 * for half as much (down to `RESERVE_MIN_CHUNK`), and after `RESERVE_TRIES`
 * interruptions in a row reserving fails (`Unknown`, errno EINTR). No room
 * (ENOSPC, ENOMEM, EFBIG, EDQUOT) is `NoSpace`; a file system that cannot
 * reserve (`cannotReserve`) is no error: the rest of the file is left to be
 * allocated as it is written, as where nothing is reserved. Anything else is
 * `Unknown` (or the reason its errno stands for, such as `PermissionDenied`).
 * What the calls before a failure allocated stays until the file is closed
 * and unlinked, as every caller does then.
 */
export const reserveNow = (
  allocate: (offset: number, length: number) => number,
  size: number,
  address?: string
): Now<void> => {
  let offset = 0
  let chunk = RESERVE_CHUNK
  let interrupted = 0
  while (offset < size) {
    const length = Math.min(chunk, size - offset)
    const error = allocate(offset, length)
    if (error === 0) {
      offset += length
      interrupted = 0
      continue
    }
    const name = Native.errnoName(error)
    if (cannotReserve.has(name)) return
    if (name === "EINTR") {
      interrupted += 1
      if (interrupted < RESERVE_TRIES) {
        chunk = Math.max(RESERVE_MIN_CHUNK, chunk / 2)
        continue
      }
      return IpcError.fromErrno(
        name,
        "Unknown",
        `cannot allocate ${size} bytes for the segment: interrupted by signals ${interrupted} times in a row at byte ${offset}`,
        address
      )
    }
    // ENOSPC, EFBIG and EDQUOT are NoSpace by their errno
    const fallback = name === "ENOMEM" ? "NoSpace" : "Unknown"
    return systemError(error, fallback, `cannot allocate ${size} bytes for the segment`, address)
  }
}

/** Closes a descriptor (the mapping made from it stays). */
export const closeFd = (fd: number): void => {
  try {
    Fs.closeSync(fd)
  } catch {
    // already closed
  }
}

// ---- mappings ---------------------------------------------------------------

/** A shared mapping whose views are detached when it is released (see the module comment). */
export interface Mapping {
  /** Length in bytes. */
  readonly size: number
  /** The whole mapping; detached (length 0) once released. */
  readonly buffer: ArrayBuffer
  /** True once `release` ran. */
  readonly isReleased: () => boolean
  /**
   * A separate buffer over `[offset, offset + length)`, detached by its own
   * `release` or by the mapping's, whichever comes first.
   */
  readonly subView: (offset: number, length: number) => SubView
  /** Detaches every view and gives the shared pages back; idempotent. */
  readonly release: () => void
}

/** A buffer over part of a mapping, released on its own. */
export interface SubView {
  readonly buffer: ArrayBuffer
  readonly release: () => void
}

/** What the finalization registry unmaps once every buffer over a range is gone. */
interface Range {
  readonly addr: Pointer
  readonly length: number
}

const keeperKey = Symbol.for("@effect-ipc/transport-shm/mapping")

const unmapper = new FinalizationRegistry<Range>((range) => {
  mappedRanges--
  const b = load()
  if (!(b instanceof IpcError.IpcError)) b.munmap(range.addr, range.length)
})

/** Ranges mapped and not unmapped yet (a released one waits for the collector). */
let mappedRanges = 0
/** Ranges mapped and not released yet. */
let liveRanges = 0
let kernelLimit: number | undefined
/** The kernel's limit of mappings per process (`vm.max_map_count`, 65 530 by default). */
const mappingLimit = (): number => {
  if (kernelLimit === undefined) {
    kernelLimit = 65530
    try {
      const read = Number(Fs.readFileSync("/proc/sys/vm/max_map_count", "utf8").trim())
      if (Number.isSafeInteger(read) && read > 0) kernelLimit = read
    } catch {
      // no /proc (macOS): the Linux default
    }
  }
  return kernelLimit
}
/**
 * Why this process may map no more ranges, if it may not: at most half the
 * kernel's limit held, and at most three quarters mapped with the released
 * ones the collector has not unmapped yet; the rest is the runtime's, whose
 * own allocations abort the process when the kernel refuses them.
 */
const tooManyMappings = (): string | undefined => {
  const limit = mappingLimit()
  if (liveRanges >= Math.floor(limit / 2)) {
    return `this process holds ${liveRanges} shared mappings, half the kernel's limit (vm.max_map_count ${limit})`
  }
  if (mappedRanges >= Math.floor(limit * 3 / 4)) {
    return `this process has ${mappedRanges} shared mappings (${mappedRanges - liveRanges} released, unmapped once ` +
      `collected), three quarters of the kernel's limit (vm.max_map_count ${limit})`
  }
  return undefined
}

/** `ArrayBuffer` methods of ES2024, which Node 22+ has (the project's `lib` is ES2023). */
interface Transferable {
  readonly detached: boolean
  transfer(newLength?: number): ArrayBuffer
}

/** `ArrayBuffer.prototype.transfer`, where the runtime has it (Node 22+). */
const transferOf = (ArrayBuffer.prototype as unknown as Partial<Transferable>).transfer

/**
 * In place of a mapped buffer's `transfer` and `transferToFixedLength`: a transfer would hand the mapped memory to a
 * new buffer that `release` does not detach and that does not keep the range mapped (once the old one is collected
 * the range is unmapped under it: reading it is a `SIGSEGV`), and would detach the header views a link's release
 * still needs.
 */
const untransferable = (): never => {
  throw new TypeError(
    "this ArrayBuffer views shared memory (transport-shm) and cannot be transferred: copy it (slice) instead"
  )
}

/** Ties `buffer` to `keeper`: the range stays mapped while any buffer over it is reachable (it is never transferred). */
const keep = (buffer: ArrayBuffer, keeper: object): ArrayBuffer => {
  Object.defineProperty(buffer, keeperKey, { value: keeper })
  Object.defineProperty(buffer, "transfer", { value: untransferable })
  Object.defineProperty(buffer, "transferToFixedLength", { value: untransferable })
  return buffer
}

/**
 * Detaches `buffer` (and so every view over it) where the runtime can: Node
 * 20 has no `transfer` (and copies a koffi view rather than detach it), so
 * there a released view keeps its length and reads the private zero pages
 * `release` puts in place of the shared ones: still no crash, and nothing of
 * the segment.
 */
const detach = (buffer: ArrayBuffer): void => {
  // the prototype's transfer: the buffer's own refuses (see `keep`)
  if (transferOf !== undefined && !(buffer as unknown as Transferable).detached) transferOf.call(buffer, 0)
}

/** Maps `size` bytes of `fd` shared and read-write. */
export const mapShared = (
  fd: number,
  size: number,
  options: { readonly address?: string | undefined } = {}
): Effect.Effect<Mapping, IpcError.IpcError> => fromNow(() => mapSharedNow(fd, size, options))

/** `mapShared`, now. */
export const mapSharedNow = (
  fd: number,
  size: number,
  options: { readonly address?: string | undefined } = {}
): Now<Mapping> => {
  const b = load()
  if (b instanceof IpcError.IpcError) return b
  const tooMany = tooManyMappings()
  if (tooMany !== undefined) return IpcError.make("NoSpace", `cannot map ${size} bytes: ${tooMany}`, options.address)
  const addr = b.mmap(null, size, PROT_READ | PROT_WRITE, b.flags.MAP_SHARED, fd, 0)
  if (addr === MAP_FAILED) {
    return systemError(b.errno(), "NoSpace", `cannot map ${size} bytes`, options.address)
  }
  mappedRanges++
  liveRanges++
  const keeper: Range = { addr, length: size }
  const buffer = keep(b.koffi.view(addr, size), keeper)
  unmapper.register(keeper, { addr, length: size })
  let released = false
  const subViews = new Set<ArrayBuffer>()
  const mapping: Mapping = {
    size,
    buffer,
    isReleased: () => released,
    subView: (offset, length) => {
      if (released) {
        return { buffer: new ArrayBuffer(0), release: () => {} }
      }
      // a view past the mapping would read (or fault on) whatever lies beyond it: never made
      if (!(offset >= 0 && length >= 0 && offset + length <= size)) {
        throw new RangeError(`a view of ${length} bytes at ${offset} is past a mapping of ${size}`)
      }
      const sub = keep(b.koffi.view(addr + BigInt(offset), length), keeper)
      subViews.add(sub)
      return {
        buffer: sub,
        release: () => {
          subViews.delete(sub)
          detach(sub)
        }
      }
    },
    release: () => {
      if (released) return
      released = true
      liveRanges--
      detach(buffer)
      for (const sub of subViews) detach(sub)
      subViews.clear()
      // swap the shared pages for private zero pages at the same address; if that fails the
      // shared pages stay mapped (still valid memory) until the finalizer unmaps the range
      b.mmap(
        addr,
        size,
        PROT_READ | PROT_WRITE,
        b.flags.MAP_PRIVATE | b.flags.MAP_ANONYMOUS | b.flags.MAP_FIXED,
        -1,
        0
      )
    }
  }
  return mapping
}
