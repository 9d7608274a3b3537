// ChildPipe on Windows, under Wine (run by ./run.mjs; see ../Windows.test.ts): a Node parent for
// Windows spawning Node for Windows children, over an extra pipe (fd 3) and over stdin/stdout.
import { ChildPipe } from "@effect-ipc/transport-pipe"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Path from "node:path"

const text = (s: string) => new TextEncoder().encode(s)
const peerTs = Path.resolve(import.meta.dirname, "../../../testing/src/peer.ts")
const echo = (via: "fd" | "stdio") =>
  ChildPipe.spawn(process.execPath, {
    args: [peerTs, "@effect-ipc/transport-pipe", "descriptor", "echo-server", "child:parent"],
    via
  })

describe("ChildPipe (win32)", () => {
  it.live(
    "talks to a child on its extra pipe (fd 3), which exits cleanly on the channel's close",
    () =>
      Effect.gen(function*() {
        const { exit } = yield* Effect.scoped(Effect.gen(function*() {
          const child = yield* echo("fd")
          for (const message of ["one", "", "three"]) {
            yield* child.channel.send(text(message))
            assert.strictEqual(new TextDecoder().decode(yield* child.channel.receive), message)
          }
          assert.strictEqual(child.channel.peer.pid, child.pid)
          return child
        }))
        assert.deepStrictEqual(yield* exit, { code: 0, signal: null })
      }),
    60_000
  )

  it.live("runs the channel over the child's stdin/stdout when asked", () =>
    Effect.gen(function*() {
      const child = yield* echo("stdio")
      yield* child.channel.send(text("over stdio"))
      assert.strictEqual(new TextDecoder().decode(yield* child.channel.receive), "over stdio")
    }).pipe(Effect.scoped), 60_000)

  it.live("reports a child that exits as ConnectionLost, and its exit code", () =>
    Effect.gen(function*() {
      const child = yield* ChildPipe.spawn(process.execPath, { args: ["-e", "setTimeout(() => process.exit(3), 100)"] })
      const error = yield* Effect.flip(child.channel.receive)
      assert.strictEqual(error.reason._tag, "ConnectionLost")
      assert.deepStrictEqual(yield* child.exit, { code: 3, signal: null })
    }).pipe(Effect.scoped), 60_000)

  it.live("ends a child that ignores its channel when the parent's scope closes", () =>
    Effect.gen(function*() {
      const { exit, pid } = yield* Effect.scoped(
        ChildPipe.spawn(process.execPath, { args: ["-e", "setInterval(() => {}, 1000)"], exitTimeout: "100 millis" })
      )
      const status = yield* exit
      // Windows has no signals: Node ends the child with TerminateProcess and reports SIGTERM
      assert.strictEqual(status.signal, "SIGTERM")
      assert.throws(() => process.kill(pid, 0))
    }), 60_000)

  it.live("fails with typed errors: a missing executable, no parent channel", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(ChildPipe.spawn("Z:\\nonexistent\\program.exe")))
      assert.strictEqual(error.reason._tag, "NotFound")
      const saved = process.env[ChildPipe.ENV]
      delete process.env[ChildPipe.ENV]
      const orphan = yield* Effect.flip(Effect.scoped(ChildPipe.fromParent()))
      if (saved !== undefined) process.env[ChildPipe.ENV] = saved
      assert.strictEqual(orphan.reason._tag, "NotFound")
    }))
})
