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
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fresh, node, tempRoot } from "./helpers.ts"

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
        assert.strictEqual(closed.reason, "Closed")
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
          const error = yield* Effect.flip(channel.receive).pipe(Effect.timeout("2 seconds"))
          assert.strictEqual(error.reason, "ConnectionLost")
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
        assert.strictEqual(again.reason, "AddressInUse")
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
      assert.strictEqual(bad.reason, "InvalidAddress")
    }))
})
