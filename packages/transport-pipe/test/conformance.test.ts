import * as Framing from "@effect-ipc/core/Framing"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Conformance from "@effect-ipc/core/testing/Conformance"
import * as Pipe from "@effect-ipc/transport-pipe"
import { afterAll } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-conf-"))
afterAll(() => {
  Fs.rmSync(dir, { recursive: true, force: true })
  // peers killed with SIGKILL leave their pipe:// socket files behind (a listener replaces such
  // stale files); sweep this run's from the runtime directory
  const runtime = Effect.runSync(Pipe.SocketPath.runtimeDir())
  for (const file of Fs.readdirSync(runtime)) {
    if (file.startsWith(`conformance-${process.pid}-`)) Fs.rmSync(Path.join(runtime, file), { force: true })
  }
})
let n = 0
const peer = { module: "@effect-ipc/transport-pipe", export: "descriptor" }

const rawConnect = (address: string) =>
  Effect.acquireRelease(
    Effect.callback<Net.Socket, IpcError.IpcError>((resume) => {
      const socket = Net.createConnection({ path: new URL(address).pathname })
      socket.once("connect", () => resume(Effect.succeed(socket)))
      socket.once("error", (cause) => resume(Effect.fail(IpcError.fromSystemError(cause, "Open", "raw connect"))))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  ).pipe(
    Effect.map((socket): Conformance.RawConnection => {
      socket.on("error", () => {})
      socket.resume()
      return {
        write: (bytes) => Effect.sync(() => void socket.write(bytes)),
        dropped: Effect.callback<void>((resume) => {
          if (socket.closed) return resume(Effect.void)
          socket.once("close", () => resume(Effect.void))
        })
      }
    })
  )

const existing = (...paths: ReadonlyArray<string>) => paths.filter((path) => Fs.existsSync(path))

Conformance.suite({
  name: "unix://",
  descriptor: Pipe.descriptor,
  peer,
  address: () => `unix://${dir}/s${n++}.sock`,
  raw: rawConnect,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  residue: (address) => existing(new URL(address).pathname)
})

Conformance.suite({
  name: "pipe://",
  descriptor: Pipe.descriptor,
  peer,
  address: () => `pipe://conformance-${process.pid}-${n++}`,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  residue: (address) => existing(Effect.runSync(Pipe.SocketPath.resolve(address)).path)
})

Conformance.suite({
  name: "fifo://",
  descriptor: Pipe.descriptor,
  peer,
  address: () => `fifo://${dir}/f${n++}`,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  singlePeer: true,
  residue: (address) => {
    const base = new URL(address).pathname
    return existing(`${base}.in`, `${base}.out`, `${base}.lock`, `${base}.lock.server`)
  }
})

Conformance.suite({
  name: "child-process pipes",
  descriptor: Pipe.descriptor,
  peer: { ...peer, via: "child" },
  inProcess: false,
  address: () => "child:parent",
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE
})
