/**
 * A pattern socket's listeners under a flood of peers that send one message
 * and leave (another process) while nothing is read: nng reads no further
 * from a connection whose message waits unread, so it does not see the peer
 * leave, and each such peer kept a descriptor (and its message) of the
 * listener's process until the message was read: 2000 pushers of 64 KiB held
 * 1,871 descriptors and 133 MB of a `Pipeline.puller` that pulled nothing.
 * With `maxConnections` the listeners keep at most that many connections.
 */
import { Pipeline } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const MAX_CONNECTIONS = 20
const LEAVING = 300
const encoder = new TextEncoder()

const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-mc-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** The descriptors process `pid` holds. */
const descriptors = (pid: number) => Fs.readdirSync(`/proc/${pid}/fd`).length

describe("maxConnections under pushers that push and leave (ipc://)", () => {
  it.live(
    "keeps the puller's descriptors bounded, and serves a pusher once it pulls again",
    () =>
      Effect.gen(function*() {
        const path = Path.join(yield* tempDir, "pull.ipc")
        const address = `ipc://${path}`
        const puller = yield* Child.node("peer.ts", ["pull", address, String(MAX_CONNECTIONS)])
        yield* puller.waitFor((line) => line === "ready")
        const pid = puller.process.pid!
        const idle = descriptors(pid)
        // each pusher's message is larger than the socket buffers: the puller's nng holds it, unread
        const flood = yield* Child.spawn("python3", [
          Path.join(import.meta.dirname, "fixtures", "leavers.py"),
          path,
          String(LEAVING),
          String(256 * 1024)
        ])
        const done = yield* flood.waitFor((line) => line.startsWith("done"), 60_000)
        // a connection closed by a sweep as its pusher sends fails that pusher
        const [sent, failed] = done.split(" ").slice(1).map(Number)
        assert.strictEqual(sent! + failed!, LEAVING)
        assert.isAtLeast(sent!, LEAVING / 2, done)
        // within a few sweeps (200 ms each) the connections past the limit are closed
        let held = descriptors(pid)
        const settled = yield* Effect.gen(function*() {
          while ((held = descriptors(pid)) > idle + MAX_CONNECTIONS + 2) yield* Effect.sleep("50 millis")
        }).pipe(Effect.timeoutOption("20 seconds"))
        assert.isTrue(
          settled._tag === "Some",
          `the puller held ${held} descriptors (${idle} before) after ${LEAVING} pushers left`
        )
        // the connections it kept still hold their messages (nng has not seen their pushers leave)
        assert.isAtLeast(held, idle + MAX_CONNECTIONS - 2)
        // once it pulls, the connections it kept are read and let go, and a pusher that stays is served
        puller.process.stdin!.write("drain\n")
        const pusher = yield* Pipeline.pusher({ dial: address })
        yield* Effect.raceFirst(
          puller.waitFor((line) => line === "pulled good", 30_000),
          Effect.forever(Effect.andThen(pusher.push(encoder.encode("good")), Effect.sleep("50 millis")))
        )
        const left = puller.lines.filter((line) => line === "pulled left").length
        assert.isAtLeast(left, 1)
        assert.isAtMost(left, MAX_CONNECTIONS + 2, "what the closed connections sent was dropped")
      }).pipe(Effect.scoped),
    90_000
  )
})
