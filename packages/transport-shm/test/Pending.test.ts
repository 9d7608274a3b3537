/**
 * A flood of connections that never start the handshake (silent, or half a
 * frame header), from another process: the listener holds at most
 * `maxPendingHandshakes` of them (plus those it is letting go of), a
 * well-behaved client is served meanwhile, and its descriptors come back.
 */
import * as Transport from "@effect-ipc/core/Transport"
import { ShmTransport } from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as References from "effect/References"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** Opens N connections to PATH (every other one sends half a frame header), prints "flooding", holds them until stdin ends. */
const FLOOD = `
import socket, sys
held = []
for i in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    if i % 2: s.sendall(bytes([1, 0, 0]))
    held.append(s)
print("flooding", flush=True)
sys.stdin.read()
`

const openFds = (): number => Fs.readdirSync("/proc/self/fd").length

/** Whether `check` holds within `millis`, looking every 50 ms. */
const waitFor = (check: () => boolean, millis: number): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    for (const end = Date.now() + millis; Date.now() < end; yield* Effect.sleep("50 millis")) {
      if (check()) return true
    }
    return check()
  })

const message = (i: number) => new TextEncoder().encode(`round trip ${i}`)

describe("shm:// pending handshakes", () => {
  it.live(
    "400 connections that never start their handshake: the listener holds at most maxPendingHandshakes; a good client is served; fds come back",
    () =>
      Effect.gen(function*() {
        const directory = yield* Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-shm-pending-"))),
          (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
        )
        // a handshake timeout far past the test: only the cap can let go of the silent ones
        const transport = ShmTransport.make({ directory, handshakeTimeout: "5 minutes", maxPendingHandshakes: 32 })
        const listener = yield* transport.listen("shm://pending")
        yield* Effect.forkScoped(
          Transport.serve(listener, (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send)))
        )
        const baseline = openFds()

        const flooder = yield* Effect.acquireRelease(
          Effect.sync(() =>
            ChildProcess.spawn("python3", ["-c", FLOOD, Path.join(directory, "pending.sock"), "400"], {
              stdio: ["pipe", "pipe", "inherit"]
            })
          ),
          (child) => Effect.sync(() => void child.kill("SIGKILL"))
        )
        let said = ""
        flooder.stdout.on("data", (chunk: Buffer) => (said += chunk.toString()))
        assert.isTrue(yield* waitFor(() => said.includes("flooding"), 30_000), "the flooder connected")
        // a good client completes its handshake while the flood is held; it connected after the flood, and
        // the listener takes connections in order, so by now it has taken in all 400
        const good = yield* transport.dial("shm://pending")
        yield* good.send(message(1))
        assert.deepStrictEqual(yield* good.receive, message(1))
        // it dropped all but the newest 32 (and those dropped are let go of once their linger ends)
        assert.isTrue(
          yield* waitFor(() => openFds() - baseline <= 32 + 8, 20_000),
          `the listener holds ${openFds() - baseline} descriptors for 400 silent connections (cap 32)`
        )
        yield* good.send(message(2))
        assert.deepStrictEqual(yield* good.receive, message(2))
        yield* good.close

        flooder.stdin.end()
        assert.isTrue(
          yield* waitFor(() => openFds() <= baseline, 20_000),
          `fds ${openFds()} > ${baseline} once the flooder left`
        )
      }).pipe(Effect.scoped, Effect.provideService(References.MinimumLogLevel, "Error")),
    90_000
  )
})
