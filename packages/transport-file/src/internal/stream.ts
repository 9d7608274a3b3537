/**
 * The files of a log stream directory (format in `LogFormat`): its options
 * and their defaults, its paths, its segments, its readers' cursors and the
 * writer state; creating a stream, registering readers, reclaiming segments.
 * Synchronous, for the writer and the reader, which run on the event loop;
 * `Log` offers the public ones as Effects.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as LogFormat from "../LogFormat.ts"
import * as Libc from "./libc.ts"
import * as Lock from "./lock.ts"
import * as Scan from "./scan.ts"
import * as Sys from "./sys.ts"
import type * as Wake from "./wake.ts"

/** Options of a log stream. */
export interface LogOptions extends Wake.WatchOptions {
  /** Most bytes the stream may hold on disk (default 64 MiB). */
  readonly maxBytes?: number | undefined
  /** Size after which the writer starts a new segment (default 4 MiB; at most a quarter of `maxBytes`). */
  readonly segmentBytes?: number | undefined
  /** What an append does when the stream is full: wait for readers (default) or fail with `Full`. */
  readonly whenFull?: "wait" | "fail" | undefined
  /** With `whenFull: "wait"`: how long to wait for room before failing with `Full` (default: no limit). */
  readonly fullTimeout?: Duration.Input | undefined
  /** How long to wait for another writer's lock before failing with `Timeout` (default 10 s). */
  readonly lockTimeout?: Duration.Input | undefined
  /** `os` (default): a record survives the writer's crash; `fsync`: also a power loss (fdatasync per append). */
  readonly durability?: "os" | "fsync" | undefined
  /** Permission bits of new files (default 0o600). */
  readonly fileMode?: number | undefined
  /** Permission bits of new directories (default 0o700). */
  readonly dirMode?: number | undefined
}

/** The defaults of `LogOptions`. */
export const defaults = {
  maxBytes: 64 * 1024 * 1024,
  segmentBytes: 4 * 1024 * 1024,
  fileMode: 0o600,
  dirMode: 0o700
} as const

/** The permission bits of new files under `options`. */
export const fileModeOf = (options: LogOptions) => options.fileMode ?? defaults.fileMode
/** The permission bits of new directories under `options`. */
export const dirModeOf = (options: LogOptions) => options.dirMode ?? defaults.dirMode

/** The name of a stream's writer state and lock. */
export const WRITER_LOCK = "writer.lock"
/** The name of a stream's directory of reader cursors. */
export const READERS = "readers"
/** The lock in `readers/` that keeps a registration and a reclaim apart (no cursor is named so). */
export const REGISTRY = "registry.lock"

/** The reader a cursor's file name (`readers/<name>.cursor`) is of; `undefined` for any other name. */
export const readerOf = (fileName: string): string | undefined =>
  fileName.endsWith(".cursor") ? fileName.slice(0, -".cursor".length) : undefined

/** The paths of a stream directory. */
export const paths = (dir: string) => ({
  dir,
  writerLock: Path.join(dir, WRITER_LOCK),
  readers: Path.join(dir, READERS),
  cursor: (name: string) => Path.join(dir, READERS, `${name}.cursor`),
  registry: Path.join(dir, READERS, REGISTRY),
  segment: (base: number) => Path.join(dir, LogFormat.segmentName(base))
})

/** The base offsets of a stream's segments, oldest first. */
export const segments = (dir: string): ReadonlyArray<number> | IpcError.IpcError => {
  const names = Sys.attempt(() => Fs.readdirSync(dir), "Read", `cannot list the stream ${dir}`)
  if (Sys.failed(names)) return names
  const bases: Array<number> = []
  for (const name of names) {
    const base = LogFormat.parseSegmentName(name)
    if (base !== undefined) bases.push(base)
  }
  return bases.toSorted((a, b) => a - b)
}

/** Creates a cursor for `name` at `offset` unless one exists (never overwrites). */
/**
 * Creates the cursor of reader `name` at `offset`, built aside and linked into place (one that exists is
 * kept), or, with `replace`, renamed over the one there (a reader that has not read yet).
 */
const createCursor = (dir: string, name: string, offset: number, mode: number, replace = false): void => {
  const p = paths(dir)
  const tmp = Sys.tmpOf(p.cursor(name))
  const bytes = new Uint8Array(LogFormat.CURSOR_SIZE)
  bytes.set(LogFormat.encodeCursorSlot(offset, 0), 0)
  try {
    Sys.createFile(tmp, bytes, Sys.lockedMode(mode))
    if (replace) return Fs.renameSync(tmp, p.cursor(name))
    try {
      Fs.linkSync(tmp, p.cursor(name))
    } catch (cause) {
      if (IpcError.errnoOf(cause) !== "EEXIST") throw cause
    }
  } finally {
    Fs.rmSync(tmp, { force: true })
  }
}

/** The refusal of a stream's directory `tmp` found replaced (`why`) as it was built: another user renamed it. */
const replaced = (tmp: string, why: string): Error =>
  Sys.refusal(
    `${tmp} was replaced as the stream was built in it (${why}): another user may rename entries beside it`,
    Sys.HINT_OWNER
  )

/** True when `a` and `b` are the same file (device and inode). */
const sameFile = (a: Fs.Stats, b: Fs.Stats): boolean => a.dev === b.dev && a.ino === b.ino

/**
 * Builds the stream `dir` in a directory made beside it (`<dir>.<hex>.tmp`) and renames that into place (one
 * there already is kept). A user who may rename entries beside `dir` can swap the directory made for another
 * (a directory of root's beside it needs no write permission on it to be renamed): so it is opened without
 * following links and checked to be ours and empty, everything in it is made through its descriptor
 * (`/proc/self/fd/N`, Linux), it is checked to still be there before the rename, and on failure only what was
 * made is removed, then the directory if it is still the one made and empty: never a tree removed by path.
 */
const buildAside = (dir: string, readers: ReadonlyArray<string>, fileMode: number, dirMode: number): void => {
  const tmp = Sys.tmpOf(dir)
  Fs.mkdirSync(tmp, { mode: dirMode })
  let fd: number
  try {
    fd = Fs.openSync(tmp, Fs.constants.O_RDONLY | Fs.constants.O_DIRECTORY | Fs.constants.O_NOFOLLOW)
  } catch (cause) {
    const code = IpcError.errnoOf(cause)
    throw code === "ELOOP" || code === "ENOTDIR" ? replaced(tmp, "by a link") : cause
  }
  const held = Fs.fstatSync(fd)
  // where what is in it is made: through the descriptor where it can be (elsewhere the path, checked as it goes);
  // the descriptor is kept open either way, to give the directory its exact mode (the umask's mode was kept where
  // /proc/self/fd could not be had: macOS, no /proc)
  const at = Sys.throughDescriptor(fd) ?? tmp
  const stillAt = (path: string) => {
    try {
      return sameFile(Fs.lstatSync(path), held)
    } catch {
      return false
    }
  }
  const stillHeld = () => stillAt(tmp)
  // what was made in it (each named before it is made: no other user can make anything in it), removed unless
  // it was renamed into place
  const made: Array<string> = []
  let placed = false
  try {
    const me = process.geteuid?.()
    if (me !== undefined && held.uid !== me) throw replaced(tmp, `now owned by uid ${held.uid}`)
    // the directory just made is empty: one of this user's swapped in (root's, beside it) was filled and renamed
    // into the stream's place, and removed whole when the build failed
    if (Fs.readdirSync(at).length > 0) throw replaced(tmp, "by a directory that holds files")
    Sys.exactMode(fd, dirMode)
    const building = paths(at)
    made.push(READERS)
    Sys.makeDir(building.readers, dirMode)
    const first = LogFormat.SEGMENT_HEADER
    made.push(LogFormat.segmentName(0))
    Sys.createFile(building.segment(0), LogFormat.encodeSegmentHeader(0), fileMode)
    made.push(WRITER_LOCK)
    Sys.createFile(
      building.writerLock,
      LogFormat.encodeWriterState({ clean: true, segment: 0, end: first, pid: process.pid }),
      Sys.lockedMode(fileMode)
    )
    for (const name of readers) {
      made.push(Path.join(READERS, `${name}.cursor`))
      createCursor(at, name, first, fileMode)
    }
    if (!stillHeld()) throw replaced(tmp, "by another directory")
    try {
      Fs.renameSync(tmp, dir)
    } catch (cause) {
      const code = IpcError.errnoOf(cause)
      // another process created it first: use theirs
      if (code !== "EEXIST" && code !== "ENOTEMPTY") throw cause
      return
    }
    // swapped between the check and the rename: what was renamed into the stream's place is not the stream
    placed = stillAt(dir)
    if (!placed) throw replaced(tmp, "by another directory, now renamed to the stream's place")
  } catch (cause) {
    // its message names the directory, not `/proc/self/fd/N`
    throw cause instanceof Error && !IpcError.isIpcError(cause) && at !== tmp
      ? Object.assign(new Error(cause.message.split(`${at}/`).join(`${tmp}/`)), { code: IpcError.errnoOf(cause) })
      : cause
  } finally {
    if (!placed && (at !== tmp || stillHeld())) {
      for (const name of made.toReversed()) {
        try {
          if (name === READERS) Fs.rmdirSync(Path.join(at, name))
          else Fs.unlinkSync(Path.join(at, name))
        } catch {
          // not made, or gone
        }
      }
      try {
        if (stillHeld()) Fs.rmdirSync(tmp)
      } catch {
        // not empty (not all of it was removed): left as it is, ours
      }
    }
    Sys.closeQuietly(fd)
  }
}

/**
 * Creates the stream directory `dir` if it does not exist, atomically (it is
 * built aside and renamed into place), and registers `readers` (each starts
 * at the oldest record still held). Safe to race: one creator wins, the
 * others use its stream.
 */
export const create = (
  dir: string,
  options: { readonly readers?: ReadonlyArray<string> | undefined } & Pick<LogOptions, "fileMode" | "dirMode"> = {}
): IpcError.IpcError | undefined => {
  const invalid = Sys.invalidModes(options, dir)
  if (invalid !== undefined) return invalid
  const fileMode = fileModeOf(options)
  const dirMode = dirModeOf(options)
  const readers: unknown = options.readers ?? []
  // a string was registered character by character: each a reader that never reads, holding the stream's space
  if (!Array.isArray(readers) || !readers.every((name) => typeof name === "string")) {
    return IpcError.make(
      "InvalidOption",
      `readers is a list of reader names, each a string (got ${
        Array.isArray(readers)
          ? "a list holding something else"
          : typeof readers === "string"
          ? "a string"
          : typeof readers
      })`,
      dir
    )
  }
  for (const name of readers) {
    if (!LogFormat.isReaderName(name)) return IpcError.make("InvalidAddress", `bad reader name "${name}"`, dir)
  }
  const made = Sys.attempt(
    () => {
      if (!Sys.exists(dir)) buildAside(dir, readers, fileMode, dirMode)
    },
    "Open",
    `cannot create the stream ${dir}`
  )
  if (Sys.failed(made)) return made
  for (const name of readers) {
    const error = register(dir, name, "start", options)
    if (error !== undefined) return error
  }
  return undefined
}

/**
 * A stream with no segment left: damage, not an empty stream (it is made with its first segment,
 * and a writer never removes the one it writes), so whatever it held is gone.
 */
export const noSegments = (dir: string): IpcError.IpcError =>
  IpcError.make("Corrupt", "the stream has no segments left (damaged: what it held is gone)", dir)

/** The offset of the first record still held (where a reader registered at the `start` begins). */
export const startOffset = (dir: string): number | IpcError.IpcError => {
  const bases = segments(dir)
  if (Sys.failed(bases)) return bases
  const oldest = bases[0]
  return oldest === undefined
    ? noSegments(dir)
    : oldest + LogFormat.SEGMENT_HEADER
}

/**
 * The end offset the writer state records (where a reader registered at the `end` begins); `Corrupt` when
 * the state is damaged, as for a writer (a stream is made with one: a reader that started at the oldest
 * record instead was handed every message held as new).
 */
export const endOffset = (dir: string): number | IpcError.IpcError => {
  const state = readWriterState(dir)
  if (Sys.failed(state)) return state
  return state?.end ??
    IpcError.make(
      "Corrupt",
      "the writer state (writer.lock) is unreadable or damaged: the end is unknown (a reader from the start can read)",
      dir
    )
}

// how long a registration waits for a reclaim in progress, and a reclaim for a registration, before going on
// without the registry: each holds it for microseconds, so only a holder stopped mid-way is waited out
const REGISTRATION_WAIT_MS = 20
const RECLAIM_WAIT_MS = 5

/**
 * Runs `f` holding `dir`'s registry lock: exclusive for a registration, shared for a reclaim. A reclaim reads
 * the cursors and then deletes segments: a cursor linked between the two was not counted, and the segment it
 * starts in could go. Each waits a moment for the other (spinning: the holder is another process, done within
 * microseconds), and then, or where the lock cannot be had at all (a file of another user's), `f` runs
 * without it, as before there was one: never a hang, never a reclaim held back (a writer would say `Full`).
 */
const withRegistry = <A>(dir: string, exclusive: boolean, fileMode: number, f: () => A): A => {
  let fd: number | "vanished"
  try {
    fd = Lock.openOrCreate(paths(dir).registry, fileMode)
  } catch {
    return f()
  }
  if (fd === "vanished") return f()
  try {
    const deadline = performance.now() + (exclusive ? REGISTRATION_WAIT_MS : RECLAIM_WAIT_MS)
    while (Libc.tryLock(fd, exclusive ? "exclusive" : "shared") === false && performance.now() < deadline) {
      // the other side's holder is at work in another process
    }
    return f()
  } finally {
    // closing the descriptor releases the lock
    Sys.closeQuietly(fd)
  }
}

/** Registers reader `name` at the `start` (oldest record held) or the `end` of `dir`, unless it exists. */
export const register = (
  dir: string,
  name: string,
  from: "start" | "end",
  options: Pick<LogOptions, "fileMode"> = {}
): IpcError.IpcError | undefined => {
  if (!LogFormat.isReaderName(name)) return IpcError.make("InvalidAddress", `bad reader name "${name}"`, dir)
  // anything but "start" (a typo, or none) registered the reader at the end: the records held were skipped unseen
  if (from !== "start" && from !== "end") {
    return IpcError.make(
      "InvalidOption",
      `from ${typeof from === "string" ? JSON.stringify(from) : String(from)} is not "start" nor "end"`,
      dir
    )
  }
  const invalid = TransportOptions.notAnObject(options, "the options", dir) ??
    Sys.invalidModes({ fileMode: options.fileMode }, dir)
  if (invalid !== undefined) return invalid
  if (Sys.exists(paths(dir).cursor(name))) return undefined
  return withRegistry(dir, true, fileModeOf(options), () => registerNow(dir, name, from, options))
}

const registerNow = (
  dir: string,
  name: string,
  from: "start" | "end",
  options: Pick<LogOptions, "fileMode">
): IpcError.IpcError | undefined => {
  const offset = from === "start" ? startOffset(dir) : endOffset(dir)
  if (Sys.failed(offset)) return offset
  const created = Sys.attempt(
    () => createCursor(dir, name, offset, fileModeOf(options)),
    "Open",
    `cannot register reader ${name}`,
    dir
  ) as IpcError.IpcError | undefined
  if (created !== undefined) return created
  // a writer that reclaimed segments before the cursor was there may have removed the one it starts in: it
  // starts at the oldest record held then (from now on the cursor holds its segment back)
  for (let tries = 0; tries < 8; tries++) {
    const start = startOffset(dir)
    if (Sys.failed(start)) return start
    const cursor = readCursor(dir, name)
    if (cursor === undefined || cursor.seq !== 0 || !Scan.isGap(cursor.offset, start - LogFormat.SEGMENT_HEADER)) {
      return undefined
    }
    const moved = Sys.attempt(
      () => createCursor(dir, name, start, fileModeOf(options), true),
      "Write",
      `cannot register reader ${name}`,
      dir
    ) as IpcError.IpcError | undefined
    if (moved !== undefined) return moved
  }
  return undefined
}

/** The cursor of reader `name` as its file holds it now (`undefined` when missing or unreadable). */
const readCursor = (dir: string, name: string): { readonly offset: number; readonly seq: number } | undefined => {
  try {
    return LogFormat.decodeCursor(Sys.readFile(paths(dir).cursor(name), LogFormat.CURSOR_SIZE))
  } catch {
    return undefined
  }
}

/** Removes reader `name`: its cursor no longer holds space back. */
export const unregister = (dir: string, name: string): IpcError.IpcError | undefined =>
  Sys.attempt(
    () => void Fs.rmSync(paths(dir).cursor(name), { force: true }),
    "Write",
    `cannot remove reader ${name}`,
    dir
  ) as IpcError.IpcError | undefined

/** The writer state in `writer.lock` (`undefined` when it is not a valid one). */
export const readWriterState = (dir: string): LogFormat.WriterState | undefined | IpcError.IpcError =>
  Sys.attempt(
    () => LogFormat.decodeWriterState(Sys.readFile(paths(dir).writerLock, LogFormat.WRITER_STATE_SIZE)),
    "Read",
    "cannot read the writer state",
    dir
  )

/** The registered readers of `dir` and their committed offsets. */
export const cursors = (dir: string): ReadonlyArray<{ readonly name: string; readonly offset: number }> =>
  readCursors(dir).cursors

/**
 * The registered readers of `dir` whose cursors can be read, with their committed offsets, and the names of those
 * whose cursor is there but cannot be read (damaged, or cut short): what such a reader has not read is not known.
 */
const readCursors = (dir: string): {
  readonly cursors: ReadonlyArray<{ readonly name: string; readonly offset: number }>
  readonly unreadable: ReadonlyArray<string>
} => {
  const out: Array<{ name: string; offset: number }> = []
  const unreadable: Array<string> = []
  let names: Array<string>
  try {
    names = Fs.readdirSync(paths(dir).readers)
  } catch {
    return { cursors: out, unreadable }
  }
  for (const file of names) {
    const name = readerOf(file)
    if (name === undefined) continue
    let bytes: Uint8Array
    try {
      bytes = Sys.readFile(paths(dir).cursor(name), LogFormat.CURSOR_SIZE)
    } catch (cause) {
      // removed meanwhile (unregistered): it holds nothing back; one that cannot be read holds everything back
      if (IpcError.errnoOf(cause) !== "ENOENT") unreadable.push(name)
      continue
    }
    const cursor = LogFormat.decodeCursor(bytes)
    if (cursor === undefined) unreadable.push(name)
    else out.push({ name, offset: cursor.offset })
  }
  return { cursors: out, unreadable }
}

/**
 * Deletes the segments every registered reader is past (never the last one).
 * With no registered reader nothing is deleted. Returns the bytes freed.
 */
export const reclaim = (dir: string): number => {
  // after any registration under way, whose cursor may not be readable yet
  return withRegistry(dir, false, defaults.fileMode, () => reclaimNow(dir))
}

/** What `readers/` holds now, as one string (`undefined` when it cannot be listed). */
const readersNow = (dir: string): string | undefined => {
  try {
    return Fs.readdirSync(paths(dir).readers).toSorted().join("/")
  } catch {
    return undefined
  }
}

const reclaimNow = (dir: string): number => {
  const bases = segments(dir)
  if (Sys.failed(bases) || bases.length < 2) return 0
  const readers = readersNow(dir)
  const read = readCursors(dir)
  // a reader whose cursor is damaged fails to open (`Decode`) until it is mended or unregistered: what it has not
  // read is not known, so nothing is reclaimed meanwhile (a reclaim past it lost its unread records for good)
  if (read.unreadable.length > 0) return 0
  const offsets = read.cursors.map((c) => c.offset)
  if (offsets.length === 0) return 0
  const min = Math.min(...offsets)
  let freed = 0
  for (let i = 0; i + 1 < bases.length; i++) {
    // a reader at a segment's end-of-segment record (a header, nothing else) has read all of it
    if (bases[i + 1]! - LogFormat.RECORD_HEADER > min) break
    // a reader registered since the cursors were read (its registration went on without the registry: this
    // process was held up past the wait) holds back what it starts in: this reclaim stops, the next counts it.
    // At most the segment removed since that look can be the one it starts in, and its open finds that out
    if (readersNow(dir) !== readers) break
    try {
      Fs.rmSync(paths(dir).segment(bases[i]!), { force: true })
      freed += bases[i + 1]! - bases[i]!
    } catch {
      break
    }
  }
  return freed
}

/** `Sys.attempt` (an `IpcError` thrown by `f` is kept as it is), with the address required. */
export const attemptTyped: <A>(
  f: () => A,
  fallback: IpcError.IpcErrorReason,
  detail: string,
  address: string
) => A | IpcError.IpcError = Sys.attempt

/** The value of a synchronous result, or its error, as an Effect. */
export const lift = <A>(result: A | IpcError.IpcError): Effect.Effect<A, IpcError.IpcError> =>
  Sys.failed(result) ? Effect.fail(result) : Effect.succeed(result as A)
