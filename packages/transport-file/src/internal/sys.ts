/**
 * Small synchronous file-system helpers for the log: each maps Node's
 * exceptions to an `IpcError` value (never thrown). They are used on open
 * descriptors of regular files with bounded sizes, where a system call is a
 * page-cache copy of a few microseconds; anything large goes through libuv's
 * threadpool in the callers.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Process from "@effect-ipc/core/Process"
import * as Fs from "node:fs"

/** Runs `f`, turning a thrown system error into an `IpcError` with `fallback` as its reason. */
export const attempt = <A>(
  f: () => A,
  fallback: IpcError.IpcErrorReason,
  detail: string,
  address?: string
): A | IpcError.IpcError => {
  try {
    return f()
  } catch (cause) {
    return IpcError.fromSystemError(cause, fallback, detail, address)
  }
}

/** True for an `IpcError` value (the failure side of `attempt`). */
export const failed = (u: unknown): u is IpcError.IpcError => u instanceof IpcError.IpcError

/** The effective uid of this process (what owns the files it creates). */
const euid = (): number | undefined => process.geteuid?.()

/** True when `uid` may own what a channel uses: this process's user, or root. */
export const trustedOwner = (uid: number): boolean => {
  const me = euid()
  return me === undefined || uid === me || uid === 0
}

/** The hint of a refusal for something another user controls. */
export const HINT_OWNER =
  "use a directory that you own and that no other user can write (e.g. mkdir -m 700), not one another user controls"

/** A system-style error (`EACCES`, so `PermissionDenied`) saying why `path` is refused, with a one-line hint. */
export const refusal = (what: string, hint: string): Error =>
  Object.assign(new Error(`${what}; hint: ${hint}`), { code: "EACCES" })

const NO_FOLLOW = Fs.constants.O_NOFOLLOW | Fs.constants.O_NONBLOCK

/** Why an `open` with `O_NOFOLLOW | O_NONBLOCK` failed, as a refusal when something else sits at `path`. */
const openFailure = (cause: unknown, path: string): unknown => {
  switch (IpcError.errnoOf(cause)) {
    case "ELOOP":
      return refusal(`${path} is a symbolic link`, "remove it: a channel never follows links to its files")
    case "EISDIR":
    case "ENXIO": // a FIFO without a reader, opened for writing
      return refusal(`${path} is not a regular file`, "remove it: only effect-ipc creates files in a channel directory")
    default:
      return cause
  }
}

/** Checks what `fd` (opened at `path`) is: a regular file owned by this user or root; throws a refusal otherwise. */
const checkOpened = (fd: number, path: string): void => {
  const stat = Fs.fstatSync(fd)
  if (!stat.isFile()) {
    throw refusal(`${path} is not a regular file`, "remove it: only effect-ipc creates files in a channel directory")
  }
  if (!trustedOwner(stat.uid)) throw refusal(`${path} is owned by uid ${stat.uid}`, HINT_OWNER)
}

/**
 * Opens a file of a channel (`flags` as `Fs.constants`): never through a
 * symbolic link (`O_NOFOLLOW`), never blocking on a FIFO planted where the
 * file was expected (`O_NONBLOCK`, no effect on regular files), and only a
 * regular file that this user or root owns (`fstat` after the open).
 * Throws a system error (`EACCES` for a refusal, with a hint).
 */
export const openFile = (path: string, flags: number, mode?: number): number => {
  let fd: number
  try {
    fd = Fs.openSync(path, flags | NO_FOLLOW, mode)
  } catch (cause) {
    throw openFailure(cause, path)
  }
  try {
    checkOpened(fd, path)
  } catch (cause) {
    closeQuietly(fd)
    throw cause
  }
  return fd
}

/** Reads a whole (small) file of a channel, opened as `openFile` does. */
export const readFile = (path: string): Buffer => {
  const fd = openFile(path, Fs.constants.O_RDONLY)
  try {
    const chunks: Array<Buffer> = []
    let position = 0
    while (true) {
      const chunk = readAt(fd, 64 * 1024, position)
      chunks.push(chunk)
      position += chunk.byteLength
      if (chunk.byteLength < 64 * 1024) break
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
  } finally {
    closeQuietly(fd)
  }
}

/** Reads a whole file of a channel as text without blocking the event loop, opened as `openFile` does. */
export const readFileAsync = async (path: string): Promise<string> => {
  let handle: Fs.promises.FileHandle
  try {
    handle = await Fs.promises.open(path, Fs.constants.O_RDONLY | NO_FOLLOW)
  } catch (cause) {
    throw openFailure(cause, path)
  }
  try {
    checkOpened(handle.fd, path)
    return await handle.readFile("utf8")
  } finally {
    await handle.close()
  }
}

/** Reads exactly `length` bytes at `position` (fewer only at end of file). */
export const readAt = (fd: number, length: number, position: number): Buffer => {
  const out = Buffer.allocUnsafe(length)
  let got = 0
  while (got < length) {
    const n = Fs.readSync(fd, out, got, length - got, position + got)
    if (n === 0) break
    got += n
  }
  return got === length ? out : out.subarray(0, got)
}

/** Writes all of `buffers` at `position`. */
export const writeAllAt = (fd: number, buffers: ReadonlyArray<Uint8Array>, position: number): void => {
  let pending = buffers.filter((b) => b.byteLength > 0)
  let at = position
  while (pending.length > 0) {
    let n = Fs.writevSync(fd, pending as Array<NodeJS.ArrayBufferView>, at)
    at += n
    const rest: Array<Uint8Array> = []
    for (const b of pending) {
      if (n >= b.byteLength) {
        n -= b.byteLength
      } else {
        rest.push(n === 0 ? b : b.subarray(n))
        n = 0
      }
    }
    pending = rest
  }
}

/** Closes `fd`, ignoring errors (it is being let go). */
export const closeQuietly = (fd: number | undefined): void => {
  if (fd === undefined) return
  try {
    Fs.closeSync(fd)
  } catch {
    // already closed
  }
}

/** True when `path` exists (any kind of file). */
export const exists = (path: string): boolean => {
  try {
    Fs.lstatSync(path)
    return true
  } catch {
    return false
  }
}

/**
 * Whether the process that wrote a record holding only its pid (ipckit's lock
 * file) may still run: a process has the pid (EPERM: one of another user's),
 * and, when `recordedAt` (the record's mtime, ms since the epoch) is given, it
 * started before then; one that started later only inherited the pid.
 */
export const isAlive = (pid: number, recordedAt?: number): boolean => Process.isAlive(Process.fromPid(pid), recordedAt)

/** A random identifier: 16 hex digits. */
export const randomId = (): string => {
  const bytes = new Uint8Array(8)
  crypto.getRandomValues(bytes)
  let out = ""
  for (const b of bytes) out += b.toString(16).padStart(2, "0")
  return out
}
