/**
 * The default address of `IPC_TRANSPORT=nng` (`descriptor.defaultAddress`): a
 * socket in this user's private runtime directory, the one `pipe://` uses
 * (`$XDG_RUNTIME_DIR/effect-ipc`, else a 0700 `effect-ipc-<uid>` in the
 * temporary directory), never a name in shared /tmp that another user could
 * take first. The squatter runs as uid 65534 (`setpriv`; needs root).
 */
import * as Registry from "@effect-ipc/core/Registry"
import * as Nng from "@effect-ipc/transport-nng"
import * as SocketPath from "@effect-ipc/transport-pipe/SocketPath"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const NOBODY = 65534
const canSwitch = process.getuid?.() === 0 && ChildProcess.spawnSync("setpriv", ["--version"]).status === 0
const encoder = new TextEncoder()
const decoder = new TextDecoder()
let n = 0

/** A service name of this test alone. */
const service = () => `nng-default-${process.pid}-${n++}`

/** The socket path of `address` (`nng+ipc:///path`). */
const pathOf = (address: string) => {
  assert.match(address, /^nng\+ipc:\/\/\//)
  return address.slice("nng+ipc://".length)
}

/** Sets `XDG_RUNTIME_DIR` (undefined: unsets it) until the scope closes. */
const runtimeDirEnv = (value: string | undefined) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const before = process.env["XDG_RUNTIME_DIR"]
      if (value === undefined) delete process.env["XDG_RUNTIME_DIR"]
      else process.env["XDG_RUNTIME_DIR"] = value
      return before
    }),
    (before) =>
      Effect.sync(() => {
        if (before === undefined) delete process.env["XDG_RUNTIME_DIR"]
        else process.env["XDG_RUNTIME_DIR"] = before
      })
  )

/** A fresh 0700 directory (to be `XDG_RUNTIME_DIR`), removed after. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-xdg-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** The default address of a fresh service serves a client through the descriptor's transport, as a program would. */
const servesAt = (address: string) =>
  Effect.gen(function*() {
    const transport = yield* Nng.descriptor.make
    const listener = yield* transport.listen(address)
    const client = yield* transport.dial(address)
    const server = yield* listener.accept
    assert.strictEqual(client.peer.uid, process.getuid?.())
    yield* client.send(encoder.encode("default"))
    assert.strictEqual(decoder.decode(yield* server.receive), "default")
  })

/** `dir` is a directory (not a link) of this user, mode 0700. */
const isPrivate = (dir: string) => {
  const stat = Fs.lstatSync(dir)
  assert.isTrue(stat.isDirectory(), `${dir} is a directory`)
  assert.strictEqual(stat.uid, process.getuid?.(), `${dir} is this user's`)
  assert.strictEqual(stat.mode & 0o777, 0o700, `${dir} is 0700`)
}

describe("the default nng address", () => {
  it.live("is a socket in $XDG_RUNTIME_DIR/effect-ipc, which listen makes with mode 0700", () =>
    Effect.gen(function*() {
      const xdg = yield* tempDir
      yield* runtimeDirEnv(xdg)
      const path = pathOf(Nng.descriptor.defaultAddress(service()))
      assert.strictEqual(Path.dirname(path), Path.join(xdg, "effect-ipc"))
      assert.isFalse(Fs.existsSync(Path.dirname(path)))
      yield* Effect.scoped(Effect.gen(function*() {
        yield* servesAt(`nng+ipc://${path}`)
        isPrivate(Path.dirname(path))
        assert.strictEqual(Fs.lstatSync(path).mode & 0o777, 0o600)
        // the conversations run in a directory inside it
        assert.isTrue(Fs.readdirSync(Path.dirname(path)).some((name) => name.startsWith(".eipc-")))
      }))
      assert.isFalse(Fs.existsSync(path), "the listener removed its socket")
    }).pipe(Effect.scoped))

  it.live("without XDG_RUNTIME_DIR, is in this user's private effect-ipc-<uid> directory, not in shared /tmp", () =>
    Effect.gen(function*() {
      yield* runtimeDirEnv(undefined)
      const path = pathOf(Nng.descriptor.defaultAddress(service()))
      assert.strictEqual(Path.dirname(path), Path.join(Os.tmpdir(), `effect-ipc-${process.getuid?.()}`))
      yield* Effect.scoped(servesAt(`nng+ipc://${path}`))
      isPrivate(Path.dirname(path))
    }))

  it.live("a runtime directory another user made first is refused (PermissionDenied), not listened in", () =>
    Effect.gen(function*() {
      const xdg = yield* tempDir
      yield* runtimeDirEnv(xdg)
      // theirs, open to all (root can make one for uid 65534); else ours but open to others, refused as well
      const theirs = Path.join(xdg, "effect-ipc")
      Fs.mkdirSync(theirs)
      Fs.chmodSync(theirs, 0o777)
      if (process.getuid?.() === 0) Fs.chownSync(theirs, NOBODY, NOBODY)
      const path = pathOf(Nng.descriptor.defaultAddress(service()))
      const transport = yield* Nng.descriptor.make
      const error = yield* Effect.flip(transport.listen(`nng+ipc://${path}`))
      assert.strictEqual(error.reason._tag, "PermissionDenied")
      assert.deepStrictEqual(Fs.readdirSync(Path.dirname(path)), [])
    }).pipe(Effect.scoped))

  it.live("with an XDG_RUNTIME_DIR others may write (0777), or another user's, is in <tmp>/effect-ipc-<uid>", () =>
    Effect.gen(function*() {
      const xdg = yield* tempDir
      const cases: Array<readonly [string, () => void]> = [["0777", () => Fs.chmodSync(xdg, 0o777)]]
      // root can give it to uid 65534 (as `su` without `-` keeps the user's XDG_RUNTIME_DIR)
      if (process.getuid?.() === 0) cases.push(["uid 65534's", () => Fs.chownSync(xdg, NOBODY, NOBODY)])
      yield* runtimeDirEnv(xdg)
      for (const [what, make] of cases) {
        make()
        const path = pathOf(Nng.descriptor.defaultAddress(service()))
        assert.strictEqual(Path.dirname(path), Path.join(Os.tmpdir(), `effect-ipc-${process.getuid?.()}`), what)
        yield* Effect.scoped(servesAt(`nng+ipc://${path}`))
        isPrivate(Path.dirname(path))
        assert.deepStrictEqual(Fs.readdirSync(xdg), [], `${what}: nothing was made in it`)
      }
    }).pipe(Effect.scoped))

  it.live("a service name that is no pipe:// name, or . or ..: an address listen and dial refuse (InvalidAddress)", () =>
    Effect.gen(function*() {
      const xdg = yield* tempDir
      yield* runtimeDirEnv(xdg)
      const transport = yield* Nng.descriptor.make
      for (const name of ["../svc", "a/b", "/abs", ".", "..", "a b", "x".repeat(201), "50%", ""]) {
        const address = Nng.descriptor.defaultAddress(name)
        assert.notMatch(address, /^nng\+ipc:\/\//, `${JSON.stringify(name)}: not a path (${address})`)
        // as a program gets it: the registry refuses it at once, or listen and dial do
        const selected = yield* Effect.result(Registry.resolve([Nng.descriptor], { service: name }))
        if (selected._tag === "Failure") {
          assert.strictEqual(selected.failure.reason._tag, "InvalidAddress", JSON.stringify(name))
          continue
        }
        assert.strictEqual(selected.success.address, address)
        for (const attempt of [Effect.asVoid(transport.listen(address)), Effect.asVoid(transport.dial(address))]) {
          const error = yield* Effect.flip(Effect.scoped(attempt))
          assert.strictEqual(error.reason._tag, "InvalidAddress", `${JSON.stringify(name)}: ${error.message}`)
          assert.include(error.detail, "default address of a service")
        }
      }
      assert.deepStrictEqual(Fs.readdirSync(xdg), [], "nothing was made, not even the runtime directory")
      // what the rule lets through, as pipe:// does
      for (const name of ["svc", "a.b_c-1", "...", "-"]) {
        assert.strictEqual(pathOf(Nng.descriptor.defaultAddress(name)), Path.join(xdg, "effect-ipc", `${name}.ipc`))
      }
    }).pipe(Effect.scoped))

  it("a service name too long for a socket path is cut to fit, told apart by a hash", () => {
    const long = "s".repeat(150)
    const [first, second] = [`${long}-one`, `${long}-two`].map((name) => pathOf(Nng.descriptor.defaultAddress(name)))
    for (const path of [first!, second!]) {
      assert.isAtMost(Buffer.byteLength(path), SocketPath.maxPathBytes)
      assert.match(Path.basename(path), /^s+-[0-9a-f]{16}\.ipc$/)
    }
    assert.notStrictEqual(first, second)
    assert.strictEqual(pathOf(Nng.descriptor.defaultAddress("short")), Path.join(Path.dirname(first!), "short.ipc"))
  })
})

describe.skipIf(!canSwitch)("a squatter of another user in /tmp", () => {
  it.live(
    "cannot take the default address: it binds the old /tmp name, and our listener serves anyway",
    () =>
      Effect.gen(function*() {
        yield* runtimeDirEnv(undefined)
        const name = service()
        const path = pathOf(Nng.descriptor.defaultAddress(name))
        // the name the default address had in shared /tmp
        const shared = Path.join(Os.tmpdir(), `effect-ipc-${process.getuid?.()}-${name}.ipc`)
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(shared, { force: true })))
        // the runtime directory as this user has it (listen would make it)
        yield* SocketPath.runtimeDir()
        // as uid 65534: a live socket at the /tmp name, and an attempt at the default address itself
        const squatter = yield* Child.spawn("setpriv", [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          "--clear-groups",
          "/usr/bin/python3",
          "-c",
          [
            "import errno, socket, sys",
            "for name, path in (('shared', sys.argv[1]), ('default', sys.argv[2])):",
            "    try:",
            "        s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(); print(name, 'bound', flush=True)",
            "    except OSError as e:",
            "        print(name, errno.errorcode[e.errno], flush=True)",
            "sys.stdin.read()"
          ].join("\n"),
          shared,
          path
        ])
        assert.strictEqual(yield* squatter.waitFor((line) => line.startsWith("shared ")), "shared bound")
        const atDefault = yield* squatter.waitFor((line) => line.startsWith("default "))
        assert.strictEqual(Fs.lstatSync(shared).uid, NOBODY)
        yield* Effect.scoped(servesAt(`nng+ipc://${path}`))
        // it could not even bind there: the directory is this user's, 0700
        assert.strictEqual(atDefault, "default EACCES")
        squatter.process.stdin?.end()
      }).pipe(Effect.scoped),
    60_000
  )
})
