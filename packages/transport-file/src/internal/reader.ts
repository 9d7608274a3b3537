/**
 * The reading end of a log stream: a named reader with its durable cursor
 * (one process at a time), or an observer that keeps none; reads whole,
 * valid records only and reports damage as `Corrupt` (see `Log`).
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as LogFormat from "../LogFormat.ts"
import * as Libc from "./libc.ts"
import * as Lock from "./lock.ts"
import { committedEndOf, corruptAt, gapError, isGap, plausiblePrefix, READ_CHUNK, scanRecord } from "./scan.ts"
import { endOffset, type LogOptions, noSegments, paths, register, segments, startOffset } from "./stream.ts"
import * as Sys from "./sys.ts"

/**
 * The payload at `start..end` of a read chunk: a view when it is a good part of the chunk, else a copy of
 * its own, so that a small message kept by its receiver does not keep the whole chunk (up to `READ_CHUNK`)
 * alive: a small chunk is a slice of Node's buffer pool (`Buffer.poolSize`, 64 KiB in Node 24), a view of
 * which keeps all of the pool. The copy is a buffer of its own (`allocUnsafeSlow`: never the pool).
 */
const payloadOf = (chunk: Buffer, start: number, end: number): Uint8Array => {
  const view = chunk.subarray(start, end)
  // the memory a view keeps is the chunk's whole backing buffer (the pool, or the buffer of a larger read)
  if (view.byteLength * 4 >= chunk.buffer.byteLength) return view
  const copy = Buffer.allocUnsafeSlow(view.byteLength)
  copy.set(view)
  return copy
}

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
  /** The next segment cannot be opened for want of room (`NoSpace`, no descriptor free): poll again later. */
  | { readonly _tag: "Short"; readonly entries: ReadonlyArray<Entry>; readonly error: IpcError.IpcError }

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
  /**
   * Skips a corrupt record: moves to the next valid record after it (in a later segment when its own has none);
   * returns the bytes skipped, 0 when there is nothing valid after it yet (wait for more).
   */
  readonly skipCorrupt: () => number | IpcError.IpcError
  /** Bytes past the position that do not (yet) form a whole record (a torn tail, when the writer is dead). */
  readonly pendingBytes: () => number
  /** Records `offset` as delivered (durably, for a named reader). */
  readonly commit: (offset: number) => IpcError.IpcError | undefined
  /** Closes the reader's files. */
  readonly close: () => void
}

/**
 * The poll whose move to the next segment failed: damage is `Corrupt`, a want of room `Short`; any other
 * failure (a segment made unreadable) fails the poll, once the records read before it are handed out.
 */
const unfollowed = (entries: ReadonlyArray<Entry>, error: IpcError.IpcError): Poll | IpcError.IpcError => {
  switch (error.reason._tag) {
    case "Corrupt":
      return { _tag: "Corrupt", entries, error }
    case "NoSpace":
      return { _tag: "Short", entries, error }
    default:
      return entries.length > 0 ? { _tag: "More", entries } : error
  }
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
  // a named reader's cursor before the oldest segment: the records up to it are gone (`Corrupt` until skipped)
  gap: IpcError.IpcError | undefined = undefined
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
    if (bases.length === 0) return noSegments(this.dir)
    let base = bases[0]!
    for (const b of bases) if (b <= offset) base = b
    const at = Math.max(offset, base + LogFormat.SEGMENT_HEADER)
    const opened = this.openSegment(base)
    if (opened === "missing") {
      return IpcError.make("NotFound", `segment ${LogFormat.segmentName(base)} is gone`, this.dir)
    }
    if (opened !== undefined) return opened
    this.pos = at
    if (this.name !== undefined && isGap(offset, base)) this.gap = gapError(this.dir, base, offset, this.name)
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
    if (this.gap !== undefined) return { _tag: "Corrupt", entries, error: this.gap }
    let budget = maxBytes
    while (!this.closed) {
      const size = Sys.attempt(() => Fs.fstatSync(this.segFd).size, "Read", "cannot stat a segment", this.dir)
      // what was read before a failure is handed out first (the position is past it): the failure comes again
      if (Sys.failed(size)) return entries.length > 0 ? { _tag: "More", entries } : size
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
      if (Sys.failed(chunk)) return entries.length > 0 ? { _tag: "More", entries } : chunk
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
          if (moved !== undefined) return unfollowed(entries, moved)
          break
        }
        entries.push({ kind: header.kind, payload: payloadOf(chunk, at + LogFormat.RECORD_HEADER, at + total), end })
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
    const state = this.writerState()
    const committed = committedEndOf(state, this.segBase)
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
    // the writer's state does not place it in this segment (damaged, missing, or older): a later segment
    // with records says the writer finished this one (it links the next before writing there), so what is
    // cut here is damage, not a write in progress
    if (state === undefined || state.segment < this.segBase) {
      const later = this.finishedBy()
      // looked at again after the later segment: a writer that finished this record, linked the next segment
      // and wrote there since the look above has made this segment longer (not damage)
      if (later !== undefined && this.sizeNow() !== size) return { _tag: "More", entries }
      if (later !== undefined) {
        return {
          _tag: "Corrupt",
          entries,
          error: this.corrupt(`${why}, though segment ${LogFormat.segmentName(later)} follows with records`)
        }
      }
    }
    return { _tag: "Idle", entries }
  }

  /** The size of the segment being read now (undefined if it cannot be read). */
  sizeNow(): number | undefined {
    try {
      return Fs.fstatSync(this.segFd).size
    } catch {
      return undefined
    }
  }

  /** A segment after this one that holds records (so the writer went past this one), if any. */
  finishedBy(): number | undefined {
    const bases = segments(this.dir)
    if (Sys.failed(bases)) return undefined
    for (const base of bases) {
      if (base <= this.segBase) continue
      try {
        if (Fs.statSync(this.p.segment(base)).size > LogFormat.SEGMENT_HEADER) return base
      } catch {
        // removed meanwhile: look at the next
      }
    }
    return undefined
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
    // a writer that links the next segment appends no more to this one: one committed past the link means
    // the link is not a writer's (damage, or a foreign writer's record), and nothing will create its segment
    const written = this.writerState()
    if (written !== undefined && written.segment === this.segBase && written.end > next) {
      return corruptAt(
        this.dir,
        this.segBase,
        next,
        `an end-of-segment record links segment ${LogFormat.segmentName(next)}, which is missing, though the ` +
          `writer went on in this segment to offset ${written.end}`
      )
    }
    if (this.name === undefined) {
      // an observer holds no space back: what it had not read may be reclaimed; go on with what is held
      if (later === undefined) return "wait"
      const skipped = this.openSegment(later)
      if (skipped === "missing") return "wait"
      if (skipped !== undefined) return skipped
      this.pos = later + LogFormat.SEGMENT_HEADER
      return undefined
    }
    // a writer creates a segment before it links it, and a named reader's next segment is never reclaimed.
    // With the writer state unreadable (looked at twice, in case a write of it was read half done) no writer
    // can go on (each refuses the stream with `Corrupt`), so nothing will ever create it: damage, not a wait
    const state = written ?? this.writerState()
    if (later !== undefined || state === undefined || state.segment >= next) {
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
    if (this.gap !== undefined) {
      // the reader is at the oldest record held already: skipping the gap is going on from there
      this.gap = undefined
      return this.pos - this.committedOffset
    }
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
    // nothing valid after it in this segment: once the segment is finished (the writer state places the writer
    // in a later one, or a later one holds records), a later segment that opens soundly is where the records go
    // on (the damage was this segment's end, its link to the next, or the next segment's header). Not before: a
    // segment made for a rotation that never linked it (its writer died) is no place to wait, the records go on
    // here
    const state = this.writerState()
    const finished = (state !== undefined && state.segment > this.segBase) || this.finishedBy() !== undefined
    const bases = finished ? segments(this.dir) : []
    for (const base of Sys.failed(bases) ? [] : bases) {
      if (base <= this.segBase) continue
      const at = this.pos
      const opened = this.openSegment(base)
      if (opened === undefined) {
        this.pos = base + LogFormat.SEGMENT_HEADER
        return this.pos - at
      }
      if (opened !== "missing" && opened.reason._tag !== "Corrupt") return opened
    }
    // nothing valid after it yet: wait at the end of what is there (0 when the reader is there already)
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
 * (registering it at `from`, by default the start, if it is new). One process
 * at a time may use a reader name: a second gets `AddressInUse`. Without a
 * name, opens an observer, which keeps no cursor, holds no space back and
 * starts at `from` (by default the end).
 */
export const openReader = (
  dir: string,
  options: {
    readonly name?: string | undefined
    readonly from?: "start" | "end" | undefined
  } & Pick<LogOptions, "fileMode"> = {}
): Effect.Effect<Reader, IpcError.IpcError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const from = options.from ?? (options.name === undefined ? "end" : "start")
      // a cursor this open registers, until it has read anything, starts at the oldest record held (below)
      const registeredHere = options.name !== undefined && !Sys.exists(paths(dir).cursor(options.name))
      // `file inspect` probes a cursor's lock (shared, for microseconds): a reader that meets it tries again
      return Lock.retryWhileProbed(Effect.suspend((): Effect.Effect<ReaderImpl, IpcError.IpcError> => {
        const unavailable = Libc.available()
        if (unavailable !== undefined) return Effect.fail(unavailable)
        const reader = new ReaderImpl(dir, options.name)
        const fail = (error: IpcError.IpcError) => {
          reader.close()
          return Effect.fail(error)
        }
        // the writer state, read as the reader goes (an idle end, a record cut short), is refused like every file
        // of a channel when it is not a regular file of this user (or root) or not readable by it (it was taken
        // for a state that is not there); missing (no writer yet) or no descriptor free, it is opened later
        const state = Sys.attempt(
          () => Sys.openFile(paths(dir).writerLock, Fs.constants.O_RDONLY),
          "Open",
          "cannot open the writer state",
          dir
        )
        if (!Sys.failed(state)) reader.stateFd = state
        else if (state.reason._tag === "PermissionDenied") return fail(state)
        let offset: number
        if (options.name !== undefined) {
          const path = paths(dir).cursor(options.name)
          const registered = register(dir, options.name, from, options)
          if (registered !== undefined) return fail(registered)
          const fd = Sys.attempt(
            () => Sys.openFile(path, Fs.constants.O_RDWR),
            "Open",
            `cannot open the cursor of ${options.name}`,
            dir
          )
          if (Sys.failed(fd)) return fail(fd)
          Sys.narrowLocked(fd)
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
          const start = from === "start" ? startOffset(dir) : endOffset(dir)
          if (Sys.failed(start)) return fail(start)
          offset = start
        }
        reader.committedOffset = offset
        let sought = reader.seek(offset)
        // a writer's reclaim that began before the cursor was there removed the segment it starts in (its
        // registration's own check came too early to see it; or the segment went between the listing and the
        // open here): it starts at the oldest record held now. Registered at the start, that is where it
        // belongs; registered at the end, every record held now was written after it registered (reclaims
        // remove the oldest segments first), so the end held now would skip them. A cursor that was there
        // before this open is damage: `Corrupt`
        const fresh = registeredHere && reader.seq === 0
        for (let tries = 0; fresh && tries < 8; tries++) {
          if (reader.gap === undefined && sought?.reason._tag !== "NotFound") break
          const start = startOffset(dir)
          if (Sys.failed(start)) return fail(start)
          const moved = Sys.attempt(
            () => void Fs.writeSync(reader.cursorFd!, LogFormat.encodeCursorSlot(start, 0), 0, 16, 0),
            "Write",
            `cannot move the cursor of ${options.name}`,
            dir
          )
          if (Sys.failed(moved)) return fail(moved)
          reader.gap = undefined
          reader.committedOffset = start
          sought = reader.seek(start)
        }
        if (sought !== undefined) return fail(sought)
        return Effect.succeed(reader)
      }))
    }),
    (reader) => Effect.sync(() => reader.close())
  )
