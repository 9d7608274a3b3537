import { ChildPipe } from "@effect-ipc/transport-pipe"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { node, nodeFixture, python, pythonPeer, start } from "./helpers.ts"

const text = (s: string) => new TextEncoder().encode(s)
const peerTs = Path.resolve(import.meta.dirname, "../../testing/src/peer.ts")
const nodeArgs = ["--conditions=@effect-ipc/source", "--disable-warning=ExperimentalWarning"]

describe("ChildPipe", () => {
  it.live("talks to a child in another language on fd 3 (Python, from the README)", () =>
    Effect.gen(function*() {
      const child = yield* ChildPipe.spawn("python3", { args: [pythonPeer, "--echo-fd", "3"] })
      for (const message of ["one", "", "three"]) {
        yield* child.channel.send(text(message))
        assert.strictEqual(new TextDecoder().decode(yield* child.channel.receive), message)
      }
      assert.strictEqual(child.channel.peer.pid, child.pid)
      yield* child.channel.close
      // the Python peer answers our close frame and exits cleanly
      assert.deepStrictEqual(yield* child.exit, { code: 0, signal: null })
    }).pipe(Effect.scoped))

  it.live("runs the channel over the child's stdin/stdout when asked", () =>
    Effect.gen(function*() {
      const child = yield* ChildPipe.spawn(process.execPath, {
        args: [...nodeArgs, peerTs, "@effect-ipc/transport-pipe", "descriptor", "echo-server", "child:parent"],
        via: "stdio"
      })
      yield* child.channel.send(text("over stdio"))
      assert.strictEqual(new TextDecoder().decode(yield* child.channel.receive), "over stdio")
    }).pipe(Effect.scoped))

  // README, Child processes: "Over separate streams (stdio, a FIFO pair) a peer that stops reading makes sends fail
  // with ConnectionLost while what it sent before is still read, to its goodbye (Closed)". A Python child on stdio
  // that closes its stdin, says so, then sends three messages and its goodbye (a frame of kind 1)
  it.live("over stdio, a child that stops reading: sends fail ConnectionLost, what it sends is read, to its goodbye", () =>
    Effect.gen(function*() {
      const script = [
        "import os, struct, sys, time",
        "out = sys.stdout.buffer",
        "def frame(kind, payload=b''):",
        "    out.write(struct.pack('>BBI', 1, kind, len(payload)) + payload)",
        "    out.flush()",
        "os.close(0)",
        "frame(0, b'stdin closed')",
        // the parent's sends fail meanwhile
        "time.sleep(0.3)",
        "for i in range(3): frame(0, b'after %d' % i)",
        "frame(1)",
        "time.sleep(0.3)"
      ].join("\n")
      const child = yield* ChildPipe.spawn("python3", { args: ["-c", script], via: "stdio" })
      assert.strictEqual(new TextDecoder().decode(yield* child.channel.receive), "stdin closed")
      const refused = yield* Effect.flip(child.channel.send(text("to a closed stdin")))
      assert.strictEqual(refused.reason._tag, "ConnectionLost", refused.message)
      const got: Array<string> = []
      const end = yield* Effect.flip(
        Effect.forever(Effect.map(child.channel.receive, (m) => void got.push(new TextDecoder().decode(m))))
      )
      assert.deepStrictEqual(got, ["after 0", "after 1", "after 2"])
      assert.strictEqual(end.reason._tag, "Closed", end.message)
    }).pipe(Effect.scoped))

  // (the error said "the peer ended the stream without closing the channel", or "broken pipe" for a send, and not how
  // the child ended, though the library knew)
  it.live("reports a child that exits as ConnectionLost naming how it ended, and its exit code", () =>
    Effect.gen(function*() {
      for (const via of ["fd", "stdio"] as const) {
        for (
          const [code, status, said] of [
            ["process.exit(3)", { code: 3, signal: null }, "exited with code 3"],
            ["process.kill(process.pid, 'SIGKILL')", { code: null, signal: "SIGKILL" }, "was killed by SIGKILL"]
          ] as const
        ) {
          yield* Effect.scoped(Effect.gen(function*() {
            const child = yield* ChildPipe.spawn(process.execPath, {
              args: ["-e", `setTimeout(() => ${code}, 100)`],
              via
            })
            const error = yield* Effect.flip(child.channel.receive)
            assert.strictEqual(error.reason._tag, "ConnectionLost")
            assert.include(error.detail, `the process at the other end ${said}`, `${via}: ${error.message}`)
            assert.deepStrictEqual(yield* child.exit, status)
            // a send to it, too
            const sent = yield* Effect.flip(child.channel.send(new Uint8Array([1])))
            assert.include(sent.detail, `the process at the other end ${said}`, `${via}: ${sent.message}`)
          }))
        }
      }
    }))

  // a child that exits with input it never read resets its end of fd 3: receive and send said only
  // "read ECONNRESET", not how the child ended
  it.live("a child that exits with a message it never read: ConnectionLost naming how it ended", () =>
    Effect.gen(function*() {
      for (const via of ["fd", "stdio"] as const) {
        for (
          const [end, said] of [
            ["os._exit(3)", "exited with code 3"],
            ["os.kill(os.getpid(), signal.SIGKILL)", "was killed by SIGKILL"]
          ] as const
        ) {
          yield* Effect.scoped(Effect.gen(function*() {
            // waits until our message is there to read, and ends without reading it
            const fd = via === "fd" ? 3 : 0
            const child = yield* ChildPipe.spawn("python3", {
              args: ["-c", `import os, select, signal\nselect.select([${fd}], [], [])\n${end}`],
              via
            })
            yield* child.channel.send(new TextEncoder().encode("job"))
            const error = yield* Effect.flip(child.channel.receive)
            assert.strictEqual(error.reason._tag, "ConnectionLost")
            assert.include(error.detail, `the process at the other end ${said}`, `${via}: ${error.message}`)
            const sent = yield* Effect.flip(child.channel.send(new Uint8Array([1])))
            assert.include(sent.detail, `the process at the other end ${said}`, `${via}: ${sent.message}`)
          }))
        }
      }
    }))

  // the other way round: the child's view of a parent killed while it waits
  it.live("a child whose parent is killed: receive and send fail ConnectionLost, and it exits", () =>
    Effect.gen(function*() {
      // a parent in Python: starts the child with a socket on its fd 3, sends it "job", and waits to be killed
      const parent = yield* start(python, ["-c", parentOfFd3, node, ...nodeFixture("from-parent.ts")])
      yield* parent.line(/^got 3$/)
      process.kill(parent.pid, "SIGKILL")
      const lost = yield* parent.line(/^lost /)
      assert.match(lost, /^lost ConnectionLost: /)
      assert.include(yield* parent.line(/^send /), "send ConnectionLost")
      yield* parent.finish // the child exited: its stdout, shared with the parent, closed
    }))

  // over stdio, a child that exits while a process it started holds its stdout: the channel's input never
  // ends, and its output is gone (sends fail); receive failed only once that process exited, and with
  // sends to a lost output no longer failing the channel, it waited as long
  it.live("a child that exits while a process it started keeps its stdout: ConnectionLost once the input is quiet", () =>
    Effect.gen(function*() {
      const pidFile = Path.join(Os.tmpdir(), `effect-ipc-grandchild-${process.pid}`)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          const pid = Number(Fs.readFileSync(pidFile, "utf8"))
          if (pid > 0) process.kill(pid, "SIGKILL")
          Fs.rmSync(pidFile, { force: true })
        })
      )
      const child = yield* ChildPipe.spawn("sh", {
        args: ["-c", `sleep 60 </dev/null & echo $! > ${pidFile}; exit 0`],
        via: "stdio",
        lingerTimeout: "300 millis"
      })
      yield* child.exit
      const sent = yield* Effect.flip(
        Effect.andThen(Effect.sleep("50 millis"), child.channel.send(new Uint8Array([1])))
      )
      assert.strictEqual(sent.reason._tag, "ConnectionLost")
      const error = yield* Effect.flip(child.channel.receive).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(error.reason._tag, "ConnectionLost")
    }).pipe(Effect.scoped))

  // on fd 3 (the default) too: the shell's background job inherited fd 3, the parent's receive waited as long
  // as it lived, and sends to the exited child were reported sent
  it.live("a child that exits while a process it started holds fd 3: sends fail, and receive is ConnectionLost", () =>
    Effect.gen(function*() {
      const pidFile = Path.join(Os.tmpdir(), `effect-ipc-grandchild-fd-${process.pid}`)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          const pid = Number(Fs.readFileSync(pidFile, "utf8"))
          if (pid > 0) process.kill(pid, "SIGKILL")
          Fs.rmSync(pidFile, { force: true })
        })
      )
      const child = yield* ChildPipe.spawn("sh", {
        args: ["-c", `sleep 60 & echo $! > ${pidFile}; exit 0`],
        lingerTimeout: "300 millis"
      })
      yield* child.exit
      const grandchild = Number(Fs.readFileSync(pidFile, "utf8"))
      assert.isTrue(
        Fs.readdirSync(`/proc/${grandchild}/fd`).some((fd) => fd === "3"),
        "the background job holds the channel's descriptor"
      )
      const sent = yield* Effect.flip(
        Effect.andThen(Effect.sleep("50 millis"), child.channel.send(new Uint8Array([1])))
      )
      assert.strictEqual(sent.reason._tag, "ConnectionLost")
      const error = yield* Effect.flip(child.channel.receive).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(error.reason._tag, "ConnectionLost")
    }).pipe(Effect.scoped))

  // what a child wrote just before it exited is still read: the exit ends the channel only once the input is quiet
  it.live("a child's last messages before it exits are received, then ConnectionLost", () =>
    Effect.gen(function*() {
      const child = yield* ChildPipe.spawn(process.execPath, {
        args: [
          "-e",
          "const fs = require('node:fs'); for (let i = 0; i < 50; i++) fs.writeSync(3, Buffer.from([1, 0, 0, 0, 0, 1, i])); process.exit(0)"
        ]
      })
      yield* child.exit
      for (let i = 0; i < 50; i++) assert.deepStrictEqual([...(yield* child.channel.receive)], [i])
      const error = yield* Effect.flip(child.channel.receive)
      assert.strictEqual(error.reason._tag, "ConnectionLost")
    }).pipe(Effect.scoped))

  it.live("lets a child that exits on its channel's close do so, without a signal", () =>
    Effect.gen(function*() {
      // a generous exit timeout: only a hang guard, so a slow machine does not turn this into a SIGTERM
      const { exit } = yield* Effect.scoped(
        ChildPipe.spawn("python3", {
          args: [pythonPeer, "--echo-fd", "3"],
          exitTimeout: "20 seconds",
          lingerTimeout: "20 seconds"
        })
      )
      assert.deepStrictEqual(yield* exit, { code: 0, signal: null })
    }))

  it.live("ends a child that ignores its channel when the parent's scope closes", () =>
    Effect.gen(function*() {
      const { exit, pid } = yield* Effect.scoped(
        ChildPipe.spawn(process.execPath, { args: ["-e", "setInterval(() => {}, 1000)"], exitTimeout: "100 millis" })
      )
      const status = yield* exit
      assert.strictEqual(status.signal, "SIGTERM")
      assert.throws(() => process.kill(pid, 0))
    }))

  it.live("kills a child that ignores SIGTERM after the kill timeout", () =>
    Effect.gen(function*() {
      const { exit } = yield* Effect.scoped(Effect.gen(function*() {
        const child = yield* ChildPipe.spawn(process.execPath, {
          args: [
            "-e",
            // ignore SIGTERM, then say so with one empty data frame on fd 3
            "process.on('SIGTERM', () => {}); require('fs').writeSync(3, Buffer.from([1, 0, 0, 0, 0, 0])); setInterval(() => {}, 1000)"
          ],
          exitTimeout: "100 millis",
          killTimeout: "200 millis"
        })
        yield* child.channel.receive
        return child
      }))
      assert.strictEqual((yield* exit).signal, "SIGKILL")
    }))

  it.live("fails with typed errors: a missing executable, no parent channel", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.exit(Effect.scoped(ChildPipe.spawn("/nonexistent/program")))
      assert.isTrue(Exit.isFailure(missing))
      const error = yield* Effect.flip(Effect.scoped(ChildPipe.spawn("/nonexistent/program")))
      assert.strictEqual(error.reason._tag, "NotFound")
      const saved = process.env[ChildPipe.ENV]
      delete process.env[ChildPipe.ENV]
      const orphan = yield* Effect.flip(Effect.scoped(ChildPipe.fromParent()))
      if (saved !== undefined) process.env[ChildPipe.ENV] = saved
      assert.strictEqual(orphan.reason._tag, "NotFound")
    }))

  // an address's location is percent-decoded as it is read: `%` in an argument written as it is was refused
  // (`+%s`) or changed (`%25` arrived as `%`); `addressOf` escapes it, and the arguments arrive as written
  it.live("a child: address from addressOf brings arguments holding % to the child as written", () =>
    Effect.gen(function*() {
      const out = Path.join(Os.tmpdir(), `effect-ipc-argv-${process.pid}`)
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(out, { force: true })))
      const args = ["50% off", "date +%s", "a%2Fb%20c", "100%25"]
      const script = "require('fs').writeFileSync(process.argv[1], JSON.stringify(process.argv.slice(2)));" +
        "setTimeout(() => {}, 20000)"
      const address = ChildPipe.addressOf(process.execPath, ["-e", script, out, ...args])
      yield* ChildPipe.make().dial(address)
      yield* Effect.sync(() => Fs.existsSync(out) ? Effect.void : Effect.fail("not yet")).pipe(
        Effect.flatten,
        Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 250 })
      )
      assert.deepStrictEqual(JSON.parse(Fs.readFileSync(out, "utf8")), args)
      // written by hand, as the README shows it: a % that starts no escape is refused, not passed on changed
      const refused = yield* Effect.flip(ChildPipe.make().dial(`child:["sh","-c","date +%s"]`))
      assert.strictEqual(refused.reason._tag, "InvalidAddress")
    }).pipe(Effect.scoped))

  // each was a TypeError from Node's spawn (a defect), or, for killTimeout, a defect at close that left
  // the child running
  it.live("fails with typed errors before starting anything: an empty command, a NUL byte, a bad killTimeout", () =>
    Effect.gen(function*() {
      const cases = [
        [ChildPipe.spawn(""), "InvalidAddress"],
        [ChildPipe.spawn("ls", { args: ["a\0b"] }), "InvalidAddress"],
        [ChildPipe.spawn("ls", { cwd: "/\0" }), "InvalidOption"],
        [ChildPipe.spawn("ls", { env: { X: "a\0b" } }), "InvalidOption"],
        [ChildPipe.spawn("ls", { killTimeout: "x" as never }), "InvalidOption"],
        [ChildPipe.spawn("ls", { killTimeout: -1 }), "InvalidOption"],
        // past the types (JavaScript, JSON): a TypeError inside spawn, or spread ("x"), or coerced (env 1)
        [ChildPipe.spawn(5 as never), "InvalidAddress"],
        [ChildPipe.spawn("ls", { args: [1] as never }), "InvalidOption"],
        [ChildPipe.spawn("ls", { args: "x" as never }), "InvalidOption"],
        [ChildPipe.spawn("ls", { cwd: 5 as never }), "InvalidOption"],
        [ChildPipe.spawn("ls", { env: { X: 1 } as never }), "InvalidOption"],
        [ChildPipe.spawn("ls", { env: "X=1" as never }), "InvalidOption"],
        // (a defect: options.via read from null)
        [ChildPipe.spawn("ls", null as never), "InvalidOption"],
        [ChildPipe.spawn("ls", "fd" as never), "InvalidOption"]
      ] as const
      for (const [spawning, reason] of cases) {
        const error = yield* Effect.flip(Effect.scoped(spawning))
        assert.strictEqual(error.reason._tag, reason, error.message)
      }
    }))

  // Node's error named the command ("spawn ls ENOENT") when the working directory was what was missing
  it.live("a working directory that does not exist is named as the reason, not the command", () =>
    Effect.gen(function*() {
      const missing = Path.join(Os.tmpdir(), `effect-ipc-no-such-dir-${process.pid}`)
      const error = yield* Effect.flip(Effect.scoped(ChildPipe.spawn("ls", { cwd: missing })))
      assert.strictEqual(error.reason._tag, "NotFound", error.message)
      assert.include(error.detail, `the working directory ${missing} is not a directory`)
      const command = yield* Effect.flip(Effect.scoped(ChildPipe.spawn("no-such-command-effect-ipc", { cwd: "/" })))
      assert.strictEqual(command.reason._tag, "NotFound", command.message)
      assert.notInclude(command.detail, "working directory")
    }))
})

/** Python: runs argv[1:] with one end of a socket pair on fd 3 (EFFECT_IPC_FD=3), sends it a frame, sleeps. */
const parentOfFd3 = "import os, socket, subprocess, sys, time\nours, theirs = socket.socketpair()\n" +
  "subprocess.Popen(sys.argv[1:], preexec_fn=lambda: os.dup2(theirs.fileno(), 3), close_fds=False,\n" +
  "    env={**os.environ, 'EFFECT_IPC_FD': '3'})\ntheirs.close()\n" +
  "ours.sendall(bytes([1, 0, 0, 0, 0, 3]) + b'job')\ntime.sleep(60)"

/**
 * Python: sends one frame holding its own `EFFECT_IPC_FD` (or "unset") on the channel (fd 3 with argv[1] "fd", its
 * stdout with "stdio": chosen by the argument, not by the variable under test), then reads to the parent's end.
 */
const reportsEnv = "import os, struct, sys\nv = os.environ.get('EFFECT_IPC_FD', 'unset').encode()\n" +
  "out, inp = (3, 3) if sys.argv[1] == 'fd' else (1, 0)\n" +
  "os.write(out, bytes([1, 0]) + struct.pack('>I', len(v)) + v)\nwhile os.read(inp, 65536): pass"

/** The `EFFECT_IPC_FD` a child spawned with `via` (and `env`) reports. */
const seen = (via: "fd" | "stdio", env?: Record<string, string>) =>
  Effect.gen(function*() {
    const child = yield* ChildPipe.spawn("python3", { args: ["-c", reportsEnv, via], via, env })
    return new TextDecoder().decode(yield* child.channel.receive)
  }).pipe(Effect.scoped)

describe("EFFECT_IPC_FD in the child", () => {
  it.live(
    "is 3 over fd 3 and stdio over stdin/stdout, whatever the parent's environment or env option holds",
    () =>
      Effect.gen(function*() {
        assert.strictEqual(yield* seen("fd"), "3")
        assert.strictEqual(yield* seen("stdio"), "stdio")
        // a child started by a child: the parent's own EFFECT_IPC_FD is not passed on as is
        const saved = process.env[ChildPipe.ENV]
        process.env[ChildPipe.ENV] = "stdio"
        const inherited = yield* Effect.exit(seen("fd"))
        process.env[ChildPipe.ENV] = "3"
        const inheritedStdio = yield* Effect.exit(seen("stdio"))
        if (saved === undefined) delete process.env[ChildPipe.ENV]
        else process.env[ChildPipe.ENV] = saved
        assert.deepStrictEqual(inherited, Exit.succeed("3"))
        assert.deepStrictEqual(inheritedStdio, Exit.succeed("stdio"))
        // nor does the env option move the channel
        assert.strictEqual(yield* seen("fd", { EFFECT_IPC_FD: "stdio" }), "3")
        assert.strictEqual(yield* seen("stdio", { EFFECT_IPC_FD: "3" }), "stdio")
      }),
    30_000
  )

  it.live("is 3 in a child dialled as a child: address", () =>
    Effect.gen(function*() {
      const channel = yield* ChildPipe.make().dial(ChildPipe.addressOf("python3", ["-c", reportsEnv, "fd"]))
      assert.strictEqual(new TextDecoder().decode(yield* channel.receive), "3")
    }).pipe(Effect.scoped), 30_000)
})
