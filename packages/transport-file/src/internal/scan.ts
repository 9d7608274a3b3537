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
import * as Crc from "./crc.ts"
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
 * length was damaged, not torn), returns where: the first position past `at`
 * where `scanRecord` finds a record, in time linear in the tail (`Tail`).
 */
export const recordInside = (fd: number, at: number, size: number): number | undefined => {
  const tail = new Tail(fd, at, size)
  for (let from = at + 1; from + LogFormat.RECORD_HEADER <= size; from += READ_CHUNK) {
    // a short record's payload, and the bytes before a long one's first stride, are in the chunk too
    const chunk = Sys.readAt(fd, Math.min(READ_CHUNK + LogFormat.RECORD_HEADER + 2 * Crc.STRIDE, size - from), from)
    const last = Math.min(READ_CHUNK, chunk.byteLength - LogFormat.RECORD_HEADER + 1)
    for (let i = chunk.indexOf(LogFormat.MARKER); i >= 0 && i < last; i = chunk.indexOf(LogFormat.MARKER, i + 1)) {
      const header = LogFormat.readRecordHeader(chunk, i)
      if (header._tag === "Invalid" || from + i + LogFormat.RECORD_HEADER + header.length > size) continue
      if (tail.checksumHolds(chunk, i, from + i, header.length, header.crc)) return from + i
    }
  }
  return undefined
}

/**
 * The tail of a file from `at`, for checksumming the records a damaged one
 * may hold without reading each payload from its start (that is quadratic
 * in the tail): the registers after every stride of the tail are computed
 * once (`Crc`), and a long payload costs at most two strides of bytes.
 */
class Tail {
  /** `strides[k]`: the CRC-32 register (from 0) after the first `k` strides of the tail; once needed. */
  private strides: Uint32Array | undefined
  /** The bytes at the ends of long payloads. */
  private readonly ends: Window
  private readonly fd: number
  private readonly at: number
  private readonly size: number

  constructor(fd: number, at: number, size: number) {
    this.fd = fd
    this.at = at
    this.size = size
    this.ends = new Window(fd, size)
  }

  /**
   * Whether the checksum `crc` holds for the record of payload `length` at
   * file position `position`, whose header is at `i` of `chunk` (with the
   * next `2 * Crc.STRIDE` bytes after it, where the file has them).
   */
  checksumHolds(chunk: Uint8Array, i: number, position: number, length: number, crc: number): boolean {
    if (length < 2 * Crc.STRIDE) return LogFormat.checksumHolds(chunk, i, length, crc)
    const strides = this.strideRegisters()
    const start = position + LogFormat.RECORD_HEADER - this.at
    const end = start + length
    const first = Math.ceil(start / Crc.STRIDE) // the whole strides first..last lie inside the payload
    const last = Math.floor(end / Crc.STRIDE)
    const payload = i + LogFormat.RECORD_HEADER
    let register = Crc.advance(Crc.MASK, chunk.subarray(i, i + 8))
    register = Crc.advance(register, chunk.subarray(payload, payload + first * Crc.STRIDE - start))
    register = (Crc.shift(register ^ strides[first]!, last - first) ^ strides[last]!) >>> 0
    register = Crc.advance(register, this.ends.bytes(this.at + last * Crc.STRIDE, end - last * Crc.STRIDE))
    return ((register ^ Crc.MASK) >>> 0) === crc
  }

  /** The registers after every whole stride of the tail (`strides`), read and computed the first time. */
  private strideRegisters(): Uint32Array {
    if (this.strides !== undefined) return this.strides
    const strides = new Uint32Array(Math.floor((this.size - this.at) / Crc.STRIDE) + 1)
    let register = 0
    for (let k = 1; k < strides.length; k += READ_CHUNK / Crc.STRIDE) {
      const count = Math.min(READ_CHUNK / Crc.STRIDE, strides.length - k)
      const chunk = Sys.readAt(this.fd, count * Crc.STRIDE, this.at + (k - 1) * Crc.STRIDE)
      for (let j = 0; j < count; j++) {
        register = Crc.advance(register, chunk.subarray(j * Crc.STRIDE, (j + 1) * Crc.STRIDE))
        strides[k + j] = register
      }
    }
    this.strides = strides
    return strides
  }
}

/** A span of a file kept from the last read, read again (`READ_CHUNK` bytes from where asked) on a miss. */
class Window {
  private buffer: Uint8Array = new Uint8Array(0)
  private position = 0
  private readonly fd: number
  private readonly size: number

  constructor(fd: number, size: number) {
    this.fd = fd
    this.size = size
  }

  /** The `length` bytes at file position `position` (fewer only when the file is shorter). */
  bytes(position: number, length: number): Uint8Array {
    const offset = position - this.position
    if (offset >= 0 && offset + length <= this.buffer.byteLength) return this.buffer.subarray(offset, offset + length)
    this.buffer = Sys.readAt(this.fd, Math.max(length, Math.min(READ_CHUNK, this.size - position)), position)
    this.position = position
    return this.buffer.subarray(0, length)
  }
}
