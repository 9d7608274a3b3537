/**
 * The benchmark's peer process: `peer.ts <mode> <address>`. It listens at
 * `address` (a socket path for the `raw-*` modes, a `unix://` address for the
 * others), prints `ready` on stdout, serves every connection, and exits when
 * its stdin closes (so a `--cpu-prof` profile is written).
 *
 * - `raw-echo` / `raw-sink`: plain `node:net` with the baseline's framing.
 * - `ipc-echo` / `ipc-sink`: effect-ipc channels over `UnixSocket.make()`.
 * - `rpc`: the DemoApi served with `IpcRpc` over Unix sockets.
 */
import { IpcRpc, Transport } from "@effect-ipc/core"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import { DemoApi, DemoHandlers } from "effect-ipc/DemoApi"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Fs from "node:fs"
import * as Net from "node:net"
import { echo, encodeCounts, isPeerMode, type PeerMode, rawFrame, RawReader, READY, sink } from "./shared.ts"

const ready = (): void => {
  process.stdout.write(`${READY}\n`)
}

const serveRaw = (mode: "raw-echo" | "raw-sink", path: string): void => {
  Fs.rmSync(path, { force: true })
  const server = Net.createServer((socket) => {
    const reader = new RawReader()
    let messages = 0
    let bytes = 0
    const onMessage = mode === "raw-echo"
      ? (message: Buffer) => {
        socket.write(rawFrame(message))
      }
      : (message: Buffer) => {
        if (message.byteLength === 0) {
          socket.write(rawFrame(encodeCounts({ messages, bytes })))
          messages = 0
          bytes = 0
        } else {
          messages++
          bytes += message.byteLength
        }
      }
    socket.on("data", (chunk: Buffer) => reader.push(chunk, onMessage))
    socket.on("error", () => socket.destroy())
  })
  server.listen({ path }, ready)
  process.on("exit", () => Fs.rmSync(path, { force: true }))
}

const serveIpc = (mode: "ipc-echo" | "ipc-sink", address: string): Effect.Effect<void, unknown> =>
  Effect.gen(function*() {
    const listener = yield* UnixSocket.make().listen(address)
    ready()
    yield* Transport.serve(listener, mode === "ipc-echo" ? echo : sink)
  }).pipe(Effect.scoped)

const serveRpc = (address: string): Effect.Effect<void, unknown> =>
  Effect.gen(function*() {
    yield* Layer.build(
      RpcServer.layer(DemoApi).pipe(
        Layer.provide(DemoHandlers),
        Layer.provide(IpcRpc.layerServerProtocol(address)),
        Layer.provide(IpcRpc.layerSerialization),
        Layer.provide(UnixSocket.layer())
      )
    )
    ready()
    yield* Effect.never
  }).pipe(Effect.scoped)

const run = (mode: PeerMode, address: string): void => {
  switch (mode) {
    case "raw-echo":
    case "raw-sink":
      serveRaw(mode, address)
      return
    case "ipc-echo":
    case "ipc-sink":
    case "rpc": {
      const program = mode === "rpc" ? serveRpc(address) : serveIpc(mode, address)
      void Effect.runPromise(program).then(
        () => process.exit(0),
        (error: unknown) => {
          console.error(`peer ${mode} failed:`, error)
          process.exit(1)
        }
      )
      return
    }
  }
}

const [mode, address] = process.argv.slice(2)
if (!isPeerMode(mode) || address === undefined) {
  console.error("usage: peer.ts <raw-echo|raw-sink|ipc-echo|ipc-sink|rpc> <address>")
  process.exit(2)
}
// the driver ends us by closing our stdin
process.stdin.on("end", () => process.exit(0))
process.stdin.resume()
run(mode, address)
