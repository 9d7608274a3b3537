/**
 * The ring's record format on its own (over a plain buffer): wrap-around with
 * pads, back-pressure, in-order release, and records a broken or hostile
 * peer could write.
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import { assert, describe, it } from "@effect/vitest"
import * as Header from "../src/internal/header.ts"
import * as Ring from "../src/internal/ring.ts"

const makeRing = (capacity: number) => {
  const buffer = new ArrayBuffer(Header.HEADER_SIZE + capacity)
  Ring.initialise(new Int32Array(buffer, 0, Header.HEADER_SIZE / 4), capacity)
  return { buffer, producer: new Ring.Producer(buffer, capacity), consumer: new Ring.Consumer(buffer, capacity) }
}

const message = (length: number, seed: number) => {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (seed + i * 7) & 0xff
  return out
}

describe("ring", () => {
  it("carries records of every size across the wrap, in order, whole", () => {
    const { consumer, producer } = makeRing(4096)
    let seed = 0
    let read = 0
    const sizes = Array.from({ length: 3000 }, (_, i) => (i * 37) % (producer.maxPayload + 1))
    const queue: Array<Uint8Array> = []
    for (const size of sizes) {
      const m = message(size, seed++)
      while (!producer.write(Ring.RecordKind.data, m)) {
        // full: read one, release it, try again
        const record = consumer.next()
        assert.isDefined(record)
        assert.notInstanceOf(record, Error)
        const r = record as Ring.RecordRef
        assert.deepStrictEqual([...consumer.payload(r)], [...queue.shift()!])
        consumer.release(r.end)
        read++
      }
      queue.push(m)
    }
    for (let record = consumer.next(); record !== undefined; record = consumer.next()) {
      const r = record as Ring.RecordRef
      assert.deepStrictEqual([...consumer.payload(r)], [...queue.shift()!])
      consumer.release(r.end)
      read++
    }
    assert.strictEqual(read, sizes.length)
    assert.isTrue(producer.drained())
  })

  it("does not free space until the reader releases it", () => {
    const { consumer, producer } = makeRing(4096)
    assert.isTrue(producer.write(Ring.RecordKind.data, message(2000, 1)))
    assert.isTrue(producer.write(Ring.RecordKind.data, message(2000, 2)))
    assert.isFalse(producer.write(Ring.RecordKind.data, message(100, 3)))
    const first = consumer.next() as Ring.RecordRef
    const second = consumer.next() as Ring.RecordRef
    assert.isUndefined(consumer.next())
    assert.isFalse(producer.fits(100), "read but not released")
    consumer.release(first.end)
    assert.isTrue(producer.fits(100))
    consumer.release(second.end)
    assert.isTrue(producer.drained())
  })

  it("records written unpublished stay unseen until publish, then show in order", () => {
    const { consumer, producer } = makeRing(4096)
    assert.isTrue(producer.write(Ring.RecordKind.data, message(10, 1), false))
    assert.isTrue(producer.write(Ring.RecordKind.data, message(20, 2), false))
    assert.isFalse(consumer.hasNext(), "nothing shows before publish")
    assert.isUndefined(consumer.next())
    producer.publish()
    assert.deepStrictEqual([...consumer.payload(consumer.next() as Ring.RecordRef)], [...message(10, 1)])
    // a published write publishes the unpublished ones before it too
    assert.isTrue(producer.write(Ring.RecordKind.data, message(30, 3), false))
    assert.isTrue(producer.write(Ring.RecordKind.data, message(40, 4)))
    const lengths: Array<number> = []
    for (let record = consumer.next(); record !== undefined; record = consumer.next()) {
      lengths.push((record as Ring.RecordRef).length)
    }
    assert.deepStrictEqual(lengths, [20, 30, 40])
  })

  it("reports records a broken peer wrote as Protocol errors", () => {
    // 0x7ffffff9 to 0x7fffffff rounded up in 32 bits came out negative and passed: a view of 2 GiB over a
    // 4 KiB ring (read through, a fault), or the rest of the ring as a message
    const lengths: ReadonlyArray<readonly [number, number]> = [
      [-5, 1],
      [1 << 20, 1],
      [16, 9],
      [4000, 1],
      [0x7ffffff8, 1],
      [0x7ffffff9, 1],
      [0x7fffffff, 1]
    ]
    for (const [length, kind] of lengths) {
      const { buffer, consumer, producer } = makeRing(4096)
      assert.isTrue(producer.write(Ring.RecordKind.data, message(16, 0)))
      // rewrite the published record's header
      const data = new Int32Array(buffer, Header.HEADER_SIZE)
      data[0] = length
      data[1] = kind
      const record = consumer.next()
      assert.instanceOf(record, Error, `length ${length} kind ${kind}`)
      assert.strictEqual((record as IpcError.IpcError).reason._tag, "Protocol")
    }
  })

  it("rejects bad capacities recorded in a header", () => {
    const words = new Int32Array(Header.HEADER_SIZE / 4)
    Ring.initialise(words, 8192)
    assert.strictEqual(Ring.capacityOf(words, 8192), 8192)
    assert.isUndefined(Ring.capacityOf(words, 4096), "a capacity the segment does not have")
    Ring.initialise(words, 5000)
    assert.isUndefined(Ring.capacityOf(words, 5000), "not a power of two")
    assert.strictEqual(Ring.capacityFor(5000), 8192)
  })
})
