/**
 * An `nng+ipc://` path is percent-decoded where it is read, as every path
 * scheme's (core's Address: a literal `%` is `%25`): the transport's, the
 * pattern sockets' `ipc://`, and the default address, whose directory is
 * escaped (a runtime or temporary directory with a `%` in its name).
 */
import * as Address from "@effect-ipc/core/Address"
import * as Nng from "@effect-ipc/transport-nng"
import { NngAddress, NngTransport, Rep, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A fresh 0700 directory whose name holds a `%`, removed after. */
const percentDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-%-pct-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

describe("percent-escapes in nng+ipc:// paths", () => {
  it.live("the transport listens and dials at the decoded path; %41 names A (a file there is left alone)", () =>
    Effect.gen(function*() {
      const dir = yield* percentDir
      const address = `nng+ipc://${Address.encodePath(dir)}/a%25b.ipc`
      const transport = NngTransport.make({ connectTimeout: "5 seconds" })
      const listener = yield* transport.listen(address)
      assert.deepStrictEqual(
        Fs.readdirSync(dir).filter((name) => name.endsWith(".ipc")),
        ["a%b.ipc"]
      )
      assert.isTrue(Fs.lstatSync(Path.join(dir, "a%b.ipc")).isSocket())
      // the conversations run beside it, in a directory whose path holds a `%` too
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(encoder.encode("percent"))
      assert.strictEqual(decoder.decode(yield* server.receive), "percent")

      Fs.writeFileSync(Path.join(dir, "A.ipc"), "precious")
      const taken = yield* Effect.flip(transport.listen(`nng+ipc://${Address.encodePath(dir)}/%41.ipc`))
      assert.strictEqual(taken.reason._tag, "AddressInUse", taken.message)
      assert.strictEqual(Fs.readFileSync(Path.join(dir, "A.ipc"), "utf8"), "precious")
      assert.isFalse(Fs.existsSync(Path.join(dir, "%41.ipc")))
    }).pipe(Effect.scoped))

  it.live("a pattern socket's ipc:// path is decoded too", () =>
    Effect.gen(function*() {
      const dir = yield* percentDir
      const url = `ipc://${Address.encodePath(dir)}/r%25.ipc`
      yield* Rep.serve({ listen: url }, (body) => Effect.succeed(body))
      assert.isTrue(Fs.lstatSync(Path.join(dir, "r%.ipc")).isSocket())
      assert.isFalse(Fs.existsSync(Path.join(dir, "r%25.ipc")))
      const requester = yield* Req.make({ dial: url, timeout: "10 seconds" })
      assert.strictEqual(decoder.decode(yield* requester.request(encoder.encode("echo"))), "echo")
    }).pipe(Effect.scoped))

  it.live("the default address escapes a runtime directory with a `%` in its name, and serves there", () =>
    Effect.gen(function*() {
      const xdg = yield* percentDir
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          const before = process.env["XDG_RUNTIME_DIR"]
          process.env["XDG_RUNTIME_DIR"] = xdg
          return before
        }),
        (before) =>
          Effect.sync(() => {
            if (before === undefined) delete process.env["XDG_RUNTIME_DIR"]
            else process.env["XDG_RUNTIME_DIR"] = before
          })
      )
      const address = Nng.descriptor.defaultAddress(`pct-${process.pid}`)
      const parsed = yield* NngAddress.parse(address)
      assert.strictEqual(parsed.path, Path.join(xdg, "effect-ipc", `pct-${process.pid}.ipc`))
      const transport = yield* Nng.descriptor.make
      const listener = yield* transport.listen(address)
      assert.isTrue(Fs.lstatSync(parsed.path).isSocket())
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(encoder.encode("default"))
      assert.strictEqual(decoder.decode(yield* server.receive), "default")
    }).pipe(Effect.scoped))
})
