/**
 * nng over TLS (`nng+tls+tcp://`, `nng+wss://`) with certificates made by the
 * test (`fixtures/certs.ts`: two throwaway CAs, removed afterwards): a server
 * certificate alone, mutual authentication, and every refusal typed —
 * a client whose certificate another CA signed, a client without one, a
 * client that cannot verify the server — while the server keeps serving.
 */
import { Registry, Transport } from "@effect-ipc/core"
import * as Nng from "@effect-ipc/transport-nng"
import { NngTransport, Rep, Req } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Certs from "./fixtures/certs.ts"
import * as Child from "./fixtures/process.ts"

const encoder = new TextEncoder()
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

/** Sends `ping` over a fresh channel to `address` and returns the echo. */
const roundTrip = (transport: Transport.TransportShape, listener: Transport.Listener) =>
  Effect.gen(function*() {
    const client = yield* transport.dial(listener.address)
    const server = yield* listener.accept
    yield* client.send(encoder.encode("ping"))
    yield* server.send(yield* server.receive)
    return text(yield* client.receive)
  })

/** The error of dialing `address` with `tls`, which must fail. */
const refusal = (address: string, tls: Nng.NngTls.TlsOptions) =>
  Effect.flip(NngTransport.make({ tls, connectTimeout: "20 seconds" }).dial(address))

/** A child's environment: the nng transport at `address`, each TLS option as `IPC_OPTIONS_TLS_<NAME>`. */
const env = (address: string, tls: Record<string, string>) => ({
  ...process.env,
  IPC_TRANSPORT: "nng",
  IPC_ADDRESS: address,
  ...Object.fromEntries(
    Object.entries(tls).map(([key, value]) => [`IPC_OPTIONS_TLS_${key.replace(/File$/, "_FILE").toUpperCase()}`, value])
  )
})

/** `Registry.layerConfig` for the nng transport over the variables `env`. */
const configured = (vars: Record<string, string>) =>
  Registry.layerConfig([Nng.descriptor]).pipe(
    Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { IPC_TRANSPORT: "nng", ...vars } })))
  )

describe("nng over TLS", () => {
  for (const scheme of ["nng+tls+tcp://127.0.0.1:0", "nng+wss://127.0.0.1:0/app"]) {
    it.live(
      `${scheme.split(":")[0]}: a server certificate alone; the client verifies it against its CA`,
      () =>
        Effect.gen(function*() {
          const certs = yield* Certs.make
          const server = NngTransport.make({ tls: certs.good.server })
          const listener = yield* server.listen(scheme)
          assert.notInclude(listener.address, ":0")
          const client = NngTransport.make({ tls: { caFile: certs.good.caFile } })
          const channel = yield* client.dial(listener.address)
          const accepted = yield* listener.accept
          yield* channel.send(encoder.encode("over TLS"))
          assert.strictEqual(text(yield* accepted.receive), "over TLS")
          yield* accepted.send(encoder.encode("back"))
          assert.strictEqual(text(yield* channel.receive), "back")

          // a client that does not trust the server's CA (or has no CA at all) refuses it, typed
          for (const tls of [{ caFile: certs.rogue.caFile }, {}]) {
            const error = yield* refusal(listener.address, tls)
            assert.strictEqual(error.reason._tag, "PeerRejected", String(error))
            assert.oneOf(error.errno, ["NNG_EPEERAUTH", "NNG_ECRYPTO"])
          }
          // nor a name the certificate does not carry
          const misnamed = yield* refusal(listener.address, { caFile: certs.good.caFile, serverName: "other.example" })
          assert.strictEqual(misnamed.reason._tag, "PeerRejected", String(misnamed))
          // the listener still serves
          assert.strictEqual(yield* roundTrip(client, listener), "ping")
        }).pipe(Effect.scoped),
      120_000
    )
  }

  it.live("a plain nng+tcp:// client gets no channel from a TLS listener", () =>
    Effect.gen(function*() {
      const certs = yield* Certs.make
      const listener = yield* NngTransport.make({ tls: certs.good.server }).listen("nng+tls+tcp://127.0.0.1:0")
      const plain = listener.address.replace("nng+tls+tcp://", "nng+tcp://")
      const error = yield* Effect.flip(NngTransport.make({ connectTimeout: "3 seconds" }).dial(plain))
      // nng counts the connection the listener closes mid-handshake as unreachable: refused typed, without waiting
      assert.oneOf(error.reason._tag, ["NotFound", "Protocol", "ConnectionLost"], String(error))
    }).pipe(Effect.scoped), 60_000)

  it.live(
    "mutual authentication: only a client certificate of the listener's CA gets a channel",
    () =>
      Effect.gen(function*() {
        const certs = yield* Certs.make
        const listener = yield* NngTransport.make({ tls: { ...certs.good.server, caFile: certs.good.caFile } })
          .listen("nng+tls+tcp://127.0.0.1:0")
        const good = NngTransport.make({ tls: { ...certs.good.client, caFile: certs.good.caFile } })
        const client = yield* good.dial(listener.address)
        const server = yield* listener.accept
        yield* client.send(encoder.encode("before"))
        assert.strictEqual(text(yield* server.receive), "before")
        // a certificate of another CA, and no certificate: refused, typed (not a reconnect loop until a timeout)
        for (const tls of [{ ...certs.rogue.client, caFile: certs.good.caFile }, { caFile: certs.good.caFile }]) {
          const error = yield* refusal(listener.address, tls)
          assert.strictEqual(error.reason._tag, "PeerRejected", String(error))
        }
        // the good client's channel goes on, and new good clients are served
        yield* server.send(encoder.encode("after"))
        assert.strictEqual(text(yield* client.receive), "after")
        assert.strictEqual(yield* roundTrip(good, listener), "ping")
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "across processes, configured from the environment: mutual TLS, a wrong certificate refused",
    () =>
      Effect.gen(function*() {
        const certs = yield* Certs.make
        const server = yield* Child.node("tls.ts", ["serve"], {
          env: env("nng+tls+tcp://127.0.0.1:0", { ...certs.good.server, caFile: certs.good.caFile })
        })
        const address = (yield* server.waitFor((line) => line.startsWith("ready "))).slice("ready ".length)
        const dial = (tls: Record<string, string>) =>
          Effect.gen(function*() {
            const client = yield* Child.node("tls.ts", ["dial"], { env: env(address, tls) })
            const line = yield* client.waitFor((l) => l.startsWith("echoed ") || l.startsWith("error "), 60_000)
            assert.strictEqual(yield* client.exited, 0)
            return line
          })
        assert.strictEqual(yield* dial({ ...certs.good.client, caFile: certs.good.caFile }), "echoed ping")
        assert.match(
          yield* dial({ ...certs.rogue.client, caFile: certs.good.caFile }),
          /^error PeerRejected /
        )
        assert.match(yield* dial({ caFile: certs.good.caFile }), /^error PeerRejected /)
        // a client that trusts another CA refuses the server
        assert.match(
          yield* dial({ ...certs.good.client, caFile: certs.rogue.caFile }),
          /^error PeerRejected /
        )
        // the server kept serving
        assert.strictEqual(yield* dial({ ...certs.good.client, caFile: certs.good.caFile }), "echoed ping")
      }).pipe(Effect.scoped),
    180_000
  )

  it.live("options from configuration: IPC_OPTIONS tls, and bad TLS options fail typed", () =>
    Effect.gen(function*() {
      const certs = yield* Certs.make
      const tls = { ...certs.good.server, caFile: certs.good.caFile }
      const serving = yield* Layer.build(configured({
        IPC_ADDRESS: "nng+wss://127.0.0.1:0/configured",
        IPC_OPTIONS: JSON.stringify({ tls })
      }))
      const listener = yield* Transport.listen("nng+wss://127.0.0.1:0/configured").pipe(Effect.provideContext(serving))
      const good = NngTransport.make({ tls: { ...certs.good.client, caFile: certs.good.caFile } })
      assert.strictEqual(yield* roundTrip(good, listener), "ping")

      // a listener without a certificate, a wrong authMode, a missing file
      const bare = yield* Effect.flip(NngTransport.make().listen("nng+tls+tcp://127.0.0.1:0"))
      assert.strictEqual(bare.reason._tag, "InvalidOption")
      assert.include(bare.detail, "certFile")
      const mode = yield* Effect.flip(Layer.build(configured({ IPC_OPTIONS_TLS_AUTH_MODE: "strict" })))
      assert.include(mode.message, "InvalidOption")
      assert.include(mode.message, "IPC_OPTIONS_TLS_AUTH_MODE")
      const missing = yield* Effect.flip(
        NngTransport.make({ tls: { certFile: Path.join(certs.dir, "absent.pem") } }).listen("nng+tls+tcp://127.0.0.1:0")
      )
      assert.strictEqual(missing.reason._tag, "NotFound")
      // the file and why, as the command line prints them before the address (it put the address between)
      assert.strictEqual(
        missing.detail,
        `cannot read the TLS certificate ${Path.join(certs.dir, "absent.pem")}: no such file or directory`
      )
      // a directory where a file was meant
      const directory = yield* Effect.flip(
        NngTransport.make({ tls: { certFile: certs.dir } }).listen("nng+tls+tcp://127.0.0.1:0")
      )
      assert.strictEqual(directory.reason._tag, "InvalidOption", String(directory))
      assert.include(directory.detail, "is a directory")
      // a device, a FIFO nobody writes and a file far too large for a PEM: refused at once, nothing read
      const fifo = Path.join(certs.dir, "fifo.pem")
      ChildProcess.execFileSync("mkfifo", [fifo])
      const large = Path.join(certs.dir, "large.pem")
      Fs.writeFileSync(large, Buffer.alloc(2 * 1024 * 1024, 0x41))
      for (const [file, said] of [["/dev/zero", "not a regular file"], [fifo, "a FIFO"], [large, "over the 1 MiB"]]) {
        const refused = yield* Effect.flip(
          NngTransport.make({ tls: { caFile: file } }).dial("nng+tls+tcp://127.0.0.1:1")
        ).pipe(Effect.timeout("5 seconds"))
        assert.strictEqual(refused.reason._tag, "InvalidOption", String(refused))
        assert.include(refused.detail, said)
      }
      // a file that is not a certificate
      const garbage = yield* Effect.flip(
        NngTransport.make({
          tls: { certFile: certs.good.caFile.replace(/\.pem$/, ".key"), keyFile: certs.good.server.certFile }
        })
          .listen("nng+tls+tcp://127.0.0.1:0")
      )
      assert.strictEqual(garbage.reason._tag, "InvalidOption", String(garbage))

      // one file holding both the certificate and its key (keyFile left out)
      const both = Path.join(certs.dir, "server-both.pem")
      Fs.writeFileSync(
        both,
        Fs.readFileSync(certs.good.server.certFile, "utf8") + Fs.readFileSync(certs.good.server.keyFile, "utf8")
      )
      const combined = yield* NngTransport.make({ tls: { certFile: both } }).listen("nng+tls+tcp://127.0.0.1:0")
      assert.strictEqual(yield* roundTrip(NngTransport.make({ tls: { caFile: certs.good.caFile } }), combined), "ping")
    }).pipe(Effect.scoped), 120_000)

  it.live(
    "a TLS listener that offers a conversation in clear text is refused (Protocol)",
    () =>
      Effect.gen(function*() {
        const certs = yield* Certs.make
        // a rendezvous over TLS that answers the hello with a plain tcp:// conversation
        const bound = yield* Rep.serve(
          { listen: "tls+tcp://127.0.0.1:0", tls: certs.good.server },
          () => Effect.succeed(encoder.encode(JSON.stringify({ v: 1, url: "tcp://127.0.0.1:1", token: "t" })))
        )
        const error = yield* refusal(`nng+${bound.listening[0]!}`, { caFile: certs.good.caFile })
        assert.strictEqual(error.reason._tag, "Protocol", String(error))
        assert.include(error.detail, "over tcp")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("the messaging patterns: Req/Rep over tls+tcp:// with mutual authentication", () =>
    Effect.gen(function*() {
      const certs = yield* Certs.make
      const bound = yield* Rep.serve(
        { listen: "tls+tcp://127.0.0.1:0", tls: { ...certs.good.server, caFile: certs.good.caFile } },
        (body) => Effect.succeed(encoder.encode(text(body).toUpperCase()))
      )
      const requester = yield* Req.make({
        dial: bound.listening[0]!,
        tls: { ...certs.good.client, caFile: certs.good.caFile }
      })
      assert.strictEqual(text(yield* requester.request(encoder.encode("secret"))), "SECRET")
      // a requester with another CA's certificate never connects: its requests time out
      const rogue = yield* Req.make({
        dial: bound.listening[0]!,
        tls: { ...certs.rogue.client, caFile: certs.good.caFile },
        timeout: "1 second"
      })
      const error = yield* Effect.flip(rogue.request(encoder.encode("secret")))
      assert.strictEqual(error.reason._tag, "Timeout", String(error))
    }).pipe(Effect.scoped), 60_000)
})
