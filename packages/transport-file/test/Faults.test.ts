/**
 * Bad input and faults, each a typed error with no valid message lost:
 * a truncated last record, a corrupted checksum, an ipckit file that is not
 * a JSON array, a directory that is not writable, and a full disk
 * (simulated by the size cap).
 *
 * Tests run as root, and root ignores permission bits; so the "not
 * writable" cases run the opening process as user 65534 (nobody) against
 * directories owned by root with mode 0755 (readable, not writable, for
 * nobody). A read-only bind mount would need mount privileges that a test
 * machine may not grant; a second user is what a real deployment has.
 */
import { FileChannel, FileTransport, Inspect, Ipckit, Log } from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { childScript, fresh, newStream, node, run, spawn, tempRoot } from "./helpers.ts"

const root = tempRoot("faults")
const text = new TextDecoder()
const bytes = (s: string) => new TextEncoder().encode(s)
const segmentOf = (dir: string, from: FileChannel.Role) =>
  Log.paths(Path.join(dir, FileChannel.streamOf(from))).segment(0)

/** Runs the fixture as user 65534 (nobody) and reads the outcome it prints. */
const asNobody = (args: ReadonlyArray<string>) =>
  Effect.map(run(node(args, { uid: 65534 })), (r) => {
    assert.strictEqual(r.code, 0, r.stderr)
    return JSON.parse(r.lines[0]!) as { reason?: string }
  })

/** The fixture with `args` in a process limited to 64 descriptors (its `*-starved` modes take all that are left). */
const starved = (args: ReadonlyArray<string>) =>
  spawn("prlimit", [
    "--nofile=64",
    process.execPath,
    "--conditions=@effect-ipc/source",
    "--disable-warning=ExperimentalWarning",
    childScript,
    ...args
  ])

/** Sends `messages` as the backend of `dir` in a session of its own. */
const sendAll = (dir: string, messages: ReadonlyArray<string>, options?: FileChannel.FileChannelOptions) =>
  Effect.scoped(Effect.gen(function*() {
    const backend = yield* FileChannel.backend(dir, options)
    for (const m of messages) yield* backend.send(bytes(m))
  }))

describe("bad input and faults", () => {
  it.live(
    "a committed last record cut short: never delivered, Corrupt for the reader and verify; nothing is cut",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        yield* sendAll(dir, ["one", "two", "three, cut short"])
        const segment = segmentOf(dir, "backend")
        // cut into the last data record's payload (the close record after it goes too)
        const cut = Fs.readFileSync(segment).indexOf("three, cut short") + 6
        Fs.truncateSync(segment, cut)
        const frontend = yield* FileChannel.frontend(dir)
        assert.strictEqual(text.decode(yield* frontend.receive), "one")
        assert.strictEqual(text.decode(yield* frontend.receive), "two")
        const lost = yield* Effect.flip(frontend.receive)
        assert.strictEqual(lost.reason._tag, "Corrupt")
        const error = yield* Effect.flip(Log.verify(Path.dirname(segment)))
        assert.strictEqual(error.reason._tag, "Corrupt")
        assert.match(error.detail, /committed record is cut short/)
        // the backend's next session refuses to append after committed data it cannot find
        const refused = yield* Effect.flip(sendAll(dir, ["four"]))
        assert.strictEqual(refused.reason._tag, "Corrupt")
        assert.strictEqual(Fs.statSync(segment).size, cut)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a corrupted checksum: Corrupt after the valid records before it; with onCorrupt: skip, the ones after it arrive",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        yield* sendAll(dir, ["alpha", "bravo", "charlie"])
        const segment = segmentOf(dir, "backend")
        const file = Fs.readFileSync(segment)
        file[file.indexOf("bravo")] = "B".charCodeAt(0)
        Fs.writeFileSync(segment, file)
        yield* Effect.scoped(Effect.gen(function*() {
          const frontend = yield* FileChannel.frontend(dir)
          assert.strictEqual(text.decode(yield* frontend.receive), "alpha")
          const error = yield* Effect.flip(frontend.receive)
          assert.strictEqual(error.reason._tag, "Corrupt")
          assert.match(error.detail, /corrupt record at offset \d+ .*checksum/)
        }))
        const frontend = yield* FileChannel.frontend(dir, { onCorrupt: "skip" })
        assert.strictEqual(text.decode(yield* frontend.receive), "charlie")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a damaged segment header after the first: Corrupt where it starts; onCorrupt: skip and tail go on from the next segment, never spinning",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const sent = Array.from({ length: 40 }, (_, i) => `message ${i} of forty`)
        yield* sendAll(dir, sent, { segmentBytes: 256 })
        const stream = Path.join(dir, FileChannel.streamOf("backend"))
        const segments = Fs.readdirSync(stream).filter((name) => name.endsWith(".seg")).toSorted()
        assert.isAtLeast(segments.length, 4)
        const lost = Path.join(stream, segments[1]!)
        const inLost = Fs.readFileSync(lost, "latin1").match(/message \d+ of forty/g)!
        // the second segment's header overwritten: it cannot be linked to
        const fd = Fs.openSync(lost, "r+")
        Fs.writeSync(fd, Buffer.alloc(8, 0xee), 0, 8, 0)
        Fs.closeSync(fd)
        const kept = sent.filter((m) => !inLost.includes(m))
        const before = kept.slice(0, sent.indexOf(inLost[0]!))
        yield* Effect.scoped(Effect.gen(function*() {
          const frontend = yield* FileChannel.frontend(dir)
          for (const m of before) assert.strictEqual(text.decode(yield* frontend.receive), m)
          const error = yield* Effect.flip(frontend.receive)
          assert.strictEqual(error.reason._tag, "Corrupt")
        }))
        // the old reader skipped the end-of-segment record, then 0 bytes again and again, synchronously
        const frontend = yield* FileChannel.frontend(dir, { onCorrupt: "skip" })
        const got: Array<string> = []
        for (const _ of kept.slice(before.length)) {
          got.push(text.decode(yield* Effect.timeout(frontend.receive, "10 seconds")))
        }
        assert.deepStrictEqual(got, kept.slice(before.length))
        const tail = yield* Effect.timeout(
          Stream.runCollect(Stream.take(Inspect.tail(stream, { from: "start" }), kept.length + 2)),
          "10 seconds"
        )
        const shown = Array.from(tail, (seen) => text.decode(seen.payload))
        // every record held but the damaged segment's, one line for the damage, and the close record after
        assert.deepStrictEqual(shown.filter((line) => !line.startsWith("(corrupt record")).slice(0, -1), kept)
        assert.strictEqual(shown.filter((line) => line.startsWith("(corrupt record")).length, 1, shown.join("\n"))
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "an ipckit file that is not a JSON array: receive fails with Decode, send will not overwrite it, nothing is lost",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const backend = yield* Ipckit.backend(dir)
        const frontend = yield* Ipckit.frontend(dir)
        yield* backend.sendEvent("first", {})
        assert.strictEqual((yield* frontend.receive).method, "first")
        const file = Ipckit.paths(dir).messages("backend")
        const good = Fs.readFileSync(file, "utf8")
        for (const bad of [`{"not": "an array"}`, `[{"id": "cut off`]) {
          Fs.writeFileSync(file, bad)
          const error = yield* Effect.flip(frontend.receive)
          assert.strictEqual(error.reason._tag, "Decode")
          assert.match(error.detail, /not a JSON array/)
          const refused = yield* Effect.flip(backend.sendEvent("second", {}))
          assert.strictEqual(refused.reason._tag, "Decode")
          assert.strictEqual(Fs.readFileSync(file, "utf8"), bad, "the unreadable file is left alone")
        }
        // once the file is an array again, everything valid arrives
        Fs.writeFileSync(file, good)
        yield* backend.sendEvent("second", {})
        assert.strictEqual((yield* frontend.receive).method, "second")
      }).pipe(Effect.scoped),
    30_000
  )

  // the writer lock's descriptor was opened, then listing the segments failed (EMFILE in a listener short of
  // descriptors, here a directory its owner may search but not list): the failed open kept the descriptor
  it.live(
    "a writer whose open fails after its lock is open (the directory cannot be listed) keeps no descriptor",
    () =>
      Effect.gen(function*() {
        Fs.chmodSync(root, 0o755)
        const dir = yield* newStream(root)
        for (const entry of [dir, ...Fs.readdirSync(dir).map((name) => Path.join(dir, name))]) {
          Fs.chownSync(entry, 65534, 65534)
        }
        // search and write, not read: writer.lock opens, the listing of segments fails
        Fs.chmodSync(dir, 0o300)
        const said = (yield* asNobody(["open-writer", dir])) as { reason?: string; held: Array<string> }
        assert.strictEqual(said.reason, "PermissionDenied")
        assert.deepStrictEqual(said.held, [])
      }),
    30_000
  )

  it.live(
    "a reader with no descriptor left to open the next segment waits, warns once, and loses nothing",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const go = Path.join(root, `${Path.basename(dir)}.go`)
        const backend = yield* FileChannel.backend(dir, { segmentBytes: 256 })
        const reader = yield* starved(["read-starved", dir, "frontend", "40", go])
        yield* reader.waitFor((l) => l.startsWith("starved"))
        const sent = Array.from({ length: 40 }, (_, i) => `message ${i} of forty`)
        for (const m of sent) yield* backend.send(bytes(m))
        const stream = Path.join(dir, FileChannel.streamOf("backend"))
        assert.isAbove(Fs.readdirSync(stream).filter((name) => name.endsWith(".seg")).length, 3, "several segments")
        Fs.writeFileSync(go, "")
        yield* reader.waitFor((l) => l.startsWith("got "), "every message")
        assert.strictEqual(reader.lines().find((l) => l.startsWith("got ")), `got ${sent.join(",")}`)
        const warned = `${reader.lines().join("\n")}${reader.stderr()}`.split("for want of room").length - 1
        assert.strictEqual(warned, 1, "one warning for the spell")
        assert.strictEqual(yield* reader.exit, 0)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "an ipckit reader with no descriptor left to read its file waits, and takes every event after",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const go = Path.join(root, `${Path.basename(dir)}.go`)
        const backend = yield* Ipckit.backend(dir)
        const reader = yield* starved(["ipckit-starved", dir, "20", go])
        yield* reader.waitFor((l) => l.startsWith("starved"))
        const sent = Array.from({ length: 20 }, (_, i) => `event${i}`)
        for (const name of sent) yield* backend.sendEvent(name, {})
        Fs.writeFileSync(go, "")
        // the old reader stopped at its first failed read (its 250 ms safety net was enough), and the channel
        // with it: every receive failed NoSpace
        yield* reader.waitFor((l) => l.startsWith("got "), "every event")
        assert.strictEqual(reader.lines().find((l) => l.startsWith("got ")), `got ${sent.join(",")}`)
        const warned = `${reader.lines().join("\n")}${reader.stderr()}`.split("for want of room").length - 1
        assert.strictEqual(warned, 1, "one warning for the spell")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "Inspect.tail of a listener with no descriptor left when a connection comes follows it once there is one",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const go = Path.join(root, `${Path.basename(dir)}.go`)
        const transport = FileTransport.make()
        yield* transport.listen(`file://${dir}`)
        const tail = yield* starved(["tail-starved", dir, "1", go])
        yield* tail.waitFor((l) => l.startsWith("starved"))
        const client = yield* transport.dial(`file://${dir}`)
        yield* client.send(bytes("hello while starved"))
        Fs.writeFileSync(go, "")
        // the old tail ended with NoSpace (listing connections/) as the connection came
        yield* tail.waitFor((l) => l.startsWith("got "), "the new connection's record")
        assert.strictEqual(tail.lines().find((l) => l.startsWith("got ")), "got hello while starved")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "Inspect.tail with no descriptor left to open the next segment waits and shows every record after",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const go = Path.join(root, `${Path.basename(dir)}.go`)
        yield* Log.create(dir)
        const writer = yield* Log.openWriter(dir, { segmentBytes: 256 })
        yield* writer.append(bytes("first"))
        const tail = yield* starved(["tail-starved", dir, "41", go])
        yield* tail.waitFor((l) => l.startsWith("starved"))
        const sent = Array.from({ length: 40 }, (_, i) => `message ${i} of forty`)
        for (const m of sent) yield* writer.append(bytes(m))
        assert.isAbove(Fs.readdirSync(dir).filter((name) => name.endsWith(".seg")).length, 3, "several segments")
        Fs.writeFileSync(go, "")
        // the old tail skipped the end of the segment as damage, and spun there
        yield* tail.waitFor((l) => l.startsWith("got "), "every record")
        assert.strictEqual(tail.lines().find((l) => l.startsWith("got ")), `got ${["first", ...sent].join(",")}`)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "Inspect.tail of ipckit's files, with no descriptor free as an event is written, shows it once it has them",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const go = Path.join(root, `${Path.basename(dir)}.go`)
        const backend = yield* Ipckit.backend(dir)
        yield* backend.sendEvent("first", {})
        const tail = yield* starved(["tail-starved", dir, "2", go])
        yield* tail.waitFor((l) => l.startsWith("starved"))
        yield* backend.sendEvent("while starved", {})
        Fs.writeFileSync(go, "")
        // the old tail took the file it could not read for an empty one, and waited for a later write
        yield* tail.waitFor((l) => l.startsWith("got "), "two events")
        // the events as ipckit writes them: pretty JSON, over several lines
        yield* tail.waitFor((l) => l.includes(`"method": "while starved"`), "the event written while it was starved")
        const shown = tail.lines().join("\n")
        assert.include(shown.slice(shown.indexOf("got ")), `"method": "first"`)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a directory that is not writable (for user 65534): PermissionDenied, and what is there stays whole",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        yield* sendAll(dir, ["kept 1", "kept 2"])
        const ipckitDir = fresh(root)
        yield* Effect.scoped(Effect.flatMap(Ipckit.backend(ipckitDir), (c) => c.sendEvent("kept", {})))
        const listenDir = fresh(root)
        Fs.mkdirSync(listenDir)
        // readable by everyone, writable by root only
        Fs.chmodSync(root, 0o755)
        for (const d of [dir, ipckitDir, listenDir]) {
          const walk = (p: string): void => {
            Fs.chmodSync(p, Fs.statSync(p).isDirectory() ? 0o755 : 0o644)
            if (Fs.statSync(p).isDirectory()) { for (const n of Fs.readdirSync(p)) walk(Path.join(p, n)) }
          }
          walk(d)
        }
        assert.strictEqual((yield* asNobody(["open", dir, "frontend"])).reason, "PermissionDenied")
        assert.strictEqual((yield* asNobody(["listen", `file://${listenDir}/server`])).reason, "PermissionDenied")
        assert.strictEqual((yield* asNobody(["ipckit-send", ipckitDir])).reason, "PermissionDenied")
        // nothing was lost or left half-made
        const frontend = yield* FileChannel.frontend(dir)
        assert.strictEqual(text.decode(yield* frontend.receive), "kept 1")
        assert.strictEqual(text.decode(yield* frontend.receive), "kept 2")
        assert.deepStrictEqual(Fs.readdirSync(listenDir), [])
        const events = JSON.parse(Fs.readFileSync(Ipckit.paths(ipckitDir).messages("backend"), "utf8")) as Array<
          unknown
        >
        assert.strictEqual(events.length, 1)
        assert.isFalse(Fs.existsSync(Ipckit.paths(ipckitDir).lock("backend")))
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a full disk (the size cap): Full to the writer, every accepted message delivered, room once read",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const options = { maxBytes: 256 * 1024, segmentBytes: 16 * 1024, whenFull: "fail" } as const
        const backend = yield* FileChannel.backend(dir, options)
        let accepted = 0
        const error = yield* Effect.flip(
          Effect.forever(
            Effect.suspend(() =>
              Effect.andThen(backend.send(bytes(`${accepted} ${"z".repeat(4000)}`)), Effect.sync(() => accepted++))
            )
          )
        )
        assert.strictEqual(error.reason._tag, "Full")
        assert.isAbove(accepted, 40)
        const reader = yield* run(node(["read", dir, "frontend", String(accepted)]))
        assert.strictEqual(reader.code, 0, reader.stderr)
        const got = reader.lines.filter((l) => l.startsWith("got ")).map((l) => Number(l.slice(4).split(" ")[0]))
        assert.deepStrictEqual(got, Array.from({ length: accepted }, (_, i) => i))
        // read, and reclaimed: the writer has room again
        yield* backend.send(bytes("room again"))
        // and a waiting writer (whenFull: wait) gives up with Full after its fullTimeout
        const waiting = yield* FileChannel.frontend(fresh(root), {
          ...options,
          whenFull: "wait",
          fullTimeout: "300 millis"
        })
        const timedOut = yield* Effect.flip(Effect.forever(waiting.send(bytes("w".repeat(4000)))))
        assert.strictEqual(timedOut.reason._tag, "Full")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a cap under one segment (maxBytes 1 MiB, segments of 4 MiB by default) still rotates: a reader that keeps up keeps room, and read segments go",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        // the segment never filled, so none was ever reclaimed: the 256th message of 4 KiB was Full for good
        const options = { maxBytes: 1024 * 1024, whenFull: "fail" } as const
        const backend = yield* FileChannel.backend(dir, options)
        const frontend = yield* FileChannel.frontend(dir, options)
        const stream = Path.join(dir, "backend_to_frontend")
        let most = 0
        for (let i = 0; i < 1000; i++) {
          yield* backend.send(bytes(`${i} ${"z".repeat(4000)}`))
          const got = text.decode(yield* frontend.receive)
          assert.strictEqual(got.slice(0, got.indexOf(" ")), String(i))
          most = Math.max(most, Fs.readdirSync(stream).filter((file) => file.endsWith(".seg")).length)
        }
        // 4 MB went through a 1 MiB stream, and what was read did not stay on disk
        assert.isAtMost(most, 6)
        const onDisk = Fs.readdirSync(stream).filter((file) => file.endsWith(".seg"))
          .reduce((sum, file) => sum + Fs.statSync(Path.join(stream, file)).size, 0)
        assert.isAtMost(onDisk, 1024 * 1024)
        // messages over half the cap: each waited for a segment that never filled, for good (a message
        // counts as read once the reader asks for the next: it reads on in a fiber of its own)
        const bigDir = fresh(root)
        const bigOptions = { maxBytes: 1024 * 1024, whenFull: "wait", fullTimeout: "10 seconds" } as const
        const bigBackend = yield* FileChannel.backend(bigDir, bigOptions)
        const bigFrontend = yield* FileChannel.frontend(bigDir, bigOptions)
        const reading = yield* Effect.forkChild(Effect.forEach(
          Array.from({ length: 6 }, (_, i) => i),
          () => Effect.map(bigFrontend.receive, (got) => [got.byteLength, got[0], got[599_999]])
        ))
        for (let i = 0; i < 6; i++) yield* bigBackend.send(new Uint8Array(600_000).fill(i))
        assert.deepStrictEqual(
          yield* Fiber.join(reading),
          Array.from({ length: 6 }, (_, i) => [600_000, i, i])
        )
      }).pipe(Effect.scoped),
    60_000
  )
})
