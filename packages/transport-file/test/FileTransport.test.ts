/**
 * The `file://` listener and its connections beyond the conformance suite:
 * permissions, clean-up, a listener killed with connections open (one not
 * yet accepted), a new listener taking the directory over, and selection by
 * `IPC_TRANSPORT=file`.
 */
import { Registry } from "@effect-ipc/core"
import * as File from "@effect-ipc/transport-file"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fresh, node, run, tempRoot } from "./helpers.ts"

const root = tempRoot("transport")
const bytes = (s: string) => new TextEncoder().encode(s)
const text = new TextDecoder()

const modes = (dir: string): Array<[string, number]> => {
  const out: Array<[string, number]> = []
  const walk = (p: string) => {
    const stat = Fs.statSync(p)
    out.push([Path.relative(dir, p) || ".", stat.mode & 0o777])
    if (stat.isDirectory()) { for (const n of Fs.readdirSync(p)) walk(Path.join(p, n)) }
  }
  walk(dir)
  return out
}

/** Every entry under `dir` with a file's content or "dir", sorted. */
const snapshot = (dir: string): Array<[string, string]> =>
  Fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).toSorted().map((name) => {
    const path = Path.join(dir, name)
    return [name, Fs.lstatSync(path).isDirectory() ? "dir" : Fs.readFileSync(path, "utf8")]
  })

describe("file:// transport", () => {
  it.live(
    "listener and connection directories are 0700, files 0600; a connection is removed once both ends close",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const address = `file://${dir}`
        const transport = File.make()
        const listener = yield* transport.listen(address)
        const client = yield* transport.dial(address)
        const server = yield* listener.accept
        yield* client.send(bytes("hi"))
        assert.strictEqual(text.decode(yield* server.receive), "hi")
        const seen = modes(dir)
        assert.isAbove(seen.length, 10)
        for (const [path, mode] of seen) {
          assert.strictEqual(mode, Fs.statSync(Path.join(dir, path)).isDirectory() ? 0o700 : 0o600, path)
        }
        const connections = Path.join(dir, "connections")
        assert.strictEqual(Fs.readdirSync(connections).length, 1)
        yield* client.close
        // the listener's end sees the close, answers it, and the connection goes
        const closed = yield* Effect.flip(server.receive)
        assert.strictEqual(closed.reason._tag, "Closed")
        yield* server.close
        for (let i = 0; i < 50 && Fs.readdirSync(connections).length > 0; i++) yield* Effect.sleep("20 millis")
        assert.deepStrictEqual(Fs.readdirSync(connections), [])
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a listener killed with SIGKILL: its connections (one not yet accepted) are ConnectionLost; a new listener takes over",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root)
        const address = `file://${dir}`
        const transport = File.make()
        const peer = yield* node(["listen-echo", address])
        yield* peer.waitFor((l) => l === "listening")
        const accepted = yield* transport.dial(address)
        yield* accepted.send(bytes("echo?"))
        assert.strictEqual(text.decode(yield* accepted.receive), "echo?")
        yield* peer.signal("SIGSTOP")
        const pending = yield* transport.dial(address)
        yield* pending.send(bytes("never answered"))
        yield* Effect.sleep("400 millis")
        yield* peer.signal("SIGKILL")
        yield* peer.exit
        for (const channel of [accepted, pending]) {
          const error = yield* Effect.flip(channel.receive).pipe(Effect.timeout("5 seconds"))
          assert.strictEqual(error.reason._tag, "ConnectionLost")
        }
        // the dead listener's directory is taken over; its connections are not accepted by the new one
        const listener = yield* transport.listen(address)
        const fresh1 = yield* transport.dial(address)
        const server = yield* listener.accept
        yield* fresh1.send(bytes("new"))
        assert.strictEqual(text.decode(yield* server.receive), "new")
        yield* accepted.close
        yield* pending.close
        const connections = Fs.readdirSync(Path.join(dir, "connections"))
        assert.strictEqual(connections.length, 1, "the dead listener's connections are gone")
        const again = yield* Effect.flip(transport.listen(address))
        assert.strictEqual(again.reason._tag, "AddressInUse")
      }).pipe(Effect.scoped),
    30_000
  )

  it.effect("IPC_TRANSPORT=file picks it; a service's default address is a directory in this user's temp area", () =>
    Effect.gen(function*() {
      const selection = yield* Registry.resolve([File.descriptor, Registry.memory], {
        transport: "file",
        service: "calc"
      })
      assert.strictEqual(selection.descriptor.name, "file")
      assert.match(selection.address, /^file:\/\/\/.+\/effect-ipc-\d+\/calc$/)
      const parsed = yield* File.FileTransport.parse("file:///tmp/x/?role=frontend")
      assert.deepStrictEqual(parsed, { dir: "/tmp/x", role: "frontend" })
      const bad = yield* Effect.flip(File.FileTransport.parse("file:///tmp/x?role=middle"))
      assert.strictEqual(bad.reason._tag, "InvalidAddress")
    }))

  it.live(
    "FileTransport.layer and the descriptor build it the same way: both refuse a platform without flock",
    () =>
      Effect.gen(function*() {
        // the child pretends to run on aix, where this package finds no flock
        const result = yield* run(node(["no-flock"]))
        assert.strictEqual(result.code, 0, result.stderr)
        const [layer, descriptor] = result.lines.map((line) => JSON.parse(line) as { reason?: string })
        // UnsupportedPlatform, or LibraryMissing when the native loader itself finds nothing for aix
        assert.oneOf(descriptor?.reason, ["UnsupportedPlatform", "LibraryMissing"])
        assert.strictEqual(layer?.reason, descriptor?.reason, "FileTransport.layer checks what the descriptor checks")
      }),
    30_000
  )
})

describe("file:// listen on a directory it did not make (review item 1)", () => {
  it.live(
    "a user's directory with a connections/ folder: AddressInUse naming what is there, every file kept",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root, "proj")
        Fs.mkdirSync(Path.join(dir, "connections", "photos"), { recursive: true, mode: 0o755 })
        Fs.chmodSync(dir, 0o755)
        Fs.writeFileSync(Path.join(dir, "connections", "photos", "cat.txt"), "meow")
        Fs.writeFileSync(Path.join(dir, "connections", "todo.txt"), "buy milk")
        const before = snapshot(dir)
        const error = yield* Effect.flip(Effect.scoped(File.make().listen(`file://${dir}`)))
        assert.strictEqual(error.reason._tag, "AddressInUse")
        assert.include(error.detail, "connections")
        assert.deepStrictEqual(snapshot(dir), before, "every file as it was")
        // a directory holding a file of the user is refused the same way
        const other = fresh(root, "notes")
        Fs.mkdirSync(other)
        Fs.writeFileSync(Path.join(other, "listener.lock"), "mine")
        const refused = yield* Effect.flip(Effect.scoped(File.make().listen(`file://${other}`)))
        assert.strictEqual(refused.reason._tag, "AddressInUse")
        assert.include(refused.detail, "listener.lock")
        assert.strictEqual(Fs.readFileSync(Path.join(other, "listener.lock"), "utf8"), "mine")
        assert.deepStrictEqual(Fs.readdirSync(other), ["listener.lock"])
      }),
    30_000
  )

  it.live(
    "an empty directory of the user is served, and left empty (not removed) once the listener closes",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root, "empty")
        Fs.mkdirSync(dir, { mode: 0o700 })
        const transport = File.make()
        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* transport.listen(`file://${dir}`)
          const client = yield* transport.dial(`file://${dir}`)
          const server = yield* listener.accept
          yield* client.send(bytes("hi"))
          assert.strictEqual(text.decode(yield* server.receive), "hi")
        }))
        assert.deepStrictEqual(Fs.readdirSync(dir), [], "the user's directory is left as it was")
      }),
    30_000
  )

  it.live(
    "a listener restarted on its own directory serves again and removes what in connections/ is not a connection",
    () =>
      Effect.gen(function*() {
        const dir = fresh(root, "own")
        const address = `file://${dir}`
        const transport = File.make()
        // a client still connected when the first listener closes keeps the directory (and its marker)
        const first = yield* Scope.make()
        const previous = yield* transport.listen(address).pipe(Scope.provide(first))
        const client = yield* transport.dial(address)
        yield* previous.accept
        yield* Scope.close(first, Exit.void)
        assert.isTrue(Fs.existsSync(Path.join(dir, ".effect-ipc")))
        Fs.writeFileSync(Path.join(dir, "connections", "junk"), "garbage of our protocol")
        const listener = yield* transport.listen(address)
        const fresh1 = yield* transport.dial(address)
        const server = yield* listener.accept
        yield* fresh1.send(bytes("again"))
        assert.strictEqual(text.decode(yield* server.receive), "again")
        for (let i = 0; i < 100 && Fs.existsSync(Path.join(dir, "connections", "junk")); i++) {
          yield* Effect.sleep("50 millis")
        }
        assert.isFalse(Fs.existsSync(Path.join(dir, "connections", "junk")), "the junk is removed")
        yield* client.close
      }).pipe(Effect.scoped),
    30_000
  )
})
