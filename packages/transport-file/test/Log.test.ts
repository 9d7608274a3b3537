/**
 * The log in one process: order across segments, durable cursors, space
 * reclaimed once every reader is past it, the size cap, and bad input on
 * disk (a corrupted checksum, a truncated last record, a torn write left by
 * a dead writer, a torn cursor), each a typed error with nothing valid lost.
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import { FileChannel, FileTransport, Inspect, Ipckit, Log, LogFormat } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Libc from "../src/internal/libc.ts"
import { childScript, fresh, newStream as streamIn, node, spawn, tempRoot } from "./helpers.ts"

const root = tempRoot("log")
const text = new TextDecoder()
const bytes = (s: string) => new TextEncoder().encode(s)

/** Reads every whole record available now up to a large one (committing each), as text. */
const drain = (reader: Log.Reader, options: { readonly commit?: boolean } = {}) =>
  Effect.gen(function*() {
    const out: Array<string> = []
    while (true) {
      const poll = reader.poll(1 << 20)
      if (poll instanceof Error) return yield* poll
      for (const entry of poll.entries) {
        out.push(text.decode(entry.payload))
        if (options.commit !== false) reader.commit(entry.end)
      }
      if (poll._tag === "Corrupt" || poll._tag === "Short") return yield* poll.error
      // a large record is read asynchronously (readLarge): stop before it
      if (poll._tag === "Idle" || poll._tag === "Large") return out
    }
  })

const newStream = (readers?: ReadonlyArray<string>) => streamIn(root, readers)

const appendAll = (writer: Log.Writer, messages: ReadonlyArray<string>) =>
  Effect.forEach(messages, (m) => writer.append(bytes(m)), { discard: true })

const range = (n: number, prefix = "m") => Array.from({ length: n }, (_, i) => `${prefix}${i}`)

// registered at FROM by a process whose every lock is held up 500 ms, so that it registers and only then looks
// for its segment; meanwhile records are written and the segment its cursor is in (and those before) removed, as
// a reclaim that read the cursors before it registered does: it starts at the oldest record held then
const registeredAsItsSegmentGoes = (from: "start" | "end" | undefined) =>
  Effect.gen(function*() {
    const dir = yield* newStream([])
    const segmentBytes = 256
    yield* Effect.scoped(Effect.flatMap(Log.openWriter(dir, { segmentBytes }), (w) => appendAll(w, range(100))))
    const segments = () => Fs.readdirSync(dir).filter((name) => name.endsWith(".seg")).toSorted()
    assert.isAbove(segments().length, 3)
    const reader = yield* spawn("/usr/bin/strace", [
      "-f",
      "-qq",
      "-o",
      "/dev/null",
      "-e",
      "inject=flock:delay_enter=500000",
      process.execPath,
      "--conditions=@effect-ipc/source",
      "--disable-warning=ExperimentalWarning",
      childScript,
      "first",
      dir,
      "late",
      ...(from === undefined ? [] : [from])
    ])
    const cursorPath = Path.join(dir, "readers", "late.cursor")
    for (let waited = 0; !Fs.existsSync(cursorPath); waited += 10) {
      if (waited > 20_000) assert.fail("the reader never registered")
      yield* Effect.sleep("10 millis")
    }
    const cursor = LogFormat.decodeCursor(new Uint8Array(Fs.readFileSync(cursorPath)))!.offset
    yield* Effect.scoped(Effect.flatMap(Log.openWriter(dir, { segmentBytes }), (w) => appendAll(w, range(20, "n"))))
    for (const name of segments()) {
      if (Number.parseInt(name.slice(0, 16), 16) <= cursor) Fs.unlinkSync(Path.join(dir, name))
    }
    const oldest = yield* Effect.scoped(Effect.map(Log.openReader(dir, { from: "start" }), (r) => r.poll(1 << 20)))
    if (IpcError.isIpcError(oldest)) return assert.fail(oldest.message)
    const first = text.decode(oldest.entries[0]!.payload)
    assert.strictEqual(yield* reader.waitFor((l) => l.startsWith("first ")), `first ${first}`)
    return first
  }).pipe(Effect.scoped)

describe("Log", () => {
  it.effect("keeps records in order across segments and reclaims each once every reader is past it", () =>
    Effect.gen(function*() {
      const dir = yield* newStream(["a", "b"])
      const writer = yield* Log.openWriter(dir, { segmentBytes: 1024 })
      yield* appendAll(writer, range(1000))
      const segmentsBefore = yield* Log.segments(dir)
      assert.isAbove(segmentsBefore.length, 5)

      const a = yield* Log.openReader(dir, { name: "a" })
      assert.deepStrictEqual(yield* drain(a), range(1000))
      // b has read nothing: every segment is still needed
      yield* Log.reclaim(dir)
      assert.deepStrictEqual(yield* Log.segments(dir), segmentsBefore)

      const b = yield* Log.openReader(dir, { name: "b" })
      assert.deepStrictEqual(yield* drain(b), range(1000))
      yield* Log.reclaim(dir)
      assert.deepStrictEqual(yield* Log.segments(dir), [segmentsBefore[segmentsBefore.length - 1]])
      // and the stream goes on
      yield* appendAll(writer, ["after"])
      assert.deepStrictEqual(yield* drain(a), ["after"])
    }).pipe(Effect.scoped))

  it.effect("a registered reader whose cursor is damaged holds every segment back until it is unregistered", () =>
    Effect.gen(function*() {
      const dir = yield* newStream(["a", "b"])
      const writer = yield* Log.openWriter(dir, { segmentBytes: 1024 })
      yield* appendAll(writer, range(300))
      const a = yield* Log.openReader(dir, { name: "a" })
      assert.deepStrictEqual(yield* drain(a), range(300))
      const segmentsBefore = yield* Log.segments(dir)
      assert.isAbove(segmentsBefore.length, 2)
      // b's cursor overwritten: what b has not read is not known
      Fs.writeFileSync(Path.join(dir, "readers", "b.cursor"), Buffer.alloc(LogFormat.CURSOR_SIZE, 0xab))
      assert.deepStrictEqual((yield* Log.cursors(dir)).map((c) => c.name), ["a"])
      assert.strictEqual(yield* Log.reclaim(dir), 0)
      assert.deepStrictEqual(yield* Log.segments(dir), segmentsBefore)
      const opened = yield* Effect.flip(Log.openReader(dir, { name: "b" }))
      assert.strictEqual(opened.reason._tag, "Decode")
      // unregistered, b holds nothing back
      yield* Log.unregister(dir, "b")
      assert.isAbove(yield* Log.reclaim(dir), 0)
      assert.deepStrictEqual(yield* Log.segments(dir), [segmentsBefore[segmentsBefore.length - 1]])
    }).pipe(Effect.scoped))

  it.effect("with no registered reader, reclaim deletes nothing: a reader registered later at the start reads it all", () =>
    Effect.gen(function*() {
      const dir = yield* newStream([])
      const writer = yield* Log.openWriter(dir, { segmentBytes: 1024 })
      yield* appendAll(writer, range(200))
      const segmentsBefore = yield* Log.segments(dir)
      assert.isAbove(segmentsBefore.length, 2)
      assert.strictEqual(yield* Log.reclaim(dir), 0)
      assert.deepStrictEqual(yield* Log.segments(dir), segmentsBefore)
      yield* Log.register(dir, "late", "start")
      const late = yield* Log.openReader(dir, { name: "late" })
      assert.deepStrictEqual(yield* drain(late), range(200))
    }).pipe(Effect.scoped))

  it.effect("with fileMode 0o644, writer.lock and the cursors are this user's only from creation (others could lock them)", () =>
    Effect.gen(function*() {
      const dir = fresh(root, "modes")
      yield* Log.create(dir, { readers: ["a", "b"], fileMode: 0o644, dirMode: 0o755 })
      yield* Log.register(dir, "c", "start", { fileMode: 0o644 })
      const modeOf = (file: string) => (Fs.statSync(Path.join(dir, file)).mode & 0o777).toString(8)
      const files = Fs.readdirSync(dir, { recursive: true, encoding: "utf8" })
      const locked = files.filter((file) => /\.lock$|\.cursor$/.test(file)).toSorted()
      // writer.lock and the cursors of a, b and c
      assert.isAtLeast(locked.length, 4, String(files))
      assert.deepStrictEqual(locked.map(modeOf), locked.map(() => "600"), String(locked))
      // what is meant to be shared is: the segments
      const segment = files.find((file) => file.endsWith(".seg"))!
      assert.strictEqual(modeOf(segment), "644")
    }))

  it.effect("a reader resumes from its durable cursor: no gaps, no duplicates", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      const writer = yield* Log.openWriter(dir, { segmentBytes: 2048 })
      yield* appendAll(writer, range(300))
      const seen: Array<string> = []
      // five sessions, each reading a part and closing
      for (let session = 0; session < 5; session++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const reader = yield* Log.openReader(dir, { name: "r" })
          for (let taken = 0; taken < 60;) {
            const poll = reader.poll(1 << 20)
            if (poll instanceof Error) return yield* poll
            for (const entry of poll.entries) {
              if (taken === 60) break
              seen.push(text.decode(entry.payload))
              reader.commit(entry.end)
              taken++
            }
          }
        }))
      }
      assert.deepStrictEqual(seen, range(300))
    }).pipe(Effect.scoped))

  it.effect("one process at a time per reader name; an observer keeps no cursor and holds no space", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      yield* Log.openReader(dir, { name: "r" })
      const second = yield* Effect.flip(Log.openReader(dir, { name: "r" }))
      assert.strictEqual(second.reason._tag, "AddressInUse")

      const writer = yield* Log.openWriter(dir, { segmentBytes: 1024 })
      yield* appendAll(writer, range(10, "early"))
      const observer = yield* Log.openReader(dir, { from: "start" })
      assert.deepStrictEqual(yield* drain(observer), range(10, "early"))
      assert.deepStrictEqual((yield* Log.cursors(dir)).map((c) => c.name), ["r"])
    }).pipe(Effect.scoped))

  it.effect("a full stream fails an append with Full (whenFull: fail), loses nothing, and takes more once read", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      const writer = yield* Log.openWriter(dir, { maxBytes: 64 * 1024, segmentBytes: 8 * 1024, whenFull: "fail" })
      const message = "x".repeat(1000)
      let accepted = 0
      let error: unknown
      while (error === undefined) {
        const exit = yield* Effect.exit(writer.append(bytes(`${accepted} ${message}`)))
        if (Exit.isFailure(exit)) error = exit.cause
        else accepted++
      }
      const full = yield* Effect.flip(writer.append(bytes(`again ${message}`)))
      assert.strictEqual(full.reason._tag, "Full")
      assert.match(full.detail, /readers are behind/)
      // the cap holds: about 64 KiB of 1 KiB messages, no more
      assert.isAbove(accepted, 50)
      assert.isAtMost(accepted * 1012, 64 * 1024)
      // every accepted message is there, in order
      const reader = yield* Log.openReader(dir, { name: "r" })
      const got = yield* drain(reader)
      assert.deepStrictEqual(got.map((m) => Number(m.split(" ")[0])), Array.from({ length: accepted }, (_, i) => i))
      // read and reclaimed: there is room again
      yield* writer.append(bytes("room again"))
      assert.deepStrictEqual(yield* drain(reader), ["room again"])
    }).pipe(Effect.scoped))

  // a close record goes past a full stream's cap (a full stream can still be closed): it stays small
  it.effect("a full stream still takes a close record of up to 64 bytes; a larger one is refused, and nothing written", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      const writer = yield* Log.openWriter(dir, { maxBytes: 64 * 1024, segmentBytes: 8 * 1024, whenFull: "fail" })
      while (Exit.isSuccess(yield* Effect.exit(writer.append(bytes("x".repeat(1000)))))) {
        // fill it
      }
      const size = () => Fs.readdirSync(dir).reduce((n, name) => n + Fs.statSync(Path.join(dir, name)).size, 0)
      const before = size()
      const refused = yield* Effect.flip(writer.append(new Uint8Array(65), { kind: LogFormat.Kind.close }))
      assert.strictEqual(refused.reason._tag, "FrameTooLarge")
      assert.strictEqual(size(), before, "nothing was written")
      yield* writer.append(new Uint8Array(64).fill(7), { kind: LogFormat.Kind.close })
      assert.strictEqual(size(), before + LogFormat.RECORD_HEADER + 64)
    }).pipe(Effect.scoped))

  it.live("a full stream makes an append wait (whenFull: wait) until a reader reads; fullTimeout ends with Full", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      const limits = { maxBytes: 32 * 1024, segmentBytes: 4 * 1024 } as const
      const message = bytes("y".repeat(1000))
      // fill it up (a failing writer says exactly when it is full)
      const filler = yield* Log.openWriter(dir, { ...limits, whenFull: "fail" })
      let accepted = 0
      while ((yield* Effect.exit(filler.append(message)))._tag === "Success") accepted++
      assert.isAbove(accepted, 10)
      assert.isAtMost(accepted * 1012, 32 * 1024)
      // a waiting writer's append waits ...
      const writer = yield* Log.openWriter(dir, limits)
      const waiting = yield* Effect.forkChild(writer.append(message))
      // a turn of the event loop: its first attempt (synchronous) has found no room
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      const reader = yield* Log.openReader(dir, { name: "r" })
      assert.strictEqual((yield* drain(reader)).length, accepted, "it was not appended while full")
      yield* Log.reclaim(dir)
      // ... and goes on by itself once readers make room (woken by the cursor change; bounded against a hang)
      yield* Fiber.join(waiting).pipe(Effect.timeout("10 seconds"))
      assert.strictEqual((yield* drain(reader)).length, 1)

      const bounded = yield* Log.openWriter(dir, {
        maxBytes: 32 * 1024,
        segmentBytes: 4 * 1024,
        fullTimeout: "200 millis"
      })
      const error = yield* Effect.flip(Effect.forever(bounded.append(message)))
      assert.strictEqual(error.reason._tag, "Full")
    }).pipe(Effect.scoped))

  it.effect("a corrupted checksum: the records before it arrive, then a Corrupt error; skipping goes on after it", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      const writer = yield* Log.openWriter(dir)
      yield* appendAll(writer, ["one", "two", "three", "four"])
      // flip a payload byte of "two"
      const segment = Log.paths(dir).segment(0)
      const file = Fs.readFileSync(segment)
      const at = file.indexOf("two")
      file[at] = "T".charCodeAt(0)
      Fs.writeFileSync(segment, file)

      const reader = yield* Log.openReader(dir, { name: "r" })
      const delivered: Array<string> = []
      const poll = reader.poll(1 << 20)
      if (poll instanceof Error) return yield* poll
      for (const entry of poll.entries) delivered.push(text.decode(entry.payload))
      assert.strictEqual(poll._tag, "Corrupt")
      assert.deepStrictEqual(delivered, ["one"])
      if (poll._tag === "Corrupt") {
        assert.strictEqual(poll.error.reason._tag, "Corrupt")
        assert.match(poll.error.detail, /checksum/)
      }
      const verified = yield* Effect.flip(Log.verify(dir))
      assert.strictEqual(verified.reason._tag, "Corrupt")
      // nothing valid is lost: the records after the corrupt one are still there
      assert.isAbove(reader.skipCorrupt() as number, 0)
      assert.deepStrictEqual(yield* drain(reader), ["three", "four"])
    }).pipe(Effect.scoped))

  it.effect("a committed last record cut short: never delivered, Corrupt for reader and verify, never cut", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      yield* Effect.scoped(Effect.gen(function*() {
        const writer = yield* Log.openWriter(dir)
        yield* appendAll(writer, ["one", "two", "three-is-long-enough"])
      }))
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      const segment = Log.paths(dir).segment(0)
      const cut = Fs.statSync(segment).size - 5
      Fs.truncateSync(segment, cut)

      const reader = yield* Log.openReader(dir, { name: "r" })
      const error = yield* Effect.flip(drain(reader))
      assert.strictEqual(error.reason._tag, "Corrupt")
      assert.strictEqual(reader.committed(), cut - 12 - 15, "one and two were delivered")
      const verified = yield* Effect.flip(Log.verify(dir))
      assert.strictEqual(verified.reason._tag, "Corrupt")
      assert.match(verified.detail, /committed record is cut short/)

      // it was committed: not a torn tail; the next writer refuses rather than cut it
      const writer = yield* Log.openWriter(dir)
      assert.strictEqual((yield* Effect.flip(writer.append(bytes("four")))).reason._tag, "Corrupt")
      assert.strictEqual(Fs.statSync(segment).size, cut)
    }).pipe(Effect.scoped))

  it.effect("a writer that died mid-append (dirty state, half a record) is repaired by the next one", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      const writer = yield* Log.openWriter(dir)
      yield* appendAll(writer, ["a", "b"])
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      // what a kill -9 in the middle of a write leaves: a dirty state and a partial record
      const p = Log.paths(dir)
      const state = LogFormat.decodeWriterState(Fs.readFileSync(p.writerLock))!
      Fs.writeFileSync(p.writerLock, LogFormat.encodeWriterState({ ...state, clean: false, pid: 999_999 }))
      const half = LogFormat.encodeRecord(LogFormat.Kind.data, bytes("a partial record that never finished"))
      Fs.appendFileSync(p.segment(0), half.subarray(0, 20))

      const reader = yield* Log.openReader(dir, { name: "r" })
      assert.deepStrictEqual(yield* drain(reader), ["a", "b"])
      assert.strictEqual(reader.pendingBytes(), 20)
      const next = yield* Log.openWriter(dir)
      yield* next.append(bytes("c"))
      assert.deepStrictEqual(yield* drain(reader), ["c"])
      assert.strictEqual((yield* Log.verify(dir)).records, 3)
    }).pipe(Effect.scoped))

  it.live("durability: fsync reads back the same, large records too (Durability.test.ts counts the syncs)", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      const writer = yield* Log.openWriter(dir, { durability: "fsync", segmentBytes: 64 * 1024 })
      yield* appendAll(writer, range(20))
      yield* writer.append(new Uint8Array(300 * 1024).fill(7))
      const reader = yield* Log.openReader(dir, { name: "r" })
      const small = yield* drain(reader)
      assert.deepStrictEqual(small, range(20))
      const large = yield* Effect.callback<Log.Entry | undefined, Error>((resume) =>
        reader.readLarge((r) => resume(r instanceof Error ? Effect.fail(r) : Effect.succeed(r)))
      )
      assert.strictEqual(large?.payload.byteLength, 300 * 1024)
    }).pipe(Effect.scoped))

  // a record past the read chunk (256 KiB) is read apart, asynchronously: its checksum is checked there too
  it.live("a large record with a flipped payload byte: Corrupt, never delivered", () =>
    Effect.gen(function*() {
      const dir = yield* newStream()
      const writer = yield* Log.openWriter(dir)
      yield* appendAll(writer, ["before"])
      yield* writer.append(new Uint8Array(300 * 1024).fill(7))
      const segment = Log.paths(dir).segment(0)
      const file = Fs.readFileSync(segment)
      file[file.length - 1000] = 8
      Fs.writeFileSync(segment, file)
      const reader = yield* Log.openReader(dir, { name: "r" })
      assert.deepStrictEqual(yield* drain(reader), ["before"])
      const large = yield* Effect.callback<Log.Entry | undefined | Error>((resume) =>
        reader.readLarge((r) => resume(Effect.succeed(r)))
      )
      assert.instanceOf(large, IpcError.IpcError, "the damaged record was delivered")
      if (large instanceof IpcError.IpcError) {
        assert.strictEqual(large.reason._tag, "Corrupt")
        assert.match(large.detail, /checksum/)
      }
    }).pipe(Effect.scoped))

  it.effect("a torn cursor write falls back to the other slot", () =>
    Effect.sync(() => {
      const file = new Uint8Array(LogFormat.CURSOR_SIZE)
      file.set(LogFormat.encodeCursorSlot(100, 1), 16)
      file.set(LogFormat.encodeCursorSlot(200, 2), 0)
      assert.deepStrictEqual(LogFormat.decodeCursor(file), { offset: 200, seq: 2 })
      // slot 0 half-written: its checksum fails, slot 1 holds
      file[3] = 0xff
      assert.deepStrictEqual(LogFormat.decodeCursor(file), { offset: 100, seq: 1 })
    }))

  it.effect("creating a stream is atomic and idempotent; files 0600, directories 0700", () =>
    Effect.gen(function*() {
      const dir = fresh(root, "perm")
      for (let i = 0; i < 5; i++) yield* Log.create(dir, { readers: ["x", "y"] })
      assert.strictEqual(Fs.statSync(dir).mode & 0o777, 0o700)
      assert.strictEqual(Fs.statSync(Log.paths(dir).readers).mode & 0o777, 0o700)
      for (const file of [Log.paths(dir).segment(0), Log.paths(dir).writerLock, Log.paths(dir).cursor("x")]) {
        assert.strictEqual(Fs.statSync(file).mode & 0o777, 0o600, file)
      }
      assert.deepStrictEqual(Fs.readdirSync(Log.paths(dir).readers).toSorted(), ["x.cursor", "y.cursor"])
    }))
})

// a reclaim reads the cursors and then deletes segments: a reader registered between the two was not counted, and
// the segment it starts in could go (a new reader "at the start" got Corrupt, "segment ... is missing", on an
// undamaged stream: 1555 of 27997 opens in 15 s beside a writer reclaiming 4 KiB segments)
describe("registering a reader while the writer reclaims", () => {
  // a reclaim that found the registry held deleted nothing: a writer whose readers kept up said Full (or, by
  // default, waited) for as long as a stopped process held it
  it.live(
    "a registry held by a stopped process never holds a reclaim or a registration back",
    () =>
      Effect.gen(function*() {
        const dir = yield* newStream(["a"])
        const writer = yield* Log.openWriter(dir, { segmentBytes: 1024 })
        yield* appendAll(writer, range(100))
        const a = yield* Log.openReader(dir, { name: "a" })
        yield* drain(a)
        const holder = yield* spawn("flock", [
          "--exclusive",
          Path.join(dir, "readers", "registry.lock"),
          "-c",
          "echo held; sleep 1"
        ])
        yield* holder.waitFor((l) => l === "held")
        assert.isAbove(yield* Log.reclaim(dir), 0)
        yield* Log.register(dir, "late", "start")
        assert.include((yield* Log.cursors(dir)).map((c) => c.name), "late")
        assert.strictEqual(yield* holder.exit, 0)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a reclaim held up after reading the cursors stops once a reader registers: that reader never finds its next segment gone",
    () =>
      Effect.gen(function*() {
        const dir = yield* newStream(["a"])
        yield* Effect.scoped(
          Effect.flatMap(Log.openWriter(dir, { segmentBytes: 256 }), (w) => appendAll(w, range(200)))
        )
        // reader a has read everything: every segment but the last may go
        yield* Effect.scoped(Effect.flatMap(Log.openReader(dir, { name: "a" }), (a) => drain(a)))
        const segments = Fs.readdirSync(dir).filter((name) => name.endsWith(".seg")).length
        assert.isAbove(segments, 6)
        // another process reclaims, each removal held up 300 ms (as a process descheduled under load is)
        const reclaimer = yield* spawn("/usr/bin/strace", [
          "-f",
          "-qq",
          "-o",
          "/dev/null",
          "-e",
          "inject=unlink,unlinkat:delay_enter=300000",
          process.execPath,
          "--conditions=@effect-ipc/source",
          "--disable-warning=ExperimentalWarning",
          childScript,
          "reclaim",
          dir
        ])
        yield* reclaimer.waitFor((l) => l === "reclaiming")
        yield* Effect.sleep("150 millis")
        // registered at the start meanwhile: the registry waits 20 ms for the reclaim, then goes on without it
        const late = yield* Log.openReader(dir, { name: "late", from: "start" })
        // what is there once it is registered: from now on the reclaim removes at most the one segment whose removal
        // it had begun, however late this process came to register (a fixed count failed on a loaded machine)
        const registered = Fs.readdirSync(dir).filter((name) => name.endsWith(".seg")).length
        // the old reclaim went on removing a segment every 300 ms, the one after this reader's among them
        yield* Effect.sleep("1200 millis")
        const got = yield* drain(late)
        assert.strictEqual(got.at(-1), "m199")
        yield* reclaimer.waitFor((l) => l.startsWith("freed"))
        assert.isAtLeast(Fs.readdirSync(dir).filter((name) => name.endsWith(".seg")).length, registered - 1)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a reader registered at the start (the default) whose segment is reclaimed as it opens starts at the oldest record held",
    () =>
      Effect.gen(function*() {
        for (const from of [undefined, "start"] as const) {
          assert.match(yield* registeredAsItsSegmentGoes(from), /^m/)
        }
      }),
    60_000
  )

  it.live(
    "a reader registered at the end whose segment is reclaimed as it opens reads what was written after it registered",
    () => Effect.map(registeredAsItsSegmentGoes("end"), (first) => assert.match(first, /^n/)),
    30_000
  )

  it.live(
    "readers registered at the start beside a writer that reclaims all the time read from the oldest record, never Corrupt",
    () =>
      Effect.gen(function*() {
        const dir = yield* newStream(["a"])
        const writer = yield* node(["reclaim-forever", dir])
        yield* writer.waitFor((l) => l === "writing")
        const deadline = Date.now() + 2000
        let opens = 0
        while (Date.now() < deadline) {
          const name = `r${opens++}`
          const poll = yield* Effect.scoped(
            Effect.map(Log.openReader(dir, { name, from: "start" }), (r) => r.poll(1 << 20))
          )
          if (IpcError.isIpcError(poll)) assert.fail(`open ${opens}: ${poll.message}`)
          if (poll._tag === "Corrupt") assert.fail(`open ${opens}: ${poll.error.message}`)
          yield* Log.unregister(dir, name)
        }
        assert.isAbove(opens, 50)
      }).pipe(Effect.scoped),
    30_000
  )
})

// `file inspect` (and `Log.stats`) probe each cursor's lock, shared, for microseconds: a reader opened in that
// moment failed AddressInUse, "in use by another process", with no other reader anywhere
describe("a reader opened while a prober shares its cursor's lock", () => {
  it.live(
    "opens once the prober lets go; a reader held in another process is still AddressInUse",
    () =>
      Effect.gen(function*() {
        const dir = yield* newStream(["w"])
        const writer = yield* Log.openWriter(dir)
        yield* appendAll(writer, ["one"])
        const cursor = Log.paths(dir).cursor("w")
        // a prober's shared lock, let go the moment the reader has met it: the reader's first take runs as it is
        // forked, meets the probe, and waits 5 ms to try again. Not a timed prober process (a shell's
        // "sleep 0.05"): on a loaded machine such a holder outlasts the 200 ms of retries (AddressInUse; the
        // Python twin of this test failed so)
        const probe = Fs.openSync(cursor, "r")
        assert.strictEqual(Libc.tryLock(probe, "shared"), true)
        yield* Effect.scoped(Effect.gen(function*() {
          const opening = yield* Effect.forkChild(Log.openReader(dir, { name: "w" }), { startImmediately: true })
          assert.isUndefined(opening.pollUnsafe(), "the reader waits while the probe holds its cursor's lock")
          assert.isUndefined(Libc.unlock(probe))
          Fs.closeSync(probe)
          const reader = yield* Fiber.join(opening)
          assert.deepStrictEqual(yield* drain(reader), ["one"])
        }))
        // held exclusively, as a reader in another process holds it, for longer than the retries
        const holder = yield* spawn("flock", ["--exclusive", cursor, "-c", "echo held; sleep 2"])
        yield* holder.waitFor((l) => l === "held")
        const refused = yield* Effect.flip(Effect.scoped(Log.openReader(dir, { name: "w" })))
        assert.strictEqual(refused.reason._tag, "AddressInUse", refused.message)
      }).pipe(Effect.scoped),
    30_000
  )
})

// a lock file its holder removes as it lets go (`release` with `remove`) may be opened by one taker and made
// again by another before the first one's flock: the first then holds a file no path names, beside the second
describe("a lock file removed and made again between a taker's open and its flock", () => {
  it.live("the taker looks again and finds it held: busy, never a second holder", () =>
    Effect.gen(function*() {
      const path = Path.join(fresh(root), "role.lock")
      Fs.mkdirSync(Path.dirname(path))
      // the child's flock is held up 1.5 s (strace), after it made and opened the file
      const child = yield* spawn("/usr/bin/strace", [
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=flock",
        "-e",
        "inject=flock:delay_enter=1500000",
        process.execPath,
        "--conditions=@effect-ipc/source",
        "--disable-warning=ExperimentalWarning",
        childScript,
        "take-lock",
        path
      ], { env: { NODE_DISABLE_COMPILE_CACHE: "1" } })
      while (!Fs.existsSync(path)) yield* Effect.sleep("5 millis")
      // meanwhile another taker: the file removed, made again and locked
      Fs.rmSync(path)
      const fd = Fs.openSync(path, Fs.constants.O_RDWR | Fs.constants.O_CREAT | Fs.constants.O_EXCL, 0o600)
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.closeSync(fd)))
      assert.strictEqual(Libc.tryLock(fd, "exclusive"), true)
      assert.strictEqual(yield* child.waitFor((line) => line === "busy" || line === "held"), "busy")
      assert.strictEqual(Fs.readFileSync(path, "utf8"), "", "the child wrote nothing in the lock it does not hold")
    }).pipe(Effect.scoped), 30_000)
})

describe("what a caller without types may pass", () => {
  it.effect("readers as a string (not a list) and a from other than start or end are InvalidOption, nothing made", () =>
    Effect.gen(function*() {
      const dir = fresh(root, "s")
      const readers = yield* Effect.flip(Log.create(dir, { readers: "abc" as never }))
      assert.strictEqual(readers.reason._tag, "InvalidOption")
      assert.match(readers.detail, /^readers is a list of reader names, each a string \(got a string\)$/)
      assert.isFalse(Fs.existsSync(dir))
      const stream = yield* streamIn(root)
      for (const from of ["begin", undefined]) {
        const error = yield* Effect.flip(Log.register(stream, "late", from as never))
        assert.strictEqual(error.reason._tag, "InvalidOption")
        assert.match(error.detail, /^from ("begin"|undefined) is not "start" nor "end"$/)
      }
      assert.deepStrictEqual(Fs.readdirSync(Path.join(stream, "readers")), ["r.cursor"])
    }))

  it.effect("options that are not an object: InvalidOption saying so, never a TypeError defect", () =>
    Effect.gen(function*() {
      for (const given of [null, "fast", 42]) {
        const bad = given as never
        const stream = yield* streamIn(root)
        const errors = [
          yield* Effect.flip(Log.create(fresh(root, "s"), bad)),
          yield* Effect.flip(Log.register(stream, "late", "end", bad)),
          yield* Effect.flip(FileChannel.create(fresh(root, "c"), bad)),
          yield* Effect.flip(Ipckit.initialize(fresh(root, "i"), bad)),
          yield* Effect.flip(FileTransport.build(bad)),
          yield* Effect.flip(Effect.scoped(FileTransport.make(bad).listen(`file://${fresh(root, "l")}`)))
        ]
        for (const error of errors) {
          assert.strictEqual(error.reason._tag, "InvalidOption", error.detail)
          assert.match(error.detail, /^the options are not an object \(got (null|a string|a number)\)$/)
        }
      }
    }))

  it.effect("cursors and reclaim of a missing stream: NotFound, as segments, never an empty answer", () =>
    Effect.gen(function*() {
      const missing = fresh(root, "no-such-stream")
      for (const error of [yield* Effect.flip(Log.cursors(missing)), yield* Effect.flip(Log.reclaim(missing))]) {
        assert.strictEqual(error.reason._tag, "NotFound", error.message)
      }
    }))

  it.effect("a directory that is not a path (null, a number, \"\"): InvalidAddress, never a defect nor Open or Read", () =>
    Effect.gen(function*() {
      for (const given of [null, 42, ""]) {
        const dir = given as never
        const errors = [
          yield* Effect.flip(Log.create(dir)),
          yield* Effect.flip(Log.stats(dir)),
          yield* Effect.flip(Log.segments(dir)),
          yield* Effect.flip(Log.verify(dir)),
          yield* Effect.flip(Log.register(dir, "r", "start")),
          yield* Effect.flip(Log.unregister(dir, "r")),
          yield* Effect.flip(Log.cursors(dir)),
          yield* Effect.flip(Log.reclaim(dir)),
          yield* Effect.flip(Effect.scoped(Log.openReader(dir, { name: "r" }))),
          yield* Effect.flip(FileChannel.create(dir)),
          yield* Effect.flip(Inspect.describe(dir)),
          yield* Effect.flip(Ipckit.initialize(dir))
        ]
        for (const error of errors) {
          assert.strictEqual(error.reason._tag, "InvalidAddress", error.detail)
          assert.match(error.detail, /^a (stream |channel )?directory is a path, not (null|a number|"")$/)
        }
      }
    }))
})
