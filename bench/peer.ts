/**
 * The benchmark's peer process: `peer.ts <mode> <address>`. It listens at
 * `address` (a socket path for the `raw-*` and `rpc-effect-*` modes, a
 * `unix://` address for `ipc-*` and `rpc-ipc-*`, a `fifo://` one for
 * `fifo-*`), prints `ready` on stdout,
 * serves every connection, and exits when its stdin closes (so that a
 * `--cpu-prof` profile gets written).
 *
 * - `raw-echo` / `raw-sink`: plain `node:net` with the baseline's framing
 *   (effect is not even loaded);
 * - `raw-fiber-echo` / `raw-fiber-sink`: the same, served from effect fibers
 *   (see `raw-fiber.ts`);
 * - `ipc-echo` / `ipc-sink` / `fifo-echo` / `fifo-sink`: see `peer-ipc.ts`;
 * - `rpc-<stack>`: the DemoApi served by one RPC stack, see `rpc.ts`;
 * - `child-echo` / `child-sink` (`peer.ts <mode>`, no address): spawned by the
 *   driver with `ChildPipe.spawn`; they serve the parent on the channel it
 *   gave them (fd 3), print nothing, leave stdin alone (it is the driver's),
 *   and exit when that channel closes or on SIGTERM.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import {
  type ChildPeerMode,
  isChildPeerMode,
  isPeerMode,
  type PeerMode,
  rawFrame,
  RawReader,
  READY,
  SinkCounter,
  stackOfPeerMode
} from "./shared.ts"

const ready = (): void => {
  process.stdout.write(`${READY}\n`)
}

const serveRaw = (mode: "raw-echo" | "raw-sink", path: string): void => {
  Fs.rmSync(path, { force: true })
  const server = Net.createServer((socket) => {
    const reader = new RawReader()
    const counter = new SinkCounter()
    const onMessage = mode === "raw-echo"
      ? (message: Buffer) => {
        socket.write(rawFrame(message))
      }
      : (message: Buffer) => {
        const report = counter.count(message.byteLength)
        if (report !== undefined) socket.write(rawFrame(report))
      }
    socket.on("data", (chunk: Buffer) => {
      counter.batch()
      reader.push(chunk, onMessage)
    })
    socket.on("error", () => socket.destroy())
  })
  server.listen({ path }, ready)
  process.on("exit", () => Fs.rmSync(path, { force: true }))
}

const run = async (mode: Exclude<PeerMode, ChildPeerMode>, address: string): Promise<void> => {
  const stack = stackOfPeerMode(mode)
  if (stack !== undefined) {
    const { serveStack } = await import("./rpc.ts")
    return serveStack(stack, address, ready)
  }
  switch (mode) {
    case "raw-echo":
    case "raw-sink":
      return serveRaw(mode, address)
    case "raw-fiber-echo":
    case "raw-fiber-sink": {
      const { serve } = await import("./raw-fiber.ts")
      return serve(mode, address, ready)
    }
    case "ipc-echo":
    case "ipc-sink":
    case "fifo-echo":
    case "fifo-sink": {
      const { serve } = await import("./peer-ipc.ts")
      return serve(mode, address, ready)
    }
  }
}

/** A child peer: serves its parent, then exits (quietly, unless serving failed). */
const runChild = async (mode: ChildPeerMode): Promise<void> => {
  // the parent's scope ends us with SIGTERM; exit normally so that a `--cpu-prof` profile gets written
  process.once("SIGTERM", () => process.exit(0))
  const { serveParent } = await import("./peer-ipc.ts")
  await serveParent(mode)
  process.exit(0)
}

const [mode, address] = process.argv.slice(2)
if (!isPeerMode(mode) || (address === undefined && !isChildPeerMode(mode))) {
  console.error(
    `usage: peer.ts <${["raw", "ipc", "fifo"].map((k) => `${k}-echo|${k}-sink`).join("|")}|rpc-<stack>> <address>`
  )
  console.error("       peer.ts <child-echo|child-sink> (spawned with ChildPipe.spawn)")
  process.exit(2)
}
const failed = (error: unknown): void => {
  console.error(`peer ${mode} failed:`, error)
  process.exit(1)
}
if (isChildPeerMode(mode)) {
  void runChild(mode).catch(failed)
} else {
  // the driver ends us by closing our stdin
  process.stdin.on("end", () => process.exit(0))
  process.stdin.resume()
  void run(mode, address!).catch(failed)
}
