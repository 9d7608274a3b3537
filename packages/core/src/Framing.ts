/**
 * The effect-ipc frame format for byte streams (Unix sockets, named pipes,
 * FIFOs, child-process pipes). Each frame is a 6-byte header and a payload:
 *
 * ```text
 * offset  size  field
 * 0       1     version  (always 0x01)
 * 1       1     kind     (0 data, 1 close, 2 ping, 3 pong)
 * 2       4     length   (payload bytes, unsigned, big-endian)
 * 6       n     payload
 * ```
 *
 * A `data` frame carries one message. A `close` frame (length 0) says the
 * sender is done: an end of stream without one means the peer was lost.
 * `ping` frames are answered with a `pong` carrying the same payload.
 * Anything else (another version byte, an unknown kind, a length above the
 * receiver's limit) is a protocol error and the connection is dropped.
 *
 * @since 0.1.0
 */
import * as Bytes from "./internal/bytes.ts"
import * as IpcError from "./IpcError.ts"

/** The version byte of every frame. */
export const VERSION = 0x01
/** Size of a frame header in bytes. */
export const HEADER_SIZE = 6
/** Frame kinds. */
export const Kind = { data: 0, close: 1, ping: 2, pong: 3 } as const
/** A frame kind. */
export type Kind = typeof Kind[keyof typeof Kind]
/** Default largest payload a receiver accepts: 256 MiB. */
export const DEFAULT_MAX_FRAME_SIZE = 256 * 1024 * 1024
/** Largest payload the format can carry. */
export const MAX_FRAME_SIZE = 0xffff_ffff

/** Writes a frame header for `kind` and `length` into `target` at `offset`. */
export const writeHeader = (target: Uint8Array, offset: number, kind: Kind, length: number): void => {
  target[offset] = VERSION
  target[offset + 1] = kind
  target[offset + 2] = (length >>> 24) & 0xff
  target[offset + 3] = (length >>> 16) & 0xff
  target[offset + 4] = (length >>> 8) & 0xff
  target[offset + 5] = length & 0xff
}

/** Encodes one whole frame (header and payload) into a new buffer. */
export const encode = (kind: Kind, payload: Uint8Array = new Uint8Array(0)): Uint8Array => {
  const out = new Uint8Array(HEADER_SIZE + payload.byteLength)
  writeHeader(out, 0, kind, payload.byteLength)
  out.set(payload, HEADER_SIZE)
  return out
}

/** Receives each decoded frame; data payloads may view the input chunk (no copy). */
export type FrameHandler = (kind: Kind, payload: Uint8Array) => void

// first buffer of a frame spread over several chunks: its length declares more than has arrived
const INITIAL_BODY = 64 * 1024
// chunks handed over: past this many views of a partial frame, their average size is checked
const PIECES_CHECKED = 64
// ... and below this average the views are copied into a buffer (each view and chunk costs about 200 bytes)
const MIN_PIECE_AVERAGE = 4096

/** Options of a `Decoder`. */
export interface DecoderOptions {
  /**
   * The caller hands each chunk over with `push` and never writes into it
   * again (Node's stream chunks: every read is a fresh buffer). A frame spread
   * over several chunks is then kept as views of them and copied once, into a
   * buffer of its exact length, when its last byte arrives (chunks averaging
   * under 4 KiB are copied as they come instead: a view costs more than a
   * few bytes). Without it
   * (default) the decoder copies what it keeps before `push` returns.
   */
  readonly chunksHandedOver?: boolean | undefined
}

/**
 * An incremental frame decoder: feed it chunks as they arrive, in any sizes,
 * and it calls back once per whole frame. Frames inside one chunk are not
 * copied; a frame spread over several chunks is assembled in a buffer of its
 * own (a caller may reuse a chunk once `push` returns, unless it handed the
 * chunks over, see `DecoderOptions`). Memory held for a partial frame follows
 * the bytes received (at most twice them), never the length the peer
 * declared but did not send.
 */
export class Decoder {
  private header = new Uint8Array(HEADER_SIZE)
  private headerFill = 0
  private body: Uint8Array | undefined = undefined
  // chunks handed over: the partial frame's pieces, views of the chunks (body is then unused)
  private pieces: Array<Uint8Array> | undefined = undefined
  private bodyLength = 0
  private bodyFill = 0
  private bodyKind: Kind = Kind.data
  private failed: IpcError.IpcError | undefined = undefined

  private readonly maxFrameSize: number
  private readonly handedOver: boolean

  constructor(maxFrameSize: number = DEFAULT_MAX_FRAME_SIZE, options: DecoderOptions = {}) {
    this.maxFrameSize = maxFrameSize
    this.handedOver = options.chunksHandedOver === true
  }

  /** True when a frame has started but not finished (the stream was cut mid-frame if it ends now). */
  get inFrame(): boolean {
    return this.headerFill > 0 || this.body !== undefined || this.pieces !== undefined
  }

  /**
   * Decodes `chunk`, calling `onFrame` per frame; returns an error at the first
   * malformed header. The stream is dead after an error: every later call
   * returns the same error and delivers nothing.
   */
  push(chunk: Uint8Array, onFrame: FrameHandler): IpcError.IpcError | undefined {
    if (this.failed === undefined) this.failed = this.decode(chunk, onFrame)
    return this.failed
  }

  private decode(chunk: Uint8Array, onFrame: FrameHandler): IpcError.IpcError | undefined {
    let offset = 0
    const end = chunk.byteLength
    while (offset < end) {
      if (this.pieces !== undefined) {
        const take = Math.min(this.bodyLength - this.bodyFill, end - offset)
        this.pieces.push(chunk.subarray(offset, offset + take))
        this.bodyFill += take
        offset += take
        if (this.bodyFill === this.bodyLength) {
          // one copy, into memory of the frame's exact length (not zeroed: every byte is written)
          const body = Bytes.uninitialized(this.bodyLength)
          let at = 0
          for (const piece of this.pieces) {
            body.set(piece, at)
            at += piece.byteLength
          }
          this.pieces = undefined
          this.bodyFill = 0
          onFrame(this.bodyKind, body)
        } else if (this.pieces.length >= PIECES_CHECKED && this.bodyFill < this.pieces.length * MIN_PIECE_AVERAGE) {
          // small pieces (a peer trickling bytes, a read each): a view costs more than its bytes, so the
          // frame goes on in a buffer of its own, grown as the bytes come
          const body = Bytes.uninitialized(Math.min(this.bodyLength, Math.max(INITIAL_BODY, 2 * this.bodyFill)))
          let at = 0
          for (const piece of this.pieces) {
            body.set(piece, at)
            at += piece.byteLength
          }
          this.pieces = undefined
          this.body = body
        }
        continue
      }
      if (this.body !== undefined) {
        const want = this.bodyLength - this.bodyFill
        const take = Math.min(want, end - offset)
        if (this.bodyFill + take > this.body.byteLength) this.grow(this.bodyFill + take)
        this.body.set(chunk.subarray(offset, offset + take), this.bodyFill)
        this.bodyFill += take
        offset += take
        if (this.bodyFill === this.bodyLength) {
          const body = this.body
          this.body = undefined
          this.bodyFill = 0
          onFrame(this.bodyKind, body)
        }
        continue
      }
      let kind: number
      let length: number
      if (this.headerFill === 0 && end - offset >= HEADER_SIZE) {
        // fast path: the whole header is in this chunk
        const error = this.check(chunk[offset]!, chunk[offset + 1]!)
        if (error) return error
        kind = chunk[offset + 1]!
        length = ((chunk[offset + 2]! << 24) >>> 0) + (chunk[offset + 3]! << 16) + (chunk[offset + 4]! << 8) +
          chunk[offset + 5]!
        offset += HEADER_SIZE
      } else {
        const take = Math.min(HEADER_SIZE - this.headerFill, end - offset)
        this.header.set(chunk.subarray(offset, offset + take), this.headerFill)
        this.headerFill += take
        offset += take
        if (this.headerFill === 1 || this.headerFill >= 2) {
          const error = this.check(this.header[0]!, this.headerFill >= 2 ? this.header[1]! : Kind.data)
          if (error) return error
        }
        if (this.headerFill < HEADER_SIZE) continue
        this.headerFill = 0
        const h = this.header
        kind = h[1]!
        length = ((h[2]! << 24) >>> 0) + (h[3]! << 16) + (h[4]! << 8) + h[5]!
      }
      if (length > this.maxFrameSize) {
        return IpcError.frameTooLarge(length, this.maxFrameSize)
      }
      if (end - offset >= length) {
        onFrame(kind as Kind, chunk.subarray(offset, offset + length))
        offset += length
      } else if (this.handedOver) {
        // views of the chunks as they come (memory for what has arrived), one copy at the end
        this.pieces = []
        this.bodyLength = length
        this.bodyFill = 0
        this.bodyKind = kind as Kind
      } else {
        // memory for what has arrived, not for what the peer declares: the buffer grows (doubling)
        // as the bytes come, up to the frame's length; every byte is written before delivery, so
        // it need not be zeroed
        this.body = Bytes.uninitialized(Math.min(length, Math.max(INITIAL_BODY, 2 * (end - offset))))
        this.bodyLength = length
        this.bodyFill = 0
        this.bodyKind = kind as Kind
      }
    }
    return undefined
  }

  /** Grows the partial frame's buffer to hold at least `needed` bytes (doubling, at most its length). */
  private grow(needed: number): void {
    const grown = Bytes.uninitialized(Math.min(this.bodyLength, Math.max(needed, 2 * this.body!.byteLength)))
    grown.set(this.body!.subarray(0, this.bodyFill))
    this.body = grown
  }

  private check(version: number, kind: number): IpcError.IpcError | undefined {
    if (version !== VERSION) {
      return IpcError.make(
        "Protocol",
        `bad frame version byte 0x${version.toString(16).padStart(2, "0")} (expected 0x01): not an effect-ipc peer`
      )
    }
    if (kind > Kind.pong) return IpcError.make("Protocol", `unknown frame kind ${kind}`)
    return undefined
  }
}
