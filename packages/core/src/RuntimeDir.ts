/**
 * Where a user's private runtime files go: `$XDG_RUNTIME_DIR` is trusted only
 * when it is this user's own directory. `su` without `-` keeps another user's
 * `XDG_RUNTIME_DIR`, and a careless environment may name a directory others
 * can write; either would let them rename or replace what is made there. The
 * transports that put sockets, locks or token files under it (transport-pipe's
 * `SocketPath`, transport-ws's token files, and the Python package) fall back
 * to `<tmp>/effect-ipc-<uid>` otherwise, as when it is unset.
 *
 * @since 0.1.0
 */

// node:fs is looked up when first used, not imported: core also bundles and loads in a browser page
const lstat = (path: string) => process.getBuiltinModule("node:fs").lstatSync(path)

/**
 * Whether `dir` may hold this user's runtime directory: an absolute path to a
 * directory (not a symbolic link) owned by the effective user, with no group
 * or other write bit. False where it cannot be looked at, and where there are
 * no user ids (Windows).
 */
export const privateBase = (dir: string): boolean => {
  if (!dir.startsWith("/")) return false
  const uid = globalThis.process?.geteuid?.()
  if (uid === undefined) return false
  try {
    const stat = lstat(dir)
    return stat.isDirectory() && stat.uid === uid && (stat.mode & 0o022) === 0
  } catch {
    return false
  }
}
