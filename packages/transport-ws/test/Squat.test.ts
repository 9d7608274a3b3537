/**
 * A stale token file (its server was killed) and another user now listening
 * on that port: the Node client does not send this user's token there.
 */
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
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
  it.live("records the server's pid; a file whose pid is dead is ignored by the client", () =>
    Effect.gen(function*() {
      const address = freshAddress("stale")
      const file = tokenFileOf(address)
      yield* Ws.TokenFile.write(file, "live-token")
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(file, { force: true })))
      assert.deepStrictEqual(Fs.readFileSync(file, "utf8").split("\n"), ["live-token", String(process.pid), ""])
      const parsed = yield* Ws.WsAddress.parse(address)
      assert.strictEqual(Ws.TokenFile.lookup(parsed), "live-token")
      // the same file, as a server that has since died left it
      const dead = ChildProcess.spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
        encoding: "utf8"
      })
      Fs.writeFileSync(file, `stale-token\n${dead.stdout}\n`, { mode: 0o600 })
      assert.isUndefined(Ws.TokenFile.lookup(parsed))
    }).pipe(Effect.scoped))
})
