/**
 * The rendezvous directory of `shm://` listeners: a directory of this user,
 * mode 0700, where each listener's socket file lives (see `ShmTransport`),
 * and the sweep of socket files whose listener died (`SegmentGc`), which
 * removes them through `@effect-ipc/transport-pipe` under the lock a
 * listener takes to bind the same path.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as SocketPath from "@effect-ipc/transport-pipe/SocketPath"
import * as UnixSocket from "@effect-ipc/transport-pipe/UnixSocket"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

const uid = (): number | undefined => RuntimeDir.userId()

/**
 * The default rendezvous directory: `~/.effect-ipc-shm` when the home
 * directory (from the password database) is this user's and not writable by
 * others; else `$XDG_RUNTIME_DIR/effect-ipc-shm` when that is this user's
 * private directory; else `<tmp>/effect-ipc-shm-<uid>` (which another user
 * could create first: then `listen` and `dial` fail with `PermissionDenied`
 * naming its owner; set `directory`).
 */
export const defaultDirectory = (): string => {
  const home = SocketPath.homeDirectory()
  if (SocketPath.ownedDirectory(home, false)) return Path.join(home!, ".effect-ipc-shm")
  const runtime = process.env["XDG_RUNTIME_DIR"]
  if (SocketPath.ownedDirectory(runtime, true)) return Path.join(runtime!, "effect-ipc-shm")
  return Path.join(Os.tmpdir(), `effect-ipc-shm-${uid() ?? "user"}`)
}

/** Why what `stat` describes is not this user's private directory (mode 0700), or `undefined` when it is. */
const notPrivate = (stat: Fs.Stats): string | undefined =>
  !stat.isDirectory()
    ? "is not a directory (a symbolic link or a file is there)"
    : stat.uid !== uid()
    ? `belongs to uid ${stat.uid}, not to this user (uid ${uid()})`
    : (stat.mode & 0o077) !== 0
    ? `is open to other users (mode ${(stat.mode & 0o777).toString(8)}, expected 700)`
    : undefined

/**
 * An absolute path without a trailing slash (`lstat` of "link/" follows the
 * link, and a check of it would pass a symbolic link), or undefined for a
 * relative path or one holding a NUL: the one check of a `directory` option
 * (the transport's and the collector's).
 */
export const resolved = (given: string): string | undefined =>
  Path.isAbsolute(given) && !given.includes("\0") ? Path.resolve(given) : undefined

/**
 * The rendezvous directory (`directory`, or `defaultDirectory()`), created
 * with mode 0700 when missing. Anything else there — a symbolic link, a
 * file, a directory of another user or one that others can enter — is
 * `PermissionDenied`, naming what was found; nothing is changed.
 */
export const directory = (override?: string, address?: string): Effect.Effect<string, IpcError.IpcError> =>
  Effect.suspend(() => {
    const given = override ?? defaultDirectory()
    const refuse = (why: string) =>
      Effect.fail(IpcError.make("PermissionDenied", `the shm:// rendezvous directory ${given} ${why}`, address))
    const dir = resolved(given)
    if (dir === undefined) {
      return Effect.fail(
        IpcError.make("InvalidOption", `the shm:// rendezvous directory ${given} is not an absolute path`, address)
      )
    }
    try {
      Fs.mkdirSync(dir, { mode: 0o700 })
    } catch (cause) {
      const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined
      if (code !== "EEXIST") {
        return Effect.fail(IpcError.fromSystemError(cause, "PermissionDenied", `cannot create ${dir}`, address))
      }
    }
    let stat: Fs.Stats
    try {
      stat = Fs.lstatSync(dir)
    } catch (cause) {
      return Effect.fail(IpcError.fromSystemError(cause, "PermissionDenied", `cannot inspect ${dir}`, address))
    }
    const problem = notPrivate(stat)
    return problem === undefined ? Effect.succeed(dir) : refuse(problem)
  })

/** A socket file in the rendezvous directory whose listener is gone. */
export interface Stale {
  readonly file: string
  readonly path: string
}

/** `live`: something accepts on `path`; `dead`: connecting is refused; `unknown`: anything else. */
const probe = (path: string): Effect.Effect<"live" | "dead" | "unknown"> =>
  Effect.callback<"live" | "dead" | "unknown">((resume) => {
    const socket = Net.createConnection({ path })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed("live"))
    })
    socket.once("error", (cause: Error & { code?: string }) => {
      socket.destroy()
      resume(Effect.succeed(cause.code === "ECONNREFUSED" ? "dead" : "unknown"))
    })
    return Effect.sync(() => socket.destroy())
  }).pipe(Effect.timeoutOrElse({ duration: "1 second", orElse: () => Effect.succeed("unknown" as const) }))

/** The entries of `dir` when it is this user's private directory; else why not (or what reading it threw). */
const listPrivate = (dir: string): ReadonlyArray<string> | string | Error => {
  try {
    return notPrivate(Fs.lstatSync(dir)) ?? Fs.readdirSync(dir)
  } catch (cause) {
    return cause instanceof Error ? cause : new Error(String(cause))
  }
}

/**
 * The socket files in the rendezvous directory `inDirectory` (default: the
 * default one), for names that start with `prefix` if given (a name too long
 * for a socket path has a hashed file, `~<hash>.sock`, that no prefix
 * matches), that belong to this user and whose listener is gone (connecting
 * is refused): a listener killed with `kill -9` leaves its file behind.
 * Nothing when the default directory is missing or not private; a directory
 * given that is missing is `NotFound`, one that is not this user's private
 * directory `PermissionDenied`.
 */
export const staleSockets = (
  prefix?: string,
  inDirectory?: string
): Effect.Effect<ReadonlyArray<Stale>, IpcError.IpcError> =>
  Effect.gen(function*() {
    const given = inDirectory ?? defaultDirectory()
    const dir = resolved(given)
    if (dir === undefined) {
      return yield* IpcError.make("InvalidOption", `the shm:// rendezvous directory ${given} is not an absolute path`)
    }
    const listed = listPrivate(dir)
    if (typeof listed === "string" || listed instanceof Error) {
      // the default directory may not exist yet, or be another's: nothing of ours is there
      if (inDirectory === undefined) return []
      return yield* Effect.fail(
        typeof listed === "string"
          ? IpcError.make("PermissionDenied", `the shm:// rendezvous directory ${dir} ${listed}`)
          : IpcError.fromSystemError(listed, "NotFound", `cannot read the shm:// rendezvous directory ${dir}`)
      )
    }
    const files = listed
    const stale: Array<Stale> = []
    for (const file of files) {
      if (!file.endsWith(".sock") || (prefix !== undefined && !file.startsWith(prefix))) continue
      const path = Path.join(dir, file)
      let stat: Fs.Stats
      try {
        stat = Fs.lstatSync(path)
      } catch {
        continue
      }
      if (!stat.isSocket() || stat.uid !== uid()) continue
      if ((yield* probe(path)) === "dead") stale.push({ file, path })
    }
    return stale
  })

/**
 * Removes a stale socket file: judged again, and unlinked, under the lock a
 * listener takes to bind that path (`UnixSocket.removeStale`: a listener that
 * took the path since is live, and its file is kept); true when removed.
 */
export const removeStale = (stale: Stale): Effect.Effect<boolean> =>
  UnixSocket.removeStale(stale.path).pipe(
    Effect.catch((error) => Effect.as(Effect.logDebug(`gc: left ${stale.file}`, error), false))
  )
