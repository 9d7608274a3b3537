/**
 * The floor under shm:// with spinning readers: transport-shm's own rings, one
 * each way between this process and a peer process, read by spinning as the
 * Channel's spin mode reads them, with no channel, engine, inbox or metrics.
 * Two ways of driving them:
 *
 * - `shm-ring-js`: plain JavaScript loops in both processes, no effect: what
 *   the memory, the ring and a copy of each message cost;
 * - `shm-ring-fiber`: the same steps in effect fibers, one Effect per send and
 *   one per receive (as a Channel's user yields them): what effect's run loop adds.
 *   Each send is an Effect made for its message (an `Effect.sync` of the ring's
 *   write), as any `send(message)` must make one: the least such an API costs.
 * - `shm-ring-fallible`: the same, each send an Effect that can fail with a
 *   typed error (a size check, as a Channel's send makes before it writes):
 *   an `Effect.suspend` that returns the outcome, two steps of effect's run
 *   loop where `Effect.sync` takes one. No lazier form of a send that can fail
 *   is offered by effect: this is the least a Channel's `send` can cost.
 *
 * Round trips publish each message as it is written (as the spin Channel does);
 * one-way senders publish every 256 messages (as the blocking Channel's engine
 * publishes a burst at once), so that the reader does not fetch the ring's tail
 * once per message. Readers take what has come in one look and give its ring
 * space back every 32 records and once they have read all there is, as the
 * Channel's reader does, so that the writer does not fetch the ring's head
 * once per message either.
 *
 * At 1 MiB the plain-JavaScript rings are the floor under shm:// `receive`
 * (each message copied out of memory the writer has just filled, into fresh
 * memory): large records are given back one by one as they are copied.
 *
 * The shm:// spin Channel's round trip against the fiber floor is what
 * effect-ipc adds. Each reader spins tightly for 20 µs and then gives the CPU
 * away between looks (`sched_yield`), as the Channel's spin does; a peer that
 * found nothing for 200 µs naps between looks (1 ms, doubling up to 20 ms while
 * nothing comes), so that it costs the other contenders little.
 *
 * The peers run as `shm-floor.ts peer <js|fiber> <echo|sink> IN OUT` (the
 * names of the segments they read and write); closing their stdin ends them.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"
import { type Contender } from "./contenders.ts"
import type { OneWayRun, Row } from "./report.ts"
import {
  allReady,
  clockEvery,
  decodeCounts,
  END,
  makePayload,
  nodeScript,
  READY,
  type ReadyProcess,
  SinkCounter,
  spawnReady
} from "./shared.ts"
// the transport's own ring and system calls (internal modules: the package does not export them)
import * as Header from "../packages/transport-shm/src/internal/header.ts"
import * as Libc from "../packages/transport-shm/src/internal/libc.ts"
import * as Ring from "../packages/transport-shm/src/internal/ring.ts"

/** How the rings are driven. */
export type Drive = "js" | "fiber" | "fallible"

const script = fileURLToPath(import.meta.url)
/** Ring capacity: the Channel's default ring size. */
const CAPACITY = Ring.capacityFor(4 * 1024 * 1024)
/** Spin tightly this long, then yield the CPU between looks. */
const TIGHT_MS = 0.02
/** A reader that found nothing for this long naps (the peers), or gives up (the driver, after `GIVE_UP_MS`). */
const SPIN_MS = 0.2
const GIVE_UP_MS = 10_000
/** Records of at least this many bytes are given back one by one, as the Channel's reader gives back large messages. */
const LARGE = 64 * 1024
let segments = 0

/** A mapped ring segment. */
interface Mapped {
  readonly buffer: ArrayBuffer
  readonly release: () => void
}

const orThrow = <A>(result: Libc.Now<A>): A => {
  if (result instanceof Error) throw result
  return result
}

/** Maps the segment `/name`: made fresh (mode 0600) and laid out as an empty ring, or opened. */
const mapRing = (name: string, create: boolean): Mapped => {
  const size = Header.HEADER_SIZE + CAPACITY
  const fd = orThrow(Libc.shmOpenNow(name, create ? "create" : "open", 0o600))
  try {
    if (create) orThrow(Libc.fdSizeNow(fd, size, false))
    const mapping = orThrow(Libc.mapSharedNow(fd, size))
    if (create) Ring.initialiseSegment(mapping.buffer, CAPACITY)
    return { buffer: mapping.buffer, release: mapping.release }
  } finally {
    Libc.closeFd(fd)
  }
}

/** Both ends of one process: what it reads, and what it writes. */
class Ends {
  readonly consumer: Ring.Consumer
  readonly producer: Ring.Producer
  /** Records read since the reader last gave their space back. */
  private unreleased = 0
  constructor(input: Mapped, output: Mapped) {
    this.consumer = new Ring.Consumer(input.buffer, CAPACITY)
    this.producer = new Ring.Producer(output.buffer, CAPACITY)
  }

  /** The next message (a copy) if one is there. */
  poll(): Uint8Array | undefined {
    if (!this.consumer.hasNext()) return undefined
    const record = this.consumer.next()
    if (record === undefined) return undefined
    if (record instanceof Error) throw record
    // copied out as the Channel's reader copies a small message (a slice of Node's buffer pool)
    const message = Buffer.allocUnsafe(record.length)
    message.set(this.consumer.payload(record))
    // its space given back as the Channel's reader gives it: every 32 records, once it has read all there is, and
    // each large record (64 KiB or more, the Channel's `inPlaceThreshold`) as soon as it is copied out
    if (++this.unreleased >= 32 || record.length >= LARGE || !this.consumer.hasNext()) {
      this.unreleased = 0
      this.consumer.release(record.end)
    }
    return message
  }

  /** The next message (a copy), spinning up to `ms` for it; `undefined` if none came. Throws once the ring closed. */
  take(ms: number): Uint8Array | undefined {
    const start = performance.now()
    for (let now = start;; now = performance.now()) {
      for (let i = 0; i < 64; i++) {
        const message = this.poll()
        if (message !== undefined) return message
      }
      if (this.consumer.isClosed()) throw new Error("the ring closed")
      if (now - start >= ms) return undefined
      if (now - start > TIGHT_MS) Libc.yieldCpu()
    }
  }

  /**
   * Writes one message, spinning while the ring is full; `publish` false leaves it to the next
   * `publish` (a burst's records shown together, as the blocking Channel's engine does).
   */
  put(message: Uint8Array, publish = true): void {
    // the usual case, without reading the clock
    if (this.producer.write(Ring.RecordKind.data, message, publish)) return
    const start = performance.now()
    while (!this.producer.write(Ring.RecordKind.data, message, publish)) {
      this.producer.publish()
      if (performance.now() - start > TIGHT_MS) Libc.yieldCpu()
      if (performance.now() - start > GIVE_UP_MS) throw new Error("the peer stopped reading")
    }
  }

  /** A message, waiting for it up to `GIVE_UP_MS` (past the spin, a turn of the event loop at a time). */
  async takeSoon(): Promise<Uint8Array> {
    const start = performance.now()
    while (performance.now() - start < GIVE_UP_MS) {
      const message = this.take(SPIN_MS)
      if (message !== undefined) return message
      await new Promise((resolve) => setImmediate(resolve))
    }
    throw new Error("no answer from the shm-floor peer")
  }
}

// ---- the driver's side -------------------------------------------------------------------

const jsPingPong = (ends: Ends, payload: Uint8Array, n: number, warmup: number): Float64Array => {
  const samples = new Float64Array(n)
  for (let i = -warmup; i < n; i++) {
    const t0 = performance.now()
    ends.put(payload)
    const reply = ends.take(GIVE_UP_MS)
    if (reply === undefined || reply.byteLength !== payload.byteLength) throw new Error("a bad or missing echo")
    if (i >= 0) samples[i] = performance.now() - t0
  }
  return samples
}

/** A message too large for the ring (what the fallible send checks). */
class TooLarge extends Data.TaggedError("TooLarge")<{ readonly size: number }> {}

/** The largest message the fallible send lets through: half the ring, as the Channel writes inline. */
const INLINE_MAX = CAPACITY / 2

/** One send in a fiber: an Effect made for its message, as any `send(message)` makes one. */
type SendOn = (ends: Ends, message: Uint8Array, publish: boolean) => Effect.Effect<void, TooLarge>

/** A send that cannot fail: one `Effect.sync` of the ring's write. */
const sendSync: SendOn = (ends, message, publish) => Effect.sync(() => ends.put(message, publish))

/** A send that can fail with a typed error: checks the size, then writes, or fails. */
const sendFallible: SendOn = (ends, message, publish) =>
  Effect.suspend(() => {
    if (message.byteLength > INLINE_MAX) return Effect.fail(new TooLarge({ size: message.byteLength }))
    ends.put(message, publish)
    return Effect.void
  })

const fiberPingPong = (sendOn: SendOn, ends: Ends, payload: Uint8Array, n: number, warmup: number) =>
  Effect.gen(function*() {
    const samples = new Float64Array(n)
    const receive = Effect.suspend(() => {
      const reply = ends.take(GIVE_UP_MS)
      return reply === undefined ? Effect.die(new Error("no echo")) : Effect.succeed(reply)
    })
    for (let i = -warmup; i < n; i++) {
      const t0 = performance.now()
      yield* sendOn(ends, payload, true)
      const reply = yield* receive
      if (reply.byteLength !== payload.byteLength) return yield* Effect.die(new Error("a bad echo"))
      if (i >= 0) samples[i] = performance.now() - t0
    }
    return samples
  })

const counted = async (ends: Ends, sent: number, start: number): Promise<OneWayRun> => {
  ends.put(END)
  const counts = decodeCounts(await ends.takeSoon())
  const seconds = (performance.now() - start) / 1000
  return { sent, received: counts.messages, bytes: counts.bytes, seconds, batches: counts.batches }
}

const jsOneWay = (ends: Ends, payload: Uint8Array, seconds: number): Promise<OneWayRun> => {
  const every = clockEvery(payload.byteLength)
  const start = performance.now()
  const deadline = start + seconds * 1000
  let sent = 0
  while (sent % every !== 0 || performance.now() < deadline) {
    ends.put(payload, false)
    if (++sent % every === 0) ends.producer.publish()
  }
  return counted(ends, sent, start)
}

const fiberOneWay = (sendOn: SendOn, ends: Ends, payload: Uint8Array, seconds: number) =>
  Effect.gen(function*() {
    const every = clockEvery(payload.byteLength)
    const start = performance.now()
    const deadline = start + seconds * 1000
    let sent = 0
    while (sent % every !== 0 || performance.now() < deadline) {
      yield* sendOn(ends, payload, false)
      if (++sent % every === 0) ends.producer.publish()
    }
    return yield* Effect.promise(() => counted(ends, sent, start))
  })

/** The contender: an echo and a sink peer driven as `drive` says, each over a ring each way. */
export const openShmFloor = async (row: Row, drive: Drive): Promise<Contender> => {
  const base = `effect-ipc-bench-floor-${process.pid}-${segments++}`
  const names = ["echo-in", "echo-out", "sink-in", "sink-out"].map((what) => `${base}-${what}`)
  const mapped: Array<Mapped> = []
  const unlink = () => names.forEach((name) => Libc.shmUnlinkNow(name))
  let peers: ReadonlyArray<ReadyProcess> = []
  try {
    for (const name of names) mapped.push(mapRing(name, true))
    peers = await allReady((["echo", "sink"] as const).map((role, i) =>
      spawnReady(
        ...nodeScript(script, ["peer", drive, role, names[2 * i]!, names[2 * i + 1]!]),
        `shm-floor peer ${role}`,
        { graceMs: 5000 }
      ).ready
    ))
  } catch (error) {
    mapped.forEach((m) => m.release())
    throw error
  } finally {
    // both ends have them mapped (or nobody will): the names go now, the memory when the last mapping does
    unlink()
  }
  const echo = new Ends(mapped[1]!, mapped[0]!)
  const sink = new Ends(mapped[3]!, mapped[2]!)
  const payload = makePayload(row.size)
  const sendOn = drive === "fallible" ? sendFallible : sendSync
  return {
    row,
    countBytes: true,
    pingPong: (n, warmup) =>
      drive === "js"
        ? Promise.resolve(jsPingPong(echo, payload, n, warmup))
        : Effect.runPromise(fiberPingPong(sendOn, echo, payload, n, warmup)),
    oneWay: (seconds) =>
      drive === "js"
        ? jsOneWay(sink, payload, seconds)
        : Effect.runPromise(fiberOneWay(sendOn, sink, payload, seconds)),
    close: async () => {
      echo.producer.close()
      sink.producer.close()
      await Promise.all(peers.map((peer) => peer.stop()))
      mapped.forEach((m) => m.release())
    }
  }
}

// ---- the peer process -------------------------------------------------------------------

/** What a peer does: the echo sends each message back; the sink counts reads and messages, and answers each END. */
interface Handler {
  /** One read (a take of what had come). */
  readonly read: () => void
  /** What to send for one message, if anything. */
  readonly answer: (message: Uint8Array) => Uint8Array | undefined
}

const handler = (role: string): Handler => {
  if (role === "echo") return { read: () => {}, answer: (message) => message }
  const counter = new SinkCounter()
  return { read: () => counter.batch(), answer: (message) => counter.count(message.byteLength) }
}

/** How long an idle peer naps between looks: doubling from 1 ms up to this while nothing comes (a process woken every 20 ms uses about 1% of a CPU here). */
const MAX_NAP_MS = 20

/** The next nap of an idle peer, after one of `nap` ms (0: messages were coming). */
const longer = (nap: number): number => Math.min(MAX_NAP_MS, Math.max(1, nap * 2))

/**
 * Plain JavaScript: spin and serve while messages come, each read taking what has come (as the fiber
 * peer's take and a Channel's `receiveAll` do); once none came for `SPIN_MS`, nap between looks.
 */
const serveJs = (ends: Ends, handle: Handler): void => {
  let nap = 0
  const turn = (): void => {
    for (let first = ends.take(nap === 0 ? SPIN_MS : 0); first !== undefined; first = ends.take(SPIN_MS)) {
      nap = 0
      handle.read()
      for (let message: Uint8Array | undefined = first; message !== undefined; message = ends.poll()) {
        const answer = handle.answer(message)
        if (answer !== undefined) ends.put(answer)
      }
    }
    nap = longer(nap)
    setTimeout(turn, nap)
  }
  turn()
}

/** The same in a fiber: one Effect takes what has come (as a Channel's `receiveAll`), one sends each answer. */
const serveFiber = (ends: Ends, handle: Handler) => {
  let nap = 0
  const take: Effect.Effect<ReadonlyArray<Uint8Array>> = Effect.suspend(() => {
    const first = ends.take(nap === 0 ? SPIN_MS : 0)
    if (first === undefined) {
      nap = longer(nap)
      return Effect.andThen(Effect.sleep(nap), take)
    }
    nap = 0
    const batch = [first]
    while (batch.length < 4096) {
      const next = ends.poll()
      if (next === undefined) break
      batch.push(next)
    }
    return Effect.succeed(batch)
  })
  return Effect.gen(function*() {
    while (true) {
      const batch = yield* take
      handle.read()
      for (const message of batch) {
        const answer = handle.answer(message)
        if (answer !== undefined) yield* Effect.sync(() => ends.put(answer))
      }
    }
  })
}

if (process.argv[1] === script && process.argv[2] === "peer") {
  const [drive, role, input, output] = process.argv.slice(3)
  process.stdin.on("end", () => process.exit(0))
  process.stdin.resume()
  const ends = new Ends(mapRing(input!, false), mapRing(output!, false))
  process.stdout.write(`${READY}\n`)
  const handle = handler(role!)
  const failed = (error: unknown) => {
    // the driver closed its ring: the contender is over
    if (ends.consumer.isClosed()) process.exit(0)
    console.error(`shm-floor peer ${role} failed:`, error)
    process.exit(1)
  }
  if (drive === "js") {
    process.on("uncaughtException", failed)
    serveJs(ends, handle)
  } else {
    Effect.runPromise(serveFiber(ends, handle)).catch(failed)
  }
}
