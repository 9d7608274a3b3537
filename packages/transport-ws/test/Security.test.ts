/**
 * Safe by default: loopback only, the token (missing, wrong, from the token
 * file, never logged), page origins, the Host header (DNS rebinding), and the
 * token file's permissions. Each refusal is typed on the client, counted and
 * logged on the server, which goes on serving others.
 */
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as Transport from "@effect-ipc/core/Transport"
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as References from "effect/References"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import {
  closedBy,
  collect,
  freshAddress,
  freshPort,
  handshake,
  rawConnect,
  sweepTokenFiles,
  tokenFileOf
} from "./helpers.ts"

afterAll(sweepTokenFiles)

const numbered = (i: number): Uint8Array => new Uint8Array([i])
const Numbered = Schema.Struct({ n: Schema.Number })

/** An echo server at `address` with `options`; returns its listener. */
const echoServer = (address: string, options: Ws.WsServer.WsServerOptions = {}) =>
  Effect.gen(function*() {
    const listener = yield* Ws.WsServer.listen(address, options)
    yield* Effect.forkScoped(
      Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
    )
    return listener
  })

/** One round trip over a fresh client channel. */
const roundTrip = (address: string, options: Ws.WsClient.WsClientOptions = {}) =>
  Effect.scoped(Effect.gen(function*() {
    const channel = yield* Ws.WsClient.dial(address, options)
    yield* channel.send(numbered(42))
    return (yield* channel.receive)[0]
  }))

/** Logs and counters of the fiber that listens. */
const observed = () => {
  const logs: Array<string> = []
  const logger = Logger.make(({ message }) => {
    const values = Array.isArray(message) ? message : [message]
    logs.push(values.map((v) => (typeof v === "string" ? v : v instanceof Error ? v.message : String(v))).join(" "))
  })
  const registry = new Map() as Metric.MetricRegistry
  const layer = Layer.mergeAll(
    Logger.layer([logger]),
    Layer.succeed(References.MinimumLogLevel, "Debug"),
    Layer.succeed(Metric.MetricRegistry, registry)
  )
  const refusals = Effect.andThen(Effect.promise(() => Promise.resolve()), Metric.snapshot).pipe(
    Effect.provideService(Metric.MetricRegistry, registry),
    Effect.map((snapshots) =>
      snapshots.filter((s) => s.id === "effect_ipc_connections_refused" && s.type === "Counter")
        .reduce((total, s) => total + Number((s.state as { count: number }).count), 0)
    )
  )
  return { logs, layer, refusals }
}

describe("ws:// security", () => {
  it.live("listens on loopback only unless allowRemote is set", () =>
    Effect.gen(function*() {
      const remote = `ws://0.0.0.0:${freshPort()}/x`
      const refused = yield* Effect.flip(Ws.WsServer.listen(remote))
      assert.strictEqual(refused.reason._tag, "PermissionDenied")
      assert.include(refused.message, "not a loopback address")
      // told otherwise, it listens there
      const listener = yield* Ws.WsServer.listen(remote, { allowRemote: true, allowedHosts: [], tokenFile: false })
      assert.strictEqual(listener.address, remote)
      // localhost binds 127.0.0.1, not whatever the name resolves to; any 127.x.y.z and [::1] are loopback too
      const localPort = freshPort()
      const local = yield* echoServer(`ws://localhost:${localPort}/x`, { tokenFile: false })
      assert.strictEqual(local.address, `ws://localhost:${localPort}/x`)
      assert.strictEqual(yield* roundTrip(`ws://127.0.0.1:${localPort}/x`, { token: local.token }), 42)
      for (const host of ["127.0.0.2", "[::1]"]) {
        const other = yield* echoServer(`ws://${host}:${freshPort()}/x`, { tokenFile: false })
        assert.strictEqual(yield* roundTrip(other.address, { token: other.token }), 42)
      }
    }).pipe(Effect.scoped))

  it.live("refuses a missing or wrong token with PeerRejected, logs it without the token, serves others", () =>
    Effect.gen(function*() {
      const { layer, logs, refusals } = observed()
      const address = freshAddress("token")
      const listener = yield* echoServer(address, { tokenFile: false }).pipe(Effect.provide(layer))
      // no token anywhere (the lookup finds none), then a wrong one
      const missing = yield* Effect.flip(roundTrip(address, { tokenLookup: () => undefined }))
      assert.strictEqual(missing.reason._tag, "PeerRejected")
      assert.include(missing.message, "close 4401")
      const wrong = yield* Effect.flip(roundTrip(address, { token: "not-the-token" }))
      assert.strictEqual(wrong.reason._tag, "PeerRejected")
      assert.include(wrong.message, "token missing or wrong")
      // the right one, given as an option or in the address: served
      assert.strictEqual(yield* roundTrip(address, { token: listener.token }), 42)
      assert.strictEqual(yield* roundTrip(listener.url), 42)
      assert.strictEqual(yield* refusals, 2)
      const refusedLogs = logs.filter((line) => line.includes("refused"))
      assert.strictEqual(refusedLogs.length, 2, logs.join("\n"))
      assert.isTrue(refusedLogs.some((line) => line.includes("token missing")), refusedLogs.join("\n"))
      assert.isTrue(refusedLogs.some((line) => line.includes("token wrong")), refusedLogs.join("\n"))
      assert.isFalse(logs.some((line) => line.includes(listener.token)), "the token is never logged")
    }).pipe(Effect.scoped))

  it.live("keeps the token out of channel addresses and errors", () =>
    Effect.gen(function*() {
      const address = freshAddress("redact")
      const secret = `s3cret-${Ws.TokenFile.generate()}`
      const listener = yield* echoServer(`${address}?token=${secret}`, { tokenFile: false })
      assert.strictEqual(listener.token, secret)
      assert.strictEqual(listener.address, address)
      const channel = yield* Ws.WsClient.dial(`${address}?token=${secret}`)
      assert.strictEqual(channel.address, address)
      const error = yield* Effect.flip(Ws.WsClient.dial(`${address}?token=wrong-token`))
      assert.notInclude(error.message, "wrong-token")
      const nothing = yield* Effect.flip(Ws.WsClient.dial(`ws://127.0.0.1:${freshPort()}/x?token=${secret}`))
      assert.strictEqual(nothing.reason._tag, "NotFound")
      assert.notInclude(nothing.message, "s3cret")
    }).pipe(Effect.scoped))

  it.effect("shows an address as parsed: an escaped token name is removed, a repeated token refused", () =>
    Effect.gen(function*() {
      // %74 is "t": the parser takes this as the token, so the shown form must not carry it
      const escaped = yield* Ws.WsAddress.parse("ws://127.0.0.1:8765/app?%74oken=SECRETxESC")
      assert.strictEqual(escaped.token, "SECRETxESC")
      assert.strictEqual(escaped.redacted, "ws://127.0.0.1:8765/app")
      assert.strictEqual(Ws.WsAddress.redact("ws://127.0.0.1:8765/app?%74oken=SECRETxESC"), "ws://127.0.0.1:8765/app")
      // two tokens: which one is meant is ambiguous, so neither is used, and neither is shown
      const twice = yield* Effect.flip(Ws.WsAddress.parse("ws://127.0.0.1:8765/app?token=SECRETxA&token=SECRETxB"))
      assert.strictEqual(twice.reason._tag, "InvalidAddress")
      assert.notInclude(twice.message, "SECRETx")
      assert.notInclude(Ws.WsAddress.redact("ws://127.0.0.1:8765/app?token=SECRETxA&token=SECRETxB"), "SECRETx")
      const escapedTwice = yield* Effect.flip(
        Ws.WsAddress.parse("ws://127.0.0.1:8765/app?token=SECRETxA&t%6Fken=SECRETxB")
      )
      assert.strictEqual(escapedTwice.reason._tag, "InvalidAddress")
      assert.notInclude(escapedTwice.message, "SECRETx")
      // an address refused for another reason does not show its token either
      const bad = yield* Effect.flip(Ws.WsAddress.parse("ws://127.0.0.1/app?%74oken=SECRETxESC"))
      assert.notInclude(bad.message, "SECRETx")
    }))

  it.live("refuses a page of a foreign origin; allows listed origins and clients without Origin", () =>
    Effect.gen(function*() {
      const { layer, refusals } = observed()
      const address = freshAddress("origin")
      const listener = yield* echoServer(address, {
        tokenFile: false,
        allowedOrigins: ["http://127.0.0.1:5173"]
      }).pipe(Effect.provide(layer))
      const token = listener.token
      const foreign = yield* Effect.flip(roundTrip(address, { token, headers: { origin: "https://evil.example" } }))
      assert.strictEqual(foreign.reason._tag, "PeerRejected")
      assert.include(foreign.message, "close 4403")
      assert.include(foreign.message, "origin not allowed")
      // "null" (a file:// page, a sandboxed frame) is foreign too unless listed
      const nullOrigin = yield* Effect.flip(roundTrip(address, { token, headers: { origin: "null" } }))
      assert.strictEqual(nullOrigin.reason._tag, "PeerRejected")
      // an origin is matched whole: one that begins like a listed one is another (another port, another host)
      for (const near of ["http://127.0.0.1:51730", "http://127.0.0.1:5173.evil.example", "http://127.0.0.1:517"]) {
        const refused = yield* Effect.flip(roundTrip(address, { token, headers: { origin: near } }))
        assert.strictEqual(refused.reason._tag, "PeerRejected", `${near}: ${refused.message}`)
        assert.include(refused.message, "origin not allowed")
      }
      assert.strictEqual(yield* roundTrip(address, { token, headers: { origin: "http://127.0.0.1:5173" } }), 42)
      assert.strictEqual(yield* roundTrip(address, { token }), 42)
      assert.strictEqual(yield* refusals, 5)
      // a listed origin is matched as a browser sends it: a default port or a case a browser never sends is no
      // other origin ("http://Ok.Example:80" never matched "http://ok.example")
      const written = freshAddress("written-origin")
      const loose = yield* echoServer(written, {
        tokenFile: false,
        allowedOrigins: ["HTTP://Ok.Example:80/", "https://secure.example:443"]
      })
      for (const origin of ["http://ok.example", "https://secure.example"]) {
        assert.strictEqual(yield* roundTrip(written, { token: loose.token, headers: { origin } }), 42, origin)
      }
      for (const origin of ["http://ok.example:8080", "https://ok.example", "http://secure.example"]) {
        const refused = yield* Effect.flip(roundTrip(written, { token: loose.token, headers: { origin } }))
        assert.strictEqual(refused.reason._tag, "PeerRejected", origin)
      }
      // "null" passes only when listed
      const withNull = freshAddress("null-origin")
      const listed = yield* echoServer(withNull, { tokenFile: false, allowedOrigins: ["null"] })
      assert.strictEqual(yield* roundTrip(withNull, { token: listed.token, headers: { origin: "null" } }), 42)
    }).pipe(Effect.scoped))

  // a throwing predicate killed the handshake's fiber unsaid: the page waited out handshakeTimeout (Timeout), and
  // the server neither counted nor logged it; a predicate that answers a promise (an async function) let every page in
  it.live("an allowedOrigins function that throws or answers no boolean refuses the page at once: 4403, counted, logged", () =>
    Effect.gen(function*() {
      const { layer, logs, refusals } = observed()
      const address = freshAddress("origin-throws")
      const listener = yield* echoServer(address, {
        tokenFile: false,
        handshakeTimeout: "60 seconds",
        allowedOrigins: (origin) => {
          if (origin.includes("boom")) throw new Error("origin table unavailable")
          if (origin.includes("async")) return Promise.resolve(true) as unknown as boolean
          return origin === "http://127.0.0.1:5173"
        }
      }).pipe(Effect.provide(layer))
      const token = listener.token
      for (const origin of ["http://boom.example", "http://async.example"]) {
        const refused = yield* Effect.flip(roundTrip(address, { token, headers: { origin } }))
        assert.strictEqual(refused.reason._tag, "PeerRejected", `${origin}: ${refused.message}`)
        assert.include(refused.message, "close 4403")
      }
      assert.strictEqual(yield* refusals, 2)
      assert.isTrue(
        logs.some((l) => l.includes("the allowedOrigins function threw: origin table unavailable")),
        logs.join("\n")
      )
      // the listener goes on serving the pages it allows
      assert.strictEqual(yield* roundTrip(address, { token, headers: { origin: "http://127.0.0.1:5173" } }), 42)
    }).pipe(Effect.scoped))

  it.live("with no allowedOrigins, every page is refused", () =>
    Effect.gen(function*() {
      const address = freshAddress("no-origins")
      const listener = yield* echoServer(address, { tokenFile: false })
      const page = yield* Effect.flip(
        roundTrip(address, { token: listener.token, headers: { origin: `http://127.0.0.1:${freshPort()}` } })
      )
      assert.strictEqual(page.reason._tag, "PeerRejected")
    }).pipe(Effect.scoped))

  it.live("answers a plain client (no effect-ipc.refused offered) with HTTP 401 / 403 / 404; a foreign Host is 403", () =>
    Effect.gen(function*() {
      const port = freshPort()
      const listener = yield* echoServer(`ws://127.0.0.1:${port}/rpc`, { tokenFile: false })
      const ask = (path: string, headers: Record<string, string>) =>
        Effect.scoped(Effect.gen(function*() {
          const socket = yield* rawConnect(port)
          const reply = collect(socket)
          socket.write(handshake(path, port, headers))
          yield* closedBy(socket).pipe(Effect.timeout("10 seconds"))
          return reply.text().split("\r\n")[0]
        }))
      assert.strictEqual(yield* ask("/rpc", {}), "HTTP/1.1 401 Unauthorized")
      assert.strictEqual(
        yield* ask("/rpc", { Authorization: `Bearer ${listener.token}`, Origin: "https://evil.example" }),
        "HTTP/1.1 403 Forbidden"
      )
      assert.strictEqual(
        yield* ask("/elsewhere", { Authorization: `Bearer ${listener.token}` }),
        "HTTP/1.1 404 Not Found"
      )
      // DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends Host: evil.example (and its own Origin)
      const rebound = yield* Effect.scoped(Effect.gen(function*() {
        const socket = yield* rawConnect(port)
        const reply = collect(socket)
        socket.write(
          handshake("/rpc", port, { Authorization: `Bearer ${listener.token}` }).replace(
            `Host: 127.0.0.1:${port}`,
            `Host: evil.example:${port}`
          )
        )
        yield* closedBy(socket).pipe(Effect.timeout("10 seconds"))
        return reply.text().split("\r\n")[0]
      }))
      assert.strictEqual(rebound, "HTTP/1.1 403 Forbidden")
      // a bearer token is accepted from a non-browser client
      const bearer = yield* roundTrip(`ws://127.0.0.1:${port}/rpc`, {
        tokenLookup: () => undefined,
        headers: { authorization: `Bearer ${listener.token}` }
      })
      assert.strictEqual(bearer, 42)
    }).pipe(Effect.scoped))

  it.live("writes the token to a 0600 file in a 0700 directory, which local clients read; removed on close", () =>
    Effect.gen(function*() {
      const address = freshAddress("file")
      let file = ""
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* echoServer(address)
        file = listener.tokenFile!
        assert.strictEqual(Fs.statSync(file).mode & 0o777, 0o600)
        assert.strictEqual(Fs.statSync(Path.dirname(file)).mode & 0o777, 0o700)
        assert.strictEqual(Fs.readFileSync(file, "utf8").split("\n")[0], listener.token)
        // the Node transport's client finds it
        const transport = Ws.WsTransport.make()
        const channel = yield* transport.dial(address)
        yield* channel.send(numbered(7))
        assert.strictEqual((yield* channel.receive)[0], 7)
        // a file others can read is not trusted
        Fs.chmodSync(file, 0o644)
        assert.isUndefined(Ws.TokenFile.readIfPrivate(file))
        Fs.chmodSync(file, 0o600)
      }))
      assert.isFalse(Fs.existsSync(file), "the token file is removed with the listener")
    }).pipe(Effect.scoped))

  it.live("tokenFile: false writes the token nowhere: no file, and a client needs the token given", () =>
    Effect.gen(function*() {
      const address = freshAddress("nofile")
      const listener = yield* echoServer(address, { tokenFile: false })
      assert.isUndefined(listener.tokenFile)
      assert.isFalse(Fs.existsSync(tokenFileOf(address)), "no token file at the address's default path")
      assert.notInclude(Fs.readdirSync(Path.dirname(tokenFileOf(address))).join("\n"), listener.token)
      // the Node transport's client, which reads the token file, finds none
      const refused = yield* Effect.flip(Effect.scoped(Ws.WsTransport.make().dial(address)))
      assert.strictEqual(refused.reason._tag, "PeerRejected")
      assert.strictEqual(yield* roundTrip(address, { token: listener.token }), 42)
    }).pipe(Effect.scoped))

  // (the check that the file still holds our token removed): a listener that closed removed the token file of the
  // listener that wrote it after, leaving that one's clients without its token
  it.live("a listener closing leaves a token file another listener wrote since in place", () =>
    Effect.gen(function*() {
      const file = Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-ws-successor-")), "token")
      Fs.chmodSync(Path.dirname(file), 0o700)
      const first = yield* Scope.make()
      yield* echoServer(freshAddress("first"), { tokenFile: file }).pipe(Scope.provide(first))
      const second = yield* echoServer(freshAddress("second"), { tokenFile: file })
      yield* Scope.close(first, Exit.void)
      assert.isTrue(Fs.existsSync(file), "the second listener's token file is left")
      assert.strictEqual(Fs.readFileSync(file, "utf8").split("\n")[0], second.token)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => Fs.rmSync(Path.dirname(file), { recursive: true, force: true }))
      )
    }).pipe(Effect.scoped))

  it.live("a dial to a host that is not loopback sends no token from a file, though the address's file exists", () =>
    Effect.gen(function*() {
      // a listener of ours at 0.0.0.0 (not loopback: what the dial reaches there is not checked to be this
      // user's) wrote its token file, at the default path of the address; 0.0.0.0 reaches it here
      const port = freshPort()
      const address = `ws://0.0.0.0:${port}/x`
      const listener = yield* echoServer(address, { allowRemote: true, allowedHosts: ["0.0.0.0"] })
      assert.strictEqual(Fs.readFileSync(listener.tokenFile!, "utf8").split("\n")[0], listener.token)
      const echoOver = (transport: Transport.Transport["Service"]) =>
        Effect.scoped(Effect.gen(function*() {
          const channel = yield* transport.dial(address)
          yield* channel.send(numbered(9))
          return (yield* channel.receive)[0]
        }))
      const refused = yield* Effect.flip(echoOver(Ws.WsTransport.make()))
      assert.strictEqual(refused.reason._tag, "PeerRejected", refused.message)
      assert.include(refused.message, "close 4401")
      // given, the token goes, and the same listener serves
      assert.strictEqual(yield* echoOver(Ws.WsTransport.make({ token: listener.token })), 9)
    }).pipe(Effect.scoped))

  it.live("the descriptor's transport dials with the token file: IPC_TRANSPORT=ws works between processes", () =>
    Effect.gen(function*() {
      // (the conformance suite runs peers in child processes through the descriptor; here, in one process)
      const transport = yield* Ws.descriptor.make
      const address = freshAddress("descriptor")
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* client.send(numbered(9))
      assert.strictEqual((yield* server.receive)[0], 9)
      assert.match(Ws.descriptor.defaultAddress("demo"), /^ws:\/\/127\.0\.0\.1:17\d\d\d\/demo$/)
      const typed = IpcChannel.typed(client, Numbered)
      yield* typed.send({ n: 1 })
      assert.deepStrictEqual(yield* IpcChannel.typed(server, Numbered).receive, { n: 1 })
    }).pipe(Effect.scoped))
})

// switching to another uid (setpriv) needs root, as CI runs
describe.runIf(process.getuid?.() === 0)("ws:// security, against another user", () => {
  // root can read every user's 0600 files: a token file is trusted only when it is this user's
  it.live("a token file of another user (0600, its listener alive) is not trusted: no token sent from it", () =>
    Effect.gen(function*() {
      const address = freshAddress("their-file")
      const listener = yield* echoServer(address)
      const file = listener.tokenFile!
      assert.strictEqual(Ws.TokenFile.readIfPrivate(file), listener.token, "ours: trusted")
      Fs.chownSync(file, 65534, 65534)
      assert.isUndefined(Ws.TokenFile.readIfPrivate(file))
      const error = yield* Effect.flip(Ws.WsTransport.make().dial(address))
      assert.strictEqual(error.reason._tag, "PeerRejected", error.message)
      Fs.chownSync(file, 0, 0)
    }).pipe(Effect.scoped))

  it.live("another user (uid 65534) cannot read the token file", () =>
    Effect.gen(function*() {
      const listener = yield* echoServer(freshAddress("other-user"))
      const read = ChildProcess.spawnSync(
        "setpriv",
        ["--reuid=65534", "--regid=65534", "--clear-groups", "cat", listener.tokenFile!],
        { encoding: "utf8" }
      )
      assert.notStrictEqual(read.status, 0)
      assert.include(read.stderr, "Permission denied")
      assert.notInclude(read.stdout, listener.token)
    }).pipe(Effect.scoped))
})
