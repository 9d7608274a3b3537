/**
 * Checking the records of a segment on disk: whether the bytes at an offset
 * are a whole, valid record, a prefix of one (a write in progress or torn),
 * or damage; and the `Corrupt` error that names where. Used by the writer
 * taking over from a dead one, by readers skipping damage and by `verify`.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Path from "node:path"
import * as Zlib from "node:zlib"
import * as LogFormat from "../LogFormat.ts"
import * as Sys from "./sys.ts"

/** Bytes read from a segment per system call. */
export const READ_CHUNK = 256 * 1024

export type Scan =
  | { readonly _tag: "Record"; readonly kind: LogFormat.Kind; readonly length: number }
  /** Nothing at `at`: the end of the file. */
  | { readonly _tag: "End" }
  /** A prefix of a record that reaches the end of the file (a write in progress, or torn). */
  | { readonly _tag: "Incomplete"; readonly length: number | undefined }
  | { readonly _tag: "Invalid"; readonly why: string }

/** Checks a header prefix of fewer than 12 bytes: could it be the start of a record? */
export const plausiblePrefix = (head: Uint8Array): string | undefined => {
  if (head.byteLength > 0 && head[0] !== LogFormat.MARKER) return `bad marker byte 0x${head[0]!.toString(16)}`
  if (head.byteLength > 1 && head[1] !== LogFormat.VERSION) return `unknown record version ${head[1]}`
  if (head.byteLength > 2 && head[2]! > LogFormat.Kind.endOfSegment) return `unknown record kind ${head[2]}`
  return undefined
}

/** Validates the record at file position `at` of `fd` (file size `size`), reading its payload in chunks. */
export const scanRecord = (fd: number, at: number, size: number): Scan => {
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
 * Whether a registered reader's cursor at `offset` lies in a segment before
 * the oldest, at `oldest`, that is gone: segments are reclaimed only once
 * every registered reader is past them, so the records it had not read were
 * lost. A cursor at the end-of-segment record of the segment before (a record
 * header, nothing else) has read it all.
 */
export const isGap = (offset: number, oldest: number): boolean => offset < oldest - LogFormat.RECORD_HEADER

/** The `Corrupt` error of a gap (`isGap`): reader `reader`'s records from `offset` to the oldest held are gone. */
export const gapError = (dir: string, oldest: number, offset: number, reader: string): IpcError.IpcError =>
  corruptAt(
    dir,
    oldest,
    offset,
    `the segment that holds it is missing: the records from offset ${offset} to ${
      oldest + LogFormat.SEGMENT_HEADER
    } of reader ${reader} are gone`
  )

/**
 * The committed end of the segment at `base` according to the writer state
 * `state`: every record before it was appended whole by a writer (and
 * acknowledged), so a record there that is not whole is damage, never a torn
 * write. `Infinity` when the writer has moved past the segment (all of it,
 * up to its end-of-segment record, is committed).
 */
export const committedEndOf = (state: LogFormat.WriterState | undefined, base: number): number =>
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
export const recordInside = (fd: number, at: number, size: number): number | undefined => {
  for (let from = at + 1; from + LogFormat.RECORD_HEADER <= size; from += READ_CHUNK) {
    const chunk = Sys.readAt(fd, Math.min(READ_CHUNK + LogFormat.RECORD_HEADER, size - from), from)
    for (let i = 0; i < Math.min(READ_CHUNK, chunk.byteLength); i++) {
      if (chunk[i] !== LogFormat.MARKER) continue
      if (scanRecord(fd, from + i, size)._tag === "Record") return from + i
    }
  }
  return undefined
}
