/**
 * Unix domain socket transport: `unix:///absolute/path.sock` and, on Linux,
 * abstract sockets `unix:@name`. Messages travel in the effect-ipc frame
 * format (see `@effect-ipc/core/Framing` and this package's README).
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as StreamChannel from "@effect-ipc/core/StreamChannel"
import * as Transport from "@effect-ipc/core/Transport"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Net from "node:net"

/** Options of the Unix socket transport. */
export interface UnixSocketOptions extends StreamChannel.StreamChannelOptions {}

/** Longest socket path the platform accepts, in bytes (without the final NUL). */
export const maxPathBytes: number = process.platform === "linux" ? 107 : 103

/** Where a `unix:` address points: a file-system path or a Linux abstract name. */
export interface SocketPath {
  /** The path handed to the OS (`\0name` for an abstract socket). */
  readonly path: string
  /** True for a Linux abstract socket (no file). */
  readonly abstract: boolean
}

/** Reads a `unix:` address: `unix:///abs/path` or `unix:@name`, checking the platform's length limit. */
export const socketPath = (raw: string): Effect.Effect<SocketPath, IpcError.IpcError> =>
  Effect.gen(function*() {
    const address = yield* Address.parseFor(raw, ["unix"])
    if (address.rest.startsWith("@")) {
      if (process.platform !== "linux") {
        return yield* IpcError.make("UnsupportedPlatform", "abstract sockets (unix:@name) exist only on Linux", raw)
      }
      const path = `\0${address.rest.slice(1)}`
      yield* checkLength(path, raw)
      return { path, abstract: true }
    }
    const path = yield* Address.path(address)
    yield* checkLength(path, raw)
    return { path, abstract: false }
  })

const checkLength = (path: string, raw: string) =>
  Buffer.byteLength(path) > maxPathBytes
    ? Effect.fail(
      IpcError.make(
        "NameTooLong",
        `socket path is ${Buffer.byteLength(path)} bytes; ${process.platform} allows at most ${maxPathBytes}`,
        raw
      )
    )
    : Effect.void

const connect = (path: string, raw: string): Effect.Effect<Net.Socket, IpcError.IpcError> =>
  Effect.callback<Net.Socket, IpcError.IpcError>((resume) => {
    const socket = Net.createConnection({ path })
    const onError = (cause: Error) => {
      socket.destroy()
      resume(Effect.fail(IpcError.fromSystemError(cause, "Open", "cannot connect", raw)))
    }
    socket.once("error", onError)
    socket.once("connect", () => {
      socket.off("error", onError)
      resume(Effect.succeed(socket))
    })
    return Effect.sync(() => socket.destroy())
  })

/** True when something accepts connections at `path`; false when the socket file is stale. */
const isLive = (path: string, raw: string): Effect.Effect<boolean> =>
  connect(path, raw).pipe(
    Effect.map((socket) => {
      socket.destroy()
      return true
    }),
    Effect.catch((error) => Effect.succeed(error.reason !== "NotFound"))
  )

const bind = (server: Net.Server, path: string, raw: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.callback<void, IpcError.IpcError>((resume) => {
    const onError = (cause: Error) => resume(Effect.fail(IpcError.fromSystemError(cause, "Open", "cannot listen", raw)))
    server.once("error", onError)
    server.listen({ path }, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })

/** Makes the Unix socket transport. */
export const make = (options: UnixSocketOptions = {}): Transport.TransportShape => ({
  schemes: ["unix"],
  listen: (raw) =>
    Effect.gen(function*() {
      const { path, abstract } = yield* socketPath(raw)
      const server = Net.createServer()
      const acceptor = yield* Transport.makeAcceptor(raw)
      const open = new Set<IpcChannel.IpcChannel>()
      let inode: number | undefined
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          server.close()
          acceptor.end()
          yield* Effect.forEach(open, (channel) => channel.close, { concurrency: "unbounded", discard: true })
          // remove our socket file, and only ours (a successor may have replaced it)
          if (inode !== undefined) {
            try {
              if (Fs.statSync(path).ino === inode) Fs.unlinkSync(path)
            } catch {
              // already gone
            }
          }
        })
      )
      server.on("connection", (socket) => {
        void Effect.runFork(
          StreamChannel.make({ readable: socket, writable: socket }, raw, { description: raw }, options).pipe(
            Effect.tap((channel) =>
              Effect.sync(() => {
                open.add(channel)
                acceptor.offer(channel)
              })
            ),
            Effect.flatMap((channel) => Effect.andThen(channel.closed, Effect.sync(() => open.delete(channel))))
          )
        )
      })
      yield* bind(server, path, raw).pipe(
        Effect.catch((error) =>
          Effect.gen(function*() {
            if (error.reason !== "AddressInUse" || abstract) return yield* error
            // a socket file is there: steal it only from a dead server
            if (yield* isLive(path, raw)) {
              return yield* IpcError.make("AddressInUse", "a live server is listening on this socket", raw)
            }
            yield* Effect.sync(() => Fs.rmSync(path, { force: true }))
            yield* bind(server, path, raw)
          })
        )
      )
      if (!abstract) inode = Fs.statSync(path).ino
      return acceptor.listener
    }),
  dial: (raw) =>
    Effect.gen(function*() {
      const { path } = yield* socketPath(raw)
      const socket = yield* connect(path, raw)
      return yield* StreamChannel.makeScoped({ readable: socket, writable: socket }, raw, { description: raw }, options)
    })
})

/** The Unix socket transport as the `Transport` service. */
export const layer = (options?: UnixSocketOptions): Layer.Layer<Transport.Transport> =>
  Layer.succeed(Transport.Transport, make(options))
