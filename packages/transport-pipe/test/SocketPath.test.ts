/**
 * The socket path rules as pure functions of a host, so macOS's (104-byte
 * `sun_path`, a long `$TMPDIR`) run here too; and the Python package, which
 * must find the same `pipe://` sockets, computes the same paths.
 */
import { SocketPath, UnixSocket } from "@effect-ipc/transport-pipe"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** A Mac as it comes: `$TMPDIR` under /var/folders (Node strips its trailing slash), no XDG_RUNTIME_DIR. */
const macTmpdir = "/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T"
const mac: SocketPath.Host = {
  platform: "darwin",
  env: { TMPDIR: `${macTmpdir}/`, HOME: "/Users/someone", USER: "someone" },
  uid: 501,
  tmpdir: macTmpdir
}
const linux: SocketPath.Host = { platform: "linux", env: {}, uid: 1000, tmpdir: "/tmp" }

const bytes = (text: string) => Buffer.byteLength(text)
const pathOn = (raw: string, host: SocketPath.Host) => Effect.map(SocketPath.resolveOn(raw, host), ({ path }) => path)
const failureOn = (raw: string, host: SocketPath.Host) => Effect.flip(SocketPath.resolveOn(raw, host))

/** Names people give their pipes, up to a 64-character one. */
const typicalNames = [
  "app",
  "my-service",
  "com.example.render-farm.worker-12",
  "houdini-bridge.session-2f9c1d7e-4b1a-4c3e-9d2f-8a7b6c5d4e3f",
  "x".repeat(64)
]

describe("SocketPath on macOS (checked on any machine)", () => {
  it("keeps pipe:// sockets in /tmp/effect-ipc-<uid>, not under the long $TMPDIR", () => {
    assert.strictEqual(SocketPath.runtimeDirOn(mac), "/tmp/effect-ipc-501")
    assert.strictEqual(SocketPath.maxPathBytesOn("darwin"), 103)
  })

  it.effect("gives typical names a socket path within macOS's 104 bytes (103 and the NUL)", () =>
    Effect.gen(function*() {
      for (const name of typicalNames) {
        const path = yield* pathOn(`pipe://${name}`, mac)
        assert.strictEqual(path, `/tmp/effect-ipc-501/${name}.sock`)
        assert.isAtMost(bytes(path), 103, path)
        // under $TMPDIR the longer of these would not have fitted
        if (name.length >= 40) assert.isAbove(bytes(Path.posix.join(macTmpdir, "effect-ipc-501", `${name}.sock`)), 103)
      }
    }))

  it.effect("takes names up to 103 bytes of path; one byte more is NameTooLong naming the limit", () =>
    Effect.gen(function*() {
      const room = 103 - bytes("/tmp/effect-ipc-501/.sock")
      assert.strictEqual(room, 78)
      // under $TMPDIR (48 bytes here) a name could have had 34
      assert.strictEqual(103 - bytes(`${macTmpdir}/effect-ipc-501/.sock`), 34)
      assert.strictEqual(bytes(yield* pathOn(`pipe://${"n".repeat(room)}`, mac)), 103)
      const error = yield* failureOn(`pipe://${"n".repeat(room + 1)}`, mac)
      assert.strictEqual(error.reason._tag, "NameTooLong")
      assert.include(error.detail, "darwin allows at most 103 (104 with the final NUL)")
    }))

  it.effect("a name too long for macOS's 104 bytes fits Linux's 108", () =>
    Effect.gen(function*() {
      const name = "n".repeat(80) // /tmp/effect-ipc-<uid>/<name>.sock is 105 bytes on both
      assert.strictEqual((yield* failureOn(`pipe://${name}`, mac)).reason._tag, "NameTooLong")
      const path = yield* pathOn(`pipe://${name}`, linux)
      assert.strictEqual(path, `/tmp/effect-ipc-1000/${name}.sock`)
      assert.strictEqual(bytes(path), 106)
      const unix = `/tmp/${"u".repeat(100)}` // 105 bytes
      assert.strictEqual((yield* failureOn(`unix://${unix}`, mac)).reason._tag, "NameTooLong")
      assert.strictEqual(yield* pathOn(`unix://${unix}`, linux), unix)
    }))

  it.effect("still honours XDG_RUNTIME_DIR there, and refuses abstract sockets", () =>
    Effect.gen(function*() {
      const xdg = { ...mac, env: { ...mac.env, XDG_RUNTIME_DIR: "/run/user/501" } }
      assert.strictEqual(yield* pathOn("pipe://app", xdg), "/run/user/501/effect-ipc/app.sock")
      assert.strictEqual((yield* failureOn("unix:@app", mac)).reason._tag, "UnsupportedPlatform")
    }))
})

describe("SocketPath on Linux and Windows (unchanged)", () => {
  it.effect("uses $XDG_RUNTIME_DIR/effect-ipc, else <tmpdir>/effect-ipc-<uid> (a long TMPDIR too)", () =>
    Effect.gen(function*() {
      const xdg = { ...linux, env: { XDG_RUNTIME_DIR: "/run/user/1000" } }
      assert.strictEqual(yield* pathOn("pipe://app", xdg), "/run/user/1000/effect-ipc/app.sock")
      const empty = { ...linux, env: { XDG_RUNTIME_DIR: "" } }
      assert.strictEqual(yield* pathOn("pipe://app", empty), "/tmp/effect-ipc-1000/app.sock")
      const longTmp = { ...linux, tmpdir: "/home/someone/.cache/tmp" }
      assert.strictEqual(yield* pathOn("pipe://app", longTmp), "/home/someone/.cache/tmp/effect-ipc-1000/app.sock")
      const room = 107 - bytes("/tmp/effect-ipc-1000/.sock")
      assert.strictEqual(bytes(yield* pathOn(`pipe://${"n".repeat(room)}`, linux)), 107)
      const error = yield* failureOn(`pipe://${"n".repeat(room + 1)}`, linux)
      assert.strictEqual(error.reason._tag, "NameTooLong")
      assert.include(error.detail, "linux allows at most 107 (108 with the final NUL)")
      assert.strictEqual(yield* pathOn("unix:@app", linux), "\0app")
      // the empty name: surely a name left out, refused as `unix:` is
      const noName = yield* failureOn("unix:@", linux)
      assert.strictEqual(noName.reason._tag, "InvalidAddress")
      assert.include(noName.detail, "an abstract socket needs a name")
      // an abstract name has no final NUL: it fills sun_path after the leading one (it was refused at 107)
      assert.strictEqual(yield* pathOn(`unix:@${"a".repeat(107)}`, linux), `\0${"a".repeat(107)}`)
      const abstract = yield* failureOn(`unix:@${"a".repeat(108)}`, linux)
      assert.strictEqual(abstract.reason._tag, "NameTooLong")
      assert.include(abstract.detail, "abstract socket name is 108 bytes; linux allows at most 107")
    }))

  it.live.skipIf(process.platform !== "linux")(
    "serves an abstract socket of the longest name Linux takes (107 bytes)",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const name = `sp-${process.pid}-`.padEnd(107, "a")
        const transport = UnixSocket.make()
        const listener = yield* transport.listen(`unix:@${name}`)
        const client = yield* transport.dial(`unix:@${name}`)
        const server = yield* listener.accept
        yield* client.send(new Uint8Array([7]))
        assert.deepStrictEqual([...(yield* server.receive)], [7])
      }))
  )

  it.effect("maps pipe:// to a named pipe on Windows", () =>
    Effect.gen(function*() {
      const windows: SocketPath.Host = { platform: "win32", env: {}, uid: undefined, tmpdir: "C:\\Temp" }
      const endpoint = yield* SocketPath.resolveOn(`pipe://${"w".repeat(200)}`, windows)
      assert.deepStrictEqual(endpoint, { path: `\\\\.\\pipe\\${"w".repeat(200)}`, kind: "windows-pipe" })
    }))
})

describe("SocketPath on this machine", () => {
  const scratch = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-sp-t-"))
  afterAll(() => Fs.rmSync(scratch, { recursive: true, force: true }))

  it.effect("resolve is resolveOn for the current host; resolveOn creates nothing", () =>
    Effect.gen(function*() {
      const here = SocketPath.currentHost()
      assert.strictEqual(
        (yield* SocketPath.resolve("pipe://sp-test")).path,
        yield* pathOn("pipe://sp-test", here)
      )
      assert.strictEqual(yield* SocketPath.runtimeDir(), SocketPath.runtimeDirOn(here))
      const elsewhere = { ...here, env: { XDG_RUNTIME_DIR: scratch } }
      yield* pathOn("pipe://sp-test", elsewhere)
      assert.deepStrictEqual(Fs.readdirSync(scratch), [])
    }))

  it("the Python package resolves pipe:// to the same paths for the same hosts", () => {
    const hosts = [mac, linux, { ...mac, env: { XDG_RUNTIME_DIR: "/run/user/501" } }]
    const cases = hosts.flatMap((host) =>
      [...typicalNames, "n".repeat(78), "n".repeat(80)].map((name) => ({ host, raw: `pipe://${name}` }))
    )
    const expected = Effect.runSync(Effect.forEach(cases, ({ host, raw }) =>
      SocketPath.resolveOn(raw, host).pipe(
        Effect.match({ onFailure: (error) => `${error.reason._tag}`, onSuccess: ({ path }) => path })
      )))
    const python = Fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
    const script = [
      "import json, sys",
      "from effect_ipc import address",
      "out = []",
      "for c in json.load(sys.stdin):",
      "    h = c['host']",
      "    try:",
      "        out.append(address.resolve_on(c['raw'], h['platform'], h['env'], h['uid'], h['tmpdir']).path)",
      "    except address.IpcError as e:",
      "        out.append(e.reason)",
      "print(json.dumps(out))"
    ].join("\n")
    const stdout = ChildProcess.execFileSync(python, ["-c", script], {
      input: JSON.stringify(cases),
      encoding: "utf8",
      env: {
        ...process.env,
        PYTHONPATH: Path.join(import.meta.dirname, "..", "..", "..", "python"),
        PYTHONDONTWRITEBYTECODE: "1"
      }
    })
    assert.deepStrictEqual(JSON.parse(stdout), expected)
    assert.include(expected, "NameTooLong")
  })
})

/** Sets `XDG_RUNTIME_DIR` until the scope closes. */
const xdgFor = (value: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const before = process.env["XDG_RUNTIME_DIR"]
      process.env["XDG_RUNTIME_DIR"] = value
      return before
    }),
    (before) =>
      Effect.sync(() => {
        if (before === undefined) delete process.env["XDG_RUNTIME_DIR"]
        else process.env["XDG_RUNTIME_DIR"] = before
      })
  )

/** What is in `dir` and below, as relative paths (links not followed). */
const listing = (dir: string) => Fs.readdirSync(dir, { recursive: true }).map(String).toSorted()

/** The runtime directory as if XDG_RUNTIME_DIR were unset. */
const fallback = () => Path.join(Os.tmpdir(), `effect-ipc-${process.getuid?.()}`)

describe("an XDG_RUNTIME_DIR that is not this user's, or that others may write", () => {
  const isRoot = process.getuid?.() === 0
  const scratch = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-sp-xdg-"))
  afterAll(() => Fs.rmSync(scratch, { recursive: true, force: true }))
  let n = 0

  /** A fresh directory in `scratch`, with `mode` (and, as root, `owner`). */
  const directory = (mode: number, owner?: number) => {
    const dir = Path.join(scratch, `d${n++}`)
    Fs.mkdirSync(dir)
    Fs.chmodSync(dir, mode)
    if (owner !== undefined) Fs.chownSync(dir, owner, owner)
    return dir
  }

  /** With XDG_RUNTIME_DIR = `xdg`: pipe://, the runtime directory and the path locks all use the fallback; nothing is made in `xdg`. */
  const fallsBack = (xdg: string, inside: string = xdg) =>
    Effect.gen(function*() {
      yield* xdgFor(xdg)
      const before = listing(inside)
      assert.strictEqual(SocketPath.runtimeDirOn(SocketPath.currentHost()), fallback())
      assert.strictEqual(yield* SocketPath.runtimeDir(), fallback())
      assert.strictEqual(yield* SocketPath.lockDir(), fallback())
      const name = `sp-xdg-${process.pid}-${n++}`
      assert.strictEqual((yield* SocketPath.resolve(`pipe://${name}`)).path, Path.join(fallback(), `${name}.sock`))
      yield* Effect.scoped(Effect.gen(function*() {
        const transport = UnixSocket.make()
        const listener = yield* transport.listen(`pipe://${name}`)
        const client = yield* transport.dial(`pipe://${name}`)
        const server = yield* listener.accept
        yield* client.send(new Uint8Array([9]))
        assert.deepStrictEqual([...(yield* server.receive)], [9])
        assert.isTrue(Fs.lstatSync(Path.join(fallback(), `${name}.sock`)).isSocket())
      }))
      assert.deepStrictEqual(listing(inside), before, `nothing was made in ${inside}`)
    })

  it.live.skipIf(!isRoot)(
    "owned by uid 65534 (su without -): the fallback <tmp>/effect-ipc-<uid> is used",
    () => Effect.scoped(fallsBack(directory(0o755, 65534)))
  )

  it.live("open to all (0777, and 1777 sticky): the fallback is used", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(fallsBack(directory(0o777)))
      yield* Effect.scoped(fallsBack(directory(0o1777)))
      yield* Effect.scoped(fallsBack(directory(0o770)))
    }))

  it.live("a link to a private directory of ours, or a relative path: the fallback is used", () =>
    Effect.gen(function*() {
      const target = directory(0o700)
      const link = Path.join(scratch, `link${n++}`)
      Fs.symlinkSync(target, link)
      yield* Effect.scoped(fallsBack(link, target))
      yield* Effect.scoped(fallsBack(Path.relative(process.cwd(), target), target))
    }))

  it.live("a private directory of ours (0700, or 0755): used", () =>
    Effect.gen(function*() {
      for (const mode of [0o700, 0o755]) {
        const xdg = directory(mode)
        yield* Effect.scoped(Effect.gen(function*() {
          yield* xdgFor(xdg)
          assert.strictEqual(yield* SocketPath.runtimeDir(), Path.join(xdg, "effect-ipc"))
          assert.strictEqual(SocketPath.privateBase(xdg), true)
        }))
      }
    }))

  it("a host described rather than looked at takes its XDG_RUNTIME_DIR as it is", () => {
    const described = { ...linux, env: { XDG_RUNTIME_DIR: "/run/user/1000" } }
    assert.strictEqual(SocketPath.runtimeDirOn(described), "/run/user/1000/effect-ipc")
    const refusing = { ...described, runtimeBaseFits: () => false }
    assert.strictEqual(SocketPath.runtimeDirOn(refusing), "/tmp/effect-ipc-1000")
  })
})
