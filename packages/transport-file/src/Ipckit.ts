/**
 * ipckit's `FileChannel`, file for file, so that an existing ipckit backend
 * (Rust or Python) or a JavaScript frontend reading its files can talk to an
 * effect-ipc process:
 *
 * ```text
 * {dir}/
 *   backend_to_frontend.json   the backend writes, the frontend reads (a JSON array of messages)
 *   frontend_to_backend.json   the frontend writes, the backend reads
 *   backend_to_frontend.lock   held while a writer rewrites the file (its pid and a newline)
 *   frontend_to_backend.lock
 *   .channel_info              {"created": ms, "protocol": "file-ipc", "version": "1.0"}
 * ```
 *
 * Writing follows ipckit exactly: create the `.lock` file exclusively with
 * the pid, read the array, append, keep the last 100 messages, write
 * `<name>.tmp` (serde's pretty format) and rename it over the file, remove
 * the lock. Messages are `Messages.Message` (ipckit's `FileMessage`).
 *
 * Where ipckit is careless, this side is not: it never breaks a lock whose
 * holder is alive (ipckit breaks any lock older than 5 s; here a lock is
 * taken over only when the pid it holds is dead, or when it is empty (zero
 * bytes) and older than 5 s; one holding anything else is never broken),
 * never overwrites a file it could not parse, keeps other writers'
 * elements byte for byte, never drops what arrives while it waits for a
 * response, delivers each message once (by id, not by timestamp) and keeps
 * its read position in `.effect-ipc-<role>.cursor` so a restart resumes.
 *
 * **The seed's limits still apply in this mode**: each file keeps only the
 * last `keep` (100) messages, so a reader that falls further behind loses
 * messages (this side logs a warning when it sees that it did); every send
 * rewrites the whole file; processes sharing the directory must share a pid
 * namespace (lock liveness is judged by pid); there is no way to tell that
 * the other side has died. Use `FileChannel` (the native logs) where both
 * sides are effect-ipc.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Observability from "@effect-ipc/core/Observability"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as JsonArray from "./internal/jsonArray.ts"
import * as Layout from "./internal/layout.ts"
import * as Lock from "./internal/lock.ts"
import * as Sys from "./internal/sys.ts"
import * as Wake from "./internal/wake.ts"
import * as Log from "./Log.ts"
import * as Messages from "./Messages.ts"

/** A role: `backend` or `frontend`. */
export type Role = "backend" | "frontend"

/** Options of the ipckit mode. */
export interface IpckitOptions extends Wake.WatchOptions {
  /** Messages kept in a file (ipckit: 100). */
  readonly keep?: number | undefined
  /** How long a send waits for a live writer's lock before failing with `Timeout` (default 5 s). */
  readonly lockTimeout?: Duration.Input | undefined
  /** Age after which an empty lock file (its writer died before writing its pid) is stale (default 5 s). */
  readonly staleAge?: Duration.Input | undefined
  /** Keep the read position across restarts in `.effect-ipc-<role>.cursor` (default true). */
  readonly durableCursor?: boolean | undefined
  /** Permission bits of new files (default 0o600; a rewritten file keeps its own, less group and other write). */
  readonly fileMode?: number | undefined
  /** Permission bits of the directory if it is created (default 0o700). */
  readonly dirMode?: number | undefined
}

/** ipckit's limit on the messages a file keeps. */
export const KEEP = 100

const streamOf = (from: Role) => from === "backend" ? "backend_to_frontend" : "frontend_to_backend"

/** The files of an ipckit channel directory. */
export const paths = (dir: string) => {
  const file = (from: Role, ext: string) => Path.join(dir, `${streamOf(from)}.${ext}`)
  return {
    dir,
    info: Path.join(dir, ".channel_info"),
    /** The JSON message file `from` writes. */
    messages: (from: Role) => file(from, "json"),
    /** The lock guarding that message file. */
    lock: (from: Role) => file(from, "lock"),
    /** The temporary file `from` writes before renaming it over the message file. */
    tmp: (from: Role) => file(from, "tmp"),
    /** Where `reader` keeps its read position. */
    cursor: (reader: Role) => Path.join(dir, `.effect-ipc-${reader}.cursor`),
    breaker: Path.join(dir, ".effect-ipc-breaker.lock")
  }
}

/** The `.channel_info` text ipckit writes (serde_json, keys sorted, pretty). */
export const channelInfo = (created: number): string =>
  `{\n  "created": ${created},\n  "protocol": "file-ipc",\n  "version": "1.0"\n}`

const other = (role: Role): Role => role === "backend" ? "frontend" : "backend"

const systemError = (cause: unknown, detail: string, address: string) =>
  IpcError.fromSystemError(cause, "Open", detail, address)

/**
 * Prepares `dir` as `FileChannel::new` does: creates the directory, the
 * `.channel_info` and both message files (`[]`) if they are missing.
 */
export const initialize = (dir: string, options: IpckitOptions = {}): Effect.Effect<void, IpcError.IpcError> =>
  Effect.try({
    try: () => {
      const invalid = Layout.invalidDir(dir) ?? Sys.invalidModes(options, dir)
      if (invalid !== undefined) throw invalid
      const p = paths(dir)
      const made = Layout.ensureDir(dir, options.dirMode ?? Log.defaults.dirMode, dir)
      if (Sys.failed(made)) throw made
      // an effect-ipc channel's or listener's directory is not an ipckit one: ipckit's files there would
      // keep `FileChannel.remove` (or the listener's clean-up) from it, as the roles refuse ipckit's
      const marker = Layout.loadMarker(dir)
      if (Sys.failed(marker)) throw marker
      if (marker !== undefined) {
        throw IpcError.make(
          "AddressInUse",
          `${dir} is an effect-ipc ${marker.kind} directory, not an ipckit channel directory: nothing in it was touched`,
          dir
        )
      }
      const mode = options.fileMode ?? Log.defaults.fileMode
      // written aside and linked into place: a full disk (`NoSpace`) leaves no empty file behind. A file system
      // without hard links (vfat, exFAT, some FUSE and SMB mounts, where ipckit's channels work) gets the file
      // created in place, exclusively, as before
      const noHardLinks = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV"])
      const create = (path: string, text: string) => {
        const tmp = Sys.tmpOf(path)
        try {
          Sys.createFile(tmp, text, mode)
          try {
            Fs.linkSync(tmp, path)
          } catch (cause) {
            if (!noHardLinks.has(IpcError.errnoOf(cause) ?? "")) throw cause
            Sys.createFile(path, text, mode)
          }
        } catch (cause) {
          if (IpcError.errnoOf(cause) !== "EEXIST") throw cause
        } finally {
          Fs.rmSync(tmp, { force: true })
        }
      }
      try {
        create(p.info, channelInfo(Date.now()))
        create(p.messages("backend"), "[]")
        create(p.messages("frontend"), "[]")
      } catch (cause) {
        // the directories it made go again, while empty (nothing of it, or of a peer's, is in them)
        Layout.unmakeDirs(made)
        throw cause
      }
    },
    catch: (cause) =>
      IpcError.isIpcError(cause) ? cause : systemError(cause, "cannot prepare the ipckit channel directory", dir)
  })

// ---- ipckit's lock file --------------------------------------------------------------------

interface LockSeen {
  readonly text: string
  readonly pid: number | undefined
  readonly ino: number
  readonly ageMs: number
}

/** The pid a lock file's text names (ipckit writes the pid and a newline); `undefined` when it names none. */
const pidOf = (text: string): number | undefined => {
  const digits = /^\s*(\d{1,10})\s*$/.exec(text)?.[1]
  const pid = digits === undefined ? undefined : Number(digits)
  return pid !== undefined && pid >= 1 && pid <= 0x7fff_ffff ? pid : undefined
}

/** The lock file at `path` as it is now: `undefined` when there is none, an error when what is there is refused. */
const look = (path: string): LockSeen | undefined | IpcError.IpcError => {
  let fd: number | undefined
  try {
    fd = Sys.openFile(path, Fs.constants.O_RDONLY)
    const stat = Fs.fstatSync(fd)
    const text = Sys.readAt(fd, Math.min(stat.size, Layout.SMALL_FILE_MAX_BYTES), 0).toString("utf8")
    return { text, pid: pidOf(text), ino: stat.ino, ageMs: Date.now() - stat.mtimeMs }
  } catch (cause) {
    return IpcError.errnoOf(cause) === "ENOENT" ? undefined : systemError(cause, "cannot read the lock", path)
  } finally {
    Sys.closeQuietly(fd)
  }
}

/**
 * Removes a lock file judged stale, if it is still the one judged: breakers
 * among effect-ipc processes take turns (a kernel lock on a side file, made
 * with `mode` less group and other bits like every file we lock, and removed again), so two of them can
 * never both remove a lock and then both take one.
 */
const breakStale = (lockPath: string, breaker: string, seen: LockSeen, mode: number): boolean => {
  const held = Lock.tryTake(breaker, mode, `${process.pid} breaker`)
  if (Sys.failed(held) || held === "busy") return false
  try {
    const again = look(lockPath)
    if (again === undefined || Sys.failed(again) || again.ino !== seen.ino || again.text !== seen.text) return false
    Fs.rmSync(lockPath, { force: true })
    return true
  } catch {
    return false
  } finally {
    Lock.release(held, true)
  }
}

/** Why one try at ipckit's lock did not take it: someone holds it (retry), or something else failed. */
class Held {
  readonly seen: LockSeen | undefined
  constructor(seen: LockSeen | undefined) {
    this.seen = seen
  }
}

/** How far past a send's deadline it waits for the wall clock (a lock's age) to reach it too. */
const WALL_SLACK_MS = 50

/**
 * Takes ipckit's lock on `from`'s file: create it exclusively and write our pid, as ipckit does. Its descriptor
 * goes to `taken` as it is made (in the same step: an interruption cannot come between), kept until
 * `releaseLock`, which tells our lock from another's by it without opening anything. The wait is interruptible.
 */
const takeLock = (
  dir: string,
  from: Role,
  options: IpckitOptions,
  taken: (fd: number) => void
): Effect.Effect<void, IpcError.IpcError> => {
  const p = paths(dir)
  const path = p.lock(from)
  const timeout = Duration.fromInputUnsafe(options.lockTimeout ?? "5 seconds")
  const staleAge = Duration.toMillis(Duration.fromInputUnsafe(options.staleAge ?? "5 seconds"))
  let last: LockSeen | undefined
  const mode = options.fileMode ?? Log.defaults.fileMode
  const attempt = Effect.suspend((): Effect.Effect<void, IpcError.IpcError | Held> => {
    let fd: number | undefined
    try {
      fd = Fs.openSync(path, "wx", mode)
      Sys.exactMode(fd, mode)
      Fs.writeSync(fd, `${process.pid}\n`)
    } catch (cause) {
      // created but not written (a full disk): an empty lock would keep every writer out for `staleAge`
      if (fd !== undefined) {
        Sys.unlinkIfStill(path, fd)
        Sys.closeQuietly(fd)
      }
      if (IpcError.isIpcError(cause)) return Effect.fail(cause)
      if (fd !== undefined || IpcError.errnoOf(cause) !== "EEXIST") {
        return Effect.fail(systemError(cause, "cannot take the lock", dir))
      }
    }
    if (fd !== undefined) {
      taken(fd)
      return Effect.void
    }
    const seen = look(path)
    if (Sys.failed(seen)) return Effect.fail(seen)
    last = seen ?? last
    if (seen === undefined) return Effect.fail(new Held(seen)) // released meanwhile: try again
    // a process that started after the lock was written is not its writer (a recycled pid); judged by the
    // lock file's mtime only once the lock is older than `staleAge`: real holds last milliseconds, and a young
    // lock with a "late" holder is likelier a clock apart (a network filesystem, a VM) than a recycled pid.
    // An empty lock is one whose writer died between creating it and writing its pid; a lock holding
    // anything else was not written by ipckit's protocol, its holder cannot be judged: never broken
    const dead = seen.pid !== undefined
      ? !Sys.isAlive(seen.pid, seen.ageMs > staleAge ? Date.now() - seen.ageMs : undefined)
      : seen.text.length === 0 && seen.ageMs > staleAge
    if (dead && breakStale(path, p.breaker, seen, mode)) {
      return Effect.andThen(
        Effect.logWarning(
          seen.pid !== undefined
            ? `removed ${Path.basename(path)}: its holder (pid ${seen.pid}) is dead`
            : `removed ${Path.basename(path)}: empty for ${Math.round(seen.ageMs)} ms (its writer died)`
        ),
        Effect.fail(new Held(seen))
      )
    }
    return Effect.fail(new Held(seen))
  })
  const lastLook: Effect.Effect<void, IpcError.IpcError> = attempt.pipe(
    Effect.retry({ times: 1, while: (error) => error instanceof Held }),
    Effect.catchIf((error): error is Held => error instanceof Held, () =>
      Effect.suspend(() =>
        Effect.fail(
          IpcError.make(
            "Timeout",
            last !== undefined && last.pid === undefined && last.text.length > 0
              ? `${Path.basename(path)} holds ${JSON.stringify(last.text.slice(0, 40))}, not a pid, for over ${
                Duration.format(timeout)
              }: such a lock is never broken (its holder cannot be judged); remove it if nothing uses it`
              : `${Path.basename(path)} is held by ${
                last?.pid !== undefined ? `live process ${last.pid}` : "a writer"
              } for over ${Duration.format(timeout)} (a live holder's lock is never broken)`,
            dir
          )
        )
      ))
  )
  const timeoutMs = Duration.toMillis(timeout)
  return Effect.suspend(() => {
    // the deadline is the process's own clock, held a little longer (`WALL_SLACK_MS`) while the wall clock a
    // lock's age is measured by has not passed it yet: a timer alone could end a millisecond before, and a lock
    // made just before the send was then judged a hair short of stale at the very look meant to break it. The
    // wall clock alone would stretch the wait by however far it is stepped back
    const startedWall = Date.now()
    const startedOwn = performance.now()
    const waiting = () => {
      const own = performance.now() - startedOwn
      return own <= timeoutMs || (Date.now() - startedWall <= timeoutMs && own <= timeoutMs + WALL_SLACK_MS)
    }
    return attempt.pipe(
      // ipckit retries every 10 ms
      Effect.retry({
        schedule: Schedule.spaced("10 millis"),
        while: (error) => error instanceof Held && waiting()
      }),
      // past the deadline, which may be when the lock turned stale (an empty lock's default `staleAge` is the
      // default timeout): one last look, which breaks such a lock, and one more, which takes it
      Effect.catchIf((error): error is Held => error instanceof Held, () => lastLook)
    )
  })
}

/**
 * Removes the lock `takeLock` made (`fd`), only while the path still names it: if someone broke it (ipckit does
 * after 5 s) the lock there is theirs now. Needs no new descriptor: with none left it still lets go (a lock left
 * naming our live pid would keep every later send out for good).
 */
const releaseLock = (dir: string, from: Role, fd: number) =>
  Effect.sync(() => {
    Sys.unlinkIfStill(paths(dir).lock(from), fd)
    Sys.closeQuietly(fd)
  })

// ---- writing --------------------------------------------------------------------------------

/** UTF-8 only, as serde_json reads (a byte that is not UTF-8 read as U+FFFD was written back so, for good). */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** A message file's bytes (none when it is missing). */
const readBytes = (path: string, address: string) =>
  Effect.tryPromise({
    try: () => Sys.readFileAsync(path),
    catch: (cause) => cause
  }).pipe(
    Effect.catch((cause) =>
      IpcError.errnoOf(cause) === "ENOENT"
        ? Effect.succeed(Buffer.alloc(0))
        : Effect.fail(systemError(cause, `cannot read ${Path.basename(path)}`, address))
    )
  )

/** `bytes` as text, or `undefined` when they are not UTF-8. */
const textOf = (bytes: Uint8Array): string | undefined => {
  try {
    return utf8.decode(bytes)
  } catch {
    return undefined
  }
}

const NOT_UTF8 = "it is not UTF-8 text"

/** A message file's text; `Decode` when it is not UTF-8 (a sender never rewrites such a file). */
const readText = (path: string, address: string) =>
  Effect.flatMap(readBytes(path, address), (bytes) => {
    const text = textOf(bytes)
    return text === undefined ? Effect.fail(notArray(path, NOT_UTF8, address)) : Effect.succeed(text)
  })

const notArray = (path: string, why: string, address: string) =>
  IpcError.make("Decode", `${Path.basename(path)} is not a JSON array of messages: ${why}`, address)

/** The elements of a message file, or why it cannot be read as one. */
const parseFile = (text: string, path: string, address: string): ReadonlyArray<string> | IpcError.IpcError => {
  // blank (by Unicode's idea of white space, as ipckit's `trim` and our reader judge it): no messages yet
  if (text.trim().length === 0) return []
  try {
    JSON.parse(text)
  } catch (cause) {
    return notArray(path, cause instanceof Error ? cause.message : String(cause), address)
  }
  const items = JsonArray.elements(text)
  return Array.isArray(items) ? items : notArray(path, (items as JsonArray.NotAnArray).why, address)
}

/** Appends `message` to `from`'s file under ipckit's lock, keeping the last `keep` messages. */
const append = (dir: string, from: Role, message: Messages.Message, options: IpckitOptions) =>
  Effect.gen(function*() {
    const json = Messages.toJson(message)
    if (IpcError.isIpcError(json)) return yield* json
    // written as serde_json writes it; refused if ipckit's serde_json could not read it back
    const element = JsonArray.prettyElement(json, true)
    if (typeof element !== "string") {
      return yield* IpcError.make("Encode", `ipckit could not read this message back: ${element.why}`, dir)
    }
    const p = paths(dir)
    const file = p.messages(from)
    const keep = Math.max(1, options.keep ?? KEEP)
    // the lock's descriptor once taken: let go of on every way out, interruptions included
    let held: number | undefined
    yield* Effect.andThen(
      takeLock(dir, from, options, (fd) => void (held = fd)),
      // once held, the send runs to its end (its writes are promises that an interruption would not stop: they
      // would go on after the lock was let go)
      Effect.uninterruptible(Effect.gen(function*() {
        const text = yield* readText(file, dir)
        const items = parseFile(text, file, dir)
        // a file we cannot read is never overwritten: its messages would be lost
        if (IpcError.isIpcError(items)) return yield* items
        const all = [...items, element]
        const kept = all.length > keep ? all.slice(all.length - keep) : all
        let mode = options.fileMode ?? Log.defaults.fileMode
        try {
          // an ipckit peer's file keeps its mode, but never lets other users write it (ipckit makes files 0666 & ~umask)
          mode = Fs.lstatSync(file).mode & 0o755
        } catch {
          // a new file
        }
        const tmp = p.tmp(from)
        yield* Effect.tryPromise({
          try: async () => {
            await Fs.promises.rm(tmp, { force: true })
            const handle = await Fs.promises.open(tmp, "wx", mode)
            try {
              try {
                // exactly `mode` (the umask only narrows what `open` makes)
                Sys.exactMode(handle.fd, mode)
                await handle.writeFile(JsonArray.render(kept))
              } finally {
                await handle.close()
              }
              await Fs.promises.rename(tmp, file)
            } catch (cause) {
              // a write that failed (a full disk) leaves no part-written file holding the space
              await Fs.promises.rm(tmp, { force: true }).catch(() => undefined)
              throw cause
            }
          },
          catch: (cause) =>
            IpcError.isIpcError(cause)
              ? cause
              : IpcError.fromSystemError(cause, "Write", `cannot write ${Path.basename(file)}`, dir)
        })
      }))
    ).pipe(Effect.ensuring(Effect.suspend(() => held === undefined ? Effect.void : releaseLock(dir, from, held))))
  })

// ---- reading --------------------------------------------------------------------------------

interface Position {
  readonly id: string
  readonly timestamp: number
}

const readCursor = (path: string): Position | undefined => {
  try {
    const value = JSON.parse(Sys.readFile(path).toString("utf8")) as Partial<Position>
    return typeof value.id === "string" && typeof value.timestamp === "number"
      ? { id: value.id, timestamp: value.timestamp }
      : undefined
  } catch {
    return undefined
  }
}

/**
 * What tells one element of a message file from another: a message's `id`;
 * for an element without one, its compact JSON, or, nested too deep for
 * `JSON.stringify` (which recurses), its text in the file.
 */
const keyOf = (value: unknown, text: string | undefined): string => {
  if (typeof value === "object" && value !== null && "id" in value && typeof value.id === "string") return value.id
  try {
    return `raw:${JSON.stringify(value)}`
  } catch {
    return `raw:${text ?? ""}`
  }
}

/**
 * Opens the `role` end of the ipckit channel in `dir` (preparing the
 * directory as ipckit does) as a `Messages.MessageChannel`.
 */
export const open = (
  dir: string,
  role: Role,
  options: IpckitOptions = {}
): Effect.Effect<Messages.MessageChannel, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const invalid = Layout.invalidEnd(dir, role)
    if (invalid !== undefined) return yield* invalid
    yield* TransportOptions.optionsOk(options, dir)
    yield* initialize(dir, options)
    const p = paths(dir)
    const inboxPath = p.messages(other(role))
    const cursorPath = p.cursor(role)
    const durable = options.durableCursor !== false
    const keep = Math.max(1, options.keep ?? KEEP)
    const fileMode = options.fileMode ?? Log.defaults.fileMode
    // warnings from `commit` (a plain callback) run with the caller's services, in this scope
    const background = yield* FiberSet.makeRuntime<never>()

    // the last message handed to the router (read position) and the tokens' positions
    let last: Position | undefined = durable ? readCursor(cursorPath) : undefined
    const delivered = new Set<string>()
    const positions = new Map<number, Position>()
    let token = 0
    let lastBad: Buffer | undefined

    const wakers: Array<() => void> = []
    // counts notifications: one that came while the directory was read (or the fiber yielded) is not missed
    let changes = 0
    const wake = () => {
      changes++
      for (const w of wakers.splice(0)) w()
    }
    yield* Wake.watch(dir, wake, options)
    /** Waits for a change after the `seen`th notification (at once if one has come since). */
    const waitChange = (seen: number) =>
      Effect.callback<void>((resume) => {
        if (changes !== seen) return resume(Effect.void)
        const w = () => {
          clearTimeout(timer)
          resume(Effect.void)
        }
        // a safety net for missed notifications
        const timer = setTimeout(w, Math.max(Wake.pollMillis(options), 250))
        wakers.push(w)
        return Effect.sync(() => {
          clearTimeout(timer)
          const i = wakers.indexOf(w)
          if (i >= 0) wakers.splice(i, 1)
        })
      })

    const read = Effect.gen(function*() {
      const bytes = yield* readBytes(inboxPath, dir)
      // not UTF-8: reported as a file that is not an array is (one `Decode`, then the next message), not as
      // the end of the channel
      const text = textOf(bytes)
      if (text !== undefined && text.trim().length === 0) return []
      let values: unknown = new Error(NOT_UTF8)
      if (text !== undefined) {
        try {
          values = JSON.parse(text)
        } catch (cause) {
          values = cause instanceof Error ? cause : new Error(String(cause))
        }
      }
      if (!Array.isArray(values) || text === undefined) {
        if (lastBad?.equals(bytes) === true) return []
        // a writer that does not rename may be half-way: look again shortly before reporting
        yield* Effect.sleep("50 millis")
        if (!(yield* readBytes(inboxPath, dir)).equals(bytes)) return []
        lastBad = bytes
        const why = values instanceof Error ? values.message : `it holds a JSON ${typeof values}`
        return [notArray(inboxPath, why, dir)]
      }
      lastBad = undefined
      const texts = JsonArray.elements(text)
      const elements = values.map((value: unknown, i) => ({
        value,
        key: keyOf(value, Array.isArray(texts) ? texts[i] : undefined)
      }))
      let fresh: Array<{ readonly value: unknown; readonly key: string }>
      if (last === undefined) {
        fresh = elements
      } else {
        const at = elements.findLastIndex((e) => e.key === last!.id)
        if (at >= 0) {
          fresh = elements.slice(at + 1)
        } else {
          // our position was trimmed away (or the file cleared): what is newer than it
          const position = last
          fresh = elements.filter(({ key, value: v }) => {
            const ts = typeof v === "object" && v !== null && "timestamp" in v ? v.timestamp : undefined
            return typeof ts !== "number" || ts > position.timestamp ||
              (ts === position.timestamp && key !== position.id)
          })
          if (elements.length >= keep && fresh.length === elements.length) {
            yield* Effect.logWarning(
              `${
                Path.basename(inboxPath)
              } was trimmed past this reader: messages may have been lost (ipckit keeps only the last ${keep})`
            )
          }
        }
      }
      const out: Array<Messages.Message | IpcError.IpcError> = []
      for (const { key, value } of fresh) {
        if (delivered.has(key)) continue
        delivered.add(key)
        const message = Messages.fromJson(value, dir)
        out.push(message)
        if (!IpcError.isIpcError(message)) last = { id: message.id, timestamp: message.timestamp }
      }
      // remember only what the file still holds
      if (delivered.size > 4 * keep) {
        const present = new Set(elements.map((e) => e.key))
        for (const key of delivered) if (!present.has(key)) delivered.delete(key)
      }
      return out
    })

    // a read that found no descriptor free is tried again on the next change or safety-net tick, one warning a
    // spell (it ended the reader, and the channel with it, for good)
    const starved = Observability.spell()
    const readOrWait = read.pipe(
      Effect.tap(() => Effect.sync(starved.end)),
      Effect.catchIf(
        (error) => error.reason._tag === "NoSpace",
        (error) =>
          Effect.as(starved.begin("cannot read the peer's messages for want of room; trying again", error.detail), [])
      )
    )

    const pull: Messages.Source["pull"] = Effect.gen(function*() {
      while (true) {
        const seen = changes
        const items = yield* readOrWait
        if (items.length > 0) {
          return items.map((item) => {
            const t = ++token
            if (!IpcError.isIpcError(item)) positions.set(t, { id: item.id, timestamp: item.timestamp })
            return { item, token: t }
          }) as unknown as NonEmptyReadonlyArray<{ item: Messages.Message | IpcError.IpcError; token: number }>
        }
        yield* waitChange(seen)
      }
    })

    const commit = (t: number) => {
      let position: Position | undefined
      for (const [k, v] of positions) {
        if (k > t) break
        position = v
        positions.delete(k)
      }
      if (position !== undefined && durable) {
        try {
          Sys.writeNewFile(cursorPath, JSON.stringify(position), fileMode)
        } catch (cause) {
          background(Effect.logWarning("cannot save the read position", cause))
        }
      }
    }

    return yield* Messages.make({
      send: (message) => append(dir, role, message, options),
      pull,
      commit
    })
  })

/** Opens the backend end of the ipckit channel in `dir` (see `open`). */
export const backend = (
  dir: string,
  options?: IpckitOptions
): Effect.Effect<Messages.MessageChannel, IpcError.IpcError, Scope.Scope> => open(dir, "backend", options)

/** Opens the frontend end of the ipckit channel in `dir` (see `open`). */
export const frontend = (
  dir: string,
  options?: IpckitOptions
): Effect.Effect<Messages.MessageChannel, IpcError.IpcError, Scope.Scope> => open(dir, "frontend", options)
