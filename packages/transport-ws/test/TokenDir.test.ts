/**
 * Another user cannot stop a listener by creating its token directory first:
 * `<tmp>/effect-ipc-<uid>` owned by someone else is refused, the token goes to
 * `~/.cache/effect-ipc` with a warning, and a client of the same user finds it.
 */
import * as Transport from "@effect-ipc/core/Transport"
import * as Ws from "@effect-ipc/transport-ws"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { freshAddress } from "./helpers.ts"

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
