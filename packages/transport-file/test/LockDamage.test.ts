/**
 * Damaged session files of a `file://` channel (property-based, fast-check,
 * fixed seed): a role's lock file (its `pid token` text) overwritten in any
 * byte range, truncated, replaced by garbage, made huge or sparse, while the
 * peer is open, after it closed, or before it is killed. A live peer, or one
 * that closed cleanly, is never reported lost; a killed one always is; no
 * check throws. And a named reader's cursor file damaged the same ways: the
 * reader opens again with a typed error, or reads on from the committed
 * record or before it (again, never past it: no gap).
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import { FileChannel, Log, LogFormat } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import fc from "fast-check"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { countedBackend, fresh, newStream, node, tempRoot } from "./helpers.ts"

const root = tempRoot("lockdamage")
const text = new TextDecoder()
const bytes = (s: string) => new TextEncoder().encode(s)
const SEED = Number(process.env["LOCK_DAMAGE_SEED"] ?? 0x5eed_10c6)

/** What is done to a lock file. */
type Damage =
  | { readonly _tag: "Overwrite"; readonly at: number; readonly with: Uint8Array }
  | { readonly _tag: "Truncate"; readonly to: number }
  | { readonly _tag: "Replace"; readonly with: Uint8Array }
  | { readonly _tag: "Sparse"; readonly at: number; readonly with: Uint8Array }

const garbage = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 40 }),
  // text shaped like an owner (`pid token`): another pid, a token of other digits, or none
  fc.tuple(fc.integer({ min: 0, max: 2 ** 31 }), fc.stringMatching(/^[0-9a-zA-Z]{0,20}$/)).map(([pid, token]) =>
    bytes(`${pid} ${token}\n`)
  )
)

const damageArb: fc.Arbitrary<Damage> = fc.oneof(
  fc.record({ _tag: fc.constant("Overwrite" as const), at: fc.integer({ min: 0, max: 40 }), with: garbage }),
  fc.record({ _tag: fc.constant("Truncate" as const), to: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ _tag: fc.constant("Replace" as const), with: garbage }),
  fc.record({
    _tag: fc.constant("Sparse" as const),
    at: fc.oneof(fc.integer({ min: 256, max: 4096 }), fc.constant(1 << 30)),
    with: garbage
  })
)

/** Applies `damage` to the file at `path`, in place (same inode, as a process writing into it would). */
const apply = (path: string, damage: Damage): void => {
  const fd = Fs.openSync(path, "r+")
  try {
    switch (damage._tag) {
      case "Overwrite":
        Fs.writeSync(fd, damage.with, 0, damage.with.byteLength, damage.at)
        break
      case "Truncate":
        Fs.ftruncateSync(fd, Math.min(damage.to, Fs.fstatSync(fd).size))
        break
      case "Replace":
        Fs.ftruncateSync(fd, 0)
        Fs.writeSync(fd, damage.with, 0, damage.with.byteLength, 0)
        break
      case "Sparse":
        Fs.writeSync(fd, damage.with, 0, damage.with.byteLength, damage.at)
        break
    }
  } finally {
    Fs.closeSync(fd)
  }
}

type When = "open" | "closed"

/** One run: the frontend open in this process, its lock damaged while open or after it closed; never reported lost. */
const liveOrClosed = (damage: Damage, when: When) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = fresh(root)
    yield* FileChannel.create(dir)
    const backend = yield* countedBackend(dir, { livenessInterval: "20 millis" })
    const lock = Path.join(dir, "frontend.lock")
    const what = `${when}: ${JSON.stringify(damage, (_, v) => v instanceof Uint8Array ? Array.from(v) : v)}`
    yield* Effect.scoped(Effect.gen(function*() {
      const frontend = yield* FileChannel.frontend(dir)
      yield* frontend.send(bytes("one"))
      assert.strictEqual(text.decode(yield* backend.channel.receive), "one")
      yield* backend.moreChecks(what)
      if (when === "open") {
        apply(lock, damage)
        assert.isFalse(yield* backend.moreChecks(what), `${what}: a live peer was reported lost`)
      }
    }))
    if (when === "closed") apply(lock, damage)
    assert.isFalse(yield* backend.moreChecks(what), `${what}: a peer that closed cleanly was reported lost`)
    // the next session is heard
    yield* Effect.scoped(Effect.gen(function*() {
      const frontend = yield* FileChannel.frontend(dir)
      yield* frontend.send(bytes("two"))
    }))
    const next = yield* Effect.result(backend.channel.receive.pipe(Effect.timeout("10 seconds")))
    assert.strictEqual(next._tag === "Success" ? text.decode(next.success) : String(next.failure), "two", what)
  }))

/** One run: the frontend a process of its own, its lock damaged while it lives, then killed: always reported lost. */
const killed = (damage: Damage) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = fresh(root)
    yield* FileChannel.create(dir)
    const backend = yield* countedBackend(dir, { livenessInterval: "20 millis" })
    const what = JSON.stringify(damage, (_, v) => v instanceof Uint8Array ? Array.from(v) : v)
    const echo = yield* node(["echo", dir, "frontend"])
    yield* echo.waitFor((l) => l === "open")
    yield* backend.channel.send(bytes("ping"))
    assert.strictEqual(text.decode(yield* backend.channel.receive), "ping")
    apply(Path.join(dir, "frontend.lock"), damage)
    assert.isFalse(yield* backend.moreChecks(what), `${what}: a live peer was reported lost`)
    yield* echo.signal("SIGKILL")
    const error = yield* Effect.flip(backend.channel.receive).pipe(Effect.timeoutOrElse({
      duration: "10 seconds",
      orElse: () => Effect.die(new Error(`${what}: the loss was never reported`))
    }))
    assert.isTrue(IpcError.isIpcError(error))
    assert.strictEqual(error.reason._tag, "ConnectionLost", `${what}: ${error.message}`)
  }))

describe("damaged role lock files (fast-check, fixed seed)", () => {
  it.live("a live peer, or one that closed cleanly, is never reported lost", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          damageArb,
          fc.constantFrom<When>("open", "closed"),
          (damage, when) => Effect.runPromise(liveOrClosed(damage, when))
        ),
        { seed: SEED, numRuns: Number(process.env["LOCK_DAMAGE_RUNS"] ?? 60), endOnFailure: true }
      )
    ), 120_000)

  it.live("a peer killed after its lock file was damaged is reported lost", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(damageArb, (damage) => Effect.runPromise(killed(damage))),
        { seed: SEED, numRuns: Number(process.env["LOCK_DAMAGE_RUNS"] ?? 60) / 3, endOnFailure: true }
      )
    ), 120_000)
})

/** Payloads `m0`.. a named reader reads from its cursor until idle; how it stopped. */
const readNamed = (dir: string) =>
  Effect.scoped(Effect.gen(function*() {
    const reader = yield* Log.openReader(dir, { name: "r" })
    const got: Array<string> = []
    for (let i = 0; i < 1000; i++) {
      const poll = reader.poll(1 << 20)
      if (IpcError.isIpcError(poll)) return { got, stop: poll }
      for (const entry of poll.entries) {
        if (entry.kind === LogFormat.Kind.data) got.push(text.decode(entry.payload))
        reader.commit(entry.end)
      }
      if (poll._tag === "Corrupt" || poll._tag === "Short") return { got, stop: poll.error }
      if (poll._tag === "Idle") return { got, stop: "idle" as const }
    }
    return assert.fail("the reader never went idle")
  })).pipe(Effect.catch((error) => Effect.succeed({ got: [] as Array<string>, stop: error })))

describe("damaged cursor files (fast-check, fixed seed)", () => {
  it.live(
    "a named reader opens again with a typed error, or reads on from its committed record or before: no gap",
    () =>
      Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc.integer({ min: 1, max: 30 }),
            fc.integer({ min: 0, max: 30 }),
            fc.integer({ min: 0, max: 3 }),
            damageArb,
            (n, read, commits, damage) =>
              Effect.runPromise(Effect.scoped(Effect.gen(function*() {
                const dir = yield* newStream(root)
                const payloads = Array.from({ length: n }, (_, i) => `m${i}`)
                yield* Effect.scoped(Effect.gen(function*() {
                  const writer = yield* Log.openWriter(dir, { segmentBytes: 256 })
                  for (const p of payloads) yield* writer.append(bytes(p))
                }))
                // the reader takes `read` records, committing them over `commits` + 1 writes of its cursor
                const taken = Math.min(read, n)
                yield* Effect.scoped(Effect.gen(function*() {
                  const reader = yield* Log.openReader(dir, { name: "r" })
                  const ends: Array<number> = []
                  for (let i = 0; i < 1000 && ends.length < taken; i++) {
                    const poll = reader.poll(1 << 20)
                    if (IpcError.isIpcError(poll)) return assert.fail(poll.message)
                    for (const e of poll.entries) if (e.kind === LogFormat.Kind.data) ends.push(e.end)
                    if (poll._tag !== "More") break
                  }
                  assert.isAtLeast(ends.length, taken)
                  for (let c = 1; c <= commits + 1 && taken > 0; c++) {
                    reader.commit(ends[Math.ceil((taken * c) / (commits + 1)) - 1]!)
                  }
                }))
                const what = `${n} records, ${taken} read: ${
                  JSON.stringify(damage, (_, v) => v instanceof Uint8Array ? Array.from(v) : v)
                }`
                apply(Log.paths(dir).cursor("r"), damage)
                const again = yield* readNamed(dir)
                if (again.stop !== "idle") {
                  assert.isTrue(IpcError.isIpcError(again.stop), what)
                  assert.include(["Decode", "Corrupt"], again.stop.reason._tag, `${what}: ${again.stop.message}`)
                  assert.deepStrictEqual(again.got, [], what)
                  return
                }
                // at least once: a suffix of what was written, beginning at or before the first record not taken
                assert.isAtLeast(again.got.length, n - taken, `${what}: a gap`)
                assert.deepStrictEqual(again.got, payloads.slice(n - again.got.length), `${what}: in order, whole`)
              })))
          ),
          { seed: SEED, numRuns: Number(process.env["LOCK_DAMAGE_RUNS"] ?? 60) * 3, endOnFailure: true }
        )
      ),
    120_000
  )
})
