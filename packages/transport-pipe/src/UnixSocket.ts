/**
 * Unix domain socket transport, secure by default: `unix:///absolute/path.sock`,
 * Linux abstract sockets `unix:@name`, and the portable `pipe://name` (a
 * socket in this user's private runtime directory; on Windows a named pipe,
 * served and dialled by `NamedPipe`, whose default `authorize` is `sameUser`).
 *
 * - The socket file is bound inside a fresh 0700 directory, given its mode
 *   (0600 by default) and only then linked to its public path, so there is no
 *   moment at which another user could connect. Linking is exclusive: two
 *   servers racing for one path cannot both win.
 * - Only a socket file proven stale (a socket, owned by this user, connecting
 *   is refused) is replaced. Anything else at the path (a regular file, a
 *   directory, a link, a FIFO, another user's socket, a live socket) is left
 *   untouched and `listen` fails with `AddressInUse` naming it.
 * - Both sides read the other's credentials (pid, uid, gid) with SO_PEERCRED /
 *   getpeereid and put them on the channel. `authorize` (default: the same
 *   user, or root) decides: the listener closes a refused client's
 *   connection; `dial` fails with `PeerRejected` before sending a byte.
 * - Messages travel in the effect-ipc frame format (see the README).
 *
 * @since 0.1.0
 */
import * as Framing from "@effect-ipc/core/Framing"
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Observability from "@effect-ipc/core/Observability"
import * as Policy from "@effect-ipc/core/Policy"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as StreamChannel from "@effect-ipc/core/StreamChannel"
import * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as DirFile from "./internal/dirFile.ts"
import * as Files from "./internal/files.ts"
import * as Libc from "./internal/libc.ts"
import * as PathLock from "./internal/pathLock.ts"
import * as ListenerDirs from "./ListenerDirs.ts"
import * as NamedPipe from "./NamedPipe.ts"
import * as SocketPath from "./SocketPath.ts"

/** Options of the Unix socket transport. */
export interface UnixSocketOptions extends StreamChannel.StreamChannelOptions {
  /** Permission bits of the socket file (default 0o600: this user only). */
  readonly mode?: number | undefined
  /**
   * Decides whether the process at the other end may be talked to, on both
   * sides (default `sameUserOrRoot`; on Windows `NamedPipe.sameUser`). A listener closes a refused client's
   * connection at once; `dial` fails with `PeerRejected` before sending anything.
   */
  readonly authorize?: ((peer: IpcChannel.PeerInfo) => boolean) | undefined
}

/** Longest socket path the platform accepts, in bytes (without the final NUL). */
export const maxPathBytes: number = SocketPath.maxPathBytes

/** A peer running as `uid` or as root (`uid` undefined: as root only); one whose credentials are unknown is refused. */
export const sameUserOrRootAs = (uid: number | undefined) => (peer: IpcChannel.PeerInfo): boolean =>
  peer.uid !== undefined && (peer.uid === uid || peer.uid === 0)

/**
 * A peer running as this process's (effective) user, or as root. The
 * transports' default `authorize` is this as of `listen` or `dial`: a process
 * that changes its effective user later keeps admitting the user it
 * listened or dialled as.
 */
export const sameUserOrRoot = (peer: IpcChannel.PeerInfo): boolean => sameUserOrRootAs(RuntimeDir.userId())(peer)

/**
 * `options.authorize`, else `sameUserOrRoot` as of now (see there): what a
 * `listen` or `dial` checks peers with. An `authorize` that throws refuses
 * the peer (it left a listener's `accept` waiting for ever).
 */
export const authorizerOf = (
  authorize: ((peer: IpcChannel.PeerInfo) => boolean) | undefined
): (peer: IpcChannel.PeerInfo) => boolean => {
  if (authorize === undefined) return sameUserOrRootAs(RuntimeDir.userId())
  return (peer) => {
    try {
      return authorize(peer) === true
    } catch {
      return false
    }
  }
}

const fdOf = (socket: Net.Socket): number | undefined => {
  const handle: unknown = Reflect.get(socket, "_handle")
  if (typeof handle === "object" && handle !== null && "fd" in handle) {
    const fd = handle.fd
    if (typeof fd === "number" && fd >= 0) return fd
  }
  return undefined
}

/** The credentials of the process at the other end of a connected socket. */
const credentialsOf = (socket: Net.Socket, raw: string): Effect.Effect<IpcChannel.PeerInfo, IpcError.IpcError> => {
  const fd = fdOf(socket)
  if (fd === undefined) {
    return Effect.fail(IpcError.make("PeerRejected", "the socket has no descriptor to read credentials from", raw))
  }
  return Effect.map(
    Libc.peerCredentials(fd, raw),
    (cred): IpcChannel.PeerInfo => ({ pid: cred.pid, uid: cred.uid, gid: cred.gid, description: raw })
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

const listenAt = (server: Net.Server, path: string, raw: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.callback<void, IpcError.IpcError>((resume) => {
    const onError = (cause: Error) => resume(Effect.fail(IpcError.fromSystemError(cause, "Open", "cannot listen", raw)))
    server.once("error", onError)
    // exclusive: in a cluster worker the socket is bound here, not by the primary (a `/proc/self/fd` path is ours)
    server.listen({ path, backlog: 4096, exclusive: true }, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })

const trySync = <A>(f: () => A, reason: IpcError.IpcErrorReason, detail: string, raw: string) =>
  Effect.try({ try: f, catch: (cause) => IpcError.fromSystemError(cause, reason, detail, raw) })

/** What to connect to for `file`: through its directory while that fits in a socket address, else the path. */
const dialable = (file: DirFile.DirFile): string => Buffer.byteLength(file.at) <= maxPathBytes ? file.at : file.path

/** What is at a socket path: nothing, or a socket proven stale (anything else fails). */
type Occupant = { readonly _tag: "Absent" } | { readonly _tag: "Stale"; readonly dev: number; readonly ino: number }

const inUse = (path: string, what: string, raw: string) =>
  IpcError.make("AddressInUse", `${path} is ${what}: left untouched`, raw)

/** What a look at a live effect-ipc server says as it leaves: goodbye, as a client that closes. */
const CHANNEL_GOODBYE = Framing.encode(Framing.Kind.close)

/**
 * Looks at `path` without touching it. Only a socket owned by this user whose
 * connections are refused is `Stale`; anything else present is `AddressInUse`
 * naming its kind and owner. The look at a live server (a connection) ends
 * with `goodbye` when given (for effect-ipc's listeners: they see a client
 * come and go, not a connection lost), else with nothing said.
 */
const inspect = (
  file: DirFile.DirFile,
  raw: string,
  goodbye?: Uint8Array
): Effect.Effect<Occupant, IpcError.IpcError> =>
  Effect.gen(function*() {
    const path = file.path
    const stat = yield* DirFile.trySyncAt(file, () => Files.lstatIfAny(file.at), "Open", `cannot look at ${path}`, raw)
    if (stat === undefined) return { _tag: "Absent" } as const
    if (!stat.isSocket() || stat.uid !== RuntimeDir.userId()) return yield* inUse(path, Files.describe(stat), raw)
    const probe = yield* Effect.result(connect(dialable(file), raw))
    if (probe._tag === "Success") {
      const socket = probe.success
      if (goodbye === undefined) {
        socket.destroy()
      } else {
        socket.on("error", () => socket.destroy())
        socket.resume()
        socket.end(goodbye)
        // a server that never answers is let go of after a second
        setTimeout(() => socket.destroy(), 1000).unref()
      }
      return yield* inUse(path, `a live server's socket, owned by uid ${stat.uid}`, raw)
    }
    if (probe.failure.errno === "ENOENT") return { _tag: "Absent" } as const
    if (probe.failure.errno !== "ECONNREFUSED") {
      return yield* inUse(path, `${Files.describe(stat)} that answers ${probe.failure.errno ?? "oddly"}`, raw)
    }
    return { _tag: "Stale", dev: stat.dev, ino: stat.ino } as const
  })

/** Hard-links `from` to `to`: true when linked, false when something is already at `to`. */
const linkExclusive = (from: string, to: DirFile.DirFile, raw: string) =>
  DirFile.trySyncAt(to, () => Fs.linkSync(from, to.at), "Open", "cannot bind", raw).pipe(
    Effect.as(true),
    Effect.catch((error) => error.reason._tag === "AlreadyExists" ? Effect.succeed(false) : Effect.fail(error))
  )

/**
 * Binds a socket file at `path` with `mode`, with no window in which other
 * users could connect: bind in a private directory, chmod, link into place.
 * A stale socket of ours is replaced under this user's lock for the path (see
 * `PathLock`), so that of many listeners racing to replace it exactly one wins. Returns the
 * identity of the socket file (to remove only our own file later).
 *
 * On Linux the socket is bound, given its mode and linked through a
 * descriptor of the staging directory (`/proc/self/fd/N/s`), checked to be
 * the 0700 directory of this user that was made: a user who may rename
 * entries beside `path` cannot put a directory or a link of theirs under the
 * bind, the chmod or the link (with a path, root's chmod followed their link
 * to any file). The descriptor stays open while the server listens: libuv
 * unlinks the bound path when the server closes, and that path must still
 * name our own directory then. The path itself is reached through `file`'s
 * directory (see `DirFile`).
 */
const bindFile = (
  server: Net.Server,
  file: DirFile.DirFile,
  mode: number,
  raw: string
): Effect.Effect<Files.FileIdentity, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const path = file.path
    const parent = Path.dirname(path)
    // the directory looked at first: a missing one (or a file) is named as the user gave it, not by the staging
    // directory `mkdtemp` would have made in it
    yield* Effect.try({
      try: () => void Fs.statSync(`${parent}/.`),
      // a file where the directory should be is a missing directory (ENOTDIR names no reason of its own)
      catch: (cause) =>
        IpcError.fromSystemError(cause, IpcError.errnoOf(cause) === "ENOTDIR" ? "NotFound" : "Open", "cannot bind", raw)
    })
    // refuse before creating anything next to what is there
    yield* inspect(file, raw, CHANNEL_GOODBYE)
    const dir = yield* DirFile.trySyncAt(
      file,
      () => Fs.mkdtempSync(`${file.dir}/${stagingPrefix(path)}`),
      "Open",
      "cannot bind",
      raw
    )
    return yield* Effect.gen(function*() {
      const staging = yield* stagingSocket(server, dir, Path.join(parent, Path.basename(dir)), raw)
      yield* listenAt(server, staging, raw)
      yield* trySync(() => Fs.chmodSync(staging, mode), "Open", "cannot set the socket's mode", raw)
      const bound = yield* trySync(
        (): Files.FileIdentity => {
          const stat = Fs.lstatSync(staging)
          return { dev: stat.dev, ino: stat.ino }
        },
        "Open",
        "cannot look at the socket",
        raw
      )
      return yield* Effect.gen(function*() {
        for (let attempt = 0; attempt < 3; attempt++) {
          if (yield* linkExclusive(staging, file, raw)) return bound
          const replaced = yield* PathLock.withPathLock(
            path,
            raw,
            Effect.andThen(removeStaleLocked(file, raw, CHANNEL_GOODBYE), linkExclusive(staging, file, raw))
          )
          if (replaced) return bound
        }
        return yield* IpcError.make("AddressInUse", `another server keeps taking ${path}`, raw)
      }).pipe(Effect.ensuring(Effect.sync(() => removeQuietly(() => Fs.unlinkSync(staging)))))
    }).pipe(
      // only an empty directory goes: one another user put in its place is theirs
      Effect.ensuring(Effect.sync(() => removeQuietly(() => Fs.rmdirSync(dir)))),
      // what listeners at this path killed while they bound left (their staging directories)
      Effect.tap(() => {
        const removed = ListenerDirs.sweep(path, [file.dir]).map((left) => Path.join(parent, Path.basename(left)))
        return removed.length === 0
          ? Effect.void
          : Effect.logDebug(`removed the staging directories of dead listeners: ${removed.join(", ")}`)
      })
    )
  })

const removeQuietly = (remove: () => void): void => {
  try {
    remove()
  } catch {
    // gone already, or not ours to remove
  }
}

/**
 * The path to bind the staging socket at, `dir/s`: on Linux through a
 * descriptor of `dir` (see `bindFile`), open until the scope closes, after
 * the server; `PermissionDenied` when what is at `dir` is no longer this
 * user's private directory (another user renamed it and put theirs there).
 * `shown`: `dir` as messages name it.
 */
const stagingSocket = (
  server: Net.Server,
  dir: string,
  shown: string,
  raw: string
): Effect.Effect<string, IpcError.IpcError, Scope.Scope> => {
  if (process.platform !== "linux") return Effect.succeed(Path.join(dir, "s"))
  return Effect.acquireRelease(
    trySync(
      () => Fs.openSync(dir, Fs.constants.O_RDONLY | Fs.constants.O_DIRECTORY | Fs.constants.O_NOFOLLOW),
      "Open",
      "cannot open the staging directory",
      raw
    ),
    // libuv unlinks the bound path as the server closes: the descriptor must still be ours then
    (fd) =>
      Effect.sync(() => {
        server.close()
        Fs.closeSync(fd)
      })
  ).pipe(
    Effect.flatMap((fd) => {
      const stat = Fs.fstatSync(fd)
      return stat.uid === RuntimeDir.userId() && (stat.mode & 0o077) === 0
        ? Effect.succeed(`/proc/self/fd/${fd}/s`)
        : IpcError.make(
          "PermissionDenied",
          `${shown} was replaced as the socket was to be bound in it (now a directory owned by uid ${stat.uid}, ` +
            `mode ${(stat.mode & 0o777).toString(8)}): another user may rename entries in ${Path.dirname(shown)}`,
          raw
        )
    })
  )
}

/**
 * The name of this listener's staging directory beside `path`, without
 * `mkdtemp`'s suffix: `ListenerDirs`' (the next listener removes it if this
 * one is killed while it binds), or plain `.eipc-` where that would make the
 * staging socket's path too long and it cannot be bound through
 * `/proc/self/fd` (not Linux).
 */
const stagingPrefix = (path: string): string => {
  const prefix = ListenerDirs.prefixOf(path)
  const staging = Buffer.byteLength(Path.dirname(path)) + 1 + Buffer.byteLength(prefix) + 6 + 2
  return staging <= maxPathBytes || process.platform === "linux" ? prefix : ".eipc-"
}

/**
 * Removes the socket at `path` if it is proven stale now (inspected again,
 * the very file unlinked); true when removed. Anything else there but a
 * stale socket fails as `inspect` does. Call only holding the path's lock.
 */
const removeStaleLocked = (
  file: DirFile.DirFile,
  raw: string,
  goodbye?: Uint8Array
): Effect.Effect<boolean, IpcError.IpcError> =>
  Effect.gen(function*() {
    const occupant = yield* inspect(file, raw, goodbye)
    if (occupant._tag !== "Stale") return false
    // unlink only the very file found stale
    const now = yield* DirFile.trySyncAt(
      file,
      () => Files.lstatIfAny(file.at),
      "Open",
      `cannot look at ${file.path}`,
      raw
    )
    if (now === undefined || !Files.sameFile(now, occupant)) return false
    yield* DirFile.trySyncAt(file, () => Fs.unlinkSync(file.at), "Open", "cannot remove the stale socket", raw)
    return true
  })

/**
 * Removes the socket file at `path` if it is a stale socket of this user's
 * (connecting is refused), judged again under the lock `listen` takes; true
 * when removed. A live socket or anything else there fails `AddressInUse`,
 * untouched; nothing there is false.
 */
export const removeStale = (path: string, raw: string = `unix://${path}`): Effect.Effect<boolean, IpcError.IpcError> =>
  DirFile.withFile(path, (file) => PathLock.withPathLock(path, raw, removeStaleLocked(file, raw, CHANNEL_GOODBYE)))

/** Removes the socket file at `file` if it is still the one we bound. */
const unlinkOurs = (file: DirFile.DirFile, ours: Files.FileIdentity) => {
  try {
    const stat = Fs.lstatSync(file.at)
    if (Files.sameFile(stat, ours)) Fs.unlinkSync(file.at)
  } catch {
    // already gone
  }
}

/**
 * Runs `bind` (a listener that binds `path` itself, e.g. libnng) once `path`
 * is free by this module's rule: absent, or a stale socket of ours that is
 * removed here; anything else fails `AddressInUse` naming its kind and owner.
 * Holds the same lock as `listen` while checking, removing and binding.
 * The checks and the removal go through one descriptor of the path's directory (see `DirFile`).
 */
export const withFreePath = <A, E, R>(
  path: string,
  raw: string,
  bind: Effect.Effect<A, E, R>
): Effect.Effect<A, E | IpcError.IpcError, R> =>
  DirFile.withFile(path, (file) =>
    Effect.andThen(
      inspect(file, raw),
      PathLock.withPathLock(path, raw, Effect.andThen(removeStaleLocked(file, raw), bind))
    ))

/** Makes the Unix socket transport (`unix://`, `pipe://`). */
export const make = (options: UnixSocketOptions = {}): Transport.TransportShape => {
  // options that are not an object (a caller without types): every listen and dial fails with InvalidOption
  const refused = TransportOptions.refusedIfNotAnObject(["unix", "pipe"], options)
  if (refused !== undefined) return refused
  const mode = options.mode ?? 0o600
  return {
    schemes: ["unix", "pipe"],
    // a refused listen lets go of what it opened at once (its directory's descriptor), not with the caller's scope
    listen: (raw) =>
      DirFile.releasedOnFailure(Effect.gen(function*() {
        yield* TransportOptions.optionsOk(options, raw)
        // before anything is made (`pipe://` makes its runtime directory as it resolves)
        const badMode = TransportOptions.invalidMode(mode, raw)
        if (badMode !== undefined) return yield* badMode
        const authorize = authorizerOf(options.authorize)
        const { path, kind } = yield* SocketPath.resolve(raw)
        if (kind === "windows-pipe") return yield* NamedPipe.listen(path, raw, options)
        // opened before the finalizer below is added, so closed after it: its removal of the file goes through it
        const file = kind === "file" ? yield* DirFile.scoped(path) : undefined
        const server = Net.createServer({ pauseOnConnect: true })
        // counted, and logged a few a minute (a flood of refused peers wrote a warning each)
        const noteRefusal = yield* Observability.refusals(raw)
        const acceptor = yield* Transport.makeAcceptor(raw, { refused: noteRefusal })
        const open = new Set<IpcChannel.IpcChannel>()
        let ours: Files.FileIdentity | undefined
        yield* Effect.addFinalizer(() =>
          Effect.gen(function*() {
            server.close()
            yield* acceptor.shutdown
            yield* Effect.forEach(open, (channel) => channel.close, { concurrency: "unbounded", discard: true })
            // remove our socket file, and only ours (a successor may have replaced it)
            if (ours !== undefined && file !== undefined) unlinkOurs(file, ours)
          })
        )
        // each connection is served in a fiber of this listener's scope, with the caller's services
        const connections = yield* FiberSet.make<void, never>()
        const runConnection = yield* FiberSet.runtime(connections)<never>()
        const accept = (socket: Net.Socket) =>
          Effect.gen(function*() {
            socket.on("error", () => {}) // reported through the channel once it exists
            const peer: IpcChannel.PeerInfo = yield* credentialsOf(socket, raw).pipe(
              Effect.catch((error) =>
                Effect.as(Effect.logWarning("cannot read peer credentials", error), { description: raw })
              )
            )
            if (!authorize(peer)) {
              // counted and logged (with the caller's services) before the peer can see the refusal
              yield* noteRefusal(
                IpcError.make("PeerRejected", `refused a peer running as uid ${peer.uid} (pid ${peer.pid})`, raw)
              )
              return socket.destroy()
            }
            const channel = yield* StreamChannel.make({ readable: socket, writable: socket }, raw, peer, options)
            socket.resume()
            open.add(channel)
            yield* acceptor.admit(channel)
            yield* channel.closed
            open.delete(channel)
          })
        server.on("connection", (socket) => void runConnection(accept(socket)))
        if (file !== undefined) ours = yield* bindFile(server, file, mode, raw)
        else yield* listenAt(server, path, raw)
        return acceptor.listener
      })),
    dial: (raw) =>
      Effect.gen(function*() {
        yield* TransportOptions.optionsOk(options, raw)
        const authorize = authorizerOf(options.authorize)
        const { path, kind } = yield* SocketPath.resolve(raw)
        if (kind === "windows-pipe") return yield* NamedPipe.dial(path, raw, options)
        // the socket is destroyed on any failure or interruption until the channel owns it
        return yield* Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(restore(connectRetrying(path, raw)), (socket) =>
            restore(Effect.gen(function*() {
              // who is the server? checked before a single byte of ours is sent
              const peer = yield* credentialsOf(socket, raw).pipe(
                Effect.mapError((error) =>
                  IpcError.make("PeerRejected", `cannot read the server's credentials: ${error.detail}`, raw)
                ),
                Effect.filterOrFail(authorize, (server) =>
                  IpcError.make(
                    "PeerRejected",
                    `the server runs as uid ${server.uid} (pid ${server.pid}), which authorize refuses`,
                    raw
                  ))
              )
              return yield* StreamChannel.makeScoped({ readable: socket, writable: socket }, raw, peer, options)
            })).pipe(
              Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => socket.destroy()))
            ))
        )
      })
  }
}

/** The Unix socket transport as the `Transport` service (instrumented), its options checked as it is built (`Transport.layerOf`). */
export const layer = (options?: UnixSocketOptions): Layer.Layer<Transport.Transport, IpcError.IpcError> =>
  Transport.layerOf(make, options)
