/**
 * Where `unix:` and `pipe:` addresses live in the file system. `unix:///path`
 * is a path, `unix:@name` a Linux abstract socket; `pipe://name` is the
 * portable form: a socket in this user's private runtime directory on Unix
 * (`$XDG_RUNTIME_DIR/effect-ipc` when `$XDG_RUNTIME_DIR` is a directory of this
 * user that no other user can write, else a 0700 `effect-ipc-<uid>` directory:
 * under the temp directory on Linux, under `/tmp` on macOS, whose `$TMPDIR`
 * is too long for its 104-byte socket paths) and `\\.\pipe\name` on Windows.
 * The rules are pure functions of a {@link Host} (this process's looks at
 * `$XDG_RUNTIME_DIR` to decide whether to use it), so any platform's can be
 * checked on any machine (`resolveOn`, `runtimeDirOn`).
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** What the path rules depend on: the platform, the environment, the user id and the temp directory (core's `RuntimeDir.Host`). */
export type Host = RuntimeDir.Host

/**
 * True when `dir` is an absolute path to a directory (not a link) of this
 * process's effective user that no other user can write (core's
 * `RuntimeDir.privateBase`, the test for `XDG_RUNTIME_DIR`).
 */
export const privateBase: (dir: string) => boolean = RuntimeDir.privateBase

/** This process's host: its platform, environment, effective user id and temp directory (core's `RuntimeDir.currentHost`). */
export const currentHost: () => Host = RuntimeDir.currentHost

/**
 * Longest socket path a platform accepts, in bytes without the final NUL:
 * 107 on Linux (`sun_path` holds 108), 103 elsewhere (macOS and the BSDs: 104).
 */
export const maxPathBytesOn = (platform: string): number => platform === "linux" ? 107 : 103

/** Longest socket path this platform accepts, in bytes (without the final NUL). */
export const maxPathBytes: number = maxPathBytesOn(process.platform)

/** A resolved socket endpoint. */
export interface SocketPath {
  /** The path handed to the OS (`\0name` for an abstract socket, `\\.\pipe\name` on Windows). */
  readonly path: string
  /** What kind of endpoint: a socket file, a Linux abstract name, or a Windows named pipe. */
  readonly kind: "file" | "abstract" | "windows-pipe"
}

const pipeName = /^[A-Za-z0-9._-]{1,200}$/

/** Whether `name` is a `pipe://` name: 1-200 of A-Z a-z 0-9 . _ - (so neither empty nor holding a `/`). */
export const isPipeName = (name: string): boolean => pipeName.test(name)

const checkLength = (path: string, raw: string, platform: string) => {
  const bytes = Buffer.byteLength(path)
  const max = maxPathBytesOn(platform)
  return bytes > max
    ? Effect.fail(
      IpcError.make(
        "NameTooLong",
        `socket path is ${bytes} bytes; ${platform} allows at most ${max} (${max + 1} with the final NUL)`,
        raw
      )
    )
    : Effect.void
}

/**
 * Where a host's `pipe://` sockets live: its runtime directory (core's
 * `RuntimeDir.directoryOn`): `$XDG_RUNTIME_DIR/effect-ipc` when that is set
 * and the host's `runtimeBaseFits` takes it (for `currentHost`: a directory of
 * this user that no other user can write, so not, say, the `XDG_RUNTIME_DIR`
 * of another user that `su` without `-` kept); else `/tmp/effect-ipc-<uid>`
 * on macOS and `<tmpdir>/effect-ipc-<uid>` elsewhere. Creates nothing.
 */
export const runtimeDirOn = (host: Host): string => RuntimeDir.directoryOn(host)

/**
 * This user's private directory for `pipe://` sockets (see `runtimeDirOn`),
 * created with mode 0700. An existing directory that another user owns, or
 * that others can enter, is refused.
 */
export const runtimeDir: (raw?: string) => Effect.Effect<string, IpcError.IpcError> = RuntimeDir.directory

/**
 * Where this user's path locks live (`fifo://` pairs, replacing a stale
 * socket): the private runtime directory (see `runtimeDir`); when that is
 * unusable (another user made `<tmp>/effect-ipc-<uid>` first, and
 * `XDG_RUNTIME_DIR` is unset or not used), `~/.effect-ipc-locks` (mode 0700)
 * in the home directory of the password database, when that is this user's
 * and not writable by others. Every process of the user finds the same directory.
 */
export const lockDir = (raw?: string): Effect.Effect<string, IpcError.IpcError> =>
  Effect.catch(runtimeDir(raw), (error) =>
    Effect.suspend(() => {
      const home = homeDirectory()
      if (home === undefined || !ownedDirectory(home, false)) {
        // (it named the runtime directory alone: a fifo:// listen in a directory of one's own failed with no hint)
        return Effect.fail(
          new IpcError.IpcError({
            reason: error.reason,
            address: error.address,
            errno: error.errno,
            cause: error.cause,
            detail: `${error.detail}; nor is the home directory (${home ?? "unknown"}) one of this user that others ` +
              "cannot write, for ~/.effect-ipc-locks: set XDG_RUNTIME_DIR to a private directory of this user"
          })
        )
      }
      // not recursive: the home directory is there already
      return Effect.mapError(
        RuntimeDir.ensurePrivate(Path.join(home, ".effect-ipc-locks"), raw, false),
        (second) => IpcError.make("PermissionDenied", `${error.detail}; and ${second.detail}`, raw)
      )
    }))

/**
 * This user's home directory, from the password database (not `$HOME`, so
 * that every process of the user finds the same one); undefined if unknown.
 */
export const homeDirectory = (): string | undefined => {
  try {
    return Os.userInfo().homedir
  } catch {
    return undefined
  }
}

/**
 * True when `dir` is an absolute path to a directory (not a link) of this
 * user that no other user can write (with `privateOnly`, nor enter): a base
 * for directories of this user's own (core's `RuntimeDir.ownedDirectory`).
 */
export const ownedDirectory: (dir: string | undefined, privateOnly: boolean) => boolean = RuntimeDir.ownedDirectory

const locate = (address: Address.Address, raw: string, host: Host): Effect.Effect<SocketPath, IpcError.IpcError> =>
  Effect.gen(function*() {
    if (address.scheme === "pipe") {
      if (!pipeName.test(address.rest)) {
        return yield* IpcError.make("InvalidAddress", "a pipe name is 1-200 of A-Z a-z 0-9 . _ -", raw)
      }
      if (host.platform === "win32") return { path: `\\\\.\\pipe\\${address.rest}`, kind: "windows-pipe" as const }
      const path = Path.posix.join(runtimeDirOn(host), `${address.rest}.sock`)
      yield* checkLength(path, raw, host.platform)
      return { path, kind: "file" as const }
    }
    if (address.rest.startsWith("@")) {
      if (host.platform !== "linux") {
        return yield* IpcError.make("UnsupportedPlatform", "abstract sockets (unix:@name) exist only on Linux", raw)
      }
      // `unix:@` alone named the empty abstract name, where a name was surely meant (as `unix:` is refused)
      if (address.rest === "@") {
        return yield* IpcError.make("InvalidAddress", "an abstract socket needs a name: unix:@name", raw)
      }
      const path = `\0${address.rest.slice(1)}`
      // an abstract name fills sun_path after its leading NUL, with no final one: 107 bytes on Linux
      const bytes = Buffer.byteLength(path) - 1
      const max = maxPathBytesOn(host.platform)
      if (bytes > max) {
        return yield* IpcError.make(
          "NameTooLong",
          `abstract socket name is ${bytes} bytes; ${host.platform} allows at most ${max}`,
          raw
        )
      }
      return { path, kind: "abstract" as const }
    }
    const path = yield* Address.path(address)
    yield* checkLength(path, raw, host.platform)
    return { path, kind: "file" as const }
  })

/**
 * Resolves a `unix:` or `pipe:` address as it would be on `host`, checking
 * that platform's length limit; creates nothing (`resolve` is this on the
 * current host, plus the runtime directory).
 */
export const resolveOn = (raw: string, host: Host): Effect.Effect<SocketPath, IpcError.IpcError> =>
  Effect.flatMap(Address.parseFor(raw, ["unix", "pipe"]), (address) => locate(address, raw, host))

/** Resolves a `unix:` or `pipe:` address to the endpoint the OS sees, checking the length limit. */
export const resolve = (raw: string): Effect.Effect<SocketPath, IpcError.IpcError> =>
  Effect.gen(function*() {
    const address = yield* Address.parseFor(raw, ["unix", "pipe"])
    const host = currentHost()
    const endpoint = yield* locate(address, raw, host)
    if (address.scheme === "pipe" && endpoint.kind === "file") {
      yield* RuntimeDir.ensurePrivate(runtimeDirOn(host), raw)
    }
    return endpoint
  })

/**
 * A descriptor of the directory of `path` (Linux) that `/proc/self/fd/N` reaches, or undefined where none can be
 * had (no /proc mounted, another OS): a listener reaches its files through it, so that a directory on the path
 * swapped for a link to another steers nothing there. The caller closes it.
 */
export const openDirectory = (path: string): number | undefined => {
  if (process.platform !== "linux") return undefined
  let fd: number
  try {
    fd = Fs.openSync(Path.dirname(path), Fs.constants.O_RDONLY | Fs.constants.O_DIRECTORY)
  } catch {
    return undefined
  }
  try {
    const through = Fs.statSync(`/proc/self/fd/${fd}`, { bigint: true })
    const opened = Fs.fstatSync(fd, { bigint: true })
    if (through.isDirectory() && through.dev === opened.dev && through.ino === opened.ino) return fd
  } catch {
    // no /proc here, or not this process's
  }
  Fs.closeSync(fd)
  return undefined
}
