/**
 * What the durability claims rest on, proven on real processes and a real
 * file system (issue 15):
 *
 * - `durability: "fsync"` syncs: fdatasync calls on the segment are counted
 *   under `strace`; the default makes none.
 * - A writer killed inside a large write, every time: `prlimit --fsize`
 *   makes the kernel stop its `pwritev` part way through a record (a short
 *   write, at a byte the test chooses), and `strace` injects SIGKILL when the
 *   writer goes on with the rest. The torn record is on disk; readers never
 *   see it, and the next writer cuts it and goes on.
 * - A real full disk: a 256 KiB tmpfs. Appends fail with `NoSpace`
 *   (`ENOSPC`), nothing committed is lost, a reader never sees a torn record,
 *   and the writer goes on once space is freed.
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import { Log, LogFormat } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Result from "effect/Result"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { record } from "./fixtures/records.ts"
import { childScript, newStream as streamIn, readAll, run, spawn, tempRoot, tmpfs } from "./helpers.ts"

const root = tempRoot("durability")
const text = new TextDecoder()
const strace = "/usr/bin/strace"
const nodeArgs = ["--conditions=@effect-ipc/source", "--disable-warning=ExperimentalWarning", childScript]

const newStream = () => streamIn(root)

/** `tag:i` of each payload, each checked byte for byte against what `record` makes. */
const names = (payloads: ReadonlyArray<Uint8Array>) =>
  payloads.map((p) => {
    const [tag, i] = text.decode(p.subarray(0, 40)).split(":") as [string, string]
    assert.isTrue(Buffer.from(record(tag, Number(i), p.byteLength)).equals(Buffer.from(p)), `${tag}:${i} is intact`)
    return `${tag}:${i}`
  })

const seq = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `${tag}:${i}`)

/**
 * The fsync / fdatasync calls on segment files in an strace log (`-y` prints each descriptor's path), those
 * another thread's call interrupted ("<unfinished ...>", their result on a line of its own) included.
 */
const segmentSyncs = (log: string) =>
  log.split("\n").filter((l) => /\b(fsync|fdatasync)\(\d+<[^>]*\.seg>(\)\s+=\s+0| <unfinished)/.test(l))
    .length

/**
 * Runs a writer process under strace (`-y`, the calls in `trace`) appending `records` of `size` bytes to a
 * fresh stream, checks they are read back whole, and returns the stream and strace's log.
 */
const tracedWriter = (trace: string, records: number, size: number, durability: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const dir = yield* newStream()
    const log = Path.join(root, `strace-${Path.basename(dir)}.log`)
    const child = yield* run(spawn(strace, [
      "-f",
      "-qq",
      "-y",
      "-o",
      log,
      "-e",
      `trace=${trace}`,
      process.execPath,
      ...nodeArgs,
      "write",
      dir,
      String(records),
      String(size),
      "t",
      ...durability
    ]))
    assert.strictEqual(child.code, 0, child.stderr)
    const reader = yield* Log.openReader(dir, { name: "r" })
    assert.deepStrictEqual(names(yield* readAll(reader)), seq("t", records))
    const output = Fs.readFileSync(log, "utf8")
    Fs.rmSync(log)
    return { dir, log: output }
  }).pipe(Effect.scoped)

/** The syncs a writer process appending `records` of `size` bytes made on segments. */
const syncs = (records: number, size: number, durability: ReadonlyArray<string>) =>
  Effect.map(tracedWriter("fsync,fdatasync", records, size, durability), ({ log }) => segmentSyncs(log))

/** Whether an strace line (`-y`) is a write to the file at `path`. */
const isWriteTo = (call: string, path: string) =>
  /^(write|writev|pwrite64|pwritev)\(\d+</.test(call) && call.includes(`<${path}>`)

describe("durability, proven", () => {
  it.live(
    "durability: fsync makes an fdatasync per append (counted under strace); the default makes none",
    () =>
      Effect.gen(function*() {
        // small records (written synchronously) and large ones (through the threadpool)
        assert.isAtLeast(yield* syncs(40, 100, ["fsync"]), 40)
        assert.isAtLeast(yield* syncs(3, 300 * 1024, ["fsync"]), 3)
        assert.strictEqual(yield* syncs(40, 100, []), 0)
        assert.strictEqual(yield* syncs(3, 300 * 1024, ["os"]), 0)
      }),
    120_000
  )

  it.live(
    "durability: fsync with appends at once across segment rotations: every append succeeds and is read back",
    () =>
      Effect.gen(function*() {
        // a rotation closed the segment's descriptor while the syncs of earlier appends were queued: those
        // appends failed (EBADF) though their records were written, and would be sent again as duplicates
        const dir = yield* newStream()
        const writer = yield* Log.openWriter(dir, { durability: "fsync", segmentBytes: 4096 })
        const count = 800
        const results = yield* Effect.forEach(
          Array.from({ length: count }, (_, i) => i),
          (i) => Effect.result(writer.append(record("c", i, 100 + (i % 7) * 300))),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(results.filter(Result.isFailure).map((failed) => failed.failure.message), [])
        assert.isAbove(Fs.readdirSync(dir).filter((name) => name.endsWith(".seg")).length, 20)
        const reader = yield* Log.openReader(dir, { name: "r" })
        assert.deepStrictEqual(names(yield* readAll(reader)).toSorted(), seq("c", count).toSorted())
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "durability: fsync at a rotation: the full segment, the new one's header and the directory are synced before a record goes to the new one (under strace)",
    () =>
      Effect.gen(function*() {
        // 12 records of 1 MiB: three 4 MiB segments, two rotations
        const { dir, log } = yield* tracedWriter(
          "openat,write,writev,pwrite64,pwritev,fsync,fdatasync",
          12,
          1024 * 1024,
          ["fsync"]
        )
        // each line is the pid, padded to 5 characters, and the call
        const lines = log.split("\n").map((line) => {
          const [, pid = "", call = ""] = /^(\d+)\s+(.*)$/.exec(line) ?? []
          return { pid, call }
        })
        // where each successful sync of `path` was done: its own line, or the line its call resumed on
        const syncsDone = (path: string): Array<{ readonly from: number; readonly done: number }> =>
          lines.flatMap(({ call, pid }, from) => {
            if (!/^f(data)?sync\(\d+</.test(call) || !call.includes(`<${path}>)`)) return []
            if (/\)\s+=\s+0$/.test(call)) return [{ from, done: from }]
            if (!call.endsWith("<unfinished ...>")) return []
            const done = lines.findIndex((l, i) => i > from && l.pid === pid && /sync resumed>/.test(l.call))
            return done > 0 && /=\s+0$/.test(lines[done]!.call) ? [{ from, done }] : []
          })
        const segments = (yield* Log.segments(dir)).map((base) => Log.paths(dir).segment(base))
        assert.strictEqual(segments.length, 3)
        for (const [i, segment] of segments.entries()) {
          if (i === 0) continue
          const previous = segments[i - 1]!
          const firstRecord = lines.findIndex(({ call }) => isWriteTo(call, segment))
          assert.isAbove(firstRecord, 0, `a record written to ${segment}`)
          const endRecord = lines.findLastIndex(({ call }, at) => at < firstRecord && isWriteTo(call, previous))
          const before = (path: string) =>
            syncsDone(path).some(({ from, done }) => from > endRecord && done < firstRecord)
          assert.isTrue(
            before(previous),
            `the full segment ${previous} synced after its end record, before ${segment} is used`
          )
          assert.isTrue(before(segment), `the header of ${segment} synced before its first record`)
          assert.isTrue(before(dir), `the directory synced before ${segment} is used`)
        }
      }),
    60_000
  )

  for (
    const [whole, partial] of [
      [0, 5], // inside the first record's header
      [1, 12], // right after a header: no payload byte yet
      [2, 500_000], // in the middle of the payload
      [3, 1024 * 1024 + 11] // one byte short of the end
    ] as const
  ) {
    it.live(
      `a writer killed inside a 1 MiB write (after ${whole} whole records, ${partial} bytes into the next): torn on disk, never delivered, cut by the next writer`,
      () =>
        Effect.gen(function*() {
          const dir = yield* newStream()
          const size = 1024 * 1024
          const recordBytes = LogFormat.RECORD_HEADER + size
          const segment = Log.paths(dir).segment(0)
          const limit = LogFormat.SEGMENT_HEADER + whole * recordBytes + partial
          const log = Path.join(root, `strace-${Path.basename(dir)}.log`)
          // the kernel stops the record's pwritev at `limit` (RLIMIT_FSIZE: a short write, no signal since Node
          // ignores SIGXFSZ); strace kills the writer as it enters the write of the rest, on that segment only
          const writer = yield* run(spawn(strace, [
            "-f",
            "-qq",
            "-o",
            log,
            "-P",
            segment,
            "-e",
            "trace=pwrite64,pwritev",
            "-e",
            "inject=pwrite64:signal=SIGKILL",
            "prlimit",
            `--fsize=${limit}:${limit}`,
            process.execPath,
            ...nodeArgs,
            "write-forever",
            dir,
            String(size),
            "w"
          ]))
          const trace = Fs.readFileSync(log, "utf8")
          Fs.rmSync(log)
          assert.strictEqual(writer.code, 128 + 9, `killed by SIGKILL; ${writer.stderr}; ${trace}`)
          assert.match(trace, new RegExp(`pwritev\\(.*\\) = ${partial}\\n`), "the record's write stopped part way")
          // the torn state was produced: acknowledged records whole, then part of the next one
          const acked = writer.lines.filter((l) => l.startsWith("appended")).length
          assert.strictEqual(acked, whole, "the torn record was never acknowledged")
          assert.strictEqual(Fs.statSync(segment).size, limit, "the file ends inside a record")
          const state = LogFormat.decodeWriterState(Fs.readFileSync(Log.paths(dir).writerLock))!
          assert.isFalse(state.clean, "the dead writer left its state dirty")

          // ... and handled: a reader gets exactly the acknowledged records; verify calls the rest torn
          const reader = yield* Log.openReader(dir, { name: "r" })
          assert.deepStrictEqual(names(yield* readAll(reader)), seq("w", whole))
          assert.strictEqual(reader.pendingBytes(), partial)
          const verified = yield* Log.verify(dir)
          assert.deepStrictEqual([verified.records, verified.torn], [whole, partial])

          // the next writer process cuts the torn tail and goes on; nothing lost, nothing repeated
          const next = yield* run(spawn(process.execPath, [...nodeArgs, "write", dir, "2", String(size), "after"]))
          assert.strictEqual(next.code, 0, next.stderr)
          assert.deepStrictEqual(names(yield* readAll(reader)), seq("after", 2))
          const after = yield* Log.verify(dir)
          assert.deepStrictEqual([after.records, after.torn], [whole + 2, 0])
        }).pipe(Effect.scoped),
      60_000
    )
  }

  for (
    const [what, mountSize, segmentBytes, recordSize, durability] of [
      ["small records, segments rotating", "256k", 16 * 1024, 3000, "os"],
      ["large records (threadpool writes)", "1m", 4 * 1024 * 1024, 300 * 1024, "os"],
      // the rotations sync the segment let go of, the new one and the directory
      ["small records, segments rotating, durability: fsync", "256k", 16 * 1024, 3000, "fsync"]
    ] as const
  ) {
    it.live(
      `a real full disk (${mountSize} tmpfs, ${what}): NoSpace with ENOSPC, nothing lost, goes on once freed`,
      () =>
        Effect.gen(function*() {
          const mount = yield* tmpfs(root, mountSize)
          // room to free later
          const filler = Path.join(mount, "filler")
          Fs.writeFileSync(filler, new Uint8Array(recordSize + 64 * 1024))
          const dir = Path.join(mount, "s")
          // "held" reads nothing: it keeps every segment (a writer on a full disk removes what all readers are past)
          yield* Log.create(dir, { readers: ["r", "held"] })
          const writer = yield* Log.openWriter(dir, { segmentBytes, whenFull: "fail", durability })
          const reader = yield* Log.openReader(dir, { name: "r" })
          const delivered: Array<string> = []
          // an observer polling every event-loop turn, also while large writes run in the threadpool
          const observer = yield* Log.openReader(dir, { from: "start" })
          const observed: Array<string> = []
          const watching = yield* Effect.forkChild(Effect.forever(
            Effect.andThen(
              Effect.map(readAll(observer), (payloads) => void observed.push(...names(payloads))),
              Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
            )
          ))
          let acked = 0
          let error: IpcError.IpcError | undefined
          while (error === undefined && acked < 10_000) {
            const result = yield* Effect.result(writer.append(record("d", acked, recordSize)))
            if (result._tag === "Failure") error = result.failure
            else acked++
            // a reader between appends sees whole records only (readAll checks every byte)
            delivered.push(...names(yield* readAll(reader)))
          }
          assert.isDefined(error)
          assert.strictEqual(error!.reason._tag, "NoSpace", error!.message)
          assert.strictEqual(error!.errno, "ENOSPC")
          assert.isAbove(acked, 0)
          // nothing committed was lost, nothing torn is left
          delivered.push(...names(yield* readAll(reader)))
          assert.deepStrictEqual(delivered, seq("d", acked))
          assert.strictEqual(reader.pendingBytes(), 0)
          yield* Fiber.interrupt(watching)
          observed.push(...names(yield* readAll(observer)))
          assert.deepStrictEqual(observed, seq("d", acked), "the observer saw whole records only, each once")
          const verified = yield* Log.verify(dir)
          assert.deepStrictEqual([verified.records, verified.torn], [acked, 0])
          // still full: the same typed error, still nothing torn
          const again = yield* Effect.flip(writer.append(record("d", acked, recordSize)))
          assert.strictEqual(again.reason._tag, "NoSpace")
          // space freed: the same writer goes on
          Fs.rmSync(filler)
          yield* writer.append(record("d", acked, recordSize))
          assert.deepStrictEqual(names(yield* readAll(reader)), [`d:${acked}`])
          assert.strictEqual((yield* Log.verify(dir)).records, acked + 1)
        }).pipe(Effect.scoped),
      60_000
    )
  }
})

describe.runIf(process.getuid?.() === 0)("a full disk whose reader has read everything", () => {
  // a writer on a full disk kept the segments its only reader was past (history held for observers, up to
  // maxBytes) and failed NoSpace on every append: the disk was full of messages already read, for good
  it.live(
    "a 256 KiB tmpfs: NoSpace, then once the reader has read it all the writer removes what was read and goes on",
    () =>
      Effect.gen(function*() {
        const mount = yield* tmpfs(root, "256k")
        const dir = Path.join(mount, "s")
        yield* Log.create(dir, { readers: ["r"] })
        const writer = yield* Log.openWriter(dir, { segmentBytes: 16 * 1024, whenFull: "fail" })
        const reader = yield* Log.openReader(dir, { name: "r" })
        let acked = 0
        let error: IpcError.IpcError | undefined
        while (error === undefined && acked < 10_000) {
          const result = yield* Effect.result(writer.append(record("d", acked, 3000)))
          if (result._tag === "Failure") error = result.failure
          else acked++
        }
        assert.strictEqual(error?.reason._tag, "NoSpace", error?.message)
        // the reader takes every acknowledged record: nothing it has not read is held any more
        assert.deepStrictEqual(names(yield* readAll(reader)), seq("d", acked))
        // the disk is full of records every reader is past: the writer makes room with them, as the cap would
        for (let i = 0; i < acked; i++) {
          yield* writer.append(record("e", i, 3000))
          assert.deepStrictEqual(names(yield* readAll(reader)), [`e:${i}`])
        }
        // only the history was removed: the next reader of the stream starts where the reader is
        const verified = yield* Log.verify(dir)
        assert.strictEqual(verified.torn, 0)
      }).pipe(Effect.scoped),
    60_000
  )
})
