/**
 * The soak (`npm run soak`): not a test, a long run that shows whether memory
 * or descriptors creep. For each stream transport of transport-pipe (unix://,
 * pipe://, fifo://, child pipes) it sends SOAK_MESSAGES messages (default 1M,
 * 64 B, through an echo) and then makes SOAK_CYCLES connect/send/receive/close
 * cycles (default 50k), printing RSS, JS heap and open descriptors as it goes
 * and a summary line per phase. Both ends of unix/pipe/fifo live in this
 * process; the child-pipe peer is a Python echo on fd 3 (one child per cycle).
 *
 * Environment: SOAK_MESSAGES, SOAK_CYCLES, SOAK_CHILD_CYCLES (default
 * SOAK_CYCLES: each cycle starts a process), SOAK_SAMPLES (lines per phase,
 * default 10), SOAK_ONLY=unix,pipe,fifo,child. Run Node with --expose-gc
 * (the `soak` script does) so that samples are taken after a full collection.
 *
 * Reading the numbers: under connect/disconnect churn V8 grows its young
 * generation in steps (2, 32, 64, 128 MiB reserved with Node 24's defaults),
 * which shows as RSS steps with a flat heap; the "young gen" column shows it,
 * and `--max-semi-space-size=1` makes RSS flat. A leak is RSS growing past
 * that bound, or descriptors growing.
 */
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as Transport from "@effect-ipc/core/Transport"
import * as Pipe from "@effect-ipc/transport-pipe"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as V8 from "node:v8"

const env = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback)
  return Number.isFinite(value) && value >= 0 ? Math.floor(value) : fallback
}
const messages = env("SOAK_MESSAGES", 1_000_000)
const cycles = env("SOAK_CYCLES", 50_000)
const childCycles = env("SOAK_CHILD_CYCLES", cycles)
const samples = Math.max(1, env("SOAK_SAMPLES", 10))
const only = (process.env["SOAK_ONLY"] ?? "unix,pipe,fifo,child").split(",")
const python = "/usr/bin/python3"
const pythonPeer = Path.resolve(import.meta.dirname, "../packages/transport-pipe/test/fixtures/peer.py")

const gc = (globalThis as { gc?: () => void }).gc
const MiB = 1024 * 1024
const fds = () => Fs.readdirSync("/proc/self/fd").length

interface Sample {
  readonly done: number
  readonly rss: number
  readonly heap: number
  /** V8's young generation as reserved now: it grows (up to --max-semi-space-size) under allocation churn. */
  readonly young: number
  readonly fds: number
}

const sample = (done: number): Sample => {
  gc?.()
  const memory = process.memoryUsage()
  const young = V8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space")?.space_size ?? 0
  return { done, rss: memory.rss, heap: memory.heapUsed, young, fds: fds() }
}

const mib = (bytes: number, width: number) => (bytes / MiB).toFixed(1).padStart(width)

const show = (label: string, s: Sample) =>
  console.log(
    `${label.padEnd(22)} ${String(s.done).padStart(9)}  rss ${mib(s.rss, 7)} MiB  heap used ${mib(s.heap, 6)} MiB` +
      `  young gen ${mib(s.young, 6)} MiB  fds ${s.fds}`
  )

/** Runs `step(i)` `total` times, printing `samples` samples (counting `unit` per step) and a summary. */
const phase = <E>(label: string, total: number, step: (i: number) => Effect.Effect<void, E>, unit = 1) =>
  Effect.gen(function*() {
    const every = Math.max(1, Math.floor(total / samples))
    const first = sample(0)
    show(label, first)
    let last = first
    for (let i = 0; i < total; i++) {
      yield* step(i)
      if ((i + 1) % every === 0 || i + 1 === total) {
        last = sample((i + 1) * unit)
        show(label, last)
      }
    }
    const perUnit = total === 0 ? 0 : (last.rss - first.rss) / (total * unit)
    console.log(
      `${label.padEnd(22)} summary: rss ${((last.rss - first.rss) / MiB).toFixed(1)} MiB` +
        ` (${perUnit.toFixed(1)} B per unit), fds ${last.fds - first.fds >= 0 ? "+" : ""}${last.fds - first.fds}`
    )
  })

const payload = new Uint8Array(64)

/** Pushes `total` messages through an echo in windows, so that both directions flow. */
const stream = (channel: IpcChannel.IpcChannel, total: number, label: string) => {
  const window = 1000
  return phase(`${label} messages`, Math.ceil(total / window), () =>
    Effect.gen(function*() {
      for (let i = 0; i < window; i++) yield* channel.send(payload)
      let got = 0
      while (got < window) got += (yield* channel.receiveAll).length
    }), window)
}

/** One connect, round trip, close. */
const cycle = (transport: Transport.TransportShape, address: string) =>
  Effect.scoped(Effect.gen(function*() {
    const channel = yield* transport.dial(address)
    yield* channel.send(payload)
    yield* channel.receive
    yield* channel.close
  }))

const echoServer = (transport: Transport.TransportShape, address: string) =>
  Effect.gen(function*() {
    const listener = yield* transport.listen(address)
    yield* Effect.forkScoped(
      Transport.serve(listener, (channel) =>
        Effect.forever(Effect.flatMap(channel.receiveAll, (all) =>
          Effect.forEach(all, channel.send, { discard: true }))))
    )
  })

const socketLike = (name: string, transport: Transport.TransportShape, address: string) =>
  Effect.scoped(Effect.gen(function*() {
    yield* echoServer(transport, address)
    yield* Effect.scoped(Effect.gen(function*() {
      const channel = yield* transport.dial(address)
      yield* stream(channel, messages, name)
    }))
    yield* phase(`${name} cycles`, name === "child" ? childCycles : cycles, () => cycle(transport, address))
  }))

const child = Effect.gen(function*() {
  yield* Effect.scoped(Effect.gen(function*() {
    const spawned = yield* Pipe.ChildPipe.spawn(python, { args: [pythonPeer, "--echo-fd", "3"] })
    yield* stream(spawned.channel, messages, "child")
  }))
  yield* phase("child cycles", childCycles, () =>
    Effect.scoped(Effect.gen(function*() {
      const spawned = yield* Pipe.ChildPipe.spawn(python, { args: [pythonPeer, "--echo-fd", "3"] })
      yield* spawned.channel.send(payload)
      yield* spawned.channel.receive
      yield* spawned.channel.close
      yield* spawned.exit
    })))
})

const program = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-soak-"))),
    (d) => Effect.sync(() => Fs.rmSync(d, { recursive: true, force: true }))
  )
  console.log(
    `soak: ${messages} messages and ${cycles} cycles per transport (child: ${childCycles}); node ${process.version};` +
      ` gc before samples: ${gc === undefined ? "no (run with --expose-gc)" : "yes"}`
  )
  if (only.includes("unix")) yield* socketLike("unix", Pipe.UnixSocket.make(), `unix://${dir}/soak.sock`)
  if (only.includes("pipe")) yield* socketLike("pipe", Pipe.UnixSocket.make(), `pipe://effect-ipc-soak-${process.pid}`)
  if (only.includes("fifo")) yield* socketLike("fifo", Pipe.Fifo.make(), `fifo://${dir}/soak`)
  if (only.includes("child")) yield* child
})

Effect.runPromise(Effect.scoped(program)).then(() => process.exit(0), (error: unknown) => {
  console.error(error)
  process.exit(1)
})
