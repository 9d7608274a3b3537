/**
 * An nng socket driven from the event loop. nng tells through two pollable
 * descriptors when the socket has a message for us (`recv-fd`) and when it
 * can take one (`send-fd`); libuv watches them, and every send and receive is
 * non-blocking. A send that finds the socket full waits (in order with the
 * other waiting sends) for `send-fd`; a receive that finds nothing waits for
 * `recv-fd`. No thread waits for anything, and interrupting a waiting fiber
 * just removes its waiter.
 *
 * @internal
 */
import * as ChannelEngine from "@effect-ipc/core/ChannelEngine"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as SocketPath from "@effect-ipc/transport-pipe/SocketPath"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as NngAddress from "../NngAddress.ts"
import * as NngError from "../NngError.ts"
import type * as NngTls from "../NngTls.ts"
import * as Nng from "./nng.ts"
import * as Ticker from "./ticker.ts"
import * as Tls from "./tls.ts"

// the most messages libnng queues in a socket's send or receive buffer
const MAX_QUEUE = 8192

/** `InvalidOption` for a `sendBuffer` or `recvBuffer` over libnng's limit (it refuses it on every socket), as an Effect. */
export const queuesOk = (
  options: { readonly sendBuffer?: number | undefined; readonly recvBuffer?: number | undefined },
  address?: string
): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    for (const name of ["sendBuffer", "recvBuffer"] as const) {
      const value = options[name]
      if (value !== undefined && value > MAX_QUEUE) {
        return Effect.fail(
          IpcError.make("InvalidOption", `${name} ${value} is over ${MAX_QUEUE} messages, libnng's limit`, address)
        )
      }
    }
    return Effect.void
  })

/**
 * Bytes a protocol's own header adds to a message on the wire (pair1's hop count, req/rep's request id), which
 * nng counts against `recv-size-max`.
 */
export const wireHeader = (protocol: Nng.Protocol): number =>
  protocol === "pair" || protocol === "req" || protocol === "rep" || protocol === "rep-raw" ? 4 : 0

/** Options common to every socket. */
export interface SocketOptions {
  /** Largest message accepted from a peer, in bytes (`recv-size-max`; 0: no limit). */
  readonly maxMessageSize: number
  /**
   * Largest body accepted from a peer (0: only empty ones): a larger one is dropped and its connection closed, as
   * nng does with what passes `recv-size-max` (which then takes this plus the protocol's header, `wireHeader`).
   */
  readonly maxBody?: number | undefined
  /** Messages nng queues for sending before `send` waits (`send-buffer`). */
  readonly sendBuffer?: number | undefined
  /** Messages nng queues on receipt before it stops reading from peers (`recv-buffer`). */
  readonly recvBuffer?: number | undefined
  /** Dialers' `reconnect-time-min` / `reconnect-time-max`, in milliseconds. */
  readonly reconnect?: { readonly min: number; readonly max: number } | undefined
  /** Permission bits of ipc socket files this socket listens on. */
  readonly ipcPermissions?: number | undefined
  /** True when every message starts with a kind byte (effect-ipc's channels): `Received.kind` holds it. */
  readonly kinded?: boolean | undefined
  /** TLS of the `tls+tcp` and `wss` endpoints this socket listens and dials at. */
  readonly tls?: NngTls.TlsOptions | undefined
  /**
   * Told of each client a TLS listener of this socket refused (see `admitted`
   * in `makeSocket`), to be counted and logged (`refusalQueue`).
   */
  readonly refused?: ((error: IpcError.IpcError) => void) | undefined
}

/** Where the refusals of a socket's TLS check go: the `refused` sink, and a loop noting each with `note`. */
export interface RefusalQueue {
  readonly sink: (error: IpcError.IpcError) => void
  readonly noteWith: (note: (error: IpcError.IpcError) => Effect.Effect<void>) => Effect.Effect<never>
}

/** How many refusals wait to be noted at most; more are counted and noted in one go as the loop catches up. */
const REFUSALS_QUEUED = 256

/**
 * A queue for `SocketOptions.refused`: the socket reports refusals as it
 * reads, outside any fiber; a fiber of the owner's (`noteWith`, forked in its
 * scope) counts and logs them with the owner's services. A flood of refused
 * clients holds at most `REFUSALS_QUEUED` errors: those past it are noted as
 * copies of the latest (each still counted).
 */
export const refusalQueue: Effect.Effect<RefusalQueue> = Effect.map(
  Queue.dropping<IpcError.IpcError>(REFUSALS_QUEUED),
  (queue) => {
    let overflow = 0
    let latest: IpcError.IpcError | undefined
    return {
      sink: (error) => {
        if (Queue.offerUnsafe(queue, error)) return
        // the queue is full: a take follows, which notes these
        overflow++
        latest = error
      },
      noteWith: (note) => {
        const noteTimes = (times: number, error: IpcError.IpcError): Effect.Effect<void> =>
          times === 0 ? Effect.void : Effect.andThen(note(error), Effect.suspend(() => noteTimes(times - 1, error)))
        // those queued in order, then those past the queue's room
        return Effect.forever(Effect.flatMap(Queue.takeAll(queue), (errors) =>
          Effect.andThen(
            Effect.forEach(errors, note, { discard: true }),
            Effect.suspend(() => {
              const more = overflow
              const last = latest
              overflow = 0
              latest = undefined
              return last === undefined ? Effect.void : noteTimes(more, last)
            })
          )))
      }
    }
  }
)

/** True when a socket with `tls` that listens at `addresses` checks its TLS clients itself (authMode "optional"). */
export const checksClients = (
  tls: NngTls.TlsOptions | undefined,
  addresses: ReadonlyArray<NngAddress.NngAddress>
): boolean => tls?.authMode === "optional" && addresses.some((address) => NngAddress.isTls(address.transport))

/** An open nng socket. */
export interface Socket {
  readonly nng: Nng.Nng
  readonly handle: Nng.Handle
  readonly protocol: Nng.Protocol
  /** True once `close` was called. */
  readonly isClosed: () => boolean
  /** Listens at `address`; yields the port bound (tcp, ws). */
  readonly listen: (address: NngAddress.NngAddress) => Effect.Effect<Nng.Listening, IpcError.IpcError>
  /** Listens at an ipc `address` whose socket file only this socket removes, and only while it is still the one bound (see `listenFree`). */
  readonly listenFile: (address: NngAddress.NngAddress) => Effect.Effect<Nng.Listening, IpcError.IpcError>
  /** Dials `address` in the background (nng reconnects whenever the link drops). */
  readonly dial: (address: NngAddress.NngAddress) => Effect.Effect<Nng.Handle, IpcError.IpcError>
  /** Sends a message, waiting while the socket is full; messages of concurrent senders go out in call order. */
  readonly send: (body: Uint8Array, prefix?: Uint8Array, header?: Uint8Array) => Effect.Effect<void, IpcError.IpcError>
  /** Receives one message, waiting for one. */
  readonly receive: Effect.Effect<Nng.Received, IpcError.IpcError>
  /** Receives one message if one is waiting: the message, or an nng code (`EAGAIN`). */
  readonly tryReceive: () => Nng.Received | number
  /** Calls `listener` whenever messages are waiting, until the returned function is called. */
  readonly onReadable: (listener: () => void) => () => void
  /** Calls `listener` whenever the socket can take a message, until the returned function is called. */
  readonly onWritable: (listener: () => void) => () => void
  /** Sends without waiting (`header`: raw sockets): 0, or an nng code (`EAGAIN`: full; see `onWritable`). */
  readonly trySend: (body: Uint8Array, prefix?: Uint8Array, header?: Uint8Array) => number
  /** `nng.sendOrBuild` on this socket: 0 (sent, with `now`), the message kept for `trySendBuilt`, or an nng code. */
  readonly sendOrBuild: (body: Uint8Array, prefix: Uint8Array | undefined, now: boolean) => Nng.Built | number
  /** Sends a message kept by `sendOrBuild` without waiting: 0 (nng owns it), or an nng code (still the caller's). */
  readonly trySendBuilt: (built: Nng.Built) => number
  /** Completes once the socket can take a message (for a pair or req socket: once a peer is connected). */
  readonly writable: Effect.Effect<void, IpcError.IpcError>
  /** Sets a socket option. */
  readonly setOption: (name: string, value: Nng.OptionValue) => Effect.Effect<void, IpcError.IpcError>
  /** The error for an nng code on this socket. */
  readonly error: (code: number, detail: string) => IpcError.IpcError
  /** Starts closing the socket (idempotent); pending waits fail with `Closed`. */
  readonly shutdown: () => void
  /** Closes the socket (idempotent) and waits until nng has let it go. */
  readonly close: Effect.Effect<void>
}

/** True when a socket of protocol `p` reads what its peers send (pub and push only send). */
const canReceive = (p: Nng.Protocol) => p !== "pub" && p !== "push"

/**
 * True when a socket of protocol `p` sends to a peer it may not have heard from yet (pub and push only
 * send; req sends requests and pair its messages to whoever connected): such a socket cannot check its
 * TLS clients before they get what it sends.
 */
export const sendsUnheard = (p: Nng.Protocol) => p === "pub" || p === "push" || p === "req" || p === "pair"
const canSend = (p: Nng.Protocol) => p !== "sub" && p !== "pull"

/** A readiness watch shared by any number of listeners. */
const readiness = (nng: Nng.Nng, fd: number | undefined) => {
  const listeners = new Set<() => void>()
  const watch = fd === undefined ? undefined : nng.watch(fd, () => {
    // one listener (a channel's drain) needs no copy of the set to call it
    if (listeners.size === 1) { for (const listener of listeners) return listener() }
    for (const listener of Array.from(listeners)) listener()
  })
  return {
    add: (listener: () => void) => {
      listeners.add(listener)
      watch?.start()
      return () => {
        listeners.delete(listener)
        if (listeners.size === 0) watch?.stop()
      }
    },
    close: () => {
      watch?.close()
      const pending = [...listeners]
      listeners.clear()
      // wake the waiters: they find the socket closed
      for (const listener of pending) listener()
    }
  }
}

interface PendingSend {
  readonly body: Uint8Array
  readonly prefix: Uint8Array | undefined
  readonly header: Uint8Array | undefined
  /** A large message, built once for nng (freed here unless nng takes it). */
  built: Nng.Built | undefined
  readonly resume: (result: Effect.Effect<void, IpcError.IpcError>) => void
}

/** How many pipes' verdicts a socket keeps before it forgets those of pipes that are gone (then twice as many). */
const VERDICTS_KEPT = 1024

/** From this size on, a message that must wait for nng waits built, so that each try does not copy it again. */
const BUILD_FROM = 64 * 1024

/** Opens a socket (not scoped: the caller closes it). */
export const open = (
  protocol: Nng.Protocol,
  options: SocketOptions,
  address: string
): Effect.Effect<Socket, IpcError.IpcError> =>
  Effect.gen(function*() {
    const nng = yield* Nng.library
    const handle = yield* nng.open(protocol)
    const setup = Effect.gen(function*() {
      // libnng's largest, the body check holding the rest; never 0, which is no limit to nng (`maxBody` 0 is 0 bytes)
      const sizeMax = options.maxBody === undefined
        ? options.maxMessageSize
        : Math.max(1, Math.min(options.maxBody + wireHeader(protocol), 0xffff_ffff))
      yield* nng.setSocketOption(handle, "recv-size-max", { size: sizeMax })
      if (options.sendBuffer !== undefined && canSend(protocol)) {
        yield* nng.setSocketOption(handle, "send-buffer", { int: options.sendBuffer })
      }
      if (options.recvBuffer !== undefined && canReceive(protocol)) {
        yield* nng.setSocketOption(handle, "recv-buffer", { int: options.recvBuffer })
      }
      const recvFd = canReceive(protocol) ? yield* nng.getSocketInt(handle, "recv-fd") : undefined
      const sendFd = canSend(protocol) ? yield* nng.getSocketInt(handle, "send-fd") : undefined
      return { recvFd, sendFd }
    })
    const fds = yield* setup.pipe(Effect.tapError(() => Effect.sync(() => nng.close(handle, () => {}))))
    return makeSocket(nng, handle, protocol, options, address, fds.recvFd, fds.sendFd)
  })

/** Opens a socket that is closed when the scope closes. */
export const make = (
  protocol: Nng.Protocol,
  options: SocketOptions,
  address: string
): Effect.Effect<Socket, IpcError.IpcError, Scope.Scope> =>
  Effect.acquireRelease(open(protocol, options, address), (socket) => socket.close)

const makeSocket = (
  nng: Nng.Nng,
  handle: Nng.Handle,
  protocol: Nng.Protocol,
  options: SocketOptions,
  address: string,
  recvFd: number | undefined,
  sendFd: number | undefined
): Socket => {
  let closed = false
  const released = Deferred.makeUnsafe<void>()
  const readable = readiness(nng, recvFd)
  const writableFd = readiness(nng, sendFd)
  const error = (code: number, detail: string) => nng.error(code, detail, address)
  const closedError = () => nng.error(NngError.Code.ECLOSED, "the socket is closed", address, "Closed")

  // ---- sending: in call order, waiting on send-fd while nng is full ----
  const pending: Array<PendingSend> = []
  let stopWritable: (() => void) | undefined
  /** Frees a waiting send's built message, if nng never took it. */
  const dropBuilt = (entry: PendingSend) => {
    if (entry.built !== undefined) nng.dropBuilt(entry.built)
    entry.built = undefined
  }
  const flush = () => {
    while (pending.length > 0) {
      const next = pending[0]!
      if (closed) {
        pending.shift()
        dropBuilt(next)
        next.resume(Effect.fail(closedError()))
        continue
      }
      const rv = next.built === undefined
        ? nng.trySend(handle, next.body, next.prefix, next.header)
        : nng.trySendBuilt(handle, next.built)
      if (rv === Nng.EAGAIN) return
      pending.shift()
      // taken (nng owns it now), or refused for good (ours to free)
      if (rv === 0) next.built = undefined
      else dropBuilt(next)
      next.resume(rv === 0 ? Effect.void : Effect.fail(error(rv, "cannot send")))
    }
    stopWritable?.()
    stopWritable = undefined
  }
  const send = (given: Uint8Array, prefix?: Uint8Array, header?: Uint8Array): Effect.Effect<void, IpcError.IpcError> =>
    Effect.suspend(() => {
      if (closed) return Effect.fail(closedError())
      // what a caller hands a pattern socket (JavaScript, or a cast, can pass anything) is checked as a
      // channel's send checks it: a string went out as an empty message, null died
      const body = ChannelEngine.asBytes(given, address)
      if (body instanceof IpcError.IpcError) return Effect.fail(body)
      const large = body.byteLength >= BUILD_FROM
      if (pending.length === 0 && !large) {
        const rv = nng.trySend(handle, body, prefix, header)
        if (rv === 0) return Effect.void
        if (rv !== Nng.EAGAIN) return Effect.fail(error(rv, "cannot send"))
      }
      // a large message is built in here, where nothing (no yield, no interruption) can come between
      // its making and its hand-over, to nng or to the waiting entry that frees it
      return Effect.callback<void, IpcError.IpcError>((resume) => {
        // the socket may have closed while the fiber yielded (effect does, every so many steps)
        if (closed) return resume(Effect.fail(closedError()))
        let built: Nng.Built | undefined
        if (large) {
          const sent = nng.sendOrBuild(handle, body, prefix, header, pending.length === 0)
          if (sent === 0) return resume(Effect.void)
          if (typeof sent === "number") return resume(Effect.fail(error(sent, "cannot send")))
          built = sent
        }
        const entry: PendingSend = { body, prefix, header, built, resume }
        pending.push(entry)
        if (stopWritable === undefined) stopWritable = writableFd.add(flush)
        return Effect.sync(() => {
          const i = pending.indexOf(entry)
          if (i >= 0) {
            pending.splice(i, 1)
            dropBuilt(entry)
          }
          if (pending.length === 0) {
            stopWritable?.()
            stopWritable = undefined
          }
        })
      })
    })

  // ---- the check of the clients a TLS listener admitted with authMode "optional" ----
  // nng completes their handshake whatever the check of a client's certificate found: each pipe from
  // such a listener is checked once, before anything it sent is used (its verdict kept while it lives)
  const checkedListeners = new Set<number>()
  const verdicts = new Map<number, boolean>()
  let keep = VERDICTS_KEPT
  const refuse = (pipe: number, detail: string) => {
    nng.closePipe(pipe)
    options.refused?.(IpcError.make("PeerRejected", detail, address))
    return false
  }
  // a message outlives its pipe in the queues of rep, pair and sub: a client that sent and left before
  // its pipe was checked cannot be checked any more (nng forgets the pipe: its listener reads as none)
  const gone = (pipe: number) =>
    refuse(
      pipe,
      "dropped what a TLS client sent: it closed its connection before it could be checked " +
        "(authMode \"optional\" checks each client before using what it sent)"
    )
  const check = (pipe: number): boolean => {
    const listener = nng.pipeListener(pipe)
    if (listener === 0 && !nng.pipeAlive(pipe)) return gone(pipe)
    if (!checkedListeners.has(listener)) return true
    if (nng.pipeVerified(pipe) === true) return true
    // not verified: a client without a certificate (which optional admits), or with a bad one
    const presented = nng.pipePresented(pipe)
    if (presented === false) return true
    if (presented === undefined && !nng.pipeAlive(pipe)) return gone(pipe)
    return refuse(
      pipe,
      presented === true
        ? "closed a TLS connection whose client certificate does not verify against the listener's caFile " +
          "(authMode \"optional\" checks a certificate when one is presented)"
        : `closed a TLS connection whose client is not verified: libnng ${nng.version} cannot tell whether ` +
          "it presented a certificate, so with authMode \"optional\" only verified clients are admitted"
    )
  }
  /** True when what `pipe` sent may be used; a pipe refused is closed (and its messages dropped). */
  const admitted = (pipe: number): boolean => {
    const known = verdicts.get(pipe)
    if (known !== undefined) return known
    if (verdicts.size >= keep) {
      for (const id of verdicts.keys()) if (!nng.pipeAlive(id)) verdicts.delete(id)
      keep = Math.max(VERDICTS_KEPT, verdicts.size * 2)
    }
    const verdict = check(pipe)
    verdicts.set(pipe, verdict)
    return verdict
  }

  // ---- receiving ----
  const kinded = options.kinded === true
  const withHeader = protocol === "rep-raw"
  const maxBody = options.maxBody
  // a channel's socket (kinded: one conversation, one peer) carves its small messages from a slab of its own; the
  // pattern sockets' messages, of many peers, each get memory of their own
  const slab = kinded ? Nng.makeSlab() : undefined
  const tryReceive = (): Nng.Received | number => {
    for (;;) {
      if (closed) return NngError.Code.ECLOSED
      const received = nng.tryReceive(handle, kinded, withHeader, slab)
      if (typeof received !== "number" && maxBody !== undefined && received.body.byteLength > maxBody) {
        nng.closePipe(received.pipe)
        continue
      }
      if (typeof received === "number" || checkedListeners.size === 0 || admitted(received.pipe)) return received
    }
  }
  const waitReadable = Effect.callback<void, IpcError.IpcError>((resume) => {
    if (closed) return resume(Effect.fail(closedError()))
    const remove = readable.add(() => {
      remove()
      resume(closed ? Effect.fail(closedError()) : Effect.void)
    })
    return Effect.sync(remove)
  })
  const receive: Effect.Effect<Nng.Received, IpcError.IpcError> = Effect.suspend(() => {
    const result = tryReceive()
    if (typeof result !== "number") return Effect.succeed(result)
    if (result === Nng.EAGAIN) return Effect.andThen(waitReadable, receive)
    return Effect.fail(result === NngError.Code.ECLOSED ? closedError() : error(result, "cannot receive"))
  })

  const writable = Effect.callback<void, IpcError.IpcError>((resume) => {
    if (closed) return resume(Effect.fail(closedError()))
    const remove = writableFd.add(() => {
      remove()
      resume(closed ? Effect.fail(closedError()) : Effect.void)
    })
    return Effect.sync(remove)
  })

  /** The TLS settings of an endpoint at `target`: none unless it is `tls+tcp` or `wss`. */
  const tlsOf = (side: "listen" | "dial", target: NngAddress.NngAddress) =>
    NngAddress.isTls(target.transport) ? Tls.settings(options.tls, side, target) : Effect.succeed(undefined)

  /**
   * The socket files this socket listens at through a descriptor of their
   * directory (`/proc/self/fd/N/name`): nng unlinks the path it bound as it
   * closes, whatever is there by then (the socket of a listener that took the
   * path after ours was removed). So the file is removed here, only while it
   * is still ours, and the descriptor is made /dev/null before nng closes:
   * its unlink then reaches nothing.
   */
  const files: Array<BoundFile> = []
  let filesReleased = false
  const letGo = (file: BoundFile) => {
    // through the directory's descriptor: a link swapped in for a directory on the path steered an unlink by path
    if (file.bound !== undefined) unlinkIfSame(throughDirectory(file), file.bound)
    // where this fails (no descriptor free for /dev/null), the descriptor stays our directory until nng has
    // closed (its unlink as before)
    try {
      const devNull = Fs.openSync("/dev/null", "r")
      nng.replaceFd(devNull, file.dir)
      Fs.closeSync(devNull)
    } catch {
      // as above
    }
  }
  /** Keeps `file` until nng has let the socket go (at once when it has: nng unlinks nothing more). */
  const keepFile = (file: BoundFile) => {
    if (closed) letGo(file)
    if (filesReleased) return Fs.closeSync(file.dir)
    files.push(file)
  }
  const releaseFiles = () => {
    filesReleased = true
    for (const file of files.splice(0)) Fs.closeSync(file.dir)
  }

  const shutdown = () => {
    if (closed) return
    closed = true
    // the poll handles go first: nng closes the descriptors they watch
    readable.close()
    writableFd.close()
    flush()
    files.forEach(letGo)
    nng.close(handle, () => {
      releaseFiles()
      Deferred.doneUnsafe(released, Exit.void)
    })
  }

  const listen = (target: NngAddress.NngAddress) =>
    Effect.flatMap(tlsOf("listen", target), (tls) =>
      nng.listen(
        handle,
        target.url,
        {
          ...(target.transport === "ipc" && options.ipcPermissions !== undefined
            ? { ipcPermissions: options.ipcPermissions }
            : {}),
          tls
        },
        target.raw,
        // its pipes are checked from the first (a socket that only sends refuses this mode: `checksClients`)
        (listener) => {
          if (tls?.authMode === Tls.OPTIONAL) checkedListeners.add(listener.id)
        }
      ))

  return {
    nng,
    handle,
    protocol,
    isClosed: () => closed,
    listen,
    listenFile: (target) =>
      Effect.suspend(() => {
        const dir = closed ? undefined : SocketPath.openDirectory(target.path)
        if (dir === undefined) return listen(target)
        const through = `/proc/self/fd/${dir}/${Path.basename(target.path)}`
        if (Buffer.byteLength(through) > MAX_SOCKET_PATH) {
          Fs.closeSync(dir)
          return listen(target)
        }
        return listen({ ...target, url: `ipc://${through}` }).pipe(
          Effect.tap(() =>
            Effect.sync(() => {
              // undefined: removed already, nothing there is ours (nng's unlink at close is kept from it all the same)
              keepFile({ dir, path: target.path, bound: Fs.lstatSync(through, { throwIfNoEntry: false }) })
            })
          ),
          Effect.onError(() => Effect.sync(() => Fs.closeSync(dir)))
        )
      }),
    dial: (target) =>
      Effect.flatMap(Effect.andThen(NngAddress.dialable(target), tlsOf("dial", target)), (tls) =>
        nng.dial(
          handle,
          target.url,
          {
            ...(options.reconnect === undefined
              ? {}
              : { reconnectMin: options.reconnect.min, reconnectMax: options.reconnect.max }),
            tls
          },
          target.raw
        )),
    send,
    receive,
    tryReceive,
    onReadable: (listener) => readable.add(listener),
    onWritable: (listener) => writableFd.add(listener),
    trySend: (body, prefix, header) => (closed ? NngError.Code.ECLOSED : nng.trySend(handle, body, prefix, header)),
    sendOrBuild: (body, prefix, now) =>
      closed ? NngError.Code.ECLOSED : nng.sendOrBuild(handle, body, prefix, undefined, now),
    trySendBuilt: (built) => (closed ? NngError.Code.ECLOSED : nng.trySendBuilt(handle, built)),
    writable,
    setOption: (name, value) => nng.setSocketOption(handle, name, value),
    error,
    shutdown,
    close: Effect.suspend(() => {
      shutdown()
      return Deferred.await(released)
    })
  }
}

/** A socket file an ipc listener bound through a descriptor of its directory, and the file as bound. */
interface BoundFile {
  readonly dir: number
  readonly path: string
  readonly bound: Fs.Stats | undefined
}

/** The socket file of `file` through its directory's descriptor (`/proc/self/fd/N/name`). */
const throughDirectory = (file: BoundFile): string => `/proc/self/fd/${file.dir}/${Path.basename(file.path)}`

/** The longest socket path Linux binds (`sun_path` less its NUL). */
const MAX_SOCKET_PATH = 107

/** Removes the file at `path` if it is still `bound` (same device and inode). */
const unlinkIfSame = (path: string, bound: Fs.Stats) => {
  try {
    const now = Fs.lstatSync(path)
    if (now.dev === bound.dev && now.ino === bound.ino) Fs.unlinkSync(path)
  } catch {
    // gone already
  }
}

/**
 * Listens at an address a user gave (a transport's rendezvous, a pattern
 * socket's `listen`). libnng unlinks whatever refuses a connect at an ipc path,
 * a regular file too; so over ipc the path is taken only when it is free by
 * transport-pipe's rule (absent, or a stale socket of this user, removed under
 * its lock), and anything else there is `AddressInUse`, left untouched; and
 * on close the socket file is removed only while it is still the one bound.
 * Over ipc, `afterListen` runs once the socket listens, still under the lock.
 */
export const listenFree = (
  socket: Socket,
  address: NngAddress.NngAddress,
  afterListen: Effect.Effect<void> = Effect.void
): Effect.Effect<Nng.Listening, IpcError.IpcError> =>
  address.transport !== "ipc"
    ? socket.listen(address)
    : missingDirectory(address.path)
    // nng says "Entry not found": say what is missing, in the terms of the path given
    ? Effect.fail(
      IpcError.make("NotFound", `cannot listen: directory ${Path.dirname(address.path)} does not exist`, address.raw)
    )
    : UnixSocket.withFreePath(address.path, address.raw, Effect.tap(socket.listenFile(address), () => afterListen))

/** True when the directory of `path` is not there (not when it cannot be looked at: that stays nng's to say). */
export const missingDirectory = (path: string): boolean => {
  try {
    Fs.statSync(Path.dirname(path))
    return false
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    return code === "ENOENT" || code === "ENOTDIR"
  }
}

/**
 * Waits until a socket's dialer is connected (the socket turns writable),
 * failing as soon as the dialer reports an error, or after `timeout` ms.
 */
export const connected = (
  socket: Socket,
  dialer: Nng.Handle,
  timeout: number,
  address: string
): Effect.Effect<void, IpcError.IpcError> => {
  const failed = Effect.callback<never, IpcError.IpcError>((resume) => {
    const started = Date.now()
    const stop = Ticker.every(() => {
      const code = socket.nng.dialerFailure(dialer)
      if (code !== undefined) {
        stop()
        resume(Effect.fail(socket.nng.error(code, "cannot connect", address)))
      } else if (Date.now() - started > timeout) {
        stop()
        resume(
          Effect.fail(
            socket.nng.error(NngError.Code.ETIMEDOUT, `no connection within ${timeout} ms`, address, "Timeout")
          )
        )
      }
    })
    return Effect.sync(stop)
  })
  return Effect.raceFirst(socket.writable, failed)
}
