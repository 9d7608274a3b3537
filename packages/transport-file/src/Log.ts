/**
 * An append-only, segmented, crash-safe log in a directory (the format is
 * in `LogFormat`). One log is one direction of a channel; any number of
 * processes may append to it and any number of named readers may read it,
 * each from its own durable cursor.
 *
 * - **Appends** take the stream's writer lock (`flock`, released by the
 *   kernel if the holder dies), write one record with one system call and
 *   return once the record is in the file: a `send` that succeeded is in the
 *   log. A writer keeps the lock for the rest of the event-loop turn, so a
 *   burst of appends costs one lock; several writer processes interleave
 *   whole records, never bytes.
 * - **Crash safety**: every record carries its length and a CRC-32, and a
 *   reader delivers only whole, valid records; a writer killed mid-write
 *   leaves a dirty writer state, and the next writer cuts the torn tail off
 *   before appending.
 * - **Damage** is never a gap: the writer state records the committed end; a
 *   record before it that is not whole and valid stops readers with reason
 *   `Corrupt` (segment and offset), and a writer never cuts committed
 *   records (its append fails with `Corrupt` instead).
 * - **Cursors** are per reader name and survive restarts; a reader commits
 *   after each delivery, so a restarted reader neither skips nor repeats.
 * - **Space** is reclaimed segment by segment once every registered reader
 *   is past it. A stream never holds more than `maxBytes`: an append that
 *   would pass it waits for readers (`whenFull: "wait"`, with an optional
 *   `fullTimeout`) or fails with reason `Full` (`whenFull: "fail"`). Nothing
 *   is ever dropped to make room.
 *
 * Records and system calls up to 256 KiB are made synchronously on open
 * descriptors (page-cache copies of a few microseconds, which is what lets a
 * successful `append` mean "in the file"); larger ones go through libuv's
 * threadpool, one request at a time, so a 16 MiB message never stalls the
 * event loop.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Zlib from "node:zlib"
import * as Libc from "./internal/libc.ts"
import * as Lock from "./internal/lock.ts"
import * as Sys from "./internal/sys.ts"
import * as Wake from "./internal/wake.ts"
import * as LogFormat from "./LogFormat.ts"

/** Options of a log stream. */
export interface LogOptions extends Wake.WatchOptions {
  /** Most bytes the stream may hold on disk (default 64 MiB). */
  readonly maxBytes?: number | undefined
  /** Size after which the writer starts a new segment (default 4 MiB). */
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

/** Records up to this size are written and read synchronously. */
const SYNC_LIMIT = 256 * 1024
/** Bytes read from a segment per system call. */
const READ_CHUNK = 256 * 1024
/** How long a writer keeps the lock through a burst when another writer is waiting. */
const HOLD_SLICE_MS = 2
const WAITING = new Uint8Array([1])
const NOT_WAITING = new Uint8Array([0])
/** Room kept for a rotation (end-of-segment record and the next segment's header). */
const ROTATION_ROOM = LogFormat.RECORD_HEADER + LogFormat.SEGMENT_HEADER

const fileModeOf = (options: LogOptions) => options.fileMode ?? defaults.fileMode
const dirModeOf = (options: LogOptions) => options.dirMode ?? defaults.dirMode

// ---- layout ---------------------------------------------------------------------------------

/** The paths of a stream directory. */
export const paths = (dir: string) => ({
  dir,
  writerLock: Path.join(dir, "writer.lock"),
  readers: Path.join(dir, "readers"),
  cursor: (name: string) => Path.join(dir, "readers", `${name}.cursor`),
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

const writeNewFile = (path: string, bytes: Uint8Array, mode: number): void => {
  const tmp = `${path}.${Sys.randomId()}.tmp`
  try {
    Fs.writeFileSync(tmp, bytes, { mode, flag: "wx" })
    Fs.renameSync(tmp, path)
  } finally {
    Fs.rmSync(tmp, { force: true })
  }
}

/** Creates a cursor for `name` at `offset` unless one exists (never overwrites). */
const createCursor = (dir: string, name: string, offset: number, mode: number): void => {
  const p = paths(dir)
  const tmp = `${p.cursor(name)}.${Sys.randomId()}.tmp`
  const bytes = new Uint8Array(LogFormat.CURSOR_SIZE)
  bytes.set(LogFormat.encodeCursorSlot(offset, 0), 0)
  try {
    Fs.writeFileSync(tmp, bytes, { mode, flag: "wx" })
    try {
      Fs.linkSync(tmp, p.cursor(name))
    } catch (cause) {
      if (IpcError.errnoOf(cause) !== "EEXIST") throw cause
    }
  } finally {
    Fs.rmSync(tmp, { force: true })
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
  const fileMode = fileModeOf(options)
  const dirMode = dirModeOf(options)
  const readers = options.readers ?? []
  for (const name of readers) {
    if (!LogFormat.isReaderName(name)) return IpcError.make("InvalidAddress", `bad reader name "${name}"`, dir)
  }
  const made = Sys.attempt(
    () => {
      if (Sys.exists(dir)) return
      const tmp = `${dir}.${Sys.randomId()}.tmp`
      try {
        Fs.mkdirSync(tmp, { mode: dirMode })
        Fs.mkdirSync(Path.join(tmp, "readers"), { mode: dirMode })
        const first = LogFormat.SEGMENT_HEADER
        Fs.writeFileSync(Path.join(tmp, LogFormat.segmentName(0)), LogFormat.encodeSegmentHeader(0), {
          mode: fileMode,
          flag: "wx"
        })
        Fs.writeFileSync(
          Path.join(tmp, "writer.lock"),
          LogFormat.encodeWriterState({ clean: true, segment: 0, end: first, pid: process.pid }),
          { mode: fileMode, flag: "wx" }
        )
        for (const name of readers) createCursor(tmp, name, first, fileMode)
        try {
          Fs.renameSync(tmp, dir)
        } catch (cause) {
          const code = IpcError.errnoOf(cause)
          // another process created it first: use theirs
          if (code !== "EEXIST" && code !== "ENOTEMPTY") throw cause
        }
      } finally {
        Fs.rmSync(tmp, { recursive: true, force: true })
      }
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

/** The offset of the first record still held (where a reader registered at the `start` begins). */
const startOffset = (dir: string): number | IpcError.IpcError => {
  const bases = segments(dir)
  if (Sys.failed(bases)) return bases
  const oldest = bases[0]
  return oldest === undefined
    ? IpcError.make("NotFound", "the stream has no segments", dir)
    : oldest + LogFormat.SEGMENT_HEADER
}

/** The end offset the writer state records (where a reader registered at the `end` begins). */
const endOffset = (dir: string): number | IpcError.IpcError => {
  const state = readWriterState(dir)
  if (Sys.failed(state)) return state
  return state?.end ?? startOffset(dir)
}

/** Registers reader `name` at the `start` (oldest record held) or the `end` of `dir`, unless it exists. */
export const register = (
  dir: string,
  name: string,
  from: "start" | "end",
  options: Pick<LogOptions, "fileMode"> = {}
): IpcError.IpcError | undefined => {
  if (!LogFormat.isReaderName(name)) return IpcError.make("InvalidAddress", `bad reader name "${name}"`, dir)
  if (Sys.exists(paths(dir).cursor(name))) return undefined
  const offset = from === "start" ? startOffset(dir) : endOffset(dir)
  if (Sys.failed(offset)) return offset
  return Sys.attempt(
    () => createCursor(dir, name, offset, fileModeOf(options)),
    "Open",
    `cannot register reader ${name}`,
    dir
  ) as IpcError.IpcError | undefined
}

/** Removes reader `name`: its cursor no longer holds space back. */
export const unregister = (dir: string, name: string): IpcError.IpcError | undefined =>
  Sys.attempt(
    () => void Fs.rmSync(paths(dir).cursor(name), { force: true }),
    "Write",
    `cannot remove reader ${name}`,
    dir
  ) as IpcError.IpcError | undefined

const readWriterState = (dir: string): LogFormat.WriterState | undefined | IpcError.IpcError =>
  Sys.attempt(
    () => LogFormat.decodeWriterState(Sys.readFile(paths(dir).writerLock)),
    "Read",
    "cannot read the writer state",
    dir
  )

/** The registered readers of `dir` and their committed offsets. */
export const cursors = (dir: string): ReadonlyArray<{ readonly name: string; readonly offset: number }> => {
  const out: Array<{ name: string; offset: number }> = []
  let names: Array<string>
  try {
    names = Fs.readdirSync(paths(dir).readers)
  } catch {
    return out
  }
  for (const file of names) {
    if (!file.endsWith(".cursor")) continue
    try {
      const cursor = LogFormat.decodeCursor(Sys.readFile(Path.join(paths(dir).readers, file)))
      if (cursor !== undefined) out.push({ name: file.slice(0, -".cursor".length), offset: cursor.offset })
    } catch {
      // removed meanwhile
    }
  }
  return out
}

/**
 * Deletes the segments every registered reader is past (never the last one).
 * With no registered reader nothing is deleted. Returns the bytes freed.
 */
export const reclaim = (dir: string): number => {
  const bases = segments(dir)
  if (Sys.failed(bases) || bases.length < 2) return 0
  const offsets = cursors(dir).map((c) => c.offset)
  if (offsets.length === 0) return 0
  const min = Math.min(...offsets)
  let freed = 0
  for (let i = 0; i + 1 < bases.length; i++) {
    if (bases[i + 1]! > min) break
    try {
      Fs.rmSync(paths(dir).segment(bases[i]!), { force: true })
      freed += bases[i + 1]! - bases[i]!
    } catch {
      break
    }
  }
  return freed
}

// ---- validating records on disk -------------------------------------------------------------

type Scan =
  | { readonly _tag: "Record"; readonly kind: LogFormat.Kind; readonly length: number }
  /** Nothing at `at`: the end of the file. */
  | { readonly _tag: "End" }
  /** A prefix of a record that reaches the end of the file (a write in progress, or torn). */
  | { readonly _tag: "Incomplete"; readonly length: number | undefined }
  | { readonly _tag: "Invalid"; readonly why: string }

/** Checks a header prefix of fewer than 12 bytes: could it be the start of a record? */
const plausiblePrefix = (head: Uint8Array): string | undefined => {
  if (head.byteLength > 0 && head[0] !== LogFormat.MARKER) return `bad marker byte 0x${head[0]!.toString(16)}`
  if (head.byteLength > 1 && head[1] !== LogFormat.VERSION) return `unknown record version ${head[1]}`
  if (head.byteLength > 2 && head[2]! > LogFormat.Kind.endOfSegment) return `unknown record kind ${head[2]}`
  return undefined
}

/** Validates the record at file position `at` of `fd` (file size `size`), reading its payload in chunks. */
const scanRecord = (fd: number, at: number, size: number): Scan => {
  if (at >= size) return { _tag: "End" }
  const head = Sys.readAt(fd, Math.min(LogFormat.RECORD_HEADER, size - at), at)
  if (head.byteLength < LogFormat.RECORD_HEADER) {
    const why = plausiblePrefix(head)
    return why === undefined ? { _tag: "Incomplete", length: undefined } : { _tag: "Invalid", why }
  }
  const header = LogFormat.readRecordHeader(head, 0)
  if (header._tag === "Invalid") return header
  if (at + LogFormat.RECORD_HEADER + header.length > size) return { _tag: "Incomplete", length: header.length }
  let crc = Zlib.crc32(head.subarray(0, 8))
  let done = 0
  while (done < header.length) {
    const n = Math.min(READ_CHUNK * 4, header.length - done)
    const chunk = Sys.readAt(fd, n, at + LogFormat.RECORD_HEADER + done)
    if (chunk.byteLength < n) return { _tag: "Incomplete", length: header.length }
    crc = Zlib.crc32(chunk, crc)
    done += n
  }
  return crc === header.crc
    ? { _tag: "Record", kind: header.kind, length: header.length }
    : { _tag: "Invalid", why: "checksum mismatch" }
}

/** The `Corrupt` error for damage at logical `offset` of segment `base` of the stream `dir`. */
export const corruptAt = (dir: string, base: number, offset: number, why: string): IpcError.IpcError =>
  IpcError.make(
    "Corrupt",
    `corrupt record at offset ${offset} (${why}) in segment ${LogFormat.segmentName(base)} of ${Path.basename(dir)}`,
    dir
  )

/**
 * The committed end of the segment at `base` according to the writer state
 * `state`: every record before it was appended whole by a writer (and
 * acknowledged), so a record there that is not whole is damage, never a torn
 * write. `Infinity` when the writer has moved past the segment (all of it,
 * up to its end-of-segment record, is committed).
 */
const committedEndOf = (state: LogFormat.WriterState | undefined, base: number): number =>
  state === undefined || state.segment < base
    ? base + LogFormat.SEGMENT_HEADER
    : state.segment > base
    ? Infinity
    : state.end

/**
 * A torn tail is a prefix of one record reaching the end of the file. When a
 * complete, valid record starts inside what the header at `at` claims (its
 * length was damaged, not torn), returns where.
 */
const recordInside = (fd: number, at: number, size: number): number | undefined => {
  for (let from = at + 1; from + LogFormat.RECORD_HEADER <= size; from += READ_CHUNK) {
    const chunk = Sys.readAt(fd, Math.min(READ_CHUNK + LogFormat.RECORD_HEADER, size - from), from)
    for (let i = 0; i < Math.min(READ_CHUNK, chunk.byteLength); i++) {
      if (chunk[i] !== LogFormat.MARKER) continue
      if (scanRecord(fd, from + i, size)._tag === "Record") return from + i
    }
  }
  return undefined
}

// ---- writing --------------------------------------------------------------------------------

/** The writing end of a stream. */
export interface Writer {
  /** The stream directory. */
  readonly dir: string
  /** Appends one record; succeeds once it is in the file (or on disk, with `durability: "fsync"`). */
  readonly append: (
    payload: Uint8Array,
    options?: { readonly kind?: LogFormat.Kind; readonly abort?: Effect.Effect<never, IpcError.IpcError> }
  ) => Effect.Effect<void, IpcError.IpcError>
  /** Repairs made when this writer took over from one that died (for logging). */
  readonly takeRepairs: () => ReadonlyArray<string>
}

/** Like `Sys.attempt`, but an `IpcError` thrown by `f` is kept as it is. */
const attemptTyped = <A>(f: () => A, fallback: IpcError.IpcErrorReason, detail: string, address: string) => {
  try {
    return f()
  } catch (cause) {
    return IpcError.isIpcError(cause) ? cause : IpcError.fromSystemError(cause, fallback, detail, address)
  }
}

type Attempt =
  | "ok"
  | "busy"
  | "yield"
  | "full"
  | "inflight"
  | { readonly write: () => Effect.Effect<void, IpcError.IpcError> }

class WriterImpl {
  readonly p: ReturnType<typeof paths>
  readonly maxBytes: number
  readonly segmentBytes: number
  readonly fileMode: number
  lockFd = -1
  segFd = -1
  segBase = -1
  end = 0
  oldest = 0
  held = false
  heldSince = 0
  releaseTimer: ReturnType<typeof setImmediate> | undefined = undefined
  inflight = false
  readonly idleWaiters: Array<() => void> = []
  readonly spaceWaiters: Array<() => void> = []
  repairs: Array<string> = []
  closed = false
  readonly dir: string
  readonly options: LogOptions

  constructor(dir: string, options: LogOptions) {
    this.dir = dir
    this.options = options
    this.p = paths(dir)
    this.maxBytes = options.maxBytes ?? defaults.maxBytes
    this.segmentBytes = options.segmentBytes ?? defaults.segmentBytes
    this.fileMode = fileModeOf(options)
  }

  open(): IpcError.IpcError | undefined {
    const fd = Sys.attempt(
      () => Sys.openFile(this.p.writerLock, Fs.constants.O_RDWR),
      "Open",
      "cannot open the writer lock",
      this.dir
    )
    if (Sys.failed(fd)) return fd
    this.lockFd = fd
    const bases = segments(this.dir)
    if (Sys.failed(bases)) return bases
    this.oldest = bases[0] ?? 0
    return undefined
  }

  /** Takes the writer lock for the rest of this event-loop turn. */
  acquire(): "ok" | "busy" | "yield" | IpcError.IpcError {
    if (this.held) {
      // a long burst: every few milliseconds, let a writer that is waiting have a turn
      if (performance.now() - this.heldSince < HOLD_SLICE_MS) return "ok"
      this.heldSince = performance.now()
      if (!this.othersWaiting()) return "ok"
      this.releaseNow()
      return "yield"
    }
    const taken = Libc.tryLock(this.lockFd, "exclusive")
    if (taken !== true) {
      if (taken === false) this.sayWaiting()
      return taken === false ? "busy" : taken
    }
    this.held = true
    this.heldSince = performance.now()
    const result = attemptTyped(
      () => {
        const state = LogFormat.decodeWriterState(Sys.readAt(this.lockFd, LogFormat.WRITER_STATE_SIZE, 0))
        if (state === undefined) {
          throw IpcError.make(
            "Corrupt",
            "the writer state (writer.lock) is unreadable: the committed end is unknown",
            this.dir
          )
        }
        if (state.segment !== this.segBase) this.openSegment(state.segment)
        const size = Fs.fstatSync(this.segFd).size
        if (!state.clean || size !== state.end - state.segment) this.recover(state, size)
        else this.end = state.end
        this.writeState(false)
      },
      "Write",
      "cannot take over the stream",
      this.dir
    )
    if (Sys.failed(result)) {
      // the recorded state stays as it was: it is the only record of what was committed
      this.releaseNow(false)
      return result
    }
    this.scheduleRelease()
    return "ok"
  }

  /** Tells the holder that a writer is waiting (a flag byte after the state). */
  sayWaiting(): void {
    try {
      Fs.writeSync(this.lockFd, WAITING, 0, 1, LogFormat.WRITER_STATE_SIZE)
    } catch {
      // only a hint
    }
  }

  /** True (and the flag cleared) when another writer said it is waiting. */
  othersWaiting(): boolean {
    try {
      const flag = Sys.readAt(this.lockFd, 1, LogFormat.WRITER_STATE_SIZE)
      if (flag[0] !== 1) return false
      Fs.writeSync(this.lockFd, NOT_WAITING, 0, 1, LogFormat.WRITER_STATE_SIZE)
      return true
    } catch {
      return false
    }
  }

  writeState(clean: boolean): void {
    Fs.writeSync(
      this.lockFd,
      LogFormat.encodeWriterState({ clean, segment: this.segBase, end: this.end, pid: process.pid }),
      0,
      LogFormat.WRITER_STATE_SIZE,
      0
    )
  }

  scheduleRelease(): void {
    if (this.releaseTimer !== undefined) return
    this.releaseTimer = setImmediate(() => {
      this.releaseTimer = undefined
      // an async write in flight keeps the lock; it releases when it completes
      if (!this.inflight) this.releaseNow()
    })
  }

  releaseNow(writeState = true): void {
    if (!this.held) return
    if (this.releaseTimer !== undefined) {
      clearImmediate(this.releaseTimer)
      this.releaseTimer = undefined
    }
    try {
      if (writeState) this.writeState(true)
    } catch {
      // the state stays dirty: the next writer re-validates the tail, which is harmless
    }
    Libc.unlock(this.lockFd)
    this.held = false
  }

  openSegment(base: number): void {
    let fd: number
    try {
      fd = Sys.openFile(this.p.segment(base), Fs.constants.O_RDWR)
    } catch (cause) {
      if (IpcError.errnoOf(cause) !== "ENOENT") throw cause
      throw corruptAt(this.dir, base, base, "the segment the writer state names is missing")
    }
    Sys.closeQuietly(this.segFd >= 0 ? this.segFd : undefined)
    this.segFd = fd
    this.segBase = base
  }

  /**
   * Takes over from a writer that died appending (a dirty state), or a file
   * that does not end where a clean state says. Everything before the
   * recorded end is committed and is never cut: if it is not all there, the
   * stream is `Corrupt`. Past it, whole records (the dead writer's last
   * burst) are kept; only a torn tail, a prefix of one record reaching the
   * end of the file, is cut. Anything else there is `Corrupt` too.
   */
  recover(state: LogFormat.WriterState, size: number): void {
    const bases = segments(this.dir)
    if (Sys.failed(bases)) throw bases
    let base = state.segment
    if (size < state.end - base) {
      throw corruptAt(
        this.dir,
        base,
        base + size,
        `committed records are missing: the segment ends at offset ${
          base + size
        }, the writer state records ${state.end}`
      )
    }
    let at = Math.max(state.end - base, LogFormat.SEGMENT_HEADER)
    let fileSize = size
    while (true) {
      const scan = scanRecord(this.segFd, at, fileSize)
      if (scan._tag === "Record") {
        at += LogFormat.RECORD_HEADER + scan.length
        if (scan.kind !== LogFormat.Kind.endOfSegment) continue
        const next = base + at
        if (!Sys.exists(this.p.segment(next))) {
          writeNewFile(this.p.segment(next), LogFormat.encodeSegmentHeader(next), this.fileMode)
          this.repairs.push(`created segment ${LogFormat.segmentName(next)} that a dead writer announced`)
        }
        this.openSegment(next)
        base = next
        at = LogFormat.SEGMENT_HEADER
        fileSize = Fs.fstatSync(this.segFd).size
        continue
      }
      if (scan._tag === "Invalid") throw corruptAt(this.dir, base, base + at, scan.why)
      if (scan._tag === "Incomplete") {
        const inside = scan.length === undefined ? undefined : recordInside(this.segFd, at, fileSize)
        if (inside !== undefined) {
          throw corruptAt(this.dir, base, base + at, `its length runs over a whole record at offset ${base + inside}`)
        }
      }
      break
    }
    // a segment after the end of the chain: only the empty one a rotation creates before it links it
    const unlinked: Array<number> = []
    for (const other of bases) {
      if (other <= base) continue
      const empty = other === base + at + LogFormat.RECORD_HEADER &&
        Fs.statSync(this.p.segment(other)).size <= LogFormat.SEGMENT_HEADER
      if (!empty) {
        throw corruptAt(
          this.dir,
          base,
          base + at,
          `segment ${LogFormat.segmentName(other)} follows a segment that has no end-of-segment record`
        )
      }
      unlinked.push(other)
    }
    // checked: now cut what is provably the dead writer's own unfinished work
    if (at < fileSize) {
      Fs.ftruncateSync(this.segFd, at)
      this.repairs.push(
        `cut ${fileSize - at} bytes of a torn record at offset ${base + at} (a writer died in the middle of a write)`
      )
    }
    for (const other of unlinked) {
      Fs.rmSync(this.p.segment(other), { force: true })
      this.repairs.push(`removed the empty segment ${LogFormat.segmentName(other)} a dead writer had not linked yet`)
    }
    this.end = base + at
  }

  /** True when `size` more bytes fit under `maxBytes`, after reclaiming what readers are past. */
  fits(size: number): boolean {
    const room = () => this.end + size + ROTATION_ROOM - this.oldest <= this.maxBytes
    if (room()) return true
    reclaim(this.dir)
    const bases = segments(this.dir)
    if (!Sys.failed(bases) && bases[0] !== undefined) this.oldest = bases[0]
    return room()
  }

  /** Starts the next segment: its file first, then the end-of-segment record that links it (a reader never waits for it). */
  rotate(): void {
    const eos = LogFormat.encodeRecord(LogFormat.Kind.endOfSegment)
    const next = this.end + eos.byteLength
    writeNewFile(this.p.segment(next), LogFormat.encodeSegmentHeader(next), this.fileMode)
    try {
      Sys.writeAllAt(this.segFd, [eos], this.end - this.segBase)
    } catch (cause) {
      Fs.ftruncateSync(this.segFd, this.end - this.segBase)
      Fs.rmSync(this.p.segment(next), { force: true })
      throw cause
    }
    this.openSegment(next)
    this.end = next + LogFormat.SEGMENT_HEADER
  }

  /** One try at an append, all synchronous except a large record's write. */
  attempt(payload: Uint8Array, kind: LogFormat.Kind): Attempt | IpcError.IpcError {
    if (this.closed) return IpcError.make("Closed", "the writer is closed", this.dir)
    if (this.inflight) return "inflight"
    const acquired = this.acquire()
    if (acquired !== "ok") return acquired
    const size = LogFormat.RECORD_HEADER + payload.byteLength
    // a close record is tiny and always allowed: a full stream can still be closed
    if (kind !== LogFormat.Kind.close && !this.fits(size)) return "full"
    const header = Buffer.allocUnsafe(LogFormat.RECORD_HEADER)
    LogFormat.writeRecordHeader(header, kind, payload)
    const start = this.end
    const rotated = Sys.attempt(
      () => {
        if (start - this.segBase >= this.segmentBytes && start > this.segBase + LogFormat.SEGMENT_HEADER) this.rotate()
      },
      "Write",
      "cannot start a new segment",
      this.dir
    )
    if (Sys.failed(rotated)) return rotated
    const at = this.end
    if (payload.byteLength <= SYNC_LIMIT) {
      const written = Sys.attempt(
        () => Sys.writeAllAt(this.segFd, [header, payload], at - this.segBase),
        "Write",
        "cannot append to the stream",
        this.dir
      )
      if (Sys.failed(written)) return this.undo(at, written)
      this.end = at + size
      return "ok"
    }
    this.inflight = true
    this.end = at + size
    const fd = this.segFd
    const position = at - this.segBase
    return {
      write: () =>
        Effect.callback<void, IpcError.IpcError>((resume) => {
          Fs.writev(fd, [header, payload], position, (error, n) => {
            this.inflight = false
            if (this.closed) {
              this.finishClose()
              return resume(Effect.fail(IpcError.make("Closed", "the writer was closed during the write", this.dir)))
            }
            let failure: IpcError.IpcError | undefined
            if (error !== null) {
              failure = this.undo(at, IpcError.fromSystemError(error, "Write", "cannot append to the stream", this.dir))
            } else if (n < size) {
              // a short write of a regular file: finish it synchronously (rare)
              const rest = Sys.attempt(
                () => {
                  const all = Buffer.concat([header, payload])
                  Sys.writeAllAt(fd, [all.subarray(n)], position + n)
                },
                "Write",
                "cannot append to the stream",
                this.dir
              )
              if (Sys.failed(rest)) failure = this.undo(at, rest)
            }
            this.scheduleRelease()
            for (const wake of this.idleWaiters.splice(0)) wake()
            resume(failure === undefined ? Effect.void : Effect.fail(failure))
          })
        })
    }
  }

  /** After a failed write at `at`: cut the partial record off so the log stays whole. */
  undo(at: number, error: IpcError.IpcError): IpcError.IpcError {
    try {
      Fs.ftruncateSync(this.segFd, at - this.segBase)
      this.end = at
    } catch {
      // leave the state dirty: the next writer repairs the tail
      if (this.releaseTimer !== undefined) clearImmediate(this.releaseTimer)
      this.releaseTimer = undefined
      Libc.unlock(this.lockFd)
      this.held = false
    }
    return error
  }

  /** Called when readers may have made room (cursor files changed). */
  wakeSpace(): void {
    for (const wake of this.spaceWaiters.splice(0)) wake()
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.wakeSpace()
    // a write in flight still uses the descriptors: it finishes the close when it completes
    if (!this.inflight) this.finishClose()
  }

  finishClose(): void {
    this.releaseNow()
    Sys.closeQuietly(this.segFd >= 0 ? this.segFd : undefined)
    Sys.closeQuietly(this.lockFd >= 0 ? this.lockFd : undefined)
    this.segFd = -1
    this.lockFd = -1
    for (const wake of this.idleWaiters.splice(0)) wake()
  }
}

/** Waits until `register`'s callback is called (or `timeoutMs` passes: `false`). */
const waitFor = (subscribe: (wake: () => void) => () => void, timeoutMs: number): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const timer = setTimeout(() => {
      unsubscribe()
      resume(Effect.succeed(false))
    }, timeoutMs)
    const unsubscribe = subscribe(() => {
      clearTimeout(timer)
      resume(Effect.succeed(true))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      unsubscribe()
    })
  })

const removeFrom = <A>(list: Array<A>, item: A) => () => {
  const i = list.indexOf(item)
  if (i >= 0) list.splice(i, 1)
}

/**
 * Opens the writing end of the stream `dir` (which must exist: see
 * `create`). It holds no lock between appends; it is closed with the scope.
 */
export const openWriter = (
  dir: string,
  options: LogOptions = {}
): Effect.Effect<Writer, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const unavailable = Libc.available()
    if (unavailable !== undefined) return yield* unavailable
    const impl = new WriterImpl(dir, options)
    yield* Effect.acquireRelease(
      Effect.suspend(() => {
        const error = impl.open()
        return error === undefined ? Effect.void : Effect.fail(error)
      }),
      () => Effect.sync(() => impl.close())
    )
    const lockTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.lockTimeout ?? "10 seconds"))
    const fullTimeout = options.fullTimeout === undefined
      ? Infinity
      : Duration.toMillis(Duration.fromInputUnsafe(options.fullTimeout))
    const durable = options.durability === "fsync"
    // readers committing (or leaving) may make room: wake waiting appends
    let spaceWatch: Effect.Effect<void> | undefined
    const scope = yield* Effect.scope
    const watchSpace = Effect.suspend(() => {
      if (spaceWatch !== undefined) return spaceWatch
      spaceWatch = Effect.void
      return Scope.provide(scope)(Wake.watch(paths(dir).readers, () => impl.wakeSpace(), options))
    })
    const pollSpace = Math.max(Wake.pollMillis(options), 250)

    const fsync = (fd: number) =>
      Effect.callback<void, IpcError.IpcError>((resume) => {
        Fs.fdatasync(fd, (error) =>
          resume(
            error === null
              ? Effect.void
              : Effect.fail(IpcError.fromSystemError(error, "Write", "fdatasync failed", dir))
          ))
      })

    const append: Writer["append"] = (payload, appendOptions = {}) => {
      const kind = appendOptions.kind ?? LogFormat.Kind.data
      const abort = appendOptions.abort
      let lockWaitStart = 0
      let fullWaitStart = 0
      let spins = 0
      const loop: Effect.Effect<void, IpcError.IpcError> = Effect.suspend(() => {
        const result = impl.attempt(payload, kind)
        if (result === "ok") {
          return durable ? fsync(impl.segFd) : Effect.void
        }
        if (Sys.failed(result)) return Effect.fail(result)
        if (result === "inflight") {
          return Effect.andThen(
            waitFor((wake) => {
              impl.idleWaiters.push(wake)
              return removeFrom(impl.idleWaiters, wake)
            }, 60_000),
            loop
          )
        }
        if (result === "yield") {
          // we let go of the lock for a waiting writer: give it a moment to take it
          return Effect.andThen(Effect.sleep("1 millis"), loop)
        }
        if (result === "busy") {
          const now = Date.now()
          if (lockWaitStart === 0) lockWaitStart = now
          if (now - lockWaitStart > lockTimeout) {
            const holder = readWriterState(dir)
            const pid = !Sys.failed(holder) && holder !== undefined ? ` (pid ${holder.pid})` : ""
            return Effect.fail(
              IpcError.make("Timeout", `another writer${pid} held the stream's lock for over ${lockTimeout} ms`, dir)
            )
          }
          // contention: a few turns of the event loop, then short sleeps
          const wait = spins++ < 8
            ? Effect.callback<void>((resume) => {
              const t = setImmediate(() => resume(Effect.void))
              return Effect.sync(() => clearImmediate(t))
            })
            : Effect.sleep(Duration.millis(Math.min(5, spins - 7)))
          return Effect.andThen(abort === undefined ? wait : Effect.raceFirst(wait, abort), loop)
        }
        if (result === "full") {
          impl.releaseNow()
          if (options.whenFull === "fail") {
            return Effect.fail(
              IpcError.make(
                "Full",
                `the stream holds ${
                  impl.end - impl.oldest
                } bytes and may not pass ${impl.maxBytes}: readers are behind`,
                dir
              )
            )
          }
          const now = Date.now()
          if (fullWaitStart === 0) fullWaitStart = now
          const left = fullTimeout - (now - fullWaitStart)
          if (left <= 0) {
            return Effect.fail(
              IpcError.make("Full", `no room in the stream for ${fullTimeout} ms: readers are behind`, dir)
            )
          }
          const wait = Effect.andThen(
            watchSpace,
            waitFor((wake) => {
              impl.spaceWaiters.push(wake)
              return removeFrom(impl.spaceWaiters, wake)
            }, Math.min(left, pollSpace))
          )
          return Effect.andThen(abort === undefined ? wait : Effect.raceFirst(wait, abort), loop)
        }
        return result.write().pipe(Effect.andThen(durable ? fsync(impl.segFd) : Effect.void))
      })
      return loop
    }

    return {
      dir,
      append,
      takeRepairs: () => impl.repairs.splice(0)
    }
  })

// ---- reading --------------------------------------------------------------------------------

/** One record read from a stream. */
export interface Entry {
  readonly kind: LogFormat.Kind
  readonly payload: Uint8Array
  /** The offset right after this record: commit it once the record is delivered. */
  readonly end: number
}

/** What one `poll` found. */
export type Poll =
  /** Nothing more for now (wait for a change). */
  | { readonly _tag: "Idle"; readonly entries: ReadonlyArray<Entry> }
  /** More may be read at once. */
  | { readonly _tag: "More"; readonly entries: ReadonlyArray<Entry> }
  /** The next record is large: read it with `readLarge`. */
  | { readonly _tag: "Large"; readonly entries: ReadonlyArray<Entry> }
  /** The next record is corrupt (a complete record whose checksum or header is wrong). */
  | { readonly _tag: "Corrupt"; readonly entries: ReadonlyArray<Entry>; readonly error: IpcError.IpcError }

/** The reading end of a stream. */
export interface Reader {
  /** The stream directory. */
  readonly dir: string
  /** The reader's name (`undefined` for an observer, which keeps no cursor). */
  readonly name: string | undefined
  /** The offset of the next record to read. */
  readonly position: () => number
  /** The last committed offset. */
  readonly committed: () => number
  /** Reads the complete records available now, up to about `maxBytes`. Synchronous. */
  readonly poll: (maxBytes: number) => Poll | IpcError.IpcError
  /** Reads the next record when `poll` said `Large`; the callback gets it (or `undefined` if it is not whole yet). */
  readonly readLarge: (done: (result: Entry | undefined | IpcError.IpcError) => void) => void
  /** Skips a corrupt record: moves to the next valid record after it; returns the bytes skipped. */
  readonly skipCorrupt: () => number | IpcError.IpcError
  /** Bytes past the position that do not (yet) form a whole record (a torn tail, when the writer is dead). */
  readonly pendingBytes: () => number
  /** Records `offset` as delivered (durably, for a named reader). */
  readonly commit: (offset: number) => IpcError.IpcError | undefined
  /** Closes the reader's files. */
  readonly close: () => void
}

class ReaderImpl implements Reader {
  readonly p: ReturnType<typeof paths>
  cursorFd: number | undefined = undefined
  seq = 0
  segFd = -1
  segBase = -1
  pos = 0
  committedOffset = 0
  closed = false
  reading = false
  stateFd: number | undefined = undefined
  readonly dir: string
  readonly name: string | undefined

  constructor(dir: string, name: string | undefined) {
    this.dir = dir
    this.name = name
    this.p = paths(dir)
  }

  position = () => this.pos
  committed = () => this.committedOffset

  /** Positions the reader at `offset` (a record boundary), in the segment that holds it. */
  seek(offset: number): IpcError.IpcError | undefined {
    const bases = segments(this.dir)
    if (Sys.failed(bases)) return bases
    if (bases.length === 0) return IpcError.make("NotFound", "the stream has no segments", this.dir)
    let base = bases[0]!
    for (const b of bases) if (b <= offset) base = b
    const at = Math.max(offset, base + LogFormat.SEGMENT_HEADER)
    const opened = this.openSegment(base)
    if (opened === "missing") {
      return IpcError.make("NotFound", `segment ${LogFormat.segmentName(base)} is gone`, this.dir)
    }
    if (opened !== undefined) return opened
    this.pos = at
    return undefined
  }

  openSegment(base: number): IpcError.IpcError | undefined | "missing" {
    let fd: number
    try {
      fd = Sys.openFile(this.p.segment(base), Fs.constants.O_RDONLY)
    } catch (cause) {
      if (IpcError.errnoOf(cause) === "ENOENT") return "missing"
      return IpcError.fromSystemError(cause, "Open", "cannot open a segment", this.dir)
    }
    const header = Sys.attempt(() => Sys.readAt(fd, LogFormat.SEGMENT_HEADER, 0), "Read", "cannot read", this.dir)
    if (Sys.failed(header)) {
      Sys.closeQuietly(fd)
      return header
    }
    if (LogFormat.decodeSegmentHeader(header) !== base) {
      Sys.closeQuietly(fd)
      return corruptAt(this.dir, base, base, "the segment header is damaged")
    }
    Sys.closeQuietly(this.segFd >= 0 ? this.segFd : undefined)
    this.segFd = fd
    this.segBase = base
    return undefined
  }

  poll(maxBytes: number): Poll | IpcError.IpcError {
    const entries: Array<Entry> = []
    let budget = maxBytes
    while (!this.closed) {
      const size = Sys.attempt(() => Fs.fstatSync(this.segFd).size, "Read", "cannot stat a segment", this.dir)
      if (Sys.failed(size)) return size
      const available = this.segBase + size - this.pos
      // only a torn write is ever cut, and no reader gets past one: a file shorter than what was read is damage
      if (available < 0) {
        return {
          _tag: "Corrupt",
          entries,
          error: this.corrupt(
            `records this reader had already read are missing: the segment ends at ${this.segBase + size}`
          )
        }
      }
      if (available < LogFormat.RECORD_HEADER) {
        const head = available > 0 ? Sys.readAt(this.segFd, available, this.pos - this.segBase) : new Uint8Array(0)
        const why = plausiblePrefix(head)
        if (why !== undefined) return { _tag: "Corrupt", entries, error: this.corrupt(why) }
        return this.stuck(entries, size, available > 0 ? "a record cut short" : "committed records are missing")
      }
      const n = Math.min(available, READ_CHUNK)
      const chunk = Sys.attempt(
        () => Sys.readAt(this.segFd, n, this.pos - this.segBase),
        "Read",
        "cannot read",
        this.dir
      )
      if (Sys.failed(chunk)) return chunk
      let at = 0
      while (at + LogFormat.RECORD_HEADER <= chunk.byteLength) {
        const header = LogFormat.readRecordHeader(chunk, at)
        if (header._tag === "Invalid") return { _tag: "Corrupt", entries, error: this.corrupt(header.why) }
        const total = LogFormat.RECORD_HEADER + header.length
        if (total > available - at) return this.stuck(entries, size, "a record cut short, or its length damaged")
        if (at + total > chunk.byteLength) {
          // whole in the file, not in this chunk: read it from its start (large ones asynchronously)
          if (total > READ_CHUNK) return { _tag: "Large", entries }
          break
        }
        if (!LogFormat.checksumHolds(chunk, at, header.length, header.crc)) {
          return { _tag: "Corrupt", entries, error: this.corrupt("checksum mismatch") }
        }
        const end = this.pos + total
        if (header.kind === LogFormat.Kind.endOfSegment) {
          const moved = this.follow(end)
          if (moved === "wait") return { _tag: "Idle", entries }
          if (moved !== undefined) return { _tag: "Corrupt", entries, error: moved }
          break
        }
        entries.push({
          kind: header.kind,
          payload: chunk.subarray(at + LogFormat.RECORD_HEADER, at + total),
          end
        })
        this.pos = end
        at += total
        budget -= total
        if (header.kind === LogFormat.Kind.close || budget <= 0) return { _tag: "More", entries }
      }
      if (budget <= 0) return { _tag: "More", entries }
    }
    return { _tag: "Idle", entries }
  }

  /** The writer state now (`undefined` if unreadable). */
  writerState(): LogFormat.WriterState | undefined {
    try {
      if (this.stateFd === undefined) this.stateFd = Sys.openFile(this.p.writerLock, Fs.constants.O_RDONLY)
      return LogFormat.decodeWriterState(Sys.readAt(this.stateFd, LogFormat.WRITER_STATE_SIZE, 0))
    } catch {
      return undefined
    }
  }

  /**
   * The reader is at a record that is not all there (or at the end of the
   * file, `size` bytes when it looked). Past the committed end that is a write
   * in progress or a dead writer's torn tail: wait. Before it, committed
   * records were cut or damaged: `Corrupt`, never a wait (the writer state is
   * read before the file is looked at again, so a record completed meanwhile
   * is read, not reported).
   */
  stuck(entries: Array<Entry>, size: number, why: string): Poll {
    const committed = committedEndOf(this.writerState(), this.segBase)
    let now: number
    try {
      now = Fs.fstatSync(this.segFd).size
    } catch {
      return { _tag: "Idle", entries }
    }
    if (now !== size) return { _tag: "More", entries }
    if (this.pos < committed) {
      const detail = why === "committed records are missing" && Number.isFinite(committed)
        ? `${why}: the segment ends here, the writer recorded offset ${committed}`
        : why === "committed records are missing"
        ? `${why}: the segment ends without its end-of-segment record`
        : why
      return { _tag: "Corrupt", entries, error: this.corrupt(detail) }
    }
    return { _tag: "Idle", entries }
  }

  /** Moves to the segment that starts at `next` (after an end-of-segment record). */
  follow(next: number): IpcError.IpcError | undefined | "wait" {
    const moved = this.openSegment(next)
    if (moved === undefined) {
      this.pos = next + LogFormat.SEGMENT_HEADER
      return undefined
    }
    if (moved !== "missing") return moved
    const bases = segments(this.dir)
    const later = Sys.failed(bases) ? undefined : bases.find((b) => b > next)
    if (this.name === undefined) {
      // an observer holds no space back: what it had not read may be reclaimed; go on with what is held
      if (later === undefined) return "wait"
      const skipped = this.openSegment(later)
      if (skipped === "missing") return "wait"
      if (skipped !== undefined) return skipped
      this.pos = later + LogFormat.SEGMENT_HEADER
      return undefined
    }
    // a writer creates a segment before it links it, and a named reader's next segment is never reclaimed
    const state = this.writerState()
    if (later !== undefined || (state !== undefined && state.segment >= next)) {
      return corruptAt(this.dir, this.segBase, next, `segment ${LogFormat.segmentName(next)} is missing`)
    }
    // a stream written before segments were created ahead of their link: the writer is creating it
    return "wait"
  }

  corrupt(why: string): IpcError.IpcError {
    return IpcError.make(
      "Corrupt",
      `corrupt record at offset ${this.pos} (${why}) in segment ${LogFormat.segmentName(this.segBase)} of ${
        Path.basename(this.dir)
      }; the records before it were delivered`,
      this.dir
    )
  }

  readLarge(done: (result: Entry | undefined | IpcError.IpcError) => void): void {
    const fd = this.segFd
    const start = this.pos
    const head = Sys.attempt(() => Sys.readAt(fd, LogFormat.RECORD_HEADER, start - this.segBase), "Read", "", this.dir)
    if (Sys.failed(head)) return done(head)
    const header = LogFormat.readRecordHeader(head, 0)
    if (header._tag === "Invalid") return done(this.corrupt(header.why))
    const record = Buffer.allocUnsafe(LogFormat.RECORD_HEADER + header.length)
    this.reading = true
    Fs.read(fd, record, 0, record.byteLength, start - this.segBase, (error, n) => {
      this.reading = false
      if (this.closed) {
        this.finishClose()
        return done(IpcError.make("Closed", "the reader is closed", this.dir))
      }
      if (error !== null) return done(IpcError.fromSystemError(error, "Read", "cannot read a record", this.dir))
      if (n < record.byteLength) return done(undefined)
      if (!LogFormat.checksumHolds(record, 0, header.length, header.crc)) {
        return done(this.corrupt("checksum mismatch"))
      }
      this.pos = start + record.byteLength
      done({ kind: header.kind, payload: record.subarray(LogFormat.RECORD_HEADER), end: this.pos })
    })
  }

  skipCorrupt(): number | IpcError.IpcError {
    const size = Sys.attempt(() => Fs.fstatSync(this.segFd).size, "Read", "cannot stat a segment", this.dir)
    if (Sys.failed(size)) return size
    const from = this.pos - this.segBase
    for (let at = from + 1; at + LogFormat.RECORD_HEADER <= size; at++) {
      const head = Sys.readAt(this.segFd, 1, at)
      if (head[0] !== LogFormat.MARKER) continue
      const scan = scanRecord(this.segFd, at, size)
      if (scan._tag === "Record") {
        this.pos = this.segBase + at
        return at - from
      }
    }
    // nothing valid after it yet: wait at the end of what is there
    this.pos = this.segBase + size
    return size - from
  }

  pendingBytes(): number {
    try {
      return this.segBase + Fs.fstatSync(this.segFd).size - this.pos
    } catch {
      return 0
    }
  }

  commit(offset: number): IpcError.IpcError | undefined {
    if (offset <= this.committedOffset) return undefined
    this.committedOffset = offset
    if (this.cursorFd === undefined || this.closed) return undefined
    this.seq = (this.seq + 1) >>> 0
    const fd = this.cursorFd
    const seq = this.seq
    const error = Sys.attempt(
      () => Fs.writeSync(fd, LogFormat.encodeCursorSlot(offset, seq), 0, 16, (seq & 1) * 16),
      "Write",
      "cannot commit the cursor",
      this.dir
    )
    return Sys.failed(error) ? error : undefined
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    // a read in flight still uses the segment: it finishes the close when it completes
    if (!this.reading) this.finishClose()
  }

  finishClose(): void {
    Sys.closeQuietly(this.segFd >= 0 ? this.segFd : undefined)
    Sys.closeQuietly(this.cursorFd)
    Sys.closeQuietly(this.stateFd)
    this.segFd = -1
    this.cursorFd = undefined
    this.stateFd = undefined
  }
}

/**
 * Opens reader `name` of the stream `dir` at its committed cursor
 * (registering it at `from` if it is new). One process at a time may use a
 * reader name: a second gets `AddressInUse`. Without a name, opens an
 * observer, which keeps no cursor, holds no space back and starts at `from`.
 */
export const openReader = (
  dir: string,
  options: {
    readonly name?: string | undefined
    readonly from?: "start" | "end" | undefined
  } & Pick<LogOptions, "fileMode"> = {}
): Effect.Effect<Reader, IpcError.IpcError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend((): Effect.Effect<ReaderImpl, IpcError.IpcError> => {
      const unavailable = Libc.available()
      if (unavailable !== undefined) return Effect.fail(unavailable)
      const reader = new ReaderImpl(dir, options.name)
      const fail = (error: IpcError.IpcError) => {
        reader.close()
        return Effect.fail(error)
      }
      let offset: number
      if (options.name !== undefined) {
        const registered = register(dir, options.name, options.from ?? "start", options)
        if (registered !== undefined) return fail(registered)
        const path = paths(dir).cursor(options.name)
        const fd = Sys.attempt(
          () => Sys.openFile(path, Fs.constants.O_RDWR),
          "Open",
          `cannot open the cursor of ${options.name}`,
          dir
        )
        if (Sys.failed(fd)) return fail(fd)
        reader.cursorFd = fd
        const taken = Libc.tryLock(fd, "exclusive")
        if (taken !== true) {
          if (taken !== false) return fail(taken)
          const owner = LogFormat.cursorOwner(Sys.readAt(fd, LogFormat.CURSOR_SIZE, 0))
          return fail(
            IpcError.make(
              "AddressInUse",
              `reader ${options.name} is in use by another process${owner > 0 ? ` (pid ${owner})` : ""}`,
              dir
            )
          )
        }
        const bytes = Sys.attempt(() => Sys.readAt(fd, LogFormat.CURSOR_SIZE, 0), "Read", "cannot read a cursor", dir)
        if (Sys.failed(bytes)) return fail(bytes)
        const cursor = LogFormat.decodeCursor(bytes)
        if (cursor === undefined) {
          return fail(IpcError.make("Decode", `the cursor of reader ${options.name} is unreadable`, dir))
        }
        const pid = new Uint8Array(4)
        new DataView(pid.buffer).setUint32(0, process.pid)
        Sys.attempt(() => Fs.writeSync(fd, pid, 0, 4, 32), "Write", "", dir)
        reader.seq = cursor.seq
        offset = cursor.offset
      } else {
        const start = (options.from ?? "end") === "start" ? startOffset(dir) : endOffset(dir)
        if (Sys.failed(start)) return fail(start)
        offset = start
      }
      reader.committedOffset = offset
      const sought = reader.seek(offset)
      if (sought !== undefined) return fail(sought)
      return Effect.succeed(reader)
    }),
    (reader) => Effect.sync(() => reader.close())
  )

/** What `verify` found in a sound stream. */
export interface Verified {
  /** Whole, valid records (data and close). */
  readonly records: number
  /** Offset after the last valid record. */
  readonly end: number
  /** Bytes of an unfinished record past the committed end: a write in progress, or a dead writer's torn tail (the next writer cuts it). */
  readonly torn: number
}

/**
 * Reads every record still held and checks it (header, length, checksum,
 * segment chain) against the committed end the writer state records. Fails
 * with reason `Corrupt`, naming the segment and the offset, at the first
 * damaged record or where committed records are missing; every record
 * before it is whole. An unfinished record past the committed end is not
 * damage: it is counted in `torn`.
 */
export const verify = (dir: string): Effect.Effect<Verified, IpcError.IpcError> =>
  Effect.suspend(() => {
    // the state first: what it records as committed was in the files before it was written
    const state = readWriterState(dir)
    if (Sys.failed(state)) return Effect.fail(state)
    const bases = segments(dir)
    if (Sys.failed(bases)) return Effect.fail(bases)
    let records = 0
    let end = 0
    let torn = 0
    for (const [i, base] of bases.entries()) {
      const result = attemptTyped(
        (): IpcError.IpcError | "last" | undefined => {
          const fd = Sys.openFile(paths(dir).segment(base), Fs.constants.O_RDONLY)
          try {
            const size = Fs.fstatSync(fd).size
            if (LogFormat.decodeSegmentHeader(Sys.readAt(fd, LogFormat.SEGMENT_HEADER, 0)) !== base) {
              return corruptAt(dir, base, base, "the segment header is damaged")
            }
            const committed = committedEndOf(state, base)
            let at = LogFormat.SEGMENT_HEADER
            end = base + at
            while (true) {
              const scan = scanRecord(fd, at, size)
              if (scan._tag === "Invalid") return corruptAt(dir, base, base + at, scan.why)
              if (scan._tag === "End" || scan._tag === "Incomplete") {
                if (base + at < committed) {
                  return corruptAt(
                    dir,
                    base,
                    base + at,
                    scan._tag === "End"
                      ? "committed records are missing: the segment ends here"
                      : "a committed record is cut short, or its length damaged"
                  )
                }
                torn = size - at
                return i + 1 < bases.length
                  ? corruptAt(
                    dir,
                    base,
                    base + at,
                    `segment ${LogFormat.segmentName(bases[i + 1]!)} follows a segment with no end-of-segment record`
                  )
                  : "last"
              }
              records += scan.kind === LogFormat.Kind.endOfSegment ? 0 : 1
              at += LogFormat.RECORD_HEADER + scan.length
              end = base + at
              if (scan.kind === LogFormat.Kind.endOfSegment) {
                if (bases[i + 1] !== base + at) {
                  return corruptAt(dir, base, base + at, `segment ${LogFormat.segmentName(base + at)} is missing`)
                }
                return undefined
              }
            }
          } finally {
            Sys.closeQuietly(fd)
          }
        },
        "Read",
        "cannot verify the stream",
        dir
      )
      if (result === "last") break
      if (result !== undefined) return Effect.fail(result)
    }
    return Effect.succeed({ records, end, torn })
  })

/** A summary of a stream, for `inspect`. */
export interface Stats {
  readonly dir: string
  readonly segments: ReadonlyArray<{ readonly base: number; readonly bytes: number }>
  /** Bytes on disk. */
  readonly bytes: number
  /** Offset after the last byte written (a torn tail included, until the next writer cuts it). */
  readonly end: number
  readonly writer: {
    readonly pid: number
    /** False when the last writer died mid-append (the next one repairs the tail). */
    readonly clean: boolean
    /** True while a writer holds the lock. */
    readonly active: boolean
  } | undefined
  readonly readers: ReadonlyArray<{
    readonly name: string
    readonly offset: number
    /** Bytes between this reader's cursor and the end. */
    readonly lag: number
    /** True while a process has this reader open. */
    readonly active: boolean
    readonly pid: number
  }>
}

/** True while a process holds the lock of the file at `path`. */
const probeActive = (path: string): boolean => Lock.probe(path) === "held"

/** Reads a stream's segments, writer state and readers (nothing is modified). */
export const stats = (dir: string): Stats | IpcError.IpcError => {
  const bases = segments(dir)
  if (Sys.failed(bases)) return bases
  const p = paths(dir)
  const segs = bases.map((base) => {
    let bytes = 0
    try {
      bytes = Fs.statSync(p.segment(base)).size
    } catch {
      bytes = 0
    }
    return { base, bytes }
  })
  const state = readWriterState(dir)
  const last = segs[segs.length - 1]
  // the physical end: the writer state lags while a writer holds the lock
  const end = last !== undefined ? last.base + last.bytes : 0
  const readers = cursors(dir).map((c) => {
    let pid = 0
    try {
      pid = LogFormat.cursorOwner(Sys.readFile(p.cursor(c.name)))
    } catch {
      pid = 0
    }
    return {
      name: c.name,
      offset: c.offset,
      lag: Math.max(0, end - c.offset),
      active: probeActive(p.cursor(c.name)),
      pid
    }
  })
  return {
    dir,
    segments: segs,
    bytes: segs.reduce((n, s) => n + s.bytes, 0),
    end,
    writer: !Sys.failed(state) && state !== undefined
      ? { pid: state.pid, clean: state.clean, active: probeActive(p.writerLock) }
      : undefined,
    readers
  }
}
