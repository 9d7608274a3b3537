/**
 * `authorize` (README: "which peers to serve and dial (it can narrow, not widen)"; a dialer refuses a listener
 * with `PeerRejected`, a listener drops a dialer unanswered) was observed by no test. Peers in other processes of
 * this user, told apart by pid: the same peer is served or refused as `authorize` says, on both sides.
 */
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { spawnChild } from "./helpers.ts"

let n = 0
const address = () => `shm://authorize-test-${process.pid}-${n++}`

/** `authorize` that admits only the process `pid` (`only`) or every one but it. */
const byPid = (pid: number, only: boolean) => (peer: IpcChannel.PeerInfo) => (peer.pid === pid) === only

describe("shm:// authorize", () => {
  it.live(
    "a dialer serves itself only from a listener authorize admits: the same listener is PeerRejected or served",
    () =>
      Effect.gen(function*() {
        const where = address()
        const listener = yield* spawnChild("echo-all", where)
        const refused = yield* Effect.flip(Effect.scoped(
          Shm.ShmTransport.make({ authorize: byPid(listener.pid, false) }).dial(where)
        ))
        assert.strictEqual(refused.reason._tag, "PeerRejected", refused.message)
        assert.include(refused.detail, `pid ${listener.pid}`)
        const client = yield* Shm.ShmTransport.make({ authorize: byPid(listener.pid, true) }).dial(where)
        yield* client.send(new Uint8Array([42]))
        assert.deepStrictEqual([...(yield* client.receive)], [42])
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a listener serves only the dialers authorize admits: a refused one is not accepted and gets no channel",
    () =>
      Effect.gen(function*() {
        // a listener that refuses the dialer's process (its pid unknown before it dials: every peer), then one that
        // admits it; the same user's, so the default would serve both
        for (const admit of [false, true]) {
          yield* Effect.gen(function*() {
            const where = address()
            const seen: Array<number> = []
            const listener = yield* Shm.ShmTransport.make({
              handshakeTimeout: "2 seconds",
              authorize: (peer) => {
                if (peer.pid !== undefined) seen.push(peer.pid)
                return admit
              }
            }).listen(where)
            const accepted = yield* Effect.forkScoped(
              Effect.flatMap(
                listener.accept,
                (channel) => Effect.forever(Effect.flatMap(channel.receive, channel.send))
              )
            )
            // the child says ready with the outcome of its dial (spawnChild waits for that line)
            const child = yield* spawnChild("dial-once", where)
            if (admit) {
              assert.strictEqual(child.said, "ok 7", "an admitted dialer is served")
            } else {
              // dropped unanswered: the dialer's handshake finds the connection gone
              assert.match(child.said, /^ConnectionLost: /, "a refused dialer was served")
              assert.isUndefined(accepted.pollUnsafe(), "a refused dialer's channel was accepted")
            }
            assert.include(seen, child.pid, "authorize was asked about the dialer")
            yield* Fiber.interrupt(accepted)
          }).pipe(Effect.scoped)
        }
      }),
    60_000
  )
})
