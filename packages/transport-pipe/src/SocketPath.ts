/**
 * Where `unix:` and `pipe:` addresses live in the file system. `unix:///path`
 * is a path, `unix:@name` a Linux abstract socket; `pipe://name` is the
 * portable form: a socket in this user's private runtime directory on Unix
 * (`$XDG_RUNTIME_DIR`, else a 0700 directory under the temp directory) and
 * `\\.\pipe\name` on Windows.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** Longest socket path the platform accepts, in bytes (without the final NUL). */
export const maxPathBytes: number = process.platform === "linux" ? 107 : 103

/** A resolved socket endpoint. */
export interface SocketPath {
  /** The path handed to the OS (`\0name` for an abstract socket, `\\.\pipe\name` on Windows). */
  readonly path: string
  /** What kind of endpoint: a socket file, a Linux abstract name, or a Windows named pipe. */
  readonly kind: "file" | "abstract" | "windows-pipe"
}

const pipeName = /^[A-Za-z0-9._-]{1,200}$/

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

/**
 * This user's private directory for `pipe://` sockets: `$XDG_RUNTIME_DIR/effect-ipc`
 * or `<tmp>/effect-ipc-<uid>`, created with mode 0700. An existing directory
 * that another user owns, or that others can enter, is refused.
 */
export const runtimeDir = (raw?: string): Effect.Effect<string, IpcError.IpcError> =>
  Effect.try({
    try: () => {
      const base = process.env["XDG_RUNTIME_DIR"]
      const dir = base !== undefined && base.length > 0
        ? Path.join(base, "effect-ipc")
        : Path.join(Os.tmpdir(), `effect-ipc-${process.getuid?.() ?? "user"}`)
      Fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
      const stat = Fs.lstatSync(dir)
      const uid = process.getuid?.()
      if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o077) !== 0) {
        throw Object.assign(new Error(`${dir} is not a private directory of this user`), { code: "EACCES" })
      }
      return dir
    },
    catch: (cause) => IpcError.fromSystemError(cause, "PermissionDenied", "no private runtime directory", raw)
  })

/** Resolves a `unix:` or `pipe:` address to the endpoint the OS sees, checking the length limit. */
export const resolve = (raw: string): Effect.Effect<SocketPath, IpcError.IpcError> =>
  Effect.gen(function*() {
    const address = yield* Address.parseFor(raw, ["unix", "pipe"])
    if (address.scheme === "pipe") {
      if (!pipeName.test(address.rest)) {
        return yield* IpcError.make("InvalidAddress", "a pipe name is 1-200 of A-Z a-z 0-9 . _ -", raw)
      }
      if (process.platform === "win32") return { path: `\\\\.\\pipe\\${address.rest}`, kind: "windows-pipe" as const }
      const path = Path.join(yield* runtimeDir(raw), `${address.rest}.sock`)
      yield* checkLength(path, raw)
      return { path, kind: "file" as const }
    }
    if (address.rest.startsWith("@")) {
      if (process.platform !== "linux") {
        return yield* IpcError.make("UnsupportedPlatform", "abstract sockets (unix:@name) exist only on Linux", raw)
      }
      const path = `\0${address.rest.slice(1)}`
      yield* checkLength(path, raw)
      return { path, kind: "abstract" as const }
    }
    const path = yield* Address.path(address)
    yield* checkLength(path, raw)
    return { path, kind: "file" as const }
  })
