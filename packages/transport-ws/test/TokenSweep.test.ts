/**
 * `TokenFile.sweepDead` against token files of other processes, all real:
 * another user's files in a directory both users can write, and servers in
 * another pid namespace (`unshare --pid`) sharing the token directory;
 * damaged files (a listener in another process sweeps them, a client fails
 * with `Corrupt`, and any damage is one or the other); a file rewritten between
 * the sweep's judgement and its removal.
 */
import * as Process from "@effect-ipc/core/Process"
import * as Transport from "@effect-ipc/core/Transport"
import * as Ws from "@effect-ipc/transport-ws"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import fc from "fast-check"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Record from "../src/internal/record.ts"
import { envFor, freshAddress } from "./helpers.ts"

const root = Path.resolve(import.meta.dirname, "../../..")
const fixture = "packages/transport-ws/test/fixtures/token-peer.ts"
const node = ["bash", "scripts/node.sh", fixture] as const
const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] as const
const newPidNamespace = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] as const

/** Runs the fixture to its end (`prefix` runs it as another user, or in another namespace); its output. */
const runPeer = (prefix: ReadonlyArray<string>, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): string => {
  const [command, ...rest] = [...prefix, ...node, ...args]
  const ran = ChildProcess.spawnSync(command!, rest, {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, ...env }
  })
  assert.strictEqual(ran.status, 0, ran.stderr)
  return ran.stdout.trim()
}

/** A listener in a process of its own (with its default token file), until the scope closes; its pid and file. */
const listenInPeer = (command: ReadonlyArray<string>, address: string, env: NodeJS.ProcessEnv) =>
  Effect.gen(function*() {
    const [program, ...rest] = [...command, "listen", address]
    let out = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.spawn(program!, rest, {
          cwd: root,
          env: { ...process.env, ...env },
          stdio: ["pipe", "pipe", "inherit"]
        })
      ),
      (peer) =>
        Effect.sync(() => {
          peer.stdin!.end()
          peer.kill("SIGKILL")
        })
    )
    child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()))
    const ready = yield* Effect.suspend(() => {
      const match = /^ready (\d+) (.+)$/m.exec(out)
      return match === null ? Effect.fail("not yet") : Effect.succeed({ pid: Number(match[1]), file: match[2]! })
    }).pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "30 seconds" }))))
    return ready
  })

/** Whether a process has `pid` in this process's pid namespace. */
const runs = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return (cause as NodeJS.ErrnoException).code !== "ESRCH"
  }
}

/** A pid that no process has here (high in the range, where the kernel comes last). */
const freePid = (): number => {
  const max = Number(Fs.readFileSync("/proc/sys/kernel/pid_max", "utf8"))
  for (let pid = max - 1 - Math.floor(Math.random() * 1000); pid > 300; pid--) if (!runs(pid)) return pid
  throw new Error("no free pid")
}

/** A fresh directory, removed with the scope. */
const tempDir = (mode: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-sweep-"))
      Fs.chmodSync(dir, mode)
      return dir
    }),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

// switching to another uid (setpriv) and making pid namespaces (unshare) need root, as CI runs
describe.runIf(process.getuid?.() === 0 && process.platform === "linux")("sweepDead and other processes' files", () => {
  it.live(
    "another user's token file is never removed, nor by that user this user's (a directory both write)",
    () =>
      Effect.gen(function*() {
        // no sticky bit: only the sweep's own check of the owner keeps each user's files from the other
        const dir = yield* tempDir(0o777)
        const theirs = Path.join(dir, "ws-127.0.0.1-1~2ftheirs.token")
        const ours = Path.join(dir, "ws-127.0.0.1-2~2fours.token")
        // each written by a process that has since exited: a dead server's file, for its own user
        runPeer(asNobody, ["write", theirs])
        runPeer([], ["write", ours])
        assert.strictEqual(Fs.statSync(theirs).uid, 65534)
        assert.strictEqual(Fs.statSync(ours).uid, 0)
        assert.strictEqual(Ws.TokenFile.sweepDead(dir), 1, "root's sweep removes its own dead file, and only it")
        assert.isFalse(Fs.existsSync(ours))
        assert.isTrue(Fs.existsSync(theirs), "uid 65534's file stays")
        runPeer([], ["write", ours])
        assert.strictEqual(
          runPeer(asNobody, ["sweep", dir]),
          "removed 1",
          "uid 65534's sweep removes its own, and only it"
        )
        assert.isFalse(Fs.existsSync(theirs))
        assert.isTrue(Fs.existsSync(ours), "root's file stays")
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "a live server's file in another pid namespace is kept, though its pid is not running here",
    () =>
      Effect.gen(function*() {
        const xdg = yield* tempDir(0o700)
        // the server gets a pid that no process has in this namespace (set through its namespace's ns_last_pid)
        const pid = freePid()
        const inNamespace = [
          ...newPidNamespace,
          "sh",
          "-c",
          `echo $0 > /proc/sys/kernel/ns_last_pid && "$@"; exit $?`,
          String(pid - 1),
          ...node
        ]
        const server = yield* listenInPeer(inNamespace, freshAddress("pidns"), { XDG_RUNTIME_DIR: xdg })
        assert.strictEqual(server.pid, pid)
        assert.isFalse(runs(pid), "its pid is not running in this namespace")
        const token = Fs.readFileSync(server.file, "utf8").split("\n")[0]
        assert.strictEqual(Ws.TokenFile.sweepDead(Path.dirname(server.file)), 0)
        assert.isTrue(Fs.existsSync(server.file), "the live server's token file stays")
        assert.strictEqual(Ws.TokenFile.readIfPrivate(server.file), token, "and a client here reads its token")
      }).pipe(Effect.scoped),
    120_000
  )

  it.live("a sweeper in another pid namespace keeps a live server's file of this one", () =>
    Effect.gen(function*() {
      const xdg = yield* tempDir(0o700)
      const server = yield* listenInPeer(node, freshAddress("pidns-sweeper"), { XDG_RUNTIME_DIR: xdg })
      assert.isTrue(runs(server.pid))
      // in a fresh pid namespace the sweeper is pid 1 and no other pid runs: the server's would seem dead
      assert.strictEqual(runPeer(newPidNamespace, ["sweep", Path.dirname(server.file)]), "removed 0")
      assert.isTrue(Fs.existsSync(server.file), "the live server's token file stays")
    }).pipe(Effect.scoped), 120_000)
})

/**
 * The token of a token file's text if it is what `TokenFile.write` leaves (whitespace around a line aside): a
 * token and its server's identity, nothing else; `undefined` for anything else.
 */
const wellFormed = (text: string): string | undefined => {
  const lines = text.split("\n").map((line) => line.trim())
  if (lines.at(-1) === "") lines.pop()
  const [token = "", identity = ""] = lines
  return lines.length === 2 && /^[A-Za-z0-9._~-]{1,512}$/.test(token) &&
      /^[1-9][0-9]{0,9}(@[0-9]{1,10}\.[0-9]{1,10})?$/.test(identity)
    ? token
    : undefined
}

/** Writes `text` to `file` as `TokenFile.write` does (a whole file renamed into place), with mode 0600. */
const writeWhole = (file: string, text: string | Uint8Array): void => {
  const staging = `${file}.staging`
  Fs.writeFileSync(staging, text, { mode: 0o600 })
  Fs.renameSync(staging, file)
}

/** Sets `file`'s mtime `ms` into the past (a file written that long ago). */
const age = (file: string, ms: number): void => {
  const then = new Date(Date.now() - ms)
  Fs.utimesSync(file, then, then)
}

describe.runIf(process.platform === "linux")("damaged token files", () => {
  // (the sweep kept every file whose identity line it could not read, and clients used its token, forever)
  it.live(
    "a listener in another process removes damaged files a minute old or of a dead server, not younger ones",
    () =>
      Effect.gen(function*() {
        const xdg = yield* tempDir(0o700)
        const dir = Path.join(xdg, "effect-ipc")
        Fs.mkdirSync(dir, { mode: 0o700 })
        const file = (name: string) => Path.join(dir, `ws-127.0.0.1-1~2f${name}.token`)
        const damaged = {
          garbage: "\u0000\u00ff\ufffdnot a token file at all",
          truncated: "tokentokentoken\n12",
          bareToken: "tokentokentoken\n",
          badIdentity: "tokentokentoken\npid@start.ns\n",
          tooLong: `tokentokentoken\n1@2.3\n${"x".repeat(70_000)}\n`
        }
        for (const [name, text] of Object.entries(damaged)) {
          writeWhole(file(name), text)
          age(file(name), 120_000)
        }
        // damaged but young (its writer may not be done with it), and damaged with a dead server's identity
        writeWhole(file("young"), "tokentokentoken\n")
        writeWhole(file("deadIdentity"), `!!!\n${freePid()}\n`)
        // a live server's file (this process), however old
        writeWhole(file("live"), `tokentokentoken\n${Process.encode(Process.self())}\n`)
        age(file("live"), 120_000)
        // what a process killed mid-write (a staging file) or mid-removal (a file set aside) left, a minute old,
        // and the same just written (a writer may be at it now)
        const leftovers = [`${file("staged")}.4242.0badcafe`, `${file("aside")}.4242.0badcafe.removing`]
        const fresh = [`${file("staging")}.4243.0badcafe`, `${file("setting")}.4243.0badcafe.removing`]
        for (const name of [...leftovers, ...fresh]) writeWhole(name, "tokentokentoken\n1@2.3\n")
        for (const name of leftovers) age(name, 120_000)
        yield* listenInPeer(node, freshAddress("damaged"), { XDG_RUNTIME_DIR: xdg })
        for (const name of [...Object.keys(damaged), "deadIdentity"]) {
          assert.isFalse(Fs.existsSync(file(name)), `${name}: removed by the listener's sweep`)
        }
        for (const name of leftovers) assert.isFalse(Fs.existsSync(name), `${name}: a leftover a minute old, removed`)
        for (const name of fresh) assert.isTrue(Fs.existsSync(name), `${name}: a fresh one stays`)
        assert.isTrue(Fs.existsSync(file("young")), "a damaged file under a minute old stays")
        assert.isTrue(Fs.existsSync(file("live")), "a live server's file stays")
      }).pipe(Effect.scoped),
    120_000
  )

  it.live("a client given a damaged token file fails with Corrupt naming the file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir(0o700)
      const tokenFile = Path.join(dir, "token")
      for (const text of ["tokentokentoken\ngarbage\n", "tokentokentoken\n", "\u0000\n1@2.3\n", ""]) {
        writeWhole(tokenFile, text)
        const error = yield* Effect.flip(Ws.WsTransport.make({ tokenFile }).dial(freshAddress("damaged-client")))
        assert.strictEqual(error.reason._tag, "Corrupt", `${JSON.stringify(text)}: ${error.message}`)
        assert.include(error.message, tokenFile)
      }
    }).pipe(Effect.scoped))

  // (a damaged file in the runtime directory failed the dial even with a valid token in ~/.cache/effect-ipc)
  it.live("a damaged file in one token directory gives way to a valid token in the other; Corrupt when none", () =>
    Effect.gen(function*() {
      const xdg = yield* tempDir(0o700)
      const home = yield* tempDir(0o700)
      yield* envFor("XDG_RUNTIME_DIR", xdg)
      yield* envFor("HOME", home)
      const runtime = Path.join(xdg, "effect-ipc")
      const cache = Path.join(home, ".cache", "effect-ipc")
      Fs.mkdirSync(runtime, { mode: 0o700 })
      Fs.mkdirSync(cache, { recursive: true, mode: 0o700 })
      const address = freshAddress("damaged-first")
      const parsed = yield* Ws.WsAddress.parse(address)
      const damaged = Ws.TokenFile.pathIn(runtime, parsed)
      writeWhole(damaged, "tokentokentoken\n")
      // no valid token anywhere: the damaged file is named
      const none = yield* Effect.flip(Ws.WsTransport.make().dial(address))
      assert.strictEqual(none.reason._tag, "Corrupt", none.message)
      assert.include(none.message, damaged)
      // a listener whose token file is in ~/.cache/effect-ipc: the client finds it there and connects
      const listener = yield* Ws.WsServer.listen(address, { tokenFile: Ws.TokenFile.pathIn(cache, parsed) })
      yield* Effect.forkScoped(
        Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
      )
      const client = yield* Ws.WsTransport.make().dial(address)
      yield* client.send(new Uint8Array([7]))
      assert.strictEqual((yield* client.receive)[0], 7)
      // the same with the damage in ~/.cache/effect-ipc and the valid token in the runtime directory
      Fs.renameSync(listener.tokenFile!, damaged)
      writeWhole(Ws.TokenFile.pathIn(cache, parsed), "\u0000\n1@2.3\n")
      assert.strictEqual(yield* Ws.TokenFile.find(parsed), listener.token)
    }).pipe(Effect.scoped))

  it("every damage of a token file is removed by the sweep (a minute on) or read as a live record, never a crash", () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-damage-"))
    Fs.chmodSync(dir, 0o700)
    const file = Path.join(dir, "ws-127.0.0.1-1~2fx.token")
    const good = Buffer.from(`${Ws.TokenFile.generate()}\n${Process.encode(Process.self())}\n`)
    const damage = fc.oneof(
      fc.nat(good.length).map((n) => good.subarray(0, n)),
      fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })).map(([at, byte]) => {
        const copy = Buffer.from(good)
        copy[at] = byte
        return copy
      }),
      fc.tuple(fc.nat(good.length), fc.uint8Array({ maxLength: 40 })).map(([at, bytes]) =>
        Buffer.concat([good.subarray(0, at), bytes, good.subarray(at)])
      ),
      fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes))
    )
    try {
      fc.assert(
        fc.property(damage, fc.boolean(), (bytes, old) => {
          writeWhole(file, bytes)
          if (old) age(file, 120_000)
          const read = Effect.runSync(Effect.result(Ws.TokenFile.read(file)))
          if (read._tag === "Failure") {
            assert.strictEqual(read.failure.reason._tag, "Corrupt")
            assert.include(read.failure.message, file)
          }
          Ws.TokenFile.sweepDead(dir)
          if (!Fs.existsSync(file)) return
          // what stays is a record, whose server runs, or damage still in its first minute
          const text = Fs.readFileSync(file, "utf8")
          const token = wellFormed(text)
          if (old) assert.isDefined(token, `kept: ${JSON.stringify(text)}`)
          if (token !== undefined) assert.strictEqual(Ws.TokenFile.readIfPrivate(file), token)
        }),
        { numRuns: 300 }
      )
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe.runIf(process.platform === "linux")("the sweep and a server writing its file meanwhile", () => {
  // (the sweep read a dead server's file, then removed whatever had the name: the file a server restarted at the
  // same address had written in between, its clients then without its token)
  it.live("a live server's file written between the sweep's read and its removal stays", () =>
    Effect.gen(function*() {
      const xdg = yield* tempDir(0o700)
      const address = freshAddress("restarted")
      const server = yield* listenInPeer(node, address, { XDG_RUNTIME_DIR: xdg })
      const liveText = Fs.readFileSync(server.file)
      const token = liveText.toString().split("\n")[0]
      // the file a dead server (a process that has exited) left at the address before this one
      runPeer([], ["write", server.file, "token-of-a-dead-server"])
      assert.isUndefined(Ws.TokenFile.readIfPrivate(server.file), "dead")
      let interleaved = 0
      const swept = Record.sweep(Path.dirname(server.file), (file) => {
        // the live server writes its file again (as it does when it starts), after the sweep judged the dead one
        if (file === server.file) {
          writeWhole(file, liveText)
          interleaved++
        }
      })
      assert.strictEqual(interleaved, 1)
      assert.strictEqual(swept.removed, 0)
      assert.isTrue(Fs.existsSync(server.file), "the live server's file stays")
      assert.strictEqual(Ws.TokenFile.readIfPrivate(server.file), token)
      assert.deepStrictEqual(
        Fs.readdirSync(Path.dirname(server.file)),
        [Path.basename(server.file)],
        "nothing else left behind"
      )
    }).pipe(Effect.scoped), 120_000)
})

describe("the sweep and a directory made at a file's name meanwhile", () => {
  // (the directory was set aside, its link back refused, and its removal threw out of the sweep: out of a listen or
  // a listener's close, the directory left under the set-aside name)
  it.live("is put back whole, and the sweep goes on", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir(0o700)
      const file = Path.join(dir, "ws-127.0.0.1-8080~2fx.token")
      // the file a dead server (a process that has exited) left
      runPeer([], ["write", file, "token-of-a-dead-server"])
      const swept = Record.sweep(dir, (judged) => {
        if (judged !== file) return
        Fs.rmSync(judged)
        Fs.mkdirSync(judged)
        Fs.writeFileSync(Path.join(judged, "kept"), "kept\n")
      })
      assert.strictEqual(swept.removed, 0)
      assert.strictEqual(Fs.readFileSync(Path.join(file, "kept"), "utf8"), "kept\n")
      assert.deepStrictEqual(Fs.readdirSync(dir), [Path.basename(file)], "nothing else left behind")
    }).pipe(Effect.scoped))
})

describe("token files of long names", () => {
  // the sweep and a closing listener set a file aside under its name and `.<pid>.<hex>.removing`: 9 bytes longer
  // than the name `write` stages under, so a name of 230 to 238 bytes was written but never removed
  it.live(
    "one as long as `write` takes is removed by its closing listener and, its server dead, by the sweep",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir(0o700)
        for (const length of [200, 229, 230, 235, 238]) {
          const file = Path.join(dir, `ws-127.0.0.1-8080${"a".repeat(length - 23)}.token`)
          assert.strictEqual(Path.basename(file).length, length)
          const token = Ws.TokenFile.generate()
          yield* Ws.TokenFile.write(file, token)
          Ws.TokenFile.removeIfOurs(file, token)
          assert.isFalse(Fs.existsSync(file), `${length} bytes: removed as its listener closes`)
          // the file a dead server (a process that has exited) left
          runPeer([], ["write", file, "token-of-a-dead-server"])
          assert.strictEqual(Ws.TokenFile.sweepDead(dir), 1, `${length} bytes: swept`)
          assert.deepStrictEqual(Fs.readdirSync(dir), [], `${length} bytes: nothing left behind`)
        }
      }).pipe(Effect.scoped),
    120_000
  )
})
