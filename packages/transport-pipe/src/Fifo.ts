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
 * listener replaces both FIFOs with fresh ones (made at names of their own
 * and swapped in, one step each), which the last client, if it still holds the old
 * ones, can neither read nor write, and opens `name.in` for the next client.
 *
 * The listener never removes what it did not make: FIFOs of this user, a
 * lock naming a dead process (by pid, start time and pid namespace, so that a
 * pid since reused does not keep it) and a ready token holding that lock's
 * text (what a dead listener left) are replaced, anything else at those paths is
 * `AddressInUse`. It opens its FIFOs by path again for every conversation, and
 * each time checks (fstat) that it opened the very FIFO it made (device,
 * inode, owner): one swapped in, or anything else put there, stops the
 * listener with `AddressInUse` (its `accept` fails with it) and is never read
 * or written. The client opens both FIFOs without following
 * links and checks their owner (fstat) with `authorize` before it sends the
 * hello: a pair made by another user is `PeerRejected`; it claims only a ready
 * token that is a regular file whose owner `authorize` admits holding a
 * listener's lock text, and leaves anything else there alone (`AddressInUse`).
 * On Linux the listener looks at, makes, swaps in and removes all of its files
 * through one descriptor of their directory, opened at `listen` and closed
 * with it: a directory on the path that a user swaps for a link to another
 * steers none of that there.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as Framing from "@effect-ipc/core/Framing"
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Observability from "@effect-ipc/core/Observability"
import * as Policy from "@effect-ipc/core/Policy"
import * as Process from "@effect-ipc/core/Process"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as StreamChannel from "@effect-ipc/core/StreamChannel"
import * as Transport from "@effect-ipc/core/Transport"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { Writable } from "node:stream"
import * as DirFile from "./internal/dirFile.ts"
import * as Files from "./internal/files.ts"
import * as Libc from "./internal/libc.ts"
import * as PathLock from "./internal/pathLock.ts"
import { authorizerOf } from "./UnixSocket.ts"

/** Options of the FIFO transport. */
export interface FifoOptions extends StreamChannel.StreamChannelOptions {
  /** Permission bits of the FIFOs (default 0o600); the ready token is readable by those they let in. */
  readonly mode?: number | undefined
  /** Kernel buffer of each FIFO, in bytes (default 1 MiB, capped by the system's pipe-max-size). */
  readonly pipeSize?: number | undefined
  /** How long a client that claimed the pair has to send its first frame (default 2 s). */
  readonly helloTimeout?: Duration.Input | undefined
  /**
   * Decides, on `dial`, whether FIFOs and a ready token owned by this user
   * (uid/gid of the files) may be talked to (default: this user or root);
   * refused is `PeerRejected`.
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

/**
 * The files behind `fifo:///dir/name`: `name.in`, `name.out`, `name.lock`, `name.ready`.
 * An address with no name after its directory (`fifo:///dir/`, `fifo:///dir/.`) is `InvalidAddress`.
 */
export const paths = (raw: string): Effect.Effect<FifoPaths, IpcError.IpcError> =>
  Effect.flatMap(Effect.flatMap(Address.parseFor(raw, ["fifo"]), Address.path), (base) => {
    const name = base.slice(base.lastIndexOf("/") + 1)
    // "fifo:///tmp/" made /tmp/.in, /tmp/.out, ...: hidden files named by no one
    return name === "" || name === "." || name === ".."
      ? Effect.fail(
        IpcError.make(
          "InvalidAddress",
          "a FIFO pair needs a name after its directory: fifo:///dir/name",
          raw
        )
      )
      : Effect.succeed({
        toServer: `${base}.in`,
        toClient: `${base}.out`,
        lock: `${base}.lock`,
        ready: `${base}.ready`
      })
  })

const { O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_WRONLY } = Fs.constants

const openFd = (file: DirFile.DirFile, flags: number, raw: string) =>
  Effect.try({
    try: () => Fs.openSync(file.at, flags | O_NONBLOCK | O_NOFOLLOW),
    catch: (cause) =>
      DirFile.errorAt(
        file,
        cause,
        // a FIFO without a reader refuses a writer with ENXIO: nobody is listening
        IpcError.errnoOf(cause) === "ENXIO" ? "NotFound" : "Open",
        `cannot open ${file.path}`,
        raw
      )
  })

/** How often a client looks at its listener's lock until the listener answers its hello. */
const LISTENER_WATCH = Duration.millis(100)

const pipeSocket = (fd: number, readable: boolean) => new Net.Socket({ fd, readable, writable: !readable })

/**
 * The reply end of a client that sent, closed and left before the listener
 * opened it: every write fails as a pipe without a reader's does (EPIPE), so
 * the channel's sends fail while its input is still read to the client's
 * goodbye (`Closed`; `ConnectionLost` without one).
 */
const gone = (): Writable =>
  new Writable({
    write: (_chunk, _encoding, callback) =>
      callback(Object.assign(new Error("the client has gone: nobody reads its reply end"), { code: "EPIPE" }))
  })

const lockFormat = /^([^:]+):[a-z0-9]+$/

/**
 * The listener named in a lock file of ours, if it is one: a regular file of
 * this user holding `identity:token` (`Process.encode`: pid, start time and
 * pid namespace), or `pid:token` as older versions wrote it.
 */
const lockHolder = (lock: ReturnType<typeof Files.readSmall>): Process.Identity | undefined =>
  lock === undefined || lock.stat.uid !== owner() ? undefined : holderNamed(lock.text)

/** The listener a lock's text (`identity:token`) names, if the text has that form. */
const holderNamed = (text: string): Process.Identity | undefined => {
  const match = lockFormat.exec(text)
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
 * It is released when the scope closes. The lock is reached through `file`'s
 * directory (see `DirFile`), as are all the listener's files.
 */
const takeLock = (
  file: DirFile.DirFile,
  raw: string,
  what: string
): Effect.Effect<Held, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const path = file.path
    const token = `${Process.encode(Process.self())}:${Math.random().toString(36).slice(2)}`
    const attempt = (): "taken" | "exists" => {
      try {
        createHolding(file, token, 0o600)
        return "taken"
      } catch (cause) {
        if (IpcError.errnoOf(cause) !== "EEXIST") throw cause
        return "exists"
      }
    }
    const fail = (cause: unknown) =>
      IpcError.isIpcError(cause) ? cause : DirFile.errorAt(file, cause, "Open", "cannot take the lock", raw)
    // every attempt, not only a takeover, runs under the path lock: a fresh create in the
    // moment between a takeover's unlink and its create would leave both without the pair
    const tookOver = yield* PathLock.withPathLock(
      path,
      raw,
      Effect.try({
        try: () => {
          if (attempt() === "taken") return undefined
          const found = Files.readSmall(file.at)
          if (found === undefined) {
            const stat = Files.lstatIfAny(file.at)
            if (stat !== undefined) throw inUse(path, `${Files.describe(stat)}, not a lock of this user's`, raw)
          } else {
            const holder = lockHolder(found)
            if (holder === undefined) {
              throw inUse(path, `${Files.describe(found.stat)}, not a lock of this user's`, raw)
            }
            if (Process.isAlive(holder)) throw IpcError.make("AddressInUse", `${what} (pid ${holder.pid})`, raw)
            // a dead listener's lock: remove that very file (same file, same text)
            const now = Files.readSmall(file.at)
            if (now === undefined || !Files.sameFile(now.stat, found.stat) || now.text !== found.text) {
              throw IpcError.make("AddressInUse", what, raw)
            }
            Fs.unlinkSync(file.at)
          }
          if (attempt() !== "taken") throw IpcError.make("AddressInUse", what, raw)
          return found?.text
        },
        catch: fail
      })
    )
    return yield* holding(file, token, tookOver)
  })

/** Releases the lock at `file` when the scope closes, if it still holds our token. */
const holding = (file: DirFile.DirFile, token: string, tookOver: string | undefined) =>
  Effect.as(
    Effect.addFinalizer(() =>
      Effect.sync(() => {
        const found = Files.readSmall(file.at)
        if (found?.text === token) removeOurs(file.at, found.stat)
      })
    ),
    { token, tookOver }
  )

/**
 * Clears `file` for a new file: nothing there, or what a dead listener of this
 * user left (`expected` says what: a FIFO, or the ready token holding the text
 * `token` of the dead listener's lock we took over) is removed; anything else
 * is `AddressInUse`. Call only while holding the pair's lock.
 */
const clearLeftover = (file: DirFile.DirFile, expected: "FIFO" | "ready token", raw: string, token?: string) =>
  Effect.try({
    try: () => {
      const path = file.path
      const stat = Files.lstatIfAny(file.at)
      if (stat === undefined) return
      if (stat.uid !== owner()) throw inUse(path, Files.describe(stat), raw)
      if (expected === "FIFO") {
        if (!stat.isFIFO()) throw inUse(path, Files.describe(stat), raw)
        return removeOurs(file.at, stat)
      }
      const found = Files.readSmall(file.at)
      if (found === undefined || token === undefined || found.text !== token || !Files.sameFile(found.stat, stat)) {
        throw inUse(path, `${Files.describe(stat)}, not the ready token of the dead listener`, raw)
      }
      removeOurs(file.at, found.stat)
    },
    catch: (cause) =>
      IpcError.isIpcError(cause) ? cause : DirFile.errorAt(file, cause, "Open", "cannot take the FIFO pair", raw)
  })

/** Where a fresh FIFO for `path` is made before it takes `path`'s place: the name, a dash, 10 random hex digits. */
const freshName = (path: string): string => `${path}.fresh-${Crypto.randomBytes(5).toString("hex")}`

/** What a fresh FIFO's name adds to the FIFO's (`freshName`). */
const FRESH_SUFFIX = ".fresh-".length + 10

/** The part `freshName` adds after the FIFO's name and its dot. */
const FRESH_TAIL = /^fresh-[0-9a-f]{10}$/

/** The longest file name (NAME_MAX on Linux and macOS file systems). */
const NAME_MAX = 255

/**
 * Removes the fresh FIFOs (`name.in.fresh-HEX`, `name.out.fresh-HEX`) a
 * listener of this pair was killed between making and swapping in: only the
 * lock's holder makes them, and the caller holds it now. `toServer`: `name.in`,
 * whose directory is read and cleared through its descriptor (see `DirFile`).
 */
const clearFresh = (toServer: DirFile.DirFile): void => {
  const dir = toServer.dir
  const name = Path.basename(toServer.path).slice(0, -".in".length)
  const fresh = (entry: string) =>
    [`${name}.in.`, `${name}.out.`].some((prefix) =>
      entry.startsWith(prefix) && FRESH_TAIL.test(entry.slice(prefix.length))
    )
  let entries: Array<string>
  try {
    entries = Fs.readdirSync(dir)
  } catch {
    return
  }
  for (const entry of entries) {
    if (!fresh(entry)) continue
    const path = `${dir}/${entry}`
    const stat = Files.lstatIfAnyQuiet(path)
    if (stat?.isFIFO() && stat.uid === owner()) removeOurs(path, stat)
  }
}

/** Whether `stat` is the FIFO this listener made (`made`): owner, kind, device and inode. */
const isOurFifo = (stat: Fs.Stats | undefined, made: Files.FileIdentity): stat is Fs.Stats =>
  stat !== undefined && stat.isFIFO() && stat.uid === owner() && Files.sameFile(stat, made)

/** The owner of the files this process creates. */
const owner = (): number | undefined => RuntimeDir.userId()

/** `AddressInUse`: what is at `path` is no longer the FIFO this listener made (`stat`: what is there now). */
const notOurs = (path: string, raw: string, stat: Fs.Stats | undefined) =>
  IpcError.make(
    "AddressInUse",
    `${path} is no longer the FIFO this listener made: ${
      stat === undefined ? "it is gone" : `it is now ${Files.describe(stat)}`
    }; left untouched`,
    raw
  )

/**
 * Opens `path` (never through a link, never waiting) and checks, on the
 * descriptor, that it is the very FIFO this listener made: a FIFO of this
 * user with the device and inode recorded (`ours`; `"new"`: the FIFO just
 * made, whose kind and owner alone are checked). Anything else, even a FIFO
 * swapped in by whoever may write the directory, is closed unread and
 * unwritten: `notOurs`. Returns the descriptor and what it is.
 */
const openOurs = (
  file: DirFile.DirFile,
  flags: number,
  ours: Files.FileIdentity | "new",
  raw: string
): Effect.Effect<{ readonly fd: number; readonly stat: Fs.Stats }, IpcError.IpcError> =>
  Effect.flatMap(
    Effect.catch(openFd(file, flags, raw), (error) =>
      error.errno === "ENOENT" || error.errno === "ELOOP"
        ? Effect.fail(notOurs(file.path, raw, Files.lstatIfAnyQuiet(file.at)))
        : Effect.fail(error)),
    (fd) =>
      Effect.try({
        try: () => {
          const stat = Fs.fstatSync(fd)
          if (!stat.isFIFO() || stat.uid !== owner() || (ours !== "new" && !Files.sameFile(stat, ours))) {
            throw notOurs(file.path, raw, stat)
          }
          return { fd, stat }
        },
        catch: (cause) => {
          Fs.closeSync(fd)
          return IpcError.isIpcError(cause)
            ? cause
            : IpcError.fromSystemError(cause, "Open", `cannot inspect ${file.path}`, raw)
        }
      })
  )

/**
 * Makes the FIFO at `path` and takes it as ours: opened without following a
 * link, it must be a FIFO of this user (one swapped in between mkfifo and the
 * open is refused), and gets exactly `mode` (mkfifo's is narrowed by the
 * umask) through that descriptor. Returns its identity, to check every later
 * open against and to remove it and only it on close.
 */
const makeFifo = (
  file: DirFile.DirFile,
  mode: number,
  raw: string
): Effect.Effect<Files.FileIdentity, IpcError.IpcError> =>
  Libc.mkfifo(file.at, mode, raw, file.path).pipe(
    // something put there since it was looked at: left alone, like anything found there
    Effect.catch((error) =>
      error.errno === "EEXIST"
        ? Effect.fail(notOurs(file.path, raw, Files.lstatIfAnyQuiet(file.at)))
        : Effect.fail(error)
    ),
    // a FIFO opens for reading at once with O_NONBLOCK
    Effect.andThen(openOurs(file, O_RDONLY, "new", raw)),
    Effect.flatMap(({ fd, stat }) =>
      Effect.try({
        try: () => {
          Fs.fchmodSync(fd, mode)
          return { dev: stat.dev, ino: stat.ino }
        },
        catch: (cause) => IpcError.fromSystemError(cause, "Open", `cannot set the mode of ${file.path}`, raw)
      }).pipe(Effect.ensuring(Effect.sync(() => Fs.closeSync(fd))))
    )
  )

/** Removes `path` (where this process reaches the file: a `DirFile`'s `at`) if it is still the file we created. */
const removeOurs = (path: string, ours: Files.FileIdentity | undefined) => {
  try {
    const stat = Files.lstatIfAny(path)
    if (ours !== undefined && stat !== undefined && Files.sameFile(stat, ours)) Fs.unlinkSync(path)
  } catch {
    // gone already
  }
}

/**
 * Creates `path` holding `text`, with `mode` whatever the umask: never over
 * anything, never through a link (`EEXIST`). A file it made but could not fill
 * (a full disk: `ENOSPC`) is removed before the error is thrown, so that no
 * empty lock or token is left to block the address. What it made.
 */
const createHolding = (file: DirFile.DirFile, text: string, mode: number): Files.FileIdentity => {
  const fd = Fs.openSync(file.at, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_NONBLOCK, 0o600)
  try {
    const made = Fs.fstatSync(fd)
    try {
      Fs.fchmodSync(fd, mode)
      const bytes = Buffer.from(text)
      if (Fs.writeSync(fd, bytes) !== bytes.byteLength) {
        throw Object.assign(new Error(`ENOSPC: no space left on device, write '${file.path}'`), { code: "ENOSPC" })
      }
    } catch (cause) {
      removeOurs(file.at, made)
      throw cause
    }
    return { dev: made.dev, ino: made.ino }
  } finally {
    Fs.closeSync(fd)
  }
}

/** `Files.readSmall`, undefined on any failure. */
const readQuiet = (path: string): ReturnType<typeof Files.readSmall> => {
  try {
    return Files.readSmall(path)
  } catch {
    return undefined
  }
}

/**
 * The listener's ready token, if `found` is one: a regular file whose owner
 * `admits` holding a lock's text (`identity:token`), as a listener writes it.
 * Another user's file, or a file a program of this user left there, is not.
 */
const isReadyToken = (
  found: ReturnType<typeof Files.readSmall>,
  admits: (stat: Fs.Stats) => boolean
): found is NonNullable<ReturnType<typeof Files.readSmall>> =>
  found !== undefined && admits(found.stat) && holderNamed(found.text) !== undefined

/**
 * Claims the listener's ready token (an atomic rename: one client wins); true
 * when this caller won the next conversation, the errno's name when the
 * kernel refused this caller the rename (`EPERM` in a sticky directory, where
 * only the token's owner may rename it), false otherwise. Only a ready token is
 * claimed (checked before the rename, and what was renamed checked again);
 * anything else at `name.ready` is left there.
 */
const claimReady = (files: FifoPaths, admits: (stat: Fs.Stats) => boolean): boolean | "EPERM" | "EACCES" => {
  if (!isReadyToken(readQuiet(files.ready), admits)) return false
  // no longer than a fresh name.out (what listen leaves room for)
  const claimed = `${files.ready}.${Crypto.randomBytes(5).toString("hex")}`
  try {
    Fs.renameSync(files.ready, claimed)
  } catch (cause) {
    const errno = IpcError.errnoOf(cause)
    return errno === "EPERM" || errno === "EACCES" ? errno : false
  }
  if (isReadyToken(readQuiet(claimed), admits)) {
    try {
      Fs.unlinkSync(claimed)
    } catch {
      // the claim is won all the same
    }
    return true
  }
  // swapped since it was read: put it back (never over what is there now)
  try {
    Fs.linkSync(claimed, files.ready)
    Fs.unlinkSync(claimed)
  } catch {
    // left at the name it was moved to
  }
  return false
}

/** Waits for the first bytes on a freshly opened reading end, and puts them back; undefined at its end. */
// the client's hello, which every conversation starts with (a ping frame)
const HELLO = Framing.encode(Framing.Kind.ping)

/** Whether `chunk` starts with the client's hello. */
const saysHello = (chunk: Uint8Array): boolean =>
  chunk.byteLength >= HELLO.byteLength && HELLO.every((byte, i) => chunk[i] === byte)

const firstBytes = (socket: Net.Socket): Effect.Effect<Buffer | undefined> =>
  Effect.callback<Buffer | undefined>((resume) => {
    const onReadable = () => {
      const chunk: Buffer | null = socket.read()
      if (chunk === null) return
      cleanup()
      socket.unshift(chunk)
      resume(Effect.succeed(chunk))
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(undefined))
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
  // options that are not an object (a caller without types): every listen and dial fails with InvalidOption
  const refused = TransportOptions.refusedIfNotAnObject(["fifo"], options)
  if (refused !== undefined) return refused
  const mode = options.mode ?? 0o600
  const pipeSize = options.pipeSize ?? 1024 * 1024
  // a bad one is refused by listen and dial (`optionsOk`) before this is used
  const helloTimeout = TransportOptions.millisOf(options.helloTimeout ?? "2 seconds") ?? 2000
  // a 64 KiB default pipe makes a 1 MiB message cost 16 wake-ups each way
  const sized = (fd: number) => Effect.as(Libc.setPipeSize(fd, pipeSize), fd)
  return {
    schemes: ["fifo"],
    // a refused listen lets go of what it opened and made at once (its directory's descriptor), not with the
    // caller's scope
    listen: (raw) =>
      DirFile.releasedOnFailure(Effect.gen(function*() {
        yield* TransportOptions.optionsOk(options, raw)
        const badMode = TransportOptions.invalidMode(mode, raw)
        if (badMode !== undefined) return yield* badMode
        const files = yield* paths(raw)
        // a name that leaves no room for the fresh FIFOs would serve one conversation and stop
        if (Buffer.byteLength(Path.basename(files.toClient)) + FRESH_SUFFIX > NAME_MAX) {
          return yield* IpcError.make(
            "NameTooLong",
            `the FIFO pair's name is too long: ${
              Path.basename(files.toClient)
            } and the fresh FIFOs made beside it each conversation need at most ${NAME_MAX} bytes`,
            raw
          )
        }
        // every file of the pair is looked at, made, renamed and removed through one descriptor of its directory,
        // opened before anything else (so closed after every finalizer below): a directory on the path that a user
        // swaps for a link to another steers none of it there (see `DirFile`)
        const directory = yield* DirFile.directory(files.toServer)
        const reach = (path: string) => DirFile.fileAt(path, directory)
        const ready = reach(files.ready)
        const held = yield* takeLock(reach(files.lock), raw, "a live server owns this FIFO pair")
        // look at everything before touching anything
        for (const file of [reach(files.toServer), reach(files.toClient)]) {
          yield* Effect.try({
            try: () => {
              const stat = Files.lstatIfAny(file.at)
              if (stat !== undefined && (!stat.isFIFO() || stat.uid !== owner())) {
                throw inUse(file.path, Files.describe(stat), raw)
              }
            },
            catch: (cause) =>
              IpcError.isIpcError(cause)
                ? cause
                : DirFile.errorAt(file, cause, "Open", "cannot take the FIFO pair", raw)
          })
        }
        yield* clearLeftover(ready, "ready token", raw, held.tookOver)
        yield* Effect.sync(() => clearFresh(reach(files.toServer)))
        // what we made, to check every later open against and to remove on close: the FIFOs and
        // the current ready token. An inode number is reused once its file is gone (ext4 at once),
        // so a file is ours only with the owner and kind (FIFOs) or the text (token) we gave it too
        const ours = new Map<string, Files.FileIdentity>()
        let token: Files.FileIdentity | undefined
        const ourToken = () => {
          const found = readQuiet(ready.at)
          return found !== undefined && token !== undefined && found.text === held.token &&
              Files.sameFile(found.stat, token)
            ? found.stat
            : undefined
        }
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            for (const [path, id] of ours) {
              const at = reach(path).at
              const stat = Files.lstatIfAnyQuiet(at)
              if (stat?.isFIFO() && stat.uid === owner()) removeOurs(at, id)
            }
            const left = ourToken()
            if (left !== undefined) removeOurs(ready.at, left)
          })
        )
        const fifoAt = (path: string) =>
          Effect.andThen(
            clearLeftover(reach(path), "FIFO", raw),
            Effect.tap(makeFifo(reach(path), mode, raw), (id) => Effect.sync(() => void ours.set(path, id)))
          )
        let toServer = yield* fifoAt(files.toServer)
        let toClient = yield* fifoAt(files.toClient)
        const acceptor = yield* Transport.makeAcceptor(raw)
        let current: IpcChannel.IpcChannel | undefined
        // why the listener stopped by itself, if it did: what accept and connections fail with then
        let stopped: IpcError.IpcError | undefined
        // the reading end waiting for a client goes last, once the conversation's channel has said goodbye
        let input: Net.Socket | undefined
        yield* Effect.addFinalizer(() => Effect.sync(() => input?.destroy()))
        yield* Effect.addFinalizer(() => Effect.andThen(acceptor.shutdown, current?.close ?? Effect.void))
        // one conversation at a time: wait for a client's first frame, serve it, open afresh
        // publishes the ready token: exclusive create (never through a link, never over a planted
        // file), readable by whoever may open the FIFOs (a client checks it); a token of ours still
        // there (a writer came and went without claiming) stays
        const tokenMode = 0o600 | ((mode | (mode << 1)) & 0o044)
        const isOffered = () => ourToken() !== undefined
        const publishReady = () => {
          if (isOffered()) return
          try {
            // the lock's token: a successor can tell our leftover token from a user's file
            token = createHolding(ready, held.token, tokenMode)
          } catch (cause) {
            const stat = IpcError.errnoOf(cause) === "EEXIST" ? Files.lstatIfAny(ready.at) : undefined
            throw stat === undefined ? cause : inUse(files.ready, Files.describe(stat), raw)
          }
        }
        const openReader = Effect.suspend(() => openOurs(reach(files.toServer), O_RDONLY, toServer, raw)).pipe(
          Effect.flatMap(({ fd }) => sized(fd)),
          Effect.flatMap((fd) =>
            Effect.try({
              try: () => {
                publishReady()
                return pipeSocket(fd, true)
              },
              catch: (cause) => {
                Fs.closeSync(fd) // not yet owned by a socket
                return IpcError.isIpcError(cause)
                  ? cause
                  : DirFile.errorAt(ready, cause, "Open", "cannot publish the ready token", raw)
              }
            })
          )
        )
        // a client that claimed the pair but never spoke (it died, or hangs) must not keep it
        // forever: after helloTimeout the reader is reopened and the pair offered again (a file
        // someone else put at name.ready does not count as offered)
        const claimedButSilent = Effect.gen(function*() {
          let claimedAt: number | undefined
          while (true) {
            yield* Effect.sleep("100 millis")
            if (isOffered()) {
              claimedAt = undefined
            } else if (claimedAt === undefined) {
              claimedAt = Date.now()
            } else if (Date.now() - claimedAt > helloTimeout) {
              return false
            }
          }
        })
        const conversation = (reader: Net.Socket) =>
          Effect.gen(function*() {
            const first = yield* Effect.raceFirst(firstBytes(reader), claimedButSilent)
            if (first === undefined || typeof first === "boolean") return reader.destroy()
            // every conversation starts with its client's hello: anything else is what an earlier client
            // (closed on, or killed, while it wrote) left in name.in, never the start of this one
            if (!saysHello(first)) {
              yield* Effect.logDebug("FIFO: bytes that are not a client's hello dropped (an earlier client's)")
              return reader.destroy()
            }
            // nobody reads name.out (ENXIO): a client that sent, closed and left before we looked, whose
            // frames wait in name.in and are delivered (when they start with a client's hello, and name.out
            // is still the FIFO we made)
            const clientGone = (error: IpcError.IpcError) =>
              Effect.suspend(() => {
                if (error.errno !== "ENXIO" || !saysHello(first)) return Effect.fail(error)
                const now = Files.lstatIfAnyQuiet(reach(files.toClient).at)
                return now !== undefined && Files.sameFile(now, toClient)
                  ? Effect.succeed(gone())
                  : Effect.fail(notOurs(files.toClient, raw, now))
              })
            const output = yield* openOurs(reach(files.toClient), O_WRONLY, toClient, raw).pipe(
              Effect.flatMap(({ fd }) => sized(fd)),
              Effect.map((fd): Writable => pipeSocket(fd, false)),
              Effect.catch(clientGone),
              Effect.tapError(() => Effect.sync(() => reader.destroy()))
            )
            // our close ends the conversation at once: the next peer does not wait (up to the linger) for the
            // answer of a client that may never give it
            const channel = yield* StreamChannel.make(
              { readable: reader, writable: output, awaitsAnswer: false },
              raw,
              { description: raw },
              options
            )
            current = channel
            yield* acceptor.admit(channel)
            yield* channel.closed
            current = undefined
          }).pipe(
            // a client that left before its reply end was opened is its own failure; a pair
            // that is no longer ours (AddressInUse) stops the listener
            Effect.catch((error) =>
              error.reason._tag === "AddressInUse"
                ? Effect.fail(error)
                : Effect.logDebug("FIFO conversation failed", error)
            )
          )
        // each conversation gets FIFOs nobody else holds. The last client may still have name.out open for
        // reading (its close returns once its goodbye has left; it lets go of the pipe when it sees our end,
        // which may be much later), and a reply read there is lost: the next client waits for it for ever. It
        // may still be writing to name.in (it has not yet seen our goodbye), and what it writes once name.in
        // has a reader again would be read as the next client's. So both are replaced before the pair is
        // offered again: a fresh FIFO made at a name of its own and swapped in for each (the old ones go once
        // their last holder lets go; the last client's writes find no reader, EPIPE)
        const renew = (path: string, made: Files.FileIdentity) =>
          Effect.suspend(() => {
            const file = reach(path)
            const now = Files.lstatIfAnyQuiet(file.at)
            if (!isOurFifo(now, made)) return Effect.fail(notOurs(path, raw, now))
            const fresh = reach(freshName(path))
            const swap = Libc.exchange(fresh.at, file.at, raw, [fresh.path, path])
            // a system without an exchange: renamed over, what was looked at just before
            const renamed = (id: Files.FileIdentity) =>
              Effect.try({
                try: () => {
                  Fs.renameSync(fresh.at, file.at)
                  return id
                },
                catch: (cause) => {
                  removeOurs(fresh.at, id)
                  return DirFile.errorAt(file, cause, "Open", `cannot replace ${path}`, raw)
                }
              })
            // swapped in one step: what comes back is the FIFO we made, and is removed; anything else (swapped
            // in since the look) is swapped back, untouched, and the listener stops
            const exchanged = (id: Files.FileIdentity) =>
              Effect.suspend(() => {
                const back = Files.lstatIfAnyQuiet(fresh.at)
                if (isOurFifo(back, made)) {
                  removeOurs(fresh.at, back)
                  return Effect.succeed(id)
                }
                return swap.pipe(
                  Effect.andThen(Effect.sync(() => removeOurs(fresh.at, id))),
                  Effect.ignore,
                  Effect.andThen(Effect.fail(notOurs(path, raw, back)))
                )
              })
            return Effect.uninterruptible(
              Effect.flatMap(makeFifo(fresh, mode, raw), (id) =>
                swap.pipe(
                  Effect.matchEffect({
                    onFailure: (error) =>
                      error.errno === "ENOSYS" || error.errno === "EINVAL" || error.errno === "ENOTSUP"
                        ? renamed(id)
                        : Effect.andThen(Effect.sync(() => removeOurs(fresh.at, id)), Effect.fail(error)),
                    onSuccess: () => exchanged(id)
                  }),
                  Effect.tap(() => Effect.sync(() => void ours.set(path, id)))
                ))
            )
          })
        const renewPair = Effect.gen(function*() {
          toClient = yield* renew(files.toClient, toClient)
          toServer = yield* renew(files.toServer, toServer)
        })
        // the pair offered again: fresh FIFOs, the reading end, the ready token. With no room for them (a full
        // disk, no inode or descriptor left: NoSpace), nothing is offered (a dialer hears "busy") and it is
        // tried again, up to a second apart, until there is: another user filling a shared /tmp for a moment
        // does not end the listener. One warning per shortage, not one per try
        const short = Observability.spell()
        const reopen = Effect.andThen(renewPair, Effect.map(openReader, (next) => void (input = next))).pipe(
          Effect.tapError((error) =>
            error.reason._tag === "NoSpace"
              ? short.begin("FIFO listener: no room to offer the pair again; trying again", error)
              : Effect.void
          ),
          Effect.retry({ schedule: Policy.reconnect, while: (error) => error.reason._tag === "NoSpace" }),
          Effect.tap(() =>
            Effect.suspend(() =>
              short.end() ? Effect.logInfo("FIFO listener: room again; the pair is offered") : Effect.void
            )
          )
        )
        // the first reader is open before listen returns, so a client may dial at once
        const opened = yield* openReader
        input = opened
        yield* Effect.forkScoped(
          Effect.forever(Effect.suspend(() => Effect.andThen(conversation(input ?? opened), reopen))).pipe(
            // the pair cannot be offered again: end the listener rather than leave accept hanging
            Effect.catch((error) =>
              Effect.andThen(
                Effect.logWarning("FIFO listener stopped", error),
                Effect.sync(() => {
                  stopped = error
                  acceptor.end()
                })
              )
            )
          )
        )
        const listener: Transport.Listener = {
          address: acceptor.listener.address,
          accept: Effect.catch(acceptor.listener.accept, (error) => Effect.fail(stopped ?? error)),
          connections: Stream.concat(
            acceptor.listener.connections,
            Stream.suspend(() => stopped === undefined ? Stream.empty : Stream.fail(stopped))
          )
        }
        return listener
      })),
    dial: (raw) =>
      Effect.gen(function*() {
        yield* TransportOptions.optionsOk(options, raw)
        const authorize = authorizerOf(options.authorize)
        const files = yield* paths(raw)
        if (!Fs.existsSync(files.toServer)) return yield* IpcError.make("NotFound", "no FIFO pair at this address", raw)
        // the ready token and the FIFOs must be made by a user authorize admits
        const admits = (stat: Fs.Stats) => authorize({ uid: stat.uid, gid: stat.gid, description: raw })
        // the kernel's refusal of the last claim (a sticky directory and another user's token), if it was one
        let claimRefusal: string | undefined
        // one peer at a time: wait briefly for the listener to be ready for the next one
        const claimed = yield* Effect.sync(() => claimReady(files, admits)).pipe(
          Effect.flatMap((won) => {
            claimRefusal = typeof won === "string" ? won : undefined
            return won === true ? Effect.void : Effect.fail(false)
          }),
          Effect.retry(Policy.retry(6)),
          Effect.as(true),
          Effect.catch(() => Effect.succeed(false))
        )
        if (!claimed) {
          // a file at name.ready that is not a listener's token (another user's, or a program's): left alone
          const present = Files.lstatIfAnyQuiet(files.ready)
          if (present !== undefined && !admits(present)) {
            return yield* IpcError.make(
              "PeerRejected",
              `${files.ready} is ${Files.describe(present)}, which authorize refuses: left untouched`,
              raw
            )
          }
          if (present !== undefined) {
            const found = readQuiet(files.ready)
            if (found === undefined && present.isFile()) {
              return yield* IpcError.make(
                "PermissionDenied",
                `cannot read the ready token ${files.ready} (${Files.describe(present)})`,
                raw
              )
            }
            if (!isReadyToken(found, admits)) {
              return yield* inUse(files.ready, `${Files.describe(present)}, not the listener's ready token`, raw)
            }
          }
          if (claimRefusal !== undefined) {
            return yield* IpcError.make(
              "NotFound",
              `cannot claim the ready token ${files.ready} (${claimRefusal}): ${
                claimRefusal === "EPERM"
                  ? "in a sticky directory only its owner may rename it"
                  : "this user may not write its directory"
              }; put the FIFO pair in a directory without the sticky bit that its clients may write`,
              raw
            )
          }
          return yield* lockOwner(files.lock) === undefined
            ? IpcError.make("NotFound", "no live server at this FIFO pair", raw)
            : IpcError.make(
              "AddressInUse",
              "the FIFO pair is busy: another peer holds it, or its listener has no room to offer it again",
              raw
            )
        }
        // the listener that offered the pair, as its lock names it (watched below until it answers)
        const offeredBy = lockOwner(files.lock)
        // a listener of another user (that authorize admits): its lock (0600, theirs) cannot tell this user whether it
        // lives, and is not watched; none there, or this user's, is
        const lockStat = Files.lstatIfAnyQuiet(files.lock)
        const lockWatched = lockStat === undefined || lockStat.uid === owner()
        // who made the FIFOs? checked on what was opened (no link followed) before the hello
        const checked = (fd: number, path: string) =>
          Effect.try({
            try: () => Fs.fstatSync(fd),
            catch: (cause) => IpcError.fromSystemError(cause, "Open", `cannot inspect ${path}`, raw)
          }).pipe(
            Effect.filterOrFail(
              (stat) => stat.isFIFO() && admits(stat),
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
          Effect.flatMap(openFd(DirFile.fileAt(path, undefined), flags, raw), (fd) => checked(fd, path))
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
            // until the listener's first byte (its pong), the input has had no writer: a listener that died before
            // opening its end leaves it so for good, and the kernel reports no hang-up on a FIFO that never had a
            // writer (a receive waited for ever). Its lock is watched meanwhile: gone, or another's, the input fails
            let answered = false
            input.once("data", () => {
              answered = true
            })
            const listenerGone = (): boolean => {
              const now = lockOwner(files.lock)
              return now === undefined || (offeredBy !== undefined && Process.encode(now) !== Process.encode(offeredBy))
            }
            const watch = Effect.repeat(
              Effect.sync(() => {
                if (answered || input.destroyed) return false
                if (!listenerGone()) return true
                input.destroy(
                  Object.assign(new Error("the listener died before it answered the hello"), { code: "ECONNRESET" })
                )
                return false
              }),
              { schedule: Schedule.spaced(LISTENER_WATCH), while: (waiting) => waiting }
            )
            const channel = yield* restore(
              StreamChannel.makeScoped({ readable: input, writable: output }, raw, { description: raw }, options)
            ).pipe(
              Effect.onExit((exit) =>
                Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => (input.destroy(), output.destroy()))
              )
            )
            if (lockWatched) yield* Effect.forkScoped(watch)
            return channel
          })
        )
      })
  }
}

/** The FIFO transport as the `Transport` service (instrumented), its options checked as it is built (`Transport.layerOf`). */
export const layer = (options?: FifoOptions): Layer.Layer<Transport.Transport, IpcError.IpcError> =>
  Transport.layerOf(make, options)
