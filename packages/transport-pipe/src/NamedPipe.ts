/**
 * Windows named pipes (`pipe://name` on Windows is `\\.\pipe\name`), secure
 * by default. Node's own named pipes cannot be: libuv creates them with the
 * default security descriptor (which lets every user read) and gives no
 * handle to check a peer with. So the pipe is driven here through the
 * Windows API (koffi; the calls are in `internal/win32.ts`):
 *
 * - Every instance of the pipe is created with a DACL that allows only this
 *   process's user (`D:P(A;;GA;;;<user SID>)`, protected: nothing inherited)
 *   and refuses remote clients (PIPE_REJECT_REMOTE_CLIENTS); the first with
 *   FILE_FLAG_FIRST_PIPE_INSTANCE, after checking that no pipe of that name
 *   exists: another server's name is `AddressInUse`, never shared.
 * - Both sides read the other's process id (GetNamedPipeClientProcessId /
 *   GetNamedPipeServerProcessId) and that process's user (its token's SID)
 *   and put them on the channel (`peer.pid`, `peer.user`). `authorize`
 *   (default: `sameUser`) decides: the listener closes a refused client's
 *   connection; `dial` fails with `PeerRejected` before sending a byte. A
 *   peer whose user cannot be read is refused.
 * - The client opens the pipe at the identification level only
 *   (SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION): a server cannot act
 *   as its clients.
 * - Reads and writes are overlapped, waited on koffi's worker threads, never
 *   on the event loop; the handle is a Node Duplex, so the stream channel
 *   (frames, back-pressure, close) is the same as on Unix sockets.
 *
 * @since 0.1.0
 */
import * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Observability from "@effect-ipc/core/Observability"
import * as StreamChannel from "@effect-ipc/core/StreamChannel"
import * as Transport from "@effect-ipc/core/Transport"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberSet from "effect/FiberSet"
import type * as Scope from "effect/Scope"
import * as NodeStream from "node:stream"
import * as Win32 from "./internal/win32.ts"

/** Options of Windows named pipes: those of a stream channel, and who may be talked to. */
export interface NamedPipeOptions extends StreamChannel.StreamChannelOptions {
  /**
   * Decides whether the process at the other end may be talked to, on both
   * sides (default `sameUser`). A listener closes a refused client's
   * connection at once; `dial` fails with `PeerRejected` before sending anything.
   */
  readonly authorize?: ((peer: IpcChannel.PeerInfo) => boolean) | undefined
}

const BUFFER_SIZE = 64 * 1024
// how long input must be quiet, once our side has ended, before the reading side ends too (libuv's is 50 ms)
const QUIET_MILLIS = 50

let me: string | undefined

/** This process's Windows user, as a string SID (`S-1-5-21-...`); undefined where it cannot be read. */
export const currentUser = (): string | undefined => {
  if (me === undefined && Win32.unavailable() === undefined) {
    const user = Win32.userOfProcess(Win32.currentProcessId())
    if (!Win32.isError(user)) me = user
  }
  return me
}

/** The default `authorize` on Windows: a peer running as this process's user. */
export const sameUser = (peer: IpcChannel.PeerInfo): boolean => {
  const user = currentUser()
  return user !== undefined && peer.user === user
}

/** The security descriptor every instance of our pipes gets: only `user`, nothing inherited. */
export const sddlFor = (user: string): string => `D:P(A;;GA;;;${user})`

const systemError = (error: Win32.Win32Error, what: string): Error => {
  const code = error.code === Win32.ERROR_BROKEN_PIPE || error.code === Win32.ERROR_NO_DATA ||
      error.code === Win32.ERROR_PIPE_NOT_CONNECTED
    ? "EPIPE"
    : error.code === Win32.ERROR_OPERATION_ABORTED
    ? "ECANCELED"
    : "EIO"
  return Object.assign(new Error(`${what}: ${Win32.errorName(error.code)}`), { code })
}

const ended = (error: Win32.Win32Error) =>
  error.code === Win32.ERROR_BROKEN_PIPE || error.code === Win32.ERROR_PIPE_NOT_CONNECTED ||
  error.code === Win32.ERROR_NO_DATA

/**
 * A connected pipe handle as a Node Duplex. One read and one write at most
 * are in flight, each in its own slot; destroying cancels them and closes the
 * handle (and frees the slots) only once both have completed.
 */
class PipeStream extends NodeStream.Duplex {
  private reading = false
  private inflight = 0
  private closing = false
  private settled: (() => void) | undefined
  private eof = false
  private quiet: ReturnType<typeof setTimeout> | undefined
  private readonly handle: Win32.Handle
  private readonly readSlot: Win32.Slot
  private readonly writeSlot: Win32.Slot
  constructor(handle: Win32.Handle, readSlot: Win32.Slot, writeSlot: Win32.Slot) {
    super({ allowHalfOpen: false })
    this.handle = handle
    this.readSlot = readSlot
    this.writeSlot = writeSlot
  }

  override _read(): void {
    if (this.reading || this.closing) return
    this.reading = true
    this.inflight++
    Win32.read(this.handle, this.readSlot, (outcome) => {
      this.inflight--
      this.reading = false
      if (this.closing) return this.settle()
      if (this.eof) return
      if (Win32.isError(outcome)) {
        if (ended(outcome)) this.endInput()
        else this.destroy(systemError(outcome, "read failed"))
        return
      }
      if (this.quiet !== undefined) this.quiet.refresh()
      if (outcome === 0 || this.push(Win32.bytesOf(this.readSlot, outcome))) this._read()
    })
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const rest = (bytes: Uint8Array): void => {
      this.inflight++
      Win32.write(this.handle, this.writeSlot, bytes, (outcome) => {
        this.inflight--
        if (this.closing) {
          callback(systemError({ _tag: "Win32Error", code: Win32.ERROR_OPERATION_ABORTED }, "write failed"))
          return this.settle()
        }
        if (Win32.isError(outcome)) return callback(systemError(outcome, "write failed"))
        if (outcome < bytes.byteLength) return rest(bytes.subarray(outcome))
        callback()
      })
    }
    rest(chunk)
  }

  /** Ends the reading side (once): the writing side follows (no half-open pipes). */
  private endInput(): void {
    if (this.eof) return
    this.eof = true
    this.push(null)
  }

  // a named pipe has no half-close: the peer sees the end only once the handle is closed. As libuv
  // does for its pipes on Windows, once our side has ended, input quiet for a moment ends the
  // reading side too, so that the stream closes and the peer sees the end
  override _final(callback: (error?: Error | null) => void): void {
    this.quiet = setTimeout(() => this.endInput(), QUIET_MILLIS)
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.closing = true
    if (this.quiet !== undefined) clearTimeout(this.quiet)
    this.settled = () => {
      Win32.closeHandle(this.handle)
      Win32.freeSlot(this.readSlot)
      Win32.freeSlot(this.writeSlot)
      callback(error)
    }
    if (this.inflight > 0) Win32.cancel(this.handle)
    this.settle()
  }

  private settle(): void {
    if (!this.closing || this.inflight > 0 || this.settled === undefined) return
    const settled = this.settled
    this.settled = undefined
    settled()
  }
}

/** A Duplex over the connected `handle`, which it owns from then on (closed when destroyed). */
const streamOf = (handle: Win32.Handle): Effect.Effect<PipeStream> =>
  Effect.sync(() => {
    const stream = new PipeStream(handle, Win32.makeSlot(BUFFER_SIZE), Win32.makeSlot(BUFFER_SIZE))
    stream.on("error", () => {}) // reported through the channel
    return stream
  })

/** Completes once `stream` has closed its handle (its 'close' event). */
const handleClosed = (stream: PipeStream): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (stream.closed) return resume(Effect.void)
    stream.once("close", () => resume(Effect.void))
  })

const available = (raw: string) =>
  Effect.suspend(() => {
    const missing = Win32.unavailable()
    return missing === undefined ? Effect.void : Effect.fail(new IpcError.IpcError({ ...missing, address: raw }))
  })

/** The pid and user at the other end of a connected handle (`side`: which end we are). */
const peerOf = (
  handle: Win32.Handle,
  side: "server" | "client",
  raw: string
): Effect.Effect<IpcChannel.PeerInfo, IpcError.IpcError> =>
  Effect.suspend(() => {
    const pid = Win32.peerProcessId(handle, side)
    if (Win32.isError(pid)) {
      return Effect.fail(
        IpcError.make("PeerRejected", `cannot read the peer's process id: ${Win32.errorName(pid.code)}`, raw)
      )
    }
    const user = Win32.userOfProcess(pid)
    if (Win32.isError(user)) {
      return Effect.fail(
        IpcError.make(
          "PeerRejected",
          `cannot read the user of the peer (pid ${pid}): ${Win32.errorName(user.code)}`,
          raw
        )
      )
    }
    return Effect.succeed({ pid, user, description: raw })
  })

/**
 * Serves the named pipe `name` (`\\.\pipe\...`) until the scope closes:
 * each client that `authorize` accepts becomes a channel of the listener.
 */
export const listen = (
  name: string,
  raw: string,
  options: NamedPipeOptions = {}
): Effect.Effect<Transport.Listener, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* available(raw)
    const authorize = options.authorize ?? sameUser
    const user = currentUser()
    if (user === undefined) return yield* IpcError.make("PermissionDenied", "cannot read this process's user", raw)
    const sd = yield* Effect.acquireRelease(
      Effect.suspend(() => {
        const made = Win32.securityDescriptor(sddlFor(user))
        return Win32.isError(made)
          ? Effect.fail(
            IpcError.make("Open", `cannot build the security descriptor: ${Win32.errorName(made.code)}`, raw)
          )
          : Effect.succeed(made)
      }),
      (made) => Effect.sync(() => Win32.freeLocal(made))
    )
    // FILE_FLAG_FIRST_PIPE_INSTANCE refuses a name in use on Windows; Wine does not check it
    if (Win32.pipeExists(name)) return yield* IpcError.make("AddressInUse", `${name} is another server's pipe`, raw)
    const first = Win32.createPipe(name, sd, true)
    if (Win32.isError(first)) {
      return yield* first.code === Win32.ERROR_ACCESS_DENIED || first.code === Win32.ERROR_PIPE_BUSY
        ? IpcError.make("AddressInUse", `${name} is another server's pipe`, raw)
        : IpcError.make("Open", `cannot create ${name}: ${Win32.errorName(first.code)}`, raw)
    }
    const slot = Win32.makeSlot(0)
    // counted, and logged a few a minute (a flood of refused peers wrote a warning each)
    const noteRefusal = yield* Observability.refusals(raw)
    const acceptor = yield* Transport.makeAcceptor(raw, { refused: noteRefusal })
    const open = new Set<IpcChannel.IpcChannel>()
    // the pipe is gone (its name free again) only once every handle is closed: the finalizer waits for them
    const streams = new Set<PipeStream>()
    const connections = yield* FiberSet.make<void, never>()
    const runConnection = yield* FiberSet.runtime(connections)<never>()

    const accept = (handle: Win32.Handle) =>
      Effect.gen(function*() {
        const peer = yield* Effect.result(peerOf(handle, "server", raw))
        const refusal = peer._tag === "Failure"
          ? peer.failure
          : authorize(peer.success)
          ? undefined
          : IpcError.make(
            "PeerRejected",
            `refused a peer running as ${peer.success.user} (pid ${peer.success.pid})`,
            raw
          )
        if (refusal !== undefined || peer._tag === "Failure") {
          // counted and logged before the peer can see the refusal
          yield* noteRefusal(refusal ?? IpcError.make("PeerRejected", "refused", raw))
          return Win32.closeHandle(handle)
        }
        const stream = yield* streamOf(handle)
        streams.add(stream)
        stream.once("close", () => streams.delete(stream))
        const channel = yield* StreamChannel.make(
          { readable: stream, writable: stream, halfClose: false },
          raw,
          peer.success,
          options
        )
        open.add(channel)
        yield* acceptor.admit(channel)
        yield* channel.closed
        open.delete(channel)
      }).pipe(Effect.catch((error) => Effect.logWarning("cannot serve a connection", error)))

    // the accept loop runs on callbacks: one instance waits for a client at a time; once one
    // connects, the next instance is created before the connection is served
    let waiting: Win32.Handle | undefined = first
    let closed = false
    let stopped: (() => void) | undefined
    const stop = () => {
      Win32.freeSlot(slot)
      stopped?.()
      stopped = undefined
    }
    const next = (instance: Win32.Handle): void => {
      waiting = instance
      Win32.connect(instance, slot, (outcome) => {
        waiting = undefined
        if (closed) {
          Win32.closeHandle(instance)
          return stop()
        }
        const following = Win32.createPipe(name, sd, false)
        if (Win32.isError(outcome)) Win32.closeHandle(instance) // a client that came and went
        else void runConnection(accept(instance))
        if (Win32.isError(following)) {
          acceptor.end()
          closed = true
          return stop()
        }
        next(following)
      })
    }
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        closed = true
        yield* acceptor.shutdown
        yield* Effect.forEach(open, (channel) => channel.close, { concurrency: "unbounded", discard: true })
        yield* Effect.forEach(streams, handleClosed, { concurrency: "unbounded", discard: true })
        yield* Effect.callback<void>((resume) => {
          // looked at here, not before: the waiting instance may have connected (and, seeing `closed`,
          // stopped) while the fiber yielded to the event loop
          const instance = waiting
          if (instance === undefined) return resume(Effect.void)
          stopped = () => resume(Effect.void)
          Win32.cancel(instance)
        })
      })
    )
    next(first)
    return acceptor.listener
  })

/** Opens the client end of `name`, waiting (off the event loop) while every instance is busy. */
const open = (name: string, raw: string): Effect.Effect<Win32.Handle, IpcError.IpcError> =>
  Effect.gen(function*() {
    for (let attempt = 0; attempt < 10; attempt++) {
      const handle = Win32.openPipe(name)
      if (!Win32.isError(handle)) return handle
      if (handle.code === Win32.ERROR_FILE_NOT_FOUND) {
        return yield* IpcError.fromErrno("ENOENT", "NotFound", `no pipe ${name}`, raw)
      }
      if (handle.code === Win32.ERROR_ACCESS_DENIED) {
        return yield* IpcError.fromErrno("EACCES", "PermissionDenied", `cannot open ${name}`, raw)
      }
      if (handle.code !== Win32.ERROR_PIPE_BUSY) {
        return yield* IpcError.make("Open", `cannot open ${name}: ${Win32.errorName(handle.code)}`, raw)
      }
      yield* Effect.callback<void>((resume) => Win32.waitPipe(name, 1000, () => resume(Effect.void)))
    }
    return yield* IpcError.make("Timeout", `every instance of ${name} stayed busy`, raw)
  })

/**
 * Connects to the named pipe `name` (`\\.\pipe\...`): the server's pid and
 * user are checked with `authorize` before anything is sent.
 */
export const dial = (
  name: string,
  raw: string,
  options: NamedPipeOptions = {}
): Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* available(raw)
    const authorize = options.authorize ?? sameUser
    // the handle is closed on any failure or interruption until the stream owns it
    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(open(name, raw)), (handle) =>
        restore(
          Effect.gen(function*() {
            const peer = yield* peerOf(handle, "client", raw).pipe(
              Effect.filterOrFail(authorize, (server) =>
                IpcError.make(
                  "PeerRejected",
                  `the server runs as ${server.user} (pid ${server.pid}), which authorize refuses`,
                  raw
                ))
            )
            return peer
          })
        ).pipe(
          Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => Win32.closeHandle(handle))),
          Effect.flatMap((peer) =>
            Effect.flatMap(streamOf(handle), (stream) =>
              // released in reverse: the channel closes, then its handle is waited for
              Effect.andThen(
                Effect.addFinalizer(() => handleClosed(stream)),
                StreamChannel.makeScoped({ readable: stream, writable: stream, halfClose: false }, raw, peer, options)
              ))
          )
        ))
    )
  })
