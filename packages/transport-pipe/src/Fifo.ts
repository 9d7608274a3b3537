/**
 * FIFO transport, `fifo:///dir/name`: a pair of named pipes for peers that
 * can only open files. `name.in` carries client-to-server frames, `name.out`
 * server-to-client; both are made with mkfifo (mode 0600) by the listener and
 * removed when it closes. A FIFO pair serves one peer at a time: a second
 * client gets `AddressInUse` while the first is connected.
 *
 * Every open is non-blocking and the descriptors are driven by libuv, so
 * nothing waits on the event loop or the threadpool. The conversation:
 *
 * 1. the listener opens `name.in` for reading, then publishes `name.ready`;
 * 2. a client claims `name.ready` (an atomic rename: one client wins), opens
 *    `name.in` for writing (no reader: `NotFound`), opens `name.out` for
 *    reading and sends a ping frame;
 * 3. on that first frame the listener opens `name.out` for writing.
 *
 * Frames are the effect-ipc frame format. When the conversation ends the
 * listener opens `name.in` afresh for the next client.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as Framing from "@effect-ipc/core/Framing"
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Policy from "@effect-ipc/core/Policy"
import * as StreamChannel from "@effect-ipc/core/StreamChannel"
import * as Transport from "@effect-ipc/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Libc from "./internal/libc.ts"

/** Options of the FIFO transport. */
export interface FifoOptions extends StreamChannel.StreamChannelOptions {
  /** Permission bits of the FIFOs (default 0o600). */
  readonly mode?: number | undefined
  /** Kernel buffer of each FIFO, in bytes (default 1 MiB, capped by the system's pipe-max-size). */
  readonly pipeSize?: number | undefined
  /** How long a client that claimed the pair has to send its first frame (default 2 s). */
  readonly helloTimeout?: Duration.Input | undefined
}

/** The files of a `fifo:` address. */
export interface FifoPaths {
  /** Client-to-server FIFO. */
  readonly toServer: string
  /** Server-to-client FIFO. */
  readonly toClient: string
  /** The listener's pid lock. */
  readonly lock: string
  /** Present while the listener waits for its next peer. */
  readonly ready: string
}

/** The files behind `fifo:///dir/name`: `name.in`, `name.out`, `name.lock`, `name.ready`. */
export const paths = (raw: string): Effect.Effect<FifoPaths, IpcError.IpcError> =>
  Effect.map(Effect.flatMap(Address.parseFor(raw, ["fifo"]), Address.path), (base) => ({
    toServer: `${base}.in`,
    toClient: `${base}.out`,
    lock: `${base}.lock`,
    ready: `${base}.ready`
  }))

const { O_NONBLOCK, O_RDONLY, O_WRONLY } = Fs.constants

const openFd = (path: string, flags: number, raw: string) =>
  Effect.try({
    try: () => Fs.openSync(path, flags | O_NONBLOCK),
    catch: (cause) =>
      IpcError.fromSystemError(
        cause,
        // a FIFO without a reader refuses a writer with ENXIO: nobody is listening
        IpcError.errnoOf(cause) === "ENXIO" ? "NotFound" : "Open",
        `cannot open ${path}`,
        raw
      )
  })

const pipeSocket = (fd: number, readable: boolean) => new Net.Socket({ fd, readable, writable: !readable })

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return IpcError.errnoOf(cause) === "EPERM"
  }
}

const lockOwner = (path: string): number | undefined => {
  try {
    const owner = Number(Fs.readFileSync(path, "utf8").split(":")[0])
    return Number.isInteger(owner) && owner > 0 && isAlive(owner) ? owner : undefined
  } catch {
    return undefined
  }
}

/**
 * Takes a lock file holding `pid:token`; a lock whose owner is dead is taken
 * over, a live one is `AddressInUse`. It is released when the scope closes.
 */
const takeLock = (
  path: string,
  raw: string,
  what: string
): Effect.Effect<void, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const token = `${process.pid}:${Math.random().toString(36).slice(2)}`
    yield* Effect.try({
      try: () => {
        for (let attempt = 0; attempt < 2; attempt++) {
          try {
            Fs.writeFileSync(path, token, { flag: "wx", mode: 0o600 })
            return
          } catch (cause) {
            if (IpcError.errnoOf(cause) !== "EEXIST") throw cause
            const owner = lockOwner(path)
            if (owner !== undefined) throw Object.assign(new Error(`${what} (pid ${owner})`), { code: "EADDRINUSE" })
            Fs.rmSync(path, { force: true })
          }
        }
        throw Object.assign(new Error(what), { code: "EADDRINUSE" })
      },
      catch: (cause) => IpcError.fromSystemError(cause, "Open", "cannot take the lock", raw)
    })
    const release = Effect.sync(() => {
      try {
        if (Fs.readFileSync(path, "utf8") === token) Fs.rmSync(path, { force: true })
      } catch {
        // gone already
      }
    })
    yield* Effect.addFinalizer(() => release)
  })

/** Claims the listener's ready token: true when this caller won the next conversation. */
const claimReady = (files: FifoPaths): boolean => {
  try {
    const claimed = `${files.ready}.${process.pid}.${Math.random().toString(36).slice(2)}`
    Fs.renameSync(files.ready, claimed)
    Fs.rmSync(claimed, { force: true })
    return true
  } catch {
    return false
  }
}

/** Waits for the first bytes on a freshly opened reading end, and puts them back. */
const firstBytes = (socket: Net.Socket): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const onReadable = () => {
      const chunk: Buffer | null = socket.read()
      if (chunk === null) return
      cleanup()
      socket.unshift(chunk)
      resume(Effect.succeed(true))
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(false))
    }
    const cleanup = () => {
      socket.off("readable", onReadable)
      socket.off("end", onEnd)
      socket.off("error", onEnd)
    }
    socket.on("readable", onReadable)
    socket.once("end", onEnd)
    socket.once("error", onEnd)
    return Effect.sync(cleanup)
  })

/** Makes the FIFO transport. */
export const make = (options: FifoOptions = {}): Transport.TransportShape => {
  const mode = options.mode ?? 0o600
  const pipeSize = options.pipeSize ?? 1024 * 1024
  const helloTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.helloTimeout ?? "2 seconds"))
  // a 64 KiB default pipe makes a 1 MiB message cost 16 wake-ups each way
  const sized = (fd: number) => Effect.as(Libc.setPipeSize(fd, pipeSize), fd)
  return {
    schemes: ["fifo"],
    listen: (raw) =>
      Effect.gen(function*() {
        const files = yield* paths(raw)
        yield* takeLock(files.lock, raw, "a live server owns this FIFO pair")
        for (const path of [files.toServer, files.toClient]) {
          yield* Effect.sync(() => Fs.rmSync(path, { force: true }))
          yield* Libc.mkfifo(path, mode, raw)
        }
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const path of [files.toServer, files.toClient, files.ready]) Fs.rmSync(path, { force: true })
          })
        )
        const acceptor = yield* Transport.makeAcceptor(raw)
        let current: IpcChannel.IpcChannel | undefined
        yield* Effect.addFinalizer(() => Effect.andThen(Effect.sync(acceptor.end), current?.close ?? Effect.void))
        // one conversation at a time: wait for a client's first frame, serve it, open afresh
        const openReader = Effect.map(Effect.flatMap(openFd(files.toServer, O_RDONLY, raw), sized), (fd) => {
          const socket = pipeSocket(fd, true)
          Fs.writeFileSync(files.ready, String(process.pid), { mode: 0o600 })
          return socket
        })
        // a client that claimed the pair but never spoke (it died, or hangs) must not keep it
        // forever: after helloTimeout the reader is reopened and the pair offered again
        const claimedButSilent = Effect.gen(function*() {
          let claimedAt: number | undefined
          while (true) {
            yield* Effect.sleep("100 millis")
            if (Fs.existsSync(files.ready)) claimedAt = undefined
            else if (claimedAt === undefined) claimedAt = Date.now()
            else if (Date.now() - claimedAt > helloTimeout) return false
          }
        })
        const conversation = (input: Net.Socket) =>
          Effect.gen(function*() {
            if (!(yield* Effect.raceFirst(firstBytes(input), claimedButSilent))) return input.destroy()
            const output = yield* Effect.flatMap(openFd(files.toClient, O_WRONLY, raw), sized).pipe(
              Effect.tapError(() => Effect.sync(() => input.destroy()))
            )
            const channel = yield* StreamChannel.make(
              { readable: input, writable: pipeSocket(output, false) },
              raw,
              { description: raw },
              options
            )
            current = channel
            acceptor.offer(channel)
            yield* channel.closed
            current = undefined
          }).pipe(Effect.catch((error) => Effect.logDebug("FIFO conversation failed", error)))
        // the first reader is open before listen returns, so a client may dial at once
        let input = yield* openReader
        yield* Effect.forkScoped(Effect.forever(Effect.suspend(() =>
          Effect.andThen(conversation(input), Effect.map(openReader, (next) => void (input = next)))
        )))
        return acceptor.listener
      }),
    dial: (raw) =>
      Effect.gen(function*() {
        const files = yield* paths(raw)
        if (!Fs.existsSync(files.toServer)) return yield* IpcError.make("NotFound", "no FIFO pair at this address", raw)
        // one peer at a time: wait briefly for the listener to be ready for the next one
        const claimed = yield* Effect.sync(() => claimReady(files)).pipe(
          Effect.flatMap((won) => won ? Effect.void : Effect.fail(false)),
          Effect.retry(Policy.retry(6)),
          Effect.as(true),
          Effect.catch(() => Effect.succeed(false))
        )
        if (!claimed) {
          return yield* lockOwner(files.lock) === undefined
            ? IpcError.make("NotFound", "no live server at this FIFO pair", raw)
            : IpcError.make("AddressInUse", "the FIFO pair is busy with another peer", raw)
        }
        const output = pipeSocket(yield* openFd(files.toServer, O_WRONLY, raw), false)
        const input = yield* openFd(files.toClient, O_RDONLY, raw).pipe(
          Effect.tapError(() => Effect.sync(() => output.destroy()))
        )
        // the hello: a ping, which tells the server to open its writing end
        output.write(Framing.encode(Framing.Kind.ping))
        return yield* StreamChannel.makeScoped(
          { readable: pipeSocket(input, true), writable: output },
          raw,
          { description: raw },
          options
        )
      })
  }
}

/** The FIFO transport as the `Transport` service. */
export const layer = (options?: FifoOptions): Layer.Layer<Transport.Transport> =>
  Layer.succeed(Transport.Transport, make(options))
