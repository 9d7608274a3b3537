/**
 * Another user who reads /proc/net/unix sees every conversation an nng+ipc://
 * listener opens; it must not be able to take a conversation before the real
 * client does. The squatter (`fixtures/squat.py`, uid 65534) connects first to
 * each new conversation and holds nng's pair slot; every real dial still gets
 * its channel. Needs root (to switch users), setpriv and python3.
 */
import type * as Transport from "@effect-ipc/core/Transport"
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const NOBODY = 65534
const canSwitch = process.getuid?.() === 0 && ChildProcess.spawnSync("setpriv", ["--version"]).status === 0
const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A directory under /tmp that uid 65534 can look into, removed with the scope. */
const sharedDir = Effect.acquireRelease(
  Effect.sync(() => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-squat-"))
    Fs.chmodSync(dir, 0o755)
    return dir
  }),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** Eight dials of `address`, one after the other: each is accepted and carries a message, then closes. */
const eightServed = (transport: Transport.TransportShape, listener: Transport.Listener, address: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 8; i++) {
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* transport.dial(address)
        const server = yield* listener.accept
        yield* client.send(encoder.encode(`hello ${i}`))
        assert.strictEqual(decoder.decode(yield* server.receive), `hello ${i}`)
      }))
    }
  })

describe.skipIf(!canSwitch)("a squatter of conversations (another user, nng+ipc://)", () => {
  it.live(
    "connecting first to each conversation does not keep the real client from its channel",
    () =>
      Effect.gen(function*() {
        const dir = yield* sharedDir
        const address = `nng+ipc://${Path.join(dir, "lobby.ipc")}`
        const transport = NngTransport.make({ connectTimeout: "4 seconds", handshakeTimeout: "2 seconds" })
        const listener = yield* transport.listen(address)
        const squatter = yield* Child.spawn("setpriv", [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          "--clear-groups",
          // the system's python (a user-level install may not be reachable by uid 65534)
          "/usr/bin/python3",
          Path.join(import.meta.dirname, "fixtures", "squat.py"),
          dir
        ])
        yield* squatter.waitFor((l) => l === "watching")
        yield* eightServed(transport, listener, address)
        // then one more, kept open until the squatter has tried a conversation: on a loaded machine it may look at
        // /proc/net/unix only after each of the eight had closed, and see none of them
        const tried = yield* Effect.scoped(Effect.gen(function*() {
          const client = yield* transport.dial(address)
          const server = yield* listener.accept
          yield* client.send(encoder.encode("hello 8"))
          assert.strictEqual(decoder.decode(yield* server.receive), "hello 8")
          return yield* squatter.waitFor((l) => l.startsWith("tried "))
        }))
        // the squatter did see conversations and try them (it cannot have held one)
        assert.match(tried, / EACCES$/)
        squatter.process.stdin?.end()
      }).pipe(Effect.scoped),
    60_000
  )
})

describe("a wrong token on a conversation (nng+abstract://)", () => {
  it.live(
    "another process that reaches each conversation first with a wrong token: every dial of ours still gets its channel",
    () =>
      Effect.gen(function*() {
        // the listener turned the client's connection away while the squatter held the pair slot, and the
        // client neither connected again (a conversation never reconnects) nor said its hello again: its dial
        // failed after connectTimeout, or waited for ever
        const name = `effect-ipc-squat-${process.pid}-${Date.now()}`
        const address = `nng+abstract://${name}`
        const transport = NngTransport.make({ connectTimeout: "4 seconds", handshakeTimeout: "2 seconds" })
        const listener = yield* transport.listen(address)
        const squatter = yield* Child.spawn("python3", [
          Path.join(import.meta.dirname, "fixtures", "abstract_squat.py"),
          name
        ])
        yield* squatter.waitFor((l) => l === "watching")
        yield* eightServed(transport, listener, address)
        // on a loaded machine the squatter may look at /proc/net/unix too late for each of the eight: eight more,
        // until it has reached one first (its line may come just after the last of them: then eight more)
        for (let round = 0; round < 25 && !squatter.lines.some((l) => l.startsWith("reached ")); round++) {
          yield* eightServed(transport, listener, address)
        }
        squatter.process.stdin?.end()
        const squatted = yield* squatter.waitFor((l) => l.startsWith("squatted "))
        // it did reach conversations first (else this test shows nothing)
        assert.isAbove(Number(squatted.split(" ")[1]), 0, squatted)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "closes only that connection: the client with the token still gets its channel",
    () =>
      Effect.gen(function*() {
        const name = `effect-ipc-test-${process.pid}-${Date.now()}`
        const listener = yield* NngTransport.make({ handshakeTimeout: "10 seconds" }).listen(`nng+abstract://${name}`)
        const client = yield* Child.spawn("python3", [Path.join(import.meta.dirname, "fixtures", "wrongpipe.py"), name])
        const line = yield* client.waitFor((l) => l !== "wrong closed")
        assert.strictEqual(line, "ready")
        const channel = yield* listener.accept
        assert.strictEqual(channel.peer.uid, process.getuid?.())
      }).pipe(Effect.scoped),
    60_000
  )
})

describe.skipIf(!canSwitch)("a listener of another user (nng+ipc://)", () => {
  // a client sent its hello to a listener of another user's and checked that user only on the answer: one that
  // never answered had the hello and left the client waiting 10 s for a Timeout, not PeerRejected
  it.live(
    "a client refuses an nng+ipc:// socket file of another user before it sends anything: PeerRejected at once",
    () =>
      Effect.gen(function*() {
        const dir = yield* sharedDir
        // their directory, where their listener makes its socket
        Fs.chownSync(dir, NOBODY, NOBODY)
        const path = Path.join(dir, "theirs.ipc")
        const squatter = yield* Child.spawn("setpriv", [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          "--clear-groups",
          "/usr/bin/python3",
          Path.join(import.meta.dirname, "fixtures", "silent_rep.py"),
          path
        ])
        yield* squatter.waitFor((l) => l === "ready")
        const refused = yield* Effect.flip(
          Effect.scoped(NngTransport.make({ connectTimeout: "4 seconds" }).dial(`nng+ipc://${path}`))
        )
        assert.strictEqual(refused.reason._tag, "PeerRejected", refused.message)
        assert.include(refused.detail, `uid ${NOBODY}`)
        // a client that admits that user (its own authorize) is answered... by silence: checked on the answer
        const admitted = yield* Effect.flip(
          Effect.scoped(
            NngTransport.make({ connectTimeout: "1 second", authorize: () => true }).dial(`nng+ipc://${path}`)
          )
        )
        assert.strictEqual(admitted.reason._tag, "Timeout", admitted.message)
        // the squatter takes connections in order: once it has the admitted client's hello, a connection of the
        // refused client would have been printed before it; there is one, the admitted client's
        yield* squatter.waitFor((l) => l.startsWith("got "))
        assert.deepStrictEqual(squatter.lines.filter((l) => l === "connected"), ["connected"])
      }).pipe(Effect.scoped),
    60_000
  )
})

/**
 * The bodies of the req0 messages a rep0 peer received over a Unix socket, after the SP header: each framed as a
 * type byte (1) and a u64 length, then the request id (u32) and the body.
 */
const requestBodies = (received: Uint8Array): ReadonlyArray<string> => {
  const bodies: Array<string> = []
  const view = new DataView(received.buffer, received.byteOffset, received.byteLength)
  for (let at = 8; at + 9 <= received.byteLength;) {
    assert.strictEqual(view.getUint8(at), 1, `message type at ${at}`)
    const length = Number(view.getBigUint64(at + 1))
    bodies.push(new TextDecoder().decode(received.subarray(at + 9 + 4, at + 9 + length)))
    at += 9 + length
  }
  return bodies
}

describe.skipIf(!canSwitch)("a listener of another user (nng+abstract://)", () => {
  // README: "Over an abstract name, which has no file, a client checks the listener as it answers: one that never
  // answers has had the client's hello ({"v":1}, nothing of the user's) and ends in Timeout"
  it.live(
    "that never answers gets the client's hello and nothing else, and the dial ends in Timeout",
    () =>
      Effect.gen(function*() {
        const name = `effect-ipc-silent-${process.pid}-${Date.now()}`
        const squatter = yield* Child.spawn("setpriv", [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          "--clear-groups",
          "/usr/bin/python3",
          Path.join(import.meta.dirname, "fixtures", "silent_rep.py"),
          `@${name}`
        ])
        yield* squatter.waitFor((l) => l === "ready")
        const error = yield* Effect.flip(
          Effect.scoped(NngTransport.make({ connectTimeout: "1 second" }).dial(`nng+abstract://${name}`))
        )
        assert.strictEqual(error.reason._tag, "Timeout", error.message)
        // what reached it: nng's SP header (req0), then hellos only
        yield* squatter.waitFor((l) => l.startsWith("got "))
        const received = Buffer.from(
          squatter.lines.filter((l) => l.startsWith("got ")).map((l) => l.slice("got ".length)).join(""),
          "hex"
        )
        assert.strictEqual(received.subarray(0, 8).toString("hex"), "0053500000300000")
        const bodies = requestBodies(received)
        assert.isAbove(bodies.length, 0)
        for (const body of bodies) assert.strictEqual(body, `{"v":1}`)
      }).pipe(Effect.scoped),
    60_000
  )
})
