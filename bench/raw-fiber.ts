/**
 * raw node:net driven by effect fibers: the floor under the stream Channels.
 * The same Unix sockets and framing as the raw baseline, but both ends live
 * in effect fibers as a Channel's user does: a fiber waits for messages with
 * `Effect.callback` (resumed from the socket's `data` event, every message
 * that chunk held at once) and sends each with an Effect. No engine, no inbox,
 * no metrics, no channel. Its round trip against raw's is what effect's fiber
 * resumptions cost; the unix:// Channel's against it is what effect-ipc adds.
 *
 * The servers run as `peer.ts raw-fiber-echo|raw-fiber-sink PATH`.
 */
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import { connectRawPair, type Contender } from "./contenders.ts"
import type { OneWayRun, Row } from "./report.ts"
import { clockEvery, decodeCounts, END, makePayload, rawFrame, RawReader, SinkCounter } from "./shared.ts"

/** The messages of a socket, taken by a fiber: each take resumes it once with all that came. */
export const messagesOf = (socket: Net.Socket) => {
  const reader = new RawReader()
  const queue: Array<Buffer> = []
  let ended = false
  let waiter: ((batch: Effect.Effect<ReadonlyArray<Buffer>>) => void) | undefined
  const wake = () => {
    const resume = waiter
    if (resume === undefined || (queue.length === 0 && !ended)) return
    waiter = undefined
    resume(Effect.succeed(queue.splice(0)))
  }
  socket.on("data", (chunk: Buffer) => {
    reader.push(chunk, (message) => queue.push(message))
    wake()
  })
  socket.on("close", () => {
    ended = true
    wake()
  })
  socket.on("error", () => socket.destroy())
  /** The messages that came since the last take (none: the socket closed). */
  const take = Effect.callback<ReadonlyArray<Buffer>>((resume) => {
    waiter = resume
    wake()
  })
  return { take }
}

/** Sends one framed message, waiting for `drain` when the socket's buffer is full. */
const send = (socket: Net.Socket, message: Uint8Array): Effect.Effect<void> =>
  Effect.suspend(() =>
    socket.write(rawFrame(message))
      ? Effect.void
      : Effect.callback<void>((resume) => {
        socket.once("drain", () => resume(Effect.void))
      })
  )

/** Serves each connection in a fiber of its own: echoes every message, or counts them. */
export const serve = (mode: "raw-fiber-echo" | "raw-fiber-sink", path: string, ready: () => void): void => {
  Fs.rmSync(path, { force: true })
  const server = Net.createServer((socket) => {
    const messages = messagesOf(socket)
    const counter = new SinkCounter()
    void Effect.runPromise(Effect.gen(function*() {
      while (true) {
        const batch = yield* messages.take
        if (batch.length === 0) return
        counter.batch()
        for (const message of batch) {
          if (mode === "raw-fiber-echo") {
            yield* send(socket, message)
          } else {
            const report = counter.count(message.byteLength)
            if (report !== undefined) yield* send(socket, report)
          }
        }
      }
    }))
  })
  server.listen({ path }, ready)
  process.on("exit", () => Fs.rmSync(path, { force: true }))
}

/** The floor contender: round trips and one-way runs from fibers, to the `raw-fiber-*` peers. */
export const openRawFiber = async (row: Row, echoPath: string, sinkPath: string): Promise<Contender> => {
  const payload = makePayload(row.size)
  const { echoSocket, sinkSocket } = await connectRawPair(echoPath, sinkPath)
  const echoes = messagesOf(echoSocket)
  const reports = messagesOf(sinkSocket)
  return {
    row,
    countBytes: true,
    pingPong: (n, warmup) =>
      Effect.runPromise(Effect.gen(function*() {
        const samples = new Float64Array(n)
        let badLength = 0
        for (let i = -warmup; i < n; i++) {
          const t0 = performance.now()
          yield* send(echoSocket, payload)
          const batch = yield* echoes.take
          if (i >= 0) samples[i] = performance.now() - t0
          if (batch.length !== 1 || batch[0]!.byteLength !== payload.byteLength) badLength++
        }
        if (badLength > 0) return yield* Effect.die(new Error(`${badLength} echoes were not the message sent`))
        return samples
      })),
    oneWay: (seconds) =>
      Effect.runPromise(Effect.gen(function*() {
        const every = clockEvery(payload.byteLength)
        const start = performance.now()
        const deadline = start + seconds * 1000
        let sent = 0
        while (sent % every !== 0 || performance.now() < deadline) {
          yield* send(sinkSocket, payload)
          sent++
        }
        yield* send(sinkSocket, END)
        const report = yield* reports.take
        const elapsed = (performance.now() - start) / 1000
        const counts = decodeCounts(report[0]!)
        return {
          sent,
          received: counts.messages,
          bytes: counts.bytes,
          seconds: elapsed,
          batches: counts.batches
        } satisfies OneWayRun
      })),
    close: async () => {
      echoSocket.destroy()
      sinkSocket.destroy()
    }
  }
}
