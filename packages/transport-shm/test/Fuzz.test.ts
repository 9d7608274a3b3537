/**
 * Damaged headers and rings, as a broken or hostile peer could leave them:
 * property-based (fast-check, fixed seed, bounded runs). Every run ends in a
 * typed `Protocol` error or well-formed data: never an exception, never a
 * record outside the ring, never a hang.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import fc from "fast-check"
import * as Header from "../src/internal/header.ts"
import * as Ring from "../src/internal/ring.ts"

const SEED = 0x5eed_0015
const RUNS = 300

/** A byte at an offset, to overwrite. */
const damage = (limit: number) =>
  fc.array(fc.tuple(fc.integer({ min: 0, max: limit - 1 }), fc.integer({ min: 0, max: 255 })), {
    minLength: 1,
    maxLength: 24
  })

const validHeader = (kind: Header.Kind, payloadLength: number, capacity?: number): ArrayBuffer => {
  const buffer = new ArrayBuffer(Header.HEADER_SIZE)
  const header = Header.view(buffer)
  Header.initialise(header, { kind, ttlMillis: 0, payloadLength, createdAt: 1_700_000_000_000 })
  if (capacity !== undefined) Ring.initialise(header.words, capacity)
  Header.publish(header)
  return buffer
}

/** An empty ring of `capacity` bytes in plain memory, its positions at `start` (bytes ever written), with both its ends. */
const freshRing = (capacity: number, start = 0) => {
  const buffer = new ArrayBuffer(Header.HEADER_SIZE + capacity)
  const words = new Int32Array(buffer, 0, Header.HEADER_SIZE / 4)
  Ring.initialise(words, capacity)
  words[(Header.KIND_AREA + 64) / 4] = start | 0
  words[(Header.KIND_AREA + 128) / 4] = start | 0
  return { buffer, words, producer: new Ring.Producer(buffer, capacity), consumer: new Ring.Consumer(buffer, capacity) }
}

describe("fuzz", () => {
  it("a damaged segment header is a Protocol error or a consistent header, never an exception", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(Header.Kind.link, Header.Kind.ring, Header.Kind.message),
        // the first 64 bytes hold every field that is checked; the rest is slots and the kind area
        fc.oneof(damage(64), damage(Header.HEADER_SIZE)),
        fc.integer({ min: 0, max: 1 << 20 }),
        (kind, hits, size) => {
          const buffer = validHeader(kind, 4096, kind === Header.Kind.ring ? 4096 : undefined)
          const bytes = new Uint8Array(buffer)
          for (const [offset, value] of hits) bytes[offset] = value
          const exit = Effect.runSyncExit(Header.validate(Header.view(buffer), size, kind, "fuzzed"))
          if (Exit.isFailure(exit)) {
            const error = exit.cause.reasons.find((r) => r._tag === "Fail")
            assert.isDefined(error, "a typed failure, not a defect")
            assert.strictEqual(error!._tag === "Fail" && error!.error.reason._tag, "Protocol")
            return
          }
          const s = exit.value
          assert.strictEqual(s.magic, Header.MAGIC)
          assert.strictEqual(s.kind, kind)
          assert.isTrue(Number.isSafeInteger(s.payloadLength) && s.payloadLength >= 0)
          assert.isAtMost(Header.HEADER_SIZE + s.payloadLength, size)
          if (kind === Header.Kind.ring) {
            const capacity = Ring.capacityOf(Header.view(buffer).words, s.payloadLength)
            if (capacity !== undefined) {
              assert.isTrue(capacity >= Ring.MIN_CAPACITY && (capacity & (capacity - 1)) === 0)
            }
          }
        }
      ),
      { seed: SEED, numRuns: RUNS }
    )
  })

  it("a damaged ring yields whole records inside the ring or a Protocol error, and ends", () => {
    const capacity = 4096
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 900 }), { minLength: 1, maxLength: 12 }),
        damage(capacity),
        fc.option(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { nil: undefined }),
        fc.integer({ min: 0, max: 3 }),
        // a length word written over the next record's, near the 32-bit edges most often
        fc.option(
          fc.oneof(
            fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
            fc.integer({ min: 2 ** 31 - 16, max: 2 ** 31 - 1 }),
            fc.integer({ min: capacity - 32, max: capacity + 32 })
          ),
          { nil: undefined }
        ),
        (sizes, hits, tail, hold, length) => {
          const { buffer, consumer, producer, words } = freshRing(capacity)
          // some records written and read, so that later ones wrap
          for (const size of sizes) {
            if (!producer.write(Ring.RecordKind.data, new Uint8Array(size).fill(size & 0xff))) break
          }
          for (let r = consumer.next(); r !== undefined && !(r instanceof Error); r = consumer.next()) {
            consumer.release(r.end)
          }
          for (const size of sizes) {
            if (!producer.write(Ring.RecordKind.data, new Uint8Array(size).fill(size & 0xff))) break
          }
          // the peer scribbles over the data area, and perhaps over its tail
          const data = new Uint8Array(buffer, Header.HEADER_SIZE, capacity)
          for (const [offset, value] of hits) data[offset] = value
          if (tail !== undefined) Atomics.store(words, (Header.KIND_AREA + 64) / 4, tail)
          if (length !== undefined) {
            new DataView(buffer).setInt32(Header.HEADER_SIZE + (consumer.position & (capacity - 1)), length, true)
          }
          let steps = 0
          for (;;) {
            assert.isBelow(++steps, 2 * capacity, "the reader ends")
            const record = consumer.next()
            if (record === undefined) break
            if (record instanceof Error) {
              assert.strictEqual(record.reason._tag, "Protocol")
              break
            }
            assert.isAtLeast(record.offset, Header.HEADER_SIZE + Ring.RECORD_HEADER)
            assert.isAtMost(record.offset + record.length, Header.HEADER_SIZE + capacity)
            assert.include([Ring.RecordKind.data, Ring.RecordKind.segment], record.kind)
            // held records (views handed out) are released later: reads run ahead of releases
            if (hold === 0 || steps % hold !== 0) consumer.release(record.end)
          }
        }
      ),
      { seed: SEED, numRuns: RUNS }
    )
  })

  // (a head out of place left the writer waiting for room for ever, silently)
  it("a damaged head: the writer goes on where a reader could have put it, else reports Protocol and writes nothing", () => {
    const capacity = 4096
    const headWord = (Header.KIND_AREA + 128) / 4
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 900 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 12 }),
        // anywhere, near the tail, or near the head
        fc.oneof(
          fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
          fc.integer({ min: -64, max: 64 }).map((d) => ({ fromTail: d })),
          fc.integer({ min: -64, max: 64 }).map((d) => ({ fromHead: d }))
        ),
        // from the start, or with the positions about to wrap past 2^32 (after 4 GiB through the ring)
        fc.constantFrom(0, 2 ** 32 - 2048),
        (sizes, read, where, start) => {
          const { consumer, producer, words } = freshRing(capacity, start)
          for (const size of sizes) {
            if (!producer.write(Ring.RecordKind.data, new Uint8Array(size))) break
          }
          // the reader releases some, and the writer sees it
          for (let i = 0, r = consumer.next(); i < read && r !== undefined && !(r instanceof Error); i++) {
            consumer.release(r.end)
            r = consumer.next()
          }
          producer.fits(capacity)
          const head = Atomics.load(words, headWord) >>> 0
          const tail = producer.position
          const bad = typeof where === "number"
            ? where >>> 0
            : "fromTail" in where
            ? (tail + where.fromTail) >>> 0
            : (head + where.fromHead) >>> 0
          Atomics.store(words, headWord, bad | 0)
          const possible = ((bad - head) >>> 0) <= ((tail - head) >>> 0)
          // a look for more room than the ring has always reads the head again
          assert.isFalse(producer.fits(capacity))
          const wrote = producer.write(Ring.RecordKind.data, new Uint8Array(Ring.RECORD_HEADER))
          if (possible) {
            assert.isUndefined(producer.damage)
            assert.strictEqual(wrote, producer.position !== tail)
          } else {
            assert.strictEqual(producer.damage?.reason._tag, "Protocol")
            assert.isFalse(wrote)
            assert.strictEqual(producer.position, tail, "nothing written")
            assert.isFalse(producer.fits(0), "full for good")
          }
        }
      ),
      { seed: SEED, numRuns: RUNS }
    )
  })
})
