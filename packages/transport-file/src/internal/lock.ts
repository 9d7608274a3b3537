/**
 * Lock files held with `flock(2)`: the kernel releases them when their holder
 * dies, so a dead holder's lock is free at once and a live holder's lock is
 * never taken. A held lock file also records its holder (`pid token`) for
 * humans and for `inspect`. Taking a lock checks afterwards that the path
 * still names the locked file, so a lock file unlinked by its previous owner
 * can never be "held" by two processes. Lock files are opened as every file
 * of a channel is (`Sys.openFile`): never through a link, never blocking on
 * a FIFO, only a regular file of this user or root.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Zlib from "node:zlib"
import * as Libc from "./libc.ts"
import * as Sys from "./sys.ts"

/**
 * Retries `take` while it fails with `AddressInUse`, for up to `within` (200 ms by default): a prober (a
 * peer's liveness check, a dialer looking for its listener, `file inspect`) shares a lock for microseconds,
 * and a take that met one would otherwise refuse as if the lock's real holder were there.
 */
export const retryWhileProbed = <A>(
  take: Effect.Effect<A, IpcError.IpcError>,
  within: Duration.Input = "200 millis"
): Effect.Effect<A, IpcError.IpcError> =>
  Effect.suspend(() => {
    // timed by the process's own clock and timers, as the writer's waits are: a user's `TestClock` (tests of
    // their own that meet a lock held in earnest) must not hold a take that is refused for ever
    const deadline = performance.now() + Duration.toMillis(Duration.fromInputUnsafe(within))
    const attempt = (): Effect.Effect<A, IpcError.IpcError> =>
      Effect.catchIf(
        take,
        (error) => error.reason._tag === "AddressInUse" && performance.now() < deadline,
        () => Effect.andThen(pause(5), Effect.suspend(attempt))
      )
    return attempt()
  })

/** Waits `ms` on a timer of the process's own. */
const pause = (ms: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), ms)
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * Runs `f` holding an exclusive `flock` on the directory `dir` itself (no file is made in it): listeners take turns
 * there to change a listener directory's marker, so that one never writes a marker another has just removed. Waits
 * while another holds it (for microseconds), up to `within` ms, then runs `f` anyway, as it does when the directory
 * cannot be opened or locked, and at once when only other users' processes hold it (a directory others may read,
 * they may lock: each listen and close of this user's waited `within` behind them).
 */
export const guarding = <A>(dir: string, f: () => A, within = 1000): Effect.Effect<A> =>
  Effect.suspend(() => {
    let fd: number
    try {
      fd = Fs.openSync(dir, Fs.constants.O_RDONLY | Fs.constants.O_DIRECTORY | Fs.constants.O_NOFOLLOW)
    } catch {
      return Effect.sync(f)
    }
    const deadline = performance.now() + within
    let judged = false
    const attempt = (): Effect.Effect<A> => {
      if (Libc.tryLock(fd, "exclusive") !== false || performance.now() >= deadline) return Effect.sync(f)
      if (!judged) {
        judged = true
        if (heldByOthersOnly(fd)) return Effect.sync(f)
      }
      return Effect.andThen(pause(1), Effect.suspend(attempt))
    }
    return Effect.ensuring(Effect.suspend(attempt), Effect.sync(() => Sys.closeQuietly(fd)))
  })

/**
 * Whether the `flock`s on the file open at `fd` are all held by processes of other users, as `/proc/locks` and
 * `/proc/<pid>` say; false when it cannot be told (no /proc, a holder in another pid namespace, not Linux).
 */
const heldByOthersOnly = (fd: number): boolean => {
  const uid = process.getuid?.()
  if (uid === undefined || process.platform !== "linux") return false
  try {
    const stat = Fs.fstatSync(fd)
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF": the holder's pid, the device (major:minor, hex) and inode
    const major = (stat.dev >>> 8) & 0xfff
    const minor = (stat.dev & 0xff) | ((stat.dev >>> 12) & 0xfff00)
    const file = `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}:${stat.ino}`
    let holders = 0
    for (const line of Fs.readFileSync("/proc/locks", "utf8").split("\n")) {
      // a waiter's line has "->" after the number: not a holder
      const fields = line.trim().split(/\s+/)
      if (fields[1] !== "FLOCK" || fields[5] !== file) continue
      if (!/^[1-9][0-9]*$/.test(fields[4] ?? "")) return false
      if (Fs.statSync(`/proc/${fields[4]}`).uid === uid) return false
      holders++
    }
    return holders > 0
  } catch {
    return false
  }
}

/** A lock this process holds. */
export interface HeldLock {
  readonly path: string
  readonly fd: number
  /** The owner text written in it (`pid token`). */
  readonly owner: string
}

/**
 * Opens the lock file at `path`, creating it with exactly `Sys.lockedMode(mode)`
 * (its owner only) if it is missing (an existing one is narrowed to that);
 * `"vanished"` when it was removed between the two tries.
 */
export const openOrCreate = (path: string, mode: number): number | "vanished" => {
  const opened = openOrMake(path, mode)
  return opened === "vanished" ? opened : opened.fd
}

/** `openOrCreate`, saying whether this call created the file. */
const openOrMake = (path: string, mode: number): { readonly fd: number; readonly created: boolean } | "vanished" => {
  try {
    const fd = Sys.openFile(
      path,
      Fs.constants.O_RDWR | Fs.constants.O_CREAT | Fs.constants.O_EXCL,
      Sys.lockedMode(mode)
    )
    return { fd, created: true }
  } catch (cause) {
    if (IpcError.errnoOf(cause) !== "EEXIST") throw cause
  }
  let fd: number
  try {
    fd = Sys.openFile(path, Fs.constants.O_RDWR)
  } catch (cause) {
    if (IpcError.errnoOf(cause) === "ENOENT") return "vanished"
    throw cause
  }
  Sys.narrowLocked(fd)
  return { fd, created: false }
}

/** Takes the lock at `path` (creating the file with exactly `mode`) if nobody holds it; `"busy"` otherwise. */
export const tryTake = (
  path: string,
  mode: number,
  owner: string,
  address?: string
): HeldLock | "busy" | IpcError.IpcError => {
  for (let attempt = 0; attempt < 5; attempt++) {
    const opened = Sys.attempt(
      () => openOrMake(path, mode),
      "Open",
      `cannot open the lock file ${path}`,
      address
    )
    if (Sys.failed(opened)) return opened
    if (opened === "vanished") continue
    const fd = opened.fd
    const taken = Libc.tryLock(fd, "exclusive")
    if (taken !== true) {
      Sys.closeQuietly(fd)
      return taken === false ? "busy" : taken
    }
    // the file may have been unlinked (and replaced) between our open and our lock
    if (!Sys.stillNames(path, fd)) {
      Sys.closeQuietly(fd)
      continue
    }
    const written = Sys.attempt(
      () => {
        Fs.ftruncateSync(fd, 0)
        Fs.writeSync(fd, `${owner}\n`, 0)
      },
      "Write",
      `cannot write the lock file ${path}`,
      address
    )
    if (Sys.failed(written)) {
      // one this call made goes (unlinked while held, as `release` does): an empty lock file, on a full disk, was
      // left behind, and kept a listener's directory from every later listen
      if (opened.created) release({ path, fd, owner }, true)
      else Sys.closeQuietly(fd)
      return written
    }
    heldHere.add(owner)
    return { path, fd, owner }
  }
  return "busy"
}

/** The owner texts of the locks this process holds (`tryTake`'s, until `release`). */
const heldHere = new Set<string>()

/**
 * Whether `session` is a lock this process holds: not only its pid (a process of another pid namespace sharing the
 * directory, a container's, may have the same one), its token too.
 */
export const isHeldHere = (session: Session): boolean => heldHere.has(`${session.pid} ${session.token}`)

/** Releases a held lock; with `remove`, unlinks the file first (only safe where takers re-check, as `tryTake` does). */
export const release = (lock: HeldLock, remove = false): void => {
  heldHere.delete(lock.owner)
  if (remove) {
    try {
      Fs.rmSync(lock.path, { force: true })
    } catch {
      // already gone
    }
  }
  Sys.closeQuietly(lock.fd)
}

/** Empties the owner text of a lock still held (best effort): no session of the file's is to be read there. */
export const clearOwner = (lock: HeldLock): void => {
  try {
    Fs.ftruncateSync(lock.fd, 0)
  } catch {
    // the text stays: at worst, read as a session that came and went
  }
}

/** Whether someone holds the lock at `path`: `"held"`, `"free"` (nobody: its holder is gone) or `"missing"`. */
export const probe = (path: string): "held" | "free" | "missing" | IpcError.IpcError => {
  let fd: number
  try {
    fd = Sys.openFile(path, Fs.constants.O_RDONLY)
  } catch (cause) {
    return IpcError.errnoOf(cause) === "ENOENT"
      ? "missing"
      : IpcError.fromSystemError(cause, "Open", `cannot open the lock file ${path}`)
  }
  try {
    const free = Libc.tryLock(fd, "shared")
    if (Sys.failed(free)) return free
    return free ? "free" : "held"
  } finally {
    Sys.closeQuietly(fd)
  }
}

/** The token a channel's remover writes in the role locks it takes for a moment (no session of the channel). */
export const REMOVER = "removing"

/**
 * Whether `text` is just what `tryTake` writes in a lock file for an owner `pid token` whose token is 16 hex digits
 * (`Sys.randomId`, as a listener's is), and nothing else.
 */
export const isOwnerText = (text: string): boolean => /^[1-9][0-9]* [0-9a-f]{16}\n$/.test(text)

/** The token of an owner text (`pid token`): what tells one session holding a lock from the next. */
export const tokenOf = (owner: string): string => owner.trim().split(/\s+/)[1] ?? ""

// an owner text is a pid and a short token: more is not ours, and is not read (a lock file is read on every check)
const OWNER_MAX_BYTES = 256

/**
 * The text of the lock file at `path` (at most one byte more than an owner text may hold: a longer file is not
 * one), if it is a regular file that can be read; `""` when it is empty (its holder has not written its text yet,
 * or emptied it as its open failed).
 */
export const ownerText = (path: string): string | undefined => {
  try {
    const fd = Sys.openFile(path, Fs.constants.O_RDONLY)
    try {
      return Sys.readAt(fd, OWNER_MAX_BYTES + 1, 0).toString("latin1")
    } finally {
      Sys.closeQuietly(fd)
    }
  } catch {
    return undefined
  }
}

/** The check digits of a session's owner text: the CRC-32 of `pid random`, 8 hex digits. */
const sessionCheck = (pid: number, random: string): string =>
  Zlib.crc32(`${pid} ${random}`).toString(16).padStart(8, "0")

/**
 * The owner text of a role's session (`pid token`): a token of 8 random hex digits and 8 check digits over the
 * text, so that a lock file damaged in place (bytes overwritten, cut, grown) is never read as another session's.
 */
export const sessionOwner = (pid: number): string => {
  const random = Sys.randomId().slice(0, 8)
  return `${pid} ${random}${sessionCheck(pid, random)}`
}

const SESSION_TEXT = /^([1-9][0-9]{0,9}) ([0-9a-f]{8})([0-9a-f]{8})\n$/

/** What a lock file's owner text (`pid token`) names (see `session`). */
export interface Session {
  readonly pid: number
  readonly token: string
  /** The whole file is a `sessionOwner` text whose check holds. */
  readonly checked: boolean
  /** An owner text as `tryTake` writes them (`isOwnerText`), checked or not. */
  readonly shaped: boolean
}

/**
 * The owner a lock file's `text` names (`pid token`), and whether it is a session's own (`checked`): the whole text
 * a `sessionOwner` text whose check holds. A damaged text (or an older writer's, whose token has no check) is not
 * `checked`, and names no session; `shaped` says whether it is still an owner text as `tryTake` writes them
 * (`isOwnerText`: an older writer's, or damage that kept the shape). Undefined when the text names no pid.
 */
export const sessionOf = (text: string): Session | undefined => {
  const [pid, token] = text.trim().split(/\s+/)
  const n = Number(pid)
  if (!(Number.isInteger(n) && n > 0)) return undefined
  const match = SESSION_TEXT.exec(text)
  const checked = match !== null && Number(match[1]) === n && match[3] === sessionCheck(n, match[2]!)
  return { pid: n, token: token ?? "", checked, shaped: checked || isOwnerText(text) }
}

/** The owner the lock file at `path` names (`sessionOf` its `ownerText`), if it can be read and names one. */
export const session = (path: string): Session | undefined => {
  const read = ownerText(path)
  return read === undefined ? undefined : sessionOf(read)
}
