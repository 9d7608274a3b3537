/**
 * The writing end of a log stream: appends under the stream's writer lock,
 * taking over (and repairing a torn tail) from a writer that died, rotating
 * segments and waiting for room (see `Log`).
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as LogFormat from "../LogFormat.ts"
import * as Libc from "./libc.ts"
import { corruptAt, recordInside, scanRecord } from "./scan.ts"
import {
  attemptTyped,
  cursors,
  defaults,
  fileModeOf,
  type LogOptions,
  paths,
  readWriterState,
  reclaim,
  segments
} from "./stream.ts"
import * as Sys from "./sys.ts"
import * as Wake from "./wake.ts"

/** What "behind" includes, in a `Full` error: a channel's reader counts a message as read once it asks for the next. */
const BEHIND =
  " (a channel's reader has read a message once it asks for the next: a process that sends and then receives on one stream, in turn, holds two messages there)"

/** Records up to this size are written and read synchronously. */
const SYNC_LIMIT = 256 * 1024
/** How long a writer keeps the lock through a burst when another writer is waiting. */
const HOLD_SLICE_MS = 2
/**
 * How long a writer that let go of the lock for a waiting writer keeps letting go (taking it back only to find
 * that writer has still not had its turn): a waiter polls every few milliseconds, more under load, and a
 * one-millisecond gap was missed again and again. A waiter that left (its flag stays set) costs this once.
 */
const YIELD_MAX_MS = 50
const WAITING = new Uint8Array([1])
const NOT_WAITING = new Uint8Array([0])
/** Room kept for a rotation (end-of-segment record and the next segment's header). */
const ROTATION_ROOM = LogFormat.RECORD_HEADER + LogFormat.SEGMENT_HEADER

/** The kinds of record a user appends: data, or close (end-of-segment records are the writer's own). */
export type AppendKind = typeof LogFormat.Kind.data | typeof LogFormat.Kind.close

/** The writing end of a stream. */
export interface Writer {
  /** The stream directory. */
  readonly dir: string
  /** Appends one record; succeeds once it is in the file (or on disk, with `durability: "fsync"`). */
  readonly append: (
    payload: Uint8Array,
    options?: { readonly kind?: AppendKind; readonly abort?: Effect.Effect<never, IpcError.IpcError> }
  ) => Effect.Effect<void, IpcError.IpcError>
  /** Repairs made when this writer took over from one that died (for logging). */
  readonly takeRepairs: () => ReadonlyArray<string>
}

/** A segment's descriptor as the syncs of the records written there hold it. */
interface Segment {
  fd: number
  /** Syncs in flight on `fd`: it is closed once they are done. */
  syncs: number
  /** Let go of by the writer (rotated away from, or closed). */
  retired: boolean
  /** How the sync as it was let go of failed, for the syncs that come after. */
  failure: IpcError.IpcError | undefined
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
  segBase = -1
  end = 0
  oldest = 0
  held = false
  heldSince = 0
  /** When this writer last let go of the lock for a waiting writer (0: it has not, since it last took it). */
  yieldedAt = 0
  releaseTimer: ReturnType<typeof setImmediate> | undefined = undefined
  inflight = false
  readonly idleWaiters: Array<() => void> = []
  readonly spaceWaiters: Array<() => void> = []
  repairs: Array<string> = []
  closed = false
  readonly dir: string
  readonly options: LogOptions
  /** The segment being written, as its syncs see it (see `sync`). */
  current: Segment | undefined = undefined
  /** The descriptor of the segment being written (-1 when none is open). */
  get segFd(): number {
    return this.current?.fd ?? -1
  }

  constructor(dir: string, options: LogOptions) {
    this.dir = dir
    this.options = options
    this.p = paths(dir)
    this.maxBytes = options.maxBytes ?? defaults.maxBytes
    // at most a quarter of the cap: a segment is reclaimed only once a later one exists, so a stream whose
    // cap is under one segment never started a second, and stayed full for good
    this.segmentBytes = Math.min(options.segmentBytes ?? defaults.segmentBytes, Math.floor(this.maxBytes / 4))
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
    Sys.narrowLocked(fd)
    const bases = segments(this.dir)
    if (Sys.failed(bases)) {
      // a failed open is not closed by its caller (nothing was acquired): the lock's descriptor goes here
      Sys.closeQuietly(fd)
      return bases
    }
    this.lockFd = fd
    this.oldest = bases[0] ?? 0
    // the segment being written is opened now, not at the first append (which looks again, under the lock): a
    // writer that opened holds what it writes with, and one short of descriptors fails here, where its opener
    // can wait and try again (an accepted connection whose first reply failed was lost)
    const state = Sys.attempt(() => Sys.readAt(fd, LogFormat.WRITER_STATE_SIZE, 0), "Open", "", this.dir)
    const named = Sys.failed(state) ? undefined : LogFormat.decodeWriterState(state)
    const opened = named === undefined
      ? undefined
      : Sys.attempt(() => this.openSegment(named.segment), "Open", "cannot open the stream's segment", this.dir)
    if (Sys.failed(opened) && opened.reason._tag === "NoSpace") {
      this.close()
      return opened
    }
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
      this.yieldedAt = performance.now()
      return "yield"
    }
    const taken = Libc.tryLock(this.lockFd, "exclusive")
    if (taken !== true) {
      if (taken === false) {
        // waiting now: a writer this one let go for is taking its turn
        this.yieldedAt = 0
        this.sayWaiting()
      }
      return taken === false ? "busy" : taken
    }
    if (this.yieldedAt !== 0) {
      // the writer this one let go for has not taken its turn yet (its flag is still set): let go again, for a while
      if (performance.now() - this.yieldedAt < YIELD_MAX_MS && this.othersWaiting()) {
        Libc.unlock(this.lockFd)
        return "yield"
      }
      this.yieldedAt = 0
    }
    this.held = true
    this.heldSince = performance.now()
    const result = attemptTyped(
      () => {
        // the state, and the waiting flag after it: a writer that takes the lock has had its turn (writers that
        // still wait set the flag again)
        const bytes = Sys.readAt(this.lockFd, LogFormat.WRITER_STATE_SIZE + 1, 0)
        if (bytes[LogFormat.WRITER_STATE_SIZE] === 1) this.clearWaiting()
        const state = LogFormat.decodeWriterState(bytes.subarray(0, LogFormat.WRITER_STATE_SIZE))
        if (state === undefined) {
          throw IpcError.make(
            "Corrupt",
            "the writer state (writer.lock) is unreadable or damaged: the committed end is unknown",
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

  /** True when another writer said it is waiting (the flag stays set until a writer takes the lock). */
  othersWaiting(): boolean {
    try {
      return Sys.readAt(this.lockFd, 1, LogFormat.WRITER_STATE_SIZE)[0] === 1
    } catch {
      return false
    }
  }

  /** Clears the waiting flag (under the lock). */
  clearWaiting(): void {
    try {
      Fs.writeSync(this.lockFd, NOT_WAITING, 0, 1, LogFormat.WRITER_STATE_SIZE)
    } catch {
      // only a hint
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
    this.retire()
    this.segBase = base
    this.current = { fd, syncs: 0, retired: false, failure: undefined }
  }

  /**
   * Syncs `segment` (where a send's record went) to disk. A rotation or a
   * close lets go of a segment while the syncs of other sends may be queued:
   * its descriptor stays open until they are done, and one closed before a
   * sync started was synced as it was let go of (a closed descriptor made
   * those sends fail with EBADF though their records were written, and a
   * number used again by then would have synced another file).
   */
  sync(segment: Segment): Effect.Effect<void, IpcError.IpcError> {
    return Effect.callback<void, IpcError.IpcError>((resume) => {
      // a sync of this segment that failed: the kernel reports a failed writeback once, so the syncs after it
      // may say nothing of pages it lost; each of them fails as it did
      if (segment.failure !== undefined) return resume(Effect.fail(segment.failure))
      if (segment.fd < 0) return resume(Effect.void)
      segment.syncs++
      Fs.fdatasync(segment.fd, (error) => {
        if (--segment.syncs === 0 && segment.retired) this.closeSegment(segment)
        if (error !== null && segment.failure === undefined) {
          segment.failure = IpcError.fromSystemError(error, "Write", "fdatasync failed", this.dir)
        }
        resume(segment.failure === undefined ? Effect.void : Effect.fail(segment.failure))
      })
    })
  }

  /** Lets go of the current segment: closed now, or once the syncs in flight on it are done. */
  retire(): void {
    const segment = this.current
    this.current = undefined
    if (segment === undefined) return
    segment.retired = true
    if (this.options.durability === "fsync") {
      // a send whose sync has not started yet finds it closed: what it wrote is on disk by then
      const synced = Sys.attempt(() => Fs.fdatasyncSync(segment.fd), "Write", "fdatasync failed", this.dir)
      if (Sys.failed(synced)) segment.failure = synced
    }
    if (segment.syncs === 0) this.closeSegment(segment)
  }

  closeSegment(segment: Segment): void {
    Sys.closeQuietly(segment.fd)
    segment.fd = -1
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
          Sys.writeNewFile(this.p.segment(next), LogFormat.encodeSegmentHeader(next), this.fileMode)
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
  fits(size: number): boolean | IpcError.IpcError {
    const room = () => this.end + size + ROTATION_ROOM - this.oldest <= this.maxBytes
    if (room()) return true
    this.reclaimNow()
    if (room()) return true
    // the current segment goes only once a later one exists: when every registered reader has read it all,
    // the next one starts now, and what they are past is reclaimed (a message over half the cap waited for
    // a segment that never filled, for good)
    const readers = cursors(this.dir)
    if (
      this.end > this.segBase + LogFormat.SEGMENT_HEADER && readers.length > 0 &&
      readers.every((reader) => reader.offset >= this.end)
    ) {
      const rotated = Sys.attempt(() => this.rotate(), "Write", "cannot start a new segment", this.dir)
      if (Sys.failed(rotated)) return rotated
      this.reclaimNow()
    }
    return room()
  }

  /** Deletes the segments every registered reader is past, and notes the oldest left; the bytes freed. */
  reclaimNow(): number {
    const freed = reclaim(this.dir)
    const bases = segments(this.dir)
    if (!Sys.failed(bases) && bases[0] !== undefined) this.oldest = bases[0]
    return freed
  }

  /**
   * Starts the next segment: its file first, then the end-of-segment record
   * that links it (a reader never waits for it). With `durability: "fsync"`,
   * the new file's name and the link are on disk before any record goes
   * there: a record synced in a segment that a power loss left unlinked
   * would be acknowledged and never read (once a segment, so done here).
   */
  rotate(): void {
    const eos = LogFormat.encodeRecord(LogFormat.Kind.endOfSegment)
    const next = this.end + eos.byteLength
    Sys.writeNewFile(this.p.segment(next), LogFormat.encodeSegmentHeader(next), this.fileMode)
    try {
      Sys.writeAllAt(this.segFd, [eos], this.end - this.segBase)
    } catch (cause) {
      Fs.ftruncateSync(this.segFd, this.end - this.segBase)
      Fs.rmSync(this.p.segment(next), { force: true })
      throw cause
    }
    // the segment let go of is synced as it is (`retire`), its link with it
    this.openSegment(next)
    this.end = next + LogFormat.SEGMENT_HEADER
    if (this.options.durability === "fsync") {
      const synced = Sys.attempt(
        () => {
          Fs.fdatasyncSync(this.segFd)
          Sys.syncDirectory(this.dir)
        },
        "Write",
        "cannot sync the new segment",
        this.dir
      )
      // what goes to a segment whose name or header may not be on disk is not acknowledged as synced
      if (Sys.failed(synced)) this.current!.failure = synced
    }
  }

  /** One try at an append, all synchronous except a large record's write. */
  attempt(payload: Uint8Array, kind: LogFormat.Kind): Attempt | IpcError.IpcError {
    if (this.closed) return IpcError.make("Closed", "the writer is closed", this.dir)
    if (kind === LogFormat.Kind.close && payload.byteLength > LogFormat.CLOSE_PAYLOAD_MAX) {
      return IpcError.make(
        "FrameTooLarge",
        `a close record carries at most ${LogFormat.CLOSE_PAYLOAD_MAX} bytes, not ${payload.byteLength}`,
        this.dir
      )
    }
    if (this.inflight) return "inflight"
    const acquired = this.acquire()
    if (acquired !== "ok") return acquired
    const size = LogFormat.RECORD_HEADER + payload.byteLength
    // a close record is tiny and always allowed: a full stream can still be closed
    const fits = kind === LogFormat.Kind.close || this.fits(size)
    if (fits !== true) return fits === false ? "full" : fits
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
    this.retire()
    Sys.closeQuietly(this.lockFd >= 0 ? this.lockFd : undefined)
    this.lockFd = -1
    for (const wake of this.idleWaiters.splice(0)) wake()
  }
}

/**
 * Waits for a wake-up through `subscribe`, up to `timeoutMs` (`false` then). `ready` is looked at
 * first, as the wait registers: effect may yield to the event loop between the caller's look and
 * this wait, and a wake-up then found nobody to wake.
 */
const waitFor = (
  ready: () => boolean,
  subscribe: (wake: () => void) => () => void,
  timeoutMs: number
): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    if (ready()) return resume(Effect.succeed(true))
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
    yield* TransportOptions.optionsOk(options, dir)
    const invalid = Sys.invalidModes({ fileMode: options.fileMode }, dir)
    if (invalid !== undefined) return yield* invalid
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

    const append: Writer["append"] = (payload, appendOptions = {}) => {
      const kind = appendOptions.kind ?? LogFormat.Kind.data
      if (kind !== LogFormat.Kind.data && kind !== LogFormat.Kind.close) {
        // an end-of-segment record (or an unknown kind) would make what follows it unreadable
        return Effect.fail(
          IpcError.make("InvalidOption", `a record appended is data (0) or close (1), not kind ${String(kind)}`, dir)
        )
      }
      const abort = appendOptions.abort
      let lockWaitStart = 0
      let fullWaitStart = 0
      let spins = 0
      // a full disk: the segments every reader is past (history kept for observers) make room, and the
      // append tries again while that frees anything
      const onNoSpace = (error: IpcError.IpcError): Effect.Effect<void, IpcError.IpcError> =>
        error.reason._tag === "NoSpace" && impl.reclaimNow() > 0 ? loop : Effect.fail(error)
      const loop: Effect.Effect<void, IpcError.IpcError> = Effect.suspend(() => {
        const result = impl.attempt(payload, kind)
        if (result === "ok") {
          return durable ? impl.sync(impl.current!) : Effect.void
        }
        if (Sys.failed(result)) return onNoSpace(result)
        if (result === "inflight") {
          return Effect.andThen(
            waitFor(() => !impl.inflight || impl.closed, (wake) => {
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
                } bytes and may not pass ${impl.maxBytes}: readers are behind${BEHIND}`,
                dir
              )
            )
          }
          const now = Date.now()
          if (fullWaitStart === 0) fullWaitStart = now
          const left = fullTimeout - (now - fullWaitStart)
          if (left <= 0) {
            return Effect.fail(
              IpcError.make("Full", `no room in the stream for ${fullTimeout} ms: readers are behind${BEHIND}`, dir)
            )
          }
          const wait = Effect.andThen(
            watchSpace,
            // room shows only in the readers' positions, which `attempt` reads: the timeout bounds the wait
            waitFor(() => false, (wake) => {
              impl.spaceWaiters.push(wake)
              return removeFrom(impl.spaceWaiters, wake)
            }, Math.min(left, pollSpace))
          )
          return Effect.andThen(abort === undefined ? wait : Effect.raceFirst(wait, abort), loop)
        }
        const segment = impl.current!
        return result.write().pipe(
          Effect.matchEffect({
            onFailure: onNoSpace,
            onSuccess: () => durable ? impl.sync(segment) : Effect.void
          })
        )
      })
      return loop
    }

    return {
      dir,
      append,
      takeRepairs: () => impl.repairs.splice(0)
    }
  })
