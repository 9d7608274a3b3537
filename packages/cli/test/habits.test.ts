/**
 * The command line's habits from nngcat and socat, as real child processes
 * over real sockets and directories: input and output formats apart, `--json`
 * events (errors too), data from a file or stdin, `call` of a user's own
 * RpcGroup served by a separate server process, errors that name what the
 * user gave (no temporary names, no stack), the `nng+` hint, `file tail -n`
 * counting messages only, and `file inspect --verify`'s progress.
 */
import { FileChannel } from "@effect-ipc/transport-file"
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Output from "../src/Output.ts"
import { bin, cli, cliWith, fixtures, flags, node, root, runCli, socketDir, start } from "./helpers.ts"

const { dir: tmp, socket } = socketDir("habits")
const bytes = (s: string) => new TextEncoder().encode(s)

const api = Path.join(fixtures, "inventory-api.ts")
/** The same module as a user types it: a path relative to where the CLI runs (the repository's root). */
const apiRelative = Path.relative(root, api)

it.live(
  "--in and --out read what is sent and print what arrives in different formats; --out raw writes bytes",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const listener = yield* cli("--out", "hex", "listen", address, "--count", "2")
      yield* listener.ready("listening on")
      const json = yield* runCli(["send", address, `{ "a": [1, 2] }`, "--in", "json"])
      assert.deepStrictEqual(json, { code: 0, stdout: "", stderr: "" })
      const hex = yield* runCli(["--in", "hex", "send", address, "de ad be ef"])
      assert.deepStrictEqual(hex, { code: 0, stdout: "", stderr: "" })
      assert.strictEqual(yield* listener.exit, 0, listener.stderr())
      // {"a":[1,2]} sent compact, printed as hex; the hex input sent as its four bytes
      assert.strictEqual(listener.stdout(), "7b2261223a5b312c325d7d\ndeadbeef\n")

      // json is sent and printed compact as written: a number past 2^53 keeps its digits, a repeated key stays
      const exactAddress = socket()
      const exact = yield* cli("--out", "json", "listen", exactAddress, "--count", "2")
      yield* exact.ready("listening on")
      const written = `{ "id": 12345678901234567890,\n "a": 1, "a": 2, "s": "x \\" y  z" }`
      assert.strictEqual((yield* runCli(["--in", "json", "send", exactAddress, written])).code, 0)
      assert.strictEqual((yield* runCli(["send", exactAddress, " [ 1e400 , -0.0 ] "])).code, 0)
      assert.strictEqual(yield* exact.exit, 0, exact.stderr())
      assert.strictEqual(exact.stdout(), `{"id":12345678901234567890,"a":1,"a":2,"s":"x \\" y  z"}\n[1e400,-0.0]\n`)

      const rawAddress = socket()
      const raw = yield* cli("listen", rawAddress, "--count", "2", "--out", "raw")
      yield* raw.ready("listening on")
      assert.strictEqual((yield* runCli(["send", rawAddress, "ab"])).code, 0)
      assert.strictEqual((yield* runCli(["send", rawAddress, "cd"])).code, 0)
      assert.strictEqual(yield* raw.exit, 0, raw.stderr())
      assert.strictEqual(raw.stdout(), "abcd", "raw: the bytes, nothing between them")
    }).pipe(Effect.scoped),
  60_000
)

it.live(
  "--json: listen prints ready and message events, send prints sent events, errors are error events",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const listener = yield* cli("listen", address, "--count", "2", "--json")
      yield* listener.ready("listening on")
      const text = yield* runCli(["--json", "send", address, "héllo"])
      assert.deepStrictEqual(text, {
        code: 0,
        stdout: `{"event":"sent","address":"${address}","bytes":6}\n`,
        stderr: ""
      })
      const binary = yield* runCli(["send", address, "ff00", "--in", "hex"])
      assert.strictEqual(binary.code, 0, binary.stderr)
      assert.strictEqual(yield* listener.exit, 0, listener.stderr())
      assert.deepStrictEqual(listener.stdout().split("\n"), [
        `{"event":"ready","command":"listening","address":"${address}"}`,
        `{"event":"message","address":"${address}","data":"héllo","encoding":"utf8"}`,
        `{"event":"message","address":"${address}","data":"/wA=","encoding":"base64"}`,
        ""
      ])

      const missing = `unix://${tmp}/no-such-dir/x.sock`
      const failed = yield* runCli(["send", missing, "hi", "--json"])
      assert.deepStrictEqual(failed, {
        code: 1,
        stdout:
          `{"event":"error","reason":"NotFound","detail":"cannot connect ${missing}: directory ${tmp}/no-such-dir does not exist","address":"${missing}"}\n`,
        stderr: ""
      })
    }).pipe(Effect.scoped),
  60_000
)

it.live(
  "send --file sends one message per line; --raw and stdin (-) send the whole input as one",
  () =>
    Effect.gen(function*() {
      const file = Path.join(tmp, "lines.txt")
      Fs.writeFileSync(file, "one\ntwo\r\n\nfour\n")
      const address = socket()
      const listener = yield* cli("listen", address, "--count", "6", "--json")
      yield* listener.ready("listening on")
      const lines = yield* runCli(["send", address, "--file", file])
      assert.deepStrictEqual(lines, { code: 0, stdout: "", stderr: "" })
      const whole = yield* runCli(["send", address, "--file", "-", "--raw"], "a\nb\n")
      assert.deepStrictEqual(whole, { code: 0, stdout: "", stderr: "" })
      const hexLines = yield* runCli(["send", address, "--file", "-", "--in", "hex"], "6869\n0a\n")
      assert.deepStrictEqual(hexLines, { code: 0, stdout: "", stderr: "" })
      assert.strictEqual(yield* listener.exit, 0, listener.stderr())
      const data = listener.stdout().trim().split("\n").slice(1).map((line) =>
        (JSON.parse(line) as { data: string }).data
      )
      assert.deepStrictEqual(data, ["one", "two", "", "four", "a\nb\n", "hi"])

      const nothing = yield* runCli(["send", address])
      assert.deepStrictEqual(nothing, {
        code: 1,
        stdout: "",
        stderr: "effect-ipc: Encode: nothing to send: give DATA, or --file PATH (- for stdin)\n"
      })
      const absent = yield* runCli(["send", address, "--file", Path.join(tmp, "absent.txt")])
      assert.deepStrictEqual(absent, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: NotFound: cannot read ${Path.join(tmp, "absent.txt")}: no such file or directory\n`
      })
    }).pipe(Effect.scoped),
  60_000
)

/** Starts the fixture server of `Inventory` at `address` over `serialization`. */
const inventoryServer = (address: string, serialization: "packed" | "json") =>
  Effect.gen(function*() {
    const server = yield* start(node, [...flags, Path.join(fixtures, "inventory-server.ts"), address, serialization])
    yield* server.ready(`serving Inventory on ${address}`)
    return server
  })

it.live(
  "the README's my-api.ts and my-service.ts, as written: serve --module serves them, call --module calls them",
  () =>
    Effect.gen(function*() {
      const readme = Fs.readFileSync(Path.join(root, "packages", "cli", "README.md"), "utf8")
      // inside the repository, so that their imports of effect resolve
      const dir = Fs.mkdtempSync(Path.join(root, "packages", "cli", "test", ".readme-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
      for (const name of ["my-api.ts", "my-service.ts"]) {
        const block = new RegExp("```ts\n// " + name.replace(".", "\\.") + "\n([\\s\\S]*?)```").exec(readme)
        assert.isNotNull(block, `the README shows ${name}`)
        Fs.writeFileSync(Path.join(dir, name), block![1]!)
      }
      const address = socket()
      const server = yield* start(node, [...flags, bin, "serve", address, "--module", Path.join(dir, "my-service.ts")])
      yield* server.ready(`serving Inventory on ${address}`)
      const readmeApi = Path.join(dir, "my-api.ts")
      assert.deepStrictEqual(yield* runCli(["call", address, "Lookup", `{"item":"apples"}`, "--module", readmeApi]), {
        code: 0,
        stdout: `{"item":"apples","count":3}\n`,
        stderr: ""
      })
      assert.deepStrictEqual(
        yield* runCli(["call", address, "Take", `{"item":"apples","count":5}`, "--module", readmeApi]),
        {
          code: 1,
          stdout: "",
          stderr: `effect-ipc: Take failed: OutOfStock {"item":"apples","left":3}\n`
        }
      )
    }).pipe(Effect.scoped),
  120_000
)

it.live(
  "call --module calls a user's own RpcGroup served by another process (packed and --serialization json)",
  () =>
    Effect.gen(function*() {
      const address = socket()
      yield* inventoryServer(address, "packed")
      const lookup = yield* runCli(["call", address, "Lookup", `{"item":"apples"}`, "--module", apiRelative])
      assert.deepStrictEqual(lookup, { code: 0, stdout: `{"item":"apples","count":3}\n`, stderr: "" })
      const take = yield* runCli(["call", address, "Take", `{"item":"apples","count":2}`, "--module", api])
      assert.deepStrictEqual(take, { code: 0, stdout: "1\n", stderr: "" })
      const short = yield* runCli(["call", address, "Take", `{"item":"apples","count":5}`, "--module", api])
      assert.deepStrictEqual(short, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: Take failed: OutOfStock {"item":"apples","left":1}\n`
      })
      const shortJson = yield* runCli([
        "call",
        address,
        "Take",
        `{"item":"apples","count":5}`,
        "--module",
        api,
        "--json"
      ])
      assert.deepStrictEqual(shortJson, {
        code: 1,
        stdout:
          `{"event":"error","reason":"OutOfStock","detail":"Take failed: OutOfStock {\\"item\\":\\"apples\\",\\"left\\":1}","error":{"_tag":"OutOfStock","item":"apples","left":1}}\n`,
        stderr: ""
      })
      const restocks = yield* runCli([
        "call",
        address,
        "Restocks",
        `{"item":"pears"}`,
        "--module",
        api,
        "--group",
        "Inventory",
        "--json"
      ])
      assert.deepStrictEqual(restocks, {
        code: 0,
        stdout: `{"event":"result","method":"Restocks","value":"pears: monday"}\n` +
          `{"event":"result","method":"Restocks","value":"pears: thursday"}\n`,
        stderr: ""
      })
      const demo = yield* runCli(["call", address, "Add", `{"a":1,"b":2}`, "--module", api])
      assert.deepStrictEqual(demo, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: NotFound: unknown method "Add" (have Lookup, Take, Restocks)\n`
      })
      const named = yield* runCli(["call", address, "Lookup", "{}", "--module", api, "--group", "Api"])
      assert.deepStrictEqual(named, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: NotFound: module ${api} exports no RpcGroup named Api (it exports Inventory)\n`
      })

      const jsonAddress = socket()
      yield* inventoryServer(jsonAddress, "json")
      const overJson = yield* runCli([
        "call",
        jsonAddress,
        "Lookup",
        `{"item":"pears"}`,
        "--module",
        api,
        "--serialization",
        "json"
      ])
      assert.deepStrictEqual(overJson, { code: 0, stdout: `{"item":"pears","count":0}\n`, stderr: "" })
    }).pipe(Effect.scoped),
  // two servers and nine CLI runs, each loading TypeScript modules: 37 s at load 7
  240_000
)

it.live(
  "errors name what the user gave and why: no temporary names, no system call wording, no stack",
  () =>
    Effect.gen(function*() {
      const address = `unix://${tmp}/no-such-dir/a.sock`
      const listen = yield* runCli(["listen", address])
      assert.deepStrictEqual(listen, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: NotFound: cannot bind ${address}: directory ${tmp}/no-such-dir does not exist\n`
      })
      assert.isFalse(Fs.existsSync(Path.join(tmp, "no-such-dir")))
      const listenJson = yield* runCli(["--json", "listen", address])
      assert.deepStrictEqual(listenJson, {
        code: 1,
        stdout:
          `{"event":"error","reason":"NotFound","detail":"cannot bind ${address}: directory ${tmp}/no-such-dir does not exist","address":"${address}"}\n`,
        stderr: ""
      })
      // a file where the directory should be: named as given, with the system's own words for it
      const file = Path.join(tmp, `regular-${process.pid}.txt`)
      Fs.writeFileSync(file, "")
      const underFile = `unix://${file}/a.sock`
      assert.deepStrictEqual(yield* runCli(["listen", underFile]), {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: NotFound: cannot bind ${underFile}: not a directory\n`
      })
      const absent = socket()
      const send = yield* runCli(["send", absent, "hi"])
      assert.deepStrictEqual(send, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: NotFound: cannot connect ${absent}: no such file or directory\n`
      })
      // a path that is there but is no socket (a file given by mistake): said so, not "nothing is listening"
      const notSocket = `unix://${file}`
      assert.deepStrictEqual(yield* runCli(["send", notSocket, "hi"]), {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: NotFound: cannot connect ${notSocket}: ${file} is a regular file, not a socket\n`
      })
    }),
  60_000
)

it.live(
  "an nng URL without our prefix (tcp://, ipc://) gets a hint naming the nng+ address; ws:// is the ws transport",
  () =>
    Effect.gen(function*() {
      for (const url of ["tcp://127.0.0.1:5555", "ipc:///tmp/x.ipc"]) {
        const scheme = url.slice(0, url.indexOf(":"))
        const sent = yield* runCli(["send", url, "hi"])
        assert.deepStrictEqual(sent, {
          code: 1,
          stdout: "",
          stderr:
            `effect-ipc: UnsupportedScheme: no transport serves ${scheme}:// (have pipe, memory, shm, file, nng, ws) (${url}); for nng, write nng+${url}\n`
        })
      }
      // ws:// is served by @effect-ipc/transport-ws: nothing listening there is NotFound
      const ws = yield* runCli(["send", "ws://127.0.0.1:5556/path", "hi"])
      assert.deepStrictEqual(ws, {
        code: 1,
        stdout: "",
        stderr: "effect-ipc: NotFound: no effect-ipc WebSocket server answered (ws://127.0.0.1:5556/path)\n"
      })
      const json = yield* runCli(["--json", "listen", "tcp://127.0.0.1:5555"])
      assert.strictEqual(json.code, 1)
      assert.strictEqual(json.stderr, "")
      const event = JSON.parse(json.stdout) as { event: string; reason: string; detail: string }
      assert.deepStrictEqual([event.event, event.reason], ["error", "UnsupportedScheme"])
      assert.match(event.detail, /; for nng, write nng\+tcp:\/\/127\.0\.0\.1:5555$/)
    }),
  60_000
)

it.live(
  "file tail -n N counts messages only: a writer's close record is printed but not counted",
  () =>
    Effect.gen(function*() {
      const dir = Path.join(tmp, "tail-close")
      // a writer sends one message and closes (a close record); a second writer sends one more
      yield* Effect.scoped(Effect.flatMap(FileChannel.backend(dir), (c) => c.send(bytes("first"))))
      yield* Effect.scoped(Effect.flatMap(FileChannel.backend(dir), (c) => c.send(bytes("second"))))
      const shown = yield* runCli(["file", "tail", dir, "--from-start", "-n", "2"])
      assert.strictEqual(shown.code, 0, shown.stderr)
      assert.deepStrictEqual(shown.stdout.split("\n").map((line) => line.replace(/@\d+/, "")), [
        "backend_to_frontend first",
        "backend_to_frontend (closed by its writer)",
        "backend_to_frontend second",
        ""
      ])
      const json = yield* runCli(["file", "tail", dir, "--from-start", "-n", "2", "--json"])
      assert.strictEqual(json.code, 0, json.stderr)
      assert.deepStrictEqual(
        json.stdout.trim().split("\n").map((line) => {
          const { offset: _, ...rest } = JSON.parse(line) as Record<string, unknown>
          return rest
        }),
        [
          { event: "ready", command: "following", address: dir },
          { event: "message", source: "backend_to_frontend", data: "first", encoding: "utf8" },
          { event: "close", source: "backend_to_frontend" },
          { event: "message", source: "backend_to_frontend", data: "second", encoding: "utf8" }
        ]
      )
    }),
  60_000
)

it.live(
  "file inspect --verify shows progress on stderr with --progress, and nothing without it (not a terminal)",
  () =>
    Effect.gen(function*() {
      const dir = Path.join(tmp, "verify-progress")
      yield* Effect.scoped(Effect.gen(function*() {
        const backend = yield* FileChannel.backend(dir)
        const frontend = yield* FileChannel.frontend(dir)
        yield* backend.send(bytes("to the frontend"))
        yield* frontend.send(bytes("to the backend"))
      }))
      const quiet = yield* runCli(["file", "inspect", dir, "--verify"])
      assert.strictEqual(quiet.code, 0, quiet.stderr)
      assert.strictEqual(quiet.stderr, "")
      const shown = yield* runCli(["file", "inspect", dir, "--verify", "--progress"])
      assert.strictEqual(shown.code, 0, shown.stderr)
      assert.strictEqual(shown.stdout, quiet.stdout, "the report is the same")
      const lines = shown.stderr.split("\n")
      assert.strictEqual(lines.length, 4, shown.stderr)
      assert.match(lines[0]!, /^effect-ipc: verifying stream 1\/2 (backend|frontend)_to_\w+ \(0 B of \d+ B checked\)$/)
      assert.match(
        lines[1]!,
        /^effect-ipc: verifying stream 2\/2 (backend|frontend)_to_\w+ \(\d+ B of \d+ B checked\)$/
      )
      assert.match(lines[2]!, /^effect-ipc: verified 2 streams, \d+ B$/)
      assert.strictEqual(lines[3], "")
      const total = /verified 2 streams, (\d+) B/.exec(lines[2]!)![1]
      assert.match(lines[0]!, new RegExp(`of ${total} B checked`))
    }),
  60_000
)

it.live(
  "file inspect --verify on a terminal (a pty from script(1)) rewrites one progress line in place",
  () =>
    Effect.gen(function*() {
      const dir = Path.join(tmp, "verify-tty")
      yield* Effect.scoped(Effect.flatMap(FileChannel.backend(dir), (c) => c.send(bytes("on a terminal"))))
      const command = [node, ...flags, bin, "file", "inspect", dir, "--verify"].map((a) => `'${a}'`).join(" ")
      const tty = yield* Effect.callback<{ code: number | null; output: string }>((resume) => {
        const child = ChildProcess.spawn("script", ["-qec", command, "/dev/null"], { cwd: root })
        let output = ""
        child.stdout.setEncoding("utf8").on("data", (t: string) => void (output += t))
        child.on("close", (code) => resume(Effect.succeed({ code, output })))
        return Effect.sync(() => void child.kill("SIGKILL"))
      }).pipe(Effect.timeout("45 seconds"), Effect.orDie)
      assert.strictEqual(tty.code, 0, tty.output)
      // each step clears the line (\r, ESC [2K) and writes over it; the last one ends it (a channel has two streams)
      assert.match(
        tty.output,
        new RegExp(
          "^\\r\\x1b\\[2Keffect-ipc: verifying stream 1/2 backend_to_frontend \\(0 B of (\\d+) B checked\\)" +
            "\\r\\x1b\\[2Keffect-ipc: verifying stream 2/2 frontend_to_backend \\(\\d+ B of \\1 B checked\\)" +
            "\\r\\x1b\\[2Keffect-ipc: verified 2 streams, \\1 B\\r\\n"
        )
      )
      assert.match(tty.output, /\r\nok backend_to_frontend: \d+ records, all whole\r\n/)
    }),
  60_000
)

it.live("nng push --file (stdin, or a file read as --in hex) to nng pull --json", () =>
  Effect.gen(function*() {
    const url = `ipc://${Path.join(tmp, "push.ipc")}`
    const pull = yield* cli("nng", "pull", "--listen", url, "--count", "2", "--json")
    yield* pull.ready("pulling on")
    const fromStdin = yield* runCli(["nng", "push", "--dial", url, "--file", "-"], "two\nlines\n")
    assert.deepStrictEqual(fromStdin, { code: 0, stdout: "", stderr: `effect-ipc: pushing on ${url}\n` })
    const file = Path.join(tmp, "bytes.hex")
    Fs.writeFileSync(file, "ff 00\n01\n")
    const fromFile = yield* runCli(["nng", "push", "--dial", url, "--file", file, "--in", "hex"])
    assert.strictEqual(fromFile.code, 0, fromFile.stderr)
    assert.strictEqual(yield* pull.exit, 0, pull.stderr())
    assert.deepStrictEqual(pull.stdout().split("\n"), [
      `{"event":"ready","command":"pulling","address":"${url}"}`,
      `{"event":"message","address":"${url}","data":"two\\nlines\\n","encoding":"utf8"}`,
      `{"event":"message","address":"${url}","data":"/wAB","encoding":"base64"}`,
      ""
    ])
    const nothing = yield* runCli(["nng", "push", "--dial", url, "--json"])
    assert.deepStrictEqual(nothing, {
      code: 1,
      stdout:
        `{"event":"error","reason":"Encode","detail":"nothing to send: give --data, or --file PATH (- for stdin)"}\n`,
      stderr: ""
    })
  }).pipe(Effect.scoped), 60_000)

it.live(
  "--json: a usage error is an error event on stdout (reason Usage), not help text; --version a version event",
  () =>
    Effect.gen(function*() {
      const missing = yield* runCli(["--json", "send"])
      assert.deepStrictEqual(missing, {
        code: 1,
        stdout: `{"event":"error","reason":"Usage","detail":"Missing required argument: address"}\n`,
        stderr: ""
      })
      const unknown = yield* runCli(["send", "--json", socket(), "hi", "--bogus"])
      assert.deepStrictEqual(unknown, {
        code: 1,
        stdout: `{"event":"error","reason":"Usage","detail":"Unrecognized flag: --bogus in command effect-ipc send"}\n`,
        stderr: ""
      })
      // and --version a version event (it was plain text)
      const version = yield* runCli(["--json", "--version"])
      assert.deepStrictEqual(version, {
        code: 0,
        stdout: `{"event":"version","name":"effect-ipc","version":"0.1.0"}\n`,
        stderr: ""
      })
    }),
  60_000
)

it.live(
  "listen | head -n 1: once its output is closed the command ends quietly (no stack trace, exit 0) and its socket is gone",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.spawn(node, [...flags, bin, "listen", address], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
        ),
        (c) => Effect.sync(() => void (c.exitCode === null && c.signalCode === null && c.kill("SIGKILL")))
      )
      let stderr = ""
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      const exited = Effect.callback<number | null>((resume) => {
        if (child.exitCode !== null) return resume(Effect.succeed(child.exitCode))
        child.once("close", (code) => resume(Effect.succeed(code)))
      })
      while (!stderr.includes("listening on")) yield* Effect.sleep("20 millis")
      // like `head -n 1`: the first line read, then the pipe's reading end closed
      const first = Effect.callback<string>((resume) => {
        child.stdout.once("data", (chunk: Buffer) => {
          child.stdout.destroy()
          resume(Effect.succeed(chunk.toString("utf8")))
        })
      })
      const firstLine = yield* Effect.forkChild(first)
      assert.strictEqual((yield* runCli(["send", address, "one"])).code, 0)
      assert.strictEqual((yield* Fiber.join(firstLine)).trim(), "one")
      // the next message finds stdout gone: the listener ends (the one after it finds nobody listening)
      yield* runCli(["send", address, "two"])
      yield* runCli(["send", address, "three"])
      const code = yield* exited.pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(code, 0, stderr)
      assert.notMatch(stderr, /\n\s+at |Unhandled 'error'/, stderr)
      assert.isFalse(Fs.existsSync(new URL(address.replace("unix://", "file://")).pathname), "the socket was removed")
    }).pipe(Effect.scoped),
  60_000
)

it.live(
  "listen > a full disk (/dev/full): what cannot be printed is an error on stderr and exit code 1, not a quiet 0",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const full = Fs.openSync("/dev/full", "w")
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.spawn(node, [...flags, bin, "listen", address], { cwd: root, stdio: ["ignore", full, "pipe"] })
        ),
        (c) => Effect.sync(() => void (c.exitCode === null && c.signalCode === null && c.kill("SIGKILL")))
      )
      Fs.closeSync(full)
      let stderr = ""
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      const exited = Effect.callback<number | null>((resume) => {
        if (child.exitCode !== null) return resume(Effect.succeed(child.exitCode))
        child.once("close", (code) => resume(Effect.succeed(code)))
      })
      while (!stderr.includes("listening on")) yield* Effect.sleep("20 millis")
      // delivered to the listener, which cannot print it: the message is lost, and the listener must say so
      assert.strictEqual((yield* runCli(["send", address, "lost"])).code, 0)
      const code = yield* exited.pipe(Effect.timeout("20 seconds"))
      assert.match(stderr, /effect-ipc: NoSpace: cannot print to stdout/, stderr)
      assert.strictEqual(code, 1, stderr)
      assert.notMatch(stderr, /\n\s+at |Unhandled 'error'/, stderr)
      assert.isFalse(Fs.existsSync(new URL(address.replace("unix://", "file://")).pathname), "the socket was removed")
    }).pipe(Effect.scoped),
  60_000
)

// with stderr on the full disk too, the line saying so failed as well: its error event, unheard, crashed the
// listener before its finalizers ran (a stack trace, its socket file left behind); it exited 0 and removed it before
it.live(
  "listen > a full disk 2>&1: the listener still ends with exit code 1 and removes its socket, no crash",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const path = new URL(address.replace("unix://", "file://")).pathname
      const full = Fs.openSync("/dev/full", "w")
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.spawn(node, [...flags, bin, "listen", address], { cwd: root, stdio: ["ignore", full, full] })
        ),
        (c) => Effect.sync(() => void (c.exitCode === null && c.signalCode === null && c.kill("SIGKILL")))
      )
      Fs.closeSync(full)
      const exited = Effect.callback<number | null>((resume) => {
        if (child.exitCode !== null) return resume(Effect.succeed(child.exitCode))
        child.once("close", (code) => resume(Effect.succeed(code)))
      })
      while (!Fs.existsSync(path)) yield* Effect.sleep("20 millis")
      assert.strictEqual((yield* runCli(["send", address, "lost"])).code, 0)
      const code = yield* exited.pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(code, 1)
      assert.isFalse(Fs.existsSync(path), "the socket was removed")
    }).pipe(Effect.scoped),
  60_000
)

it.live(
  "send to a listener that does not read: what never left is a failure (exit 1, one line saying so), not a success, at 1 MiB and past every buffer (16 MiB)",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const path = new URL(address.replace("unix://", "file://")).pathname
      // a server that accepts and never reads (a stopped or stuck listener)
      const held: Array<Net.Socket> = []
      const server = yield* Effect.acquireRelease(
        Effect.callback<Net.Server>((resume) => {
          const s = Net.createServer({ pauseOnConnect: true }, (connection) => void held.push(connection))
          s.listen(path, () => resume(Effect.succeed(s)))
        }),
        (s) =>
          Effect.sync(() => {
            for (const connection of held) connection.destroy()
            s.close()
          })
      )
      assert.isTrue(server.listening)
      // 16 MiB is past every buffer: the send itself waited for the listener for ever (it never exited)
      for (const size of [1024 * 1024, 16 * 1024 * 1024]) {
        const ran = yield* runCli(["send", address, "--file", "-", "--raw"], new Uint8Array(size)).pipe(
          Effect.timeoutOrElse({ duration: "30 seconds", orElse: () => Effect.die(new Error(`${size}: no exit`)) })
        )
        assert.strictEqual(ran.code, 1, ran.stderr)
        assert.match(ran.stderr, /ConnectionLost: .*the listener did not take what was sent/, ran.stderr)
        assert.strictEqual(ran.stderr.trim().split("\n").length, 1, ran.stderr)
        const json = yield* runCli(["--json", "send", address, "--file", "-", "--raw"], new Uint8Array(size))
        assert.strictEqual(json.code, 1, json.stdout)
        // past every buffer the channel never took it: no sent event (at 1 MiB it took it, and the close says
        // the listener did not)
        if (size > 1024 * 1024) assert.notInclude(json.stdout, `"event":"sent"`)
        assert.deepInclude(JSON.parse(json.stdout.trim().split("\n").at(-1)!), {
          event: "error",
          reason: "ConnectionLost"
        })
      }
    }).pipe(Effect.scoped),
  60_000
)

// (the listener dropped the connection over a message past its maxMessageSize, and send said it was sent, exit 0)
it.live(
  "send fails when the listener drops the connection instead of taking the message (unix://, fifo://)",
  () =>
    Effect.gen(function*() {
      for (const address of [socket(), `fifo://${tmp}/refusing`]) {
        const listener = yield* cliWith(
          { IPC_OPTIONS_MAX_MESSAGE_SIZE: "4" },
          "listen",
          address,
          "--count",
          "1",
          "--out",
          "hex"
        )
        yield* listener.ready("listening on")
        const refused = yield* runCli(["send", address, "hello"])
        assert.strictEqual(refused.code, 1, `${address}: ${refused.stderr}`)
        assert.match(refused.stderr, /^effect-ipc: ConnectionLost: the listener did not take what was sent: [^\n]+\n$/)
        const json = yield* runCli(["--json", "send", address, "hello"])
        assert.strictEqual(json.code, 1, json.stdout)
        assert.deepInclude(JSON.parse(json.stdout.trim().split("\n").at(-1)!), {
          event: "error",
          reason: "ConnectionLost"
        })
        // the line names no system call (the README: "never ... a system call's wording"): the listener's drop
        // reached the sender as "write EPIPE" or "read ECONNRESET", printed as is
        for (const args of [["--json", "send"], ["send"], ["--json", "send"]]) {
          const again = yield* runCli([...args, address, "a".repeat(200)])
          assert.strictEqual(again.code, 1, again.stdout + again.stderr)
          assert.notMatch(again.stdout + again.stderr, /\b(?:read|write|writev) E[A-Z]+|\bE(?:PIPE|CONNRESET)\b/)
        }
        // what the listener takes is sent, exit 0
        const taken = yield* runCli(["send", address, "ok"])
        assert.strictEqual(taken.code, 0, taken.stderr)
        assert.strictEqual(yield* listener.exit, 0, listener.stderr())
        assert.strictEqual(listener.stdout(), "6f6b\n", "only what it took")
        assert.include(listener.stderr(), "FrameTooLarge")
      }
    }).pipe(Effect.scoped),
  60_000
)

// the wait for the listener is the channel's linger, as configured: a listener stopped for 3 s takes a
// 16 MiB message with IPC_OPTIONS_LINGER_TIMEOUT="20 seconds" (and not with the default 2 s)
it.live(
  "send waits for a listener as long as the configured linger (IPC_OPTIONS_LINGER_TIMEOUT), 2 s by default",
  () =>
    Effect.gen(function*() {
      for (const [linger, code] of [["20 seconds", 0], [undefined, 1]] as const) {
        const address = socket()
        const listener = yield* cli("listen", address, "--out", "hex")
        yield* listener.ready("listening on")
        const pid = listener.pid!
        process.kill(pid, "SIGSTOP")
        // the message comes through a FIFO: once it is written the sender has read it and sends at once, so the
        // 3 s count from its send, not from its start (which takes seconds on a loaded machine)
        const input = Path.join(tmp, `input-${pid}`)
        ChildProcess.execFileSync("mkfifo", [input])
        const sending = yield* Effect.forkChild(
          runCli(
            ["send", address, "--file", input, "--raw"],
            undefined,
            linger === undefined ? {} : { IPC_OPTIONS_LINGER_TIMEOUT: linger }
          )
        )
        yield* Effect.promise(() => Fs.promises.writeFile(input, new Uint8Array(16 * 1024 * 1024)))
        yield* Effect.sleep("3 seconds")
        process.kill(pid, "SIGCONT")
        const ran = yield* Fiber.join(sending)
        assert.strictEqual(ran.code, code, `${linger}: ${ran.stderr}`)
        if (code === 1) assert.match(ran.stderr, /ConnectionLost: .*the listener did not take what was sent/)
        yield* listener.stop
      }
    }).pipe(Effect.scoped),
  90_000
)

// (no "not hexadecimal" check: "zz" was sent as a 00 byte), (--in json sent text that is not JSON),
// (send DATA --file F: DATA won silently)
it.live(
  "send refuses DATA that is not what --in says, or DATA with --file, before anything is sent",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const listener = yield* cli("listen", address, "--count", "1", "--out", "hex")
      yield* listener.ready("listening on")
      const file = Path.join(tmp, "one-line.txt")
      Fs.writeFileSync(file, "from the file\n")
      const refused: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
        [["send", address, "zz", "--in", "hex"], /^effect-ipc: Encode: not hexadecimal: "zz"\n$/],
        [["send", address, "12 3g", "--in", "hex"], /^effect-ipc: Encode: not hexadecimal: "12 3g"\n$/],
        [["send", address, "{bad", "--in", "json"], /^effect-ipc: Encode: DATA is not JSON: [^\n]+\n$/],
        [["send", address, "data", "--file", file], /^effect-ipc: Encode: give DATA or --file, not both\n$/]
      ]
      for (const [args, stderr] of refused) {
        const ran = yield* runCli(args)
        assert.strictEqual(ran.code, 1, `${args.join(" ")}: ${ran.stderr}`)
        assert.strictEqual(ran.stdout, "")
        assert.match(ran.stderr, stderr)
      }
      assert.strictEqual((yield* runCli(["send", address, "ok"])).code, 0)
      assert.strictEqual(yield* listener.exit, 0, listener.stderr())
      assert.strictEqual(listener.stdout(), "6f6b\n", "only the good message arrived")
    }).pipe(Effect.scoped),
  60_000
)

// (nng push --data X --file F: --data won silently)
it.live("nng push refuses --data with --file before anything is pushed", () =>
  Effect.gen(function*() {
    const url = `ipc://${Path.join(tmp, "both.ipc")}`
    const pull = yield* cli("nng", "pull", "--listen", url, "--count", "1")
    yield* pull.ready("pulling on")
    const file = Path.join(tmp, "push.txt")
    Fs.writeFileSync(file, "from the file")
    const both = yield* runCli(["nng", "push", "--dial", url, "--data", "from data", "--file", file])
    assert.strictEqual(both.code, 1, both.stderr)
    assert.include(both.stderr, "effect-ipc: Encode: give --data or --file, not both\n")
    assert.strictEqual((yield* runCli(["nng", "push", "--dial", url, "--data", "good"])).code, 0)
    assert.strictEqual(yield* pull.exit, 0, pull.stderr())
    assert.strictEqual(pull.stdout(), "good\n")
  }).pipe(Effect.scoped), 60_000)

// (--out json --json: a message that is not JSON came out as utf8, not base64), (--out json: such a
// message was dropped without a word)
it.live(
  "--out json: a message that is not JSON is said so on stderr, or is a base64 message event with --json; the listener goes on",
  () =>
    Effect.gen(function*() {
      const plainAddress = socket()
      const plain = yield* cli("--out", "json", "listen", plainAddress, "--count", "2")
      yield* plain.ready("listening on")
      assert.strictEqual((yield* runCli(["send", plainAddress, "not json"])).code, 0)
      assert.strictEqual((yield* runCli(["send", plainAddress, `{ "a": 1 }`])).code, 0)
      assert.strictEqual(yield* plain.exit, 0, plain.stderr())
      assert.strictEqual(plain.stdout(), `{"a":1}\n`)
      const lines = plain.stderr().trim().split("\n")
      assert.strictEqual(lines.length, 2, plain.stderr())
      assert.match(lines[1]!, /^effect-ipc: unreadable message: Decode: message is not JSON: /)

      const address = socket()
      const listener = yield* cli("--out", "json", "--json", "listen", address, "--count", "2")
      yield* listener.ready("listening on")
      assert.strictEqual((yield* runCli(["send", address, "not json"])).code, 0)
      assert.strictEqual((yield* runCli(["send", address, "[1, 2]"])).code, 0)
      assert.strictEqual(yield* listener.exit, 0, listener.stderr())
      assert.deepStrictEqual(listener.stdout().split("\n"), [
        `{"event":"ready","command":"listening","address":"${address}"}`,
        `{"event":"message","address":"${address}","data":"bm90IGpzb24=","encoding":"base64"}`,
        `{"event":"message","address":"${address}","data":[1,2],"encoding":"json"}`,
        ""
      ])
    }).pipe(Effect.scoped),
  60_000
)

// (--json: log lines went to stderr as text, not as log events on stdout)
it.live(
  "--json: a log line (call waiting for a server) is a log event on stdout; stderr stays empty",
  () =>
    Effect.gen(function*() {
      const absent = socket()
      const ran = yield* runCli(["call", absent, "Add", `{"a":1,"b":2}`, "--json", "--timeout", "5"])
      assert.strictEqual(ran.code, 1, ran.stderr)
      assert.strictEqual(ran.stderr, "")
      const events = ran.stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>)
      assert.deepStrictEqual(events.at(-1)!["event"], "error")
      const logs = events.filter((e) => e["event"] === "log")
      assert.isAbove(logs.length, 0, ran.stdout)
      assert.strictEqual(logs[0]!["level"], "warn")
      assert.match(String(logs[0]!["message"]), new RegExp(`^waiting for a server at ${absent}`))
    }),
  60_000
)

// (every failure of a connection was dropped silently, as if it were a Closed)
it.live(
  "listen says why it dropped a connection (a peer that is not effect-ipc) and serves the next",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const listener = yield* cli("listen", address, "--count", "1")
      yield* listener.ready("listening on")
      const path = new URL(address.replace("unix://", "file://")).pathname
      yield* Effect.callback<void>((resume) => {
        const raw = Net.createConnection(path, () => {
          raw.end("GET / HTTP/1.1\r\n")
        })
        raw.on("close", () => resume(Effect.void))
        raw.on("error", () => resume(Effect.void))
      })
      assert.strictEqual((yield* runCli(["send", address, "after"])).code, 0)
      assert.strictEqual(yield* listener.exit, 0, listener.stderr())
      assert.strictEqual(listener.stdout(), "after\n")
      assert.include(
        listener.stderr(),
        `effect-ipc: connection dropped: Protocol: bad frame version byte 0x47 (expected 0x01): not an effect-ipc peer (${address})\n`
      )
    }).pipe(Effect.scoped),
  60_000
)

// (listen/echo --count 0 was taken: the command exited at once, 0, having listened for nothing)
it.live("listen --count 0 is a usage error (exit 1), an error event with --json", () =>
  Effect.gen(function*() {
    const plain = yield* runCli(["listen", socket(), "--count", "0"])
    assert.strictEqual(plain.code, 1, plain.stderr)
    assert.include(plain.stderr, "--count must be at least 1 (got 0)")
    const json = yield* runCli(["--json", "echo", socket(), "-n", "0"])
    assert.deepStrictEqual(json, {
      code: 1,
      stdout:
        `{"event":"error","reason":"Usage","detail":"Invalid value for flag --count: \\"0\\". Expected: --count must be at least 1 (got 0)"}\n`,
      stderr: ""
    })
  }), 60_000)

// (send --replies -3 was taken: it sent, waited for nothing and exited 0)
it.live("send --replies below 0 is a usage error (exit 1), nothing sent", () =>
  Effect.gen(function*() {
    const address = `unix://${socket()}`
    const plain = yield* runCli(["send", address, "x", "--replies", "-3"])
    assert.strictEqual(plain.code, 1, plain.stderr)
    assert.include(plain.stderr, "--replies must be 0 or more (got -3)")
    // refused before it dials: no listener is there, and the usage is what it says
    assert.notInclude(plain.stderr, "NotFound")
  }), 60_000)

// (file inspect "" inspected the current directory: an unset variable in a script named it)
it.live(
  "file inspect and file tail of an empty directory argument are usage errors (exit 1)",
  () =>
    Effect.gen(function*() {
      for (const command of [["file", "inspect", "", "--verify"], ["file", "tail", ""]]) {
        const run = yield* runCli(command)
        assert.strictEqual(run.code, 1, run.stderr)
        assert.include(run.stderr, "the directory is empty: give a path")
        assert.notInclude(run.stderr, "NotFound")
      }
    }),
  60_000
)

// (a child that exited before reading was "broken pipe", its exit status unnamed)
it.live("send to a child that exits at once names how it ended", () =>
  Effect.gen(function*() {
    const result = yield* runCli(["send", `child:["sh","-c","exit 3"]`, "hi"])
    assert.strictEqual(result.code, 1, result.stderr)
    assert.include(result.stderr, "the process at the other end exited with code 3")
  }), 60_000)

// (the .eipc- patterns of Output.scrub removed): the layer that keeps a transport's temporary names out of
// every printed line (README: "never a temporary name"); no transport error reaches it unsliced today, so it is
// checked where it lives
it("Output.scrub leaves out the transports' temporary names, quoted or not", () => {
  for (
    const text of [
      "staging directory /srv/app/.eipc-1a2b3c4d-77@1.2-AbCdEf left behind",
      "cannot use '/srv/app/.eipc-1a2b3c4d-77@1.2-AbCdEf' now"
    ]
  ) {
    assert.notInclude(Output.scrub(text), ".eipc-", text)
  }
})

// (the system call wordings taken out whatever their code): a user's own log line, "could not write EVENTS.log
// to /var/data; will read ENV defaults instead", printed as "could not.log to /var/data; will instead"
it("Output.scrub takes out a system call's wording only with an errno, and leaves a user's words", () => {
  for (
    const text of [
      "could not write EVENTS.log to /var/data; will read ENV defaults instead",
      "could not open EXPORT.csv: EXCEL is not installed, rename EXPORT.csv [EXPORT]"
    ]
  ) {
    assert.strictEqual(Output.scrub(text), text)
  }
  assert.strictEqual(Output.scrub("the connection failed: write EPIPE"), "the connection failed")
  assert.strictEqual(Output.scrub("cannot listen: listen EADDRINUSE /tmp/s.sock [EADDRINUSE]"), "cannot listen")
  assert.strictEqual(Output.scrub("cannot open: ENOENT: no such file or directory, open '/x/y'"), "cannot open")
})
