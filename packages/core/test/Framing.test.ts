import { Framing, IpcError } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import * as V8 from "node:v8"
import * as Vm from "node:vm"

V8.setFlagsFromString("--expose-gc")

const frames = (decoder: Framing.Decoder, chunks: ReadonlyArray<Uint8Array>) => {
  const out: Array<[number, Array<number>]> = []
  for (const chunk of chunks) {
    const error = decoder.push(chunk, (kind, payload) => out.push([kind, [...payload]]))
    if (error) return error
  }
  return out
}

const concat = (parts: ReadonlyArray<Uint8Array>) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.byteLength
  }
  return out
}

describe("Framing", () => {
  it("writes the documented header: version, kind, big-endian length", () => {
    assert.deepStrictEqual([...Framing.encode(Framing.Kind.data, new Uint8Array([7, 8]))], [1, 0, 0, 0, 0, 2, 7, 8])
    assert.deepStrictEqual([...Framing.encode(Framing.Kind.close)], [1, 1, 0, 0, 0, 0])
    const big = Framing.encode(Framing.Kind.data, new Uint8Array(0x010203))
    assert.deepStrictEqual([...big.subarray(0, 6)], [1, 0, 0, 0x01, 0x02, 0x03])
  })

  it("decodes the same frames however the stream is split", () => {
    const payloads = [0, 1, 5, 300, 70_000].map((n) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff))
    const stream = concat([
      ...payloads.map((p) => Framing.encode(Framing.Kind.data, p)),
      Framing.encode(Framing.Kind.ping, new Uint8Array([1])),
      Framing.encode(Framing.Kind.close)
    ])
    const expected = [
      ...payloads.map((p): [number, Array<number>] => [0, [...p]]),
      [2, [1]] as [number, Array<number>],
      [1, []] as [number, Array<number>]
    ]
    let seed = 42
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff
    for (let round = 0; round < 200; round++) {
      const chunks: Array<Uint8Array> = []
      let offset = 0
      const maxChunk = round < 20 ? round + 1 : Math.floor(random() * 100_000) + 1
      while (offset < stream.byteLength) {
        const size = Math.max(1, Math.floor(random() * maxChunk))
        chunks.push(stream.subarray(offset, offset + size))
        offset += size
      }
      const decoder = new Framing.Decoder()
      assert.deepStrictEqual(frames(decoder, chunks), expected, `round ${round}`)
      assert.isFalse(decoder.inFrame)
    }
  })

  it("knows when the stream stops in the middle of a frame", () => {
    const decoder = new Framing.Decoder()
    const frame = Framing.encode(Framing.Kind.data, new Uint8Array(10))
    frames(decoder, [frame.subarray(0, 3)])
    assert.isTrue(decoder.inFrame)
    frames(decoder, [frame.subarray(3, 12)])
    assert.isTrue(decoder.inFrame)
    frames(decoder, [frame.subarray(12)])
    assert.isFalse(decoder.inFrame)
  })

  it("rejects a bad version byte at once, even before the header is complete", () => {
    const error = frames(new Framing.Decoder(), [new Uint8Array([0x47])])
    assert.isFalse(Array.isArray(error))
    if (!Array.isArray(error)) assert.strictEqual(error.reason._tag, "Protocol")
  })

  it("rejects an unknown kind", () => {
    const error = frames(new Framing.Decoder(), [new Uint8Array([1, 9, 0, 0, 0, 0])])
    if (Array.isArray(error)) assert.fail("expected an error")
    assert.strictEqual(error.reason._tag, "Protocol")
  })

  it("rejects a length over the limit before allocating anything", () => {
    const error = frames(new Framing.Decoder(1024), [new Uint8Array([1, 0, 0xff, 0xff, 0xff, 0xff])])
    if (Array.isArray(error)) assert.fail("expected an error")
    assert.strictEqual(error.reason._tag, "FrameTooLarge")
  })
})

const limit = 4096

type Outcome = {
  readonly frames: Array<[number, Array<number>]>
  readonly error: string | undefined
  readonly inFrame: boolean
}

/** The specification, read straight off the format: the whole stream at once, no state carried between chunks. */
const reference = (stream: Uint8Array, maxFrameSize: number): Outcome => {
  const out: Array<[number, Array<number>]> = []
  let offset = 0
  while (offset < stream.byteLength) {
    if (stream[offset] !== Framing.VERSION) return { frames: out, error: "Protocol", inFrame: false }
    if (offset + 1 < stream.byteLength && stream[offset + 1]! > Framing.Kind.pong) {
      return { frames: out, error: "Protocol", inFrame: false }
    }
    if (stream.byteLength - offset < Framing.HEADER_SIZE) return { frames: out, error: undefined, inFrame: true }
    const length = new DataView(stream.buffer, stream.byteOffset + offset + 2, 4).getUint32(0)
    if (length > maxFrameSize) return { frames: out, error: "FrameTooLarge", inFrame: false }
    const start = offset + Framing.HEADER_SIZE
    if (stream.byteLength - start < length) return { frames: out, error: undefined, inFrame: true }
    out.push([stream[offset + 1]!, [...stream.subarray(start, start + length)]])
    offset = start + length
  }
  return { frames: out, error: undefined, inFrame: false }
}

/**
 * Feeds `stream` to a decoder in chunks cut at `cuts`; stops at the first error, as a channel does.
 * Chunks lent (the default) are scribbled over once pushed; chunks handed over are left alone, and the
 * frames are read only at the end: a frame must stay intact while later chunks are decoded.
 */
const decode = (
  stream: Uint8Array,
  cuts: ReadonlyArray<number>,
  maxFrameSize: number,
  chunksHandedOver = false
): Outcome => {
  const decoder = new Framing.Decoder(maxFrameSize, { chunksHandedOver })
  const got: Array<[number, Uint8Array | Array<number>]> = []
  const read = () => got.map(([kind, payload]): [number, Array<number>] => [kind, [...payload]])
  const points = [...new Set([0, ...cuts.map((c) => c % (stream.byteLength + 1)), stream.byteLength])]
    .toSorted((a, b) => a - b)
  for (let i = 1; i < points.length; i++) {
    // a fresh copy per chunk, scribbled over once pushed: a frame assembled across chunks must not view them
    const chunk = stream.slice(points[i - 1], points[i])
    const error = decoder.push(chunk, (kind, payload) => got.push([kind, chunksHandedOver ? payload : [...payload]]))
    if (!chunksHandedOver) chunk.fill(0xee)
    if (error !== undefined) {
      assert.instanceOf(error, IpcError.IpcError)
      // the stream is dead after an error: more input gives the error again and no frame
      const after = decoder.push(
        Framing.encode(Framing.Kind.data, new Uint8Array([1])),
        () => assert.fail("a frame after an error")
      )
      assert.strictEqual(after?.reason._tag, error.reason._tag)
      return { frames: read(), error: error.reason._tag, inFrame: false }
    }
  }
  return { frames: read(), error: undefined, inFrame: decoder.inFrame }
}

const encodeAll = (list: ReadonlyArray<{ kind: Framing.Kind; payload: Uint8Array }>) =>
  concat(list.map(({ kind, payload }) => Framing.encode(kind, payload)))

describe("Framing: fuzz (fast-check, fixed seed)", () => {
  const runs = { seed: 20261129, numRuns: 1500 }

  const frame = fc.record({
    kind: fc.constantFrom(
      Framing.Kind.data,
      Framing.Kind.data,
      Framing.Kind.close,
      Framing.Kind.ping,
      Framing.Kind.pong
    ),
    payload: fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ minLength: 500, maxLength: limit }))
  })
  const frameLists = fc.array(frame, { maxLength: 12 })
  const cutPoints = fc.array(fc.nat(), { maxLength: 20 })

  it("gives back exactly the frames encoded, however the stream is split", () => {
    fc.assert(
      fc.property(frameLists, cutPoints, (list, cuts) => {
        const expected = {
          frames: list.map(({ kind, payload }): [number, Array<number>] => [kind, [...payload]]),
          error: undefined,
          inFrame: false
        }
        assert.deepStrictEqual(decode(encodeAll(list), cuts, limit), expected)
        assert.deepStrictEqual(decode(encodeAll(list), cuts, limit, true), expected)
      }),
      runs
    )
  })

  // damage: a length prefix rewritten, bytes flipped, the stream cut short, garbage inserted
  const damage = fc.oneof(
    fc.record({ op: fc.constant("length" as const), frame: fc.nat(), value: fc.nat({ max: 0xffff_ffff }) }),
    fc.record({ op: fc.constant("length" as const), frame: fc.nat(), value: fc.nat({ max: limit + 64 }) }),
    fc.record({ op: fc.constant("flip" as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ op: fc.constant("cut" as const), at: fc.nat() }),
    fc.record({
      op: fc.constant("insert" as const),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 8 })
    })
  )

  const damaged = (
    list: ReadonlyArray<{ kind: Framing.Kind; payload: Uint8Array }>,
    hits: ReadonlyArray<typeof damage extends fc.Arbitrary<infer D> ? D : never>
  ) => {
    let stream = encodeAll(list)
    for (const hit of hits) {
      if (stream.byteLength === 0) break
      switch (hit.op) {
        case "length": {
          // the header of the hit-th frame, counted in the stream as it is now
          let offset = 0
          for (let i = 0; i < hit.frame % Math.max(1, list.length) && offset + 6 <= stream.byteLength; i++) {
            offset += 6 + new DataView(stream.buffer, stream.byteOffset + offset + 2, 4).getUint32(0)
          }
          if (offset + 6 <= stream.byteLength) {
            new DataView(stream.buffer, stream.byteOffset + offset + 2, 4).setUint32(0, hit.value)
          }
          break
        }
        case "flip":
          stream[hit.at % stream.byteLength]! ^= hit.mask
          break
        case "cut":
          stream = stream.slice(0, hit.at % stream.byteLength)
          break
        case "insert": {
          const at = hit.at % (stream.byteLength + 1)
          stream = concat([stream.subarray(0, at), hit.bytes, stream.subarray(at)])
          break
        }
      }
    }
    return stream
  }

  it("on damaged streams gives exactly what the bytes say or a typed error: never a throw, a hang or a wrong frame", () => {
    fc.assert(
      fc.property(
        frameLists,
        fc.array(damage, { minLength: 1, maxLength: 3 }),
        cutPoints,
        fc.constantFrom(limit, 0, Framing.DEFAULT_MAX_FRAME_SIZE),
        (list, hits, cuts, maxFrameSize) => {
          const stream = damaged(list, hits)
          const expected = reference(stream, maxFrameSize)
          assert.deepStrictEqual(decode(stream, cuts, maxFrameSize), expected)
          assert.deepStrictEqual(decode(stream, cuts, maxFrameSize, true), expected)
          assert.deepStrictEqual(decode(stream, [], maxFrameSize), expected)
          // every frame delivered is the exact bytes at its place in the stream
          const delivered = concat(
            expected.frames.map(([kind, payload]) => Framing.encode(kind as Framing.Kind, Uint8Array.from(payload)))
          )
          assert.deepStrictEqual([...delivered], [...stream.subarray(0, delivered.byteLength)])
        }
      ),
      runs
    )
  })

  it("arbitrary bytes, any split: the same outcome as the whole stream at once", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        cutPoints,
        fc.constantFrom(0, 16, limit),
        (bytes, cuts, maxFrameSize) => {
          // a plausible first header makes the decoder go deeper than the version byte
          const stream = bytes.byteLength > 0 ? Uint8Array.from(bytes, (b, i) => (i === 0 ? 1 : b)) : bytes
          assert.deepStrictEqual(decode(stream, cuts, maxFrameSize), reference(stream, maxFrameSize))
          assert.deepStrictEqual(decode(stream, cuts, maxFrameSize, true), reference(stream, maxFrameSize))
        }
      ),
      runs
    )
  })
})

/** A data frame header declaring `length` bytes. */
const header = (length: number) => {
  const out = new Uint8Array(Framing.HEADER_SIZE)
  Framing.writeHeader(out, 0, Framing.Kind.data, length)
  return out
}

describe("Framing: a hostile length prefix", () => {
  it("costs memory for the bytes that arrived, not for the length a peer declares", () => {
    const before = process.memoryUsage().arrayBuffers
    // 64 connections each declaring a frame of almost 256 MiB and sending 10 bytes of it (half of them
    // handing their chunks over)
    const decoders = Array.from(
      { length: 64 },
      (_, i) => new Framing.Decoder(Framing.DEFAULT_MAX_FRAME_SIZE, { chunksHandedOver: i % 2 === 1 })
    )
    const start = concat([header(Framing.DEFAULT_MAX_FRAME_SIZE - 1), new Uint8Array(10)])
    for (const decoder of decoders) {
      assert.isUndefined(decoder.push(start.slice(), () => assert.fail("no frame yet")))
      assert.isTrue(decoder.inFrame)
    }
    const grown = process.memoryUsage().arrayBuffers - before
    assert.isBelow(grown, 64 * 1024 * 1024, `${grown} bytes held for 640 bytes received`)
  })

  it("with chunks handed over, a frame trickled in tiny chunks costs memory for its bytes, not a view per chunk", () => {
    // a peer that sends a large frame a byte per read: Node hands each read over as its own buffer
    const gc = Vm.runInNewContext("gc") as () => void
    const held = () => {
      gc()
      const usage = process.memoryUsage()
      return usage.heapUsed + usage.arrayBuffers
    }
    const before = held()
    const decoder = new Framing.Decoder(Framing.DEFAULT_MAX_FRAME_SIZE, { chunksHandedOver: true })
    const payload = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) & 0xff)
    assert.isUndefined(decoder.push(header(payload.byteLength), () => assert.fail("no frame yet")))
    const sent = 100_000
    for (let i = 0; i < sent; i++) {
      assert.isUndefined(decoder.push(payload.slice(i, i + 1), () => assert.fail("no frame yet")))
    }
    const grown = held() - before
    assert.isTrue(decoder.inFrame)
    assert.isBelow(grown, 4 * 1024 * 1024, `${grown} bytes held for ${sent} bytes received`)
    // the rest in reads of 64 KiB: the frame is whole and right
    const got: Array<Uint8Array> = []
    for (let offset = sent; offset < payload.byteLength; offset += 65_536) {
      assert.isUndefined(decoder.push(payload.slice(offset, offset + 65_536), (_, p) => got.push(p)))
    }
    assert.strictEqual(got.length, 1)
    assert.strictEqual(Buffer.compare(Buffer.from(got[0]!), Buffer.from(payload)), 0)
  })

  it("still assembles a large frame sent in small pieces", () => {
    const payload = Uint8Array.from({ length: 3 * 1024 * 1024 + 17 }, (_, i) => (i * 13) & 0xff)
    const stream = Framing.encode(Framing.Kind.data, payload)
    const decoder = new Framing.Decoder()
    const got: Array<Uint8Array> = []
    for (let offset = 0; offset < stream.byteLength; offset += 65_536) {
      const chunk = stream.slice(offset, offset + 65_536)
      assert.isUndefined(decoder.push(chunk, (_, p) => got.push(p)))
      chunk.fill(0)
    }
    assert.strictEqual(got.length, 1)
    assert.strictEqual(Buffer.compare(Buffer.from(got[0]!), Buffer.from(payload)), 0)
  })

  it("with chunks handed over, holds views of what arrived and copies a large frame once, into its own memory", () => {
    const payload = Uint8Array.from({ length: 3 * 1024 * 1024 + 17 }, (_, i) => (i * 13) & 0xff)
    const stream = Framing.encode(Framing.Kind.data, payload)
    const before = process.memoryUsage().arrayBuffers
    const decoder = new Framing.Decoder(Framing.DEFAULT_MAX_FRAME_SIZE, { chunksHandedOver: true })
    const chunks: Array<Uint8Array> = []
    const got: Array<Uint8Array> = []
    for (let offset = 0; offset < stream.byteLength; offset += 65_536) {
      const chunk = stream.slice(offset, offset + 65_536)
      chunks.push(chunk)
      assert.isUndefined(decoder.push(chunk, (_, p) => got.push(p)))
      if (got.length === 0) {
        // nothing copied yet: what is held is the chunks themselves
        const held = process.memoryUsage().arrayBuffers - before
        assert.isBelow(held, stream.byteLength + 1024 * 1024, `${held} bytes held`)
      }
    }
    assert.strictEqual(got.length, 1)
    // the frame is its own: the chunks it came in may go on to be reused
    for (const chunk of chunks) chunk.fill(0)
    assert.strictEqual(got[0]!.byteLength, payload.byteLength)
    assert.strictEqual(Buffer.compare(Buffer.from(got[0]!), Buffer.from(payload)), 0)
  })
})
