/**
 * When memory runs out: a full `/dev/shm` (a tmpfs of a few pages in a mount namespace of the child's own), and
 * no descriptor left for a large message's segment. Every failure is a typed error where the segment is made,
 * never a SIGBUS later when its pages are first written; nothing is left behind, and the reader gets the
 * messages in order up to the failure.
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import { leftovers, pidMarker, smallShm, spawnChildWith, untilSaid } from "./helpers.ts"

const isRoot = process.getuid?.() === 0

let n = 0
const address = () => `shm://nospace-test-${process.pid}-${n++}`

const MiB = 1024 * 1024

/**
 * A memory cgroup limited to `bytes` (v2 where it is mounted, else v1's memory hierarchy), removed when the scope
 * closes (after the processes in it: close it after them): the wrapper that runs a command in it.
 */
const memoryCgroup = (bytes: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const v2 = Fs.existsSync("/sys/fs/cgroup/cgroup.controllers")
      if (v2) Fs.writeFileSync("/sys/fs/cgroup/cgroup.subtree_control", "+memory")
      const dir = `${v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory"}/effect-ipc-nospace-${process.pid}-${n++}`
      Fs.mkdirSync(dir)
      Fs.writeFileSync(`${dir}/${v2 ? "memory.max" : "memory.limit_in_bytes"}`, String(bytes))
      return dir
    }),
    (dir) =>
      Effect.promise(async () => {
        // a killed child's cgroup empties a moment after it is reaped
        for (let tries = 0; tries < 100; tries++) {
          try {
            return Fs.rmdirSync(dir)
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 50))
          }
        }
      })
  ).pipe(Effect.map((dir) => ["sh", "-c", `echo $$ > ${dir}/cgroup.procs && exec "$0" "$@"`]))

/** The number a `large` or `no-descriptors` child wrote at the start of a message. */
const numberOf = (message: Uint8Array) => new DataView(message.buffer, message.byteOffset).getUint32(0)

/**
 * Runs the `reserve` child over a `/dev/shm` of `kib` KiB (`full`: no page free) with a resource link and a plain
 * segment of each size in `expected`, and checks what came of them: `NoSpace` when made, or every byte written;
 * nothing left in `/dev/shm` either way.
 */
const reserve = (
  kib: number,
  full: boolean,
  expected: ReadonlyArray<readonly [number, "NoSpace" | "ok"]>,
  outer: ReadonlyArray<string> = []
) =>
  Effect.gen(function*() {
    const child = yield* spawnChildWith(
      { wrap: [...outer, ...smallShm(kib, { full })] },
      "reserve",
      ...expected.map(([size]) => String(size))
    )
    const said = JSON.parse(child.said) as { links: Array<string>; segments: Array<string>; left: Array<string> }
    expected.forEach(([, outcome], i) => {
      for (const made of [said.links[i]!, said.segments[i]!]) {
        if (outcome === "ok") assert.strictEqual(made, "ok", child.said)
        else assert.match(made, /^NoSpace: /, child.said)
      }
    })
    assert.deepStrictEqual(said.left, [], "nothing left in /dev/shm")
  }).pipe(Effect.scoped)

describe.skipIf(!isRoot)("a full /dev/shm", () => {
  it.live(
    "resource links and segments larger than the room left fail with NoSpace when made, not with SIGBUS when written",
    // 1 MiB of /dev/shm: 4 MiB does not fit (a sparse file would, until its pages are written), 64 KiB does
    () => reserve(1024, false, [[4 * 1024 * 1024, "NoSpace"], [64 * 1024, "ok"]]),
    30_000
  )

  it.live(
    "one larger than a reservation chunk fails with NoSpace partway and gives back the chunks it had",
    // 100 MiB of /dev/shm: 200 MiB fails in its second 64 MiB chunk; 64 MiB fits after it only if the first was freed
    () => reserve(100 * 1024, false, [[200 * 1024 * 1024, "NoSpace"], [64 * 1024 * 1024, "ok"]]),
    30_000
  )

  it.live(
    "a /dev/shm larger than the memory left to its process (a memory cgroup's limit): a link or segment larger than that fails with NoSpace at once",
    // a tmpfs may be sized past the memory behind it (24 GB over 23 GB of RAM here; a container's /dev/shm past its
    // memory limit): a link of 2^45 bytes filled memory and the kernel killed its creator, where NoSpace is promised.
    // Here the creator runs in a memory cgroup of 256 MiB over a /dev/shm of 4 GiB: 32 MiB fits, 1 GiB is refused
    // before its first page (unguarded, the cgroup's OOM killer ends the child, and only it)
    () =>
      Effect.gen(function*() {
        const cgroup = yield* memoryCgroup(256 * MiB)
        yield* reserve(4 * 1024 * 1024, false, [[32 * MiB, "ok"], [1024 * MiB, "NoSpace"]], cgroup)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "with not one page free, a resource link of a few bytes fails with NoSpace (its header has no room)",
    () => reserve(256, true, [[100, "NoSpace"]]),
    30_000
  )

  it.live(
    "does not stop shm:// channels: their rings and large messages are memory files, never in /dev/shm",
    () =>
      Effect.gen(function*() {
        const size = 1024 * 1024
        const where = address()
        const listener = yield* Shm.ShmTransport.make({ ringSize: 256 * 1024 }).listen(where)
        // the sender's /dev/shm has no page free; each message is 4x the ring: a segment of its own
        const sender = yield* spawnChildWith(
          { wrap: smallShm(256, { full: true }) },
          "large",
          where,
          String(size),
          "8",
          String(256 * 1024)
        )
        const reader = yield* listener.accept
        for (let i = 0; i < 8; i++) {
          const message = yield* reader.receive.pipe(Effect.timeout("10 seconds"))
          assert.strictEqual(message.byteLength, size)
          assert.strictEqual(numberOf(message), i)
          assert.strictEqual(message[size - 1], i & 0xff)
        }
        assert.isTrue(yield* untilSaid(sender.output, /^done$/m), sender.output())
        assert.deepStrictEqual(leftovers(pidMarker(sender.pid)), [])
      }).pipe(Effect.scoped),
    30_000
  )
})

describe("no descriptor left for a large message's segment", () => {
  it.live(
    "one that waited fails the channel with NoSpace after the messages before it; one sent at once fails alone",
    () =>
      Effect.gen(function*() {
        const where = address()
        const listener = yield* Shm.ShmTransport.make({ ringSize: 64 * 1024, maxBufferedMessages: 1 }).listen(where)
        // a limit the child can exhaust quickly (Node raises the soft limit to the hard one)
        const sender = yield* spawnChildWith({ wrap: ["prlimit", "--nofile=1024:1024"] }, "no-descriptors", where)
        const first = yield* listener.accept
        assert.isTrue(yield* untilSaid(sender.output, /^exhausted \d+$/m), sender.output())
        const large = Number(/^exhausted (\d+)$/m.exec(sender.output())![1])
        // reading makes room: the small messages before the large one go, then its segment cannot be made
        for (let i = 0; i < large; i++) {
          assert.strictEqual(numberOf(yield* first.receive.pipe(Effect.timeout("10 seconds"))), i)
        }
        const lost = yield* Effect.flip(first.receive).pipe(Effect.timeout("10 seconds"))
        assert.strictEqual(lost.reason._tag, "ConnectionLost", lost.detail)
        const second = yield* listener.accept
        // at once: message 11 failed at its send; the others arrive in order (large 13's send completes once
        // this reader has taken it, so they are read before the sender can be done)
        const next = Effect.map(second.receive.pipe(Effect.timeout("10 seconds")), numberOf)
        assert.deepStrictEqual([yield* next, yield* next, yield* next, yield* next], [10, 12, 13, 14])
        assert.isTrue(yield* untilSaid(sender.output, /^done$/m), sender.output())
        const said = sender.output()
        // the sends that waited fail with the channel, even the one whose message went into the ring just before
        for (let i = 0; i < large; i++) {
          assert.match(said, new RegExp(`^(sent ${i}|failed ${i} NoSpace: .*)$`, "m"), said)
        }
        assert.match(said, new RegExp(`^failed ${large} NoSpace: `, "m"), said)
        assert.match(said, new RegExp(`^failed ${large + 1} NoSpace: `, "m"), said)
        assert.match(said, /^failed 11 NoSpace: /m, said)
        assert.match(said, /^sent 13$/m, said)
        assert.deepStrictEqual(leftovers(pidMarker(sender.pid)), [])
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a reader with no descriptor left for a large message's segment fails NoSpace (EMFILE), not Protocol; its sender ConnectionLost",
    () =>
      Effect.gen(function*() {
        const where = address()
        const listener = yield* Shm.ShmTransport.make({ ringSize: 64 * 1024 }).listen(where)
        const reader = yield* spawnChildWith(
          { wrap: ["prlimit", "--nofile=1024:1024"] },
          "no-descriptors-reader",
          where
        )
        const channel = yield* listener.accept
        // over half the ring: a segment of its own, which the reader cannot open (tried again for a second)
        const sent = yield* Effect.flip(channel.send(new Uint8Array(100_000).fill(7))).pipe(
          Effect.timeout("20 seconds")
        )
        assert.strictEqual(sent.reason._tag, "ConnectionLost", sent.detail)
        assert.isTrue(yield* untilSaid(reader.output, /^failed /m), reader.output())
        assert.match(reader.output(), /^failed NoSpace: cannot open the peer's segment .*EMFILE/m)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a listener with no descriptor left refuses a dialer with NoSpace (EMFILE), not Protocol, and serves again once it has some",
    () =>
      Effect.gen(function*() {
        const where = address()
        // a listener that can hold few connections (each takes descriptors: its socket, its rings)
        const echo = yield* spawnChildWith({ wrap: ["prlimit", "--nofile=64:64"] }, "echo-all", where)
        const transport = Shm.ShmTransport.make({ ringSize: 64 * 1024 })
        const held: Array<Effect.Effect<void>> = []
        let refused: IpcError.IpcError | undefined
        for (let i = 0; i < 200 && refused === undefined; i++) {
          const scope = yield* Scope.make()
          const dialled = yield* Effect.result(Scope.provide(scope)(transport.dial(where)))
          if (dialled._tag === "Failure") {
            refused = dialled.failure
            yield* Scope.close(scope, Exit.void)
          } else {
            held.push(Scope.close(scope, Exit.void))
          }
        }
        assert.isDefined(refused, "the listener took 200 connections under 64 descriptors")
        assert.strictEqual(refused!.reason._tag, "NoSpace", refused!.detail)
        assert.match(refused!.detail, /^the listener refused: .*EMFILE/)
        // the connections closed, it serves again
        for (const close of held) yield* close
        const again = yield* Effect.eventually(
          Effect.scoped(Effect.flatMap(
            transport.dial(where),
            (channel) => Effect.andThen(channel.send(new Uint8Array([1])), channel.receive)
          )).pipe(Effect.timeout("2 seconds"))
        ).pipe(Effect.timeout("20 seconds"), Effect.result)
        assert.strictEqual(again._tag, "Success")
        // stopped, not killed: it removes its socket file
        echo.process.kill("SIGTERM")
        yield* echo.exited
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("leaves no listener behind", () =>
    Effect.gen(function*() {
      const swept = yield* Shm.SegmentGc.collect({ prefix: `nospace-test-${process.pid}-` })
      assert.deepStrictEqual(swept.removed, [])
    }))
})
