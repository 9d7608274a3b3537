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
 * The listener never removes what it did not make: FIFOs of this user, a
 * lock naming a dead process (by pid, start time and pid namespace, so that a
 * pid since reused does not keep it) and a ready token holding that lock's
 * text (what a dead listener left) are replaced, anything else at those paths is
 * `AddressInUse`. The client opens both FIFOs without following
 * links and checks their owner (fstat) with `authorize` before it sends the
 * hello: a pair made by another user is `PeerRejected`.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as Framing from "@effect-ipc/core/Framing"
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Policy from "@effect-ipc/core/Policy"
import * as Process from "@effect-ipc/core/Process"
import * as StreamChannel from "@effect-ipc/core/StreamChannel"
import * as Transport from "@effect-ipc/core/Transport"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Files from "./internal/files.ts"
import * as Libc from "./internal/libc.ts"
import * as PathLock from "./internal/pathLock.ts"
import { sameUserOrRoot } from "./UnixSocket.ts"

/** Options of the FIFO transport. */
export interface FifoOptions extends StreamChannel.StreamChannelOptions {
  /** Permission bits of the FIFOs (default 0o600). */
  readonly mode?: number | undefined
  /** Kernel buffer of each FIFO, in bytes (default 1 MiB, capped by the system's pipe-max-size). */
  readonly pipeSize?: number | undefined
  /** How long a client that claimed the pair has to send its first frame (default 2 s). */
  readonly helloTimeout?: Duration.Input | undefined
  /**
   * Decides, on `dial`, whether FIFOs owned by this user (uid/gid of the files)
   * may be talked to (default: this user or root); refused is `PeerRejected`.
   */
  readonly authorize?: ((owner: IpcChannel.PeerInfo) => boolean) | undefined
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

const { O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_WRONLY } = Fs.constants

const openFd = (path: string, flags: number, raw: string) =>
  Effect.try({
    try: () => Fs.openSync(path, flags | O_NONBLOCK | O_NOFOLLOW),
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

const lockFormat = /^([^:]+):[a-z0-9]+$/

/**
 * The listener named in a lock file of ours, if it is one: a regular file of
 * this user holding `identity:token` (`Process.encode`: pid, start time and
 * pid namespace), or `pid:token` as older versions wrote it.
 */
const lockHolder = (lock: ReturnType<typeof Files.readSmall>): Process.Identity | undefined => {
  if (lock === undefined || lock.stat.uid !== process.getuid?.()) return undefined
  const match = lockFormat.exec(lock.text)
  return match === null ? undefined : Process.decode(match[1]!)
}

/** The live listener named by the lock file at `path`, if any (a pid since reused by another process is not). */
const lockOwner = (path: string): Process.Identity | undefined => {
  const holder = lockHolder(Files.readSmall(path))
  return holder !== undefined && Process.isAlive(holder) ? holder : undefined
}

/** `AddressInUse`, for what is at `path` and is left alone. */
const inUse = (path: string, what: string, raw: string) =>
  IpcError.make("AddressInUse", `${path} is ${what}: left untouched`, raw)

/** The lock we hold: our token, and the token of the dead listener we took over (if any). */
interface Held {
  readonly token: string
  readonly tookOver: string | undefined
}

/**
 * Takes a lock file holding `identity:token`; a lock whose owner is dead is taken
 * over, a live one is `AddressInUse`. It is taken, and a takeover judged and
 * done, under this user's lock for the path (so of many listeners exactly one
 * gets it), and a takeover removes only the very file read (same device,
 * inode and text).
 * It is released when the scope closes.
 */
const takeLock = (
  path: string,
  raw: string,
  what: string
): Effect.Effect<Held, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const token = `${Process.encode(Process.self())}:${Math.random().toString(36).slice(2)}`
    const attempt = (): "taken" | "exists" => {
      try {
        Fs.writeFileSync(path, token, { flag: "wx", mode: 0o600 })
        return "taken"
      } catch (cause) {
        if (IpcError.errnoOf(cause) !== "EEXIST") throw cause
        return "exists"
      }
    }
    const fail = (cause: unknown) =>
      IpcError.isIpcError(cause) ? cause : IpcError.fromSystemError(cause, "Open", "cannot take the lock", raw)
    // every attempt, not only a takeover, runs under the path lock: a fresh create in the
    // moment between a takeover's unlink and its create would leave both without the pair
    const tookOver = yield* PathLock.withPathLock(
      path,
      raw,
      Effect.try({
        try: () => {
          if (attempt() === "taken") return undefined
          const found = Files.readSmall(path)
          if (found === undefined) {
            const stat = Files.lstatIfAny(path)
            if (stat !== undefined) throw inUse(path, `${Files.describe(stat)}, not a lock of this user's`, raw)
          } else {
            const holder = lockHolder(found)
            if (holder === undefined) {
              throw inUse(path, `${Files.describe(found.stat)}, not a lock of this user's`, raw)
            }
            if (Process.isAlive(holder)) throw IpcError.make("AddressInUse", `${what} (pid ${holder.pid})`, raw)
            // a dead listener's lock: remove that very file (same file, same text)
            const now = Files.readSmall(path)
            if (now === undefined || !Files.sameFile(now.stat, found.stat) || now.text !== found.text) {
              throw IpcError.make("AddressInUse", what, raw)
            }
            Fs.unlinkSync(path)
          }
          if (attempt() !== "taken") throw IpcError.make("AddressInUse", what, raw)
          return found?.text
        },
        catch: fail
      })
    )
    return yield* holding(path, token, tookOver)
  })

/** Releases the lock at `path` when the scope closes, if it still holds our token. */
const holding = (path: string, token: string, tookOver: string | undefined) =>
  Effect.as(
    Effect.addFinalizer(() =>
      Effect.sync(() => {
        const found = Files.readSmall(path)
        if (found?.text === token) removeOurs(path, found.stat)
      })
    ),
    { token, tookOver }
  )

/**
 * Clears `path` for a new file: nothing there, or what a dead listener of this
 * user left (`expected` says what: a FIFO, or the ready token holding the text
 * `token` of the dead listener's lock we took over) is removed; anything else
 * is `AddressInUse`. Call only while holding the pair's lock.
 */
const clearLeftover = (path: string, expected: "FIFO" | "ready token", raw: string, token?: string) =>
  Effect.try({
    try: () => {
      const stat = Files.lstatIfAny(path)
      if (stat === undefined) return
      if (stat.uid !== process.getuid?.()) throw inUse(path, Files.describe(stat), raw)
      if (expected === "FIFO") {
        if (!stat.isFIFO()) throw inUse(path, Files.describe(stat), raw)
        return removeOurs(path, stat)
      }
      const found = Files.readSmall(path)
      if (found === undefined || token === undefined || found.text !== token || !Files.sameFile(found.stat, stat)) {
        throw inUse(path, `${Files.describe(stat)}, not the ready token of the dead listener`, raw)
      }
      removeOurs(path, found.stat)
    },
    catch: (cause) =>
      IpcError.isIpcError(cause) ? cause : IpcError.fromSystemError(cause, "Open", "cannot take the FIFO pair", raw)
  })

/** Records what we created at `path`, to remove it and only it on close. */
const identify = (path: string, raw: string): Effect.Effect<Files.FileIdentity | undefined, IpcError.IpcError> =>
  Effect.try({
    try: () => {
      const stat = Files.lstatIfAny(path)
      return stat === undefined ? undefined : { dev: stat.dev, ino: stat.ino }
    },
    catch: (cause) => IpcError.fromSystemError(cause, "Open", `cannot look at ${path}`, raw)
  })

/**
 * Gives the FIFO just made at `path` exactly `mode` (mkfifo's is narrowed by
 * the umask), through a descriptor of the very FIFO made (never through a
 * link or another file put in its place).
 */
const settleMode = (
  path: string,
  made: Files.FileIdentity | undefined,
  mode: number,
  raw: string
): Effect.Effect<void, IpcError.IpcError> =>
  Effect.try({
    try: () => {
      // a FIFO opens for reading at once with O_NONBLOCK
      const fd = Fs.openSync(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW)
      try {
        const stat = Fs.fstatSync(fd)
        if (!stat.isFIFO() || made === undefined || !Files.sameFile(stat, made)) {
          throw inUse(path, Files.describe(stat), raw)
        }
        Fs.fchmodSync(fd, mode)
      } finally {
        Fs.closeSync(fd)
      }
    },
    catch: (cause) =>
      IpcError.isIpcError(cause)
        ? cause
        : IpcError.fromSystemError(cause, "Open", `cannot set the mode of ${path}`, raw)
  })

/** Removes `path` if it is still the file we created. */
const removeOurs = (path: string, ours: Files.FileIdentity | undefined) => {
  try {
    const stat = Files.lstatIfAny(path)
    if (ours !== undefined && stat !== undefined && Files.sameFile(stat, ours)) Fs.unlinkSync(path)
  } catch {
    // gone already
  }
}

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
  const authorize = options.authorize ?? sameUserOrRoot
  // a 64 KiB default pipe makes a 1 MiB message cost 16 wake-ups each way
  const sized = (fd: number) => Effect.as(Libc.setPipeSize(fd, pipeSize), fd)
  return {
    schemes: ["fifo"],
    listen: (raw) =>
      Effect.gen(function*() {
        const files = yield* paths(raw)
        const held = yield* takeLock(files.lock, raw, "a live server owns this FIFO pair")
        // look at everything before touching anything
        for (const path of [files.toServer, files.toClient]) {
          yield* Effect.try({
            try: () => {
              const stat = Files.lstatIfAny(path)
              if (stat !== undefined && (!stat.isFIFO() || stat.uid !== process.getuid?.())) {
                throw inUse(path, Files.describe(stat), raw)
              }
            },
            catch: (cause) =>
              IpcError.isIpcError(cause)
                ? cause
                : IpcError.fromSystemError(cause, "Open", "cannot take the FIFO pair", raw)
          })
        }
        yield* clearLeftover(files.ready, "ready token", raw, held.tookOver)
        const ours = new Map<string, Files.FileIdentity | undefined>()
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const [path, id] of ours) removeOurs(path, id)
          })
        )
        for (const path of [files.toServer, files.toClient]) {
          yield* clearLeftover(path, "FIFO", raw)
          yield* Libc.mkfifo(path, mode, raw)
          const made = yield* identify(path, raw)
          ours.set(path, made)
          yield* settleMode(path, made, mode, raw)
        }
        const acceptor = yield* Transport.makeAcceptor(raw)
        let current: IpcChannel.IpcChannel | undefined
        yield* Effect.addFinalizer(() => Effect.andThen(Effect.sync(acceptor.end), current?.close ?? Effect.void))
        // one conversation at a time: wait for a client's first frame, serve it, open afresh
        // publishes the ready token: exclusive create (never through a link, never over a planted
        // file); a token of ours still there (a writer came and went without claiming) stays
        const publishReady = () => {
          const present = Files.lstatIfAny(files.ready)
          const mine = ours.get(files.ready)
          if (present !== undefined && mine !== undefined && Files.sameFile(present, mine)) return
          // the lock's token: a successor can tell our leftover token from a user's file
          Fs.writeFileSync(files.ready, held.token, { mode: 0o600, flag: "wx" })
          const made = Files.lstatIfAny(files.ready)
          ours.set(files.ready, made === undefined ? undefined : { dev: made.dev, ino: made.ino })
        }
        const openReader = Effect.flatMap(Effect.flatMap(openFd(files.toServer, O_RDONLY, raw), sized), (fd) =>
          Effect.try({
            try: () => {
              publishReady()
              return pipeSocket(fd, true)
            },
            catch: (cause) => {
              Fs.closeSync(fd) // not yet owned by a socket
              return IpcError.fromSystemError(cause, "Open", "cannot publish the ready token", raw)
            }
          }))
        // a client that claimed the pair but never spoke (it died, or hangs) must not keep it
        // forever: after helloTimeout the reader is reopened and the pair offered again
        const claimedButSilent = Effect.gen(function*() {
          let claimedAt: number | undefined
          while (true) {
            yield* Effect.sleep("100 millis")
            if (Fs.existsSync(files.ready)) {
              claimedAt = undefined
            } else if (claimedAt === undefined) {
              claimedAt = Date.now()
            } else if (Date.now() - claimedAt > helloTimeout) {
              return false
            }
          }
        })
        const conversation = (input: Net.Socket) =>
          Effect.gen(function*() {
            if (!(yield* Effect.raceFirst(firstBytes(input), claimedButSilent))) {
              return input.destroy()
            }
            const output = yield* Effect.flatMap(openFd(files.toClient, O_WRONLY, raw), sized).pipe(
              Effect.tapError(() =>
                Effect.sync(() =>
                  input.destroy()
                )
              )
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
        yield* Effect.forkScoped(
          Effect.forever(Effect.suspend(() =>
            Effect.andThen(
              conversation(input),
              Effect.map(openReader, (next) => void (input = next))
            )
          )).pipe(
            // the pair cannot be offered again: end the listener rather than leave accept hanging
            Effect.catch((error) =>
              Effect.andThen(Effect.logWarning("FIFO listener stopped", error), Effect.sync(acceptor.end))
            )
          )
        )
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
        // who made the FIFOs? checked on what was opened (no link followed) before the hello
        const checked = (fd: number, path: string) =>
          Effect.try({
            try: () => Fs.fstatSync(fd),
            catch: (cause) => IpcError.fromSystemError(cause, "Open", `cannot inspect ${path}`, raw)
          }).pipe(
            Effect.filterOrFail(
              (stat) => stat.isFIFO() && authorize({ uid: stat.uid, gid: stat.gid, description: raw }),
              (stat) =>
                IpcError.make(
                  "PeerRejected",
                  `${path} is ${Files.describe(stat)}, which authorize refuses`,
                  raw
                )
            ),
            Effect.tapError(() => Effect.sync(() => Fs.closeSync(fd))),
            Effect.as(fd)
          )
        const opened = (path: string, flags: number) =>
          Effect.flatMap(openFd(path, flags, raw), (fd) => checked(fd, path))
        // the opens do not wait; from the first open until the channel owns the
        // descriptors, any failure or interruption closes them
        return yield* Effect.uninterruptibleMask((restore) =>
          Effect.gen(function*() {
            const output = pipeSocket(yield* opened(files.toServer, O_WRONLY), false)
            const inputFd = yield* opened(files.toClient, O_RDONLY).pipe(
              Effect.tapError(() => Effect.sync(() => output.destroy()))
            )
            const input = pipeSocket(inputFd, true)
            // the hello: a ping, which tells the server to open its writing end
            output.write(Framing.encode(Framing.Kind.ping))
            return yield* restore(
              StreamChannel.makeScoped({ readable: input, writable: output }, raw, { description: raw }, options)
            ).pipe(
              Effect.onExit((exit) =>
                Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => (input.destroy(), output.destroy()))
              )
            )
          })
        )
      })
  }
}

/** The FIFO transport as the `Transport` service. */
export const layer = (options?: FifoOptions): Layer.Layer<Transport.Transport> =>
  Layer.succeed(Transport.Transport, make(options))
