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
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"

/**
 * Runs `f`, turning a thrown system error into an `IpcError` with `fallback`
 * as its reason; an `IpcError` thrown by `f` is returned as it is.
 */
export const attempt = <A>(
  f: () => A,
  fallback: IpcError.IpcErrorReason,
  detail: string,
  address?: string
): A | IpcError.IpcError => {
  try {
    return f()
  } catch (cause) {
    return IpcError.isIpcError(cause) ? cause : IpcError.fromSystemError(cause, fallback, detail, address)
  }
}

/** True for an `IpcError` value (the failure side of `attempt`). */
export const failed = (u: unknown): u is IpcError.IpcError => u instanceof IpcError.IpcError

/** The effective uid of this process (what owns the files it creates). */
const euid = (): number | undefined => RuntimeDir.userId()

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

/** Group and other write bits: never given to anything a channel makes. */
const OTHERS_WRITE = 0o022

/**
 * Why `mode` cannot be the `option` (`fileMode` or `dirMode`): not permission
 * bits (an integer from 0 to 0o777), not letting this user read and write
 * (and, for directories, search), or letting other users write (group or
 * other write bits: they could rewrite a stream, a cursor or a lock). An
 * `InvalidOption` naming the option and the value.
 */
export const invalidMode = (
  option: "fileMode" | "dirMode",
  mode: number,
  address?: string
): IpcError.IpcError | undefined => {
  const shown = TransportOptions.modeShown(mode)
  const own = option === "fileMode" ? 0o600 : 0o700
  const why = !Number.isInteger(mode) || mode < 0 || mode > 0o777
    ? "is not permission bits (an integer from 0 to 0o777)"
    : (mode & OTHERS_WRITE) !== 0
    ? "lets other users write what the channel makes (group or other write bits are refused)"
    : (mode & own) !== own
    ? `does not give this user ${option === "fileMode" ? "read and write" : "read, write and search"} access`
    : undefined
  return why === undefined
    ? undefined
    : IpcError.make(
      "InvalidOption",
      `${option} ${shown} ${why}: use e.g. ${option === "fileMode" ? "0o600 or 0o640" : "0o700 or 0o750"}`,
      address
    )
}

/** Checks the options are an object (`TransportOptions.notAnObject`), then `fileMode` and `dirMode` where given (see `invalidMode`). */
export const invalidModes = (
  options: { readonly fileMode?: number | undefined; readonly dirMode?: number | undefined },
  address?: string
): IpcError.IpcError | undefined =>
  TransportOptions.notAnObject(options, "the options", address) ??
    (options.fileMode === undefined ? undefined : invalidMode("fileMode", options.fileMode, address)) ??
    (options.dirMode === undefined ? undefined : invalidMode("dirMode", options.dirMode, address))

/** Throws `InvalidOption` for a mode with group or other write bits, before `openFile` or `makeDir` makes anything. */
const refuseWide = (mode: number, option: "fileMode" | "dirMode"): void => {
  if ((mode & OTHERS_WRITE) !== 0) throw invalidMode(option, mode)!
}

const CREATE_NEW = Fs.constants.O_CREAT | Fs.constants.O_EXCL

/**
 * Opens a file of a channel (`flags` as `Fs.constants`): never through a
 * symbolic link (`O_NOFOLLOW`), never blocking on a FIFO planted where the
 * file was expected (`O_NONBLOCK`, no effect on regular files), and only a
 * regular file that this user or root owns (`fstat` after the open). A file
 * created here (`O_CREAT | O_EXCL`) gets exactly `mode` (see `exactMode`).
 * Throws a system error (`EACCES` for a refusal, with a hint).
 */
export const openFile = (path: string, flags: number, mode?: number): number => {
  if ((flags & CREATE_NEW) === CREATE_NEW && mode !== undefined) refuseWide(mode, "fileMode")
  let fd: number
  try {
    fd = Fs.openSync(path, flags | NO_FOLLOW, mode)
  } catch (cause) {
    throw openFailure(cause, path)
  }
  try {
    checkOpened(fd, path)
    if ((flags & CREATE_NEW) === CREATE_NEW && mode !== undefined) exactMode(fd, mode)
  } catch (cause) {
    closeQuietly(fd)
    throw cause
  }
  return fd
}

/**
 * Gives the file or directory open at `fd`, just created with `mode`, exactly
 * `mode`. The umask only ever clears bits of what `open` / `mkdir` make, so
 * until this call it is narrower than asked, never wider. `mode` was checked
 * before the file was made (by `openFile` and `makeDir`; a caller that makes
 * the file itself passes a checked option, or a mode without group or other
 * write bits). Where the file system does not let modes be set (vfat, some
 * FUSE and CIFS mounts: `EPERM`, `ENOTSUP`), what it made is kept if it is
 * no wider than `mode`; a wider one is an error (thrown).
 */
export const exactMode = (fd: number, mode: number): void => {
  try {
    Fs.fchmodSync(fd, mode)
  } catch (cause) {
    const code = IpcError.errnoOf(cause)
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw cause
    if ((Fs.fstatSync(fd).mode & 0o7777 & ~mode) !== 0) throw cause
  }
}

/**
 * Creates the file `path` (it must not exist: never through a link) holding
 * `data`, with exactly the permission bits `mode` whatever the umask.
 */
export const createFile = (path: string, data: Uint8Array | string, mode: number): void => {
  const fd = openFile(path, Fs.constants.O_WRONLY | CREATE_NEW, mode)
  try {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data
    writeAllAt(fd, [bytes], 0)
  } finally {
    closeQuietly(fd)
  }
}

/**
 * The mode of a file that is `flock`ed (lock files, `writer.lock`, cursors):
 * `fileMode` without group and other bits. Whoever can open a file can hold
 * its lock, so another user let read a channel could otherwise stop its
 * writers, hold a role as if its process were the peer, or stand in for a
 * dead listener.
 */
export const lockedMode = (fileMode: number): number => fileMode & 0o600

/**
 * Takes group and other bits off the file open at `fd` (a lock file an earlier
 * version made with `fileMode`), where the file system allows; a file of
 * another owner is left as it is.
 */
export const narrowLocked = (fd: number): void => {
  try {
    const stat = Fs.fstatSync(fd)
    const mode = stat.mode & 0o777
    if ((mode & 0o077) !== 0 && stat.uid === process.geteuid?.()) Fs.fchmodSync(fd, mode & 0o600)
  } catch {
    // a file system that does not let modes be set: as it is
  }
}

/** The name `path` is written under before it is renamed into place: `<path>.<16 hex digits>.tmp`. */
export const tmpOf = (path: string): string => `${path}.${randomId()}.tmp`

const TMP = /\.[0-9a-f]{16}\.tmp$/

/** The name that `name`, a temporary name (`tmpOf`), is written for; `undefined` for any other name. */
export const tmpFor = (name: string): string | undefined => TMP.test(name) ? name.replace(TMP, "") : undefined

/** Writes a new file at `path`, whole or not at all (written aside, then renamed into place). */
export const writeNewFile = (path: string, data: Uint8Array | string, mode: number): void => {
  const tmp = tmpOf(path)
  try {
    createFile(tmp, data, mode)
    Fs.renameSync(tmp, path)
  } finally {
    Fs.rmSync(tmp, { force: true })
  }
}

/** Syncs the directory `path` to disk: the names created in it since survive a power loss. */
export const syncDirectory = (path: string): void => {
  const fd = Fs.openSync(path, Fs.constants.O_RDONLY | Fs.constants.O_DIRECTORY)
  try {
    Fs.fsyncSync(fd)
  } finally {
    Fs.closeSync(fd)
  }
}

/**
 * Creates the directory `path` (it must not exist) with exactly the
 * permission bits `mode` whatever the umask: made with `mode` (so narrower
 * at first, never wider), then opened without following links and set.
 */
export const makeDir = (path: string, mode: number): void => {
  refuseWide(mode, "dirMode")
  Fs.mkdirSync(path, { mode })
  const fd = Fs.openSync(path, Fs.constants.O_RDONLY | Fs.constants.O_DIRECTORY | NO_FOLLOW)
  try {
    exactMode(fd, mode)
  } finally {
    closeQuietly(fd)
  }
}

/**
 * Where the directory open at `fd` is reached by path through the descriptor (`/proc/self/fd/N`, Linux: what is
 * made there lands in that directory whatever is renamed in its place since), or undefined where it cannot be.
 */
export const throughDescriptor = (fd: number): string | undefined => {
  if (process.platform !== "linux") return undefined
  const through = `/proc/self/fd/${fd}`
  try {
    const reached = Fs.statSync(through, { bigint: true })
    const opened = Fs.fstatSync(fd, { bigint: true })
    if (reached.isDirectory() && reached.dev === opened.dev && reached.ino === opened.ino) return through
  } catch {
    // no /proc here, or not this process's
  }
  return undefined
}

/**
 * Reads a whole (small) file of a channel, opened as `openFile` does; at most `limit` bytes of it, for files of a
 * known small size (a marker, `connection.json`, a cursor, the writer state): one that another process made
 * huge (a sparse file of gigabytes costs it nothing) must not be read into memory, synchronously, whole.
 */
export const readFile = (path: string, limit = Number.POSITIVE_INFINITY): Buffer => {
  const fd = openFile(path, Fs.constants.O_RDONLY)
  try {
    const chunks: Array<Buffer> = []
    let position = 0
    while (position < limit) {
      const want = Math.min(64 * 1024, limit - position)
      const chunk = readAt(fd, want, position)
      chunks.push(chunk)
      position += chunk.byteLength
      if (chunk.byteLength < want) break
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
  } finally {
    closeQuietly(fd)
  }
}

/** Reads a whole file of a channel without blocking the event loop, opened as `openFile` does. */
export const readFileAsync = async (path: string): Promise<Buffer> => {
  let handle: Fs.promises.FileHandle
  try {
    handle = await Fs.promises.open(path, Fs.constants.O_RDONLY | NO_FOLLOW)
  } catch (cause) {
    throw openFailure(cause, path)
  }
  try {
    checkOpened(handle.fd, path)
    return await handle.readFile()
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

/** True while `path` names the file open at `fd` (it was not unlinked, or replaced, since). */
export const stillNames = (path: string, fd: number): boolean => {
  try {
    return Fs.fstatSync(fd).ino === Fs.lstatSync(path).ino
  } catch {
    return false
  }
}

/** Unlinks `path` if it still names the file open at `fd`: never a file someone else made there since. */
export const unlinkIfStill = (path: string, fd: number): void => {
  try {
    if (stillNames(path, fd)) Fs.unlinkSync(path)
  } catch {
    // gone already
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

let host: string | undefined

/**
 * This host, as 16 hex digits, for names that others sharing a directory
 * (another machine on NFS) read: a hash of the kernel's boot id
 * (`/proc/sys/kernel/random/boot_id`, new at every boot and shared by every
 * container of one kernel, whose pids are judged by their pid namespace), or
 * of the host name where there is none (macOS, FreeBSD). A pid and a start
 * time mean something only on the host, and in the boot, that wrote them.
 */
export const hostId = (): string => {
  if (host === undefined) {
    let source: string
    try {
      source = `boot:${Fs.readFileSync("/proc/sys/kernel/random/boot_id", "latin1").trim()}`
    } catch {
      source = `host:${Os.hostname()}`
    }
    host = Crypto.createHash("sha256").update(source).digest("hex").slice(0, 16)
  }
  return host
}

/** A random identifier: 16 hex digits. */
export const randomId = (): string => {
  const bytes = new Uint8Array(8)
  crypto.getRandomValues(bytes)
  let out = ""
  for (const b of bytes) out += b.toString(16).padStart(2, "0")
  return out
}
