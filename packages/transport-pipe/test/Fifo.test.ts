import * as Process from "@effect-ipc/core/Process"
import * as Transport from "@effect-ipc/core/Transport"
import * as Tmpfs from "@effect-ipc/testing/Tmpfs"
import { Fifo } from "@effect-ipc/transport-pipe"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { hangGuard, isRoot, nobody, node, nodeFixture, python, run, start, tempDir, waitFor } from "./helpers.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-fifo-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

/** A FIFO's kernel buffer, as another process reads it (F_GETPIPE_SZ). */
const sizeOf = (file: string) =>
  Number(
    ChildProcess.execFileSync("python3", [
      "-c",
      "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_NONBLOCK); print(fcntl.fcntl(fd, 1032))",
      file
    ], { encoding: "utf8" }).trim()
  )

// a listener that could not make the next conversation's fresh FIFOs (ENOSPC: another user filled a shared /tmp
// for a moment) stopped for good; it now offers nothing while there is no room, and serves again once there is.
// With no byte left (inodes free) the ready token was made but not written, and the empty file left behind
// stopped this listener and refused every later one. On a tmpfs in a mount namespace of the child's own (root,
// as CI runs)
const inFullTmpfs = (options: Tmpfs.TmpfsOptions, mode: "inodes" | "bytes" | "listen") => {
  const full = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-fifo-full-"))
  try {
    const [command, ...args] = [
      ...Tmpfs.at(full, { ...options, mode: "0700" }),
      node,
      ...nodeFixture("full-fifo.ts"),
      full,
      mode
    ]
    const ran = ChildProcess.spawnSync(command!, args, { encoding: "utf8", timeout: 60_000 })
    assert.strictEqual(ran.status, 0, ran.stderr)
    return {
      said: JSON.parse(ran.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>,
      output: ran.stdout + ran.stderr
    }
  } finally {
    Fs.rmSync(full, { recursive: true, force: true })
  }
}

describe("Fifo", () => {
  it.live("creates the FIFOs with mode 0600 and removes every file on close", () =>
    Effect.gen(function*() {
      const address = `fifo://${dir}/modes`
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Fifo.make().listen(address)
        for (const suffix of [".in", ".out"]) {
          const stat = Fs.statSync(`${dir}/modes${suffix}`)
          assert.isTrue(stat.isFIFO())
          assert.strictEqual(stat.mode & 0o777, 0o600)
        }
      }))
      assert.deepStrictEqual(Fs.readdirSync(dir).filter((f) => f.startsWith("modes")), [])
    }))

  // fifo:///dir/ listened and made dir/.in, dir/.out, dir/.lock, dir/.ready: hidden files of no name
  it.live("an address with no name after its directory is InvalidAddress for listen and dial; nothing is made", () =>
    Effect.gen(function*() {
      const empty = Fs.mkdtempSync(Path.join(dir, "noname-"))
      for (const address of [`fifo://${empty}/`, `fifo://${empty}/.`, `fifo://${empty}/..`]) {
        for (const attempt of [Effect.asVoid(Fifo.make().listen(address)), Effect.asVoid(Fifo.make().dial(address))]) {
          const error = yield* Effect.flip(Effect.scoped(attempt))
          assert.strictEqual(error.reason._tag, "InvalidAddress", `${address}: ${error.message}`)
          assert.include(error.detail, "fifo:///dir/name")
        }
      }
      assert.deepStrictEqual(Fs.readdirSync(empty), [])
      assert.deepStrictEqual(Fs.readdirSync(dir).filter((f) => f.startsWith(".")), [])
    }))

  it.live("the fresh FIFOs a listener killed between making and renaming them left are removed by the next listen; nothing else", () =>
    Effect.gen(function*() {
      const base = `${dir}/fresh`
      const left = [`${base}.in.fresh-0123456789`, `${base}.out.fresh-abcdef0123`]
      const kept = [`${base}.in.2024.bak`, `${base}.out.fresh-abcdef0123.old`, `${dir}/freshen.in.fresh-0123456789`]
      for (const path of [...left, ...kept]) ChildProcess.execFileSync("mkfifo", [path])
      Fs.writeFileSync(`${base}.in.fresh-00000000ff`, "a user's file of that name")
      kept.push(`${base}.in.fresh-00000000ff`)
      yield* Effect.scoped(Fifo.make().listen(`fifo://${base}`))
      for (const path of left) assert.isFalse(Fs.existsSync(path), path)
      for (const path of kept) assert.isTrue(Fs.existsSync(path), path)
      for (const path of kept) Fs.rmSync(path)
    }))

  it.live("a name with room for the fresh FIFOs serves conversation after conversation; one without is NameTooLong at listen", () =>
    Effect.gen(function*() {
      const transport = Fifo.make()
      // name.out and a fresh one's 17 characters fill the 255 bytes a file name may have
      const fits = `${dir}/${"f".repeat(234)}`
      const listener = yield* transport.listen(`fifo://${fits}`)
      yield* Effect.forkScoped(
        Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
      )
      for (let i = 0; i < 3; i++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const client = yield* Effect.retry(transport.dial(`fifo://${fits}`), {
            schedule: Schedule.spaced("20 millis").pipe(Schedule.upTo({ times: 100 })),
            while: (error) => error.reason._tag === "AddressInUse"
          })
          yield* client.send(new Uint8Array([i]))
          assert.deepStrictEqual([...(yield* hangGuard(client.receive, "echo"))], [i])
        }))
      }
      const error = yield* Effect.flip(Effect.scoped(transport.listen(`fifo://${dir}/${"g".repeat(235)}`)))
      assert.strictEqual(error.reason._tag, "NameTooLong", error.message)
      assert.deepStrictEqual(Fs.readdirSync(dir).filter((f) => f.startsWith("ggg")), [])
    }).pipe(Effect.scoped))

  for (const [mode, options] of [["inodes", { inodes: 64 }], ["bytes", { size: "64k" }]] as const) {
    it.runIf(process.getuid?.() === 0)(
      `a directory that runs out of room (${mode}) between conversations: busy meanwhile, served again once there is room, nothing left`,
      () => {
        const { said, output } = inFullTmpfs(options, mode)
        assert.strictEqual(said.first, "ok")
        assert.isAbove(said.filled as number, 0)
        // the dialer hears that the listener may be short of room, not only that another peer holds the pair
        assert.match(said.whileFull as string, /^AddressInUse: .*no room to offer it again/)
        assert.strictEqual(said.afterwards, "ok", output)
        assert.deepStrictEqual(said.left, [])
        // the listener said why it offered nothing, once for the whole shortage, and when it was over
        assert.strictEqual(output.split("no room to offer the pair again").length - 1, 1, output)
        assert.include(output, "room again; the pair is offered")
      },
      90_000
    )
  }

  it.runIf(process.getuid?.() === 0)(
    "listen where no byte is left: NoSpace, and no empty lock left to refuse the next listen",
    () => {
      const { said } = inFullTmpfs({ size: "64k" }, "listen")
      assert.deepStrictEqual(said, { listen: "NoSpace", left: [] })
    },
    90_000
  )

  // mkfifo's mode is narrowed by the umask (022 here gave 0640 for 0660): the FIFOs get the mode asked for
  it.live("option mode is the FIFOs' exact mode, whatever the umask (0660 and 0666 under umask 022)", () =>
    Effect.gen(function*() {
      const before = process.umask(0o022)
      yield* Effect.addFinalizer(() => Effect.sync(() => process.umask(before)))
      for (const mode of [0o660, 0o666]) {
        const address = `fifo://${dir}/umask-${mode.toString(8)}`
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Fifo.make({ mode }).listen(address)
          for (const suffix of [".in", ".out"]) {
            const stat = Fs.statSync(`${dir}/umask-${mode.toString(8)}${suffix}`)
            assert.strictEqual((stat.mode & 0o777).toString(8), mode.toString(8), suffix)
          }
        }))
      }
    }).pipe(Effect.scoped))

  // a pipeSize over /proc/sys/fs/pipe-max-size that the kernel refused left the pipe at 64 KiB, not at that cap
  it.live("pipeSize sets both FIFOs' kernel buffer (1 MiB by default); one the kernel refuses is capped at pipe-max-size", () =>
    Effect.gen(function*() {
      // what this machine lets a process set: 4 MiB, or pipe-max-size (no CAP_SYS_RESOURCE)
      const probe = String.raw`
import fcntl, os, sys
r, w = os.pipe()
try:
    print(fcntl.fcntl(r, 1031, 4 << 20))
except OSError:
    print(open("/proc/sys/fs/pipe-max-size").read().strip())
`
      const allowed = Number(ChildProcess.execFileSync("python3", ["-c", probe], { encoding: "utf8" }).trim())
      // one too large for the kernel at all (an int wrapped to 0 or 8 KiB gave a 4 KiB or 8 KiB pipe): pipe-max-size
      const pipeMaxSize = Number(Fs.readFileSync("/proc/sys/fs/pipe-max-size", "utf8").trim())
      const cases: ReadonlyArray<[number | undefined, number]> = [
        [undefined, 1024 * 1024],
        [256 * 1024, 256 * 1024],
        [4 * 1024 * 1024, allowed],
        [2 ** 33 + 8192, pipeMaxSize],
        [Infinity, pipeMaxSize]
      ]
      for (const [pipeSize, expected] of cases) {
        const base = `${dir}/size-${pipeSize ?? "default"}`
        yield* Effect.scoped(Effect.gen(function*() {
          const transport = Fifo.make(pipeSize === undefined ? {} : { pipeSize })
          const listener = yield* transport.listen(`fifo://${base}`)
          const client = yield* transport.dial(`fifo://${base}`)
          const server = yield* listener.accept
          yield* client.send(new Uint8Array([1]))
          assert.deepStrictEqual([...(yield* server.receive)], [1])
          for (const suffix of [".in", ".out"]) {
            assert.strictEqual(sizeOf(`${base}${suffix}`), expected, `${pipeSize} ${suffix}`)
          }
        }))
      }
    }))

  it.live("serves one peer at a time: a second client gets AddressInUse until the first leaves", () =>
    Effect.gen(function*() {
      const transport = Fifo.make()
      const address = `fifo://${dir}/single`
      const listener = yield* transport.listen(address)
      const first = yield* transport.dial(address)
      yield* listener.accept
      const busy = yield* Effect.flip(Effect.scoped(transport.dial(address)))
      assert.strictEqual(busy.reason._tag, "AddressInUse")
      yield* first.close
      const second = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* second.send(new Uint8Array([2]))
      assert.deepStrictEqual([...(yield* server.receive)], [2])
    }).pipe(Effect.scoped))

  it.live("a listener killed after the client's hello and before it answered: the client's receive is ConnectionLost", () =>
    Effect.gen(function*() {
      const address = `fifo://${dir}/stopped`
      const server = yield* start(node, [...nodeFixture("listen.ts"), address])
      yield* server.line(/^armed$/)
      yield* server.say("go")
      yield* server.line(/^won$/)
      // stopped, it reads no hello and opens no reply end; killed so, it never had one open: the client's input
      // never had a writer, which the kernel does not report as a hang-up
      process.kill(server.pid, "SIGSTOP")
      const client = yield* Fifo.make().dial(address)
      process.kill(server.pid, "SIGKILL")
      const lost = yield* hangGuard(Effect.flip(client.receive), "the receive after the listener died")
      assert.strictEqual(lost.reason._tag, "ConnectionLost", lost.message)
    }).pipe(Effect.scoped))

  it.live.runIf(isRoot)(
    "a live listener of another user (uid 65534) that authorize admits is served, not taken for dead",
    () =>
      Effect.gen(function*() {
        // its lock (0600, that user's) names no listener this user can read: the watch until the first byte
        // cannot tell it is alive, which is no sign that it died
        const shared = yield* tempDir("effect-ipc-fifo-other-", 0o777)
        const address = `fifo://${shared}/theirs`
        const server = yield* start(node, [...nodeFixture("listen.ts"), address], { uid: nobody })
        yield* server.line(/^armed$/)
        yield* server.say("go")
        yield* server.line(/^won$/)
        const client = yield* Fifo.make({ authorize: (peer) => peer.uid === nobody }).dial(address)
        yield* client.send(new Uint8Array([7]))
        const echoed = yield* hangGuard(Effect.result(client.receive), "the echo of another user's listener")
        assert.strictEqual(echoed._tag, "Success", echoed._tag === "Failure" ? echoed.failure.message : "")
        if (echoed._tag === "Success") assert.deepStrictEqual([...echoed.success], [7])
        // and the other way: a client of uid 65534 (whom this root listener's pair admits) dials it
        const ours = `fifo://${shared}/ours`
        const listener = yield* Fifo.make({ mode: 0o666 }).listen(ours)
        yield* Effect.forkScoped(
          Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
        )
        const dialed = yield* run(node, [...nodeFixture("dial.ts"), ours], { uid: nobody })
        assert.strictEqual(dialed.stdout.toString().trim(), "ok hi", dialed.stderr)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("recovers the pair from a client that claimed it and vanished before speaking", () =>
    Effect.gen(function*() {
      const transport = Fifo.make({ helloTimeout: "300 millis" })
      const address = `fifo://${dir}/vanished`
      const listener = yield* transport.listen(address)
      // a client that won the claim and died at once: the ready token is gone, nobody speaks
      Fs.rmSync(`${dir}/vanished.ready`)
      // the listener offers the pair again (a new ready token) once the hello timeout has passed
      assert.isTrue(yield* waitFor(() => Fs.existsSync(`${dir}/vanished.ready`), 20_000), "the pair was offered again")
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(new Uint8Array([7]))
      assert.deepStrictEqual([...(yield* server.receive)], [7])
    }).pipe(Effect.scoped))

  // a client that sends, closes and exits before the listener has looked: its reply end is gone by then
  // (opening name.out for writing fails, ENXIO), and the listener dropped the conversation with everything
  // the client had been told was sent
  it.live(
    "a client that sent, closed and exited before the listener looked: every message is delivered",
    () =>
      Effect.gen(function*() {
        const address = `fifo://${dir}/quick`
        const listener = yield* Fifo.make().listen(address)
        // the listener's event loop waits while the client runs to its end
        const client = ChildProcess.spawnSync(node, [...nodeFixture("send-close.ts"), address, "5"], {
          encoding: "utf8"
        })
        assert.strictEqual(client.stdout.trim(), "sent 5", client.stderr)
        const server = yield* listener.accept
        const got: Array<string> = []
        for (let i = 0; i < 5; i++) got.push(new TextDecoder().decode(yield* server.receive))
        assert.deepStrictEqual(got, ["m0", "m1", "m2", "m3", "m4"])
        const end = yield* Effect.flip(server.receive)
        assert.strictEqual(end.reason._tag, "Closed", end.detail)
        // a reply after the client's goodbye is not reported sent
        const reply = yield* Effect.flip(server.send(new Uint8Array([1])))
        assert.strictEqual(reply.reason._tag, "Closed")
      }).pipe(Effect.scoped),
    30_000
  )

  // the same while the listener answers: its replies to a client that has closed its reply end fail (EPIPE),
  // and that failure dropped what the client had sent and the listener had not yet read
  it.live(
    "a client that sends, closes and exits while the listener answers: every message is delivered",
    () =>
      Effect.gen(function*() {
        const address = `fifo://${dir}/answers`
        const listener = yield* Fifo.make().listen(address)
        for (let round = 0; round < 4; round++) {
          const client = ChildProcess.spawn(node, [...nodeFixture("send-close.ts"), address, "40", "65536"], {
            stdio: ["ignore", "pipe", "inherit"]
          })
          let said = ""
          client.stdout.on("data", (chunk: Buffer) => (said += chunk.toString()))
          const exited = Effect.callback<void>((resume) => {
            if (client.exitCode !== null) return resume(Effect.void)
            client.once("exit", () => resume(Effect.void))
          })
          const server = yield* listener.accept
          const got: Array<string> = []
          const end = yield* Effect.flip(Effect.forever(Effect.gen(function*() {
            const message = yield* server.receive
            got.push(new TextDecoder().decode(message.subarray(0, 4)).replace(/\0+$/, ""))
            yield* Effect.ignore(server.send(message.subarray(0, 16)))
          })))
          yield* exited
          assert.strictEqual(said.trim(), "sent 40")
          assert.deepStrictEqual(got, Array.from({ length: 40 }, (_, i) => `m${i}`), `round ${round}`)
          assert.strictEqual(end.reason._tag, "Closed", `round ${round}: ${end.detail}`)
        }
      }).pipe(Effect.scoped),
    60_000
  )

  // a client took any file at name.ready for the listener's token: a second client joined the conversation,
  // its frames mixed into the first one's and it read the replies meant for the first; and as the file
  // took the inode number of the claimed token (ext4 reuses it at once), the listener took it for its own
  // token (never offering the pair again) and removed it on close
  it.live("a file a careless program leaves at name.ready while a peer is connected: no second client, kept", () =>
    Effect.gen(function*() {
      const transport = Fifo.make()
      const base = `${dir}/careless`
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* transport.listen(`fifo://${base}`)
        const first = yield* transport.dial(`fifo://${base}`)
        const server = yield* listener.accept
        Fs.writeFileSync(`${base}.ready`, "touched\n")
        const error = yield* Effect.flip(Effect.scoped(transport.dial(`fifo://${base}`)))
        assert.strictEqual(error.reason._tag, "AddressInUse", error.message)
        assert.include(error.detail, `${base}.ready is a regular file owned by uid ${process.getuid!()}`)
        assert.strictEqual(Fs.readFileSync(`${base}.ready`, "utf8"), "touched\n", "left untouched")
        yield* server.send(new Uint8Array([3]))
        assert.deepStrictEqual([...(yield* first.receive)], [3])
        // once the first peer leaves, the listener cannot offer the pair again over that file: it stops, typed
        yield* first.close
        const stopped = yield* Effect.flip(hangGuard(listener.accept, "accept"))
        assert.strictEqual(stopped.reason._tag, "AddressInUse", stopped.message)
        assert.include(stopped.detail, `${base}.ready is a regular file`)
      }))
      assert.strictEqual(Fs.readFileSync(`${base}.ready`, "utf8"), "touched\n", "kept when the listener closed")
    }))

  // the listener opened name.out by path on a hello: a regular file there made a socket of it, which threw
  // (a defect in its loop) and left accept waiting forever
  it.live("a regular file put at name.out is never written: accept fails AddressInUse, not a hang", () =>
    Effect.gen(function*() {
      const base = `${dir}/replaced`
      const listener = yield* Fifo.make().listen(`fifo://${base}`)
      Fs.renameSync(`${base}.out`, `${base}.out.aside`)
      Fs.writeFileSync(`${base}.out`, "my notes\n")
      // a hand-made client (ours refuses the file): claim the pair, send the hello
      Fs.renameSync(`${base}.ready`, `${base}.ready.claimed`)
      const writer = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.openSync(`${base}.in`, Fs.constants.O_WRONLY | Fs.constants.O_NONBLOCK)),
        (fd) => Effect.sync(() => Fs.closeSync(fd))
      )
      Fs.writeSync(writer, new Uint8Array([1, 2, 0, 0, 0, 0]))
      const error = yield* Effect.flip(hangGuard(listener.accept, "accept"))
      assert.strictEqual(error.reason._tag, "AddressInUse", error.message)
      assert.include(error.detail, `${base}.out is no longer the FIFO this listener made: it is now a regular file`)
      // and the stream of connections ends with the same error
      const streamed = yield* Effect.flip(hangGuard(Stream.runDrain(listener.connections), "connections"))
      assert.strictEqual(streamed.detail, error.detail)
      assert.strictEqual(Fs.readFileSync(`${base}.out`, "utf8"), "my notes\n")
    }).pipe(Effect.scoped))

  it.live("does not take over a pair whose server is alive", () =>
    Effect.gen(function*() {
      const address = `fifo://${dir}/owned`
      yield* Fifo.make().listen(address)
      const error = yield* Effect.flip(Effect.scoped(Fifo.make().listen(address)))
      assert.strictEqual(error.reason._tag, "AddressInUse")
    }).pipe(Effect.scoped))

  it.live.runIf(process.platform === "linux")(
    "a lock whose pid now belongs to another process (another start time) is a dead listener's: taken over",
    () =>
      Effect.gen(function*() {
        // the sleeper has the recorded pid, but it is not the process that wrote the lock
        const sleeper = yield* Effect.acquireRelease(
          Effect.sync(() => ChildProcess.spawn("sleep", ["300"], { stdio: "ignore" })),
          (child) => Effect.sync(() => child.kill("SIGKILL"))
        )
        const live = Process.identify(sleeper.pid!)!
        const transport = Fifo.make()
        const recycled = `${dir}/recycled`
        Fs.writeFileSync(`${recycled}.lock`, `${Process.encode({ ...live, startTime: live.startTime + 1 })}:dead`)
        yield* Effect.scoped(Effect.gen(function*() {
          yield* transport.listen(`fifo://${recycled}`)
          assert.match(Fs.readFileSync(`${recycled}.lock`, "utf8"), new RegExp(`^${Process.encode(Process.self())}:`))
        }))
        // the same pid with its own start time, or a bare pid (an older lock), is a live listener's
        for (const [name, owner] of [["started", Process.encode(live)], ["bare", String(live.pid)]] as const) {
          Fs.writeFileSync(`${dir}/${name}.lock`, `${owner}:alive`)
          const error = yield* Effect.flip(Effect.scoped(transport.listen(`fifo://${dir}/${name}`)))
          assert.strictEqual(error.reason._tag, "AddressInUse", name)
          assert.include(error.detail, `pid ${live.pid}`)
          Fs.rmSync(`${dir}/${name}.lock`)
        }
      }).pipe(Effect.scoped)
  )

  it.live.runIf(Fs.existsSync("/proc/self/ns/time"))(
    "a lock of a listener in another time namespace (its start time on its own clock) is not taken over",
    () =>
      Effect.gen(function*() {
        // a live process whose clock starts a day earlier: from here its recorded start time differs
        const child = yield* Effect.acquireRelease(
          Effect.sync(() =>
            ChildProcess.spawn(
              "unshare",
              [
                "--time",
                "--fork",
                "--boottime",
                "86400",
                "--kill-child",
                process.execPath,
                "--conditions=@effect-ipc/source",
                "-e",
                `import("@effect-ipc/core/Process").then((P) => { console.log(P.encode(P.self())); setInterval(() => {}, 1000) })`
              ],
              { stdio: ["ignore", "pipe", "inherit"] }
            )
          ),
          (spawned) => Effect.sync(() => spawned.kill("SIGKILL"))
        )
        const line = yield* Effect.callback<string>((resume) => {
          let out = ""
          child.stdout.on("data", (chunk: Buffer) => {
            out += chunk.toString()
            if (out.includes("\n")) resume(Effect.succeed(out.split("\n")[0]!))
          })
        })
        const recorded = Process.decode(line)!
        assert.notStrictEqual(Process.identify(recorded.pid)!.startTime, recorded.startTime)
        Fs.writeFileSync(`${dir}/elsewhen.lock`, `${line}:alive`)
        const error = yield* Effect.flip(Effect.scoped(Fifo.make().listen(`fifo://${dir}/elsewhen`)))
        assert.strictEqual(error.reason._tag, "AddressInUse")
        assert.include(error.detail, `pid ${recorded.pid}`)
        Fs.rmSync(`${dir}/elsewhen.lock`)
      }).pipe(Effect.scoped)
  )

  // a client the server closed on while it wrote, then killed: what it left in name.in was read as the start of
  // the next client's conversation (a Protocol error, or the earlier client's messages delivered as the next's)
  it.live(
    "a client that still reads name.out after its conversation takes none of the next client's replies",
    () =>
      Effect.gen(function*() {
        const base = `${dir}/lingering`
        const transport = Fifo.make()
        const listener = yield* transport.listen(`fifo://${base}`)
        yield* Effect.forkScoped(
          Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
        )
        // A's conversation is over, and A goes on reading its end of name.out
        const a = yield* start(python, [Path.join(import.meta.dirname, "fixtures/lingering.py"), base])
        yield* a.line(/^conversed$/)
        const b = yield* Effect.retry(transport.dial(`fifo://${base}`), {
          schedule: Schedule.spaced("20 millis").pipe(Schedule.upTo({ times: 100 })),
          while: (error) => error.reason._tag === "AddressInUse"
        })
        for (let i = 0; i < 50; i++) {
          const message = new TextEncoder().encode(`B ${i}`)
          yield* b.send(message)
          assert.deepStrictEqual(yield* b.receive.pipe(Effect.timeout("5 seconds")), message)
        }
        yield* a.finish
        assert.include(a.lines, "stole 0")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a client that goes on writing after the listener ended its conversation: none of it reaches the next one",
    () =>
      Effect.gen(function*() {
        const base = `${dir}/writing`
        const transport = Fifo.make()
        const listener = yield* transport.listen(`fifo://${base}`)
        // client A, from the README's protocol: claims the pair, says hello, then writes frames for ever,
        // through a full pipe (EAGAIN) and one without a reader (EPIPE) alike, on the descriptor it opened
        const writer = [
          "import os, struct, sys, time",
          "base = sys.argv[1]",
          "claimed = base + '.ready.' + str(os.getpid())",
          "os.rename(base + '.ready', claimed); os.unlink(claimed)",
          "w = os.open(base + '.in', os.O_WRONLY | os.O_NONBLOCK)",
          "r = os.open(base + '.out', os.O_RDONLY | os.O_NONBLOCK)",
          "frame = lambda kind, p=b'': struct.pack('>BBI', 1, kind, len(p)) + p",
          "os.write(w, frame(2))",
          "n = 0",
          "while True:",
          "    try:",
          "        os.write(w, frame(0, b'A%06d' % n)); n += 1",
          "    except (BlockingIOError, BrokenPipeError):",
          "        time.sleep(0.001)"
        ].join("\n")
        const a = ChildProcess.spawn("python3", ["-c", writer, base], { stdio: "ignore" })
        yield* Effect.addFinalizer(() => Effect.sync(() => a.kill("SIGKILL")))
        const serverA = yield* listener.accept
        assert.strictEqual(new TextDecoder().decode(yield* serverA.receive), "A000000")
        yield* serverA.close
        // A writes on; B comes next
        const b = yield* Effect.retry(transport.dial(`fifo://${base}`), {
          schedule: Schedule.spaced("20 millis").pipe(Schedule.upTo({ times: 100 })),
          while: (error) => error.reason._tag === "AddressInUse"
        })
        const serverB = yield* hangGuard(listener.accept, "accept of B")
        const got: Array<string> = []
        for (let i = 0; i < 20; i++) {
          yield* b.send(new TextEncoder().encode(`B ${i}`))
          got.push(new TextDecoder().decode(yield* serverB.receive.pipe(Effect.timeout("5 seconds"))))
        }
        assert.deepStrictEqual(got, Array.from({ length: 20 }, (_, i) => `B ${i}`))
        // the fresh FIFOs took the pair's names: none is left beside them
        assert.deepStrictEqual(Fs.readdirSync(dir).filter((f) => f.startsWith("writing.") && f.includes("fresh")), [])
      }).pipe(Effect.scoped),
    30_000
  )

  it.live("bytes an earlier client left in name.in never reach the next conversation", () =>
    Effect.gen(function*() {
      const base = `${dir}/leftover`
      const transport = Fifo.make()
      const listener = yield* transport.listen(`fifo://${base}`)
      // client A, written from the README's protocol: claim the pair, open both ends, hello, then 8 KiB frames
      const flood = [
        "import os, struct, sys, time",
        "base = sys.argv[1]",
        "claimed = base + '.ready.' + str(os.getpid())",
        "os.rename(base + '.ready', claimed); os.unlink(claimed)",
        "w = os.open(base + '.in', os.O_WRONLY)",
        "r = os.open(base + '.out', os.O_RDONLY | os.O_NONBLOCK)",
        "frame = lambda kind, p=b'': struct.pack('>BBI', 1, kind, len(p)) + p",
        "os.write(w, frame(2))",
        "n = 0",
        "while True:",
        "    os.write(w, frame(0, (b'A%06d' % n).ljust(8186, b'.'))); n += 1"
      ].join("\n")
      const a = ChildProcess.spawn("python3", ["-c", flood, base], { stdio: "ignore" })
      yield* Effect.addFinalizer(() => Effect.sync(() => a.kill("SIGKILL")))
      const serverA = yield* listener.accept
      assert.strictEqual(new TextDecoder().decode((yield* serverA.receive).subarray(0, 7)), "A000000")
      // the server is done with A while A goes on writing; then A dies
      yield* serverA.close
      yield* Effect.sleep("300 millis")
      a.kill("SIGKILL")
      yield* Effect.sleep("200 millis")
      const b = yield* transport.dial(`fifo://${base}`)
      yield* b.send(new Uint8Array([42]))
      const serverB = yield* listener.accept
      assert.deepStrictEqual([...(yield* serverB.receive.pipe(Effect.timeout("10 seconds")))], [42])
    }).pipe(Effect.scoped), 30_000)
})
