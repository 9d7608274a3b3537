/**
 * What one RPC message costs from the RPC layer's `write` to the socket's
 * `write` call, in this process: effect's `Socket` writer over a Unix socket,
 * one message at a time, the first of its event-loop turn (as a reply or a
 * lone call is). Compared, over one connected pair of sockets each:
 *
 * - `effect NodeSocket, text`: effect's own socket writing an NDJSON line as
 *   it is given (a string: Node encodes it in the write itself, no framing);
 * - `IpcRpc unix://, bytes`: `IpcRpc.toSocket` over a dialled `unix://`
 *   channel, given the same message as bytes (as SchemaBinary and packed
 *   give theirs);
 * - `IpcRpc unix://, text`: the same given text (JSON), which the channel
 *   encodes straight into its write batch.
 *
 * The time is from the writer's `write` to `net.Socket.prototype.write`
 * being entered, so the system call itself is not in it. Modes alternate
 * message by message; the report is each mode's median and 10th percentile.
 * See README.md, "Where a 64 B RPC round trip goes".
 *
 *   bash scripts/node.sh bench/send-path.ts [--messages=60000] [--size=150]
 */
import { type IpcChannel, type IpcError, IpcRpc, Transport } from "@effect-ipc/core"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Socket from "effect/socket/Socket"
import * as Net from "node:net"
import * as Path from "node:path"
import { argValue, makeTempDir, removeTempDir } from "./shared.ts"

const messages = Number(argValue("messages") ?? "60000")
const size = Number(argValue("size") ?? "150")
const text = JSON.stringify({ _tag: "Request", id: "1", tag: "Echo", payload: "x".repeat(Math.max(0, size - 60)) })
const bytes = Buffer.from(text, "utf8")

// when the current message reached the socket's `write`
let reached = 0
const write = Net.Socket.prototype.write
Net.Socket.prototype.write = function(this: Net.Socket, ...args: Parameters<typeof write>) {
  reached = performance.now()
  return write.apply(this, args)
} as typeof write

/** The `q` quantile of `values` (ms), in µs. */
const quantile = (values: ReadonlyArray<number>, q: number): number =>
  values.toSorted((a, b) => a - b)[Math.floor(values.length * q)]! * 1000

const nextTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

const main = Effect.gen(function*() {
  const dir = makeTempDir("effect-ipc-send-path-")
  yield* Effect.addFinalizer(() => Effect.sync(() => removeTempDir(dir)))

  // effect's socket to a plain server that reads and drops
  const sink = Net.createServer((socket) => socket.resume())
  const sinkPath = Path.join(dir, "sink.sock")
  yield* Effect.promise(() => new Promise<void>((resolve) => sink.listen(sinkPath, resolve)))
  yield* Effect.addFinalizer(() => Effect.sync(() => sink.close()))
  const effectSocket = yield* NodeSocket.makeNet({ path: sinkPath })

  // ours: a dialled unix:// channel (as a client gets it), its peer reading and dropping
  const transport = yield* Transport.Transport
  const address = `unix://${Path.join(dir, "ipc.sock")}`
  const listener = yield* transport.listen(address)
  yield* Effect.forkScoped(Transport.serve(listener, (channel) => Effect.forever(channel.receive)))
  const dial: Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope> = transport.dial(address)
  const ipcSocket = IpcRpc.toSocket(dial)

  const writers: Array<[string, Socket.Socket, Uint8Array | string]> = [
    ["effect NodeSocket, text", effectSocket, text],
    ["IpcRpc unix://, bytes", ipcSocket, bytes],
    ["IpcRpc unix://, text", ipcSocket, text]
  ]
  const started: Array<(chunk: Uint8Array | string) => Effect.Effect<void, Socket.SocketError>> = []
  for (const [, socket] of writers) {
    // acquiring the reader connects (its messages are not read: the peers send none)
    yield* socket.reader
    started.push((yield* socket.writer).write)
  }
  const samples = writers.map((): Array<number> => [])
  for (let i = 0; i < messages + 3000; i++) {
    const at = i % writers.length
    yield* nextTurn
    reached = Number.NaN
    const start = performance.now()
    yield* started[at]!(writers[at]![2])
    // a write that did not reach the socket in this turn (none should) is not a sample
    if (i >= 3000 && !Number.isNaN(reached)) samples[at]!.push(reached - start)
  }
  console.log(`| ${text.length} B message, µs from the writer's write to the socket's write | median | p10 |`)
  console.log("| --- | ---: | ---: |")
  writers.forEach(([name], at) =>
    console.log(`| ${name} | ${quantile(samples[at]!, 0.5).toFixed(2)} | ${quantile(samples[at]!, 0.1).toFixed(2)} |`)
  )
})

Effect.runPromise(main.pipe(Effect.scoped, Effect.provide(UnixSocket.layer()))).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
