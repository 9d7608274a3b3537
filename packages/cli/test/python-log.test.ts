/**
 * The Python `file://` log writer (`python/effect_ipc/log.py`) under damage
 * and a full disk, judged by both readers: a log the Python writer wrote is
 * damaged (cut at and inside records, a header or payload byte flipped;
 * fast-check, fixed seed) and the Node reader delivers exactly the records
 * before the damage then stops (`Corrupt`, or idle where the log merely ends
 * early at a record boundary), and the Python reader agrees; on a real full
 * disk (a small tmpfs) the Python writer raises `IpcError` reason `NoSpace`,
 * no reader sees a torn record, and it goes on once space is freed.
 */
import { Log } from "@effect-ipc/transport-file"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import fc from "fast-check"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { root } from "./helpers.ts"

const python = Fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
const tool = Path.join(import.meta.dirname, "fixtures", "python", "log_damage.py")
const env = { ...process.env, PYTHONPATH: Path.join(root, "python"), PYTHONDONTWRITEBYTECODE: "1" }

let tmp = ""
let n = 0
beforeAll(() => {
  tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "py-log-"))
})
afterAll(() => {
  Fs.rmSync(tmp, { recursive: true, force: true })
})

const runTool = (args: ReadonlyArray<string>): string => {
  const ran = ChildProcess.spawnSync(python, [tool, ...args], { cwd: root, env, encoding: "utf8", timeout: 60_000 })
  assert.strictEqual(ran.status, 0, `log_damage.py ${args[0]}: ${ran.stderr}`)
  return ran.stdout
}

/** The payload the tool writes for record `i` of `size` bytes. */
const payload = (i: number, size: number): string => `${i}:${"x".repeat(size)}`.slice(0, Math.max(size, `${i}:`.length))

/** What a reader got: the payloads of its data records, then how it stopped. */
interface Outcome {
  readonly payloads: ReadonlyArray<string>
  readonly end: "idle" | string
}

/** Reads the whole stream with a Node observer (from the start, no cursor). */
const nodeRead = (dir: string) =>
  Effect.gen(function*() {
    const reader = yield* Log.openReader(dir, { from: "start" })
    const payloads: Array<string> = []
    while (true) {
      const poll = reader.poll(8 << 20)
      if (!("entries" in poll)) return { payloads, end: `error ${poll.reason._tag}` }
      for (const entry of poll.entries) {
        if (entry.kind === 0) payloads.push(Buffer.from(entry.payload).toString("latin1"))
      }
      if (poll._tag === "Corrupt") return { payloads, end: `error ${poll.error.reason._tag}` }
      if (poll._tag === "Idle") return { payloads, end: "idle" }
      if (poll._tag === "Large") return { payloads, end: "large" }
    }
  }).pipe(
    Effect.scoped,
    Effect.catch((error) => Effect.succeed<Outcome>({ payloads: [], end: `error ${error.reason._tag}` }))
  )

/** Reads the whole stream with the Python reader `name` (default: a fresh one). */
const pythonRead = (dir: string, name = `fresh${n++}`): Outcome => {
  const lines = runTool(["read", dir, name]).trim().split("\n")
  const last = lines.pop()!
  const payloads = lines.map((line) => JSON.parse(line) as [number, string]).filter(([kind]) => kind === 0).map((
    [, text]
  ) => text)
  return { payloads, end: last === "idle" ? "idle" : last.split(" ").slice(0, 2).join(" ") }
}

/** Every record of a stream, in order: its stream offsets (start, end) and whether it is data. */
const layout = (dir: string) => {
  const segments = Fs.readdirSync(dir).filter((f) => /^[0-9a-f]{16}\.seg$/.test(f)).toSorted()
  const records: Array<
    { readonly segment: string; readonly start: number; readonly end: number; readonly data: boolean }
  > = []
  const headers: Array<{ readonly segment: string; readonly start: number; readonly size: number }> = []
  for (const segment of segments) {
    const base = Number.parseInt(segment.slice(0, 16), 16)
    const bytes = Fs.readFileSync(Path.join(dir, segment))
    headers.push({ segment, start: base, size: bytes.length })
    let at = 16
    while (at + 12 <= bytes.length) {
      const length = bytes.readUInt32BE(at + 4)
      records.push({ segment, start: base + at, end: base + at + 12 + length, data: bytes[at + 2] === 0 })
      at += 12 + length
    }
  }
  return { records, headers }
}

describe("the Python file:// log writer, damaged and on a full disk", () => {
  it.live(
    "a damaged log: the Node reader gets the records before the damage, then stops; Python agrees",
    () =>
      Effect.gen(function*() {
        const sizes = [5, 40, 0, 200, 17, 90, 3, 64, 150, 8, 30, 1]
        const pristine = Path.join(tmp, "pristine")
        yield* Log.create(pristine)
        const acked = runTool(["write", pristine, "128", ...sizes.map(String)]).trim().split("\n")
        assert.deepStrictEqual(acked, sizes.map((_, i) => `acked ${i}`))
        const all = sizes.map((size, i) => payload(i, size))
        // undamaged: both read every acknowledged record, then idle
        assert.deepStrictEqual(yield* nodeRead(pristine), { payloads: all, end: "idle" })
        assert.deepStrictEqual(pythonRead(pristine), { payloads: all, end: "idle" })
        const { headers, records } = layout(pristine)
        assert.isAbove(headers.length, 3, "the log spans several segments")
        const total = records.at(-1)!.end
        const before = (offset: number) => records.filter((r) => r.data && r.end <= offset).length

        type Damage =
          | { readonly _tag: "cut"; readonly record: number; readonly inside: number }
          | { readonly _tag: "flip"; readonly record: number; readonly byte: number; readonly bit: number }
          | { readonly _tag: "header"; readonly segment: number; readonly byte: number; readonly bit: number }
        const damage: fc.Arbitrary<Damage> = fc.oneof(
          fc.record({
            _tag: fc.constant("cut" as const),
            record: fc.nat({ max: records.length - 1 }),
            inside: fc.nat({ max: 300 })
          }),
          fc.record({
            _tag: fc.constant("flip" as const),
            record: fc.nat({ max: records.length - 1 }),
            byte: fc.nat({ max: 300 }),
            bit: fc.nat({ max: 7 })
          }),
          fc.record({
            _tag: fc.constant("header" as const),
            segment: fc.nat({ max: headers.length - 1 }),
            byte: fc.nat({ max: 15 }),
            bit: fc.nat({ max: 7 })
          })
        )

        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(damage, async (d) => {
              const dir = Path.join(tmp, `damaged-${n++}`)
              Fs.cpSync(pristine, dir, { recursive: true })
              try {
                // where the damage is, as a stream offset, and what it does to the file
                let offset: number
                if (d._tag === "cut") {
                  const r = records[d.record]!
                  const cut = r.start + (d.inside % (r.end - r.start + 1))
                  const h = headers.find((x) => x.segment === r.segment)!
                  Fs.truncateSync(Path.join(dir, r.segment), cut - h.start)
                  offset = cut
                } else {
                  const r = d._tag === "flip" ? records[d.record]! : undefined
                  const h = r === undefined
                    ? headers[(d as { segment: number }).segment]!
                    : headers.find((x) => x.segment === r.segment)!
                  const at = r === undefined ? h.start + d.byte : r.start + (d.byte % (r.end - r.start))
                  const file = Path.join(dir, h.segment)
                  const bytes = Fs.readFileSync(file)
                  bytes[at - h.start]! ^= 1 << d.bit
                  Fs.writeFileSync(file, bytes)
                  offset = at
                }
                const fromNode = await Effect.runPromise(nodeRead(dir))
                const fromPython = pythonRead(dir)
                const what = `${JSON.stringify(d)} at offset ${offset}`
                // exactly the acknowledged records wholly before the damage
                assert.deepStrictEqual(fromNode.payloads, all.slice(0, before(offset)), `node, ${what}`)
                assert.deepStrictEqual(fromPython.payloads, fromNode.payloads, `python, ${what}`)
                // then a typed Corrupt (a cut at the very end of the log is no damage: idle)
                const expected = d._tag === "cut" && offset === total ? "idle" : "error Corrupt"
                assert.strictEqual(fromNode.end, expected, `node, ${what}`)
                assert.strictEqual(fromPython.end, expected, `python, ${what}`)
              } finally {
                Fs.rmSync(dir, { recursive: true, force: true })
              }
            }),
            { seed: 20261130, numRuns: 60 }
          )
        )
      }),
    240_000
  )

  // mounting a tmpfs needs root, as CI runs
  for (
    const [kind, segmentBytes, size] of [
      ["records inside segments", 8192, 1000],
      // one record fills a 4 KiB page: each append rotates, and the disk fills in the rotation
      ["every append rotates", 4096, 4096 - 16 - 12]
    ] as const
  ) {
    it.live.skipIf(process.getuid?.() !== 0)(
      `a real full disk (a 256 KiB tmpfs, ${kind}): the Python writer raises NoSpace, nothing torn is seen, it goes on once freed`,
      () =>
        Effect.gen(function*() {
          const mount = Path.join(tmp, `tmpfs-${n++}`)
          Fs.mkdirSync(mount, { mode: 0o700 })
          yield* Effect.acquireRelease(
            Effect.sync(() =>
              ChildProcess.execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mount])
            ),
            () => Effect.sync(() => ChildProcess.execFileSync("umount", [mount]))
          )
          // room to free later
          const filler = Path.join(mount, "filler")
          Fs.writeFileSync(filler, new Uint8Array(64 * 1024))
          const dir = Path.join(mount, "s")
          // readers registered before the disk fills (registering one takes a file)
          yield* Log.create(dir, { readers: ["py1", "py2"] })
          const writer = yield* Effect.acquireRelease(
            Effect.sync(() =>
              ChildProcess.spawn(python, [tool, "fill", dir, String(segmentBytes), String(size)], {
                cwd: root,
                env,
                stdio: ["pipe", "pipe", "inherit"]
              })
            ),
            (child) =>
              Effect.callback<void>((resume) => {
                if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
                child.once("exit", () => resume(Effect.void))
                child.kill("SIGKILL")
              })
          )
          let out = ""
          writer.stdout!.setEncoding("utf8").on("data", (chunk: string) => void (out += chunk))
          const exited = Effect.callback<number | null>((resume) => {
            if (writer.exitCode !== null) return resume(Effect.succeed(writer.exitCode))
            writer.once("exit", (code) => resume(Effect.succeed(code)))
          })
          const lines = () => out.split("\n").filter((line) => line.length > 0)
          const waitFor = (what: RegExp) =>
            Effect.gen(function*() {
              const deadline = Date.now() + 60_000
              while (!lines().some((line) => what.test(line))) {
                if (writer.exitCode !== null || Date.now() > deadline) {
                  return assert.fail(`the Python writer did not say ${what}: ${out}`)
                }
                yield* Effect.sleep("10 millis")
              }
            })
          yield* waitFor(/^again /)
          const said = lines()
          const acked = said.filter((line) => line.startsWith("acked ")).length
          assert.isAbove(acked, 10, out)
          assert.deepStrictEqual(said.slice(0, acked), Array.from({ length: acked }, (_, i) => `acked ${i}`))
          assert.match(said[acked]!, /^error NoSpace /, "the documented error")
          assert.strictEqual(said[acked + 1], "again NoSpace", "still full: the same error")
          // every acknowledged record, whole; nothing torn visible to either reader, nothing else left behind
          const all = Array.from({ length: acked }, (_, i) => payload(i, size))
          assert.deepStrictEqual(yield* nodeRead(dir), { payloads: all, end: "idle" })
          assert.deepStrictEqual(pythonRead(dir, "py1"), { payloads: all, end: "idle" })
          const verified = yield* Log.verify(dir)
          assert.deepStrictEqual([verified.records, verified.torn], [acked, 0])
          assert.deepStrictEqual(
            Fs.readdirSync(dir).filter((f) => !/^[0-9a-f]{16}\.seg$/.test(f)).toSorted(),
            ["readers", "writer.lock"]
          )
          assert.deepStrictEqual(Fs.readdirSync(Path.join(dir, "readers")).toSorted(), ["py1.cursor", "py2.cursor"])
          // a reader registered now needs a file: with no page free, a typed NoSpace (not a crash), else it reads all
          const late = pythonRead(dir)
          if (late.end === "idle") assert.deepStrictEqual(late.payloads, all)
          else assert.deepStrictEqual(late, { payloads: [], end: "error NoSpace" })
          // space freed: the same writer goes on
          Fs.rmSync(filler)
          writer.stdin!.write("go\n")
          yield* waitFor(new RegExp(`^acked ${acked}$`))
          assert.strictEqual(yield* exited, 0)
          assert.deepStrictEqual(yield* nodeRead(dir), { payloads: [...all, payload(acked, size)], end: "idle" })
          assert.deepStrictEqual(pythonRead(dir, "py2").payloads, [...all, payload(acked, size)])
        }).pipe(Effect.scoped),
      120_000
    )
  }
})
