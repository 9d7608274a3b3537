import { Framing } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"

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
    if (!Array.isArray(error)) assert.strictEqual(error.reason, "Protocol")
  })

  it("rejects an unknown kind", () => {
    const error = frames(new Framing.Decoder(), [new Uint8Array([1, 9, 0, 0, 0, 0])])
    if (Array.isArray(error)) assert.fail("expected an error")
    assert.strictEqual(error.reason, "Protocol")
  })

  it("rejects a length over the limit before allocating anything", () => {
    const error = frames(new Framing.Decoder(1024), [new Uint8Array([1, 0, 0xff, 0xff, 0xff, 0xff])])
    if (Array.isArray(error)) assert.fail("expected an error")
    assert.strictEqual(error.reason, "FrameTooLarge")
  })
})
