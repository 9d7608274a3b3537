/**
 * A writer taking over from a dead one looks, past a torn record's header,
 * for a whole record inside what its length claims (then the length was
 * damaged, not torn: `Corrupt`). It scanned a record at every marker byte,
 * checksumming its payload from the start: quadratic in the damaged tail
 * (4 MiB held the append, and the stream's lock, for minutes). The search
 * is now linear, and its decisions are the old ones: checked against the old
 * search (kept here) on random tails (fast-check, fixed seed).
 */
import { Log, LogFormat } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import fc from "fast-check"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Zlib from "node:zlib"
import { READ_CHUNK, recordInside, scanRecord } from "../src/internal/scan.ts"
import * as Sys from "../src/internal/sys.ts"
import { fresh, newStream, run, spawn, tempRoot } from "./helpers.ts"

const root = tempRoot("recovery")
const MIB4 = 4 * 1024 * 1024

/** A record header of `kind` claiming a payload of `length` with checksum `crc` (reserved byte `reserved`). */
const header = (kind: number, length: number, crc = 0, reserved = 0): Uint8Array => {
  const out = new Uint8Array(LogFormat.RECORD_HEADER)
  out.set([LogFormat.MARKER, LogFormat.VERSION, kind, reserved])
  const view = new DataView(out.buffer)
  view.setUint32(4, length)
  view.setUint32(8, crc)
  return out
}

/**
 * A stream with one record whose writer died appending (a dirty state), then
 * past its committed end the audit's repro: a header whose length runs past
 * the end of the file, then `tail` bytes of plausible headers with bad
 * checksums and lengths (half the tail) that fit. Returns the stream and the
 * size of its segment before the tail.
 */
const damaged = (tail: number) =>
  Effect.gen(function*() {
    const dir = yield* newStream(root)
    yield* Effect.scoped(Effect.flatMap(Log.openWriter(dir), (writer) => writer.append(new Uint8Array([1, 2]))))
    const lock = Log.paths(dir).writerLock
    const state = LogFormat.decodeWriterState(Fs.readFileSync(lock))!
    Fs.writeFileSync(lock, LogFormat.encodeWriterState({ ...state, clean: false, pid: 999_999 }))
    const segment = Log.paths(dir).segment(0)
    const committed = Fs.statSync(segment).size
    const unit = header(LogFormat.Kind.data, Math.floor(tail / 2))
    const units = Math.floor(tail / LogFormat.RECORD_HEADER)
    const bytes = new Uint8Array(LogFormat.RECORD_HEADER * (units + 1))
    bytes.set(header(LogFormat.Kind.data, 0xffff_fff0))
    for (let k = 1; k <= units; k++) bytes.set(unit, k * LogFormat.RECORD_HEADER)
    Fs.appendFileSync(segment, bytes)
    return { dir, segment, committed }
  })

/** What a writer taking over `dir` in a child did: its outcome, the seconds its append took, what it said. */
const takeOver = (dir: string) =>
  Effect.gen(function*() {
    const fixture = Path.join(import.meta.dirname, "fixtures", "take-over.ts")
    const flags = ["--conditions=@effect-ipc/source", "--disable-warning=ExperimentalWarning"]
    const child = yield* run(spawn(process.execPath, [...flags, fixture, dir]), { within: "60 seconds" })
    assert.strictEqual(child.code, 0, child.stderr)
    return JSON.parse(child.lines[0]!) as { readonly outcome: string; readonly took: number; readonly said: string }
  })

describe("a dead writer's damaged tail of 4 MiB", () => {
  it.live("a torn tail is cut within seconds", () =>
    Effect.gen(function*() {
      const { committed, dir, segment } = yield* damaged(MIB4)
      const torn = Fs.statSync(segment).size - committed
      const { outcome, said, took } = yield* takeOver(dir)
      assert.strictEqual(outcome, "appended", said)
      assert.include(said, `cut ${torn} bytes of a torn record at offset ${committed}`)
      assert.isBelow(took, 10)
      const next = LogFormat.encodeRecord(LogFormat.Kind.data, new TextEncoder().encode("next"))
      assert.strictEqual(Fs.statSync(segment).size, committed + next.byteLength)
    }), 90_000)

  it.live("a whole record deep inside it is Corrupt within seconds, and nothing is cut", () =>
    Effect.gen(function*() {
      const { dir, segment } = yield* damaged(MIB4)
      const inside = Fs.statSync(segment).size - 700 * 1024 - 5 // neither on a 12-byte unit nor on a stride
      const payload = new Uint8Array(256 * 2600).map((_, i) => i & 255)
      const fd = Fs.openSync(segment, "r+")
      Fs.writeSync(fd, LogFormat.encodeRecord(LogFormat.Kind.data, payload), 0, undefined, inside)
      Fs.closeSync(fd)
      const size = Fs.statSync(segment).size
      const { outcome, said, took } = yield* takeOver(dir)
      assert.strictEqual(outcome, "Corrupt", said)
      assert.include(said, `its length runs over a whole record at offset ${inside}`)
      assert.isBelow(took, 10)
      assert.strictEqual(Fs.statSync(segment).size, size, "nothing was cut")
    }), 90_000)
})

/** The old search (quadratic), kept as the reference: `scanRecord` at every marker byte past `at`. */
const recordInsideByScans = (fd: number, at: number, size: number): number | undefined => {
  for (let from = at + 1; from + LogFormat.RECORD_HEADER <= size; from += READ_CHUNK) {
    const chunk = Sys.readAt(fd, Math.min(READ_CHUNK + LogFormat.RECORD_HEADER, size - from), from)
    for (let i = 0; i < Math.min(READ_CHUNK, chunk.byteLength); i++) {
      if (chunk[i] !== LogFormat.MARKER) continue
      if (scanRecord(fd, from + i, size)._tag === "Record") return from + i
    }
  }
  return undefined
}

/** Tail sizes around the checksum strides (256 bytes), and past the chunks the search reads. */
const SIZES = [13, 40, 511, 512, 513, 1030, 3000, 9000, 2 * READ_CHUNK + 3000]
/** Payload sizes of the planted record, around the strides and across chunks. */
const LENGTHS = [0, 1, 255, 256, 500, 511, 512, 513, 767, 768, 1024, 2000, 2900, 8000, READ_CHUNK + 77]

/** A header planted at a random place with a random (fitting) length, kind and checksum: a near miss. */
const plantedHeader = fc.record({
  at: fc.nat(),
  length: fc.nat(),
  kind: fc.nat(3),
  reserved: fc.nat(255),
  crc: fc.nat()
})

/** `arbitrary` `weight` times in 10, else `null`. */
const sometimes = <A>(arbitrary: fc.Arbitrary<A>, weight: number): fc.Arbitrary<A | null> =>
  fc.oneof({ arbitrary, weight }, { arbitrary: fc.constant(null), weight: 10 - weight })

/** A random tail: `prefix` bytes before the torn header, random bytes, planted headers and maybe a record. */
const tailArb = fc.record({
  seed: fc.integer(),
  prefix: fc.nat(300),
  size: fc.constantFrom(...SIZES),
  headers: fc.array(plantedHeader, { maxLength: 30 }),
  record: sometimes(
    fc.record({
      length: fc.constantFrom(...LENGTHS),
      kind: fc.nat(2),
      reserved: fc.nat(255),
      at: fc.oneof(fc.nat(), fc.integer({ min: -600, max: 600 }).map((d) => READ_CHUNK + d)),
      flip: sometimes(fc.nat(), 3) // a bit flipped in its checksum or payload: a near miss
    }),
    7
  )
})

/** The file `tailArb`'s case describes: the tail starts at `prefix`, with a torn header. */
const tailBytes = (input: typeof tailArb extends fc.Arbitrary<infer A> ? A : never): Uint8Array => {
  const { headers, prefix, record, seed, size } = input
  const data = new Uint8Array(prefix + size)
  let state = seed >>> 0
  for (let i = 0; i < data.byteLength; i++) { // xorshift: random bytes, cheaply
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    data[i] = state & 255
  }
  data.set([LogFormat.MARKER, LogFormat.VERSION], prefix)
  for (const h of headers) {
    const at = 1 + h.at % Math.max(1, size - LogFormat.RECORD_HEADER)
    if (at + LogFormat.RECORD_HEADER > size) continue
    data.set(header(h.kind, h.length % (size - at - LogFormat.RECORD_HEADER + 1), h.crc, h.reserved), prefix + at)
  }
  if (record !== null && LogFormat.RECORD_HEADER + record.length < size) {
    const payload = data.slice(0, record.length).toReversed()
    const bytes = new Uint8Array(LogFormat.RECORD_HEADER + payload.byteLength)
    bytes.set(header(record.kind, payload.byteLength, 0, record.reserved)) // the reserved byte is not checked
    bytes.set(payload, LogFormat.RECORD_HEADER)
    new DataView(bytes.buffer).setUint32(8, Zlib.crc32(payload, Zlib.crc32(bytes.subarray(0, 8))))
    const at = 1 + record.at % (size - bytes.byteLength)
    if (record.flip !== null) bytes[8 + record.flip % (bytes.byteLength - 8)]! ^= 1 << (record.flip % 8)
    data.set(bytes, prefix + at)
  }
  return data
}

describe("the search for a record inside a torn record's length (fast-check, fixed seed)", () => {
  it("finds what a scan at every marker byte finds", () => {
    const file = fresh(root, "tail")
    let found = 0
    fc.assert(
      fc.property(tailArb, (input) => {
        const data = tailBytes(input)
        Fs.writeFileSync(file, data)
        const fd = Fs.openSync(file, "r")
        try {
          const expected = recordInsideByScans(fd, input.prefix, data.byteLength)
          assert.strictEqual(recordInside(fd, input.prefix, data.byteLength), expected)
          if (expected !== undefined) found++
        } finally {
          Fs.closeSync(fd)
        }
      }),
      { seed: Number(process.env["RECOVERY_SEED"] ?? 0x5eed_0010), numRuns: 300, endOnFailure: true }
    )
    assert.isAbove(found, 50, "whole records were planted and found")
  }, 120_000)

  it("finds a record at each position around the end of a chunk it reads, and at the end of the file", () => {
    const file = fresh(root, "tail")
    const at = 3
    for (const length of [0, 600]) {
      const record = LogFormat.encodeRecord(LogFormat.Kind.data, new Uint8Array(length).fill(7))
      const size = at + 1 + READ_CHUNK + 2 * record.byteLength + 32
      const places = [...Array.from({ length: 30 }, (_, d) => at + 1 + READ_CHUNK - 15 + d), size - record.byteLength]
      for (const place of places) {
        const data = new Uint8Array(size)
        data.set(header(LogFormat.Kind.data, 0xffff_fff0), at)
        data.set(record, place)
        Fs.writeFileSync(file, data)
        const fd = Fs.openSync(file, "r")
        try {
          assert.strictEqual(recordInside(fd, at, size), place, `a record of ${length} bytes at ${place}`)
        } finally {
          Fs.closeSync(fd)
        }
      }
    }
  })
})
