/**
 * Where one 64 B round trip's time goes, across both processes: a unix://
 * Channel ping-pong and the floor under it (raw node:net driven by effect
 * fibers), each with its echo in a child process. Both processes stamp the
 * system's monotonic clock (`process.hrtime`, comparable across processes)
 * as a socket write starts and returns, as a socket's `data` event is
 * emitted, and where the receiving fiber resumes; the report gives the
 * median of each segment of the round trip, in µs. A stamp costs about
 * 0.1 µs, so segments are comparable between the two, not exact.
 *
 *   node bench/latency.ts [--rounds=30000] [--runs=2]
 *
 * The echo runs as `latency.ts echo-channel|echo-fibers PATH OUT`.
 */
import { Transport } from "@effect-ipc/core"
import * as Pipe from "@effect-ipc/transport-pipe"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { messagesOf } from "./raw-fiber.ts"
import { argValue, rawFrame } from "./shared.ts"
import {
  clearStamps,
  firstAfter,
  peerStamps,
  Segments,
  stamp,
  stamps,
  stampSockets,
  writeStampsOnTerm
} from "./stamps.ts"

const WARMUP = 3000
// as the tables in README.md were taken: the `data` events mark arrivals
stampSockets(false)

// ---- the echo process -----------------------------------------------------------------------

const ready = (): void => {
  process.send?.("ready")
}

const serveEcho = (kind: "channel" | "fibers", path: string, out: string): void => {
  writeStampsOnTerm(out)
  if (kind === "channel") {
    void Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const listener = yield* Pipe.make().listen(`unix://${path}`)
      ready()
      yield* Transport.serve(listener, (channel) =>
        Effect.gen(function*() {
          while (true) {
            const batch = yield* channel.receiveAll
            stamp("resumed")
            for (const message of batch) yield* channel.send(message)
          }
        }))
    })))
  } else {
    const server = Net.createServer((socket) => {
      const { take } = messagesOf(socket)
      void Effect.runPromise(Effect.gen(function*() {
        while (true) {
          const batch = yield* take
          if (batch.length === 0) return // the socket closed
          stamp("resumed")
          for (const message of batch) socket.write(rawFrame(message))
        }
      }))
    })
    server.listen(path, ready)
  }
}

// ---- the driver -----------------------------------------------------------------------------

/** One measurement: `rounds` round trips of 64 B, the echo in a child process; medians per segment. */
const measure = async (kind: "channel" | "fibers", rounds: number): Promise<Record<string, number>> => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-latency-"))
  const path = Path.join(dir, "echo.sock")
  const out = Path.join(dir, "echo.json")
  try {
    const echo = ChildProcess.fork(import.meta.filename, [`echo-${kind}`, path, out], { execArgv: process.execArgv })
    await new Promise((resolve) => echo.once("message", resolve))
    const payload = new Uint8Array(64).fill(7)
    if (kind === "channel") {
      await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const channel = yield* Pipe.make().dial(`unix://${path}`)
        for (let i = 0; i < WARMUP + rounds; i++) {
          if (i === WARMUP) clearStamps()
          stamp("start")
          yield* channel.send(payload)
          yield* channel.receive
          stamp("end")
        }
      })))
    } else {
      const socket = Net.createConnection(path)
      await new Promise((resolve) => socket.once("connect", resolve))
      const { take } = messagesOf(socket)
      await Effect.runPromise(Effect.gen(function*() {
        for (let i = 0; i < WARMUP + rounds; i++) {
          if (i === WARMUP) clearStamps()
          stamp("start")
          yield* Effect.sync(() => socket.write(rawFrame(payload)))
          yield* take
          stamp("end")
        }
      }))
      socket.destroy()
    }
    const driver = { ...stamps }
    clearStamps()
    const peer = await peerStamps(echo, out)
    const segments = new Segments()
    const add = (name: string, from: number, to: number) => segments.add(name, from, to)
    for (let i = 0; i < driver.start!.length; i++) {
      const start = driver.start![i]!
      const end = driver.end![i]!
      const sent = firstAfter(driver.write!, start)
      const sentBack = firstAfter(driver.written!, sent)
      const arrived = firstAfter(peer.data!, sent)
      const echoed = firstAfter(peer.resumed!, arrived)
      const answered = firstAfter(peer.write!, echoed)
      const answeredBack = firstAfter(peer.written!, answered)
      const back = firstAfter(driver.data!, answered)
      if (!(back <= end)) continue
      add("driver: start to its write", start, sent)
      add("driver: its write (syscall)", sent, sentBack)
      add("to the echo's data event", sentBack, arrived)
      add("echo: data event to its fiber", arrived, echoed)
      add("echo: its fiber to its write", echoed, answered)
      add("echo: its write (syscall)", answered, answeredBack)
      add("to the driver's data event", answeredBack, back)
      add("driver: data event to its fiber", back, end)
      add("round trip", start, end)
    }
    return segments.medians()
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

const main = async (): Promise<void> => {
  const rounds = Number(argValue("rounds") ?? "30000")
  const runs = Number(argValue("runs") ?? "2")
  const columns: Array<[string, Record<string, number>]> = []
  for (let run = 1; run <= runs; run++) {
    for (const kind of ["fibers", "channel"] as const) {
      columns.push([`${kind === "fibers" ? "fibers (floor)" : "unix:// Channel"} ${run}`, await measure(kind, rounds)])
    }
  }
  const names = Object.keys(columns[0]![1])
  console.log(`| median µs, 64 B | ${columns.map(([label]) => label).join(" | ")} |`)
  console.log(`| --- | ${columns.map(() => "---:").join(" | ")} |`)
  for (const name of names) {
    console.log(`| ${name} | ${columns.map(([, values]) => values[name]?.toFixed(2) ?? "–").join(" | ")} |`)
  }
}

const [mode, path, out] = process.argv.slice(2)
if (mode === "echo-channel" || mode === "echo-fibers") {
  serveEcho(mode === "echo-channel" ? "channel" : "fibers", path!, out!)
} else {
  await main()
}
