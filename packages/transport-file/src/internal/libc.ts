/**
 * The only module of this package that makes native calls: `flock(2)` from
 * libc through koffi, loaded on first use. Node has no advisory file locks of
 * its own, and `flock` is what makes the log's locks safe: the kernel drops a
 * lock the moment its holder dies (even by `kill -9`), across pid namespaces,
 * and a second open of the same file conflicts even inside one process.
 *
 * Every call is non-blocking (`LOCK_NB`): nothing here ever waits, on the JS
 * thread or on libuv's threadpool. Callers get plain values or `IpcError`s,
 * never exceptions.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Native from "@effect-ipc/core/Native"
import type KoffiModule from "koffi"

const LOCK_SH = 1
const LOCK_EX = 2
const LOCK_NB = 4
const LOCK_UN = 8

interface Bindings {
  readonly flock: (fd: number, operation: number) => number
  readonly errno: () => number
}

// koffi is required on first use (see Native), never by importing this package
const load = Native.loader<typeof KoffiModule>(import.meta.url).bindings(
  `cannot load ${Native.libcName() ?? "libc"} for flock`,
  (koffi): Bindings | IpcError.IpcError => {
    const name = Native.libcName()
    if (name === undefined) {
      return IpcError.make("UnsupportedPlatform", `file locks (flock) are not available on ${process.platform}`)
    }
    const flock = koffi.load(name).func("int flock(int fd, int operation)") as (fd: number, operation: number) => number
    return { flock, errno: () => koffi.errno() }
  }
)

/** EWOULDBLOCK or EAGAIN (the same number almost everywhere): another open file description holds the lock. */
const wouldBlock = new Set([Native.errnoNumber("EWOULDBLOCK"), Native.errnoNumber("EAGAIN")])

const failure = (errno: number, detail: string): IpcError.IpcError => Native.errnoError(errno, "Unknown", detail)

/** Checks that flock can be loaded here; the error says why not (`LibraryMissing`, `UnsupportedPlatform`). */
export const available = (): IpcError.IpcError | undefined => {
  const b = load()
  return b instanceof IpcError.IpcError ? b : undefined
}

/**
 * Tries to take the lock of `fd` without waiting: `true` when taken, `false`
 * when another open file description holds a conflicting lock.
 */
export const tryLock = (fd: number, mode: "exclusive" | "shared"): boolean | IpcError.IpcError => {
  const b = load()
  if (b instanceof IpcError.IpcError) return b
  if (b.flock(fd, (mode === "exclusive" ? LOCK_EX : LOCK_SH) | LOCK_NB) === 0) return true
  const errno = b.errno()
  return wouldBlock.has(errno) ? false : failure(errno, "flock failed")
}

/** Releases the lock of `fd` (closing the descriptor does too). */
export const unlock = (fd: number): IpcError.IpcError | undefined => {
  const b = load()
  if (b instanceof IpcError.IpcError) return b
  return b.flock(fd, LOCK_UN) === 0 ? undefined : failure(b.errno(), "flock(LOCK_UN) failed")
}
