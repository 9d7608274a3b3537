/**
 * `effect-ipc file tail | inspect` as real child processes, on directories
 * written by the file transport (a channel, a listener's connections) and by
 * ipckit's format.
 */
import { FileChannel, FileTransport, Ipckit } from "@effect-ipc/transport-file"
import { afterAll, assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { bin, cli, flags, node, root } from "./helpers.ts"

const tmp = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-cli-file-"))
afterAll(() => Fs.rmSync(tmp, { recursive: true, force: true }))
let n = 0
const fresh = () => Path.join(tmp, `d${n++}`)
const bytes = (s: string) => new TextEncoder().encode(s)

/** Runs `effect-ipc ...args` to completion. */
const run = (...args: ReadonlyArray<string>) =>
  Effect.callback<{ status: number | null; stdout: string; stderr: string }>((resume) => {
    const child = ChildProcess.spawn(node, [...flags, bin, ...args], { cwd: root })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (t: string) => void (stdout += t))
    child.stderr.setEncoding("utf8").on("data", (t: string) => void (stderr += t))
    child.on("close", (status) => resume(Effect.succeed({ status, stdout, stderr })))
    return Effect.sync(() => void child.kill("SIGKILL"))
  }).pipe(Effect.timeout("30 seconds"), Effect.orDie)

/** A running `effect-ipc file tail`. */
interface Tail {
  readonly child: ChildProcess.ChildProcess
  /** Its output so far. */
  readonly stdout: () => string
  /** Waits until its output matches `pattern` (a signal, not a sleep). */
  readonly printed: (pattern: RegExp) => Effect.Effect<void>
  /** Its exit status. */
  readonly done: Promise<number | null>
}

/** Starts `effect-ipc file tail ...args` and waits until it follows; its output so far, and its end. */
const tail = (...args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.callback<Tail>((resume) => {
      const child = ChildProcess.spawn(node, [...flags, bin, "file", "tail", ...args], { cwd: root })
      let stdout = ""
      const waiters = new Set<() => void>()
      child.stdout.setEncoding("utf8").on("data", (t: string) => {
        stdout += t
        for (const waiter of waiters) waiter()
      })
      const done = new Promise<number | null>((ok) => child.on("close", ok))
      const printed = (pattern: RegExp) =>
        Effect.callback<void>((resumeWait) => {
          const waiter = () => {
            if (!pattern.test(stdout)) return
            waiters.delete(waiter)
            resumeWait(Effect.void)
          }
          waiters.add(waiter)
          waiter()
          return Effect.sync(() => void waiters.delete(waiter))
        }).pipe(
          Effect.timeoutOrElse({
            duration: "45 seconds",
            orElse: () => Effect.die(`tail never printed ${pattern}; it printed: ${stdout}`)
          })
        )
      child.stderr.setEncoding("utf8").on("data", (t: string) => {
        if (t.includes("following")) resume(Effect.succeed({ child, stdout: () => stdout, printed, done }))
      })
    }),
    ({ child }) => Effect.sync(() => void child.kill("SIGKILL"))
  )

it.live(
  "file tail prints each message written to a channel as it arrives, and exits after --count",
  () =>
    Effect.gen(function*() {
      const dir = fresh()
      const backend = yield* FileChannel.backend(dir)
      yield* backend.send(bytes("before the tail started"))
      const t = yield* tail(dir, "-n", "3")
      yield* backend.send(bytes("first"))
      const frontend = yield* FileChannel.frontend(dir)
      yield* frontend.send(bytes("a reply"))
      yield* backend.send(bytes("second"))
      const code = yield* Effect.promise(() => t.done)
      assert.strictEqual(code, 0)
      const lines = t.stdout().trim().split("\n")
      assert.deepStrictEqual(lines.map((l) => l.replace(/@\d+/, "")).toSorted(), [
        "backend_to_frontend first",
        "backend_to_frontend second",
        "frontend_to_backend a reply"
      ])
      // tail consumed nothing: the frontend still gets every message
      assert.strictEqual(new TextDecoder().decode(yield* frontend.receive), "before the tail started")
    }).pipe(Effect.scoped),
  60_000
)

// transport-file's README, Limits: "A tail observer (`Inspect.tail`) holds no space back: one that falls behind the
// reclaiming readers skips to the oldest segment still held". A tail stopped (SIGSTOP) while a writer and its reader
// go through many times `maxBytes`: no send is Full, and the tail, resumed, goes on to the last message
it.live(
  "a stopped file tail holds no space back: sends never wait for it, and resumed it skips to what is still held",
  () =>
    Effect.gen(function*() {
      const dir = fresh()
      // whenFull "fail": a send that would wait for the tail fails with Full instead
      const options = { maxBytes: 256 * 1024, whenFull: "fail" } as const
      const backend = yield* FileChannel.backend(dir, options)
      const frontend = yield* FileChannel.frontend(dir, options)
      yield* backend.send(bytes("first"))
      assert.strictEqual(new TextDecoder().decode(yield* frontend.receive), "first")
      const t = yield* tail(dir, "--from-start")
      yield* t.printed(/ first\n/)
      t.child.kill("SIGSTOP")
      const filler = "x".repeat(8000)
      // 200 x 8 KB through a stream capped at 256 KiB: its early segments are reclaimed under the stopped tail
      for (let i = 0; i < 200; i++) {
        yield* backend.send(bytes(`m${i} ${filler}`))
        assert.isTrue(new TextDecoder().decode(yield* frontend.receive).startsWith(`m${i} `))
      }
      yield* backend.send(bytes("last"))
      assert.isFalse(
        Fs.existsSync(Path.join(dir, "backend_to_frontend", "0000000000000000.seg")),
        "the segment the tail was reading was reclaimed"
      )
      t.child.kill("SIGCONT")
      yield* t.printed(/ last\n/)
      // what was reclaimed under it is not damage: no "(corrupt record: ...)" line
      assert.notInclude(t.stdout(), "corrupt", t.stdout().slice(0, 2000))
      const seen = t.stdout().trim().split("\n").map((line) => line.split(" ")[1]!)
      // in order, without a repeat, ending with the last message
      const numbers = seen.filter((word) => word.startsWith("m")).map((word) => Number(word.slice(1)))
      assert.deepStrictEqual(numbers, numbers.toSorted((a, b) => a - b), t.stdout().slice(0, 2000))
      assert.strictEqual(new Set(numbers).size, numbers.length)
      assert.strictEqual(seen.at(-1), "last")
      assert.isNull(t.child.exitCode, "the tail goes on following")
    }).pipe(Effect.scoped),
  60_000
)

// --out raw decoded the bytes as UTF-8 and printed them as lines with their source (ff 00 came out as ef bf bd 00)
it.live(
  "file tail --out raw writes each message's bytes unchanged, nothing between them",
  () =>
    Effect.gen(function*() {
      const dir = fresh()
      const backend = yield* FileChannel.backend(dir)
      yield* backend.send(new Uint8Array([0xff, 0x00, 0x0a]))
      yield* backend.send(new Uint8Array([0x80, 0x41]))
      yield* backend.close
      const ran = ChildProcess.spawnSync(node, [
        ...flags,
        bin,
        "file",
        "tail",
        dir,
        "--from-start",
        "-n",
        "2",
        "--out",
        "raw"
      ], {
        cwd: root,
        timeout: 30_000
      })
      assert.strictEqual(ran.status, 0, ran.stderr.toString())
      assert.deepStrictEqual([...ran.stdout], [0xff, 0x00, 0x0a, 0x80, 0x41])
    }).pipe(Effect.scoped),
  60_000
)

// the CLI README: file tail lost its own --format, "the root's `--format` / `--out` applies, so
// `file tail DIR --format hex` still works" (given after the subcommand, as it used to be)
it.live(
  "file tail DIR --format hex prints each message in hex, as the root's --format",
  () =>
    Effect.gen(function*() {
      const dir = fresh()
      const backend = yield* FileChannel.backend(dir)
      yield* backend.send(new Uint8Array([0xde, 0xad, 0xbe, 0xef]))
      yield* backend.close
      const ran = ChildProcess.spawnSync(
        node,
        [...flags, bin, "file", "tail", dir, "--from-start", "-n", "1", "--format", "hex"],
        { cwd: root, timeout: 30_000 }
      )
      assert.strictEqual(ran.status, 0, ran.stderr.toString())
      assert.strictEqual(ran.stdout.toString(), "backend_to_frontend@16 deadbeef\n")
    }).pipe(Effect.scoped),
  60_000
)

it.live("file tail follows a listener's connections, and ipckit files (--from-start)", () =>
  Effect.gen(function*() {
    const dir = fresh()
    const transport = FileTransport.make()
    const listener = yield* transport.listen(`file://${dir}`)
    const t = yield* tail(dir, "-n", "2")
    const client = yield* transport.dial(`file://${dir}`)
    const server = yield* listener.accept
    yield* client.send(bytes("ping"))
    // Streams are followed independently, so lines of two streams come in the order tail finds them: a
    // connection it notices late is read from its start, backend_to_frontend first. Order is promised only
    // within a stream; the reply is written once tail has printed the request, so the order below is fixed.
    yield* t.printed(/frontend_to_backend@\d+ ping\n/)
    yield* server.send(yield* server.receive)
    assert.strictEqual(yield* Effect.promise(() => t.done), 0)
    assert.match(
      t.stdout(),
      /^connections\/[^/]+\/frontend_to_backend@\d+ ping\nconnections\/[^/]+\/backend_to_frontend@\d+ ping\n$/
    )

    const ipckit = fresh()
    yield* Effect.scoped(Effect.flatMap(Ipckit.backend(ipckit), (c) => c.sendEvent("ready", { n: 1 })))
    const shown = yield* run("file", "tail", ipckit, "--from-start", "-n", "1")
    assert.strictEqual(shown.status, 0, shown.stderr)
    assert.match(
      shown.stdout,
      /^backend_to_frontend\.json@0 \{"id":"[^"]+","timestamp":\d+,"type":"event","method":"ready","payload":\{"n":1\}\}\n$/
    )
  }).pipe(Effect.scoped), 60_000)

it.live(
  "file inspect shows ends, streams, readers and lag; --verify finds a corrupt record; --json parses",
  () =>
    Effect.gen(function*() {
      const dir = fresh()
      const backend = yield* FileChannel.backend(dir)
      for (let i = 0; i < 3; i++) yield* backend.send(bytes(`m${i}`))
      const shown = yield* run("file", "inspect", dir)
      assert.strictEqual(shown.status, 0, shown.stderr)
      assert.match(shown.stdout, new RegExp(`backend\\s+open, pid ${process.pid}`))
      assert.match(shown.stdout, /frontend\s+closed/)
      assert.match(shown.stdout, /reader frontend: offset 16, 42 B unread, idle/)

      const json = yield* run("file", "inspect", dir, "--json")
      assert.strictEqual(json.status, 0, json.stderr)
      const report = JSON.parse(json.stdout) as {
        _tag: string
        channel: { streams: Array<{ readers: Array<{ lag: number }> }> }
      }
      assert.strictEqual(report._tag, "Channel")
      assert.strictEqual(report.channel.streams[0]!.readers[0]!.lag, 42)

      const segment = Path.join(dir, "backend_to_frontend", "0000000000000000.seg")
      const file = Fs.readFileSync(segment)
      file[file.indexOf("m1")] = "M".charCodeAt(0)
      Fs.writeFileSync(segment, file)
      const verified = yield* run("file", "inspect", dir, "--verify")
      assert.strictEqual(verified.status, 1, "damage found: a non-zero exit status")
      assert.match(verified.stdout, /BAD backend_to_frontend: corrupt record at offset 30 \(checksum mismatch\)/)

      const missing = yield* run("file", "inspect", Path.join(tmp, "nothing-here"))
      assert.strictEqual(missing.status, 1)
      assert.match(missing.stderr, /NotFound/)
    }).pipe(Effect.scoped),
  60_000
)

/** Runs `effect-ipc ...args` (via the helpers' `cli`); dies if it has not exited within a generous bound (a hang). */
const exits = (...args: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const proc = yield* cli(...args)
    const status = yield* proc.exit.pipe(
      Effect.timeoutOrElse({
        duration: "45 seconds",
        orElse: () => Effect.die(`effect-ipc ${args.join(" ")} hung; stderr: ${proc.stderr()}`)
      })
    )
    return { status, stdout: proc.stdout(), stderr: proc.stderr() }
  }))

/** Asserts a refusal: a non-zero exit with one line on stderr naming PermissionDenied and `what`. */
const assertRefused = (result: { status: number; stdout: string; stderr: string }, what: RegExp) => {
  assert.strictEqual(result.status, 1, `exit status; stdout: ${result.stdout}; stderr: ${result.stderr}`)
  const lines = result.stderr.trim().split("\n")
  assert.strictEqual(lines.length, 1, result.stderr)
  assert.match(lines[0]!, /^effect-ipc: PermissionDenied: /)
  assert.match(lines[0]!, what)
}

it.live(
  "file inspect and tail refuse a FIFO planted where a segment or an ipckit file is expected (PermissionDenied, no hang)",
  () =>
    Effect.gen(function*() {
      const dir = fresh()
      yield* Effect.scoped(Effect.flatMap(FileChannel.backend(dir), (c) => c.send(bytes("m0"))))
      const segment = Path.join(dir, "backend_to_frontend", "0000000000000000.seg")
      Fs.rmSync(segment)
      ChildProcess.execFileSync("mkfifo", ["-m", "600", segment])
      assertRefused(yield* exits("file", "inspect", dir), /0000000000000000\.seg is not a regular file/)
      assertRefused(yield* exits("file", "inspect", dir, "--verify"), /not a regular file/)
      assertRefused(yield* exits("file", "tail", dir, "--from-start", "-n", "1"), /not a regular file/)

      // the same in a listener's connection: refused, not skipped
      const listener = fresh()
      const transport = FileTransport.make()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* transport.listen(`file://${listener}`)
        const client = yield* transport.dial(`file://${listener}`)
        yield* client.send(bytes("ping"))
        const id = Fs.readdirSync(Path.join(listener, "connections")).find((name) => !name.startsWith("."))!
        const planted = Path.join(listener, "connections", id, "frontend_to_backend", "0000000000000000.seg")
        Fs.rmSync(planted)
        ChildProcess.execFileSync("mkfifo", ["-m", "600", planted])
        assertRefused(yield* exits("file", "inspect", listener), /0000000000000000\.seg is not a regular file/)
      }))

      const ipckit = fresh()
      yield* Effect.scoped(Effect.flatMap(Ipckit.backend(ipckit), (c) => c.sendEvent("ready", { n: 1 })))
      const messages = Path.join(ipckit, "backend_to_frontend.json")
      Fs.rmSync(messages)
      ChildProcess.execFileSync("mkfifo", ["-m", "600", messages])
      assertRefused(yield* exits("file", "inspect", ipckit), /backend_to_frontend\.json is not a regular file/)
      assertRefused(yield* exits("file", "tail", ipckit, "--from-start", "-n", "1"), /not a regular file/)
    }),
  120_000
)

/** Runs `cmd` as uid 65534 (another user, no groups). */
const attacker = (...cmd: ReadonlyArray<string>) =>
  ChildProcess.execFileSync("setpriv", [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    ...cmd
  ])

it.live(
  "file inspect and tail refuse a symbolic link planted by another user (uid 65534) in a shared directory",
  () =>
    Effect.gen(function*() {
      // a shared sticky directory (like /tmp) that uid 65534 can reach and write
      const base = fresh()
      Fs.mkdirSync(base, { mode: 0o755 })
      Fs.chmodSync(tmp, 0o755)
      const shared = Path.join(base, "shared")
      Fs.mkdirSync(shared)
      Fs.chmodSync(shared, 0o1777)
      // the attacker's own directory, dressed as an ipckit channel, and a link to it where ours is expected
      const theirs = Path.join(shared, "theirs")
      attacker("mkdir", "-m", "755", theirs)
      attacker("sh", "-c", `echo '[]' > ${Path.join(theirs, "backend_to_frontend.json")}`)
      const planted = Path.join(shared, "app-ipc")
      attacker("ln", "-s", theirs, planted)
      assert.strictEqual(Fs.lstatSync(planted).uid, 65534)
      assertRefused(yield* exits("file", "inspect", planted), /symbolic link owned by uid 65534/)
      assertRefused(
        yield* exits("file", "tail", planted, "--from-start", "-n", "1"),
        /symbolic link owned by uid 65534/
      )
      // nothing in the attacker's directory was touched
      assert.deepStrictEqual(Fs.readdirSync(theirs), ["backend_to_frontend.json"])
    }),
  120_000
)
