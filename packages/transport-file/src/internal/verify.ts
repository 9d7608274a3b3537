/**
 * Checking a whole stream (`verify`) and summarising it (`stats`) without
 * changing anything.
 *
 * @internal
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as LogFormat from "../LogFormat.ts"
import * as Lock from "./lock.ts"
import { committedEndOf, corruptAt, gapError, isGap, scanRecord } from "./scan.ts"
import { attemptTyped, cursors, noSegments, paths, readWriterState, segments } from "./stream.ts"
import * as Sys from "./sys.ts"

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
 * segment chain) against the committed end the writer state records, and
 * that no registered reader's cursor is before the oldest segment (the
 * records it had not read would be gone). Fails
 * with reason `Corrupt`, naming the segment and the offset, at the first
 * damaged record or where committed records are missing (a stream with no
 * segment left at all); every record before it is whole. An unfinished record past the committed end is not
 * damage: it is counted in `torn`.
 */
export const verify = (dir: string): Effect.Effect<Verified, IpcError.IpcError> =>
  Effect.suspend(() => {
    // the state first: what it records as committed was in the files before it was written
    const state = readWriterState(dir)
    if (Sys.failed(state)) return Effect.fail(state)
    const bases = segments(dir)
    if (Sys.failed(bases)) return Effect.fail(bases)
    const oldest = bases[0]
    if (oldest === undefined) return Effect.fail(noSegments(dir))
    // a registered reader whose records were lost, not read (see `isGap`)
    for (const cursor of cursors(dir)) {
      if (isGap(cursor.offset, oldest)) return Effect.fail(gapError(dir, oldest, cursor.offset, cursor.name))
    }
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
      pid = LogFormat.cursorOwner(Sys.readFile(p.cursor(c.name), LogFormat.CURSOR_SIZE))
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
