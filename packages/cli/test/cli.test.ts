/**
 * The `effect-ipc` command line, run as real child processes over Unix sockets.
 */
import { assert, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { cli } from "./helpers.ts"

let socketCounter = 0
/** A fresh socket address under the temp directory, removed when the test's scope closes. */
const socketAddress: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => {
    const path = Path.join(Os.tmpdir(), `effect-ipc-cli-${process.pid}-${++socketCounter}.sock`)
    Fs.rmSync(path, { force: true })
    return path
  }),
  (path) => Effect.sync(() => Fs.rmSync(path, { force: true }))
).pipe(Effect.map((path) => `unix://${path}`))

/** Runs `effect-ipc ...args` to completion (failing the test after 20 s). */
const run = (...args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const proc = yield* cli(...args)
    const code = yield* proc.exit.pipe(
      Effect.timeoutOrElse({
        duration: Duration.seconds(20),
        orElse: () => Effect.die(`effect-ipc ${args.join(" ")} did not exit; stderr: ${proc.stderr()}`)
      })
    )
    return { code, stdout: proc.stdout(), stderr: proc.stderr() }
  })

/** The error lines of a failed run (leaving out anything Node itself prints). */
const errorLines = (stderr: string): ReadonlyArray<string> =>
  stderr.split("\n").filter((line) => line.startsWith("effect-ipc:"))

it.live("listen --count 2 prints two sends in order, then exits", () =>
  Effect.gen(function*() {
    const address = yield* socketAddress
    const listener = yield* cli("listen", address, "--count", "2")
    yield* listener.ready("listening on")
    const first = yield* run("send", address, "hello world")
    assert.strictEqual(first.code, 0, first.stderr)
    const second = yield* run("send", address, "second message")
    assert.strictEqual(second.code, 0, second.stderr)
    assert.strictEqual(yield* listener.exit, 0, listener.stderr())
    assert.strictEqual(listener.stdout(), "hello world\nsecond message\n")
  }))

it.live("echo sends each message back to its sender", () =>
  Effect.gen(function*() {
    const address = yield* socketAddress
    const echo = yield* cli("echo", address, "--count", "1")
    yield* echo.ready("echoing on")
    const sent = yield* run("send", address, "ping?", "--replies", "1")
    assert.strictEqual(sent.code, 0, sent.stderr)
    assert.strictEqual(sent.stdout, "ping?\n")
    assert.strictEqual(yield* echo.exit, 0, echo.stderr())
  }))

it.live("send --replies N --timeout S ends Timeout when a reply does not come, after printing those that did", () =>
  Effect.gen(function*() {
    const address = yield* socketAddress
    const echo = yield* cli("echo", address)
    yield* echo.ready("echoing on")
    // the echo answers the one message sent; the second reply never comes
    const sent = yield* run("send", address, "ping?", "--replies", "2", "--timeout", "1")
    assert.strictEqual(sent.code, 1, sent.stderr)
    assert.strictEqual(sent.stdout, "ping?\n")
    assert.deepStrictEqual(errorLines(sent.stderr), [
      `effect-ipc: Timeout: 1 of 2 replies came, then none within 1s (${address})`
    ])
    const zero = yield* run("send", address, "x", "--replies", "1", "--timeout", "0")
    assert.notStrictEqual(zero.code, 0)
    assert.match(zero.stderr, /--timeout must be at least 1 \(got 0\)/)
  }))

it.live("--format hex reads and prints hexadecimal bytes", () =>
  Effect.gen(function*() {
    const address = yield* socketAddress
    const listener = yield* cli("--format", "hex", "listen", address, "--count", "2")
    yield* listener.ready("listening on")
    const binary = yield* run("send", address, "00ff10", "--format", "hex")
    assert.strictEqual(binary.code, 0, binary.stderr)
    const text = yield* run("send", address, "hi")
    assert.strictEqual(text.code, 0, text.stderr)
    assert.strictEqual(yield* listener.exit, 0, listener.stderr())
    assert.strictEqual(listener.stdout(), "00ff10\n6869\n")

    const bad = yield* run("send", address, "abc", "--format", "hex")
    assert.strictEqual(bad.code, 1)
    assert.match(bad.stderr, /hexadecimal/)
  }))

it.live("serve + call: results, streams and typed errors", () =>
  Effect.gen(function*() {
    const address = yield* socketAddress
    const server = yield* cli("serve", address)
    yield* server.ready("serving DemoApi")

    const add = yield* run("call", address, "Add", `{"a":1,"b":2}`)
    assert.strictEqual(add.code, 0, add.stderr)
    assert.strictEqual(add.stdout, "3\n")
    // a result JSON cannot hold was printed as null
    const infinite = yield* run("call", address, "Add", `{"a":1e308,"b":1e308}`)
    assert.strictEqual(infinite.stdout, "Infinity\n", infinite.stderr)

    const countdown = yield* run("call", address, "Countdown", `{"from":2}`)
    assert.strictEqual(countdown.code, 0, countdown.stderr)
    assert.deepStrictEqual(countdown.stdout.split("\n").slice(0, 2), ["2", "1"])

    const divide = yield* run("call", address, "Divide", `{"a":1,"b":0}`)
    assert.strictEqual(divide.code, 1)
    assert.strictEqual(divide.stdout, "")
    const lines = errorLines(divide.stderr)
    assert.strictEqual(lines.length, 1, divide.stderr)
    assert.match(lines[0]!, /DivisionByZero/)

    const unknown = yield* run("call", address, "Nope", "{}")
    assert.strictEqual(unknown.code, 1)
    assert.match(unknown.stderr, /unknown method "Nope"/)

    // a server asked to stop (SIGTERM) is interrupted: 130, as for Ctrl-C, and says nothing more
    assert.strictEqual(yield* server.stop, 130, server.stderr())
    assert.deepStrictEqual(errorLines(server.stderr()), [`effect-ipc: serving DemoApi on ${address}`])
  }))

it.live("a terminal hang-up (SIGHUP) ends listen and serve as Ctrl-C does: nothing is left behind", () =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-cli-hup-"))),
      (made) => Effect.sync(() => Fs.rmSync(made, { recursive: true, force: true }))
    )
    const runs = [
      ["listen", `unix://${Path.join(dir, "l.sock")}`, "listening on"],
      ["listen", `fifo://${Path.join(dir, "q")}`, "listening on"],
      ["serve", `unix://${Path.join(dir, "s.sock")}`, "serving DemoApi on"]
    ] as const
    const procs = yield* Effect.forEach(runs, ([command, address]) => cli(command, address))
    yield* Effect.forEach(procs, (proc, i) => proc.ready(runs[i]![2]))
    assert.deepStrictEqual(Fs.readdirSync(dir).toSorted(), ["l.sock", "q.in", "q.lock", "q.out", "q.ready", "s.sock"])
    for (const proc of procs) process.kill(proc.pid!, "SIGHUP")
    const codes = yield* Effect.forEach(procs, (proc) =>
      proc.exit.pipe(
        Effect.timeoutOrElse({ duration: Duration.seconds(10), orElse: () => Effect.die("did not exit on SIGHUP") })
      ))
    // interrupted (130, as for Ctrl-C and SIGTERM), its finalizers run: no socket file, FIFO or lock left
    assert.deepStrictEqual(Fs.readdirSync(dir), [])
    assert.deepStrictEqual(codes, [130, 130, 130])
  }))

it.live("a bad address fails with exit code 1 and one clear line", () =>
  Effect.gen(function*() {
    const scheme = yield* run("send", "nope://somewhere", "hi")
    assert.strictEqual(scheme.code, 1)
    assert.deepStrictEqual(errorLines(scheme.stderr).length, 1, scheme.stderr)
    assert.match(scheme.stderr, /UnsupportedScheme: no transport serves nope:\/\//)

    const malformed = yield* run("listen", "not-an-address")
    assert.strictEqual(malformed.code, 1)
    assert.match(malformed.stderr, /InvalidAddress/)

    const missing = `unix://${Path.join(Os.tmpdir(), `effect-ipc-cli-${process.pid}-missing.sock`)}`
    const absent = yield* run("send", missing, "hi")
    assert.strictEqual(absent.code, 1)
    assert.match(absent.stderr, /NotFound/)

    const call = yield* run("call", missing, "Add", `{"a":1,"b":2}`)
    assert.strictEqual(call.code, 1)
    // the failure's reason is the transport's own, not a ConnectionLost that only quotes it
    assert.match(call.stderr, /^effect-ipc: NotFound: /m, call.stderr)
  }))

it.live("a malformed percent-escape is one InvalidAddress line and exit code 1, not a stack trace", () =>
  Effect.gen(function*() {
    const dir = Path.join(Os.tmpdir(), `effect-ipc-cli-${process.pid}-escape`)
    for (
      const [command, address] of [
        ["listen", `unix://${dir}/a%zz.sock`],
        ["send", `file://${dir}/%E0%A4%A`],
        ["listen", `fifo://${dir}/%`]
      ] as const
    ) {
      const result = command === "send" ? yield* run(command, address, "hi") : yield* run(command, address)
      assert.strictEqual(result.code, 1, result.stderr)
      assert.deepStrictEqual(errorLines(result.stderr).length, 1, result.stderr)
      assert.match(result.stderr, /InvalidAddress/)
      assert.notMatch(result.stderr, /URIError|\n\s+at /, result.stderr)
      assert.isFalse(Fs.existsSync(dir), "nothing was created")
    }
  }))

// `npm run cli` runs in the repository's root: a path the user typed (send --file msgs.txt, as the README
// shows it) was looked up there, not in the directory they typed it in
it.live("npm run cli from another directory: --file is relative to that directory", () =>
  Effect.gen(function*() {
    const address = yield* socketAddress
    const here = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-cwd-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(here, { recursive: true, force: true })))
    Fs.writeFileSync(Path.join(here, "msgs.txt"), "typed here")
    const listener = yield* cli("listen", address, "--count", "1")
    yield* listener.ready("listening on")
    const root = Path.resolve(import.meta.dirname, "../../..")
    const sent = yield* Effect.callback<{ code: number | null; stderr: string }>((resume) => {
      const child = ChildProcess.spawn("npm", [
        "--prefix",
        root,
        "run",
        "--silent",
        "cli",
        "--",
        "send",
        address,
        "--file",
        "msgs.txt"
      ], {
        cwd: here,
        stdio: ["ignore", "ignore", "pipe"]
      })
      let stderr = ""
      child.stderr.setEncoding("utf8").on("data", (t: string) => void (stderr += t))
      child.on("close", (code) => resume(Effect.succeed({ code, stderr })))
    })
    assert.strictEqual(sent.code, 0, sent.stderr)
    assert.strictEqual(yield* listener.exit, 0, listener.stderr())
    assert.strictEqual(listener.stdout(), "typed here\n")
  }).pipe(Effect.scoped), 60_000)

// `npm run cli` ran the CLI under `sh -c`, which does not pass a SIGTERM on: stopping npm (a supervisor, a test's
// `child.kill()`) left the listener running, holding its address, with nobody to stop it
it.live(
  "npm run cli -- listen stopped with SIGTERM: the listener ends and removes its socket",
  () =>
    Effect.gen(function*() {
      const address = yield* socketAddress
      const path = address.slice("unix://".length)
      const root = Path.resolve(import.meta.dirname, "../../..")
      const npm = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.spawn("npm", ["--prefix", root, "run", "--silent", "cli", "--", "listen", address], {
            cwd: root,
            stdio: ["ignore", "ignore", "pipe"]
          })
        ),
        (child) =>
          Effect.sync(() => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")))
      )
      let stderr = ""
      npm.stderr.setEncoding("utf8").on("data", (t: string) => void (stderr += t))
      const exited = Effect.callback<void>((resume) => {
        if (npm.exitCode !== null || npm.signalCode !== null) return resume(Effect.void)
        npm.once("close", () => resume(Effect.void))
      })
      yield* Effect.gen(function*() {
        while (!stderr.includes("listening on")) yield* Effect.sleep("20 millis")
      }).pipe(Effect.timeoutOrElse({ duration: Duration.seconds(30), orElse: () => Effect.die(stderr) }))
      assert.isTrue(Fs.existsSync(path))
      npm.kill("SIGTERM")
      yield* exited.pipe(Effect.timeoutOrElse({ duration: Duration.seconds(10), orElse: () => Effect.die("npm") }))
      // the listener itself was stopped: its socket is gone, and nothing answers at the address
      yield* Effect.gen(function*() {
        while (Fs.existsSync(path)) yield* Effect.sleep("50 millis")
      }).pipe(
        Effect.timeoutOrElse({
          duration: Duration.seconds(5),
          orElse: () => Effect.die(`the listener outlived npm: ${path} is still there`)
        })
      )
      const after = yield* run("send", address, "anyone?")
      assert.strictEqual(after.code, 1)
      assert.match(after.stderr, /NotFound/)
    }).pipe(Effect.scoped),
  60_000
)

// with --json, stdout carries JSON only: a command group without its command printed its help text there,
// with exit code 0, and so did --help
it.live("--json: a group without its command is a Usage event (exit 1); --help a help event", () =>
  Effect.gen(function*() {
    for (const group of ["shm", "file", "nng"]) {
      const ran = yield* run("--json", group)
      assert.strictEqual(ran.code, 1, ran.stdout)
      const lines = ran.stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>)
      assert.deepStrictEqual(lines.map((l) => [l["event"], l["reason"]]), [["error", "Usage"]])
      assert.include(String(lines[0]!["detail"]), `effect-ipc ${group} needs a command: `)
    }
    const help = yield* run("--json", "--help")
    assert.strictEqual(help.code, 0)
    const event = JSON.parse(help.stdout) as Record<string, unknown>
    assert.strictEqual(event["event"], "help")
    assert.include(String(event["text"]), "USAGE")
    // without --json too: the help, given instead of a command, with exit code 1 (it was 0); asked for, 0
    for (const args of [["shm"], ["file"], ["nng"], []]) {
      const plain = yield* run(...args)
      assert.strictEqual(plain.code, 1, args.join(" "))
      assert.include(plain.stdout, "USAGE")
    }
    assert.strictEqual((yield* run("shm", "--help")).code, 0)
  }))
