/**
 * Connections to a listener's rendezvous that send nng's header and never the
 * hello were kept for ever: another local user could take every descriptor of
 * an nng+abstract:// (or a shared nng+ipc://) listener's process. A refused
 * peer's silent connection is closed after 1 s, a silent one of an accepted peer after
 * `handshakeTimeout`; the descriptors come back and a client of ours is served.
 * A refused peer's connection that sent one message that is not the hello was
 * kept until `handshakeTimeout`: it is closed a second after it was seen.
 * The other user's flood needs root (to switch users), setpriv and python3.
 */
import type * as Transport from "@effect-ipc/core/Transport"
import * as Observed from "@effect-ipc/testing/Observed"
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
const FLOOD = 300
const flood = Path.join(import.meta.dirname, "fixtures", "header_flood.py")
const refusedFlood = Path.join(import.meta.dirname, "fixtures", "refused_flood.py")

const descriptors = () => Fs.readdirSync("/proc/self/fd").length

/** Waits (up to `timeout` ms) until this process holds at most `most` descriptors; yields the last count. */
const descriptorsDownTo = (most: number, timeout: number) =>
  Effect.gen(function*() {
    const until = Date.now() + timeout
    let count = descriptors()
    while (count > most && Date.now() < until) {
      yield* Effect.sleep("100 millis")
      count = descriptors()
    }
    return count
  })

/** Waits (up to `timeout` ms) until `refusals` reaches `count`; yields the last total. */
const refusalsUpTo = (refusals: Effect.Effect<number>, count: number, timeout: number) =>
  Effect.gen(function*() {
    const until = Date.now() + timeout
    let total = yield* refusals
    while (total < count && Date.now() < until) {
      yield* Effect.sleep("100 millis")
      total = yield* refusals
    }
    return total
  })

/** The flood (as `user`, when given) against `kind` `where`, held until the scope closes. */
const holding = (kind: "abstract" | "ipc", where: string, user?: number) =>
  Effect.gen(function*() {
    const args = [flood, kind, where, String(FLOOD)]
    const child = user === undefined
      ? yield* Child.spawn("python3", args)
      : yield* Child.spawn("setpriv", [
        `--reuid=${user}`,
        `--regid=${user}`,
        "--clear-groups",
        // the system's python (a user-level install may not be reachable by uid 65534)
        "/usr/bin/python3",
        ...args
      ])
    const line = yield* child.waitFor((l) => l.startsWith("holding ") || l.startsWith("failed"))
    assert.strictEqual(line, `holding ${FLOOD}`)
  })

/** A client of ours dials, is accepted and carries a message. */
const served = (transport: Transport.TransportShape, listener: Transport.Listener, address: string) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* transport.dial(address)
    const server = yield* listener.accept
    yield* client.send(encoder.encode("still served"))
    assert.strictEqual(decoder.decode(yield* server.receive), "still served")
  }))

describe.skipIf(!canSwitch)("a flood of silent rendezvous connections from another user", () => {
  it.live(
    "nng+abstract://: each is closed within a second; the descriptors come back and our client is served",
    () =>
      Effect.gen(function*() {
        const name = `effect-ipc-hdrflood-${process.pid}-${Date.now()}`
        const address = `nng+abstract://${name}`
        // a long handshakeTimeout: only the refusal can close them in time
        const transport = NngTransport.make({ connectTimeout: "5 seconds", handshakeTimeout: "60 seconds" })
        const listener = yield* transport.listen(address)
        const before = descriptors()
        yield* holding("abstract", name, NOBODY)
        const after = yield* descriptorsDownTo(before + 20, 5000)
        assert.isAtMost(after, before + 20, `descriptors before the flood ${before}, with it ${after}`)
        yield* served(transport, listener, address)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "nng+ipc:// open to others (mode 0666): each is closed within a second; the descriptors come back and our client is served",
    () =>
      Effect.gen(function*() {
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => {
            const made = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-hdrflood-"))
            Fs.chmodSync(made, 0o755)
            return made
          }),
          (made) => Effect.sync(() => Fs.rmSync(made, { recursive: true, force: true }))
        )
        const path = Path.join(dir, "lobby.ipc")
        const address = `nng+ipc://${path}`
        const transport = NngTransport.make({
          mode: 0o666,
          connectTimeout: "5 seconds",
          handshakeTimeout: "60 seconds"
        })
        const listener = yield* transport.listen(address)
        const before = descriptors()
        yield* holding("ipc", path, NOBODY)
        const after = yield* descriptorsDownTo(before + 20, 5000)
        assert.isAtMost(after, before + 20, `descriptors before the flood ${before}, with it ${after}`)
        yield* served(transport, listener, address)
      }).pipe(Effect.scoped),
    60_000
  )
})

describe.skipIf(!canSwitch)("a flood of another user's rendezvous connections, of each kind", () => {
  // one junk request (not the hello) held a refused connection until `handshakeTimeout` (here a minute);
  // one that left silent within a second was never counted
  for (const kind of ["silent", "junk", "hello", "hellos", "leaving"] as const) {
    it.live(
      `${kind}: each is closed well before handshakeTimeout and counted once; our client is served`,
      () =>
        Effect.gen(function*() {
          const { refusals, services } = Observed.make()
          const name = `effect-ipc-refflood-${process.pid}-${Date.now()}`
          const address = `nng+abstract://${name}`
          const transport = NngTransport.make({ connectTimeout: "5 seconds", handshakeTimeout: "60 seconds" })
          const listener = yield* transport.listen(address).pipe(Effect.provide(services))
          const before = descriptors()
          const child = yield* Child.spawn("setpriv", [
            `--reuid=${NOBODY}`,
            `--regid=${NOBODY}`,
            "--clear-groups",
            "/usr/bin/python3",
            refusedFlood,
            kind,
            "abstract",
            name,
            String(FLOOD)
          ])
          const line = yield* child.waitFor((l) => l.startsWith("holding ") || l.startsWith("failed"))
          assert.strictEqual(line, `holding ${FLOOD}`)
          const after = yield* descriptorsDownTo(before + 20, 10_000)
          assert.isAtMost(after, before + 20, `descriptors before the flood ${before}, with it ${after}`)
          yield* served(transport, listener, address)
          // those that left are counted as a sweep finds them gone
          const counted = yield* refusalsUpTo(refusals, FLOOD, 5000)
          assert.strictEqual(counted, FLOOD)
        }).pipe(Effect.scoped),
      60_000
    )
  }
})

describe("a flood of silent rendezvous connections from this user", () => {
  it.live(
    "nng+abstract://: each is closed after handshakeTimeout; the descriptors come back and our client is served",
    () =>
      Effect.gen(function*() {
        const name = `effect-ipc-hdrflood-${process.pid}-${Date.now()}`
        const address = `nng+abstract://${name}`
        const transport = NngTransport.make({ connectTimeout: "5 seconds", handshakeTimeout: "1 second" })
        const listener = yield* transport.listen(address)
        const before = descriptors()
        yield* holding("abstract", name)
        // still held before the timeout (they are this user's: not refused)
        assert.isAbove(descriptors(), before + FLOOD / 2)
        const after = yield* descriptorsDownTo(before + 20, 6000)
        assert.isAtMost(after, before + 20, `descriptors before the flood ${before}, with it ${after}`)
        yield* served(transport, listener, address)
      }).pipe(Effect.scoped),
    60_000
  )
})
