/**
 * Another user cannot stop a listener by creating its token directory first:
 * `<tmp>/effect-ipc-<uid>` owned by someone else is refused, the token goes to
 * `~/.cache/effect-ipc` with a warning, and a client of the same user finds it.
 * An `XDG_RUNTIME_DIR` that is not this user's private one (another user's,
 * one others may write, a link, a relative path) is not used at all: the token
 * directory is `<tmp>/effect-ipc-<uid>`, as when it is unset (the rule of
 * transport-pipe's `SocketPath`).
 */
import * as Transport from "@effect-ipc/core/Transport"
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { envFor, freshAddress } from "./helpers.ts"

// switching to another uid (setpriv) needs root, as CI runs
describe.runIf(process.getuid?.() === 0)("a token directory squatted by another user", () => {
  it.live("listen writes the token under ~/.cache/effect-ipc instead, warns, and a client finds it there", () =>
    Effect.gen(function*() {
      const base = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ws-squat-"))
      const tmp = Path.join(base, "tmp")
      const home = Path.join(base, "home")
      Fs.mkdirSync(tmp)
      Fs.chmodSync(tmp, 0o1777)
      Fs.chmodSync(base, 0o755)
      Fs.mkdirSync(home, { mode: 0o700 })
      const squatted = Path.join(tmp, `effect-ipc-${process.getuid!()}`)
      const made = ChildProcess.spawnSync(
        "setpriv",
        ["--reuid=65534", "--regid=65534", "--clear-groups", "mkdir", "-m", "700", squatted],
        { encoding: "utf8" }
      )
      assert.strictEqual(made.status, 0, made.stderr)
      assert.strictEqual(Fs.statSync(squatted).uid, 65534)
      const saved = {
        TMPDIR: process.env["TMPDIR"],
        XDG_RUNTIME_DIR: process.env["XDG_RUNTIME_DIR"],
        HOME: process.env["HOME"]
      }
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          for (const [key, value] of Object.entries(saved)) {
            if (value === undefined) delete process.env[key]
            else process.env[key] = value
          }
          Fs.rmSync(base, { recursive: true, force: true })
        })
      )
      process.env["TMPDIR"] = tmp
      process.env["HOME"] = home
      delete process.env["XDG_RUNTIME_DIR"]

      const lines: Array<string> = []
      const logger = Logger.make(({ message }) => {
        lines.push(Array.isArray(message) ? message.map(String).join(" ") : String(message))
      })
      const address = freshAddress("squatted")
      const listener = yield* Ws.WsServer.listen(address).pipe(Effect.provide(Logger.layer([logger])))
      yield* Effect.forkScoped(
        Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
      )
      const fallback = Path.join(home, ".cache", "effect-ipc")
      assert.strictEqual(Path.dirname(listener.tokenFile!), fallback)
      assert.strictEqual(Fs.statSync(fallback).mode & 0o777, 0o700)
      assert.strictEqual(Fs.statSync(listener.tokenFile!).mode & 0o777, 0o600)
      assert.isTrue(lines.some((line) => line.includes(squatted)), lines.join("\n"))
      // the Node client of the same user looks there too
      const client = yield* Ws.WsTransport.make().dial(address)
      yield* client.send(new Uint8Array([5]))
      assert.strictEqual((yield* client.receive)[0], 5)
    }).pipe(Effect.scoped))
})

/** What is in `dir` and below, as relative paths (links not followed). */
const listing = (dir: string) => Fs.readdirSync(dir, { recursive: true }).map(String).toSorted()

describe("an XDG_RUNTIME_DIR that is not this user's, or that others may write", () => {
  const isRoot = process.getuid?.() === 0
  const scratch = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ws-xdg-"))
  // the fallback goes to a temp directory of this test's (TMPDIR), not the real one
  const tmp = Path.join(scratch, "tmp")
  Fs.mkdirSync(tmp, { mode: 0o700 })
  const fallback = Path.join(tmp, `effect-ipc-${process.getuid?.() ?? "user"}`)
  Fs.chmodSync(scratch, 0o755) // so that a directory of uid 65534 in it is reachable
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

  /**
   * With XDG_RUNTIME_DIR = `xdg`: the token directory is the fallback (no warning), a listener
   * writes its token file there and a client finds it; nothing is made in `inside`.
   */
  const fallsBack = (xdg: string, inside: string = xdg) =>
    Effect.gen(function*() {
      yield* envFor("TMPDIR", tmp)
      yield* envFor("XDG_RUNTIME_DIR", xdg)
      const before = listing(inside)
      const lines: Array<string> = []
      const logger = Logger.make(({ message }) => {
        lines.push(Array.isArray(message) ? message.map(String).join(" ") : String(message))
      })
      assert.strictEqual(yield* Ws.TokenFile.directory().pipe(Effect.provide(Logger.layer([logger]))), fallback)
      assert.deepStrictEqual(lines, [])
      const address = freshAddress("xdg")
      const listener = yield* Ws.WsServer.listen(address)
      yield* Effect.forkScoped(
        Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
      )
      assert.strictEqual(Path.dirname(listener.tokenFile!), fallback)
      assert.isDefined(Ws.TokenFile.lookup(yield* Ws.WsAddress.parse(address)))
      const client = yield* Ws.WsTransport.make().dial(address)
      yield* client.send(new Uint8Array([9]))
      assert.strictEqual((yield* client.receive)[0], 9)
      assert.deepStrictEqual(listing(inside), before, `nothing was made in ${inside}`)
    })

  it.live.skipIf(!isRoot)(
    "owned by uid 65534 (su without -): the fallback <tmp>/effect-ipc-<uid> is used",
    () => Effect.scoped(fallsBack(directory(0o755, 65534)))
  )

  it.live("open to all (0777, and 1777 sticky) or to the group (0770): the fallback is used", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(fallsBack(directory(0o777)))
      yield* Effect.scoped(fallsBack(directory(0o1777)))
      yield* Effect.scoped(fallsBack(directory(0o770)))
    }))

  it.live("a link to a private directory of ours, a relative path, or none there: the fallback is used", () =>
    Effect.gen(function*() {
      const target = directory(0o700)
      const link = Path.join(scratch, `link${n++}`)
      Fs.symlinkSync(target, link)
      yield* Effect.scoped(fallsBack(link, target))
      yield* Effect.scoped(fallsBack(Path.relative(process.cwd(), target), target))
      const parent = directory(0o700)
      yield* Effect.scoped(fallsBack(Path.join(parent, "missing"), parent))
    }))

  it.live("a client reads no token file in a token directory others may write (0777); in a private one it does", () =>
    Effect.gen(function*() {
      yield* envFor("TMPDIR", tmp)
      yield* envFor("XDG_RUNTIME_DIR", undefined)
      // a home of its own, with no token file in it
      yield* envFor("HOME", directory(0o700))
      const dir = yield* Ws.TokenFile.directory()
      assert.strictEqual(dir, fallback)
      const address = yield* Ws.WsAddress.parse(freshAddress("open"))
      const file = Ws.TokenFile.pathIn(dir, address)
      yield* Ws.TokenFile.write(file, "live-token")
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          Fs.chmodSync(dir, 0o700)
          Fs.rmSync(file, { force: true })
        })
      )
      assert.strictEqual(Ws.TokenFile.lookup(address), "live-token")
      // anyone may now swap what is in it: nothing there is trusted
      Fs.chmodSync(dir, 0o777)
      assert.isUndefined(Ws.TokenFile.lookup(address))
    }).pipe(Effect.scoped))

  it.live("a private directory of ours (0700, or 0755): used", () =>
    Effect.gen(function*() {
      for (const mode of [0o700, 0o755]) {
        const xdg = directory(mode)
        yield* Effect.scoped(Effect.gen(function*() {
          yield* envFor("TMPDIR", tmp)
          yield* envFor("XDG_RUNTIME_DIR", xdg)
          assert.strictEqual(yield* Ws.TokenFile.directory(), Path.join(xdg, "effect-ipc"))
        }))
      }
    }))
})

// a daemon started as root that gives up its privileges with seteuid keeps real uid 0, and what it creates is
// its effective user's: the token directory was named for the real uid (effect-ipc-0), refused as not its own,
// and the fallback under root's home could not be made (PermissionDenied)
describe.runIf(process.getuid?.() === 0)("a process that gave up its privileges with seteuid", () => {
  it("keeps its token in its effective user's runtime directory, where its clients find it", () => {
    const ran = ChildProcess.spawnSync(
      "bash",
      ["scripts/node.sh", "packages/transport-ws/test/fixtures/euid.ts", freshAddress("euid")],
      { cwd: Path.resolve(import.meta.dirname, "../../.."), encoding: "utf8", timeout: 60_000 }
    )
    assert.strictEqual(ran.status, 0, ran.stderr)
    assert.deepStrictEqual(JSON.parse(ran.stdout.trim().split("\n").at(-1)!), {
      dir: "/tmp/effect-ipc-65534",
      owner: 65534,
      echoed: [7]
    })
  }, 60_000)
})
