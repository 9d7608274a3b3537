/**
 * The transports under test, each behind one small interface: open its
 * connections for one payload size, then run ping-pong round trips and
 * one-way (or concurrent-call) runs on demand, so that `run.ts` can let them
 * take turns.
 *
 * - raw `node:net` over a Unix socket with `shared.ts`' framing: one
 *   `socket.write` per message, waiting for `drain` when it says so;
 * - an effect-ipc `IpcChannel` over `UnixSocket.make()`, `Memory.make()`, a
 *   FIFO pair (`fifo://`, dialled through the router `Pipe.make()`) or a
 *   child-process pipe (`ChildPipe.spawn`, the peers being our children):
 *   `channel.send` per message, `channel.receive` for echoes;
 * - typed RPC: DemoApi `Echo`/`Add` calls through one `RpcClient` of a stack in `rpc.ts`;
 * - zeromq (`zmq.ts`), shm (`shm.ts`), nng (`nng.ts`), file (`file.ts`) in modules of their own.
 */
import { IpcChannel, type IpcError, Memory } from "@effect-ipc/core"
import * as Pipe from "@effect-ipc/transport-pipe"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Net from "node:net"
import { echo, sink } from "./handlers.ts"
import type { OneWayRun, Row } from "./report.ts"
import type { DemoClient } from "./rpc.ts"
import {
  clockEvery,
  decodeCounts,
  END,
  makePayload,
  nodeScript,
  oneWayBatch,
  rawFrame,
  RawReader,
  type ReadyProcess,
  spawnReady,
  type StopOptions
} from "./shared.ts"

/** One transport at one payload size, ready to measure. */
export interface Contender {
  readonly row: Row
  /** False for calls without a payload (RPC `Add`). */
  readonly countBytes: boolean
  /** `n` timed round trips after `warmup` untimed ones; the samples are in ms (absent: no round trips, memcpy). */
  readonly pingPong?: ((n: number, warmup: number) => Promise<Float64Array>) | undefined
  /** Sends (or calls) for `seconds`, then reports what the receiver counted. */
  readonly oneWay: (seconds: number) => Promise<OneWayRun>
  /** Processes it started that measure from the driver's side (the nng C client): `--pin` places them as the driver. */
  readonly driverSide?: ReadonlyArray<number> | undefined
  readonly close: () => Promise<void>
}

// ---- raw node:net baseline ----------------------------------------------------------

const connectRaw = (path: string): Promise<Net.Socket> =>
  new Promise<Net.Socket>((resolve, reject) => {
    const socket = Net.createConnection({ path })
    socket.once("error", reject)
    socket.once("connect", () => {
      socket.off("error", reject)
      resolve(socket)
    })
  })

const rawPingPong = (socket: Net.Socket, payload: Uint8Array, n: number, warmup: number): Promise<Float64Array> =>
  new Promise<Float64Array>((resolve, reject) => {
    const samples = new Float64Array(n)
    const reader = new RawReader()
    let i = -warmup
    let t0 = 0
    let badLength = 0
    const send = () => {
      t0 = performance.now()
      socket.write(rawFrame(payload))
    }
    const onMessage = (message: Buffer) => {
      const t = performance.now()
      if (message.byteLength !== payload.byteLength) badLength++
      if (i >= 0) samples[i] = t - t0
      i++
      if (i < n) return send()
      socket.off("data", onData)
      socket.off("error", reject)
      if (badLength > 0) reject(new Error(`${badLength} echoes had the wrong length`))
      else resolve(samples)
    }
    const onData = (chunk: Buffer) => reader.push(chunk, onMessage)
    socket.on("data", onData)
    socket.once("error", reject)
    send()
  })

const rawOneWay = (socket: Net.Socket, payload: Uint8Array, seconds: number): Promise<OneWayRun> =>
  new Promise<OneWayRun>((resolve, reject) => {
    const reader = new RawReader()
    const every = clockEvery(payload.byteLength)
    const start = performance.now()
    const deadline = start + seconds * 1000
    let sent = 0
    const onData = (chunk: Buffer) =>
      reader.push(chunk, (message) => {
        const elapsed = (performance.now() - start) / 1000
        socket.off("data", onData)
        socket.off("error", reject)
        const counts = decodeCounts(message)
        resolve({ sent, received: counts.messages, bytes: counts.bytes, seconds: elapsed, batches: counts.batches })
      })
    socket.on("data", onData)
    socket.once("error", reject)
    const pump = () => {
      while (true) {
        if (sent % every === 0 && performance.now() >= deadline) {
          socket.write(rawFrame(END))
          return
        }
        sent++
        if (!socket.write(rawFrame(payload))) {
          socket.once("drain", pump)
          return
        }
      }
    }
    pump()
  })

/** Unix socket connections to an echo and a sink peer (the first closed again if the second fails). */
export const connectRawPair = async (
  echoPath: string,
  sinkPath: string
): Promise<{ readonly echoSocket: Net.Socket; readonly sinkSocket: Net.Socket }> => {
  const echoSocket = await connectRaw(echoPath)
  const sinkSocket = await connectRaw(sinkPath).catch((error: unknown) => {
    echoSocket.destroy()
    throw error
  })
  return { echoSocket, sinkSocket }
}

/** Raw `node:net` to the `raw-echo` and `raw-sink` peers at these socket paths. */
export const openRaw = async (row: Row, echoPath: string, sinkPath: string): Promise<Contender> => {
  const payload = makePayload(row.size)
  const { echoSocket, sinkSocket } = await connectRawPair(echoPath, sinkPath)
  return {
    row,
    countBytes: true,
    pingPong: (n, warmup) => rawPingPong(echoSocket, payload, n, warmup),
    oneWay: (seconds) => rawOneWay(sinkSocket, payload, seconds),
    close: async () => {
      echoSocket.destroy()
      sinkSocket.destroy()
    }
  }
}

// ---- memcpy, the reference for copies ----------------------------------------------------

/**
 * A copy of the row's size from one buffer into another in this process
 * (`Uint8Array.prototype.set`, a memcpy underneath), repeated for `seconds`:
 * what `shm://`'s `receive` is held against, measured under the same load.
 */
export const openMemcpy = (row: Row): Promise<Contender> => copyContender(row, "reused")

/**
 * The same copies, each into a buffer of its own (`Buffer.allocUnsafe`) that
 * is dropped at once: what a receiver that keeps its messages cannot get under,
 * fresh memory and the garbage collections it brings included.
 */
export const openFreshCopy = (row: Row): Promise<Contender> => copyContender(row, "fresh")

const copyContender = async (row: Row, into: "reused" | "fresh"): Promise<Contender> => {
  const source = makePayload(row.size)
  const reused = new Uint8Array(row.size)
  return {
    row,
    countBytes: true,
    oneWay: async (seconds) => {
      const start = performance.now()
      const deadline = start + seconds * 1000
      let copies = 0
      let last = 0
      while (performance.now() < deadline) {
        for (let i = 0; i < 16; i++) {
          const target = into === "reused" ? reused : Buffer.allocUnsafe(row.size)
          target.set(source)
          last = target[row.size - 1]!
        }
        copies += 16
      }
      if (last !== source[row.size - 1]) throw new Error("the copy differs")
      const elapsed = (performance.now() - start) / 1000
      return { sent: copies, received: copies, bytes: copies * row.size, seconds: elapsed }
    },
    close: () => Promise.resolve()
  }
}

// ---- effect-ipc channels ------------------------------------------------------------------

const channelPingPong = (
  channel: IpcChannel.IpcChannel,
  payload: Uint8Array,
  n: number,
  warmup: number
): Effect.Effect<Float64Array, IpcError.IpcError | Error> =>
  Effect.gen(function*() {
    let badLength = 0
    for (let i = 0; i < warmup; i++) {
      yield* channel.send(payload)
      yield* channel.receive
    }
    const samples = new Float64Array(n)
    for (let i = 0; i < n; i++) {
      const t0 = performance.now()
      yield* channel.send(payload)
      const reply = yield* channel.receive
      samples[i] = performance.now() - t0
      if (reply.byteLength !== payload.byteLength) badLength++
    }
    if (badLength > 0) return yield* Effect.fail(new Error(`${badLength} echoes had the wrong length`))
    return samples
  })

const channelOneWay = (
  channel: IpcChannel.IpcChannel,
  payload: Uint8Array,
  seconds: number
): Effect.Effect<OneWayRun, IpcError.IpcError> =>
  Effect.gen(function*() {
    const every = clockEvery(payload.byteLength)
    const start = performance.now()
    const deadline = start + seconds * 1000
    let sent = 0
    if (oneWayBatch > 1) {
      const messages = Array.from({ length: oneWayBatch }, () => payload)
      while (performance.now() < deadline) {
        yield* IpcChannel.sendAll(channel, messages)
        sent += oneWayBatch
      }
    }
    while (sent % every !== 0 || performance.now() < deadline) {
      yield* channel.send(payload)
      sent++
    }
    yield* channel.send(END)
    const reply = yield* channel.receive
    const elapsed = (performance.now() - start) / 1000
    const counts = decodeCounts(reply)
    return { sent, received: counts.messages, bytes: counts.bytes, seconds: elapsed, batches: counts.batches }
  })

interface EchoAndSink {
  readonly echo: IpcChannel.IpcChannel
  readonly sink: IpcChannel.IpcChannel
}

/** Opens channels in a scope of their own, closed by the contender's `close`. */
export const openChannels = async (
  row: Row,
  open: Effect.Effect<EchoAndSink, IpcError.IpcError | Error, Scope.Scope>
): Promise<Contender> => {
  const payload = makePayload(row.size)
  const scope = Scope.makeUnsafe()
  const channels = await Effect.runPromise(Scope.provide(scope)(open)).catch(async (error: unknown) => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw error
  })
  return {
    row,
    countBytes: true,
    pingPong: (n, warmup) => Effect.runPromise(channelPingPong(channels.echo, payload, n, warmup)),
    oneWay: (seconds) => Effect.runPromise(channelOneWay(channels.sink, payload, seconds)),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** Effect-ipc channels over Unix sockets to the `ipc-echo` and `ipc-sink` peers. */
export const openUnix = (row: Row, echoAddress: string, sinkAddress: string): Promise<Contender> => {
  const transport = UnixSocket.make()
  return openChannels(row, Effect.all({ echo: transport.dial(echoAddress), sink: transport.dial(sinkAddress) }))
}

/** Effect-ipc channels over FIFO pairs to the `fifo-echo` and `fifo-sink` peers, dialled with `Pipe.make()`. */
export const openFifo = (row: Row, echoAddress: string, sinkAddress: string): Promise<Contender> => {
  const transport = Pipe.make()
  return openChannels(row, Effect.all({ echo: transport.dial(echoAddress), sink: transport.dial(sinkAddress) }))
}

/**
 * Effect-ipc channels over child-process pipes (fd 3 socket pairs): spawns
 * `command` twice, with `args` and then `child-echo` or `child-sink`; the
 * children end with the contender's scope.
 */
export const openChild = (row: Row, command: string, args: ReadonlyArray<string>): Promise<Contender> => {
  const spawn = (mode: "child-echo" | "child-sink") =>
    Effect.map(Pipe.ChildPipe.spawn(command, { args: [...args, mode] }), (child) => child.channel)
  return openChannels(row, Effect.all({ echo: spawn("child-echo"), sink: spawn("child-sink") }, { concurrency: 2 }))
}

let memoryNames = 0

/** Effect-ipc channels over `memory://`, with the echo and sink fibers in this process. */
export const openMemory = (row: Row): Promise<Contender> => {
  const transport = Memory.make()
  const base = `memory://effect-ipc-bench-${process.pid}-${memoryNames++}`
  const serve = (
    address: string,
    handler: (channel: IpcChannel.IpcChannel) => Effect.Effect<void, IpcError.IpcError>
  ) =>
    Effect.gen(function*() {
      const listener = yield* transport.listen(address)
      const client = yield* transport.dial(address)
      const server = yield* listener.accept
      yield* Effect.forkScoped(handler(server))
      return client
    })
  return openChannels(row, Effect.all({ echo: serve(`${base}-echo`, echo), sink: serve(`${base}-sink`, sink) }))
}

// ---- typed RPC ------------------------------------------------------------------------

/** Sequential calls; the samples are in ms. */
const callRtt = <E>(call: Effect.Effect<unknown, E>, n: number, warmup: number): Effect.Effect<Float64Array, E> =>
  Effect.gen(function*() {
    for (let i = 0; i < warmup; i++) yield* call
    const samples = new Float64Array(n)
    for (let i = 0; i < n; i++) {
      const t0 = performance.now()
      yield* call
      samples[i] = performance.now() - t0
    }
    return samples
  })

/** `concurrency` callers, each calling in a loop for `seconds`. */
const callThroughput = <E>(
  call: Effect.Effect<unknown, E>,
  concurrency: number,
  seconds: number,
  size: number
): Effect.Effect<OneWayRun, E> =>
  Effect.gen(function*() {
    let calls = 0
    const start = performance.now()
    const deadline = start + seconds * 1000
    yield* Effect.forEach(
      Array.from({ length: concurrency }, (_, i) => i),
      () =>
        Effect.gen(function*() {
          while (performance.now() < deadline) {
            yield* call
            calls++
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
    return { sent: calls, received: calls, bytes: calls * size, seconds: (performance.now() - start) / 1000 }
  })

/** RPC `Echo` of a payload of the row's size (or `Add` of two numbers), with `concurrency` callers for calls/s. */
export const rpcContender = (
  row: Row,
  client: DemoClient,
  procedure: "Echo" | "Add",
  concurrency: number
): Contender => {
  const size = row.size
  const data = makePayload(size)
  const call: Effect.Effect<void, unknown> = procedure === "Echo"
    ? Effect.flatMap(client.Echo({ data }), (back) =>
      back.byteLength === size
        ? Effect.void
        : Effect.sync(() => void row.warnings.push(`an echo came back with ${back.byteLength} bytes`)))
    : Effect.flatMap(
      client.Add({ a: 20, b: 22 }),
      (sum) => sum === 42 ? Effect.void : Effect.sync(() => void row.warnings.push(`Add answered ${sum}`))
    )
  return {
    row,
    countBytes: procedure === "Echo",
    pingPong: (n, warmup) => Effect.runPromise(callRtt(call, n, warmup)),
    oneWay: (seconds) => Effect.runPromise(callThroughput(call, concurrency, seconds, size)),
    close: () => Promise.resolve()
  }
}

/**
 * `spawnReady` as a scoped resource: a process given up on before it was
 * ready is killed; the scope's end stops it (`ReadyProcess.stop`).
 */
export const readyProcess = (
  command: string,
  args: ReadonlyArray<string>,
  what: string,
  options?: StopOptions
): Effect.Effect<ReadyProcess, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<ReadyProcess, Error>((resume) => {
      const { child, ready } = spawnReady(command, args, what, options)
      void ready.then(
        (started) => resume(Effect.succeed(started)),
        (error: unknown) => resume(Effect.fail(error instanceof Error ? error : new Error(String(error))))
      )
      return Effect.sync(() => child.kill("SIGKILL"))
    }),
    (started) => Effect.promise(started.stop),
    // the wait for its ready line can be given up on (the child is killed then); once ready, it is stopped
    { interruptible: true }
  )

/**
 * Starts `node <script> peer ...args` (with our node flags) and waits for its
 * READY line; the scope's end closes its stdin, which ends it (SIGKILL after 5 s).
 */
export const startScriptPeer = (
  script: string,
  args: ReadonlyArray<string>,
  label: string
): Effect.Effect<void, Error, Scope.Scope> =>
  Effect.asVoid(readyProcess(...nodeScript(script, ["peer", ...args]), label, { graceMs: 5000 }))
