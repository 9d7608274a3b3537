/**
 * Resource links across real processes: reference counts, TTL, release on
 * close / failure / interruption, bad segments, header locks (dead and live
 * holders, across pid namespaces), and the orphan collector (killed
 * producers and consumers, two collectors at once).
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Header from "../src/internal/header.ts"
import * as Processes from "../src/internal/processes.ts"
import * as Segments from "../src/internal/segments.ts"
import { AS_NOBODY, leftovers, pidMarker, spawnChild, spawnChildWith } from "./helpers.ts"

const prefix = `link-test-${process.pid}`
let n = 0
const fresh = () => `${prefix}-${n++}`
const exists = (name: string) => Fs.existsSync(`/dev/shm/${name}`)

/** Runs a child as pid 1 of a pid namespace of its own, which ends with it (root only: the tests run as root). */
const otherPidNamespace = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]

/** Runs a child in a time namespace of its own whose boot time is a day earlier (its start time, as it sees it, shifted). */
const otherTimeNamespace = ["unshare", "--time", "--fork", "--boottime", "86400", "--kill-child"]

/** One collection scoped to `name` (other test files' collectors never look at it). */
const collectOnly = (name: string) => Shm.SegmentGc.collect({ prefix: name })

/** The raw words of a link's header, to write holder slots as other processes would. */
const headerWords = (name: string) =>
  Effect.map(Shm.Segment.open(name), (segment) => new Int32Array(segment.bytes.buffer, 0, 1024))

/** Writes holder slot `slot` (pid, start tag, pid-namespace tag, count) and adds its count to the refcount. */
const writeSlot = (words: Int32Array, slot: number, holder: Processes.ProcessId, count = 1) => {
  const at = 16 + slot * 4
  words[at + 1] = holder.start
  words[at + 2] = holder.ns
  words[at + 3] = count
  Atomics.store(words, at, holder.pid)
  Atomics.add(words, 3, count)
}

/** `count` live `sleep` processes, killed when the scope closes. */
const sleepers = (count: number) =>
  Effect.acquireRelease(
    Effect.sync(() => Array.from({ length: count }, () => ChildProcess.spawn("sleep", ["120"], { stdio: "ignore" }))),
    (children) =>
      Effect.forEach(children, (child) =>
        Effect.callback<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
          child.kill("SIGKILL")
        }), { discard: true })
  )

/** Acquiring `name` fails (the link is locked, say): the error; `because` says why it must not succeed. */
const acquireFails = (name: string, because: string) =>
  Effect.flatMap(Effect.result(Effect.scoped(Shm.ResourceLink.acquire(name))), (result) =>
    Effect.sync(() => {
      if (result._tag === "Success") assert.fail(`acquired ${name}, but ${because}`)
      return result.failure
    }))

/** Acquiring `name` fails with `Protocol`, saying `detail`. */
const expectProtocol = (name: string, detail: string) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Effect.scoped(Shm.ResourceLink.acquire(name)))
    assert.strictEqual(error.reason._tag, "Protocol", error.message)
    assert.include(error.detail, detail)
  })

/** The reason a scoped effect fails with. */
const bad = <A>(effect: Effect.Effect<A, IpcError.IpcError, Scope.Scope>) =>
  Effect.map(Effect.flip(Effect.scoped(effect)), (error) => error.reason._tag)

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
      assert.strictEqual(gone.reason._tag, "NotFound")
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
      const early = yield* collectOnly(name)
      assert.deepStrictEqual([early.removed, early.kept], [[], 1])
      assert.isTrue(exists(name), "kept within its TTL")
      yield* Effect.sleep("1600 millis")
      const listed = (yield* Shm.SegmentGc.listMatching({ prefix: name })).segments
      assert.deepStrictEqual(listed.map((s) => [s.name, s.orphan]), [[name, "nobody holds it and its TTL has passed"]])
      const late2 = yield* collectOnly(name)
      assert.deepStrictEqual(late2.removed, [{ name, kind: "link", reason: "nobody holds it and its TTL has passed" }])
      assert.isFalse(exists(name))
    }))

  it.live("reclaims the link of a kill -9'd producer, even within its TTL", () =>
    Effect.gen(function*() {
      const name = fresh()
      const producer = yield* spawnChild("create", name, "100000", "3600000")
      const info = yield* Shm.ResourceLink.info(name)
      assert.strictEqual(info.refcount, 1)
      assert.strictEqual(info.creator.pid, producer.pid)
      // the collector leaves a live producer's link alone
      assert.deepStrictEqual((yield* collectOnly(name)).removed, [])
      assert.isTrue(exists(name))
      yield* producer.kill
      const report = yield* collectOnly(name)
      assert.deepStrictEqual(report.removed, [{ name, kind: "link", reason: "every holder is dead" }])
      assert.isFalse(exists(name))
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
        assert.deepStrictEqual(
          (yield* link.info).holders.map((h) => [h.pid, h.alive]).toSorted(),
          [
            [consumer.pid, false],
            [process.pid, true]
          ].toSorted()
        )
        const report = yield* collectOnly(name)
        assert.deepStrictEqual([report.removed, report.kept], [[], 1])
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
      yield* Shm.SegmentGc.run({ schedule: Schedule.spaced("50 millis"), prefix: name })
      yield* Effect.sleep("200 millis")
      assert.isTrue(exists(name), "kept while its producer lives")
      yield* producer.kill
      const deadline = Date.now() + 10_000
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
          const producer = yield* spawnChild("create-all", "4096", "3600000", ...orphans)
          yield* producer.kill
          const message = yield* spawnChild("message")
          yield* message.kill
          const scope = [`${prefix}-`, `eipc-m${pidMarker(message.pid)}`]
          const [a, b] = yield* Effect.all([spawnChild("gc", "3", ...scope), spawnChild("gc", "3", ...scope)], {
            concurrency: 2
          })
          const removedA: Array<string> = JSON.parse(a.said)
          const removedB: Array<string> = JSON.parse(b.said)
          const ours = [...orphans, message.said]
          for (const name of ours) assert.isFalse(exists(name), `${name} is gone`)
          // between them they removed every orphan, each exactly once, and nothing else
          assert.deepStrictEqual([...removedA, ...removedB].toSorted(), ours.toSorted())
          assert.isTrue(exists(held))
          assert.strictEqual((yield* link.info).refcount, 1)
        }))
      }),
    120_000
  )

  // a creator killed while its link is allocated (1 GiB takes a while) left a segment without a header under
  // the link's name, which the collector took for another program's: the name could never be created again
  it.live(
    "a creator killed while making its link leaves the name free; the collector removes the rest",
    () =>
      Effect.gen(function*() {
        let cut = 0
        // the child is killed by a timer of its own, each round later into the making (1 GiB: a tenth of a
        // second to a second here), so a loaded parent that reads `ready` late does not miss it every round
        const killAfter = [5, 20, 40, 80, 150, 300, 10, 60]
        for (let round = 0; round < killAfter.length && cut < 2; round++) {
          const name = fresh()
          const child = yield* spawnChild("create-slowly", name, String(1 << 30), String(killAfter[round]))
          const staging = `eipc-l${pidMarker(child.pid)}`
          const clear = Effect.sync(() => {
            for (const left of [name, ...leftovers(staging)]) Fs.rmSync(`/dev/shm/${left}`, { force: true })
          })
          yield* Effect.gen(function*() {
            // killed by its own timer (or, should that not come, by ours)
            yield* Effect.timeoutOption(child.exited, "20 seconds")
            yield* child.kill
            const staged = leftovers(staging)
            // killed before or after the making: this round tells nothing
            if (child.output().includes("made") || (staged.length === 0 && !exists(name))) return
            cut++
            assert.isFalse(exists(name), "a half-made link was left under its name")
            yield* Effect.scoped(Shm.ResourceLink.create(name, 100))
            // under a second old, it stays (its creator may still be at work): made young again here, however
            // long the kill took on a loaded machine
            const now = new Date()
            for (const left of staged) Fs.utimesSync(`/dev/shm/${left}`, now, now)
            const young = yield* Shm.SegmentGc.collect({ prefix: `${prefix}-none-` })
            assert.notIncludeMembers(young.removed.map((r) => r.name), [...staged])
            const old = new Date(Date.now() - 2000)
            for (const left of staged) Fs.utimesSync(`/dev/shm/${left}`, old, old)
            // collected whatever the prefix asked for: a staging name is nobody's to name
            const report = yield* Shm.SegmentGc.collect({ prefix: `${prefix}-none-` })
            const ours = report.removed.filter((r) => r.name.startsWith(staging))
            assert.deepStrictEqual(ours.map((r) => r.name), [...staged])
            assert.include(ours[0]!.reason, "died while making a resource link")
            assert.deepStrictEqual(leftovers(staging), [])
          }).pipe(Effect.ensuring(clear))
        }
        assert.isAbove(cut, 0, "no kill landed while a link was being made")
      }).pipe(Effect.scoped),
    120_000
  )

  it.effect("a name of the transport's own form is refused for a new link or segment", () =>
    Effect.gen(function*() {
      for (const name of ["eipc-l-zz-data", "eipc-r-1-2-abc", "eipc-m-9-x"]) {
        const link = yield* Effect.flip(Effect.scoped(Shm.ResourceLink.create(name, 10)))
        assert.strictEqual(link.reason._tag, "InvalidAddress")
        assert.include(link.detail, "the shm transport's own names")
        const segment = yield* Effect.flip(Effect.scoped(Shm.Segment.create(name, 10)))
        assert.strictEqual(segment.reason._tag, "InvalidAddress")
        assert.isFalse(exists(name))
      }
    }))

  it.live("reclaims a channel segment whose creator died before writing its header, once it is a second old", () =>
    Effect.gen(function*() {
      const child = yield* spawnChild("blank")
      const name = child.said
      yield* child.kill
      // the age rule reads the segment's mtime: made young again here, so a loaded machine that took
      // over a second to spawn and kill the child still sees a segment too young to judge
      const now = new Date()
      Fs.utimesSync(`/dev/shm/${name}`, now, now)
      const early = yield* Shm.SegmentGc.collect({ dryRun: true, prefix: name })
      assert.deepStrictEqual(early.removed, [], "too young to judge")
      yield* Effect.sleep("1100 millis")
      const dry = yield* Shm.SegmentGc.collect({ dryRun: true, prefix: name })
      assert.deepStrictEqual(dry.removed.map((r) => r.name), [name])
      assert.include(dry.removed[0]!.reason, "died before writing its header")
      assert.deepStrictEqual((yield* collectOnly(name)).removed.map((r) => r.name), [name])
      assert.isFalse(exists(name))
    }))

  // the same leftover, but another user's: not this user's to judge (root may remove anything in /dev/shm)
  it.live.runIf(process.getuid?.() === 0)(
    "leaves another user's blank channel segment alone, however old",
    () =>
      Effect.gen(function*() {
        const child = yield* spawnChild("blank")
        const name = child.said
        yield* child.kill
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(`/dev/shm/${name}`, { force: true })))
        Fs.chownSync(`/dev/shm/${name}`, 65534, 65534)
        const old = new Date(Date.now() - 60_000)
        Fs.utimesSync(`/dev/shm/${name}`, old, old)
        assert.deepStrictEqual((yield* collectOnly(name)).removed, [])
        assert.isTrue(exists(name), "another user's segment was removed")
      }).pipe(Effect.scoped)
  )

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
        const listing = yield* Shm.SegmentGc.listMatching({ prefix })
        for (const s of [junk, future, short, cut]) {
          assert.isUndefined(listing.segments.find((x) => x.name === s.name))
        }
        assert.strictEqual(listing.segments.find((x) => x.name === ring.name)?.kind, "ring")
      }))
    }))

  it.effect("a bad length or size is InvalidOption, not InvalidAddress, and makes nothing", () =>
    Effect.gen(function*() {
      const name = `bad-size-${process.pid}`
      for (const length of [-1, NaN, 1.5, Infinity, -Infinity, Number.MAX_SAFE_INTEGER, 2 ** 60]) {
        const link = yield* Effect.flip(Effect.scoped(Shm.ResourceLink.create(name, length)))
        assert.strictEqual(link.reason._tag, "InvalidOption", `${length}: ${link.message}`)
        assert.include(link.detail, "payload length")
        assert.isFalse(exists(name))
      }
      for (const size of [0, -1, NaN, 1.5, Infinity, 2 ** 60]) {
        const segment = yield* Effect.flip(Effect.scoped(Shm.Segment.create(name, size)))
        assert.strictEqual(segment.reason._tag, "InvalidOption", `${size}: ${segment.message}`)
        assert.isFalse(exists(name))
      }
      // an empty payload is a link all the same
      assert.strictEqual(yield* Effect.scoped(Effect.map(Shm.ResourceLink.create(name, 0), (l) => l.payload.length)), 0)
    }))

  it.live("rejects bad names and existing names", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        (yield* Effect.flip(Effect.scoped(Shm.ResourceLink.create("a/b", 1)))).reason._tag,
        "InvalidAddress"
      )
      assert.strictEqual(
        (yield* Effect.flip(Effect.scoped(Shm.ResourceLink.acquire("n".repeat(300))))).reason._tag,
        "NameTooLong"
      )
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Shm.ResourceLink.create(name, 1)
        assert.strictEqual((yield* Effect.flip(Shm.ResourceLink.create(name, 1))).reason._tag, "AlreadyExists")
      }))
    }))

  it.live("a name that is not a string, a mode that lets another user write or is not permission bits, a ttl that is not a finite duration: typed errors, nothing made", () =>
    Effect.gen(function*() {
      for (const name of [42, null, undefined, {}] as Array<never>) {
        assert.strictEqual(yield* bad(Shm.ResourceLink.create(name, 1)), "InvalidAddress", String(name))
        assert.strictEqual(yield* bad(Shm.ResourceLink.acquire(name)), "InvalidAddress", String(name))
        assert.strictEqual(yield* bad(Shm.Segment.create(name, 4096)), "InvalidAddress", String(name))
        // not a synchronous throw where the effect is made
        assert.strictEqual((yield* Effect.flip(Shm.Segment.unlink(name))).reason._tag, "InvalidAddress")
      }
      // group or others who may write could shrink the link under its mappers (SIGBUS); 600 is decimal, 0o1130
      for (const mode of [0o666, 0o620, 0o602, -1, 600, Number.NaN, "0600"] as Array<never>) {
        const name = fresh()
        assert.strictEqual(yield* bad(Shm.ResourceLink.create(name, 1, { mode })), "InvalidOption", String(mode))
        assert.strictEqual(yield* bad(Shm.Segment.create(name, 4096, { mode })), "InvalidOption", String(mode))
        assert.isFalse(exists(name), "nothing made")
      }
      for (const ttl of [-1, Number.NaN, Infinity, {}, "abc", "-5 seconds", null] as Array<never>) {
        const name = fresh()
        assert.strictEqual(yield* bad(Shm.ResourceLink.create(name, 1, { ttl })), "InvalidOption", String(ttl))
        assert.isFalse(exists(name), "nothing made")
      }
      // a mode without the owner's read and write makes a link nobody can acquire, remove or collect
      for (const mode of [0o400, 0o200, 0o000] as Array<never>) {
        assert.strictEqual(yield* bad(Shm.ResourceLink.create(fresh(), 1, { mode })), "InvalidOption", String(mode))
      }
      // group and others may read; a duration as an object is a duration
      const kept = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        const link = yield* Shm.ResourceLink.create(kept, 1, { mode: 0o640, ttl: { minutes: 10 } })
        assert.strictEqual(Fs.statSync(`/dev/shm/${link.name}`).mode & 0o777, 0o640)
        const ttl = (yield* link.info).ttl
        assert.strictEqual(ttl === undefined ? undefined : Duration.toMillis(ttl), 600_000)
        yield* Shm.SegmentGc.run({ delay: { seconds: 5 }, prefix: link.name })
      }))
      // kept for its TTL after its last holder: removed by name
      yield* Shm.Segment.unlink(kept)
    }))

  it.live("an unheld link whose TTL or creation time is damaged (not a number, or further ahead than its TTL) is collected, not kept for good; an infinite TTL is kept", () =>
    Effect.gen(function*() {
      for (const offset of [40, 32]) {
        const name = fresh()
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Shm.ResourceLink.create(name, 10, { ttl: "1 hour" })
        }))
        assert.isTrue(exists(name), "kept for its TTL")
        yield* Effect.scoped(Effect.gen(function*() {
          const segment = yield* Shm.Segment.open(name)
          new DataView(segment.bytes.buffer).setFloat64(offset, Number.NaN, true)
        }))
        const report = yield* collectOnly(name)
        assert.deepStrictEqual(report.removed.map((r) => r.name), [name], `NaN at byte ${offset}`)
        assert.isFalse(exists(name))
      }
      // a creation time ahead of now by more than the TTL (damaged, or the clock set back) is collected too; one a
      // minute ahead (a clock set back a little) is not
      for (const [ahead, collected] of [[1e300, true], [365 * 86_400_000, true], [60_000, false]] as const) {
        const name = fresh()
        yield* Effect.scoped(Shm.ResourceLink.create(name, 10, { ttl: "1 hour" }))
        yield* Effect.scoped(Effect.gen(function*() {
          const segment = yield* Shm.Segment.open(name)
          new DataView(segment.bytes.buffer).setFloat64(32, Date.now() + ahead, true)
        }))
        const report = yield* collectOnly(name)
        assert.deepStrictEqual(report.removed.map((r) => r.name), collected ? [name] : [], `created ${ahead} ms ahead`)
        assert.strictEqual(exists(name), !collected)
        if (!collected) yield* Shm.Segment.unlink(name)
      }
      // an infinite TTL (an earlier version took ttl: Infinity) is not damage: the link waits, as it was promised
      const forever = fresh()
      yield* Effect.scoped(Shm.ResourceLink.create(forever, 10, { ttl: "1 hour" }))
      yield* Effect.scoped(Effect.gen(function*() {
        const segment = yield* Shm.Segment.open(forever)
        new DataView(segment.bytes.buffer).setFloat64(40, Infinity, true)
      }))
      assert.deepStrictEqual((yield* collectOnly(forever)).removed, [])
      assert.isTrue(exists(forever))
      yield* Shm.Segment.unlink(forever)
    }))

  it.live("lists links with their refcount, holders, age and TTL", () =>
    Effect.gen(function*() {
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Shm.ResourceLink.create(name, 5000, { ttl: "1 hour" })
        const entry = (yield* Shm.SegmentGc.listMatching({ prefix: name })).segments.find((s) => s.name === name)
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

  // what `effect-ipc shm ls` shows: a kill -9'd producer is listed dead, and why its link is an orphan
  it.live("lists a killed producer as dead, creator and holder, with the reason its link would be collected", () => {
    const name = fresh()
    return Effect.gen(function*() {
      const producer = yield* spawnChild("create", name, "64", "3600000")
      const entry = () =>
        Effect.map(
          Shm.SegmentGc.listMatching({ prefix: name }),
          (listing) => listing.segments.find((s) => s.name === name)
        )
      const live = yield* entry()
      assert.deepStrictEqual(live!.creator, { pid: producer.pid, alive: true })
      assert.deepStrictEqual(live!.holders, [{ pid: producer.pid, count: 1, alive: true }])
      assert.isUndefined(live!.orphan)
      yield* producer.kill
      const dead = yield* entry()
      assert.deepStrictEqual(dead!.creator, { pid: producer.pid, alive: false })
      assert.deepStrictEqual(dead!.holders, [{ pid: producer.pid, count: 1, alive: false }])
      assert.strictEqual(dead!.orphan, "every holder is dead")
    }).pipe(Effect.ensuring(Effect.ignore(Shm.ResourceLink.remove(name))))
  })

  it.live(
    "takes over the lock of a holder that died inside its critical section, and repairs the count",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        yield* Effect.scoped(Effect.gen(function*() {
          const link = yield* Shm.ResourceLink.create(name, 64)
          // a process takes the header lock, bumps the refcount half-way through an update, and is killed
          const locker = yield* spawnChild("lock", name)
          const blocked = yield* Effect.flip(Effect.scoped(Shm.ResourceLink.acquire(name)))
          assert.strictEqual(blocked.reason._tag, "Timeout", "a live holder's lock is respected")
          yield* locker.kill
          const info = yield* Effect.scoped(Effect.flatMap(Shm.ResourceLink.acquire(name), (held) => held.info))
          // the dead process's lock was taken over and the count recomputed from the slots (not 1 + 5 + 1)
          assert.strictEqual(info.refcount, 2)
          assert.strictEqual((yield* link.info).refcount, 1)
        }))
        assert.isFalse(exists(name))
      }),
    30_000
  )

  it.live(
    "a process in another pid namespace respects the lock of a live holder here, whose pid means nothing there",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Shm.ResourceLink.create(name, 64)
          const holder = yield* spawnChild("lock", name)
          const contender = yield* spawnChildWith({ wrap: otherPidNamespace }, "try-acquire", name)
          assert.match(contender.said, /^Timeout: /, "it waited instead of taking the lock")
          assert.include(contender.said, "another pid namespace")
          yield* contender.kill
          yield* holder.kill
          // the dead holder's lock is taken over here, in its own namespace, and the count repaired
          const info = yield* Effect.scoped(Effect.flatMap(Shm.ResourceLink.acquire(name), (held) => held.info))
          assert.strictEqual(info.refcount, 2)
        }))
        assert.isFalse(exists(name))
      }),
    30_000
  )

  it.live(
    "a lock left by a process of another pid namespace is never taken over, even once it died: the name is removed by hand",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        yield* Effect.scoped(Shm.ResourceLink.create(name, 64, { ttl: "1 hour" }))
        // pid 1 of a namespace of its own, which dies with it: here pid 1 is init, alive
        const locker = yield* spawnChildWith({ wrap: otherPidNamespace }, "lock", name)
        const blocked = yield* acquireFails(name, "its holder lives")
        assert.strictEqual(blocked.reason._tag, "Timeout", "a live holder's lock is respected")
        yield* locker.kill
        // its pid means nothing here, and nothing here scans for it: it counts as alive, and the remedy is named
        const still = yield* acquireFails(name, "a holder of another pid namespace counts as alive")
        assert.strictEqual(still.reason._tag, "Timeout")
        assert.include(still.detail, "another pid namespace")
        assert.include(still.detail, `Segment.unlink("${name}")`)
        assert.include(still.detail, `rm /dev/shm/${name}`)
        yield* Shm.Segment.unlink(name)
        assert.isFalse(exists(name))
        // the name is free for a new link
        yield* Effect.scoped(Shm.ResourceLink.create(name, 64))
        assert.isFalse(exists(name))
      }),
    30_000
  )

  it.live(
    "a lock holder in another time namespace (its start time shifted) is judged by its pid: alive while it runs",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        yield* Effect.scoped(Shm.ResourceLink.create(name, 64, { ttl: "1 hour" }))
        // the start time it wrote in the lock word is a day after the one /proc shows here
        const locker = yield* spawnChildWith({ wrap: otherTimeNamespace }, "lock", name)
        const blocked = yield* acquireFails(name, "its holder lives (in another time namespace)")
        assert.strictEqual(blocked.reason._tag, "Timeout", "a live holder's lock is respected")
        assert.include(blocked.detail, "which counts as alive")
        yield* locker.kill
        // once it is gone, its lock is taken over and the count (5 too many) repaired from the slots
        const info = yield* Effect.scoped(Effect.flatMap(Shm.ResourceLink.acquire(name), (held) => held.info))
        assert.strictEqual(info.refcount, 1)
        yield* Shm.ResourceLink.remove(name)
        assert.isFalse(exists(name))
      }),
    30_000
  )

  it.live(
    "a holder in another time namespace counts as alive: the collector keeps its link while it runs",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        yield* Effect.scoped(Shm.ResourceLink.create(name, 64, { ttl: "1 millis" }))
        const child = yield* spawnChildWith({ wrap: otherTimeNamespace }, "acquire", name)
        assert.strictEqual(child.said, "1")
        const info = yield* Shm.ResourceLink.info(name)
        assert.deepStrictEqual(info.holders.map((h) => h.alive), [true])
        const report = yield* collectOnly(name)
        assert.deepStrictEqual([report.removed, report.kept], [[], 1])
        assert.strictEqual((yield* Shm.ResourceLink.info(name)).refcount, 1)
        yield* child.kill
        // gone (its pid no longer runs): its reference is reclaimed with the link
        let removed = 0
        for (let i = 0; i < 100 && removed === 0; i++) {
          if (i > 0) yield* Effect.sleep("20 millis")
          removed = (yield* collectOnly(name)).removed.length
        }
        assert.strictEqual(removed, 1)
        assert.isFalse(exists(name))
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a lock word naming a recycled pid is taken over; one naming the live process with that pid is not",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        yield* Shm.ResourceLink.create(name, 64)
        const [sleeper] = yield* sleepers(1)
        const pid = sleeper!.pid!
        const { header } = yield* Effect.acquireRelease(
          Segments.openWithHeader(name, Header.Kind.link),
          (opened) => Effect.sync(() => opened.mapped.mapping.release())
        )
        const ns = Processes.current().ns
        Atomics.store(header.lock, 0, Header.lockWord({ pid, start: Processes.startTag(pid), ns }))
        const blocked = yield* Effect.flip(Effect.scoped(Shm.ResourceLink.acquire(name)))
        assert.strictEqual(blocked.reason._tag, "Timeout")
        assert.include(blocked.detail, `by pid ${pid}, which counts as alive`)
        Atomics.store(header.lock, 0, Header.lockWord({ pid, start: Processes.startTag(pid) + 1, ns }))
        const info = yield* Effect.scoped(Effect.flatMap(Shm.ResourceLink.acquire(name), (held) => held.info))
        assert.strictEqual(info.refcount, 2)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "for a user other than root, another user's process with a recorded pid is a recycled pid: its lock is taken over",
    () =>
      Effect.gen(function*() {
        // the child runs as nobody, the test (whose pid the lock word and a holder slot name, with another start
        // time) as root: nobody cannot read our /proc/<pid>/ns/time, yet we cannot hold nobody's segments
        const name = fresh()
        // the child removes it; if its lock could not be taken over (the failure this guards against), neither can
        // `remove`: unlink the name
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(`/dev/shm/${name}`, { force: true })))
        const child = yield* spawnChildWith(
          { wrap: AS_NOBODY },
          "recycled-by",
          name,
          String(process.pid)
        )
        // the lock is taken over, and the holder slot naming us is judged dead (the child's own is alive)
        assert.strictEqual(child.said, "held [true,false]")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live("a recycled pid (same pid, another start time) is a dead holder; the process that has the pid is not", () =>
    Effect.gen(function*() {
      const name = fresh()
      const link = yield* Shm.ResourceLink.create(name, 64)
      const [sleeper] = yield* sleepers(1)
      const pid = sleeper!.pid!
      const ns = Processes.current().ns
      const words = yield* headerWords(name)
      writeSlot(words, 5, { pid, start: Processes.startTag(pid) + 1, ns })
      writeSlot(words, 6, { pid, start: Processes.startTag(pid), ns })
      const before = yield* link.info
      assert.deepStrictEqual(before.holders.map((h) => [h.pid, h.alive]), [
        [process.pid, true],
        [pid, false],
        [pid, true]
      ])
      const report = yield* collectOnly(name)
      assert.deepStrictEqual([report.removed, report.kept], [[], 1])
      const after = yield* link.info
      assert.deepStrictEqual(after.holders.map((h) => [h.pid, h.alive]), [[process.pid, true], [pid, true]])
      assert.strictEqual(after.refcount, 2)
      writeSlot(words, 6, { pid: 0, start: 0, ns: 0 }, -1) // let the live sleeper's slot go again
    }).pipe(Effect.scoped))

  it.live(
    "a holder in another pid namespace counts as alive: the collector keeps its link",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        yield* Effect.scoped(Effect.map(Shm.ResourceLink.create(name, 64, { ttl: "1 millis" }), (link) => {
          link.payload[0] = 5
        }))
        const child = yield* spawnChildWith(
          { wrap: ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] },
          "acquire",
          name
        )
        assert.strictEqual(child.said, "1")
        const info = yield* Shm.ResourceLink.info(name)
        // its pid means something else here: it cannot be judged from this namespace
        assert.strictEqual(info.holders.length, 1)
        assert.isTrue(info.holders[0]!.alive)
        assert.notStrictEqual(info.holders[0]!.pid, child.pid)
        const report = yield* collectOnly(name)
        assert.deepStrictEqual([report.removed, report.kept], [[], 1])
        assert.isTrue(exists(name))
        yield* child.kill
        // still unknowable from here after it died: kept until removed by name
        assert.deepStrictEqual((yield* collectOnly(name)).removed, [])
        yield* Shm.ResourceLink.remove(name)
        assert.isFalse(exists(name))
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a 65th process gets Full while 64 live processes hold a link; a dead holder's slot is reused",
    () =>
      Effect.gen(function*() {
        const name = fresh()
        const link = yield* Shm.ResourceLink.create(name, 64)
        const others = yield* sleepers(63)
        const words = yield* headerWords(name)
        const ns = Processes.current().ns
        others.forEach((child, i) =>
          writeSlot(words, i + 1, { pid: child.pid!, start: Processes.startTag(child.pid!), ns })
        )
        assert.strictEqual((yield* link.info).refcount, 64)
        const refused = yield* spawnChild("try-acquire", name)
        assert.strictEqual(refused.said, `Full: resource link ${name} has 64 holders already`)
        yield* refused.kill
        // one holder dies: its slot goes to the next process
        others[10]!.kill("SIGKILL")
        yield* Effect.callback<void>((resume) => {
          if (others[10]!.exitCode !== null || others[10]!.signalCode !== null) return resume(Effect.void)
          others[10]!.once("exit", () => resume(Effect.void))
        })
        const held = yield* spawnChild("try-acquire", name)
        assert.strictEqual(held.said, "held")
        const info = yield* link.info
        assert.strictEqual(info.refcount, 64)
        assert.isTrue(info.holders.some((h) => h.pid === held.pid))
        yield* held.kill
        for (let i = 1; i < 64; i++) Atomics.store(words, 16 + i * 4, 0) // let the sleepers' slots go
        Atomics.store(words, 3, 1)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("a name re-created after removal: the old holders never touch the new link", () =>
    Effect.gen(function*() {
      const name = fresh()
      yield* Effect.scoped(Effect.gen(function*() {
        const old = yield* Shm.ResourceLink.create(name, 64)
        old.payload[0] = 1
        yield* Shm.ResourceLink.remove(name)
        assert.isFalse(exists(name))
        assert.strictEqual((yield* Effect.flip(Effect.scoped(Shm.ResourceLink.acquire(name)))).reason._tag, "NotFound")
        // a new link under the same name, made by another process, held by nobody here
        const producer = yield* spawnChild("create", name, "64", "3600000")
        assert.strictEqual((yield* Shm.ResourceLink.info(name)).creator.pid, producer.pid)
        // the old holder still reads its own memory
        assert.strictEqual(old.payload[0], 1)
      }))
      // dropping the last reference to the old link left the new one alone
      assert.isTrue(exists(name))
      const payload = yield* Effect.scoped(Effect.map(Shm.ResourceLink.acquire(name), (link) => link.payload[0]))
      assert.strictEqual(payload, 0xab)
      yield* Shm.ResourceLink.remove(name)
    }).pipe(Effect.scoped), 30_000)

  it("leaves nothing in /dev/shm", () => {
    assert.deepStrictEqual(leftovers(prefix, pidMarker(process.pid)), [])
  })
})

describe("options given in code that are not an object (a caller without types)", () => {
  it.live("ResourceLink.create, Segment.create, SegmentGc and the transport fail with InvalidOption, nothing made", () =>
    Effect.gen(function*() {
      for (const given of [null, "fast", 42]) {
        const untyped = given as never
        const name = fresh()
        const errors = [
          yield* Effect.flip(Effect.scoped(Shm.ResourceLink.create(name, 16, untyped))),
          yield* Effect.flip(Effect.scoped(Shm.Segment.create(name, 16, untyped))),
          yield* Effect.flip(Shm.SegmentGc.collect(untyped)),
          yield* Effect.flip(Shm.SegmentGc.listMatching(untyped)),
          yield* Effect.flip(Effect.scoped(Shm.ShmTransport.makeScoped(untyped))),
          yield* Effect.flip(Effect.scoped(Shm.ShmTransport.make(untyped).listen(`shm://${name}`))),
          yield* Effect.flip(Effect.scoped(Shm.ShmTransport.make(untyped).dial(`shm://${name}`)))
        ]
        for (const error of errors) {
          assert.strictEqual(error.reason._tag, "InvalidOption", error.detail)
          assert.match(error.detail, /options( of [\w.]+)? are not an object \(got (null|a string|a number)\)$/)
        }
        assert.isFalse(exists(name))
      }
    }))
})
