/**
 * A single-producer single-consumer ring of records in a segment, lock-free:
 * the producer owns `tail`, the consumer owns `head`, each published with one
 * `Atomics.store` after the bytes it covers are written (or read), so a
 * record is either wholly visible or not at all. A producer killed mid-write
 * leaves nothing half-written for the reader.
 *
 * Layout of the kind-specific header area (bytes from the segment start),
 * each field on its own cache line:
 *
 * ```text
 * 2048  capacity (u32, a power of two)
 * 2112  tail     (u32, bytes ever written, wrapping)
 * 2176  head     (u32, bytes ever released by the reader, wrapping)
 * 2240  reader waiting (1 while the reader sleeps until rung)
 * 2304  writer waiting (1 while the writer sleeps until there is space)
 * 2368  closed   (1 once the producer has sent everything it will send)
 * 2432  segments taken (u32, wrapping): large messages' segments the reader
 *       has opened (their records name them), written by the reader
 * 4096  data     (capacity bytes)
 * ```
 *
 * A record is an 8-byte header (i32 length, i32 kind) and its payload padded
 * to 8 bytes, never split at the end of the data area: a `pad` record fills
 * the tail end instead. Records come from another process, so the reader
 * checks every header and reports a bad one as `Protocol`.
 *
 * The waiting flags implement the doorbell protocol: a side about to sleep
 * sets its flag and looks again; the other side, after publishing, clears
 * the flag with a compare-and-swap and rings only if it was set. Both steps
 * are sequentially consistent, so a wake-up is never lost.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Header from "./header.ts"

/** Record kinds. */
export const RecordKind = { data: 1, segment: 2, pad: 3 } as const
/** A record kind. */
export type RecordKind = typeof RecordKind[keyof typeof RecordKind]

/** Bytes of a record header. */
export const RECORD_HEADER = 8

const W_CAPACITY = Header.KIND_AREA / 4
const W_TAIL = (Header.KIND_AREA + 64) / 4
const W_HEAD = (Header.KIND_AREA + 128) / 4
const W_READER_WAITING = (Header.KIND_AREA + 192) / 4
const W_WRITER_WAITING = (Header.KIND_AREA + 256) / 4
const W_CLOSED = (Header.KIND_AREA + 320) / 4
const W_SEGMENTS_TAKEN = (Header.KIND_AREA + 384) / 4

/** Smallest and largest ring capacity. */
export const MIN_CAPACITY = 4096
/** Largest ring capacity (1 GiB). */
export const MAX_CAPACITY = 1 << 30

/** Rounds `bytes` up to a power of two within the allowed range. */
export const capacityFor = (bytes: number): number => {
  let c = MIN_CAPACITY
  while (c < bytes && c < MAX_CAPACITY) c *= 2
  return c
}

/** Bytes a record with a payload of `length` takes. */
export const recordSize = (length: number): number => RECORD_HEADER + length + ((8 - (length & 7)) & 7)

/** Writes the ring fields of a fresh segment (under its creator's header lock). */
export const initialise = (words: Int32Array, capacity: number): void => {
  words[W_CAPACITY] = capacity
}

/** Lays out a fresh ring segment (header, then an empty ring of `capacity` bytes) and publishes it. */
export const initialiseSegment = (buffer: ArrayBuffer, capacity: number): Header.HeaderView => {
  const header = Header.view(buffer)
  Header.initialise(header, { kind: Header.Kind.ring, ttlMillis: 0, payloadLength: capacity, createdAt: Date.now() })
  initialise(header.words, capacity)
  Header.publish(header)
  return header
}

/** The capacity recorded in a ring segment's header, checked against the segment's size. */
export const capacityOf = (words: Int32Array, payloadLength: number): number | undefined => {
  const capacity = words[W_CAPACITY]! >>> 0
  const powerOfTwo = capacity >= MIN_CAPACITY && capacity <= MAX_CAPACITY && (capacity & (capacity - 1)) === 0
  return powerOfTwo && capacity === payloadLength ? capacity : undefined
}

/** The fields both sides of a ring use. */
abstract class RingSide {
  protected readonly words: Int32Array
  protected readonly bytes: Uint8Array
  protected readonly data: Int32Array
  readonly capacity: number
  protected readonly mask: number

  constructor(buffer: ArrayBuffer, capacity: number) {
    this.words = new Int32Array(buffer, 0, Header.HEADER_SIZE / 4)
    this.bytes = new Uint8Array(buffer, Header.HEADER_SIZE, capacity)
    this.data = new Int32Array(buffer, Header.HEADER_SIZE, capacity / 4)
    this.capacity = capacity
    this.mask = capacity - 1
  }

  /** True once the producer has closed its side. */
  isClosed(): boolean {
    return Atomics.load(this.words, W_CLOSED) === 1
  }
}

/** The writing side. */
export class Producer extends RingSide {
  private tail: number
  private head: number
  /**
   * Set once the reader's head was found where no reader puts it (behind the head seen before it, or
   * past what was written): `Protocol`. The ring is then full for good; the caller fails the channel.
   */
  damage: IpcError.IpcError | undefined

  constructor(buffer: ArrayBuffer, capacity: number) {
    super(buffer, capacity)
    this.tail = Atomics.load(this.words, W_TAIL) >>> 0
    this.head = Atomics.load(this.words, W_HEAD) >>> 0
  }

  /** The largest payload `write` can ever take (half the ring, so that a pad never blocks it). */
  get maxPayload(): number {
    return this.capacity / 2 - RECORD_HEADER
  }

  /** Bytes the reader has not released yet, as of the last look. */
  private used(): number {
    return (this.tail - this.head) >>> 0
  }

  /** True when a record of `length` payload bytes fits now (reads the reader's head if needed). */
  fits(length: number): boolean {
    if (this.damage !== undefined) return false
    const total = recordSize(length)
    const toEnd = this.capacity - (this.tail & this.mask)
    const need = total <= toEnd ? total : toEnd + total
    if (need <= this.capacity - this.used()) return true
    return this.lookAtHead() && need <= this.capacity - this.used()
  }

  /** True when the reader has released every record written (its head caught up with the tail). */
  drained(): boolean {
    return this.lookAtHead() && this.head === this.tail
  }

  /**
   * Reads the reader's head; `false` (and `damage` set) where the reader cannot have put it: a reader
   * releases forward from where it was, never past what was written.
   */
  private lookAtHead(): boolean {
    if (this.damage !== undefined) return false
    const head = Atomics.load(this.words, W_HEAD) >>> 0
    if (((head - this.head) >>> 0) > ((this.tail - this.head) >>> 0)) {
      this.damage = IpcError.make(
        "Protocol",
        `bad ring head ${head} (head before ${this.head}, tail ${this.tail}, capacity ${this.capacity})`
      )
      return false
    }
    this.head = head
    return true
  }

  /**
   * Writes one record and publishes it (unless `publish` is false: then it
   * shows once `publish()` is called); `false` (nothing written) when it does
   * not fit now. `payload` is copied into the ring.
   */
  write(kind: RecordKind, payload: Uint8Array, publish = true): boolean {
    const length = payload.byteLength
    if (!this.fits(length)) return false
    let offset = this.tail & this.mask
    const total = recordSize(length)
    if (total > this.capacity - offset) {
      const pad = this.capacity - offset
      this.data[offset >> 2] = pad - RECORD_HEADER
      this.data[(offset >> 2) + 1] = RecordKind.pad
      this.tail = (this.tail + pad) >>> 0
      offset = 0
    }
    this.data[offset >> 2] = length
    this.data[(offset >> 2) + 1] = kind
    if (length > 0) this.bytes.set(payload, offset + RECORD_HEADER)
    this.tail = (this.tail + total) >>> 0
    if (publish) Atomics.store(this.words, W_TAIL, this.tail | 0)
    return true
  }

  /** Publishes every record written so far (those written with `publish` false). */
  publish(): void {
    Atomics.store(this.words, W_TAIL, this.tail | 0)
  }

  /** After publishing: true when the reader was asleep (the caller rings its doorbell). */
  takeReaderWaiting(): boolean {
    return Atomics.load(this.words, W_READER_WAITING) === 1 &&
      Atomics.compareExchange(this.words, W_READER_WAITING, 1, 0) === 1
  }

  /** Sets the writer-waiting flag (about to sleep until the reader rings). */
  armWriter(): void {
    Atomics.store(this.words, W_WRITER_WAITING, 1)
  }

  /** Clears the writer-waiting flag. */
  disarmWriter(): void {
    Atomics.store(this.words, W_WRITER_WAITING, 0)
  }

  /** Marks the ring closed: the reader ends gracefully once it has read everything. */
  close(): void {
    Atomics.store(this.words, W_CLOSED, 1)
  }

  /** The position after everything written so far. */
  get position(): number {
    return this.tail
  }

  /**
   * How many segment records' segments the reader has opened (wrapping u32):
   * unlike its head, this moves past records still pinned before them.
   */
  segmentsTaken(): number {
    return Atomics.load(this.words, W_SEGMENTS_TAKEN) >>> 0
  }
}

/** A record as read: where its payload is in the data area, and the position after it. */
export interface RecordRef {
  readonly kind: RecordKind
  /** Offset of the payload from the start of the segment. */
  readonly offset: number
  readonly length: number
  /** Ring position just after the record (release up to here to free it). */
  readonly end: number
}

/** The reading side. Records are read in order; space is released in order with `release`. */
export class Consumer extends RingSide {
  private read: number
  private tail: number
  private released: number

  constructor(buffer: ArrayBuffer, capacity: number) {
    super(buffer, capacity)
    this.released = Atomics.load(this.words, W_HEAD) >>> 0
    this.read = this.released
    this.tail = Atomics.load(this.words, W_TAIL) >>> 0
  }

  /** True when a record is waiting (reads the producer's tail if needed). */
  hasNext(): boolean {
    if (this.read !== this.tail) return true
    this.tail = Atomics.load(this.words, W_TAIL) >>> 0
    return this.read !== this.tail
  }

  /**
   * The next record, or `undefined` when there is none. Pads are skipped (and
   * released with the records around them). A malformed header is `Protocol`.
   */
  next(): RecordRef | IpcError.IpcError | undefined {
    while (this.hasNext()) {
      // the producer's tail is never behind what we read, nor more than the capacity ahead of what we released
      const ahead = (this.tail - this.released) >>> 0
      if (ahead > this.capacity || ahead < ((this.read - this.released) >>> 0)) {
        return IpcError.make(
          "Protocol",
          `bad ring tail ${this.tail >>> 0} (head ${this.released}, capacity ${this.capacity})`
        )
      }
      const offset = this.read & this.mask
      const available = (this.tail - this.read) >>> 0
      const length = this.data[offset >> 2]!
      const kind = this.data[(offset >> 2) + 1]!
      // the length is checked before it is rounded: a peer's 0x7ffffff9 rounded in 32 bits came out negative,
      // passed the checks, and made a view past the mapping (a fault) or a 2 GiB copy
      const total = length < 0 || length > this.capacity - RECORD_HEADER ? -1 : recordSize(length)
      if (total < 0 || total > this.capacity - offset || total > available) {
        return IpcError.make("Protocol", `bad ring record (length ${length} at offset ${offset})`)
      }
      this.read = (this.read + total) >>> 0
      if (kind === RecordKind.pad) continue
      if (kind !== RecordKind.data && kind !== RecordKind.segment) {
        return IpcError.make("Protocol", `bad ring record kind ${kind}`)
      }
      return { kind, offset: Header.HEADER_SIZE + offset + RECORD_HEADER, length, end: this.read }
    }
    return undefined
  }

  /** The payload bytes of a record (a view of the ring, valid until released). */
  payload(record: RecordRef): Uint8Array {
    return this.bytes.subarray(record.offset - Header.HEADER_SIZE, record.offset - Header.HEADER_SIZE + record.length)
  }

  /** The position after the last record read. */
  get position(): number {
    return this.read
  }

  /** Frees the ring up to `position` for the writer (positions only move forward). */
  release(position: number): void {
    if (((position - this.released) >>> 0) > this.capacity) return
    this.released = position
    Atomics.store(this.words, W_HEAD, position | 0)
  }

  /**
   * Counts one more segment record whose segment the reader has opened (the
   * writer may let go of it then); the caller then checks `takeWriterWaiting`.
   */
  tookSegment(): void {
    Atomics.add(this.words, W_SEGMENTS_TAKEN, 1)
  }

  /** After releasing: true when the writer was waiting for space (the caller rings its doorbell). */
  takeWriterWaiting(): boolean {
    return Atomics.load(this.words, W_WRITER_WAITING) === 1 &&
      Atomics.compareExchange(this.words, W_WRITER_WAITING, 1, 0) === 1
  }

  /** Sets the reader-waiting flag (about to sleep until the writer rings). */
  armReader(): void {
    Atomics.store(this.words, W_READER_WAITING, 1)
  }

  /** Clears the reader-waiting flag. */
  disarmReader(): void {
    // a store only when set: the writer reads this word after every write
    if (Atomics.load(this.words, W_READER_WAITING) !== 0) Atomics.store(this.words, W_READER_WAITING, 0)
  }
}
