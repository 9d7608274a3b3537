/**
 * Resource links across real processes: reference counts, TTL, release on
 * close / failure / interruption, bad segments, and the orphan collector
 * (killed producers and consumers, two collectors at once).
 */
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Fs from "node:fs"
import { leftovers, pidMarker, spawnChild } from "./helpers.ts"

const prefix = `link-test-${process.pid}`
let n = 0
const fresh = () => `${prefix}-${n++}`
const exists = (name: string) => Fs.existsSync(`/dev/shm/${name}`)

/** Collects until `name` is gone (other test files may be collecting too: either of us may remove it). */
const collectedAway = (name: string) =>
  Effect.gen(function*() {
    const report = yield* Shm.SegmentGc.collect()
    return { report, gone: !exists(name) }
  })

/** Acquiring `name` fails with `Protocol`, saying `detail`. */
const expectProtocol = (name: string, detail: string) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Effect.scoped(Shm.ResourceLink.acquire(name)))
    assert.strictEqual(error.reason, "Protocol", error.message)
    assert.include(error.detail, detail)
  })

describe("ResourceLink", () => {
  it.live("counts references across acquire and release, and removes the link with the last one", () =>
    Effect.gen(function*() {
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        const link = yield* Shm.ResourceLink.create(name, 1000)
        link.payload.set([1, 2, 3])
        assert.strictEqual((yield* link.info).refcount, 1)
        yield* Effect.scoped(Effect.gen(function*() {
          const other = yield* Shm.ResourceLink.acquire(name)
          assert.deepStrictEqual([...other.payload.subarray(0, 3)], [1, 2, 3])
          assert.strictEqual(other.payload.byteLength, 1000)
          const info = yield* other.info
          assert.strictEqual(info.refcount, 2)
          assert.deepStrictEqual(info.holders.map((h) => [h.pid, h.count, h.alive]), [[process.pid, 2, true]])
          assert.strictEqual(info.creator.pid, process.pid)
          assert.isUndefined(info.ttl)
        }))
        assert.strictEqual((yield* link.info).refcount, 1)
        assert.isTrue(exists(name))
      }))
      assert.isFalse(exists(name))
      const gone = yield* Effect.flip(Effect.scoped(Shm.ResourceLink.acquire(name)))
      assert.strictEqual(gone.reason, "NotFound")
    }))

  it.live("detaches the payload view when the holding scope closes", () =>
    Effect.gen(function*() {
      const payload = yield* Effect.scoped(Effect.map(Shm.ResourceLink.create(fresh(), 4096), (link) => link.payload))
      assert.strictEqual(payload.byteLength, 0)
      assert.strictEqual(payload[0], undefined)
    }))

  it.live("drops the reference on failure and on interruption", () =>
    Effect.gen(function*() {
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        const link = yield* Shm.ResourceLink.create(name, 16)
        const failed = yield* Effect.exit(
          Effect.scoped(Effect.andThen(Shm.ResourceLink.acquire(name), Effect.fail("x")))
        )
        assert.isTrue(Exit.isFailure(failed))
        assert.strictEqual((yield* link.info).refcount, 1)
        const fiber = yield* Effect.forkChild(
          Effect.scoped(Effect.andThen(Shm.ResourceLink.acquire(name), Effect.never)),
          { startImmediately: true }
        )
        while ((yield* link.info).refcount < 2) yield* Effect.yieldNow
        yield* Fiber.interrupt(fiber)
        assert.strictEqual((yield* link.info).refcount, 1)
      }))
      assert.isFalse(exists(name))
    }))

  it.live("keeps a released link with a TTL for late consumers, and the collector removes it after the TTL", () =>
    Effect.gen(function*() {
      const name = fresh()
      yield* Effect.scoped(Effect.map(Shm.ResourceLink.create(name, 64, { ttl: "1500 millis" }), (link) => {
        link.payload[0] = 9
      }))
      assert.isTrue(exists(name))
      // a late consumer still finds it
      const late = yield* Effect.scoped(Effect.map(Shm.ResourceLink.acquire(name), (link) => link.payload[0]))
      assert.strictEqual(late, 9)
      assert.isTrue((yield* collectedAway(name)).report.kept >= 1)
      assert.isTrue(exists(name), "kept within its TTL")
      yield* Effect.sleep("1600 millis")
      // (another test file's collector may already have taken it)
      const listed = (yield* Shm.SegmentGc.list).segments.find((s) => s.name === name)
      if (listed !== undefined) assert.strictEqual(listed.orphan, "nobody holds it and its TTL has passed")
      assert.isTrue((yield* collectedAway(name)).gone)
    }))

  it.live("reclaims the link of a kill -9'd producer, even within its TTL", () =>
    Effect.gen(function*() {
      const name = fresh()
      const producer = yield* spawnChild("create", name, "100000", "3600000")
      const info = yield* Shm.ResourceLink.info(name)
      assert.strictEqual(info.refcount, 1)
      assert.strictEqual(info.creator.pid, producer.pid)
      // the collector leaves a live producer's link alone
      yield* Shm.SegmentGc.collect()
      assert.isTrue(exists(name))
      yield* producer.kill
      const { report, gone } = yield* collectedAway(name)
      assert.isTrue(gone)
      const mine = report.removed.find((r) => r.name === name)
      if (mine !== undefined) assert.strictEqual(mine.reason, "every holder is dead")
    }))

  it.live("a consumer killed while holding a reference: its reference is reclaimed, the producer's link stays", () =>
    Effect.gen(function*() {
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        const link = yield* Shm.ResourceLink.create(name, 4096)
        const consumer = yield* spawnChild("acquire", name)
        assert.strictEqual(consumer.said, "2")
        const before = yield* link.info
        assert.strictEqual(before.refcount, 2)
        assert.deepStrictEqual(
          before.holders.map((h) => [h.pid, h.alive]).toSorted(),
          [
            [consumer.pid, true],
            [process.pid, true]
          ].toSorted()
        )
        yield* consumer.kill
        // (another test file's collector may be quicker than ours: either clears the dead slot)
        yield* Shm.SegmentGc.collect()
        assert.isTrue(exists(name), "a live process holds it")
        const after = yield* link.info
        assert.strictEqual(after.refcount, 1)
        assert.deepStrictEqual(after.holders.map((h) => h.pid), [process.pid])
      }))
      // our release was the last: removed
      assert.isFalse(exists(name))
    }))

  it.live("the scheduled collector finds a killed producer's link on its own", () =>
    Effect.gen(function*() {
      const name = fresh()
      const producer = yield* spawnChild("create", name, "1000", "3600000")
      yield* Shm.SegmentGc.run({ schedule: Schedule.spaced("50 millis") })
      yield* Effect.sleep("200 millis")
      assert.isTrue(exists(name), "kept while its producer lives")
      yield* producer.kill
      const deadline = Date.now() + 2000
      while (exists(name) && Date.now() < deadline) yield* Effect.sleep("20 millis")
      assert.isFalse(exists(name))
    }).pipe(Effect.scoped))

  it.live(
    "two collectors at once do not fight: each orphan is removed once, live links stay",
    () =>
      Effect.gen(function*() {
        const orphans = Array.from({ length: 12 }, fresh)
        const held = fresh()
        yield* Effect.scoped(Effect.gen(function*() {
          const link = yield* Shm.ResourceLink.create(held, 100)
          for (const name of orphans) {
            const producer = yield* spawnChild("create", name, "4096", "3600000")
            yield* producer.kill
          }
          const message = yield* spawnChild("message")
          yield* message.kill
          const [a, b] = yield* Effect.all([spawnChild("gc", "3"), spawnChild("gc", "3")], { concurrency: 2 })
          const removedA: Array<string> = JSON.parse(a.said)
          const removedB: Array<string> = JSON.parse(b.said)
          const ours = [...orphans, message.said]
          const removed = [...removedA, ...removedB].filter((name) => ours.includes(name))
          for (const name of ours) assert.isFalse(exists(name), `${name} is gone`)
          // no orphan was reported removed twice; others (other test files' collectors) may have taken some
          assert.strictEqual(new Set(removed).size, removed.length)
          assert.isTrue(exists(held))
          assert.strictEqual((yield* link.info).refcount, 1)
        }))
      }),
    60_000
  )

  it.live("reclaims a channel segment whose creator died before writing its header, once it is a second old", () =>
    Effect.gen(function*() {
      const child = yield* spawnChild("blank")
      const name = child.said
      yield* child.kill
      const early = yield* Shm.SegmentGc.collect({ dryRun: true })
      assert.isUndefined(early.removed.find((r) => r.name === name), "too young to judge")
      yield* Effect.sleep("1100 millis")
      const dry = yield* Shm.SegmentGc.collect({ dryRun: true })
      const verdict = dry.removed.find((r) => r.name === name)
      // another file's collector may have been quicker
      if (verdict !== undefined) assert.include(verdict.reason, "died before writing its header")
      yield* Shm.SegmentGc.collect()
      assert.isFalse(exists(name))
    }))

  it.live("refuses segments that are not valid links: wrong magic, wrong version, wrong kind, truncated", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const junk = yield* Shm.Segment.create(fresh(), 8192)
        junk.bytes.set(new TextEncoder().encode("GIF89a this is not a header"))
        yield* expectProtocol(junk.name, "not an effect-ipc segment")

        const valid = fresh()
        yield* Shm.ResourceLink.create(valid, 100)
        const copy = (yield* Shm.Segment.open(valid)).bytes.slice(0, 4096)

        const future = yield* Shm.Segment.create(fresh(), 8192)
        future.bytes.set(copy)
        new DataView(future.bytes.buffer).setUint16(4, 99, true)
        yield* expectProtocol(future.name, "layout version 99")

        const ring = yield* Shm.Segment.create(fresh(), 8192)
        ring.bytes.set(copy)
        new DataView(ring.bytes.buffer).setUint16(6, 2, true)
        yield* expectProtocol(ring.name, "holds a ring")

        const short = yield* Shm.Segment.create(fresh(), 100)
        yield* expectProtocol(short.name, "truncated")

        // a header that declares more payload than the segment has
        const cut = yield* Shm.Segment.create(fresh(), 4096 + 50)
        cut.bytes.set(copy)
        yield* expectProtocol(cut.name, "truncated")

        // the collector lists none of the broken ones as ours (the ring is a well-formed header)
        const listing = yield* Shm.SegmentGc.list
        for (const s of [junk, future, short, cut]) {
          assert.isUndefined(listing.segments.find((x) => x.name === s.name))
        }
        assert.strictEqual(listing.segments.find((x) => x.name === ring.name)?.kind, "ring")
      }))
    }))

  it.live("rejects bad names and existing names", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        (yield* Effect.flip(Effect.scoped(Shm.ResourceLink.create("a/b", 1)))).reason,
        "InvalidAddress"
      )
      assert.strictEqual(
        (yield* Effect.flip(Effect.scoped(Shm.ResourceLink.acquire("n".repeat(300))))).reason,
        "NameTooLong"
      )
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Shm.ResourceLink.create(name, 1)
        assert.strictEqual((yield* Effect.flip(Shm.ResourceLink.create(name, 1))).reason, "AlreadyExists")
      }))
    }))

  it.live("lists links with their refcount, holders, age and TTL", () =>
    Effect.gen(function*() {
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Shm.ResourceLink.create(name, 5000, { ttl: "1 hour" })
        const entry = (yield* Shm.SegmentGc.list).segments.find((s) => s.name === name)
        assert.isDefined(entry)
        assert.strictEqual(entry!.kind, "link")
        assert.strictEqual(entry!.state, "ready")
        assert.strictEqual(entry!.payloadLength, 5000)
        assert.strictEqual(entry!.size, 4096 + 5000)
        assert.strictEqual(entry!.refcount, 1)
        assert.strictEqual(entry!.ttlMillis, 3_600_000)
        assert.deepStrictEqual(entry!.creator, { pid: process.pid, alive: true })
        assert.isUndefined(entry!.orphan)
      }))
      // released, it waits for its TTL; `remove` takes it away at once
      assert.isTrue(exists(name))
      yield* Shm.ResourceLink.remove(name)
      assert.isFalse(exists(name))
    }))

  it("leaves nothing in /dev/shm", () => {
    assert.deepStrictEqual(leftovers(prefix, pidMarker(process.pid)), [])
  })
})
