/**
 * A stale token file (its server was killed) and another user now listening
 * on that port: the Node client does not send this user's token there.
 */
import * as Process from "@effect-ipc/core/Process"
import * as Transport from "@effect-ipc/core/Transport"
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { freshAddress, sweepTokenFiles, tokenFileOf } from "./helpers.ts"

afterAll(sweepTokenFiles)

const squatter = `
const http = require("node:http")
const server = http.createServer()
server.on("upgrade", (req, socket) => { process.stdout.write("GOT " + req.headers["sec-websocket-protocol"] + "\\n"); socket.destroy() })
server.listen(Number(process.argv[1]), "127.0.0.1", () => process.stdout.write("listening\\n"))
`

// switching to another uid (setpriv) needs root, as CI runs
describe.runIf(process.getuid?.() === 0 && Fs.existsSync("/proc/net/tcp"))("a port squatted by another user", () => {
  it.live("a token read from the token file is not sent to a listener of another uid: PeerRejected", () =>
    Effect.gen(function*() {
      const address = freshAddress("squat")
      const port = Number(new URL(address).port)
      // a daemon killed with SIGKILL left its token file behind
      const file = tokenFileOf(address)
      yield* Ws.TokenFile.write(file, "stale-token-of-this-user")
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(file, { force: true })))
      let out = ""
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.spawn(
            "setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", squatter, String(port)],
            { stdio: ["ignore", "pipe", "inherit"] }
          )
        ),
        (squat) => Effect.sync(() => squat.kill("SIGKILL"))
      )
      child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()))
      yield* Effect.suspend(() => out.includes("listening") ? Effect.void : Effect.fail("not yet")).pipe(
        Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "20 seconds" })))
      )
      const refused = yield* Effect.flip(Effect.scoped(Ws.WsTransport.make().dial(address)))
      assert.strictEqual(refused.reason._tag, "PeerRejected", refused.message)
      assert.include(refused.message, "uid 65534")
      assert.notInclude(out, "stale-token")
    }).pipe(Effect.scoped))
})

describe("a token file its server left behind", () => {
  it.live("records the server (pid, start time, pid namespace); a file whose server is dead is ignored by the client", () =>
    Effect.gen(function*() {
      const address = freshAddress("stale")
      const file = tokenFileOf(address)
      yield* Ws.TokenFile.write(file, "live-token")
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(file, { force: true })))
      assert.deepStrictEqual(Fs.readFileSync(file, "utf8").split("\n"), [
        "live-token",
        Process.encode(Process.self()),
        ""
      ])
      const parsed = yield* Ws.WsAddress.parse(address)
      assert.strictEqual(Ws.TokenFile.lookup(parsed), "live-token")
      // the same file, as a server that has since died left it
      const dead = ChildProcess.spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
        encoding: "utf8"
      })
      Fs.writeFileSync(file, `stale-token\n${dead.stdout}\n`, { mode: 0o600 })
      assert.isUndefined(Ws.TokenFile.lookup(parsed))
    }).pipe(Effect.scoped))

  it.live("a listener removes the token files of killed servers (at port 0 each had its own port), not live ones", () =>
    Effect.gen(function*() {
      const dir = Effect.runSync(Ws.TokenFile.directory())
      const name = `swept${process.pid}`
      const ours = () => Fs.readdirSync(dir).filter((file) => file.includes(`~2f${name}`))
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => ours().forEach((file) => Fs.rmSync(Path.join(dir, file), { force: true })))
      )
      // what three servers at ws://127.0.0.1:0/<name>, killed with SIGKILL, left behind; and one that runs
      const dead = ChildProcess.spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
        encoding: "utf8"
      }).stdout
      for (const port of [1, 2, 3]) {
        Fs.writeFileSync(tokenFileOf(`ws://127.0.0.1:${port}/${name}`), `stale-token\n${dead}\n`, { mode: 0o600 })
      }
      const live = tokenFileOf(`ws://127.0.0.1:4/${name}`)
      Fs.writeFileSync(live, `live-token\n${process.ppid}\n`, { mode: 0o600 })
      assert.strictEqual(ours().length, 4)
      const listener = yield* Ws.WsServer.listen(`ws://127.0.0.1:0/${name}`)
      assert.deepStrictEqual(ours().toSorted(), [Path.basename(live), Path.basename(listener.tokenFile!)].toSorted())
    }).pipe(Effect.scoped))

  it.live("a token file its group or others may read or write is ignored; 0600 and 0400 are read", () =>
    Effect.gen(function*() {
      const address = freshAddress("modes")
      const file = tokenFileOf(address)
      yield* Ws.TokenFile.write(file, "live-token")
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(file, { force: true })))
      const parsed = yield* Ws.WsAddress.parse(address)
      const seen = (mode: number) => {
        Fs.chmodSync(file, mode)
        return Ws.TokenFile.lookup(parsed)
      }
      for (const mode of [0o640, 0o620, 0o610, 0o604, 0o602, 0o660]) {
        assert.isUndefined(seen(mode), `mode 0${mode.toString(8)}`)
      }
      assert.strictEqual(seen(0o600), "live-token")
      assert.strictEqual(seen(0o400), "live-token")
    }).pipe(Effect.scoped))
})

/** Listens at `[::1]:port` in this process; the error code when that fails. */
const bind6 = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<Net.Server | string>((resume) => {
      const server = Net.createServer()
      server.once("error", (cause: NodeJS.ErrnoException) => resume(Effect.succeed(cause.code ?? "error")))
      server.listen({ host: "::1", port, ipv6Only: true }, () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => typeof server === "string" ? undefined : void server.close())
  )

// a `localhost` listener bound 127.0.0.1 alone; `localhost` resolves to ::1 first where /etc/hosts says so
// (Debian's), so another user listening at [::1] on the port was given the token by clients dialling the name
describe.runIf(Fs.existsSync("/proc/net/if_inet6") && Fs.readFileSync("/proc/net/if_inet6", "utf8").includes(" lo"))(
  "ws://localhost",
  () => {
    it.live("holds [::1] on its port too: nobody else listens there, and a client there is served", () =>
      Effect.gen(function*() {
        const listener = yield* Ws.WsServer.listen("ws://localhost:0/six", { tokenFile: false })
        const port = Number(new URL(listener.address).port)
        const taken = yield* bind6(port)
        assert.strictEqual(taken, "EADDRINUSE", "[::1] on the listener's port is the listener's")
        yield* Effect.forkScoped(
          Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
        )
        const client = yield* Ws.WsClient.dial(`ws://[::1]:${port}/six`, { token: listener.token })
        yield* client.send(new Uint8Array([6]))
        assert.deepStrictEqual([...(yield* client.receive)], [6])
      }).pipe(Effect.scoped))

    it.live("with [::1] on the port taken by another process: AddressInUse, and 127.0.0.1 is let go", () =>
      Effect.gen(function*() {
        const probe = yield* Ws.WsServer.listen("ws://127.0.0.1:0/probe", { tokenFile: false }).pipe(Effect.scoped)
        const port = Number(new URL(probe.address).port)
        const squat = yield* bind6(port)
        assert.notStrictEqual(typeof squat, "string", `[::1]:${port} could not be taken for the test`)
        const error = yield* Effect.flip(
          Effect.scoped(Ws.WsServer.listen(`ws://localhost:${port}/six`, { tokenFile: false }))
        )
        assert.strictEqual(error.reason._tag, "AddressInUse", error.message)
        assert.include(error.detail, "[::1]")
        // 127.0.0.1 was let go with the failed listen
        yield* Effect.scoped(Ws.WsServer.listen(`ws://127.0.0.1:${port}/again`, { tokenFile: false }))
      }).pipe(Effect.scoped))
  }
)
