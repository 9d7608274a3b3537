/**
 * The benchmark's peer process: `peer.ts <mode> <address>`. It listens at
 * `address` (a socket path for the `raw-*` modes, a `unix://` address for the
 * others), prints `ready` on stdout, serves every connection, and exits when
 * its stdin closes (so that a `--cpu-prof` profile gets written).
 *
 * - `raw-echo` / `raw-sink`: plain `node:net` with the baseline's framing
 *   (effect is not even loaded);
 * - `ipc-echo` / `ipc-sink` / `rpc`: see `peer-ipc.ts`.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import { encodeCounts, isPeerMode, type PeerMode, rawFrame, RawReader, READY } from "./shared.ts"

const ready = (): void => {
  process.stdout.write(`${READY}\n`)
}

const serveRaw = (mode: "raw-echo" | "raw-sink", path: string): void => {
  Fs.rmSync(path, { force: true })
  const server = Net.createServer((socket) => {
    const reader = new RawReader()
    let messages = 0
    let bytes = 0
    let batches = 0
    const onMessage = mode === "raw-echo"
      ? (message: Buffer) => {
        socket.write(rawFrame(message))
      }
      : (message: Buffer) => {
        if (message.byteLength === 0) {
          socket.write(rawFrame(encodeCounts({ messages, bytes, batches })))
          messages = 0
          bytes = 0
          batches = 0
        } else {
          messages++
          bytes += message.byteLength
        }
      }
    socket.on("data", (chunk: Buffer) => {
      batches++
      reader.push(chunk, onMessage)
    })
    socket.on("error", () => socket.destroy())
  })
  server.listen({ path }, ready)
  process.on("exit", () => Fs.rmSync(path, { force: true }))
}

const run = async (mode: PeerMode, address: string): Promise<void> => {
  switch (mode) {
    case "raw-echo":
    case "raw-sink":
      return serveRaw(mode, address)
    case "ipc-echo":
    case "ipc-sink":
    case "rpc": {
      const { serve } = await import("./peer-ipc.ts")
      return serve(mode, address, ready)
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
void run(mode, address).catch((error: unknown) => {
  console.error(`peer ${mode} failed:`, error)
  process.exit(1)
})
