/**
 * A peer killed while the messages it sent wait unread is reported as
 * `ConnectionLost`, after every one of them. libnng's TLS and WebSocket
 * streams (1.12.0, and 1.5 before it) read ahead of their user; when the
 * connection ends while no receive waits, a receive posted later waits for
 * ever, so nng never closes the pipe and the reader is never told. With small
 * queues, some of these 12 conversations end that way: unpatched, a reader got
 * every message, then waited, over ws (6 of 12), wss and tls+tcp; the
 * conformance suite's "killed mid-stream" case hit it about once in 40 runs
 * under load. Fixed in the vendored libnng (`vendor/nng-1.12.0-close.patch`).
 */
import { NngTransport } from "@effect-ipc/transport-nng"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Certs from "./fixtures/certs.ts"
import * as Child from "./fixtures/process.ts"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-lost-"))
afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))

/** `effect`, or a failure naming `what` after 10 s without a result. */
const within = <A, E>(effect: Effect.Effect<A, E>, what: string) =>
  Effect.timeoutOrElse(effect, {
    duration: "10 seconds",
    orElse: () => Effect.die(new Error(`${what}: nothing for 10 s`))
  })

/** Conversations per scheme: the k-th carries k messages, so that some end with nng's queues full at the peer's death. */
const CONVERSATIONS = 12

describe.each([
  ["nng+ipc", `nng+ipc://${dir}/lost.ipc`, false],
  ["nng+tcp", "nng+tcp://127.0.0.1:0", false],
  ["nng+tls+tcp", "nng+tls+tcp://127.0.0.1:0", true],
  ["nng+ws", "nng+ws://127.0.0.1:0/lost", false],
  ["nng+wss", "nng+wss://127.0.0.1:0/lost", true]
])("%s: a peer killed while its messages wait unread", (_scheme, address, secure) => {
  it.live(
    "every message it sent is read, then ConnectionLost (not a reader waiting for ever)",
    () =>
      Effect.gen(function*() {
        const certs = secure ? yield* Certs.make : undefined
        // small queues: a few messages fill the channel's inbox and nng's, so nng stops reading the connection
        const transport = NngTransport.make({ recvBuffer: 2, maxBufferedMessages: 2, tls: certs?.good.server })
        const listener = yield* transport.listen(address)
        const peer = yield* Child.spawn(
          process.execPath,
          Child.nodeArgs("peer.ts", [
            "senders",
            listener.address,
            String(CONVERSATIONS),
            ...(certs === undefined ? [] : [certs.good.caFile])
          ])
        )
        const channels = []
        for (let k = 1; k <= CONVERSATIONS; k++) channels.push(yield* listener.accept)
        yield* peer.waitFor((line) => line === "sent", 30_000)
        // what the peer sent reaches our side's buffers; then it dies without a word, and nothing reads for a while
        yield* Effect.sleep("300 millis")
        yield* peer.kill
        yield* Effect.sleep("300 millis")
        for (const [index, channel] of channels.entries()) {
          const k = index + 1
          for (let i = 0; i < k; i++) {
            const message = yield* within(channel.receive, `conversation ${k}, message ${i}`)
            assert.deepStrictEqual([message[0], message[1]], [k, i], `conversation ${k}, message ${i}`)
          }
          const end = yield* within(Effect.flip(channel.receive), `conversation ${k}, after its ${k} messages`)
          assert.strictEqual(end.reason._tag, "ConnectionLost", `conversation ${k}: ${end.message}`)
        }
      }).pipe(Effect.scoped),
    90_000
  )
})

// when the connection ended while messages waited in nng (the reader's inbox full), they were delivered as the
// link went without the limit every message read on a live link is held to: a message over maxMessageSize
// arrived, then ConnectionLost, or Closed with no error at all
describe("a message over maxMessageSize that waits in nng as its peer goes", () => {
  it.live(
    "is FrameTooLarge after the messages before it, whether the peer was killed or closed",
    () =>
      Effect.gen(function*() {
        for (const how of ["killed", "close"] as const) {
          yield* Effect.scoped(Effect.gen(function*() {
            const transport = NngTransport.make({ maxMessageSize: 1000, maxBufferedMessages: 1 })
            const listener = yield* transport.listen("nng+tcp://127.0.0.1:0")
            const peer = yield* Child.spawn(
              process.execPath,
              Child.nodeArgs("peer.ts", ["oversize", listener.address, ...(how === "close" ? ["close"] : [])])
            )
            const channel = yield* listener.accept
            yield* peer.waitFor((line) => line === "sent", 30_000)
            if (how === "killed") yield* peer.kill
            // the link finds its peer gone while the messages still wait
            yield* Effect.sleep("1500 millis")
            const sizes: Array<number> = []
            const end = yield* within(
              Effect.flip(Effect.forever(Effect.map(channel.receive, (m) => void sizes.push(m.byteLength)))),
              how
            )
            assert.deepStrictEqual(sizes, [100, 100, 100], how)
            assert.strictEqual(end.reason._tag, "FrameTooLarge", `${how}: ${end.message}`)
          }))
        }
      }),
    60_000
  )
})
