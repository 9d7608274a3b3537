/**
 * effect-ipc's binary encoding of RPC messages (the `packed`
 * serialization of `IpcRpc`): the values effect's RPC hands a serialization
 * after `Schema.toCodecIso` (plain objects and arrays, strings, numbers,
 * booleans, `null`, `undefined`, bigints, dates and `Uint8Array`s), written
 * tag by tag into one buffer of the exact size. A `Uint8Array` is copied once,
 * into that buffer, and one of 4 KiB or more is read back as a view of the
 * received message: no arena, no zero-filled memory, no second copy. The
 * layout is in `docs/wire.md`.
 *
 * Decoding trusts nothing: every length is checked against the bytes left,
 * nesting is bounded, text must be valid UTF-8, and a message must be read to
 * its last byte; anything else throws a `TypeError` (effect's RPC reports it
 * as a protocol error).
 */
import * as Schema from "effect/Schema"
import * as Bytes from "./bytes.ts"

/** The first byte of a message holding one value. */
export const ONE = 0xe1
/** The first byte of a message holding several values (a count follows). */
export const MANY = 0xe2

const UNDEFINED = 0
const NULL = 1
const FALSE = 2
const TRUE = 3
const INT = 4 // a 32-bit integer, zigzag varint
const FLOAT = 5 // float64, little-endian
const STRING = 6 // UTF-8, varint byte length first
const ARRAY = 7 // varint count, then the elements
const OBJECT = 8 // varint count, then key (varint length + UTF-8) and value pairs
const BYTES = 9 // varint length, then the bytes
const BIGINT = 10 // decimal digits (and a leading '-'), as a string's bytes
const DATE = 11 // float64 milliseconds since the epoch
const FOREIGN = 12 // anything else, as effect's `Schema.Defect()` encodes it (an Error as its name and message), then a value

// what `Schema.toCodecIso` leaves in an `unknown` hole (a defect's Error, a Map) travels as a defect does in JSON
const encodeForeign = Schema.encodeSync(Schema.Defect())
const decodeForeign = Schema.decodeSync(Schema.Defect())

/** How deep values may nest (a cycle is found as nesting past this on the way out). */
export const MAX_DEPTH = 1000

/**
 * The most values without a tag of their own (tag 12) in one message: a defect's Error or two, not a
 * peer's way to make us build thousands of Errors (each takes a stack trace).
 */
export const MAX_FOREIGN = 64

/** The most digits a bigint may have (reading one of a million digits took a tenth of a second). */
export const MAX_BIGINT_DIGITS = 10_000

const textEncoder = new TextEncoder()
// a string is data: a leading U+FEFF is one of its characters, not a byte order mark to drop
const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

const isInt32 = (n: number): boolean => (n | 0) === n && !Object.is(n, -0)

const uvarintSize = (n: number): number => n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5

/** The UTF-8 length of `text` as `TextEncoder` writes it (a lone surrogate becomes U+FFFD: 3 bytes). */
const utf8Length = (text: string): number => {
  let length = text.length
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) continue
    if (c < 0x800) {
      length += 1
    } else if (c >= 0xd800 && c < 0xdc00 && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next < 0xe000) {
        // a pair: two code units, four bytes
        length += 2
        i++
      } else {
        length += 2
      }
    } else {
      length += 2
    }
  }
  return length
}

const describe = (value: unknown): string => {
  if (typeof value !== "object" || value === null) return `a ${typeof value}`
  const name: unknown = Object.getPrototypeOf(value)?.constructor?.name
  return typeof name === "string" && name !== "" ? `a ${name}` : "an object of a class"
}

const isPlain = (value: object): boolean => {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/**
 * One message on its way out: `size` measures every value, then `value`
 * writes it into a buffer of exactly that size. What the format has no tag for
 * is converted once, while measuring.
 */
class Writer {
  buf: Uint8Array = EMPTY
  pos = 0
  private view: DataView | undefined
  private foreign: Map<unknown, unknown> | undefined
  private foreignCount = 0

  /** The bytes `value` takes. */
  size(value: unknown, depth: number): number {
    switch (typeof value) {
      case "undefined":
      case "boolean":
        return 1
      case "number":
        return isInt32(value) ? 1 + uvarintSize(((value << 1) ^ (value >> 31)) >>> 0) : 9
      case "string": {
        const length = utf8Length(value)
        return 1 + uvarintSize(length) + length
      }
      case "bigint": {
        const length = value.toString().length
        if (length - (value < 0n ? 1 : 0) > MAX_BIGINT_DIGITS) {
          throw new TypeError(`IpcRpc's packed serialization: a bigint of more than ${MAX_BIGINT_DIGITS} digits`)
        }
        return 1 + uvarintSize(length) + length
      }
      case "object": {
        if (value === null) return 1
        if (depth >= MAX_DEPTH) {
          throw new TypeError(`IpcRpc's packed serialization: values nest deeper than ${MAX_DEPTH} levels (a cycle?)`)
        }
        if (value instanceof Uint8Array) return 1 + uvarintSize(value.byteLength) + value.byteLength
        if (Array.isArray(value)) {
          let size = 1 + uvarintSize(value.length)
          for (let i = 0; i < value.length; i++) size += this.size(value[i], depth + 1)
          return size
        }
        if (value instanceof Date) return 9
        if (!isPlain(value)) return this.sizeForeign(value, depth)
        const keys = Object.keys(value)
        let size = 1 + uvarintSize(keys.length)
        for (const key of keys) {
          const length = utf8Length(key)
          size += uvarintSize(length) + length + this.size((value as Record<string, unknown>)[key], depth + 1)
        }
        return size
      }
      default:
        return this.sizeForeign(value, depth)
    }
  }

  private sizeForeign(value: unknown, depth: number): number {
    // every occurrence counts, as the reader counts them (the same Error twice is two values of tag 12)
    if (++this.foreignCount > MAX_FOREIGN) {
      throw new TypeError(
        `IpcRpc's packed serialization: more than ${MAX_FOREIGN} values it has no tag for (${
          describe(value)
        }) in one message`
      )
    }
    const foreign = this.foreign ??= new Map()
    const converted = foreign.has(value) ? foreign.get(value) : encodeForeign(value)
    foreign.set(value, converted)
    return 1 + this.size(converted, depth + 1)
  }

  uvarint(n: number): void {
    const buf = this.buf
    while (n >= 0x80) {
      buf[this.pos++] = (n & 0x7f) | 0x80
      n >>>= 7
    }
    buf[this.pos++] = n
  }

  float(n: number): void {
    this.view ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength)
    this.view.setFloat64(this.pos, n, true)
    this.pos += 8
  }

  text(text: string): void {
    const length = utf8Length(text)
    this.uvarint(length)
    // a string longer than when it was measured (a getter) would be cut short: refused, never sent torn
    if (this.pos + length > this.buf.length) throw changedWhileEncoded()
    if (length === text.length) {
      // ASCII: one byte per code unit
      const buf = this.buf
      let pos = this.pos
      for (let i = 0; i < text.length; i++) buf[pos++] = text.charCodeAt(i)
      this.pos = pos
    } else {
      const written = textEncoder.encodeInto(text, this.buf.subarray(this.pos, this.pos + length)).written
      if (written !== length) throw changedWhileEncoded()
      this.pos += written
    }
  }

  /** Writes `value`, measured by `size` before. */
  value(value: unknown): void {
    const buf = this.buf
    switch (typeof value) {
      case "undefined":
        buf[this.pos++] = UNDEFINED
        return
      case "boolean":
        buf[this.pos++] = value ? TRUE : FALSE
        return
      case "number":
        if (isInt32(value)) {
          buf[this.pos++] = INT
          this.uvarint(((value << 1) ^ (value >> 31)) >>> 0)
        } else {
          buf[this.pos++] = FLOAT
          this.float(value)
        }
        return
      case "string":
        buf[this.pos++] = STRING
        this.text(value)
        return
      case "bigint":
        buf[this.pos++] = BIGINT
        this.text(value.toString())
        return
      case "object":
        break
      default:
        buf[this.pos++] = FOREIGN
        this.value(this.foreign?.get(value))
        return
    }
    if (value === null) {
      buf[this.pos++] = NULL
    } else if (value instanceof Uint8Array) {
      buf[this.pos++] = BYTES
      this.uvarint(value.byteLength)
      buf.set(value, this.pos)
      this.pos += value.byteLength
    } else if (Array.isArray(value)) {
      buf[this.pos++] = ARRAY
      this.uvarint(value.length)
      for (let i = 0; i < value.length; i++) this.value(value[i])
    } else if (value instanceof Date) {
      buf[this.pos++] = DATE
      this.float(value.getTime())
    } else if (!isPlain(value)) {
      buf[this.pos++] = FOREIGN
      this.value(this.foreign?.get(value))
    } else {
      const record = value as Record<string, unknown>
      const keys = Object.keys(record)
      buf[this.pos++] = OBJECT
      this.uvarint(keys.length)
      for (const key of keys) {
        this.text(key)
        this.value(record[key])
      }
    }
  }

  /** A buffer of `size` bytes to write into, its first byte `first`. */
  start(size: number, first: number): void {
    this.buf = take(size)
    this.buf[0] = first
    this.pos = 1
  }

  /** The message written; a value that changed between measuring and writing is refused, not sent torn. */
  done(): Uint8Array {
    if (this.pos !== this.buf.length) throw changedWhileEncoded()
    return this.buf
  }
}

const EMPTY = new Uint8Array(0)

const changedWhileEncoded = (cause?: unknown): TypeError =>
  new TypeError("IpcRpc's packed serialization: a value changed while it was encoded", { cause })

// ---- buffers used again -------------------------------------------------
// A large message is written into memory already mapped when there is some: a copy into a fresh 1 MiB
// buffer costs its page faults and the garbage collector's work (bench/README.md, "1 MiB messages").
// A buffer comes back only through `release`, which IpcRpc calls once the channel's `send` has
// returned (a channel owes nothing to a buffer after that); one that never comes back is garbage.

/** The bytes of idle buffers kept at most. */
const SPARE_LIMIT = 8 * 1024 * 1024

const spares = new Bytes.Spares(SPARE_LIMIT)
/** The buffer each message handed out was cut from. */
const lent = new WeakMap<Uint8Array, Uint8Array>()

const take = (size: number): Uint8Array => {
  if (size < Bytes.LARGE) return Bytes.uninitialized(size)
  const spare = spares.take(size)
  // a view of its own each time it is lent: a stale handle of an earlier message is never this one
  const message = spare.subarray(0, size)
  lent.set(message, spare)
  return message
}

/**
 * Gives back a message `encode` or `encodeMany` made, once whoever it was
 * handed to is done with it (a channel, once its `send` returned); its memory
 * is used for a later message. Anything else is left alone.
 */
export const release = (message: Uint8Array): void => {
  const spare = lent.get(message)
  if (spare === undefined) return
  lent.delete(message)
  spares.give(spare)
}

/** Runs the write pass: a value that grew since it was measured (a getter) runs out of room, and is refused so. */
const writing = (write: () => void): void => {
  try {
    write()
  } catch (error) {
    if (error instanceof RangeError) throw changedWhileEncoded(error)
    throw error
  }
}

/** `value` as one message. Throws a `TypeError` for a cycle or nesting past `MAX_DEPTH`. */
export const encode = (value: unknown): Uint8Array => {
  const writer = new Writer()
  writer.start(1 + writer.size(value, 0), ONE)
  writing(() => writer.value(value))
  return writer.done()
}

/** `values` as one message (at least one value). */
export const encodeMany = (values: ReadonlyArray<unknown>): Uint8Array => {
  const writer = new Writer()
  let size = 1 + uvarintSize(values.length)
  for (const value of values) size += writer.size(value, 0)
  writer.start(size, MANY)
  writer.uvarint(values.length)
  writing(() => {
    for (const value of values) writer.value(value)
  })
  return writer.done()
}

const DIGITS = new RegExp(`^-?[0-9]{1,${MAX_BIGINT_DIGITS}}$`)

const malformed = (what: string): never => {
  throw new TypeError(`not a packed RPC message: ${what}`)
}

const utf8Text = (bytes: Uint8Array): string => {
  try {
    return textDecoder.decode(bytes)
  } catch {
    return malformed("text that is not UTF-8")
  }
}

/** Reads values out of one received message; `Uint8Array`s come back as views of it. */
class Reader {
  private view: DataView | undefined
  /** Values of tag 12 read so far. */
  private foreign = 0
  pos = 0
  readonly buf: Uint8Array
  constructor(buf: Uint8Array) {
    this.buf = buf
  }

  uvarint(): number {
    const buf = this.buf
    let result = 0
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.pos >= buf.length) return malformed("it ends inside a number")
      const byte = buf[this.pos++]!
      result += (byte & 0x7f) * 2 ** shift
      if (byte < 0x80) return result
    }
    return malformed("a number runs past five bytes")
  }

  /** A length or count, at most the bytes left (every element takes at least one). */
  size(): number {
    const n = this.uvarint()
    if (n > this.buf.length - this.pos) malformed(`a length of ${n} with ${this.buf.length - this.pos} bytes left`)
    return n
  }

  float(): number {
    if (this.buf.length - this.pos < 8) malformed("it ends inside a number")
    this.view ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength)
    const n = this.view.getFloat64(this.pos, true)
    this.pos += 8
    return n
  }

  text(): string {
    const length = this.size()
    const buf = this.buf
    const start = this.pos
    this.pos += length
    if (length < 64) {
      let ascii = ""
      for (let i = start; i < start + length; i++) {
        const c = buf[i]!
        if (c >= 0x80) return utf8Text(buf.subarray(start, start + length))
        ascii += String.fromCharCode(c)
      }
      return ascii
    }
    return utf8Text(buf.subarray(start, start + length))
  }

  value(depth: number): unknown {
    if (this.pos >= this.buf.length) return malformed("it ends before a value")
    const tag = this.buf[this.pos++]
    switch (tag) {
      case UNDEFINED:
        return undefined
      case NULL:
        return null
      case FALSE:
        return false
      case TRUE:
        return true
      case INT: {
        const zigzag = this.uvarint()
        if (zigzag > 0xffffffff) malformed("an integer past 32 bits")
        return (zigzag >>> 1) ^ -(zigzag & 1)
      }
      case FLOAT:
        return this.float()
      case STRING:
        return this.text()
      case BIGINT: {
        const digits = this.text()
        if (!DIGITS.test(digits)) malformed(`a bigint that is not 1 to ${MAX_BIGINT_DIGITS} decimal digits`)
        return BigInt(digits)
      }
      case DATE:
        return new Date(this.float())
      case FOREIGN: {
        if (depth >= MAX_DEPTH) malformed(`values nest deeper than ${MAX_DEPTH} levels`)
        if (++this.foreign > MAX_FOREIGN) malformed(`more than ${MAX_FOREIGN} values of tag 12`)
        const encoded = this.value(depth + 1)
        try {
          return decodeForeign(encoded as Schema.Json)
        } catch {
          return malformed("a foreign value that is not JSON")
        }
      }
      case BYTES: {
        const length = this.size()
        const at = this.pos
        this.pos += length
        // a small one gets memory of its own: a view's `buffer` is the whole message (or Node's shared pool)
        return length < Bytes.LARGE
          ? new Uint8Array(this.buf.subarray(at, at + length))
          : new Uint8Array(this.buf.buffer, this.buf.byteOffset + at, length)
      }
      case ARRAY: {
        if (depth >= MAX_DEPTH) malformed(`values nest deeper than ${MAX_DEPTH} levels`)
        const count = this.size()
        const array: Array<unknown> = []
        for (let i = 0; i < count; i++) array.push(this.value(depth + 1))
        return array
      }
      case OBJECT: {
        if (depth >= MAX_DEPTH) malformed(`values nest deeper than ${MAX_DEPTH} levels`)
        const count = this.size()
        const record: Record<string, unknown> = {}
        for (let i = 0; i < count; i++) {
          const key = this.text()
          const value = this.value(depth + 1)
          if (key === "__proto__") {
            Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true })
          } else {
            record[key] = value
          }
        }
        return record
      }
      default:
        return malformed(`unknown tag ${tag}`)
    }
  }
}

/** The values of one message, in order; throws a `TypeError` when it is not a whole, well-formed message. */
export const decode = (message: Uint8Array): ReadonlyArray<unknown> => {
  const reader = new Reader(message)
  if (message.length === 0) return malformed("it is empty")
  const first = message[reader.pos++]
  let values: Array<unknown>
  if (first === ONE) {
    values = [reader.value(0)]
  } else if (first === MANY) {
    const count = reader.size()
    values = []
    for (let i = 0; i < count; i++) values.push(reader.value(0))
  } else {
    return malformed(`first byte ${first}`)
  }
  if (reader.pos !== message.length) malformed(`${message.length - reader.pos} bytes after its last value`)
  return values
}
