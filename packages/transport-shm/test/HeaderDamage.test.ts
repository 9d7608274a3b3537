/**
 * Resource links with damaged headers (property-based, fast-check, fixed
 * seed), as a hostile process of this user or a crash mid-write could leave
 * them, while a live process of its own holds the link: any bytes of the
 * header overwritten (fields, holder slots, the lock word) before the orphan
 * collector looks, and a damaged reference count before a holder lets go.
 * Nothing dies, and the live holder's link keeps its name.
 */
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import fc from "fast-check"
import * as Fs from "node:fs"
import * as Header from "../src/internal/header.ts"
import { spawnChild } from "./helpers.ts"

const SEED = Number(process.env["GC_DAMAGE_SEED"] ?? 0x5eed_06cd)
const RUNS = Number(process.env["GC_DAMAGE_RUNS"] ?? 150)
const prefix = `hdamage-test-${process.pid}`

/** Removes this file's segments from /dev/shm (the child that holds them is killed: they are orphans). */
const removeOurs = Effect.sync(() => {
  for (const n of Fs.readdirSync("/dev/shm")) {
    if (n.startsWith(prefix)) Fs.rmSync(`/dev/shm/${n}`, { force: true })
  }
})
/** Word index of the reference count in a header, and of the first holder slot's pid and count (the creator's). */
const W_REFCOUNT = 3
const W_FIRST_PID = 16
const W_FIRST_COUNT = 19

/** Values a damaged 32-bit word is most often found holding: small states and counts, pids, the edges. */
const word = fc.oneof(
  fc.integer({ min: -2, max: 4 }),
  fc.constantFrom(999_999, 0x3f_ffff, 2 ** 31 - 1, -(2 ** 31), 0x4350_4945),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })
)

/** What is written over the header: bytes anywhere in its first 1096 (every field, slot and the lock), or whole words. */
const damageArb = fc.array(
  fc.oneof(
    fc.record({
      at: fc.integer({ min: 0, max: Header.B_LOCK + 7 }),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 16 })
    }),
    fc.record({ word: fc.integer({ min: 0, max: (Header.B_LOCK + 8) / 4 - 1 }), value: word })
  ),
  { minLength: 1, maxLength: 6 }
)

/** Writes `damage` into the segment `name` through its file, not a mapping of this process's. */
const apply = (
  name: string,
  damage: ReadonlyArray<
    { readonly at: number; readonly bytes: Uint8Array } | { readonly word: number; readonly value: number }
  >
) => {
  const fd = Fs.openSync(`/dev/shm/${name}`, "r+")
  try {
    for (const hit of damage) {
      if ("bytes" in hit) Fs.writeSync(fd, hit.bytes, 0, hit.bytes.byteLength, hit.at)
      else {
        const bytes = Buffer.alloc(4)
        bytes.writeInt32LE(hit.value)
        Fs.writeSync(fd, bytes, 0, 4, hit.word * 4)
      }
    }
  } finally {
    Fs.closeSync(fd)
  }
}

describe("resource links with damaged headers (fast-check, fixed seed)", () => {
  it.live("never dies, and never removes a link a live process holds", () =>
    Effect.gen(function*() {
      const names = Array.from({ length: RUNS }, (_, i) => `${prefix}-${i}-`)
      // one live process holds every link (no TTL)
      yield* spawnChild("create-all", "64", "0", ...names)
      let run = 0
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(damageArb, (damage) =>
            Effect.runPromise(Effect.gen(function*() {
              const name = names[run++ % names.length]!
              assert.isTrue(Fs.existsSync(`/dev/shm/${name}`), `${name} is there before the run`)
              apply(name, damage)
              const what = `${name}: ${JSON.stringify(damage, (_, v) => v instanceof Uint8Array ? Array.from(v) : v)}`
              const listed = yield* Effect.exit(Shm.SegmentGc.listMatching({ prefix: name }))
              if (Exit.isFailure(listed)) assert.isFalse(Cause.hasDies(listed.cause), `${what}: list died`)
              const collected = yield* Effect.exit(Shm.SegmentGc.collect({ prefix: name }))
              if (Exit.isFailure(collected)) assert.isFalse(Cause.hasDies(collected.cause), `${what}: collect died`)
              assert.isTrue(Fs.existsSync(`/dev/shm/${name}`), `${what}: a link its live holder maps was removed`)
            }))),
          { seed: SEED, numRuns: RUNS, endOnFailure: true }
        )
      )
    }).pipe(Effect.scoped, Effect.ensuring(removeOurs)), 120_000)

  it.live(
    "a holder letting go of a link whose reference count or other holder's slot is damaged never removes it from under that live holder",
    () =>
      Effect.gen(function*() {
        const runs = Math.ceil(RUNS / 2)
        const names = Array.from({ length: runs }, (_, i) => `${prefix}-rc-${i}-`)
        yield* spawnChild("create-all", "64", "0", ...names)
        let run = 0
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(fc.constantFrom(W_REFCOUNT, W_FIRST_PID, W_FIRST_COUNT), word, (target, value) =>
              Effect.runPromise(Effect.gen(function*() {
                const name = names[run++ % names.length]!
                const what = `${name}: word ${target} = ${value}`
                // this process holds it too (two holders: it and the child), and lets go with the count or the
                // child's slot damaged
                const released = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
                  const link = yield* Shm.ResourceLink.acquire(name)
                  assert.strictEqual((yield* link.info).refcount, 2)
                  apply(name, [{ word: target, value }])
                })))
                if (Exit.isFailure(released)) {
                  assert.isFalse(
                    Cause.hasDies(released.cause),
                    `${what}: release died: ${Cause.pretty(released.cause)}`
                  )
                }
                assert.isTrue(Fs.existsSync(`/dev/shm/${name}`), `${what}: the link its live creator holds was removed`)
                if (target === W_REFCOUNT) {
                  const info = yield* Shm.ResourceLink.info(name)
                  assert.deepStrictEqual(info.holders.map((h) => [h.count, h.alive]), [[1, true]], what)
                }
              }))),
            { seed: SEED, numRuns: runs, endOnFailure: true }
          )
        )
      }).pipe(Effect.scoped, Effect.ensuring(removeOurs)),
    120_000
  )
})
