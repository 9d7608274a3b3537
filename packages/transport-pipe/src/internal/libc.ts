/**
 * The only module of this package that makes native calls: libc through
 * koffi, loaded on first use. Each function is declared once with a typed
 * signature and wrapped so that callers get values or `IpcError`s, never
 * exceptions.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Native from "@effect-ipc/core/Native"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type KoffiModule from "koffi"
import * as Fs from "node:fs"

/** Credentials of the process at the other end of a Unix socket. */
export interface PeerCredentials {
  readonly pid: number | undefined
  readonly uid: number
  readonly gid: number
}

interface Bindings {
  readonly peerCredentials: (fd: number) => PeerCredentials | number
  readonly mkfifo: (path: string, mode: number) => number
  /** Sets a pipe's capacity (Linux F_SETPIPE_SZ); returns the new size, or -errno. */
  readonly setPipeSize: (fd: number, size: number) => number
  /** flock(2); returns 0 or the errno. */
  readonly flock: (fd: number, operation: number) => number
  /** Swaps two paths' files in one step (renameat2 RENAME_EXCHANGE, renamex_np RENAME_SWAP); returns 0 or the errno. */
  readonly exchange: (a: string, b: string) => number
}

const F_SETPIPE_SZ = 1031
const LOCK_EX = 2
const LOCK_NB = 4

const AT_FDCWD = -100
const RENAME_EXCHANGE = 2
const RENAME_SWAP = 2
const SOL_SOCKET = 1
const SO_PEERCRED = 17
const SOL_LOCAL = 0
const LOCAL_PEERPID = 2

// koffi's native module is loaded on first use (see Native): a machine without it
// gets a typed LibraryMissing from the calls that need it, not a failed import
const load = Native.loader<typeof KoffiModule>(import.meta.url).bindings(
  "cannot load libc",
  (koffi): Bindings | IpcError.IpcError => {
    if (process.platform === "linux") {
      const libc = koffi.load("libc.so.6")
      const Ucred = koffi.struct("effect_ipc_ucred", { pid: "int32", uid: "uint32", gid: "uint32" })
      const getsockopt = libc.func(
        "int getsockopt(int fd, int level, int name, _Out_ effect_ipc_ucred *value, _Inout_ uint32_t *length)"
      )
      const mkfifo = libc.func("int mkfifo(const char *path, uint32_t mode)")
      const fcntl = libc.func("int fcntl(int fd, int cmd, ...)")
      const flock = libc.func("int flock(int fd, int operation)")
      const renameat2 = libc.func(
        "int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)"
      )
      void Ucred
      return {
        peerCredentials: (fd) => {
          const value = { pid: 0, uid: 0, gid: 0 }
          const length = [12]
          const rc = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, value, length) as number
          return rc === 0 ? value : koffi.errno()
        },
        flock: (fd, operation) => (flock(fd, operation) as number) === 0 ? 0 : koffi.errno(),
        mkfifo: (path, mode) => (mkfifo(path, mode) as number) === 0 ? 0 : koffi.errno(),
        exchange: (a, b) => (renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) as number) === 0 ? 0 : koffi.errno(),
        setPipeSize: (fd, size) => {
          const rc = fcntl(fd, F_SETPIPE_SZ, "int", size) as number
          return rc >= 0 ? rc : -koffi.errno()
        }
      }
    }
    if (process.platform === "darwin") {
      const libc = koffi.load("libSystem.B.dylib")
      const getpeereid = libc.func("int getpeereid(int fd, _Out_ uint32_t *uid, _Out_ uint32_t *gid)")
      const getsockoptInt = libc.func(
        "int getsockopt(int fd, int level, int name, _Out_ int32_t *value, _Inout_ uint32_t *length)"
      )
      const mkfifo = libc.func("int mkfifo(const char *path, uint16_t mode)")
      const flock = libc.func("int flock(int fd, int operation)")
      const renamexNp = libc.func("int renamex_np(const char *from, const char *to, unsigned int flags)")
      return {
        flock: (fd, operation) => (flock(fd, operation) as number) === 0 ? 0 : koffi.errno(),
        exchange: (a, b) => (renamexNp(a, b, RENAME_SWAP) as number) === 0 ? 0 : koffi.errno(),
        peerCredentials: (fd) => {
          const uid = [0]
          const gid = [0]
          if ((getpeereid(fd, uid, gid) as number) !== 0) return koffi.errno()
          const pid = [0]
          const rc = getsockoptInt(fd, SOL_LOCAL, LOCAL_PEERPID, pid, [4]) as number
          return { pid: rc === 0 ? pid[0] : undefined, uid: uid[0]!, gid: gid[0]! }
        },
        mkfifo: (path, mode) => (mkfifo(path, mode) as number) === 0 ? 0 : koffi.errno(),
        // macOS pipes size themselves
        setPipeSize: () => 0
      }
    }
    return IpcError.make("UnsupportedPlatform", `no libc bindings for ${process.platform}`)
  }
)

/** Reads the peer's pid, uid and gid of a connected Unix socket (SO_PEERCRED / getpeereid). */
export const peerCredentials = (fd: number, address?: string): Effect.Effect<PeerCredentials, IpcError.IpcError> =>
  Effect.suspend(() => {
    const b = load()
    if (b instanceof IpcError.IpcError) return Effect.fail(b)
    const result = b.peerCredentials(fd)
    return typeof result === "number"
      ? Effect.fail(Native.errnoError(result, "Unknown", "cannot read the peer's credentials", address))
      : Effect.succeed(result)
  })

/** Creates a FIFO at `path` with `mode` (mkfifo); `shown`: `path` as messages name it. */
export const mkfifo = (
  path: string,
  mode: number,
  address?: string,
  shown: string = path
): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const b = load()
    if (b instanceof IpcError.IpcError) return Effect.fail(b)
    const errno = b.mkfifo(path, mode)
    return errno === 0
      ? Effect.void
      : Effect.fail(Native.errnoError(errno, "Open", `cannot create the FIFO ${shown}`, address))
  })

/**
 * Swaps the files at `a` and `b` in one step: each path names the other's
 * file after it, and nothing can come between (renameat2 RENAME_EXCHANGE on
 * Linux, renamex_np RENAME_SWAP on macOS). Where the system or the file
 * system cannot, the error's errno is ENOSYS, EINVAL or ENOTSUP. `shown`:
 * `a` and `b` as messages name them.
 */
export const exchange = (
  a: string,
  b: string,
  address?: string,
  shown: readonly [string, string] = [a, b]
): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const bindings = load()
    if (bindings instanceof IpcError.IpcError) return Effect.fail(bindings)
    const errno = bindings.exchange(a, b)
    return errno === 0
      ? Effect.void
      : Effect.fail(Native.errnoError(errno, "Open", `cannot swap ${shown[0]} and ${shown[1]}`, address))
  })

/** /proc/sys/fs/pipe-max-size: the largest pipe an unprivileged process may ask for (Linux), read once. */
let pipeMaxSize: number | undefined
const pipeMax = (): number => {
  if (pipeMaxSize === undefined) {
    try {
      pipeMaxSize = Number.parseInt(Fs.readFileSync("/proc/sys/fs/pipe-max-size", "utf8"), 10) || 0
    } catch {
      pipeMaxSize = 0
    }
  }
  return pipeMaxSize
}

/**
 * Enlarges a pipe's kernel buffer to `size` bytes (Linux; capped by
 * /proc/sys/fs/pipe-max-size: a larger size the kernel refuses is asked for
 * as that). A large pipe lets a big message cross with few wake-ups. Returns
 * the size obtained; failure is not an error (the default size still works),
 * so it answers 0 then.
 */
export const setPipeSize = (fd: number, size: number): Effect.Effect<number> =>
  Effect.sync(() => {
    const b = load()
    if (b instanceof IpcError.IpcError) return 0
    // fcntl takes an int: a larger size (Infinity, 2 ** 40) passed as is wrapped to a small one (4 KiB, 8 KiB)
    const asked = Math.min(size, 0x7fffffff)
    const got = b.setPipeSize(fd, asked)
    if (got >= 0) return got
    const max = pipeMax()
    return max > 0 && max < asked ? Math.max(0, b.setPipeSize(fd, max)) : 0
  })

/**
 * Takes an exclusive advisory lock (flock) on the file `lockFile` (created
 * mode 0600 if missing, never through a link) for the duration of `body`;
 * the holder removes the file before releasing it, and a lock taken on a file
 * already removed is dropped and tried again, so lock files do not pile up.
 * The lock is tried without blocking (the event loop never waits) and
 * retried for a few seconds.
 */
export const withLockFile = <A, E, R>(
  lockFile: string,
  raw: string,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E | IpcError.IpcError, R> => {
  const busy = (detail: string) => IpcError.fromErrno("EAGAIN", "AddressInUse", detail, raw)
  const lockOnce = Effect.suspend((): Effect.Effect<number, IpcError.IpcError> => {
    const b = load()
    if (b instanceof IpcError.IpcError) return Effect.fail(b)
    let fd: number
    try {
      fd = Fs.openSync(lockFile, Fs.constants.O_RDWR | Fs.constants.O_CREAT | Fs.constants.O_NOFOLLOW, 0o600)
    } catch (cause) {
      return Effect.fail(IpcError.fromSystemError(cause, "Open", `cannot open the lock file ${lockFile}`, raw))
    }
    const errno = b.flock(fd, LOCK_EX | LOCK_NB)
    if (errno !== 0) {
      Fs.closeSync(fd)
      return Effect.fail(Native.errnoError(errno, "AddressInUse", `cannot lock ${lockFile}`, raw))
    }
    let current = false
    try {
      const held = Fs.fstatSync(fd)
      const named = Fs.lstatSync(lockFile)
      current = held.dev === named.dev && held.ino === named.ino
    } catch {
      // removed by its last holder: try again
    }
    if (current) return Effect.succeed(fd)
    Fs.closeSync(fd)
    return Effect.fail(busy(`${lockFile} was released while we locked it`))
  })
  return Effect.acquireUseRelease(
    lockOnce.pipe(
      Effect.retry({
        schedule: Schedule.spaced("5 millis").pipe(Schedule.upTo({ times: 1000 })),
        while: (error) => error.errno === "EWOULDBLOCK" || error.errno === "EAGAIN" || error.errno === "EINTR"
      })
    ),
    () => body,
    (fd) =>
      Effect.sync(() => {
        try {
          Fs.unlinkSync(lockFile)
        } catch {
          // gone already
        }
        Fs.closeSync(fd)
      })
  )
}
