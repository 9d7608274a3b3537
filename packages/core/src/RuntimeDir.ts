/**
 * Where a user's private runtime files go, the one rule every transport and
 * the Python package follow: `$XDG_RUNTIME_DIR/effect-ipc` when
 * `$XDG_RUNTIME_DIR` is this user's own directory that no other user can
 * write; else, as when it is unset, a 0700 `effect-ipc-<uid>` directory under
 * the temp directory (under `/tmp` on macOS, whose `$TMPDIR` is too long for
 * its 104-byte socket paths). `su` without `-` keeps another user's
 * `XDG_RUNTIME_DIR`, and a careless environment may name a directory others
 * can write; either would let them rename or replace what is made there.
 *
 * "This user" is the effective user id ({@link userId}): the one that owns
 * what the process creates and that a peer's credentials report, so a process
 * that dropped privileges with `process.seteuid` finds its own directory.
 * The rule is a pure function of a {@link Host}, so any platform's can be
 * checked on any machine (`directoryOn`).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as IpcError from "./IpcError.ts"

// node:fs and node:os are looked up when first used, not imported: core also bundles and loads in a browser page
const fs = () => process.getBuiltinModule("node:fs")
const join = (...parts: Array<string>): string => process.getBuiltinModule("node:path").posix.join(...parts)

/**
 * This process's effective user id, which owns what it creates and which a
 * Unix socket peer's credentials carry; undefined where there are no user
 * ids (Windows, a browser).
 */
export const userId = (): number | undefined => globalThis.process?.geteuid?.()

/** What the runtime-directory rule depends on: the platform, the environment, the user id and the temp directory. */
export interface Host {
  /** `process.platform` of the machine the rules are for (`linux`, `darwin`, `win32`, ...). */
  readonly platform: string
  /** Its environment (only `XDG_RUNTIME_DIR` is read). */
  readonly env: Readonly<Record<string, string | undefined>>
  /** The effective user id ({@link userId}), undefined where there is none. */
  readonly uid: number | undefined
  /** Its temp directory, as `os.tmpdir()` gives it. */
  readonly tmpdir: string
  /**
   * Whether `dir`, the value of `XDG_RUNTIME_DIR`, may hold this user's
   * runtime directory. `currentHost`'s looks at the file system
   * (`privateBase`); a host described rather than looked at may leave it
   * out, and its `XDG_RUNTIME_DIR` is then taken as fit.
   */
  readonly runtimeBaseFits?: ((dir: string) => boolean) | undefined
}

/**
 * True when `dir` is an absolute path to a directory (not a link) of this
 * process's effective user that no other user can write (no group or other
 * write bit, sticky or not; with `privateOnly`, that no one else can enter
 * either). False where it cannot be looked at, and where there are no user ids.
 */
export const ownedDirectory = (dir: string | undefined, privateOnly = false): boolean => {
  if (dir === undefined || !dir.startsWith("/")) return false
  const uid = userId()
  if (uid === undefined) return false
  try {
    const stat = fs().lstatSync(dir)
    return stat.isDirectory() && stat.uid === uid && (stat.mode & (privateOnly ? 0o077 : 0o022)) === 0
  } catch {
    return false
  }
}

/** Whether `dir` may hold this user's runtime directory (`ownedDirectory`: this user's, no one else may write it). */
export const privateBase = (dir: string): boolean => ownedDirectory(dir)

/** This process's host: its platform, environment, effective user id and temp directory, and `privateBase`. */
export const currentHost = (): Host => ({
  platform: process.platform,
  env: process.env,
  uid: userId(),
  tmpdir: process.getBuiltinModule("node:os").tmpdir(),
  runtimeBaseFits: privateBase
})

/**
 * A host's runtime directory: `$XDG_RUNTIME_DIR/effect-ipc` when that is set
 * and the host's `runtimeBaseFits` takes it; else `<tmpdir>/effect-ipc-<uid>`,
 * and on macOS, for sockets (`sockets`, the default), `/tmp/effect-ipc-<uid>`
 * (its `$TMPDIR`, `/var/folders/.../T`, would leave little of a socket path's
 * 104 bytes for names). Creates nothing; touches the file system only through
 * `runtimeBaseFits`.
 */
export const directoryOn = (host: Host, options: { readonly sockets?: boolean | undefined } = {}): string => {
  const base = host.env["XDG_RUNTIME_DIR"]
  if (base !== undefined && base.length > 0 && (host.runtimeBaseFits?.(base) ?? true)) {
    return join(base, "effect-ipc")
  }
  const tmp = host.platform === "darwin" && options.sockets !== false ? "/tmp" : host.tmpdir
  return join(tmp, `effect-ipc-${host.uid ?? "user"}`)
}

/** Whether anything is at `dir` itself (a link is not followed). */
const exists = (dir: string): boolean => {
  try {
    fs().lstatSync(dir)
    return true
  } catch {
    return false
  }
}

/**
 * Creates `dir` with mode 0700 if it is missing (its parents too, unless
 * `recursive` is false) and refuses it with `PermissionDenied` unless it is a
 * directory (not a link) of this user that no one else can enter: one that
 * another user made first, or anything else found there (a file, a link), is
 * never used.
 */
export const ensurePrivate = (
  dir: string,
  raw?: string,
  recursive = true
): Effect.Effect<string, IpcError.IpcError> =>
  Effect.try({
    try: () => {
      try {
        fs().mkdirSync(dir, { recursive, mode: 0o700 })
      } catch (cause) {
        // something is there that is not a directory (a file, a FIFO, a link, dangling or not): refused
        // below as not a private directory; nothing there (a parent missing, not ours...): as it failed
        if (!exists(dir)) throw cause
      }
      const stat = fs().lstatSync(dir)
      const uid = userId()
      if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o077) !== 0) {
        throw Object.assign(new Error(`${dir} is not a private directory of this user`), { code: "EACCES" })
      }
      return dir
    },
    catch: (cause) => IpcError.fromSystemError(cause, "PermissionDenied", "no private runtime directory", raw)
  })

/** This process's runtime directory (`directoryOn(currentHost())`), made private if missing (`ensurePrivate`). */
export const directory = (raw?: string): Effect.Effect<string, IpcError.IpcError> =>
  Effect.suspend(() => ensurePrivate(directoryOn(currentHost()), raw))
