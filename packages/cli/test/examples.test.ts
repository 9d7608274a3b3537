/**
 * Every program in examples/ runs here as a user runs it: a real process
 * started with `bash scripts/node.sh` (the project's Node on the sources),
 * its output compared line for line, and what it leaves behind checked.
 */
import { ShmTransport } from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { type Proc, start } from "./helpers.ts"

/** Starts `examples/<file>` with extra environment variables; it is stopped (SIGTERM) with the scope. */
const example = (file: string, env: Record<string, string> = {}) =>
  start("env", [
    ...Object.entries(env).map(([name, value]) => `${name}=${value}`),
    "bash",
    "scripts/node.sh",
    `examples/${file}`
  ])

/** Runs `examples/<file>` to its end and checks that it succeeded; returns what it printed. */
const run = (file: string, env: Record<string, string> = {}) =>
  Effect.scoped(Effect.gen(function*() {
    const proc = yield* example(file, env)
    const code = yield* proc.exit
    assert.strictEqual(code, 0, `${file} exited with ${code}; stderr: ${proc.stderr()}`)
    return proc.stdout()
  }))

/** Waits until `proc` has printed `text` (the rpc server says `ready`). */
const printed = (proc: Proc, text: string) =>
  Effect.gen(function*() {
    while (!proc.stdout().includes(text)) yield* Effect.sleep("20 millis")
  }).pipe(
    Effect.raceFirst(Effect.flatMap(proc.exit, (code) => Effect.die(`exited (${code}): ${proc.stderr()}`))),
    Effect.timeoutOrElse({
      duration: Duration.seconds(30),
      orElse: () => Effect.die(`timed out waiting for "${text}"; stderr: ${proc.stderr()}`)
    })
  )

/** A fresh temporary directory, removed with the scope. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-examples-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

const lines = (...text: ReadonlyArray<string>) => text.map((line) => `${line}\n`).join("")

/** The socket files of shm-large's listeners in the shm rendezvous directory. */
const shmLargeSockets = (): ReadonlyArray<string> => {
  try {
    return Fs.readdirSync(ShmTransport.defaultDirectory()).filter((name) => name.startsWith("shm-large-example-"))
  } catch {
    return []
  }
}

const rpcAddresses = (dir: string, shmName: string): Record<string, string> => ({
  pipe: `unix://${dir}/calc.sock`,
  shm: `shm://${shmName}`,
  file: `file://${dir}/calc`,
  nng: `nng+ipc://${dir}/calc.ipc`
})

describe("examples", () => {
  for (const transport of ["pipe", "shm", "file", "nng"]) {
    it.live(`rpc: server.ts and client.ts over IPC_TRANSPORT=${transport}; the server cleans up on SIGTERM`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const shmName = `eipc-examples-${process.pid}-${Path.basename(dir).slice(-6)}`
        const env = { IPC_TRANSPORT: transport, IPC_ADDRESS: rpcAddresses(dir, shmName)[transport]! }
        // if this test fails, the shm listener's socket file (outside `dir`) goes too
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => Fs.rmSync(ShmTransport.controlPath(shmName), { force: true }))
        )
        const server = yield* example("rpc/server.ts", env)
        yield* printed(server, "ready\n")
        assert.strictEqual(
          yield* run("rpc/client.ts", env),
          lines("Add 42", "Withdraw 70", "Withdraw refused, balance 70", "Countdown [ 3, 2, 1, 0 ]", "Slow cancelled")
        )
        // SIGTERM interrupts the server (exit code 130), which removes what it made
        assert.strictEqual(yield* server.stop, 130, server.stderr())
        assert.strictEqual(server.stdout(), "ready\n")
        assert.deepStrictEqual(Fs.readdirSync(dir), [])
        assert.isFalse(Fs.existsSync(ShmTransport.controlPath(shmName)), "the shm listener's socket file is left")
      }).pipe(Effect.scoped))
  }

  it.live("child-python: a Python child on fd 3 answers each message, then exits on the channel's close", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* run("child-python/main.ts"),
        lines(
          "hello from node -> node from hello",
          "effect-ipc speaks python -> python speaks effect-ipc",
          "bye -> bye",
          "child: 3 messages, closing",
          "child exited with code 0"
        )
      )
    }))

  it.live("file-ipckit-python: an ipckit frontend calls a Python ipckit backend, then removes the directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      assert.strictEqual(
        yield* run("file-ipckit-python/main.ts", { TMPDIR: dir }),
        lines(
          `event ready {"methods":["add","greet"]}`,
          `add -> {"sum":42}`,
          `greet -> "hello, node, from python"`,
          "divide -> error: unknown method: divide",
          "backend: shutting down",
          "backend exited with code 0"
        )
      )
      assert.deepStrictEqual(Fs.readdirSync(dir), [])
    }).pipe(Effect.scoped))

  it.live("nng-pubsub: three subscriber processes each print one whole bulletin of their topic", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* run("nng-pubsub/main.ts"),
        lines(
          `subscriber "weather." (exit code 0):`,
          "  weather.oslo 3C",
          "  weather.bergen 7C, rain",
          `subscriber "sports." (exit code 0):`,
          "  sports.1-0 at half time",
          `subscriber "" (exit code 0):`,
          "  weather.oslo 3C",
          "  sports.1-0 at half time",
          "  weather.bergen 7C, rain"
        )
      )
    }))

  it.live("shm-large: 64 MiB read in place, the same CRC-32 on both sides, nothing left in the rendezvous directory", () =>
    Effect.gen(function*() {
      const before = shmLargeSockets()
      assert.strictEqual(
        yield* run("shm-large/main.ts"),
        lines(
          "sender: 67108864 bytes, crc32 9f331d35",
          "receiver: 67108864 bytes read in place, crc32 9f331d35",
          "receiver: its scope closed, the view now has 0 bytes",
          "sender: the receiver confirmed crc32 9f331d35",
          "receiver: the sender exited with code 0"
        )
      )
      assert.deepStrictEqual(shmLargeSockets().filter((name) => !before.includes(name)), [])
    }))
})
