/**
 * Damage to committed records (issue 9, defect 3): a reader never delivers
 * past a gap, damage is a typed `Corrupt` error naming the segment and the
 * offset (for the reader, a channel, `Log.verify` and `file inspect
 * --verify`), and a writer's recovery cuts only its own torn tail, never
 * committed records. Then property-based damage (fast-check, fixed seed):
 * truncate at every record boundary and inside records, flip every header
 * byte; each run ends with exactly the committed records in order, or with
 * those before the damage and a `Corrupt` error; never a hang or a gap.
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import { FileChannel, Log, LogFormat } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import fc from "fast-check"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Zlib from "node:zlib"
import { fresh, newStream as streamIn, node, readAll, tempRoot } from "./helpers.ts"

/** `effect-ipc file inspect DIR --verify`, run to its end. */
const inspectVerify = (dir: string) =>
  ChildProcess.spawnSync(
    process.execPath,
    [
      "--conditions=@effect-ipc/source",
      "--disable-warning=ExperimentalWarning",
      Path.join(import.meta.dirname, "..", "..", "cli", "src", "bin.ts"),
      "file",
      "inspect",
      dir,
      "--verify"
    ],
    { encoding: "utf8", timeout: 30_000 }
  )

const root = tempRoot("damage")
const text = new TextDecoder()
const bytes = (s: string) => new TextEncoder().encode(s)

const newStream = () => streamIn(root)

/** A fresh stream whose writer appended m1..m`n` (with `options`) and closed. */
const written = (n: number, options?: Parameters<typeof Log.openWriter>[1]) =>
  Effect.tap(newStream(), (dir) =>
    Effect.scoped(Effect.gen(function*() {
      const writer = yield* Log.openWriter(dir, options)
      for (let i = 1; i <= n; i++) yield* writer.append(bytes(`m${i}`))
    })))

/** Makes the writer state of `dir` a dead writer's (dirty, a pid that is not running), with `changes`. */
const markDead = (dir: string, changes: Partial<LogFormat.WriterState> = {}) => {
  const lock = Log.paths(dir).writerLock
  const state = LogFormat.decodeWriterState(Fs.readFileSync(lock))!
  Fs.writeFileSync(lock, LogFormat.encodeWriterState({ ...state, clean: false, pid: 999_999, ...changes }))
}

/** The error a writer opened on `dir` fails its first append with, having cut nothing from segment 0. */
const refusedUncut = (dir: string) =>
  Effect.gen(function*() {
    const segment = Log.paths(dir).segment(0)
    const size = Fs.statSync(segment).size
    const writer = yield* Log.openWriter(dir)
    const error = yield* Effect.flip(writer.append(bytes("m8")))
    assert.strictEqual(Fs.statSync(segment).size, size, "nothing was cut")
    return error
  })

/** Lets the writer release its lock (it keeps it for the rest of the event-loop turn). */
const nextTurn = Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))

/** What a reader got: the payloads in order, then how it stopped. */
interface Drained {
  readonly got: Array<string>
  readonly stop: "idle" | IpcError.IpcError
}

/** Polls `reader` until it is idle or fails (large records read too); commits as it goes. */
const drain = (reader: Log.Reader) =>
  Effect.gen(function*() {
    const got: Array<string> = []
    while (true) {
      const poll = reader.poll(1 << 20)
      if (IpcError.isIpcError(poll)) return { got, stop: poll } satisfies Drained
      for (const entry of poll.entries) {
        if (entry.kind === LogFormat.Kind.data) got.push(text.decode(entry.payload))
        reader.commit(entry.end)
      }
      if (poll._tag === "Corrupt" || poll._tag === "Short") return { got, stop: poll.error } satisfies Drained
      if (poll._tag === "Idle") return { got, stop: "idle" } satisfies Drained
      if (poll._tag === "Large") {
        const entry = yield* Effect.callback<Log.Entry | undefined | IpcError.IpcError>((resume) =>
          reader.readLarge((r) => resume(Effect.succeed(r)))
        )
        if (entry === undefined) return { got, stop: "idle" } satisfies Drained
        if (IpcError.isIpcError(entry)) return { got, stop: entry } satisfies Drained
        got.push(text.decode(entry.payload))
        reader.commit(entry.end)
      }
    }
  })

/** A fresh reader of `dir` from the start (an observer: keeps no cursor), drained. */
const readFresh = (dir: string) =>
  Effect.scoped(Effect.flatMap(Log.openReader(dir, { from: "start" }), drain)).pipe(
    // a damaged first segment header: the reader cannot even open
    Effect.catch((error) => Effect.succeed<Drained>({ got: [], stop: error }))
  )

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `m${from + i}`)

/** The file offsets of the records of a segment (after its header), and their ends. */
const recordsOf = (segment: string): Array<{ at: number; end: number }> => {
  const file = Fs.readFileSync(segment)
  const out: Array<{ at: number; end: number }> = []
  for (let at = LogFormat.SEGMENT_HEADER; at + LogFormat.RECORD_HEADER <= file.byteLength;) {
    const end = at + LogFormat.RECORD_HEADER + file.readUInt32BE(at + 4)
    out.push({ at, end })
    at = end
  }
  return out
}

const assertCorrupt = (stop: Drained["stop"], segment: number, offset: number) => {
  assert.notStrictEqual(stop, "idle", "the reader stopped at the damage with an error")
  if (stop === "idle") return
  assert.strictEqual(stop.reason._tag, "Corrupt", stop.message)
  assert.include(stop.detail, `segment ${LogFormat.segmentName(segment)}`)
  assert.include(stop.detail, `offset ${offset}`)
}

/** A channel in a fresh directory whose backend sent m1..m30 and closed, in segments of 200 bytes (more than two). */
const thirtySent = (name: string) =>
  Effect.gen(function*() {
    const dir = fresh(root, name)
    const options = { segmentBytes: 200 }
    yield* Effect.scoped(Effect.gen(function*() {
      const backend = yield* FileChannel.backend(dir, options)
      for (let i = 1; i <= 30; i++) yield* backend.send(bytes(`m${i}`))
    }))
    const stream = Path.join(dir, "backend_to_frontend")
    const segments = Fs.readdirSync(stream).filter((file) => file.endsWith(".seg")).toSorted()
    assert.isAbove(segments.length, 2)
    return { dir, options, stream, segments }
  })

describe("damage to committed records (issue 9)", () => {
  it.effect(
    "a segment before the last cut inside a record, with the writer's state emptied, damaged or gone: Corrupt, not an endless wait",
    () =>
      Effect.gen(function*() {
        for (const state of ["emptied", "damaged", "removed"] as const) {
          const dir = yield* newStream()
          yield* Effect.scoped(Effect.gen(function*() {
            const writer = yield* Log.openWriter(dir, { segmentBytes: 1024, maxBytes: 1 << 20 })
            for (let i = 1; i <= 40; i++) yield* writer.append(bytes(`m${i}:${"x".repeat(100)}`))
          }))
          const bases = Fs.readdirSync(dir).filter((f) => f.endsWith(".seg")).toSorted()
          assert.isAtLeast(bases.length, 3)
          const second = Path.join(dir, bases[1]!)
          const base = LogFormat.parseSegmentName(bases[1]!)!
          const records = recordsOf(second)
          // the segment's last data record (the one before its end-of-segment record) cut short
          const last = records.at(-2)!
          Fs.truncateSync(second, last.end - 50)
          const lock = Log.paths(dir).writerLock
          if (state === "emptied") Fs.truncateSync(lock, 0)
          else if (state === "damaged") {
            Fs.writeFileSync(
              lock,
              Fs.readFileSync(lock).map((b, i) => i < 8 ? b ^ 0xff : b)
            )
          } else Fs.rmSync(lock)
          const read = yield* readFresh(dir)
          assert.isAbove(read.got.length, 0, state)
          assertCorrupt(read.stop, base, base + last.at)
          if (read.stop !== "idle") assert.include(read.stop.detail, "follows with records", state)
          if (state !== "removed") {
            // verify and `file inspect --verify` say so too (with the state gone, verify fails earlier)
            const verified = yield* Effect.flip(Log.verify(dir))
            assert.strictEqual(verified.reason._tag, "Corrupt", `${state}: ${verified.message}`)
            assert.include(verified.detail, "follows a segment with no end-of-segment record", state)
            const inspected = inspectVerify(dir)
            assert.notStrictEqual(inspected.status, 0, `${state}: ${inspected.stdout}`)
          }
        }
      }).pipe(Effect.scoped),
    30_000
  )

  it.effect(
    "a record completed while the reader looks for later segments (writer state not yet in this segment) is read, not Corrupt",
    () =>
      Effect.gen(function*() {
        const dir = yield* newStream()
        yield* Effect.scoped(Effect.gen(function*() {
          const writer = yield* Log.openWriter(dir, { segmentBytes: 1024, maxBytes: 1 << 20 })
          for (let i = 1; i <= 40; i++) yield* writer.append(bytes(`m${i}:${"x".repeat(100)}`))
        }))
        const bases = Fs.readdirSync(dir).filter((f) => f.endsWith(".seg")).toSorted()
        const second = Path.join(dir, bases[1]!)
        const whole = Fs.readFileSync(second)
        const last = recordsOf(second).at(-2)!
        // as a reader sees a segment whose writer is inside its last record: the record not all there yet,
        // the writer's state (emptied: as between two of its writes) not placing the writer in this segment
        Fs.truncateSync(second, last.end - 50)
        Fs.truncateSync(Log.paths(dir).writerLock, 0)
        const read = yield* Effect.scoped(Effect.gen(function*() {
          const reader = yield* Log.openReader(dir, { from: "start" })
          // the writer ends the record, links the next segment and writes there while the reader looks for
          // later segments: the window between the reader's look at this segment and its verdict
          const impl = reader as unknown as { finishedBy: () => number | undefined }
          const finishedBy = impl.finishedBy.bind(reader)
          let completed = false
          impl.finishedBy = () => {
            if (!completed) {
              completed = true
              Fs.writeFileSync(second, whole)
            }
            return finishedBy()
          }
          const drained = yield* drain(reader)
          assert.isTrue(completed, "the reader looked for later segments")
          return drained
        }))
        assert.strictEqual(read.stop, "idle", read.stop === "idle" ? "" : read.stop.message)
        assert.deepStrictEqual(read.got.map((m) => m.slice(0, m.indexOf(":"))), range(1, 40))
      }).pipe(Effect.scoped)
  )

  it.effect("a segment cut inside a committed record while the writer lives: 1..149, then Corrupt; never 301..", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      const writer = yield* Log.openWriter(dir)
      for (let i = 1; i <= 300; i++) yield* writer.append(bytes(`m${i}`))
      yield* nextTurn
      const segment = Log.paths(dir).segment(0)
      const records = recordsOf(segment)
      const cutAt = records[149]!.at + 7 // inside m150's header
      Fs.truncateSync(segment, cutAt)
      // the live writer must not take the committed records for its own torn tail
      const refused = yield* Effect.flip(writer.append(bytes("m301")))
      assert.strictEqual(refused.reason._tag, "Corrupt", refused.message)
      assert.strictEqual(Fs.statSync(segment).size, cutAt, "recovery cut nothing")
      const again = yield* Effect.flip(writer.append(bytes("m302")))
      assert.strictEqual(again.reason._tag, "Corrupt")
      const read = yield* readFresh(dir)
      assert.deepStrictEqual(read.got, range(1, 149))
      assertCorrupt(read.stop, 0, records[149]!.at)
      const verified = yield* Effect.flip(Log.verify(dir))
      assert.strictEqual(verified.reason._tag, "Corrupt")
      assert.include(verified.detail, `offset ${records[149]!.at}`)
    }).pipe(Effect.scoped))

  it.live(
    "across processes: a live writer process's committed records cut; it refuses to go on, readers get Corrupt",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root, "c")
        const backend = yield* FileChannel.backend(dir)
        const echo = yield* node(["echo", dir, "frontend"])
        yield* echo.waitFor((l) => l === "open")
        for (let i = 1; i <= 300; i++) yield* backend.send(bytes(`m${i}`))
        for (let i = 1; i <= 300; i++) assert.strictEqual(text.decode(yield* backend.receive), `m${i}`)
        // the echo process is alive and idle; held still (SIGSTOP) while it is sent more, its stream
        // loses the middle of m150. (Sent after the cut, the sends could fail: the backend's reader,
        // woken by the cut, may find its input corrupt first, and the channel fails as a whole.)
        yield* echo.signal("SIGSTOP")
        for (let i = 301; i <= 350; i++) yield* backend.send(bytes(`m${i}`))
        const stream = Path.join(dir, "frontend_to_backend")
        const segment = Path.join(stream, LogFormat.segmentName(0))
        const records = recordsOf(segment)
        Fs.truncateSync(segment, records[149]!.at + 7)
        yield* echo.signal("SIGCONT")
        // its next append finds committed records missing: it fails (and exits) instead of cutting them
        const code = yield* echo.exit.pipe(Effect.timeout("20 seconds"))
        assert.notStrictEqual(code, 0)
        assert.match(echo.stderr(), /Corrupt/)
        assert.strictEqual(Fs.statSync(segment).size, records[149]!.at + 7, "nothing was cut, nothing appended")
        // a later reader: 1..149, then Corrupt; never 301..350
        const read = yield* readFresh(stream)
        assert.deepStrictEqual(read.got, range(1, 149))
        assertCorrupt(read.stop, 0, records[149]!.at)
        // and the backend, which had read past the cut, is told too
        const lost = yield* Effect.flip(backend.receive).pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(lost.reason._tag, "Corrupt")
      }).pipe(Effect.scoped),
    60_000
  )

  it.effect("a segment cut at a record boundary (committed records lost): Corrupt, and the writer refuses", () =>
    Effect.gen(function*() {
      const dir = yield* written(20)
      const segment = Log.paths(dir).segment(0)
      const records = recordsOf(segment)
      Fs.truncateSync(segment, records[10]!.at)
      const read = yield* readFresh(dir)
      assert.deepStrictEqual(read.got, range(1, 10))
      assertCorrupt(read.stop, 0, records[10]!.at)
      const writer = yield* Log.openWriter(dir)
      assert.strictEqual((yield* Effect.flip(writer.append(bytes("m21")))).reason._tag, "Corrupt")
      assert.deepStrictEqual((yield* readFresh(dir)).got, range(1, 10))
    }).pipe(Effect.scoped))

  it.effect("a file cut below a reader's committed cursor: Corrupt, not an endless wait", () =>
    Effect.gen(function*() {
      const dir = yield* written(20)
      yield* Effect.scoped(Effect.flatMap(Log.openReader(dir, { name: "r" }), drain))
      const segment = Log.paths(dir).segment(0)
      const records = recordsOf(segment)
      Fs.truncateSync(segment, records[10]!.at)
      const read = yield* Effect.scoped(Effect.flatMap(Log.openReader(dir, { name: "r" }), drain))
      assert.deepStrictEqual(read.got, [])
      assert.notStrictEqual(read.stop, "idle")
      if (read.stop !== "idle") assert.strictEqual(read.stop.reason._tag, "Corrupt")
    }).pipe(Effect.scoped))

  for (
    const [what, damage] of [
      ["a length byte made larger than the file", (file: Buffer, at: number) => void (file[at + 4] = 0x7f)],
      ["a length byte made smaller", (file: Buffer, at: number) => void (file[at + 7] = 0)],
      ["a marker byte set to zero", (file: Buffer, at: number) => void (file[at] = 0)],
      ["a marker byte changed", (file: Buffer, at: number) => void (file[at] = 0x41)]
    ] as const
  ) {
    it.effect(`${what}: the records before it, then Corrupt with segment and offset; no stall`, () =>
      Effect.gen(function*() {
        const dir = yield* written(50)
        const segment = Log.paths(dir).segment(0)
        const records = recordsOf(segment)
        const file = Fs.readFileSync(segment)
        damage(file, records[20]!.at)
        Fs.writeFileSync(segment, file)
        const read = yield* readFresh(dir)
        assert.deepStrictEqual(read.got, range(1, 20))
        assertCorrupt(read.stop, 0, records[20]!.at)
        const verified = yield* Effect.flip(Log.verify(dir))
        assert.strictEqual(verified.reason._tag, "Corrupt")
        assert.include(verified.detail, `segment ${LogFormat.segmentName(0)}`)
        assert.include(verified.detail, `offset ${records[20]!.at}`)
      }).pipe(Effect.scoped))
  }

  it.live(
    "a channel whose peer's committed record lost its length: receive fails with Corrupt, no hang",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root, "c")
        yield* Effect.scoped(Effect.gen(function*() {
          const backend = yield* FileChannel.backend(dir)
          for (let i = 1; i <= 10; i++) yield* backend.send(bytes(`m${i}`))
        }))
        const segment = Path.join(dir, "backend_to_frontend", LogFormat.segmentName(0))
        const records = recordsOf(segment)
        const file = Fs.readFileSync(segment)
        file[records[5]!.at + 4] = 0x7f
        Fs.writeFileSync(segment, file)
        const frontend = yield* FileChannel.frontend(dir)
        for (let i = 1; i <= 5; i++) assert.strictEqual(text.decode(yield* frontend.receive), `m${i}`)
        const error = yield* Effect.flip(frontend.receive).pipe(Effect.timeout("10 seconds"))
        assert.strictEqual(error.reason._tag, "Corrupt")
        assert.include(error.detail, `offset ${records[5]!.at}`)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "the oldest segment deleted under unread messages: Corrupt (not the later messages), for the channel and verify; skip goes on",
    () =>
      Effect.gen(function*() {
        const { dir, options, stream, segments } = yield* thirtySent("oldest")
        Fs.rmSync(Path.join(stream, segments[0]!))
        // the frontend's cursor is in the deleted segment: the records it held are gone, and the reader says so
        // rather than going on with the later ones (a gap no one would see)
        const error = yield* Effect.scoped(Effect.flatMap(
          FileChannel.frontend(dir, options),
          (frontend) => Effect.flip(frontend.receive).pipe(Effect.timeout("10 seconds"))
        ))
        assert.strictEqual(error.reason._tag, "Corrupt", error.message)
        assert.include(error.detail, "the segment that holds it is missing")
        assert.include(error.detail, "reader frontend")
        const verified = yield* Effect.flip(Log.verify(stream))
        assert.strictEqual(verified.reason._tag, "Corrupt")
        assert.include(verified.detail, "reader frontend")
        // an explicit choice of a gap goes on with the oldest record held
        const skipping = yield* Effect.scoped(Effect.flatMap(
          FileChannel.frontend(dir, { ...options, onCorrupt: "skip" }),
          (frontend) => frontend.receive.pipe(Effect.timeout("10 seconds"))
        ))
        const firstHeld = recordsOf(Path.join(stream, segments[1]!))[0]!
        const held = Fs.readFileSync(Path.join(stream, segments[1]!)).subarray(
          firstHeld.at + LogFormat.RECORD_HEADER,
          firstHeld.end
        )
        assert.strictEqual(text.decode(skipping), text.decode(held))
        assert.notStrictEqual(text.decode(skipping), "m1")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "the last segment deleted with writer.lock emptied: the records before, then Corrupt (it waited for good)",
    () =>
      Effect.gen(function*() {
        const { dir, options, stream, segments } = yield* thirtySent("lastmissing")
        // the segment before still links to it; with no readable writer state no writer can ever go on (each
        // refuses the stream), so the link is damage, not a segment on its way
        Fs.rmSync(Path.join(stream, segments.at(-1)!))
        Fs.truncateSync(Path.join(stream, "writer.lock"), 0)
        const got: Array<string> = []
        const error = yield* Effect.scoped(Effect.flatMap(
          FileChannel.frontend(dir, options),
          (frontend) =>
            Effect.flip(Effect.forever(Effect.map(frontend.receive, (message) => got.push(text.decode(message)))))
              .pipe(Effect.timeout("10 seconds"))
        ))
        assert.strictEqual(error.reason._tag, "Corrupt", error.message)
        assert.include(error.detail, `segment ${segments.at(-1)!} is missing`)
        assert.isAbove(got.length, 0)
        assert.deepStrictEqual(got, range(1, got.length))
        assert.strictEqual((yield* Effect.flip(Log.verify(stream))).reason._tag, "Corrupt")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "every segment deleted: Corrupt for the reader, verify and file inspect --verify (verify called such a stream sound)",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root, "nosegments")
        yield* Effect.scoped(Effect.gen(function*() {
          const backend = yield* FileChannel.backend(dir)
          for (let i = 1; i <= 30; i++) yield* backend.send(bytes(`m${i}`))
        }))
        const stream = Path.join(dir, "backend_to_frontend")
        for (const file of Fs.readdirSync(stream).filter((name) => name.endsWith(".seg"))) {
          Fs.rmSync(Path.join(stream, file))
        }
        const verified = yield* Effect.flip(Log.verify(stream))
        assert.strictEqual(verified.reason._tag, "Corrupt", verified.message)
        assert.include(verified.detail, "no segments left")
        // the reader says the same, as it opens (it said NotFound, as if there had never been a stream)
        const received = yield* Effect.flip(Effect.scoped(Effect.flatMap(
          FileChannel.frontend(dir),
          (frontend) => frontend.receive.pipe(Effect.timeout("10 seconds"), Effect.orDie)
        )))
        assert.strictEqual(received.reason._tag, "Corrupt", received.message)
        const inspected = inspectVerify(dir)
        assert.notStrictEqual(inspected.status, 0, inspected.stdout)
        assert.match(inspected.stdout, /BAD backend_to_frontend: /)
        assert.include(inspected.stdout + inspected.stderr, "no segments left")
      }).pipe(Effect.scoped),
    30_000
  )

  it.effect("a named reader that has read past reclaimed segments opens without a gap; a new one starts at the oldest held", () =>
    Effect.gen(function*() {
      const dir = yield* written(30, { segmentBytes: 200 })
      // r reads everything, then the segments it is past are reclaimed (as a writer short of room does)
      const read = yield* Effect.scoped(Effect.flatMap(Log.openReader(dir, { name: "r" }), drain))
      assert.deepStrictEqual(read.got, range(1, 30))
      assert.isAbove(yield* Log.reclaim(dir), 0)
      const again = yield* Effect.scoped(Effect.flatMap(Log.openReader(dir, { name: "r" }), drain))
      assert.deepStrictEqual(again, { got: [], stop: "idle" })
      // a reader registered now starts at the oldest record still held, with no gap reported
      const late = yield* Effect.scoped(Effect.flatMap(Log.openReader(dir, { name: "late", from: "start" }), drain))
      assert.strictEqual(late.stop, "idle")
      assert.isAbove(late.got.length, 0)
      assert.strictEqual(late.got.at(-1), "m30")
      assert.deepStrictEqual(yield* Effect.map(Log.verify(dir), (v) => v.torn), 0)
    }).pipe(Effect.scoped))

  it.effect("a next segment that cannot be opened (a link in its place) fails the read as it is: not damage to skip", () =>
    Effect.gen(function*() {
      const dir = yield* written(30, { segmentBytes: 200 })
      const segments = Fs.readdirSync(dir).filter((f) => f.endsWith(".seg")).toSorted()
      assert.isAtLeast(segments.length, 3)
      // segment 1 replaced by a link to its own contents: segments are opened without following links
      const second = Path.join(dir, segments[1]!)
      Fs.renameSync(second, `${second}.moved`)
      Fs.symlinkSync(`${second}.moved`, second)
      const reader = yield* Log.openReader(dir, { name: "r" })
      const got: Array<string> = []
      while (true) {
        const poll = reader.poll(1 << 20)
        if (IpcError.isIpcError(poll)) {
          assert.strictEqual(poll.reason._tag, "PermissionDenied", poll.message)
          break
        }
        for (const entry of poll.entries) got.push(text.decode(entry.payload))
        assert.notStrictEqual(poll._tag, "Corrupt", poll._tag === "Corrupt" ? poll.error.message : "")
        assert.strictEqual(poll._tag, "More", `after ${got.length} records`)
      }
      // every record of the first segment, and nothing from a later one
      assert.deepStrictEqual(got, range(1, recordsOf(Log.paths(dir).segment(0)).length - 1))
    }).pipe(Effect.scoped))

  it.effect("a skip past the last record of a segment never linked on waits there: a stray next segment is no place to go", () =>
    Effect.gen(function*() {
      const dir = yield* written(5)
      const first = Log.paths(dir).segment(0)
      const file = Fs.readFileSync(first)
      file[file.lastIndexOf("m5") + 1] ^= 0xff
      Fs.writeFileSync(first, file)
      // a segment made for a rotation whose writer died before linking it: a header, nothing else
      Fs.writeFileSync(Log.paths(dir).segment(file.byteLength), LogFormat.encodeSegmentHeader(file.byteLength))
      const reader = yield* Log.openReader(dir, { name: "r" })
      const before = yield* Effect.flip(readAll(reader))
      assert.strictEqual(before.reason._tag, "Corrupt")
      assert.isAbove(reader.skipCorrupt() as number, 0)
      // the next writer goes on in the first segment
      yield* Effect.scoped(Effect.flatMap(Log.openWriter(dir), (w) => w.append(bytes("after"))))
      // the old reader had moved into the stray segment, and never saw "after"
      assert.deepStrictEqual((yield* readAll(reader)).map((p) => text.decode(p)), ["after"])
    }).pipe(Effect.scoped))

  it.effect("a named reader whose cursor is at a reclaimed segment's end-of-segment record has read it all: no gap", () =>
    Effect.gen(function*() {
      const dir = yield* written(30, { segmentBytes: 200 })
      const bases = Fs.readdirSync(dir).filter((f) => f.endsWith(".seg")).toSorted()
      assert.isAtLeast(bases.length, 3)
      const eos = LogFormat.parseSegmentName(bases[1]!)! - LogFormat.RECORD_HEADER
      // r commits every data record of segment 0, up to its end-of-segment record, and no further
      const kept = recordsOf(Log.paths(dir).segment(0)).length - 1
      yield* Effect.scoped(Effect.gen(function*() {
        const reader = yield* Log.openReader(dir, { name: "r" })
        const poll = reader.poll(1 << 20)
        assert.isFalse(IpcError.isIpcError(poll))
        if (IpcError.isIpcError(poll)) return
        for (const entry of poll.entries) if (entry.end <= eos) reader.commit(entry.end)
      }))
      assert.strictEqual((yield* Log.cursors(dir)).find((c) => c.name === "r")?.offset, eos)
      assert.isAbove(yield* Log.reclaim(dir), 0)
      assert.isFalse(Fs.existsSync(Log.paths(dir).segment(0)))
      const again = yield* Effect.scoped(Effect.flatMap(Log.openReader(dir, { name: "r" }), drain))
      assert.strictEqual(again.stop, "idle", again.stop === "idle" ? "" : again.stop.message)
      assert.deepStrictEqual(again.got, range(kept + 1, 30))
      yield* Log.verify(dir)
    }).pipe(Effect.scoped))

  it.effect("recovery cuts a dead writer's torn tail (dirty state, a record reaching past the end of the file)", () =>
    Effect.gen(function*() {
      const dir = yield* written(5)
      // what a kill in the middle of a write leaves: a dirty state, whole records after its end, half a record
      const p = Log.paths(dir)
      markDead(dir)
      Fs.appendFileSync(p.segment(0), LogFormat.encodeRecord(LogFormat.Kind.data, bytes("m6")))
      Fs.appendFileSync(
        p.segment(0),
        LogFormat.encodeRecord(LogFormat.Kind.data, bytes("never finished")).subarray(0, 17)
      )
      const before = yield* readFresh(dir)
      assert.deepStrictEqual(before.got, range(1, 6))
      assert.strictEqual(before.stop, "idle", "a torn tail is not damage: nothing more yet")
      const verified = yield* Log.verify(dir)
      assert.strictEqual(verified.records, 6)
      assert.strictEqual(verified.torn, 17)
      const writer = yield* Log.openWriter(dir)
      yield* writer.append(bytes("m7"))
      assert.match(writer.takeRepairs().join(), /torn record/)
      assert.deepStrictEqual((yield* readFresh(dir)).got, range(1, 7))
    }).pipe(Effect.scoped))

  it.effect("recovery refuses damage past a dead writer's end that is not a torn tail (a complete bad record)", () =>
    Effect.gen(function*() {
      const dir = yield* written(5)
      const p = Log.paths(dir)
      markDead(dir)
      const bad = LogFormat.encodeRecord(LogFormat.Kind.data, bytes("m6"))
      bad[bad.byteLength - 1] ^= 0xff
      Fs.appendFileSync(p.segment(0), bad)
      Fs.appendFileSync(p.segment(0), LogFormat.encodeRecord(LogFormat.Kind.data, bytes("m7")))
      const error = yield* refusedUncut(dir)
      assert.strictEqual(error.reason._tag, "Corrupt")
    }).pipe(Effect.scoped))

  it.effect("recovery refuses a dead writer's record whose length runs over a whole record (not a torn tail)", () =>
    Effect.gen(function*() {
      const dir = yield* written(5)
      const p = Log.paths(dir)
      markDead(dir)
      // m6 with a damaged length reaching just past the end of the file, a whole m7 inside what it claims
      const m6 = LogFormat.encodeRecord(LogFormat.Kind.data, bytes("m6"))
      const m7 = LogFormat.encodeRecord(LogFormat.Kind.data, bytes("m7"))
      new DataView(m6.buffer, m6.byteOffset).setUint32(4, m6.byteLength + m7.byteLength + 1 - LogFormat.RECORD_HEADER)
      Fs.appendFileSync(p.segment(0), m6)
      Fs.appendFileSync(p.segment(0), m7)
      const error = yield* refusedUncut(dir)
      assert.strictEqual(error.reason._tag, "Corrupt", error.message)
      assert.include(error.detail, "runs over a whole record")
    }).pipe(Effect.scoped))

  it.effect("recovery refuses later segments a dead writer's chain does not link to, and deletes none", () =>
    Effect.gen(function*() {
      const dir = yield* written(30, { segmentBytes: 200 })
      const p = Log.paths(dir)
      const bases = Fs.readdirSync(dir).filter((f) => f.endsWith(".seg")).toSorted()
      assert.isAtLeast(bases.length, 3)
      // segment 0 cut just before its end-of-segment record; a dirty state ending there
      const eos = recordsOf(p.segment(0)).at(-1)!
      Fs.truncateSync(p.segment(0), eos.at)
      markDead(dir, { segment: 0, end: eos.at })
      const sizes = bases.map((f) => Fs.statSync(Path.join(dir, f)).size)
      const writer = yield* Log.openWriter(dir, { segmentBytes: 200 })
      const error = yield* Effect.flip(writer.append(bytes("mX")))
      assert.strictEqual(error.reason._tag, "Corrupt", error.message)
      assert.include(error.detail, "follows a segment that has no end-of-segment record")
      assert.deepStrictEqual(Fs.readdirSync(dir).filter((f) => f.endsWith(".seg")).toSorted(), bases)
      assert.deepStrictEqual(bases.map((f) => Fs.statSync(Path.join(dir, f)).size), sizes, "nothing was cut")
    }).pipe(Effect.scoped))

  for (
    const [what, damage, why] of [
      ["a bad marker byte", (record: Uint8Array) => record[0] = 0x00, "bad marker byte 0x00"],
      ["an unknown record kind", (record: Uint8Array) => record[2] = 3, "unknown record kind 3"],
      ["an unknown record version", (record: Uint8Array) => record[1] = 2, "unknown record version 2"]
    ] as const
  ) {
    it.effect(`a committed record with ${what} (checksum intact): m1..m3, then Corrupt; never a skip to m4`, () =>
      Effect.gen(function*() {
        const dir = yield* written(3)
        const p = Log.paths(dir)
        const at = Fs.statSync(p.segment(0)).size
        // the header damaged, its checksum made to match: only the header checks can catch it
        const bad = LogFormat.encodeRecord(LogFormat.Kind.data, bytes("bad"))
        damage(bad)
        const view = new DataView(bad.buffer, bad.byteOffset)
        view.setUint32(
          8,
          Zlib.crc32(bad.subarray(LogFormat.RECORD_HEADER), Zlib.crc32(bad.subarray(0, 8)))
        )
        Fs.appendFileSync(p.segment(0), bad)
        Fs.appendFileSync(p.segment(0), LogFormat.encodeRecord(LogFormat.Kind.data, bytes("m4")))
        // acknowledged: a clean writer state whose end covers both
        const state = LogFormat.decodeWriterState(Fs.readFileSync(p.writerLock))!
        Fs.writeFileSync(
          p.writerLock,
          LogFormat.encodeWriterState({ ...state, clean: true, end: Fs.statSync(p.segment(0)).size })
        )
        const read = yield* readFresh(dir)
        assert.deepStrictEqual(read.got, range(1, 3))
        assertCorrupt(read.stop, 0, at)
        if (read.stop !== "idle") assert.include(read.stop.detail, why)
        const verified = yield* Effect.flip(Log.verify(dir))
        assert.strictEqual(verified.reason._tag, "Corrupt", verified.message)
        assert.include(verified.detail, why)
      }).pipe(Effect.scoped))
  }

  it.effect("with no registered reader nothing is reclaimed: a full stream fails with Full and keeps m1", () =>
    Effect.gen(function*() {
      const dir = yield* streamIn(root, [])
      const writer = yield* Log.openWriter(dir, { segmentBytes: 1024, maxBytes: 8192, whenFull: "fail" })
      let sent = 0
      let full: IpcError.IpcError | undefined
      while (full === undefined && sent < 1000) {
        const exit = yield* Effect.exit(writer.append(bytes(`m${sent + 1}:${"x".repeat(100)}`)))
        if (exit._tag === "Success") sent++
        else full = yield* Effect.flip(Effect.failCause(exit.cause))
      }
      assert.isDefined(full, "the stream filled up")
      assert.strictEqual(full!.reason._tag, "Full", full!.message)
      assert.isTrue(Fs.existsSync(Log.paths(dir).segment(0)), "the oldest segment is kept")
      assert.strictEqual(yield* Log.reclaim(dir), 0)
      yield* nextTurn
      const late = yield* Effect.scoped(Effect.flatMap(Log.openReader(dir, { name: "late", from: "start" }), drain))
      assert.deepStrictEqual(late.got.map((m) => m.slice(0, m.indexOf(":"))), range(1, sent))
    }).pipe(Effect.scoped))

  it.live(
    "file inspect --verify: Corrupt with segment and offset, and a non-zero exit status",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root, "c")
        yield* Effect.scoped(Effect.gen(function*() {
          const backend = yield* FileChannel.backend(dir)
          for (let i = 1; i <= 10; i++) yield* backend.send(bytes(`m${i}`))
        }))
        const verify = () => inspectVerify(dir)
        const sound = verify()
        assert.strictEqual(sound.status, 0, sound.stderr)
        const segment = Path.join(dir, "backend_to_frontend", LogFormat.segmentName(0))
        const records = recordsOf(segment)
        const file = Fs.readFileSync(segment)
        file[records[3]!.at + 4] = 0x7f
        Fs.writeFileSync(segment, file)
        const damaged = verify()
        assert.notStrictEqual(damaged.status, 0)
        assert.match(damaged.stdout, /BAD backend_to_frontend: .*segment 0000000000000000\.seg/)
        assert.include(damaged.stdout + damaged.stderr, `offset ${records[3]!.at}`)
        assert.match(damaged.stderr, /Corrupt/)
      }),
    60_000
  )
})

// ---- property-based damage ----------------------------------------------------------------------

/** One record on disk: its segment, where it starts in the file, its whole size, and its kind. */
interface Placed {
  readonly base: number
  readonly at: number
  readonly size: number
  readonly kind: number
  /** Index among the data records (undefined for end-of-segment and close records). */
  readonly index: number | undefined
}

/** The segments of the stream `dir` (for the synchronous helpers below). */
const segmentsOf = (dir: string): ReadonlyArray<number> => Effect.runSync(Log.segments(dir))

/** Every record of the stream `dir`, following the segment chain. */
const layout = (dir: string): Array<Placed> => {
  const out: Array<Placed> = []
  let index = 0
  for (const base of segmentsOf(dir)) {
    const file = Fs.readFileSync(Log.paths(dir).segment(base))
    for (let at = LogFormat.SEGMENT_HEADER; at + LogFormat.RECORD_HEADER <= file.byteLength;) {
      const size = LogFormat.RECORD_HEADER + file.readUInt32BE(at + 4)
      const kind = file[at + 2]!
      out.push({ base, at, size, kind, index: kind === LogFormat.Kind.data ? index++ : undefined })
      at += size
    }
  }
  return out
}

/** Damage to one record: cut the file at `offset` into it, or xor a byte of it with `xor`. */
type Damage =
  | { readonly _tag: "Truncate"; readonly record: number; readonly offset: number }
  | { readonly _tag: "Flip"; readonly record: number; readonly byte: number; readonly xor: number }
  | { readonly _tag: "SegmentHeader"; readonly byte: number; readonly xor: number }

const damageArb: fc.Arbitrary<Damage> = fc.oneof(
  // every record boundary (offset 0) and every position inside a record
  fc.record({ _tag: fc.constant("Truncate" as const), record: fc.nat(200), offset: fc.nat(120) }),
  // every header field (marker 0, version 1, kind 2, reserved 3, length 4-7, crc 8-11) and the payload
  fc.record({
    _tag: fc.constant("Flip" as const),
    record: fc.nat(200),
    byte: fc.oneof(fc.integer({ min: 0, max: 11 }), fc.nat(120)),
    xor: fc.integer({ min: 1, max: 255 })
  }),
  fc.record({ _tag: fc.constant("SegmentHeader" as const), byte: fc.nat(15), xor: fc.integer({ min: 1, max: 255 }) })
)

interface Case {
  readonly sizes: ReadonlyArray<number>
  readonly damage: Damage
  /** Dirty: the last writer died; the writer state's end is at this data record (the rest is its last burst). */
  readonly diedAfter: number | undefined
  /** The writer that wrote the records stays open and appends after the damage (else a new one). */
  readonly live: boolean
}

const caseArb: fc.Arbitrary<Case> = fc.record({
  sizes: fc.array(fc.nat(100), { minLength: 1, maxLength: 24 }),
  damage: damageArb,
  diedAfter: fc.option(fc.nat(24), { nil: undefined }),
  live: fc.boolean()
})

/** Applies `damage` to the stream `dir` laid out as `records`; the first data record it touches. */
const applyDamage = (dir: string, records: ReadonlyArray<Placed>, damage: Damage): number => {
  const dataCount = records.filter((r) => r.index !== undefined).length
  if (damage._tag === "SegmentHeader") {
    const bases = segmentsOf(dir)
    const base = bases[damage.byte % bases.length]!
    const path = Log.paths(dir).segment(base)
    const file = Fs.readFileSync(path)
    file[damage.byte] ^= damage.xor
    Fs.writeFileSync(path, file)
    return records.find((r) => r.base === base && r.index !== undefined)?.index ?? dataCount
  }
  const target = records[damage.record % records.length]!
  const path = Log.paths(dir).segment(target.base)
  // the first data record at or after the target (an end-of-segment record leads to the next segment's first)
  const touched =
    records.find((r) =>
      r.index !== undefined && (r.base > target.base || (r.base === target.base && r.at >= target.at))
    )
      ?.index ?? dataCount
  if (damage._tag === "Truncate") {
    Fs.truncateSync(path, target.at + (damage.offset % target.size))
    return touched
  }
  const file = Fs.readFileSync(path)
  file[target.at + (damage.byte % target.size)] ^= damage.xor
  Fs.writeFileSync(path, file)
  return touched
}

/** Asserts `got` is exactly the first `got.length` of `expected`. */
const assertPrefix = (got: ReadonlyArray<string>, expected: ReadonlyArray<string>, what: string) =>
  assert.deepStrictEqual(got, expected.slice(0, got.length), `${what}: in order, no gap, nothing invented`)

const bounded = <A, E>(effect: Effect.Effect<A, E>, what: string) =>
  Effect.timeoutOrElse(effect, { duration: "5 seconds", orElse: () => Effect.die(new Error(`${what} hung`)) })

/** One run: write, (maybe die), damage, read, reopen a writer, append, read again. */
const runCase = (input: Case) =>
  Effect.gen(function*() {
    const dir = yield* newStream()
    const payloads = input.sizes.map((n, i) => `m${i}:${"x".repeat(n)}`)
    // closed with the run's scope
    const first = yield* Log.openWriter(dir, { segmentBytes: 300 })
    for (const p of payloads) yield* first.append(bytes(p))
    yield* nextTurn
    let records = layout(dir)
    // the data records the writer state says are committed
    let committedCount = payloads.length
    if (input.diedAfter !== undefined) {
      // a writer that died: its state is dirty, its end where its last burst began (within the last segment)
      const last = records[records.length - 1]!.base
      const candidates = records.filter((r) => r.base === last && r.index !== undefined)
      const from = candidates.length === 0 ? undefined : candidates[input.diedAfter % candidates.length]!
      const end = from === undefined ? last + LogFormat.SEGMENT_HEADER : from.base + from.at
      committedCount = from?.index ?? payloads.length
      markDead(dir, { end })
    }
    records = layout(dir)
    const touched = applyDamage(dir, records, input.damage)
    const before = new Map(
      segmentsOf(dir).map((b) => [b, Fs.readFileSync(Log.paths(dir).segment(b))])
    )

    // a reader: exactly a prefix; it stops idle only when nothing committed is missing, else Corrupt
    const read = yield* bounded(readFresh(dir), "the reader")
    assertPrefix(read.got, payloads, "reader")
    if (read.stop === "idle") {
      assert.isAtLeast(read.got.length, Math.min(touched, committedCount), "idle only past the committed records")
      if (input.diedAfter === undefined) assert.strictEqual(read.got.length, payloads.length, "idle only when whole")
    } else {
      assert.strictEqual(read.stop.reason._tag, "Corrupt", read.stop.message)
      assert.match(read.stop.detail, /offset \d+ .* in segment [0-9a-f]{16}\.seg/)
    }

    // the live writer, or a new one: appends after everything that is there, or refuses with Corrupt and
    // changes nothing
    const appended = yield* bounded(
      input.live
        ? Effect.exit(first.append(bytes("new")))
        : Effect.scoped(
          Effect.flatMap(Log.openWriter(dir, { segmentBytes: 300 }), (w) => Effect.exit(w.append(bytes("new"))))
        ),
      "the writer"
    )
    yield* nextTurn
    if (appended._tag === "Failure") {
      const error = appended.cause.reasons.find((r) => r._tag === "Fail")
      assert.isDefined(error, String(appended.cause))
      if (error?._tag === "Fail") assert.strictEqual(error.error.reason._tag, "Corrupt", error.error.message)
      for (const [b, bytesBefore] of before) {
        assert.isTrue(bytesBefore.equals(Fs.readFileSync(Log.paths(dir).segment(b))), "a refusing writer cut nothing")
      }
    }
    const second = yield* bounded(readFresh(dir), "the second reader")
    const kept = second.got.filter((m) => m !== "new")
    assertPrefix(kept, payloads, "after reopening")
    if (second.got.includes("new")) {
      assert.strictEqual(second.got[second.got.length - 1], "new")
      // nothing before the damage is ever lost; with a clean state, nothing at all
      assert.isAtLeast(kept.length, Math.min(touched, payloads.length), "no committed record was cut")
      if (input.diedAfter === undefined) assert.strictEqual(kept.length, payloads.length)
      assert.isAtLeast(kept.length, committedCount)
    } else if (second.stop !== "idle") {
      assert.strictEqual(second.stop.reason._tag, "Corrupt", second.stop.message)
    }
  }).pipe(Effect.scoped)

describe("property: damaged logs end with exact data or Corrupt (fast-check, fixed seed)", () => {
  it.live(
    "truncation at every boundary and inside records, and flipped header bytes, for readers and writers",
    () =>
      Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(caseArb, (input) => Effect.runPromise(runCase(input))),
          {
            seed: Number(process.env["DAMAGE_SEED"] ?? 0x5eed_0009),
            numRuns: Number(process.env["DAMAGE_RUNS"] ?? 300),
            endOnFailure: true
          }
        )
      ),
    120_000
  )

  it.live("every record boundary and every header byte of a fixed log, exhaustively", () =>
    Effect.gen(function*() {
      const sizes = [0, 5, 40, 100, 3, 60, 90, 1, 70]
      const records = sizes.length + 3 // data records and end-of-segment records (segmentBytes 300)
      for (let record = 0; record < records; record++) {
        for (let offset = 0; offset < LogFormat.RECORD_HEADER + 2; offset++) {
          yield* runCase({ sizes, damage: { _tag: "Truncate", record, offset }, diedAfter: undefined, live: true })
          yield* runCase({
            sizes,
            damage: { _tag: "Flip", record, byte: offset, xor: 0x80 },
            diedAfter: undefined,
            live: true
          })
          yield* runCase({
            sizes,
            damage: { _tag: "Flip", record, byte: offset, xor: 0x01 },
            diedAfter: 4,
            live: false
          })
        }
      }
    }), 120_000)
})

describe("a damaged writer state is never trusted", () => {
  // the last record's payload ends in bytes shaped like a record's start (a marker, the version, a kind), 8 and 1
  // bytes before the end: an end moved back onto them by damage (bit 3 or bit 0 of the end) looked like a torn
  // record, and the writer cut it
  const shaped = new Uint8Array([
    ...bytes("m5:"),
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    LogFormat.MARKER,
    LogFormat.VERSION,
    0,
    0,
    0,
    0,
    0,
    LogFormat.MARKER
  ])

  it.live(
    "every bit of writer.lock's state before the pid flipped: the next writer refuses the stream (Corrupt), cuts nothing",
    () =>
      Effect.gen(function*() {
        // the pid (bytes 28..32) only informs, and the check leaves it out: damage there changes nothing
        for (let byte = 0; byte < 28; byte++) {
          for (let bit = 0; bit < 8; bit++) {
            const dir = yield* written(4)
            yield* Effect.scoped(Effect.flatMap(Log.openWriter(dir), (writer) => writer.append(shaped)))
            const lock = Log.paths(dir).writerLock
            const state = Fs.readFileSync(lock)
            state[byte] ^= 1 << bit
            Fs.writeFileSync(lock, state)
            const segment = Log.paths(dir).segment(0)
            const size = Fs.statSync(segment).size
            const appended = yield* Effect.exit(
              Effect.scoped(Effect.flatMap(Log.openWriter(dir), (writer) => writer.append(bytes("after"))))
            )
            const where = `bit ${bit} of byte ${byte}`
            assert.strictEqual(appended._tag, "Failure", `${where}: a writer went on from a damaged state`)
            if (appended._tag === "Failure") {
              const error = Cause.squash(appended.cause) as IpcError.IpcError
              assert.strictEqual(error.reason._tag, "Corrupt", `${where}: ${error.message}`)
            }
            assert.strictEqual(Fs.statSync(segment).size, size, `${where}: nothing was cut`)
            const read = yield* readFresh(dir)
            assert.deepStrictEqual(read.got, [...range(1, 4), text.decode(shaped)], where)
          }
        }
        const dir = yield* written(2)
        const lock = Log.paths(dir).writerLock
        const state = Fs.readFileSync(lock)
        state[30] ^= 0xff
        Fs.writeFileSync(lock, state)
        yield* Effect.scoped(Effect.flatMap(Log.openWriter(dir), (writer) => writer.append(bytes("m3"))))
        assert.deepStrictEqual((yield* readFresh(dir)).got, range(1, 3), "a damaged pid: the writer went on")
      }),
    120_000
  )

  // a reader registered at the end (and `file tail`) started at the oldest record: every message held came as new
  it.effect("a reader from the end is refused (Corrupt); one from the start reads everything", () =>
    Effect.gen(function*() {
      const dir = yield* written(3)
      const lock = Log.paths(dir).writerLock
      const state = Fs.readFileSync(lock)
      state[21] ^= 0x10
      Fs.writeFileSync(lock, state)
      for (const opened of [Log.openReader(dir, { from: "end" }), Log.openReader(dir, { name: "late", from: "end" })]) {
        const error = yield* Effect.flip(Effect.scoped(opened))
        assert.strictEqual(error.reason._tag, "Corrupt", error.message)
        assert.include(error.detail, "writer.lock")
      }
      assert.isFalse(Fs.existsSync(Log.paths(dir).cursor("late")), "no cursor was left")
      assert.deepStrictEqual((yield* readFresh(dir)).got, range(1, 3))
    }))

  it.effect("a state written before the check existed (its check bytes 0) is taken as it was", () =>
    Effect.gen(function*() {
      const dir = yield* written(3)
      const lock = Log.paths(dir).writerLock
      const state = Fs.readFileSync(lock)
      assert.notStrictEqual(state.readUIntBE(9, 3), 0, "a writer writes the check")
      state.fill(0, 9, 12)
      Fs.writeFileSync(lock, state)
      const writer = yield* Log.openWriter(dir)
      yield* writer.append(bytes("m4"))
      yield* nextTurn
      assert.deepStrictEqual(writer.takeRepairs(), [])
      assert.deepStrictEqual((yield* readFresh(dir)).got, range(1, 4))
    }).pipe(Effect.scoped))
})

describe("kinds a user may append", () => {
  for (const kind of [LogFormat.Kind.endOfSegment, 7]) {
    it.effect(`kind ${kind} is refused (InvalidOption) and nothing is written`, () =>
      Effect.gen(function*() {
        const dir = yield* written(2)
        const size = Fs.statSync(Log.paths(dir).segment(0)).size
        const writer = yield* Log.openWriter(dir)
        const error = yield* Effect.flip(writer.append(bytes("x"), { kind: kind as Log.AppendKind }))
        assert.strictEqual(error.reason._tag, "InvalidOption")
        assert.match(error.detail, new RegExp(`not kind ${kind}`))
        yield* writer.append(bytes("m3"))
        yield* nextTurn
        assert.strictEqual(Fs.statSync(Log.paths(dir).segment(0)).size, size + LogFormat.RECORD_HEADER + 2)
        assert.deepStrictEqual((yield* readFresh(dir)).got, range(1, 3))
      }).pipe(Effect.scoped))
  }
})

describe("an end-of-segment record the writer went past", () => {
  it.effect("links a segment that is missing while the writer went on in this one: m1, m2, then Corrupt; no wait", () =>
    Effect.gen(function*() {
      const dir = yield* written(2)
      const p = Log.paths(dir)
      // what a foreign writer (or damage) leaves: an end-of-segment record in the middle, records after it
      Fs.appendFileSync(p.segment(0), LogFormat.encodeRecord(LogFormat.Kind.endOfSegment))
      Fs.appendFileSync(p.segment(0), LogFormat.encodeRecord(LogFormat.Kind.data, bytes("m3")))
      const state = LogFormat.decodeWriterState(Fs.readFileSync(p.writerLock))!
      Fs.writeFileSync(
        p.writerLock,
        LogFormat.encodeWriterState({ ...state, end: Fs.statSync(p.segment(0)).size })
      )
      const read = yield* readFresh(dir)
      assert.deepStrictEqual(read.got, range(1, 2))
      assert.notStrictEqual(read.stop, "idle", "the reader waited for a segment nothing will create")
      if (read.stop !== "idle") {
        assert.strictEqual(read.stop.reason._tag, "Corrupt")
        assert.match(read.stop.detail, /which is missing, though the writer went on in this segment/)
      }
    }))
})
