/**
 * `IPC_TRANSPORT=nng` options from configuration (`IPC_OPTIONS`,
 * `IPC_OPTIONS_<NAME>`): they reach every channel the transport opens, and a
 * bad one fails the layer's build with reason `InvalidOption`.
 */
import { IpcChannel, Registry, Transport, TransportOptions } from "@effect-ipc/core"
import * as ConfigEnv from "@effect-ipc/testing/ConfigEnv"
import * as Nng from "@effect-ipc/transport-nng"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-config-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

const configured = ConfigEnv.layerFrom([Nng.descriptor], { IPC_TRANSPORT: "nng" })

describe("nng options from configuration", () => {
  it.live("IPC_OPTIONS_MAX_MESSAGE_SIZE limits messages", () =>
    Effect.gen(function*() {
      const address = yield* Registry.IpcAddress
      const listener = yield* Transport.listen(address)
      const client = yield* Transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(new Uint8Array(2048))
      assert.strictEqual((yield* server.receive).byteLength, 2048)
      const error = yield* Effect.flip(client.send(new Uint8Array(2049)))
      assert.strictEqual(error.reason._tag, "FrameTooLarge")
    }).pipe(
      Effect.scoped,
      Effect.provide(configured({ IPC_ADDRESS: `nng+ipc://${dir}/n.ipc`, IPC_OPTIONS_MAX_MESSAGE_SIZE: "2048" }))
    ), 60_000)

  it.live(
    "a message of exactly maxMessageSize, and small messages sent while nng is full, arrive",
    () =>
      Effect.gen(function*() {
        const address = yield* Registry.IpcAddress
        const listener = yield* Transport.listen(address)
        const client = yield* Transport.dial(address)
        const server = yield* listener.accept
        // nng's pair v1 header and the kind byte once made the receiver drop this one (ConnectionLost)
        yield* client.send(new Uint8Array(1000).fill(1))
        assert.strictEqual((yield* server.receive).byteLength, 1000)
        // with one message of send buffer, these queue and go out in batches far larger than 1000 bytes
        for (let i = 0; i < 300; i++) yield* client.send(new Uint8Array(900).fill(i % 256))
        for (let i = 0; i < 300; i++) {
          const message = yield* server.receive
          assert.strictEqual(message.byteLength, 900)
          assert.strictEqual(message[0], i % 256)
        }
      }).pipe(
        Effect.scoped,
        Effect.provide(configured({
          IPC_ADDRESS: `nng+ipc://${dir}/exact.ipc`,
          IPC_OPTIONS: `{"maxMessageSize": 1000, "sendBuffer": 1}`
        }))
      ),
    60_000
  )

  it.live(
    "a peer allowed larger messages cannot get one past maxMessageSize: alone or in a batch, FrameTooLarge",
    () =>
      Effect.gen(function*() {
        // nng's own receive limit admits a whole batch (256 KiB), so the channel holds each message to
        // maxMessageSize itself; what came before the oversized message is delivered, nothing after
        for (
          const [name, sends] of [["alone", [10, 1001, 10]], ["batch", [
            ...Array.from({ length: 200 }, () => 10),
            1001,
            10
          ]]] as const
        ) {
          const small = Nng.NngTransport.make({ maxMessageSize: 1000, recvBuffer: 1 })
          const large = Nng.NngTransport.make({ maxMessageSize: 100_000, sendBuffer: 1 })
          const address = `nng+ipc://${dir}/over-${name}.ipc`
          yield* Effect.scoped(Effect.gen(function*() {
            const listener = yield* small.listen(address)
            const client = yield* large.dial(address)
            const server = yield* listener.accept
            // "batch": sent as one batch, they queue behind nng's one-message buffer and go out together, the
            // oversized one in a batch behind many small ones (which the old code dropped with it)
            const messages = sends.map((size) => new Uint8Array(size).fill(7))
            yield* name === "batch"
              ? IpcChannel.sendAll(client, messages)
              : Effect.forEach(messages, client.send, { discard: true })
            const received: Array<number> = []
            const error = yield* Effect.flip(
              Effect.forever(Effect.map(server.receive, (m) => received.push(m.byteLength)))
            )
            assert.strictEqual(error.reason._tag, "FrameTooLarge", `${name}: ${error.message}`)
            assert.deepStrictEqual(received, sends.slice(0, sends.indexOf(1001)), name)
          }))
        }
      }),
    60_000
  )

  it.live(
    "IPC_OPTIONS_MODE is the socket file's mode, and lets the group search the conversations' directory",
    () =>
      Effect.gen(function*() {
        const address = yield* Registry.IpcAddress
        const path = address.slice("nng+ipc://".length)
        yield* Transport.listen(address)
        assert.strictEqual((Fs.statSync(path).mode & 0o777).toString(8), "660")
        // the conversations' directory beside it: 0700, plus search for the group that mode lets connect
        const conversations = Fs.readdirSync(dir).filter((name) => name.startsWith(".eipc-"))
        assert.lengthOf(conversations, 1)
        assert.strictEqual((Fs.statSync(Path.join(dir, conversations[0]!)).mode & 0o777).toString(8), "710")
      }).pipe(
        Effect.scoped,
        Effect.provide(configured({ IPC_ADDRESS: `nng+ipc://${dir}/mode.ipc`, IPC_OPTIONS_MODE: "0660" }))
      ),
    60_000
  )

  it.effect("a bad option fails the build with InvalidOption naming it and the transport", () =>
    Effect.gen(function*() {
      const wrong = yield* Effect.flip(Layer.build(configured({ IPC_OPTIONS_CONNECT_TIMEOUT: "soon" })))
      assert.strictEqual(wrong._tag, "IpcError")
      if (wrong._tag !== "IpcError") return
      assert.strictEqual(wrong.reason._tag, "InvalidOption")
      assert.strictEqual(
        wrong.detail,
        `transport "nng": option connectTimeout (IPC_OPTIONS_CONNECT_TIMEOUT): expected a duration (milliseconds, or "250 millis", "5 seconds"), got "soon"`
      )
      const unknown = yield* Effect.flip(Layer.build(configured({ IPC_OPTIONS: `{"reconnect": true}` })))
      assert.include(unknown.message, `InvalidOption: transport "nng": "reconnect" (in IPC_OPTIONS) is not an option`)
      // values of the right kind that no listen or dial would take fail the build too, not the first dial
      const refused = [
        [
          { IPC_OPTIONS_SEND_BUFFER: "9000" },
          `transport "nng": option sendBuffer (IPC_OPTIONS_SEND_BUFFER): 9000 is over 8192 messages, libnng's limit`
        ],
        [
          { IPC_OPTIONS_MAX_MESSAGE_SIZE: "4 GiB" },
          `transport "nng": option maxMessageSize (IPC_OPTIONS_MAX_MESSAGE_SIZE): 4294967296 is over libnng's limit (4294967290 bytes)`
        ],
        [
          { IPC_OPTIONS_HANDSHAKE_TIMEOUT: "0" },
          `transport "nng": option handshakeTimeout (IPC_OPTIONS_HANDSHAKE_TIMEOUT): 0 is not above zero (it would time out, or poll, at once)`
        ],
        [
          { IPC_OPTIONS_CONNECT_TIMEOUT: "0" },
          `transport "nng": option connectTimeout (IPC_OPTIONS_CONNECT_TIMEOUT): 0 is not above zero (it would time out, or poll, at once)`
        ],
        [
          // a variable's mode is octal digits: a decimal 384 (0o600) is refused, not read as 0o384
          { IPC_OPTIONS_MODE: "384" },
          `transport "nng": option mode (IPC_OPTIONS_MODE): expected permission bits: octal digits in a string ("0600", "0o660"), or a JSON number, which is decimal (0o600 is 384) and at most 511, got "384"`
        ],
        [
          { IPC_OPTIONS: `{"mode": 600}` },
          `transport "nng": option mode (IPC_OPTIONS.mode): expected permission bits: octal digits in a string ("0600", "0o660"), or a JSON number, which is decimal (0o600 is 384) and at most 511, got 600`
        ],
        [
          { IPC_OPTIONS_TLS_AUTH_MODE: "maybe" },
          `transport "nng": option tls.authMode (IPC_OPTIONS_TLS_AUTH_MODE): expected one of "none", "optional", "required", got "maybe"`
        ]
      ] as const
      for (const [vars, detail] of refused) {
        const error = yield* Effect.flip(Layer.build(configured(vars)))
        assert.strictEqual(error._tag, "IpcError")
        if (error._tag !== "IpcError") return
        assert.strictEqual(error.reason._tag, "InvalidOption", error.message)
        assert.strictEqual(error.detail, detail)
      }
    }).pipe(Effect.scoped))

  // a user configures the transport from this table: each row must be an option the descriptor declares, its
  // variable the one read, and its kind what that variable takes
  it.effect("the README's options table is the descriptor's options, each variable taking a value of its kind", () =>
    Effect.gen(function*() {
      const readme = Fs.readFileSync(Path.join(import.meta.dirname, "..", "README.md"), "utf8")
      const start = readme.indexOf("## Options from configuration")
      assert.isAbove(start, -1)
      const section = readme.slice(start, readme.indexOf("\n## ", start + 1))
      const rows = [...section.matchAll(/^\| `([\w.]+)`\s*\| `(\w+)`\s*\| `(IPC_OPTIONS_\w+)`/gm)]
      assert.deepStrictEqual(
        rows.map((row) => [row[1]!, row[3]!]).toSorted(),
        (Nng.descriptor.options?.names ?? []).map((name) => [name.path.join("."), name.variable]).toSorted()
      )
      // a value of each kind, and what it decodes to
      const samples: Record<string, readonly [string, unknown]> = {
        Bytes: ["64 KiB", 65536],
        Count: ["3", 3],
        Duration: ["250 millis", 250],
        Mode: ["0640", 0o640],
        Choice: ["optional", "optional"],
        Text: ["/etc/app/x.pem", "/etc/app/x.pem"]
      }
      for (const [, name, kind, variable] of rows) {
        const sample = samples[kind!]
        assert.isDefined(sample, `${name}: kind ${kind}`)
        const options = yield* TransportOptions.read("nng", Nng.descriptor.options).pipe(
          Effect.provideService(
            ConfigProvider.ConfigProvider,
            ConfigProvider.fromEnv({ env: { [variable!]: sample![0] } })
          )
        )
        let value: unknown = options
        for (const key of name!.split(".")) value = (value as Record<string, unknown> | undefined)?.[key]
        assert.deepStrictEqual(Duration.isDuration(value) ? Duration.toMillis(value) : value, sample![1], name)
      }
    }))
})
