/**
 * The message-library peer of the benchmark: ZeroMQ through the `zeromq`
 * npm package (v6, libzmq bundled), the library a Node user would pick for
 * messaging between processes. A `Pair` socket over `ipc://` (a Unix socket
 * underneath), written the way its README shows: one `await socket.send(msg)`
 * per message, `await socket.receive()` per reply; the echo and sink peers
 * are plain Node processes (`zmq.ts peer echo|sink URL`) that do the same.
 *
 * Measured by the same harness and in the same run as every Channel, so the
 * report can hold each Channel's round trip and one-way rate against it.
 */
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Zmq from "zeromq"
import type { Contender } from "./contenders.ts"
import type { OneWayRun, Row } from "./report.ts"
import {
  allReady,
  clockEvery,
  decodeCounts,
  END,
  makePayload,
  makeTempDir,
  nodeScript,
  READY,
  type ReadyProcess,
  removeTempDir,
  SinkCounter,
  spawnReady
} from "./shared.ts"

const script = fileURLToPath(import.meta.url)
let contenders = 0

/** Starts `zmq.ts peer ROLE URL` and waits until it listens. */
const startServer = (role: "echo" | "sink", url: string): Promise<ReadyProcess> =>
  spawnReady(...nodeScript(script, ["peer", role, url]), `zmq ${role} peer`, { graceMs: 5_000 }).ready

const connect = (url: string): Zmq.Pair => {
  const socket = new Zmq.Pair({ linger: 0 })
  socket.connect(url)
  return socket
}

/** The zeromq contender: echo and sink peers in child processes, a Pair socket to each. */
export const openZmq = async (row: Row): Promise<Contender> => {
  const dir = makeTempDir("effect-ipc-bench-zmq-")
  const id = contenders++
  const echoUrl = `ipc://${Path.join(dir, `echo-${id}.ipc`)}`
  const sinkUrl = `ipc://${Path.join(dir, `sink-${id}.ipc`)}`
  const servers = await allReady([startServer("echo", echoUrl), startServer("sink", sinkUrl)]).catch(
    (error: unknown): never => {
      removeTempDir(dir)
      throw error
    }
  )
  const stopAll = async () => {
    await Promise.all(servers.map((server) => server.stop()))
    removeTempDir(dir)
  }
  const echo = connect(echoUrl)
  const sink = connect(sinkUrl)
  const payload = makePayload(row.size)
  return {
    row,
    countBytes: true,
    pingPong: async (n, warmup) => {
      for (let i = 0; i < warmup; i++) {
        await echo.send(payload)
        await echo.receive()
      }
      const samples = new Float64Array(n)
      let badLength = 0
      for (let i = 0; i < n; i++) {
        const t0 = performance.now()
        await echo.send(payload)
        const [reply] = await echo.receive()
        samples[i] = performance.now() - t0
        if (reply?.byteLength !== payload.byteLength) badLength++
      }
      if (badLength > 0) throw new Error(`${badLength} echoes had the wrong length`)
      return samples
    },
    oneWay: async (seconds): Promise<OneWayRun> => {
      const every = clockEvery(payload.byteLength)
      const start = performance.now()
      const deadline = start + seconds * 1000
      let sent = 0
      while (sent % every !== 0 || performance.now() < deadline) {
        await sink.send(payload)
        sent++
      }
      await sink.send(END)
      const [reply] = await sink.receive()
      const elapsed = (performance.now() - start) / 1000
      const counts = decodeCounts(reply!)
      return { sent, received: counts.messages, bytes: counts.bytes, seconds: elapsed, batches: counts.batches }
    },
    close: async () => {
      echo.close()
      sink.close()
      await stopAll()
    }
  }
}

// ---- the peer process (plain Node and zeromq, no effect) -----------------------------------

const runPeer = async (role: string, url: string): Promise<void> => {
  const socket = new Zmq.Pair({ linger: 0 })
  await socket.bind(url)
  process.stdout.write(`${READY}\n`)
  const counter = new SinkCounter()
  for await (const [message] of socket) {
    if (message === undefined) continue
    if (role === "echo") {
      await socket.send(message)
    } else {
      counter.batch()
      const report = counter.count(message.byteLength)
      if (report !== undefined) await socket.send(report)
    }
  }
}

if (process.argv[1] === script && process.argv[2] === "peer") {
  const [role, url] = process.argv.slice(3)
  // the contender ends us by closing our stdin
  process.stdin.on("end", () => process.exit(0))
  process.stdin.resume()
  runPeer(role!, url!).catch((error: unknown) => {
    console.error(`zmq peer ${role} failed:`, error)
    process.exit(1)
  })
}
