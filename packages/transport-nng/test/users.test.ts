/**
 * A peer running as another user, in another process (`setpriv` to uid
 * 65534), over `nng+ipc://`: refused on both sides with a typed
 * `PeerRejected`, from the credentials the kernel gives (SO_PEERCRED), before
 * any conversation is opened for it; and the same over `nng+abstract://`,
 * whose names no file mode guards. Needs root (to switch users) and setpriv.
 */
import * as Observed from "@effect-ipc/testing/Observed"
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const NOBODY = 65534
const canSwitch = process.getuid?.() === 0 && ChildProcess.spawnSync("setpriv", ["--version"]).status === 0

/** Runs `peer.ts` as uid 65534. */
const asNobody = (args: ReadonlyArray<string>) =>
  Child.spawn("setpriv", [
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    "--clear-groups",
    process.execPath,
    ...Child.nodeArgs("peer.ts", args)
  ])

/** A directory under /tmp that uid 65534 can use, removed with the scope. */
const sharedDir = (owner: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-users-"))
      Fs.chmodSync(dir, 0o755)
      Fs.chownSync(dir, owner, owner)
      return dir
    }),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

describe.skipIf(!canSwitch)("a peer running as another user (nng+ipc://)", () => {
  it.live("our listener refuses its dial: PeerRejected for it, no conversation for us", () =>
    Effect.gen(function*() {
      const dir = yield* sharedDir(0)
      const address = `nng+ipc://${Path.join(dir, "ours.ipc")}`
      // a socket file others may connect to: only the credential check stands in the way
      const listener = yield* NngTransport.make({ mode: 0o666 }).listen(address)
      // a client that would talk to anyone: only our listener's check can refuse it
      const other = yield* asNobody(["dial", address, "any"])
      const line = yield* other.waitFor((l) => l.startsWith("error ") || l === "dialed")
      assert.match(line, new RegExp(`^error PeerRejected the listener refused a peer running as uid ${NOBODY} `))
      assert.strictEqual(yield* other.exited, 0)
      // nothing was accepted
      assert.isTrue(Option.isNone(yield* Effect.timeoutOption(listener.accept, "300 millis")))
    }).pipe(Effect.scoped))

  it.live(
    "each refused dial of another user's process counts in effect_ipc_connections_refused; ours does not",
    () =>
      Effect.gen(function*() {
        const observed = Observed.make()
        const dir = yield* sharedDir(0)
        const address = `nng+ipc://${Path.join(dir, "counted.ipc")}`
        const listener = yield* NngTransport.make({ mode: 0o666 }).listen(address).pipe(
          Effect.provide(observed.services)
        )
        assert.strictEqual(yield* observed.refusals, 0)
        for (let i = 1; i <= 3; i++) {
          const other = yield* asNobody(["dial", address, "any"])
          const line = yield* other.waitFor((l) => l.startsWith("error ") || l === "dialed")
          assert.match(line, /^error PeerRejected /)
          assert.strictEqual(yield* other.exited, 0)
          // counted as the listener answers the refusal, before the dialer hears it
          assert.strictEqual(yield* observed.refusals, i)
        }
        // a client of this user is served, and not counted
        const ours = yield* NngTransport.make().dial(address)
        const served = yield* listener.accept
        yield* ours.send(new TextEncoder().encode("hi"))
        assert.strictEqual(new TextDecoder().decode(yield* served.receive), "hi")
        assert.strictEqual(yield* observed.refusals, 3)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("with the default mode (0600) it cannot even connect, typed", () =>
    Effect.gen(function*() {
      const dir = yield* sharedDir(0)
      const address = `nng+ipc://${Path.join(dir, "private.ipc")}`
      yield* NngTransport.make().listen(address)
      const other = yield* asNobody(["dial", address])
      const line = yield* other.waitFor((l) => l.startsWith("error ") || l === "dialed")
      assert.match(line, /^error PermissionDenied /)
    }).pipe(Effect.scoped))

  it.live("our dial refuses its listener: PeerRejected before anything is sent, no conversation opened", () =>
    Effect.gen(function*() {
      const dir = yield* sharedDir(NOBODY)
      const server = yield* asNobody(["channels", `nng+ipc://${Path.join(dir, "theirs.ipc")}`])
      const address = (yield* server.waitFor((l) => l.startsWith("ready "))).slice("ready ".length)
      const refused = yield* Effect.flip(NngTransport.make().dial(address))
      assert.strictEqual(refused.reason._tag, "PeerRejected")
      assert.include(refused.detail, `refused a peer running as uid ${NOBODY}`)
      // refused at the rendezvous, from the lobby's credentials: it never reached a conversation (where the
      // token would have gone, and the other user's listener would have had a channel)
      yield* Effect.sleep("500 millis")
      assert.notInclude(server.lines, "accepted")
    }).pipe(Effect.scoped))
})

// an abstract name has no file, so no mode keeps another user out: only the credential check on each side does
describe.skipIf(!canSwitch)("a peer running as another user (nng+abstract://)", () => {
  it.live("our listener refuses its dial: PeerRejected for it, and the next channel accepted is ours", () =>
    Effect.gen(function*() {
      const address = `nng+abstract://effect-ipc-users-${process.pid}-ours`
      const transport = NngTransport.make()
      const listener = yield* transport.listen(address)
      // a client that would talk to anyone: only our listener's check can refuse it
      const other = yield* asNobody(["dial", address, "any"])
      const line = yield* other.waitFor((l) => l.startsWith("error ") || l === "dialed")
      assert.match(line, new RegExp(`^error PeerRejected the listener refused a peer running as uid ${NOBODY} `))
      assert.strictEqual(yield* other.exited, 0)
      // had the refused peer got a conversation, it would have been accepted first
      yield* transport.dial(address)
      const accepted = yield* listener.accept
      assert.strictEqual(accepted.peer.uid, process.getuid!())
      assert.strictEqual(accepted.peer.pid, process.pid)
    }).pipe(Effect.scoped))

  it.live("our dial refuses its listener: PeerRejected, and it accepts no channel of ours", () =>
    Effect.gen(function*() {
      const address = `nng+abstract://effect-ipc-users-${process.pid}-theirs`
      const server = yield* asNobody(["channels", address])
      yield* server.waitFor((l) => l.startsWith("ready "))
      const refused = yield* Effect.flip(NngTransport.make().dial(address))
      assert.strictEqual(refused.reason._tag, "PeerRejected")
      assert.include(refused.detail, `refused a peer running as uid ${NOBODY}`)
      // a client that accepts any server (root is served by it) gets the first channel it accepts
      const channel = yield* NngTransport.make({ authorize: () => true }).dial(address)
      assert.strictEqual(channel.peer.uid, NOBODY)
      yield* server.waitFor((l) => l === "accepted")
      assert.strictEqual(server.lines.filter((l) => l === "accepted").length, 1)
    }).pipe(Effect.scoped))
})

// a decimal 600 in code was taken as 0o1130 (sticky, group may write: connect) and NaN as 0
describe("mode given in code", () => {
  it.live("that is not permission bits is InvalidOption, and nothing is made", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-mode-"))
      try {
        for (const mode of [600, Number.NaN, -1, 0o7777, 1.5]) {
          const error = yield* Effect.flip(
            Effect.scoped(NngTransport.make({ mode }).listen(`nng+ipc://${dir}/m.ipc`))
          )
          assert.strictEqual(error.reason._tag, "InvalidOption", `${mode}: ${error.message}`)
          assert.include(error.detail, "is not permission bits")
        }
        assert.deepStrictEqual(Fs.readdirSync(dir), [])
      } finally {
        Fs.rmSync(dir, { recursive: true, force: true })
      }
    }))
})

// a refused client whose hello came after the listener's first sweep (a loaded machine) had its connection
// closed unanswered: its dial failed NotFound instead of PeerRejected, and its retry was counted again
describe.skipIf(!canSwitch)("a refused client of another user whose hello comes late", () => {
  const lateHello = Path.join(import.meta.dirname, "fixtures", "late_hello.py")
  /** The late client (as uid 65534) against `kind` `where`: its lines, once the listener closed its connection. */
  const late = (kind: "abstract" | "ipc", where: string) =>
    Effect.gen(function*() {
      const client = yield* Child.spawn("setpriv", [
        `--reuid=${NOBODY}`,
        `--regid=${NOBODY}`,
        "--clear-groups",
        // the system's python (a user-level install may not be reachable by uid 65534)
        "/usr/bin/python3",
        lateHello,
        kind,
        where,
        // longer than a sweep (200 ms)
        "600"
      ])
      yield* client.waitFor((l) => l === "closed" || l === "open", 20_000)
      return client.lines
    })

  for (const kind of ["ipc", "abstract"] as const) {
    it.live(`nng+${kind}://: it hears the refusal, counted once`, () =>
      Effect.gen(function*() {
        const observed = Observed.make()
        const dir = yield* sharedDir(0)
        const where = kind === "ipc"
          ? Path.join(dir, "late.ipc")
          : `effect-ipc-users-${process.pid}-late`
        yield* NngTransport.make({ mode: 0o666 }).listen(`nng+${kind}://${where}`).pipe(
          Effect.provide(observed.services)
        )
        const lines = yield* late(kind, where)
        assert.strictEqual(lines[0], "connected")
        assert.match(lines[1] ?? "", new RegExp(`^answer \\{"v":1,"refused":"refused a peer running as uid ${NOBODY} `))
        assert.strictEqual(lines[2], "closed")
        assert.strictEqual(yield* observed.refusals, 1)
      }).pipe(Effect.scoped), 30_000)
  }
})
