/**
 * Unix domain socket transport, secure by default: `unix:///absolute/path.sock`,
 * Linux abstract sockets `unix:@name`, and the portable `pipe://name` (a
 * socket in this user's private runtime directory; a named pipe on Windows).
 *
 * - The socket file is bound inside a fresh 0700 directory, given its mode
 *   (0600 by default) and only then linked to its public path, so there is no
 *   moment at which another user could connect. Linking is exclusive: two
 *   servers racing for one path cannot both win.
 * - A stale socket file (its server is dead: connecting is refused) is
 *   replaced; a live server's socket is never taken (`AddressInUse`).
 * - Every connection's peer credentials (pid, uid, gid) are read with
 *   SO_PEERCRED / getpeereid and put on the channel. By default a peer running
 *   as another user is refused; `authorize` decides otherwise.
 * - Messages travel in the effect-ipc frame format (see the README).
 *
 * @since 0.1.0
 */
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Policy from "@effect-ipc/core/Policy"
import * as StreamChannel from "@effect-ipc/core/StreamChannel"
import * as Transport from "@effect-ipc/core/Transport"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Libc from "./internal/libc.ts"
import * as SocketPath from "./SocketPath.ts"

/** Options of the Unix socket transport. */
export interface UnixSocketOptions extends StreamChannel.StreamChannelOptions {
  /** Permission bits of the socket file (default 0o600: this user only). */
  readonly mode?: number | undefined
  /**
   * Decides whether a connecting peer is served (default: only peers running
   * as this process's user). A refused peer's connection is closed at once.
   */
  readonly authorize?: ((peer: IpcChannel.PeerInfo) => boolean) | undefined
}

/** Longest socket path the platform accepts, in bytes (without the final NUL). */
export const maxPathBytes: number = SocketPath.maxPathBytes

const sameUser = (peer: IpcChannel.PeerInfo): boolean => peer.uid === process.getuid?.()

const fdOf = (socket: Net.Socket): number | undefined => {
  const handle: unknown = Reflect.get(socket, "_handle")
  if (typeof handle === "object" && handle !== null && "fd" in handle) {
    const fd = handle.fd
    if (typeof fd === "number" && fd >= 0) return fd
  }
  return undefined
}

/** The peer of a connected socket, as far as the OS tells. */
const peerOf = (socket: Net.Socket, raw: string): Effect.Effect<IpcChannel.PeerInfo> => {
  const fd = fdOf(socket)
  if (fd === undefined || process.platform === "win32") return Effect.succeed({ description: raw })
  return Libc.peerCredentials(fd, raw).pipe(
    Effect.map((cred): IpcChannel.PeerInfo => ({ pid: cred.pid, uid: cred.uid, gid: cred.gid, description: raw })),
    Effect.catch((error) =>
      Effect.as(Effect.logWarning("cannot read peer credentials", error), { description: raw } as IpcChannel.PeerInfo)
    )
  )
}

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

/** Connects, retrying briefly while the server's accept backlog is full (EAGAIN). */
const connectRetrying = (path: string, raw: string): Effect.Effect<Net.Socket, IpcError.IpcError> =>
  connect(path, raw).pipe(
    Effect.retry({ schedule: Policy.retry(8), while: (error) => error.errno === "EAGAIN" })
  )

/** True when something accepts connections at `path`; false when the socket file is stale. */
const isLive = (path: string, raw: string): Effect.Effect<boolean> =>
  connect(path, raw).pipe(
    Effect.map((socket) => {
      socket.destroy()
      return true
    }),
    Effect.catch((error) => Effect.succeed(error.reason !== "NotFound"))
  )

const listenAt = (server: Net.Server, path: string, raw: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.callback<void, IpcError.IpcError>((resume) => {
    const onError = (cause: Error) => resume(Effect.fail(IpcError.fromSystemError(cause, "Open", "cannot listen", raw)))
    server.once("error", onError)
    server.listen({ path, backlog: 4096 }, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })

const trySync = <A>(f: () => A, reason: IpcError.IpcErrorReason, detail: string, raw: string) =>
  Effect.try({ try: f, catch: (cause) => IpcError.fromSystemError(cause, reason, detail, raw) })

/**
 * Binds a socket file at `path` with `mode`, with no window in which other
 * users could connect: bind in a private directory, chmod, link into place.
 * Returns the inode of the socket (to remove only our own file later).
 */
const bindFile = (
  server: Net.Server,
  path: string,
  mode: number,
  raw: string
): Effect.Effect<number, IpcError.IpcError> =>
  Effect.gen(function*() {
    const dir = yield* trySync(
      () => Fs.mkdtempSync(Path.join(Path.dirname(path), ".eipc-")),
      "Open",
      "cannot bind",
      raw
    )
    const staging = Path.join(dir, "s")
    return yield* Effect.gen(function*() {
      yield* listenAt(server, staging, raw)
      yield* trySync(() => Fs.chmodSync(staging, mode), "Open", "cannot set the socket's mode", raw)
      for (let attempt = 0; attempt < 3; attempt++) {
        const linked = yield* trySync(() => Fs.linkSync(staging, path), "Open", "cannot bind", raw).pipe(
          Effect.as(true),
          Effect.catch((error) => error.reason === "AlreadyExists" ? Effect.succeed(false) : Effect.fail(error))
        )
        if (linked) return Fs.statSync(path).ino
        if (yield* isLive(path, raw)) {
          return yield* IpcError.make("AddressInUse", "a live server is listening on this socket", raw)
        }
        // a dead server's file: replace it
        yield* trySync(() => Fs.rmSync(path, { force: true }), "Open", "cannot remove the stale socket", raw)
      }
      return yield* IpcError.make("AddressInUse", "another server keeps taking this path", raw)
    }).pipe(Effect.ensuring(Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))))
  })

/** Makes the Unix socket transport (`unix://`, `pipe://`). */
export const make = (options: UnixSocketOptions = {}): Transport.TransportShape => {
  const mode = options.mode ?? 0o600
  const authorize = options.authorize ?? sameUser
  return {
    schemes: ["unix", "pipe"],
    listen: (raw) =>
      Effect.gen(function*() {
        const { path, kind } = yield* SocketPath.resolve(raw)
        const server = Net.createServer({ pauseOnConnect: true })
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
        const accept = (socket: Net.Socket) =>
          Effect.gen(function*() {
            socket.on("error", () => {}) // reported through the channel once it exists
            const peer = yield* peerOf(socket, raw)
            if (kind !== "windows-pipe" && !authorize(peer)) {
              socket.destroy()
              return yield* Effect.logWarning(
                IpcError.make("PeerRejected", `refused a peer running as uid ${peer.uid} (pid ${peer.pid})`, raw)
              )
            }
            const channel = yield* StreamChannel.make({ readable: socket, writable: socket }, raw, peer, options)
            socket.resume()
            open.add(channel)
            acceptor.offer(channel)
            yield* channel.closed
            open.delete(channel)
          })
        server.on("connection", (socket) => void Effect.runFork(accept(socket)))
        if (kind === "file") inode = yield* bindFile(server, path, mode, raw)
        else yield* listenAt(server, path, raw)
        return acceptor.listener
      }),
    dial: (raw) =>
      Effect.gen(function*() {
        const { path } = yield* SocketPath.resolve(raw)
        const socket = yield* connectRetrying(path, raw)
        const peer = yield* peerOf(socket, raw)
        return yield* StreamChannel.makeScoped({ readable: socket, writable: socket }, raw, peer, options)
      })
  }
}

/** The Unix socket transport as the `Transport` service. */
export const layer = (options?: UnixSocketOptions): Layer.Layer<Transport.Transport> =>
  Layer.succeed(Transport.Transport, make(options))
