/**
 * `IPC_TRANSPORT=ws` / `IPC_ADDRESS=ws://...` select this transport among the
 * others, and `IPC_OPTIONS` / `IPC_OPTIONS_<NAME>` reach it (page origins, the
 * message limit); a bad option fails the build with reason `InvalidOption`.
 */
import { Registry, Transport } from "@effect-ipc/core"
import * as Process from "@effect-ipc/core/Process"
import * as ConfigEnv from "@effect-ipc/testing/ConfigEnv"
import * as Pipe from "@effect-ipc/transport-pipe"
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { freshAddress, sweepTokenFiles } from "./helpers.ts"

afterAll(sweepTokenFiles)

const configured = ConfigEnv.layerFrom([Pipe.descriptor, Registry.memory, Ws.descriptor])

describe("ws options from configuration", () => {
  it.live(
    "IPC_ADDRESS=ws://... picks the ws transport; IPC_OPTIONS sets origins and the message limit",
    () =>
      Effect.gen(function*() {
        const address = freshAddress("config")
        yield* Effect.gen(function*() {
          assert.strictEqual(yield* Registry.IpcAddress, address)
          const listener = yield* Transport.listen(address)
          yield* Effect.forkScoped(Transport.serve(listener, (c) => Effect.forever(Effect.flatMap(c.receive, c.send))))
          // the configured transport's client finds the token in the listener's token file
          const client = yield* Transport.dial(address)
          yield* client.send(new Uint8Array(1000))
          assert.strictEqual((yield* client.receive).byteLength, 1000)
          const tooLarge = yield* Effect.flip(client.send(new Uint8Array(1001)))
          assert.strictEqual(tooLarge.reason._tag, "FrameTooLarge")
          // a listed page origin passes, another does not
          const token = Ws.TokenFile.lookup(yield* Ws.WsAddress.parse(address))
          const listed = yield* Ws.WsClient.dial(address, { token, headers: { origin: "http://127.0.0.1:5173" } })
          yield* listed.send(new Uint8Array([1]))
          assert.deepStrictEqual([...(yield* listed.receive)], [1])
          const other = yield* Effect.flip(
            Ws.WsClient.dial(address, { token, headers: { origin: "http://a.example" } })
          )
          assert.strictEqual(other.reason._tag, "PeerRejected")
        }).pipe(
          Effect.scoped,
          Effect.provide(configured({
            IPC_ADDRESS: address,
            IPC_OPTIONS: `{"maxMessageSize": 1000}`,
            IPC_OPTIONS_ALLOWED_ORIGINS: "http://127.0.0.1:5173, http://localhost:5173"
          }))
        )
      }),
    60_000
  )

  it.live(
    "IPC_OPTIONS_TOKEN_FILE: the listener writes its token there, and the same configured transport's dial reads it",
    () =>
      Effect.gen(function*() {
        const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-ws-token-file-"))
        yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
        const tokenFile = Path.join(dir, "x.token")
        const address = freshAddress("token-file")
        yield* Effect.gen(function*() {
          const listener = yield* Transport.listen(address)
          yield* Effect.forkScoped(Transport.serve(listener, (c) => Effect.forever(Effect.flatMap(c.receive, c.send))))
          assert.isTrue(Fs.existsSync(tokenFile))
          // it was refused (PeerRejected: no token), looking in the default file only
          const client = yield* Transport.dial(address)
          yield* client.send(new Uint8Array([7]))
          assert.deepStrictEqual([...(yield* client.receive)], [7])
        }).pipe(
          Effect.scoped,
          Effect.provide(configured({ IPC_ADDRESS: address, IPC_OPTIONS_TOKEN_FILE: tokenFile }))
        )
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("a given tokenFile holding anything but a token file is AlreadyExists, left as it was", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-ws-token-taken-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
      const notes = Path.join(dir, "notes.txt")
      Fs.writeFileSync(notes, "a user's notes\n")
      Fs.symlinkSync(notes, Path.join(dir, "link"))
      Fs.mkdirSync(Path.join(dir, "dir"))
      ChildProcess.execFileSync("mkfifo", [Path.join(dir, "fifo")])
      for (const name of ["notes.txt", "link", "dir", "fifo"]) {
        const tokenFile = Path.join(dir, name)
        const error = yield* Effect.flip(Effect.scoped(Ws.WsServer.listen(freshAddress("taken"), { tokenFile })))
        assert.strictEqual(error.reason._tag, "AlreadyExists", `${name}: ${error.detail}`)
      }
      // each is still what it was: the user's file not written over, nor removed as the listener closed
      assert.strictEqual(Fs.readFileSync(notes, "utf8"), "a user's notes\n")
      assert.isTrue(Fs.lstatSync(Path.join(dir, "link")).isSymbolicLink())
      assert.isTrue(Fs.lstatSync(Path.join(dir, "dir")).isDirectory())
      assert.isTrue(Fs.lstatSync(Path.join(dir, "fifo")).isFIFO())
      // a token file an earlier listener left there is replaced (a restart at the same path): one whose
      // process has ended (a listener's that runs is refused: TokenSweep.test.ts)
      const tokenFile = Path.join(dir, "x.token")
      const ended = ChildProcess.spawnSync("true").pid
      Fs.writeFileSync(tokenFile, `an-old-token\n${Process.encode(Process.fromPid(ended))}\n`, { mode: 0o600 })
      const second = yield* Ws.WsServer.listen(freshAddress("second"), { tokenFile })
      assert.isTrue(Fs.readFileSync(tokenFile, "utf8").startsWith(`${second.token}\n`))
    }).pipe(Effect.scoped))

  it.live("a tokenFile's token goes to loopback addresses only, never to another host", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-ws-token-leak-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
      const tokenFile = Path.join(dir, "x.token")
      // a listener of ours writes its token to the file
      yield* Ws.WsServer.listen(freshAddress("leak"), { tokenFile })
      assert.isTrue(Fs.existsSync(tokenFile))
      // what a dial to another host would present: the connection is captured, not made
      const offered: Array<ReadonlyArray<string>> = []
      const capturing = Ws.WsTransport.make({
        tokenFile,
        connect: (_url, protocols) => {
          offered.push(protocols)
          throw new Error("captured")
        }
      })
      yield* Effect.exit(Effect.scoped(capturing.dial("ws://example.com:8765/theirs")))
      assert.strictEqual(offered.length, 1)
      assert.isFalse(offered[0]!.some((protocol) => protocol.startsWith("effect-ipc.token.")), String(offered[0]))
    }).pipe(Effect.scoped), 30_000)

  it.live("IPC_TRANSPORT=ws uses the default address of the service", () =>
    Effect.gen(function*() {
      const address = yield* Registry.IpcAddress.pipe(Effect.provide(configured({ IPC_TRANSPORT: "ws" })))
      assert.strictEqual(address, `ws://127.0.0.1:${Ws.defaultPort("effect-ipc")}/effect-ipc`)
    }))

  it.effect("a bad option fails the build with InvalidOption", () =>
    Effect.gen(function*() {
      const wrong = yield* Effect.flip(
        Layer.build(configured({ IPC_TRANSPORT: "ws", IPC_OPTIONS_ALLOW_REMOTE: "maybe" }))
      )
      assert.strictEqual(wrong._tag, "IpcError")
      assert.include(wrong.message, "IPC_OPTIONS_ALLOW_REMOTE")
      const unknown = yield* Effect.flip(Layer.build(configured({ IPC_TRANSPORT: "ws", IPC_OPTIONS_MODE: "0600" })))
      assert.include(unknown.message, "InvalidOption")
      // a token of the wrong kind is named by its kind, never shown (it said: got ["<the token>"])
      const secret = "Kx81-not-to-be-shown-5f2a9c7e3b"
      const token = yield* Effect.flip(
        Layer.build(configured({ IPC_TRANSPORT: "ws", IPC_OPTIONS: JSON.stringify({ token: [secret] }) }))
      )
      assert.include(token.message, "option token (IPC_OPTIONS.token): expected a non-empty string, got an array")
      assert.notInclude(token.message, secret)
      const number = yield* Effect.flip(
        Layer.build(configured({ IPC_TRANSPORT: "ws", IPC_OPTIONS: JSON.stringify({ token: 8675309 }) }))
      )
      assert.include(number.message, "got a value of type number")
      assert.notInclude(number.message, "8675309")
      // nor in IPC_OPTIONS that is not JSON (the parser's message quoted the text around where it stopped)
      const unquoted = yield* Effect.flip(
        Layer.build(configured({ IPC_TRANSPORT: "ws", IPC_OPTIONS: `{"token": ${secret}}` }))
      )
      assert.include(unquoted.message, "IPC_OPTIONS is not JSON")
      assert.notInclude(unquoted.message, secret.slice(0, 8))
    }).pipe(Effect.scoped))
})

/** A `tokenLookup` that throws (the caller's code). */
const tokenLookup = () => {
  throw new Error("no keyring here")
}

describe("ws:// options of the wrong kind, given in code past the types", () => {
  // `tokenLookup: "x"` was a TypeError defect at dial, `connect: 42` InvalidAddress, `tokenFile: true` Open
  // (a file named "true" looked for)
  it.live("are InvalidOption naming the option, at listen and at dial; maxMessageSize 0 refuses a message", () =>
    Effect.gen(function*() {
      const address = freshAddress("kinds")
      const wrong: ReadonlyArray<readonly [string, object]> = [
        ["tokenFile", { tokenFile: true }],
        ["tokenFile", { tokenFile: 123 }],
        ["token", { token: 7 }]
      ]
      for (const [name, options] of wrong) {
        const error = yield* Effect.flip(Effect.scoped(Ws.WsServer.listen(address, options as never)))
        assert.strictEqual(error.reason._tag, "InvalidOption", error.message)
        assert.include(error.detail, name)
      }
      // headers that are not an object of strings were dropped unseen; a header's value is never shown
      const dialWrong = [
        ["tokenLookup", { tokenLookup: "x" }],
        ["connect", { connect: 42 }],
        ["headers", { headers: 5 }],
        ["headers", { headers: { authorization: 7 } }],
        ["headers", { headers: ["origin", "x"] }]
      ] as const
      for (const [name, options] of dialWrong) {
        const error = yield* Effect.flip(Effect.scoped(Ws.WsClient.dial(address, options as never)))
        assert.strictEqual(error.reason._tag, "InvalidOption", error.message)
        assert.include(error.detail, name)
      }
      // a lookup that throws (the caller's code) fails the dial typed, on the client and the transport: it was a
      // defect, the exception thrown across the API
      for (
        const dial of [Ws.WsClient.dial(address, { tokenLookup }), Ws.WsTransport.make({ tokenLookup }).dial(address)]
      ) {
        const error = yield* Effect.flip(Effect.scoped(dial))
        assert.strictEqual(error.reason._tag, "InvalidOption", error.message)
        assert.include(error.detail, "tokenLookup threw: no keyring here")
      }
      const listener = yield* Ws.WsServer.listen(address, { tokenFile: false, maxMessageSize: 0 })
      const client = yield* Ws.WsClient.dial(address, { token: listener.token })
      const served = yield* listener.accept
      yield* client.send(new Uint8Array(1024))
      const refused = yield* Effect.flip(served.receive)
      assert.strictEqual(refused.reason._tag, "FrameTooLarge", refused.message)
    }).pipe(Effect.scoped))
})

describe("ws:// addresses", () => {
  it.effect("an explicit port 80 is a port (URL drops the scheme's default); none is InvalidAddress", () =>
    Effect.gen(function*() {
      for (
        const [address, port] of [["ws://127.0.0.1:80/app", 80], ["ws://[::1]:80/x", 80], [
          "ws://127.0.0.1:8080/a",
          8080
        ]] as const
      ) {
        const parsed = yield* Ws.WsAddress.parse(address)
        assert.strictEqual(parsed.port, port, address)
        assert.strictEqual(parsed.url, address)
      }
      for (const address of ["ws://127.0.0.1/app", "ws://127.0.0.1:/app"]) {
        const error = yield* Effect.flip(Ws.WsAddress.parse(address))
        assert.strictEqual(error.reason._tag, "InvalidAddress", address)
        assert.include(error.detail, "needs a port")
      }
    }))

  it.live("a dial of port 0 (listen's free port) is InvalidAddress, at once, by the client and the transport", () =>
    Effect.gen(function*() {
      // (InvalidAddress is said before any connection: a dial that tried would end NotFound or Timeout)
      const fromClient = yield* Effect.flip(Ws.WsClient.dial("ws://127.0.0.1:0/app"))
      const fromTransport = yield* Effect.flip(Ws.WsTransport.make().dial("ws://127.0.0.1:0/app?token=x"))
      for (const error of [fromClient, fromTransport]) {
        assert.strictEqual(error.reason._tag, "InvalidAddress")
        assert.include(error.detail, "port 0")
        assert.notInclude(error.message, "token=")
      }
    }).pipe(Effect.scoped))
})

describe("options given in code that are not an object (a caller without types)", () => {
  it.effect("WsTransport.make and WsClient.make take them, and each listen and dial fails with InvalidOption", () =>
    Effect.gen(function*() {
      for (const given of [null, "fast", 42]) {
        const bad = given as never
        const attempts = [
          Effect.asVoid(Ws.WsTransport.make(bad).listen("ws://127.0.0.1:0/bad")),
          Effect.asVoid(Ws.WsTransport.make(bad).dial("ws://127.0.0.1:9/bad")),
          Effect.asVoid(Ws.WsClient.make(bad).dial("ws://127.0.0.1:9/bad"))
        ]
        for (const attempt of attempts) {
          const error = yield* Effect.flip(Effect.scoped(attempt))
          assert.strictEqual(error.reason._tag, "InvalidOption", error.detail)
          assert.match(error.detail, /^the options are not an object \(got (null|a string|a number)\)$/)
        }
      }
    }))
})
