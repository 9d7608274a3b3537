/**
 * Where an `nng+ipc://` listener's conversations run: a private directory
 * beside the lobby's socket file (in the temporary directory when a path
 * there would be too long), one socket per conversation in it. The directory's
 * name says whose it is, as transport-pipe's `ListenerDirs` names a listener's
 * directories: `.eipc-<key>-<identity>-XXXXXX`.
 *
 * The directory is made only in a parent whose entries no other user can
 * rename or replace (`entriesStay`: this user's or root's, and writable by no
 * one else or sticky, as /tmp): else another user could swap what the
 * listener made for a link or a directory of theirs. Its mode is set through
 * a descriptor of the directory made (opened without following a link, and
 * checked to be this user's directory), never by path.
 *
 * The listener removes its directory when it closes, only if it is still the
 * one it made (same device and inode, not a link). A listener that was
 * killed cannot: the next listener at the same path (`sweep`, run under the
 * path's lock) removes the directories of that path whose process is dead,
 * and nothing else.
 *
 * @internal
 */
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as ListenerDirs from "@effect-ipc/transport-pipe/ListenerDirs"
import * as SocketPath from "@effect-ipc/transport-pipe/SocketPath"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** A fresh conversation socket name: 24 hex digits (12 random bytes), as `ListenerDirs.sweep` knows them. */
export const socketName = (): string => Crypto.randomBytes(12).toString("hex")

/**
 * Where this process would make the conversations' directory of `lobbyPath`:
 * beside it when a conversation's socket path there (the directory, `/`, a
 * 24-digit name) fits the platform's limit, else the temporary directory.
 */
const parentOf = (lobbyPath: string): string =>
  fitsBeside(lobbyPath, Buffer.byteLength(ListenerDirs.prefixOf(lobbyPath))) ? Path.dirname(lobbyPath) : Os.tmpdir()

/** Whether "<beside>/<prefix>XXXXXX/<24 hex digits>" fits a socket path, for a prefix of `prefixBytes`. */
const fitsBeside = (lobbyPath: string, prefixBytes: number): boolean =>
  Buffer.byteLength(Path.dirname(lobbyPath)) + 1 + prefixBytes + 6 + 1 + 24 <= SocketPath.maxPathBytes

/** A conversations' directory `make` made: its path, and its device and inode, to know it again. */
export interface Directory {
  readonly path: string
  readonly dev: bigint
  readonly ino: bigint
}

/** An error as the file system's are, with an errno code (`IpcError.fromSystemError` maps it). */
const refusal = (message: string, code: string) => Object.assign(new Error(message), { code })

/**
 * Makes the conversations' directory of the lobby at `lobbyPath` (see the
 * module's comment), with mode 0700, searchable by the group or others only
 * when `mode` (the socket files') lets them connect. Throws what `mkdtemp`,
 * `open`, `fstat` and `fchmod` throw, and EACCES when the parent lets other
 * users rename or replace its entries (see `entriesStay`) or when what is at
 * the new path is not this user's directory (replaced meanwhile; it is left
 * alone).
 */
export const make = (lobbyPath: string, mode: number): Directory => {
  const uid = RuntimeDir.userId()
  const parent = parentOf(lobbyPath)
  if (uid !== undefined && !ListenerDirs.entriesStay(parent, uid)) {
    throw refusal(
      `${parent} lets other users rename or replace what is in it (it is neither this user's nor root's, ` +
        "or others may write it and it is not sticky): the conversations' directory cannot be made there",
      "EACCES"
    )
  }
  const path = Fs.mkdtempSync(Path.join(parent, ListenerDirs.prefixOf(lobbyPath)))
  const permissions = 0o700 | (mode & 0o060 ? 0o010 : 0) | (mode & 0o006 ? 0o001 : 0)
  const { O_DIRECTORY, O_NOFOLLOW, O_RDONLY } = Fs.constants
  if (O_DIRECTORY === undefined || O_NOFOLLOW === undefined) {
    // no such flags (Windows): no links for another user to plant either
    Fs.chmodSync(path, permissions)
    const stat = Fs.lstatSync(path, { bigint: true })
    return { path, dev: stat.dev, ino: stat.ino }
  }
  // a link planted at the path fails here (ELOOP), anything but a directory too (ENOTDIR)
  const fd = Fs.openSync(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
  try {
    const stat = Fs.fstatSync(fd, { bigint: true })
    if (!stat.isDirectory() || (uid !== undefined && stat.uid !== BigInt(uid))) {
      throw refusal(`${path} is not the directory this listener made (replaced meanwhile)`, "EACCES")
    }
    Fs.fchmodSync(fd, permissions)
    return { path, dev: stat.dev, ino: stat.ino }
  } finally {
    Fs.closeSync(fd)
  }
}

/**
 * Removes this listener's own directory and what is in it, if what is at its
 * path is still that directory (not a link, same device and inode): else
 * (replaced meanwhile) nothing is touched. Inside it, everything but
 * directories is unlinked (only this listener writes there: its
 * conversations' sockets); the directory goes only if that left it empty.
 * Never throws.
 */
export const remove = (dir: Directory): void => {
  try {
    const stat = Fs.lstatSync(dir.path, { bigint: true })
    if (!stat.isDirectory() || stat.dev !== dir.dev || stat.ino !== dir.ino) return
    for (const entry of Fs.readdirSync(dir.path)) {
      const path = Path.join(dir.path, entry)
      const found = lstatIfAny(path)
      if (found !== undefined && !found.isDirectory()) Fs.unlinkSync(path)
    }
    Fs.rmdirSync(dir.path)
  } catch {
    // gone meanwhile, or something left in it: left as it is
  }
}

/** True while what is at `dir`'s path is still that directory (not a link, same device and inode). */
export const isThere = (dir: Directory): boolean => {
  try {
    const stat = Fs.lstatSync(dir.path, { bigint: true })
    return stat.isDirectory() && stat.dev === dir.dev && stat.ino === dir.ino
  } catch {
    return false
  }
}

const lstatIfAny = (path: string): Fs.Stats | undefined => {
  try {
    return Fs.lstatSync(path)
  } catch {
    return undefined
  }
}

/**
 * Removes the conversations' directories that dead listeners at `lobbyPath`
 * left (killed before they could remove them), beside it and, where some
 * listener's would not have fitted there, in the temporary directory
 * (`ListenerDirs.sweep`); returns the directories removed. Run it holding the
 * lobby path's lock, after the lobby listens. Never throws.
 */
export const sweep = (lobbyPath: string): ReadonlyArray<string> =>
  ListenerDirs.sweep(
    lobbyPath,
    // the temporary directory only when some listener's directory would not have fitted beside the lobby
    fitsBeside(lobbyPath, ListenerDirs.LONGEST_PREFIX)
      ? [Path.dirname(lobbyPath)]
      : [Path.dirname(lobbyPath), Os.tmpdir()]
  )
