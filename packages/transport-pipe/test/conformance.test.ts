import * as Framing from "@effect-ipc/core/Framing"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Conformance from "@effect-ipc/testing/Conformance"
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

/** A raw socket connection to a `unix://` or `pipe://` listener. */
const rawConnect = (address: string) =>
  Effect.acquireRelease(
    Effect.flatMap(Pipe.SocketPath.resolve(address), ({ path }) =>
      Effect.callback<Net.Socket, IpcError.IpcError>((resume) => {
        const socket = Net.createConnection({ path })
        socket.once("connect", () =>
          resume(Effect.succeed(socket)))
        socket.once("error", (cause) => resume(Effect.fail(IpcError.fromSystemError(cause, "Open", "raw connect"))))
      })),
    (socket) =>
      Effect.sync(() => socket.destroy())
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

/** Polls `check` every 20 ms until it holds (a guard of 10 s against a hang). */
const until = (check: () => boolean, what: string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 10_000
    while (!check()) {
      if (Date.now() > deadline) return yield* IpcError.make("Timeout", `timed out waiting: ${what}`)
      yield* Effect.sleep("20 millis")
    }
  })

/** Opens `path` non-blocking as a socket, destroyed with the scope. */
const openPipe = (path: string, readable: boolean) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const flags = (readable ? Fs.constants.O_RDONLY : Fs.constants.O_WRONLY) | Fs.constants.O_NONBLOCK
      const pipe = new Net.Socket({ fd: Fs.openSync(path, flags), readable, writable: !readable })
      pipe.on("error", () => {})
      if (readable) pipe.resume()
      return pipe
    }),
    (pipe) => Effect.sync(() => pipe.destroy())
  )

/**
 * A raw writer on a `fifo://` pair: claims the pair as a client does (renames
 * the ready token away, opens both FIFOs) and writes bytes straight into
 * `name.in`; the listener has dropped it when it offers the pair again (the
 * ready token is back).
 */
const rawFifo = (address: string) =>
  Effect.gen(function*() {
    const files = yield* Pipe.Fifo.paths(address)
    yield* until(() => Fs.existsSync(files.ready), "the FIFO pair is offered")
    Fs.renameSync(files.ready, `${files.ready}.raw`)
    Fs.rmSync(`${files.ready}.raw`)
    const toServer = yield* openPipe(files.toServer, false)
    yield* openPipe(files.toClient, true)
    // a client's hello first, as every conversation starts (bytes before one are an earlier client's, dropped)
    toServer.write(Framing.encode(Framing.Kind.ping))
    return {
      write: (bytes) => Effect.sync(() => void toServer.write(bytes)),
      dropped: Effect.orDie(until(() => Fs.existsSync(files.ready), "the pair is offered again"))
    } satisfies Conformance.RawConnection
  })

const existing = (...paths: ReadonlyArray<string>) => paths.filter((path) => Fs.existsSync(path))

Conformance.suite({
  name: "unix://",
  descriptor: Pipe.descriptor,
  scheme: "unix",
  peer,
  address: () => `unix://${dir}/s${n++}.sock`,
  raw: rawConnect,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  sendsBatches: true,
  residue: (address) => existing(new URL(address).pathname)
})

Conformance.suite({
  name: "pipe://",
  descriptor: Pipe.descriptor,
  scheme: "pipe",
  peer,
  address: () => `pipe://conformance-${process.pid}-${n++}`,
  raw: rawConnect,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  sendsBatches: true,
  residue: (address) => existing(Effect.runSync(Pipe.SocketPath.resolve(address)).path)
})

Conformance.suite({
  name: "fifo://",
  descriptor: Pipe.descriptor,
  scheme: "fifo",
  peer,
  address: () => `fifo://${dir}/f${n++}`,
  raw: rawFifo,
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  sendsBatches: true,
  residue: (address) => {
    const base = new URL(address).pathname
    return existing(`${base}.in`, `${base}.out`, `${base}.lock`, `${base}.lock.server`)
  }
})

Conformance.suite({
  name: "child-process pipes",
  descriptor: Pipe.descriptor,
  scheme: "child",
  peer,
  address: () => "child:parent",
  maxFrameSize: Framing.DEFAULT_MAX_FRAME_SIZE,
  sendsBatches: true
})
