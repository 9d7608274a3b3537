/**
 * The on-disk format of a log stream, so that any language can read or write
 * one. All integers are unsigned big-endian (like the effect-ipc frame
 * format); checksums are CRC-32 (IEEE, as zlib's `crc32`).
 *
 * A stream is a directory:
 *
 * ```text
 * <stream>/
 *   0000000000000000.seg      segments, named by their base offset (16 hex digits)
 *   0000000000400010.seg
 *   writer.lock               flock'ed by the writer while it appends; holds the writer state
 *   readers/<name>.cursor     one durable cursor per registered reader
 *   readers/registry.lock     flock'ed while a reader is registered (exclusive) or segments reclaimed (shared)
 * ```
 *
 * Offsets are logical byte positions over the whole stream: a byte at
 * position `p` of the segment with base `b` has offset `b + p`, and a
 * segment's successor has the base where it ends, so offsets only grow.
 *
 * A segment starts with a 16-byte header, `"EIPCSEG1"` and its base offset
 * (u64), then holds records:
 *
 * ```text
 * offset  size  field
 * 0       1     marker   0xEF
 * 1       1     version  0x01
 * 2       1     kind     0 = data, 1 = close (the writer said goodbye; its payload may name the
 *                        session that closed: a channel's lock token), 2 = end of segment
 * 3       1     reserved 0
 * 4       4     length   payload bytes (u32)
 * 8       4     crc32    of bytes 0..8 followed by the payload
 * 12      n     payload
 * ```
 *
 * A record is visible only when all of it is there and its checksum holds;
 * a torn tail (a writer killed mid-write) is therefore never delivered, and
 * the next writer cuts it off. A record before the committed end (below)
 * that is not whole and valid is damage, never a torn tail. An end-of-segment record says the stream goes
 * on in the segment whose base is the offset right after it.
 *
 * The writer state (`writer.lock`, 32 bytes) is rewritten by each writer
 * when it takes and releases the lock: `"EIPCWLK1"`, state (u8: 0 clean,
 * 1 dirty = a writer is appending or died appending), a check (u24: the low
 * 24 bits of the crc32 of bytes 0..9 then 12..28: all but itself and the
 * pid), the current segment's base (u64), the end offset (u64), the holder's
 * pid (u32, informational). A state whose check does not hold is damaged, and is no state: a
 * writer refuses the stream (`Corrupt`) rather than trust its end. A check
 * of 0 is none (states written before it existed, or a crc whose low bits
 * are 0). The end offset is the committed end: every record before it was
 * written whole (and acknowledged) before the state was written. A dirty
 * state found by the next holder means its predecessor died: it keeps the
 * whole records past the end, and cuts only a torn tail, a prefix of one
 * record reaching the end of the file; committed records that are missing,
 * or anything else invalid, are a `Corrupt` error and nothing is cut. A
 * writer creates the next segment's file before it writes the end-of-segment
 * record that links it. Byte 32 is set to 1 by a writer waiting for the lock;
 * a holder in a long burst clears it and lets go for a moment.
 *
 * A cursor file holds two 16-byte slots, written alternately, so that a torn
 * write never loses the cursor: offset (u64), sequence (u32), crc32 of the
 * first 12 bytes (u32). The valid slot with the higher sequence wins. Bytes
 * 32..36 hold the pid of the reader that last opened it (informational).
 *
 * @since 0.1.0
 */
import * as Zlib from "node:zlib"

/** Size of a record header. */
export const RECORD_HEADER = 12
/** The most a close record carries (a session's token): it is written past a full stream's cap, so it stays small. */
export const CLOSE_PAYLOAD_MAX = 64
/** Size of a segment header. */
export const SEGMENT_HEADER = 16
/** First byte of every record. */
export const MARKER = 0xef
/** Version byte of every record. */
export const VERSION = 0x01
/** Magic of a segment header. */
export const SEGMENT_MAGIC = "EIPCSEG1"
/** Magic of the writer state. */
export const WRITER_MAGIC = "EIPCWLK1"
/** Size of the writer state. */
export const WRITER_STATE_SIZE = 32
/** Size of a cursor file. */
export const CURSOR_SIZE = 36
/** Largest payload a record can carry (u32). */
export const MAX_PAYLOAD = 0xffff_ffff

/** Record kinds. */
export const Kind = { data: 0, close: 1, endOfSegment: 2 } as const
/** A record kind. */
export type Kind = typeof Kind[keyof typeof Kind]

/** The file name of the segment with base offset `base`. */
export const segmentName = (base: number): string => `${base.toString(16).padStart(16, "0")}.seg`

/** The base offset of a segment file name, or `undefined` for other names. */
export const parseSegmentName = (name: string): number | undefined =>
  /^[0-9a-f]{16}\.seg$/.test(name) ? Number.parseInt(name.slice(0, 16), 16) : undefined

/** True for a reader name usable as a file name (`[A-Za-z0-9._-]`, 1 to 64 characters, not starting with `.`). */
export const isReaderName = (name: string): boolean => /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(name)

const writeU64 = (target: Uint8Array, offset: number, value: number): void => {
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength)
  view.setUint32(offset, Math.floor(value / 0x1_0000_0000))
  view.setUint32(offset + 4, value >>> 0)
}

const readU64 = (source: Uint8Array, offset: number): number => {
  const view = new DataView(source.buffer, source.byteOffset, source.byteLength)
  return view.getUint32(offset) * 0x1_0000_0000 + view.getUint32(offset + 4)
}

/** Writes a record header for `kind` and `payload` into `target` (12 bytes). */
export const writeRecordHeader = (target: Uint8Array, kind: Kind, payload: Uint8Array): void => {
  target[0] = MARKER
  target[1] = VERSION
  target[2] = kind
  target[3] = 0
  const view = new DataView(target.buffer, target.byteOffset, RECORD_HEADER)
  view.setUint32(4, payload.byteLength)
  view.setUint32(8, Zlib.crc32(payload, Zlib.crc32(target.subarray(0, 8))))
}

/** A whole record (header and payload) in one new buffer. */
export const encodeRecord = (kind: Kind, payload: Uint8Array = new Uint8Array(0)): Uint8Array => {
  const out = new Uint8Array(RECORD_HEADER + payload.byteLength)
  out.set(payload, RECORD_HEADER)
  writeRecordHeader(out, kind, payload)
  return out
}

/** What a record header says, once its first 12 bytes are read. */
export type HeaderCheck =
  | { readonly _tag: "Header"; readonly kind: Kind; readonly length: number; readonly crc: number }
  | { readonly _tag: "Invalid"; readonly why: string }

/** Reads the record header at `offset` of `bytes` (12 bytes must be there). */
export const readRecordHeader = (bytes: Uint8Array, offset: number): HeaderCheck => {
  if (bytes[offset] !== MARKER) return { _tag: "Invalid", why: `bad marker byte 0x${hex(bytes[offset]!)}` }
  if (bytes[offset + 1] !== VERSION) return { _tag: "Invalid", why: `unknown record version ${bytes[offset + 1]}` }
  const kind = bytes[offset + 2]!
  if (kind > Kind.endOfSegment) return { _tag: "Invalid", why: `unknown record kind ${kind}` }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, RECORD_HEADER)
  return { _tag: "Header", kind: kind as Kind, length: view.getUint32(4), crc: view.getUint32(8) }
}

/** True when the record at `offset` (header read as `header`) has a matching checksum. */
export const checksumHolds = (bytes: Uint8Array, offset: number, length: number, crc: number): boolean =>
  Zlib.crc32(
    bytes.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + length),
    Zlib.crc32(bytes.subarray(offset, offset + 8))
  ) === crc

const hex = (n: number): string => n.toString(16).padStart(2, "0")

/** A segment header for base offset `base`. */
export const encodeSegmentHeader = (base: number): Uint8Array => {
  const out = new Uint8Array(SEGMENT_HEADER)
  out.set(new TextEncoder().encode(SEGMENT_MAGIC), 0)
  writeU64(out, 8, base)
  return out
}

/** The base offset in a segment header, or `undefined` if it is not one. */
export const decodeSegmentHeader = (bytes: Uint8Array): number | undefined =>
  bytes.byteLength >= SEGMENT_HEADER && new TextDecoder().decode(bytes.subarray(0, 8)) === SEGMENT_MAGIC
    ? readU64(bytes, 8)
    : undefined

/** The writer state kept in `writer.lock`. */
export interface WriterState {
  /** False when a writer died while appending: the tail must be re-validated. */
  readonly clean: boolean
  /** Base offset of the segment being appended to. */
  readonly segment: number
  /** Offset right after the last record known good. */
  readonly end: number
  /** Pid of the last holder. */
  readonly pid: number
}

/**
 * The check of a writer state's bytes: the low 24 bits of the crc32 of bytes 0..9 and 12..28 (not the pid,
 * which only informs: a write of the state cut short where only the pid changed is no damage).
 */
const writerStateCheck = (bytes: Uint8Array): number =>
  Zlib.crc32(bytes.subarray(12, 28), Zlib.crc32(bytes.subarray(0, 9))) & 0xff_ffff

/** Encodes a writer state (32 bytes). */
export const encodeWriterState = (state: WriterState): Uint8Array => {
  const out = new Uint8Array(WRITER_STATE_SIZE)
  out.set(new TextEncoder().encode(WRITER_MAGIC), 0)
  out[8] = state.clean ? 0 : 1
  writeU64(out, 12, state.segment)
  writeU64(out, 20, state.end)
  new DataView(out.buffer).setUint32(28, state.pid)
  const check = writerStateCheck(out)
  out[9] = check >>> 16
  out[10] = (check >>> 8) & 0xff
  out[11] = check & 0xff
  return out
}

/**
 * Decodes a writer state; `undefined` for a file that has none (a new
 * stream) or a damaged one (its check does not hold).
 */
export const decodeWriterState = (bytes: Uint8Array): WriterState | undefined => {
  if (bytes.byteLength < WRITER_STATE_SIZE || new TextDecoder().decode(bytes.subarray(0, 8)) !== WRITER_MAGIC) {
    return undefined
  }
  const stored = (bytes[9]! << 16) | (bytes[10]! << 8) | bytes[11]!
  if (stored !== 0 && stored !== writerStateCheck(bytes)) return undefined
  return {
    clean: bytes[8] === 0,
    segment: readU64(bytes, 12),
    end: readU64(bytes, 20),
    pid: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(28)
  }
}

/** One cursor slot (16 bytes) for `offset` and sequence `seq`. */
export const encodeCursorSlot = (offset: number, seq: number): Uint8Array => {
  const out = new Uint8Array(16)
  writeU64(out, 0, offset)
  const view = new DataView(out.buffer)
  view.setUint32(8, seq >>> 0)
  view.setUint32(12, Zlib.crc32(out.subarray(0, 12)))
  return out
}

/** The cursor in a cursor file's bytes: the valid slot with the higher sequence, if any. */
export const decodeCursor = (bytes: Uint8Array): { readonly offset: number; readonly seq: number } | undefined => {
  let best: { offset: number; seq: number } | undefined
  for (const at of [0, 16]) {
    if (bytes.byteLength < at + 16) continue
    const slot = bytes.subarray(at, at + 16)
    const view = new DataView(slot.buffer, slot.byteOffset, 16)
    if (Zlib.crc32(slot.subarray(0, 12)) !== view.getUint32(12)) continue
    const candidate = { offset: readU64(slot, 0), seq: view.getUint32(8) }
    // sequence numbers wrap at 2^32: compare by distance
    if (best === undefined || ((candidate.seq - best.seq) >>> 0) < 0x8000_0000) best = candidate
  }
  return best
}

/** The pid stored in a cursor file (0 if none). */
export const cursorOwner = (bytes: Uint8Array): number =>
  bytes.byteLength >= CURSOR_SIZE
    ? new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(32)
    : 0
