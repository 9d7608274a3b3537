/**
 * The security model of the README, tried as another user (uid 65534 via
 * setpriv; CI runs as root). Every refusal is asserted by its exact typed
 * reason or errno, never by matching any "Permission denied" text.
 */
import * as Transport from "@effect-ipc/core/Transport"
import { ChildPipe, Fifo, SocketPath, UnixSocket } from "@effect-ipc/transport-pipe"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import {
  hangGuard,
  isRoot,
  nobody,
  node,
  nodeFixture,
  python,
  pythonPeer,
  run,
  squatter,
  start,
  tempDir,
  waitFor
} from "./helpers.ts"

const swapFresh = Path.join(import.meta.dirname, "fixtures/swap_fresh.py")

/** Python: takes an exclusive flock on the file argv[1], says "locked", holds it until its stdin ends. */
const holdLock = "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n" +
  "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\nsys.stdin.read()"

/** Python: renames argv[1] (adding ".mine"); prints "renamed" or the errno's name. */
const renameIt = "import errno, os, sys\ntry:\n    os.rename(sys.argv[1], sys.argv[1] + '.mine')\n" +
  "    print('renamed')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])"

/** An echo server at `address`; returns how many channels it was handed. */
const echo = (transport: Transport.TransportShape, address: string) =>
  Effect.gen(function*() {
    const listener = yield* transport.listen(address)
    const accepted = { count: 0 }
    yield* Effect.forkScoped(
      Transport.serve(listener, (channel) => {
        accepted.count++
        return Effect.forever(Effect.flatMap(channel.receive, channel.send))
      })
    )
    return accepted
  })

/** Runs the squatter's one-shot mode as `uid`; returns its single output line. */
const probeAs = (uid: number, mode: "probe" | "open", target: string) =>
  Effect.map(run(python, [squatter, mode, target], { uid }), (r) => {
    assert.strictEqual(r.status, 0, r.stderr)
    return r.stdout.toString().trim()
  })

/** Points `pipe://` at a fresh runtime directory for the test's scope. */
const privateRuntime = Effect.gen(function*() {
  const xdg = yield* tempDir("effect-ipc-xdg-", 0o700)
  const saved = process.env["XDG_RUNTIME_DIR"]
  process.env["XDG_RUNTIME_DIR"] = xdg
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      if (saved === undefined) delete process.env["XDG_RUNTIME_DIR"]
      else process.env["XDG_RUNTIME_DIR"] = saved
    })
  )
  return xdg
})

/** The descriptors of this process open on a FIFO of uid 65534 (Linux). */
const foreignFifos = () =>
  Fs.readdirSync("/proc/self/fd").filter((fd) => {
    try {
      const stat = Fs.fstatSync(Number(fd))
      return stat.isFIFO() && stat.uid === nobody
    } catch {
      return false
    }
  })

let n = 0
const unique = (what: string) => `effect-ipc-${what}-${process.pid}-${n++}`

/**
 * For the scope, XDG_RUNTIME_DIR unset and the temp directory (TMPDIR) a shared sticky directory where uid 65534
 * made `effect-ipc-<uid>` first: the one place another user can make this user's runtime directory first (an
 * XDG_RUNTIME_DIR that others may write, or another user's, is not used: SocketPath.test.ts).
 */
const runtimeDirOfNobody = Effect.gen(function*() {
  const shared = yield* tempDir("effect-ipc-tmp-", 0o1777)
  const saved = { xdg: process.env["XDG_RUNTIME_DIR"], tmp: process.env["TMPDIR"] }
  delete process.env["XDG_RUNTIME_DIR"]
  process.env["TMPDIR"] = shared
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      if (saved.xdg === undefined) delete process.env["XDG_RUNTIME_DIR"]
      else process.env["XDG_RUNTIME_DIR"] = saved.xdg
      if (saved.tmp === undefined) delete process.env["TMPDIR"]
      else process.env["TMPDIR"] = saved.tmp
    })
  )
  const runtime = Path.join(shared, `effect-ipc-${process.getuid!()}`)
  assert.strictEqual(SocketPath.runtimeDirOn(SocketPath.currentHost()), runtime)
  const made = yield* run("mkdir", ["-m", "0700", runtime], { uid: nobody })
  assert.strictEqual(made.status, 0, made.stderr)
})

describe("Unix socket security: same user", () => {
  it.live("creates the socket file with mode 0600, or the mode asked for", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-sec-")
      const a = Path.join(dir, "mode-a.sock")
      const b = Path.join(dir, "mode-b.sock")
      yield* UnixSocket.make().listen(`unix://${a}`)
      yield* UnixSocket.make({ mode: 0o660 }).listen(`unix://${b}`)
      assert.strictEqual(Fs.statSync(a).mode & 0o777, 0o600)
      assert.strictEqual(Fs.statSync(b).mode & 0o777, 0o660)
      // no staging directory is left behind
      assert.deepStrictEqual(Fs.readdirSync(dir).filter((f) => f.startsWith(".eipc-")), [])
    }).pipe(Effect.scoped))

  // a decimal 600 in code was taken as 0o1130 (sticky, and the group may write: connect, or write a FIFO)
  it.live("a mode that is not permission bits (a decimal 600, NaN) is InvalidOption; nothing is made", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-sec-")
      // pipe:// made its runtime directory before the mode was checked
      const xdg = yield* privateRuntime
      for (const mode of [600, Number.NaN, -1, 0o7777, 1.5]) {
        const errors = [
          yield* Effect.flip(Effect.scoped(UnixSocket.make({ mode }).listen(`unix://${dir}/m.sock`))),
          yield* Effect.flip(Effect.scoped(UnixSocket.make({ mode }).listen(`pipe://${unique("mode")}`))),
          yield* Effect.flip(Effect.scoped(Fifo.make({ mode }).listen(`fifo://${dir}/pair`)))
        ]
        for (const error of errors) {
          assert.strictEqual(error.reason._tag, "InvalidOption", `${mode}: ${error.message}`)
          assert.include(error.detail, "is not permission bits")
        }
      }
      assert.deepStrictEqual(Fs.readdirSync(dir), [])
      assert.deepStrictEqual(Fs.readdirSync(xdg), [])
    }).pipe(Effect.scoped))

  it.live("puts each side's pid, uid and gid on the channel", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-sec-")
      const transport = UnixSocket.make()
      const address = `unix://${Path.join(dir, "cred.sock")}`
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      for (const peer of [client.peer, server.peer]) {
        assert.strictEqual(peer.pid, process.pid)
        assert.strictEqual(peer.uid, process.getuid!())
        assert.strictEqual(peer.gid, process.getgid!())
      }
    }).pipe(Effect.scoped))

  it.live("puts pipe://name sockets in a private runtime directory; refuses a bad name", () =>
    Effect.gen(function*() {
      yield* privateRuntime
      const name = unique("pipe")
      const { path } = yield* SocketPath.resolve(`pipe://${name}`)
      const transport = UnixSocket.make()
      yield* echo(transport, `pipe://${name}`)
      const stat = Fs.statSync(Path.dirname(path))
      assert.strictEqual(stat.mode & 0o777, 0o700)
      assert.strictEqual(stat.uid, process.getuid!())
      const client = yield* transport.dial(`pipe://${name}`)
      yield* client.send(new Uint8Array([5]))
      assert.deepStrictEqual([...(yield* client.receive)], [5])
      const bad = yield* Effect.flip(SocketPath.resolve("pipe://../../etc/passwd"))
      assert.strictEqual(bad.reason._tag, "InvalidAddress")
    }).pipe(Effect.scoped))

  it.live("pipe://: a runtime directory of this user that others may enter (0755), or a link to one: PermissionDenied", () =>
    Effect.gen(function*() {
      const xdg = yield* privateRuntime
      const runtime = Path.join(xdg, "effect-ipc")
      const elsewhere = yield* tempDir("effect-ipc-private-", 0o700)
      const cases = [
        ["0755", () => Fs.mkdirSync(runtime, { mode: 0o755 })],
        ["a link to a private directory", () => Fs.symlinkSync(elsewhere, runtime)]
      ] as const
      for (const [what, make] of cases) {
        make()
        Fs.chmodSync(xdg, 0o700)
        const transport = UnixSocket.make()
        for (
          const attempt of [Effect.asVoid(transport.listen("pipe://x")), Effect.asVoid(transport.dial("pipe://x"))]
        ) {
          const error = yield* Effect.flip(Effect.scoped(attempt))
          assert.strictEqual(error.reason._tag, "PermissionDenied", `${what}: ${error.message}`)
          assert.include(error.detail, "is not a private directory of this user")
        }
        Fs.rmSync(runtime, { recursive: true })
      }
      assert.deepStrictEqual(Fs.readdirSync(elsewhere), [], "nothing was made through the link")
    }).pipe(Effect.scoped))

  it.live("the default authorize admits this user and root, nobody else", () =>
    Effect.sync(() => {
      assert.isTrue(UnixSocket.sameUserOrRoot({ uid: process.getuid!() }))
      assert.isTrue(UnixSocket.sameUserOrRoot({ uid: 0 }))
      assert.isFalse(UnixSocket.sameUserOrRoot({ uid: 4242 }))
      assert.isFalse(UnixSocket.sameUserOrRoot({}), "unknown credentials are refused")
      // what listen and dial check with when no authorize is given
      const byDefault = UnixSocket.authorizerOf(undefined)
      assert.isTrue(byDefault({ uid: process.getuid!() }))
      assert.isTrue(byDefault({ uid: 0 }))
      assert.isFalse(byDefault({ uid: 4242 }))
      assert.isFalse(byDefault({}), "unknown credentials are refused")
    }))
})

describe.runIf(isRoot)("listen, against a client of another user (uid 65534)", () => {
  it.live("cannot connect to a 0600 socket file: EACCES", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-sec-")
      const path = Path.join(dir, "private.sock")
      const accepted = yield* echo(UnixSocket.make(), `unix://${path}`)
      assert.strictEqual(yield* probeAs(nobody, "probe", path), "connect-error EACCES")
      assert.strictEqual(accepted.count, 0)
    }).pipe(Effect.scoped))

  it.live("is refused on an abstract socket (no file mode) by its credentials; the server keeps serving", () =>
    Effect.gen(function*() {
      const name = unique("abstract")
      const transport = UnixSocket.make()
      const accepted = yield* echo(transport, `unix:@${name}`)
      assert.oneOf(yield* probeAs(nobody, "probe", `@${name}`), ["eof", "reset"])
      assert.strictEqual(accepted.count, 0, "the refused peer never became a channel")
      const client = yield* transport.dial(`unix:@${name}`)
      yield* client.send(new Uint8Array([1]))
      assert.deepStrictEqual([...(yield* client.receive)], [1])
    }).pipe(Effect.scoped))

  // a throwing authorize left the listener's accept waiting for ever, and the client's dial succeeded
  it.live("an authorize that throws refuses the peer, and the listener goes on", () =>
    Effect.gen(function*() {
      const name = unique("throws")
      let calls = 0
      const transport = UnixSocket.make({
        authorize: (peer) => {
          if (calls++ === 0) throw new Error("a bug in the user's authorize")
          return peer.uid === process.geteuid!()
        }
      })
      const listener = yield* transport.listen(`unix:@${name}`)
      const refused = yield* run(python, [pythonPeer, `@${name}`, "hi"])
      assert.notStrictEqual(refused.status, 0, "the first peer was refused")
      const client = yield* UnixSocket.make().dial(`unix:@${name}`)
      const server = yield* listener.accept.pipe(Effect.timeout("10 seconds"), Effect.orDie)
      yield* client.send(new Uint8Array([5]))
      assert.deepStrictEqual([...(yield* server.receive)], [5])
    }).pipe(Effect.scoped))

  it.live("is served when authorize says so", () =>
    Effect.gen(function*() {
      const name = unique("auth")
      yield* echo(UnixSocket.make({ authorize: (peer) => peer.uid === nobody }), `unix:@${name}`)
      const result = yield* run(python, [pythonPeer, `@${name}`, "hi"], { uid: nobody })
      assert.strictEqual(result.status, 0, result.stderr)
      assert.strictEqual(result.stdout.toString(), "hi\nclosed\n")
    }).pipe(Effect.scoped))

  it.live("cannot open a FIFO pair's 0600 FIFOs: EACCES", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-sec-", 0o755)
      const base = Path.join(dir, "pair")
      yield* Fifo.make().listen(`fifo://${base}`)
      assert.strictEqual(yield* probeAs(nobody, "open", `${base}.in`), "open-error EACCES")
    }).pipe(Effect.scoped))

  // the listener opens name.in afresh after each conversation, and name.out on each hello, by path: it
  // opened another user's FIFOs put there (a writable directory), took their hello and wrote to them
  it.live("fifo://: FIFOs another user swaps in between two conversations are never opened for a peer", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-sec-", 0o777)
      const base = Path.join(dir, "pair")
      const transport = Fifo.make()
      const outer = yield* Effect.scope
      const swap = yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* transport.listen(`fifo://${base}`)
        const client = yield* transport.dial(`fifo://${base}`)
        yield* listener.accept
        // it outlives the listener, to say what it received
        const swapper = yield* Scope.provide(start(python, [squatter, "swap", base], { uid: nobody }), outer)
        yield* swapper.line(/^swapped$/)
        yield* client.close
        // the pair is no longer the listener's: it stops, typed, rather than serve whoever put it there
        const error = yield* Effect.flip(hangGuard(listener.accept, "accept"))
        assert.strictEqual(error.reason._tag, "AddressInUse", error.message)
        // name.out is looked at first (does the last client still read it?), then name.in is opened
        assert.match(error.detail, new RegExp(`^${base}\\.(in|out) is no longer the FIFO this listener made`))
        assert.include(error.detail, `uid ${nobody}`)
        return swapper
      }))
      assert.strictEqual((yield* swap.finish).at(-1), "bytes 0", "nothing was written to the other user's FIFO")
      for (const suffix of [".in", ".out"]) {
        assert.strictEqual(Fs.lstatSync(`${base}${suffix}`).uid, nobody, `their ${suffix} is left, the listener closed`)
      }
    }).pipe(Effect.scoped))

  // between conversations the listener renames fresh FIFOs over the pair: it looked before, and a file swapped
  // in after the look was unlinked by the rename, while the listener served on
  it.live.runIf(isRoot)(
    "fifo://: another user swapping its file in while the listener renews the pair: the file stays where it was put, and the listener stops",
    () =>
      Effect.gen(function*() {
        for (const which of ["out", "in"]) {
          const dir = yield* tempDir("effect-ipc-sec-", 0o777)
          const base = Path.join(dir, "pair")
          const address = `fifo://${base}`
          // each mkfifo of the listener's takes 300 ms more (strace), as on a loaded machine: the swap's window
          const listener = yield* start("/usr/bin/strace", [
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=mknodat",
            "-e",
            "inject=mknodat:delay_exit=300000",
            node,
            ...nodeFixture("listen.ts"),
            address
          ])
          yield* listener.line(/^armed$/)
          yield* listener.say("go")
          yield* listener.line(/^won$/)
          const swapper = yield* start(python, [swapFresh, base, which], { uid: nobody })
          yield* swapper.line(/^watching$/)
          // a conversation, whose end has the listener renew the pair
          yield* Effect.scoped(Effect.gen(function*() {
            const client = yield* Fifo.make().dial(address)
            yield* client.send(new Uint8Array([1]))
            assert.deepStrictEqual([...(yield* hangGuard(client.receive, "echo"))], [1])
          }))
          assert.strictEqual(yield* swapper.line(/^swap/), "swapped", which)
          const error = yield* Effect.flip(hangGuard(Fifo.make().dial(address), "dial after the swap"))
          assert.strictEqual(error.reason._tag, "AddressInUse", `${which}: ${error.message}`)
          const there = Fs.lstatSync(`${base}.${which}`)
          assert.isTrue(there.isFile() && there.uid === nobody, `${which}: their file is where they put it`)
          assert.strictEqual(Fs.readFileSync(`${base}.${which}`, "utf8"), "their file")
          assert.deepStrictEqual(Fs.readdirSync(dir).filter((f) => f.includes("fresh")), [], "no fresh FIFO left")
        }
      }).pipe(Effect.scoped),
    60_000
  )

  // mkfifo, then a look at the path: the FIFO found there (another user's, swapped in between) was taken for ours
  it.live(
    "fifo://: another user swapping FIFOs in while listen makes them (a rename and mkfifo loop): listen holds only its own",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-sec-", 0o777)
        const base = Path.join(dir, "pair")
        const transport = Fifo.make()
        const swapper = yield* start(python, [squatter, "swapper", base], { uid: nobody })
        yield* swapper.line(/^ready$/)
        const outcomes = new Map<string, number>()
        for (let round = 0; round < 150; round++) {
          const result = yield* Effect.result(Effect.scoped(Effect.gen(function*() {
            yield* transport.listen(`fifo://${base}`)
            assert.deepStrictEqual(foreignFifos(), [], `round ${round}: the listener holds another user's FIFO`)
          })))
          const outcome = result._tag === "Success" ? "listening" : result.failure.reason._tag
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
          // what the swapper left where the next listen looks: its FIFOs (ours it moved aside stay)
          for (const suffix of [".in", ".out"]) {
            if (Fs.lstatSync(`${base}${suffix}`, { throwIfNoEntry: false })?.uid === nobody) {
              Fs.rmSync(`${base}${suffix}`, { force: true })
            }
          }
        }
        const swaps = Number((yield* swapper.finish).at(-1)!.split(" ")[1])
        assert.isAbove(swaps, 0, "the swapper swapped")
        for (const outcome of outcomes.keys()) {
          assert.oneOf(outcome, ["listening", "AddressInUse"], JSON.stringify([...outcomes]))
        }
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("squatting an abstract name first makes listen fail typed (AddressInUse), nothing else", () =>
    Effect.gen(function*() {
      const name = unique("squat")
      const squat = yield* start(python, [squatter, "unix", `@${name}`], { uid: nobody })
      yield* squat.line(/^ready$/)
      const error = yield* Effect.flip(Effect.scoped(UnixSocket.make().listen(`unix:@${name}`)))
      assert.strictEqual(error.reason._tag, "AddressInUse")
    }).pipe(Effect.scoped))

  it.live("a runtime directory made by another user is refused for pipe:// (PermissionDenied)", () =>
    Effect.gen(function*() {
      yield* runtimeDirOfNobody
      const transport = UnixSocket.make()
      const attempts = [Effect.asVoid(transport.listen("pipe://x")), Effect.asVoid(transport.dial("pipe://x"))]
      for (const attempt of attempts) {
        const error = yield* Effect.flip(Effect.scoped(attempt))
        assert.strictEqual(error.reason._tag, "PermissionDenied")
        assert.include(error.detail, "is not a private directory of this user")
      }
    }).pipe(Effect.scoped))

  // fifo:// and the replacement of a stale socket take a lock in a directory only this user can write; with
  // the runtime directory taken by another user first they fell back to nothing: PermissionDenied everywhere
  it.live("a runtime directory made by another user does not stop fifo:// or replacing our own stale socket", () =>
    Effect.gen(function*() {
      yield* runtimeDirOfNobody
      const own = yield* tempDir("effect-ipc-own-", 0o700)

      const fifo = Fifo.make()
      yield* fifo.listen(`fifo://${own}/pair`)
      const client = yield* fifo.dial(`fifo://${own}/pair`)
      yield* client.send(new Uint8Array([7]))

      // a dead server's socket of this user: bound, never listened on, its process gone
      const stale = Path.join(own, "stale.sock")
      const bound = yield* run(python, [
        "-c",
        `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`
      ])
      assert.strictEqual(bound.status, 0, bound.stderr)
      assert.isTrue(Fs.lstatSync(stale).isSocket())
      yield* UnixSocket.make().listen(`unix://${stale}`)
      const dialled = yield* UnixSocket.make().dial(`unix://${stale}`)
      assert.strictEqual(dialled.address, `unix://${stale}`)
    }).pipe(Effect.scoped))

  // without such a home (a service account's is often /nonexistent, or root's) the error named the runtime directory
  // alone, for a fifo:// listen in a directory of one's own: the way out is XDG_RUNTIME_DIR
  it.live.runIf(isRoot)(
    "another user's runtime directory and no home for locks: PermissionDenied naming both and XDG_RUNTIME_DIR",
    () =>
      Effect.gen(function*() {
        const home = ChildProcess.execFileSync("getent", ["passwd", String(nobody)], { encoding: "utf8" }).split(
          ":"
        )[5]!
        assert.isFalse(Fs.existsSync(home) && Fs.statSync(home).uid === nobody, `nobody's home ${home} is not theirs`)
        const shared = yield* tempDir("effect-ipc-tmp-", 0o1777)
        Fs.mkdirSync(Path.join(shared, `effect-ipc-${nobody}`), { mode: 0o700 }) // made by root first
        const own = yield* tempDir("effect-ipc-own-", 0o700)
        const xdg = Path.join(own, "xdg")
        Fs.mkdirSync(xdg, { mode: 0o700 })
        Fs.chownSync(own, nobody, nobody)
        Fs.chownSync(xdg, nobody, nobody)
        const listen = (env: ReadonlyArray<string>) =>
          run("env", [
            "-u",
            "XDG_RUNTIME_DIR",
            `TMPDIR=${shared}`,
            ...env,
            node,
            ...nodeFixture("listen.ts"),
            `fifo://${own}/pair`
          ], {
            uid: nobody,
            input: new TextEncoder().encode("go\n")
          })
        const refused = (yield* listen([])).stdout.toString()
        assert.match(refused, /^lost PermissionDenied: /m, refused)
        assert.include(refused, `effect-ipc-${nobody} is not a private directory of this user`)
        assert.include(refused, `nor is the home directory (${home})`)
        assert.include(refused, "set XDG_RUNTIME_DIR to a private directory of this user")
        assert.deepStrictEqual(Fs.readdirSync(own), ["xdg"], "nothing was made")
        // the way out it names
        const served = (yield* listen([`XDG_RUNTIME_DIR=${xdg}`])).stdout.toString()
        assert.match(served, /^won$/m, served)
      }).pipe(Effect.scoped),
    60_000
  )

  // a user who may rename entries in the socket's directory (shared, not sticky) swaps the listener's staging
  // directory for one of theirs, before or after the socket is bound in it, and puts a link to a file of root's
  // where the socket is: with paths, root's chmod followed the link (the file took the socket's mode) and the
  // link was linked into place. strace holds the listener's mkdir and bind a second each: the attacker's moments
  for (const when of ["before", "after"] as const) {
    it.live(
      `unix://: the staging directory swapped ${when} the socket is bound in it: no chmod or link of theirs`,
      () =>
        Effect.gen(function*() {
          const dir = yield* tempDir("effect-ipc-sec-", 0o777)
          const target = Path.join(yield* tempDir("effect-ipc-target-"), "precious")
          Fs.writeFileSync(target, "root's", { mode: 0o644 })
          const path = Path.join(dir, "srv.sock")
          const attacker = yield* start(python, [squatter, `stage-${when}`, `${dir}:${target}`], { uid: nobody })
          const strace = ["-f", "-qq", "-o", "/dev/null", "-e", "trace=mkdir,mkdirat,bind"]
          const delays = ["-e", "inject=mkdir,mkdirat,bind:delay_exit=1000000"]
          const listener = yield* start("strace", [
            ...strace,
            ...delays,
            node,
            ...nodeFixture("listen.ts"),
            `unix://${path}`
          ])
          yield* listener.line(/^armed$/)
          yield* listener.say("go")
          if (when === "after") {
            // the attacker cannot look inside the listener's directory: it is told once the socket is bound there
            yield* attacker.line(/^seen$/)
            const bound = () =>
              Fs.readdirSync(dir).some((name) => name.startsWith(".eipc-") && Fs.existsSync(Path.join(dir, name, "s")))
            while (!bound()) yield* Effect.sleep("2 millis")
            yield* attacker.say("swap")
          }
          const outcome = yield* listener.line(/^(won|lost .*)$/)
          yield* attacker.line(/^moved$/)
          assert.strictEqual((Fs.statSync(target).mode & 0o777).toString(8), "644", "root's file keeps its mode")
          if (outcome === "won") {
            const stat = Fs.lstatSync(path)
            assert.isTrue(stat.isSocket(), "the listener's own socket is linked into place, not their link")
            assert.deepStrictEqual([stat.uid, stat.mode & 0o777], [0, 0o600])
            const client = yield* UnixSocket.make().dial(`unix://${path}`)
            yield* client.send(new Uint8Array([1, 2]))
            assert.deepStrictEqual([...(yield* client.receive)], [1, 2])
          } else {
            assert.match(outcome, /^lost PermissionDenied: .* was replaced as the socket was to be bound in it/)
            assert.isFalse(Fs.existsSync(path), "nothing is linked into place")
          }
          // swapped before the bind, the listener is refused; after it, it is served
          assert.strictEqual(outcome.split(" ")[0], when === "before" ? "lost" : "won")
          yield* listener.finish
        }).pipe(Effect.scoped),
      60_000
    )
  }
})

/** Dials `address` (served by the squatter `squat`); asserts PeerRejected and that it got 0 bytes. */
const refusedAndSilent = (
  address: string,
  squat: Effect.Success<ReturnType<typeof start>>,
  dial: Transport.TransportShape["dial"] = UnixSocket.make().dial
) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Effect.scoped(dial(address)))
    assert.strictEqual(error.reason._tag, "PeerRejected", error.message)
    assert.include(error.detail, `uid ${nobody}`)
    const lines = yield* squat.finish
    assert.strictEqual(lines.at(-1), "bytes 0", "the squatter received nothing")
  })

describe.runIf(isRoot)("dial, against a server of another user (uid 65534)", () => {
  it.live("an abstract name taken first (unix:@name): PeerRejected before any byte", () =>
    Effect.gen(function*() {
      const name = unique("taken")
      const squat = yield* start(python, [squatter, "unix", `@${name}`], { uid: nobody })
      yield* squat.line(/^ready$/)
      yield* refusedAndSilent(`unix:@${name}`, squat)
      assert.include(squat.lines, "accepted", "the connection itself was made")
    }).pipe(Effect.scoped))

  it.live("a socket in a shared sticky directory (unix:///path): PeerRejected before any byte", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-sticky-", 0o1777)
      const path = Path.join(dir, "service.sock")
      const squat = yield* start(python, [squatter, "unix", path], { uid: nobody })
      yield* squat.line(/^ready$/)
      yield* refusedAndSilent(`unix://${path}`, squat)
    }).pipe(Effect.scoped))

  it.live("a socket planted in the pipe:// runtime directory: PeerRejected before any byte", () =>
    Effect.gen(function*() {
      const xdg = yield* privateRuntime
      const runtime = Effect.runSync(SocketPath.runtimeDir())
      assert.strictEqual(Path.dirname(runtime), xdg)
      const dir = yield* tempDir("effect-ipc-sticky-", 0o1777)
      const squat = yield* start(python, [squatter, "unix", Path.join(dir, "p.sock")], { uid: nobody })
      yield* squat.line(/^ready$/)
      Fs.renameSync(Path.join(dir, "p.sock"), Path.join(runtime, "planted.sock"))
      yield* refusedAndSilent("pipe://planted", squat)
    }).pipe(Effect.scoped))

  it.live("a FIFO pair made by another user (fifo://): PeerRejected before the hello", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-sticky-", 0o1777)
      const base = Path.join(dir, "pair")
      const squat = yield* start(python, [squatter, "fifo", base], { uid: nobody })
      yield* squat.line(/^ready$/)
      yield* refusedAndSilent(`fifo://${base}`, squat, Fifo.make().dial)
    }).pipe(Effect.scoped))

  // the client checks the FIFOs it opened, not only the ready token: another user's FIFOs behind a token
  // this user could have written (here root's, in the listener's format) are refused before the hello
  it.live("FIFOs of another user behind a ready token of this user (fifo://): PeerRejected, nothing written", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-sticky-", 0o1777)
      const base = Path.join(dir, "pair")
      const squat = yield* start(python, [squatter, "fifo", base], { uid: nobody })
      yield* squat.line(/^ready$/)
      Fs.rmSync(`${base}.ready`)
      Fs.writeFileSync(`${base}.ready`, `${process.pid}:x`, { mode: 0o600 })
      yield* refusedAndSilent(`fifo://${base}`, squat, Fifo.make().dial)
    }).pipe(Effect.scoped))

  // a client took any file at name.ready for the listener's token: while one peer was connected, a token
  // planted by another user let a second client join the conversation, inject frames and read its replies
  it.live("a ready token another user plants in a shared sticky directory (fifo://): PeerRejected, no second client joins", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("effect-ipc-sticky-", 0o1777)
      const base = Path.join(dir, "pair")
      const transport = Fifo.make()
      const listener = yield* transport.listen(`fifo://${base}`)
      const first = yield* transport.dial(`fifo://${base}`)
      const server = yield* listener.accept
      // as the listener writes it: a lock's text (identity:token), but a file of uid 65534
      const planted = yield* run(python, [
        "-c",
        `import os; os.umask(0); open(${JSON.stringify(`${base}.ready`)}, "w").write("${process.pid}:planted")`
      ], { uid: nobody })
      assert.strictEqual(planted.status, 0, planted.stderr)
      const error = yield* Effect.flip(Effect.scoped(transport.dial(`fifo://${base}`)))
      assert.strictEqual(error.reason._tag, "PeerRejected", error.message)
      assert.include(error.detail, `${base}.ready is a regular file owned by uid ${nobody}`)
      assert.strictEqual(Fs.readFileSync(`${base}.ready`, "utf8"), `${process.pid}:planted`, "left untouched")
      yield* first.send(new Uint8Array([1]))
      assert.deepStrictEqual([...(yield* server.receive)], [1])
      yield* server.send(new Uint8Array([2]))
      assert.deepStrictEqual([...(yield* first.receive)], [2])
    }).pipe(Effect.scoped))

  it.live(
    "the other way round: a client of uid 65534 dials a root server (allowed: root), not another user's",
    () =>
      Effect.gen(function*() {
        const mine = unique("root-server")
        yield* echo(UnixSocket.make({ authorize: (peer) => peer.uid === nobody }), `unix:@${mine}`)
        const ok = yield* run(node, [...nodeFixture("dial.ts"), `unix:@${mine}`], { uid: nobody })
        assert.strictEqual(ok.stdout.toString(), "ok hi\n", ok.stderr)
        // a server of a third user (65533) is refused by the same default policy
        const theirs = unique("third")
        const squat = yield* start(python, [squatter, "unix", `@${theirs}`], { uid: 65533 })
        yield* squat.line(/^ready$/)
        const refused = yield* run(node, [...nodeFixture("dial.ts"), `unix:@${theirs}`], { uid: nobody })
        assert.match(refused.stdout.toString(), /^error PeerRejected: the server runs as uid 65533 /, refused.stderr)
        assert.strictEqual((yield* squat.finish).at(-1), "bytes 0")
      }).pipe(Effect.scoped),
    60_000
  )

  // a client reads the listener's ready token before claiming it: the token is readable by whoever the
  // FIFOs' mode lets in (0644 for mode 0666), or such a client could never claim the pair
  it.live(
    "fifo://: a client of uid 65534 dials a root listener whose FIFOs have mode 0666 (allowed: root)",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-shared-", 0o777)
        const address = `fifo://${Path.join(dir, "pair")}`
        yield* echo(Fifo.make({ mode: 0o666 }), address)
        assert.strictEqual(Fs.statSync(Path.join(dir, "pair.ready")).mode & 0o777, 0o644)
        const ok = yield* run(node, [...nodeFixture("dial.ts"), address], { uid: nobody })
        assert.strictEqual(ok.stdout.toString(), "ok hi\n", ok.stderr)
      }).pipe(Effect.scoped),
    60_000
  )
})

describe.runIf(isRoot)("child pipes, against another user (uid 65534)", () => {
  it.live("the channel has no name to connect to, and the child's descriptor is closed to others: EACCES", () =>
    Effect.gen(function*() {
      const child = yield* ChildPipe.spawn(python, { args: [pythonPeer, "--echo-fd", "3"] })
      assert.strictEqual(yield* probeAs(nobody, "open", `/proc/${child.pid}/fd/3`), "open-error EACCES")
      yield* child.channel.send(new Uint8Array([8]))
      assert.deepStrictEqual([...(yield* child.channel.receive)], [8])
    }).pipe(Effect.scoped))
})

describe.runIf(isRoot)("a process that gave up its privileges with seteuid (real uid 0, effective uid 65534)", () => {
  // what it creates is its effective user's, and a peer's credentials carry that user too: the runtime
  // directory was named for the real uid (effect-ipc-0, then refused as not its own) and the same-user
  // check compared peers with the real uid (refusing the process's own clients)
  it.live("uses its effective user's runtime directory and admits its own clients", () =>
    Effect.gen(function*() {
      const name = unique("euid")
      const ran = yield* run(node, nodeFixture("euid.ts").concat(name))
      assert.strictEqual(ran.status, 0, ran.stderr)
      const said = JSON.parse(ran.stdout.toString().trim())
      assert.deepStrictEqual(said, {
        uid: 0,
        dir: `/tmp/effect-ipc-${nobody}`,
        owner: nobody,
        peerUid: nobody,
        echoed: [7]
      })
      assert.isFalse(Fs.existsSync(`/tmp/effect-ipc-${nobody}/${name}.sock`), "the socket is removed")
    }), 60_000)

  // the default authorize compared peers with the effective uid of the moment: a listener made as root
  // admitted uid 65534 once its process had changed its effective uid, on a socket only root could use
  it.live(
    "a listener made before the change admits the user it listened as, not the new one",
    () =>
      Effect.gen(function*() {
        const name = unique("euid-later")
        const server = yield* start(node, nodeFixture("euid-later.ts").concat(name))
        yield* server.line(/^ready$/)
        const refused = yield* run(python, [pythonPeer, `@${name}`, "hi"], { uid: nobody })
        assert.notStrictEqual(refused.status, 0, "nobody was refused")
        assert.notInclude(refused.stdout.toString(), "hi")
        const admitted = yield* run(python, [pythonPeer, `@${name}`, "hi"])
        assert.strictEqual(admitted.stdout.toString(), "hi\nclosed\n", admitted.stderr)
      }).pipe(Effect.scoped),
    60_000
  )
})

describe.runIf(isRoot)("path locks when another user made the runtime directory first", () => {
  // the locks go to ~/.effect-ipc-locks: existing tests show fifo:// and stale-socket replacement work then, this
  // one where their lock is, by holding it there from another process: the replacement waits for it
  it.live(
    "a stale socket is replaced under the lock in ~/.effect-ipc-locks (0700), nothing in their directory",
    () =>
      Effect.gen(function*() {
        yield* runtimeDirOfNobody
        const runtime = SocketPath.runtimeDirOn(SocketPath.currentHost())
        const locks = Path.join(SocketPath.homeDirectory()!, ".effect-ipc-locks")
        assert.strictEqual(yield* SocketPath.lockDir(), locks)
        const made = Fs.lstatSync(locks)
        assert.isTrue(made.isDirectory() && made.uid === process.getuid!(), "a directory of this user")
        assert.strictEqual(made.mode & 0o777, 0o700)

        const own = yield* tempDir("effect-ipc-own-", 0o700)
        const path = Path.join(own, "stale.sock")
        const bound = yield* run(python, [
          "-c",
          `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path)})`
        ])
        assert.strictEqual(bound.status, 0, bound.stderr)
        const key = Crypto.createHash("sha256").update(path).digest("hex").slice(0, 32)
        const lockFile = Path.join(locks, `.lock-${key}`)
        Fs.writeFileSync(lockFile, "", { mode: 0o600 })
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(lockFile, { force: true })))
        const holder = yield* start(python, ["-c", holdLock, lockFile])
        yield* holder.line(/^locked$/)
        const listening = yield* Effect.forkScoped(UnixSocket.make().listen(`unix://${path}`))
        // the listener binds its socket in its staging directory, then waits for the path's lock to replace the stale one
        const staged = () =>
          Fs.readdirSync(own).some((name) => name.startsWith(".eipc-") && Fs.existsSync(Path.join(own, name, "s")))
        yield* waitFor(() => staged() || listening.pollUnsafe() !== undefined, 4_000)
        assert.isUndefined(listening.pollUnsafe(), "the replacement waits for the lock held in ~/.effect-ipc-locks")
        assert.isTrue(staged(), "the listener bound its socket in its staging directory")
        assert.isTrue(Fs.lstatSync(path).isSocket(), "the stale socket is still there")
        yield* holder.finish
        yield* Fiber.join(listening)
        const client = yield* UnixSocket.make().dial(`unix://${path}`)
        yield* client.send(new Uint8Array([5]))
        // nothing of ours in the directory the other user made
        assert.deepStrictEqual(Fs.readdirSync(runtime), [])
      }).pipe(Effect.scoped),
    60_000
  )
})

/** An echo listener of this user at `dir/pair`, its FIFOs open to all (0666); the address. */
const openPair = (dir: string) =>
  Effect.gen(function*() {
    const address = `fifo://${dir}/pair`
    yield* echo(Fifo.make({ mode: 0o666 }), address)
    return address
  })

describe.runIf(isRoot)("a FIFO pair dialled by another user (uid 65534)", () => {
  it.live(
    "in a sticky directory (/tmp's mode): NotFound, as only the ready token's owner may rename it",
    () =>
      Effect.gen(function*() {
        const sticky = yield* tempDir("effect-ipc-sticky-", 0o1777)
        const address = yield* openPair(sticky)
        const dialled = yield* run(node, [...nodeFixture("dial.ts"), address], { uid: nobody })
        assert.strictEqual(dialled.status, 0, dialled.stderr)
        // (it said "no live server at this FIFO pair", with the server up: their client cannot read its lock file)
        assert.strictEqual(
          dialled.stdout.toString().trim(),
          `error NotFound: cannot claim the ready token ${sticky}/pair.ready (EPERM): in a sticky directory only its ` +
            "owner may rename it; put the FIFO pair in a directory without the sticky bit that its clients may write"
        )
        // the reason: the token (readable by them) is left where it was, unclaimed; the kernel refuses them its rename
        const token = Fs.lstatSync(`${sticky}/pair.ready`)
        assert.isTrue(token.isFile() && token.uid === process.getuid!())
        const renamed = yield* run(python, ["-c", renameIt, `${sticky}/pair.ready`], { uid: nobody })
        assert.strictEqual(renamed.stdout.toString().trim(), "EPERM", renamed.stderr)
        // and the listener still serves a client of its own user
        const mine = yield* run(node, [...nodeFixture("dial.ts"), address])
        assert.strictEqual(mine.stdout.toString().trim(), "ok hi", mine.stderr)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("in a directory they may write that is not sticky: served", () =>
    Effect.gen(function*() {
      const shared = yield* tempDir("effect-ipc-shared-", 0o777)
      const address = yield* openPair(shared)
      const dialled = yield* run(node, [...nodeFixture("dial.ts"), address], { uid: nobody })
      assert.strictEqual(dialled.stdout.toString().trim(), "ok hi", dialled.stderr)
    }).pipe(Effect.scoped), 60_000)
})

describe("dial: a server whose credentials cannot be read", () => {
  // on Linux SO_PEERCRED answers for any connected Unix socket: what fails there is reading them at all (koffi or
  // libc that will not load: LibraryMissing), as a process started with test/fixtures/no-koffi.mjs meets it
  it.live(
    "is PeerRejected before a byte is sent, even by an authorize that admits everyone",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir("effect-ipc-nocred-")
        const address = `unix://${Path.join(dir, "server.sock")}`
        const listener = yield* UnixSocket.make().listen(address)
        const noKoffi = `--import=${Path.join(import.meta.dirname, "fixtures/no-koffi.mjs")}`
        const refused = yield* run(node, [noKoffi, ...nodeFixture("dial-any.ts"), address])
        assert.strictEqual(refused.status, 0, refused.stderr)
        assert.match(
          refused.stdout.toString().trim(),
          /^error PeerRejected: cannot read the server's credentials: cannot load koffi: /
        )
        // the server got the connection (its own reading of credentials works), and not a byte on it
        const server = yield* hangGuard(listener.accept, "accept")
        const error = yield* hangGuard(Effect.flip(server.receive), "the refused client's end")
        assert.strictEqual(error.reason._tag, "ConnectionLost", error.message)
        // the same client, where it can read them, is served
        const served = yield* run(node, [...nodeFixture("dial-any.ts"), address])
        assert.strictEqual(served.stdout.toString().trim(), "sent", served.stderr)
        const next = yield* hangGuard(listener.accept, "accept")
        assert.strictEqual(new TextDecoder().decode(yield* hangGuard(next.receive, "receive")), "hi")
      }).pipe(Effect.scoped),
    60_000
  )
})
