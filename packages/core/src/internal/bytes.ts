/**
 * Fresh byte buffers for messages: memory that is not zero-filled first where
 * every byte is written anyway.
 *
 * On the machines measured (bench/README.md, "1 MiB messages") a fresh 1 MiB
 * `slice()` or `new Uint8Array(n)` costs hundreds of page faults, while
 * `Buffer.allocUnsafeSlow(n)` and a copy into it cost about a tenth of that;
 * below 4 KiB it makes no difference, and a small `Buffer.allocUnsafe` comes
 * from Node's shared pool.
 */

// Node's Buffer where there is one (core also loads in browsers, which have none)
const NodeBuffer: typeof Buffer | undefined = (globalThis as { Buffer?: typeof Buffer }).Buffer

const textEncoder = new TextEncoder()

/**
 * `text` as UTF-8 bytes, a plain `Uint8Array` (not a Buffer). In Node through
 * `Buffer.from` (Node's shared pool for short text): `TextEncoder.encode`
 * allocates an `ArrayBuffer` of its own, 560 ns for a 143-character RPC
 * message in Node 24 here against 70 ns.
 */
export const utf8 = (text: string): Uint8Array => {
  if (NodeBuffer === undefined) return textEncoder.encode(text)
  const bytes = NodeBuffer.from(text, "utf8")
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** The length of `text` in UTF-8, without encoding it where Node can tell. */
export const utf8Length = (text: string): number =>
  NodeBuffer === undefined ? textEncoder.encode(text).byteLength : NodeBuffer.byteLength(text, "utf8")

/** From this size on, fresh buffers come from `allocUnsafeSlow` (below, from Node's pool or `new Uint8Array`). */
export const LARGE = 4096

/** A buffer of `length` bytes whose contents are undefined: the caller writes every byte before anyone reads it. */
export const uninitialized = (length: number): Uint8Array => {
  if (NodeBuffer === undefined) return new Uint8Array(length)
  return length < LARGE ? NodeBuffer.allocUnsafe(length) : NodeBuffer.allocUnsafeSlow(length)
}

/**
 * A copy of `message` that the caller owns (whoever gave `message` may reuse
 * it); `new Uint8Array(message)`, not `slice()`: a Node Buffer's `slice` is a
 * view of the same memory.
 */
export const copyOf = (message: Uint8Array): Uint8Array => {
  if (message.byteLength < LARGE || NodeBuffer === undefined) return new Uint8Array(message)
  const copy = NodeBuffer.allocUnsafeSlow(message.byteLength)
  copy.set(message)
  return copy
}

/**
 * Buffers used again: `take` gives one of at least `size` bytes and at most
 * twice that when one is idle (else a fresh one), `give` takes one back once
 * whoever had it is done with it, keeping at most `limit` idle bytes. A copy
 * into memory already mapped costs a tenth of a fresh 1 MiB allocation
 * (bench/README.md, "1 MiB messages").
 */
export class Spares {
  private readonly idle: Array<Uint8Array> = []
  private idleBytes = 0
  private readonly limit: number

  constructor(limit: number) {
    this.limit = limit
  }

  /** An idle buffer of `size` to `2 * size` bytes, or a fresh one of `size` (contents undefined either way). */
  take(size: number): Uint8Array {
    for (let i = 0; i < this.idle.length; i++) {
      const spare = this.idle[i]!
      if (spare.byteLength >= size && spare.byteLength <= 2 * size) {
        this.idle.splice(i, 1)
        this.idleBytes -= spare.byteLength
        return spare
      }
    }
    return uninitialized(size)
  }

  /** Takes `spare` back for a later `take`, unless that would keep more than the limit idle. */
  give(spare: Uint8Array): void {
    if (this.idleBytes + spare.byteLength <= this.limit) {
      this.idle.push(spare)
      this.idleBytes += spare.byteLength
    }
  }
}

/**
 * The frames of a message of uvarint-length-prefixed frames (effect's schema
 * binary), each as `[start, end)` with its header; or why the frames do not
 * fill the message exactly (an empty frame, a length past the message's end,
 * a header cut short).
 */
export const uvarintFrames = (bytes: Uint8Array): ReadonlyArray<readonly [number, number]> | string => {
  const frames: Array<readonly [number, number]> = []
  let pos = 0
  while (pos < bytes.length) {
    const end = uvarintFrameEnd(bytes, pos)
    if (typeof end === "string") return end
    frames.push([pos, end])
    pos = end
  }
  return frames.length === 0 ? "an empty message" : frames
}

/** True when `bytes` is exactly one well-formed uvarint-framed frame (as `uvarintFrames` would find, allocating nothing). */
export const isOneUvarintFrame = (bytes: Uint8Array): boolean =>
  bytes.length > 0 && uvarintFrameEnd(bytes, 0) === bytes.length

/** Where the uvarint-framed frame starting at `pos` ends, or what is wrong with it. */
const uvarintFrameEnd = (bytes: Uint8Array, pos: number): number | string => {
  let length = 0
  let scale = 1
  let header = 0
  for (;;) {
    if (pos + header >= bytes.length) return `a frame header cut short at byte ${pos}`
    const b = bytes[pos + header]!
    length += (b & 0x7f) * scale
    header++
    if ((b & 0x80) === 0) break
    if (header === 8) return `a frame length past 2^56 at byte ${pos}`
    scale *= 128
  }
  if (length === 0) return `an empty frame at byte ${pos}`
  const end = pos + header + length
  if (end > bytes.length) {
    return `a frame of ${length} bytes at byte ${pos}, past the end of its message (${bytes.length} bytes)`
  }
  return end
}
