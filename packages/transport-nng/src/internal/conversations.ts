/**
 * Where an `nng+ipc://` listener's conversations run: a private directory
 * beside the lobby's socket file (in the temporary directory when a path
 * there would be too long), one socket per conversation in it. The directory's
 * name says whose it is: `.eipc-<key>-<identity>-XXXXXX`, with `key` the first
 * 8 hex digits of a SHA-256 of the lobby's path, `identity` the listener's
 * process as core's `Process.encode` writes it (pid, start time, pid
 * namespace) and `XXXXXX` `mkdtemp`'s random suffix.
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
import * as Process from "@effect-ipc/core/Process"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as SocketPath from "@effect-ipc/transport-pipe/SocketPath"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** A conversation's socket name: 24 hex digits (12 random bytes). */
const SOCKET_NAME = /^[0-9a-f]{24}$/

/** A fresh conversation socket name (see `SOCKET_NAME`). */
export const socketName = (): string => Crypto.randomBytes(12).toString("hex")

/** A conversations' directory: `.eipc-<key>-<pid@start.ns>-<mkdtemp's 6 characters>`, nothing more. */
const DIRECTORY_NAME = /^\.eipc-([0-9a-f]{8})-([1-9][0-9]{0,9}@[0-9]{1,10}\.[0-9]{1,10})-[A-Za-z0-9]{6}$/

/** The part of a directory's name that names the lobby: 8 hex digits of a SHA-256 of its absolute path. */
const keyOf = (lobbyPath: string): string =>
  Crypto.createHash("sha256").update(Path.resolve(lobbyPath)).digest("hex").slice(0, 8)

/** What `mkdtemp` is given: the name of a directory of this process for the lobby, without the random suffix. */
const prefixOf = (lobbyPath: string): string => `.eipc-${keyOf(lobbyPath)}-${Process.encode(Process.self())}-`

/**
 * Where this process would make the conversations' directory of `lobbyPath`:
 * beside it when a conversation's socket path there (the directory, `/`, a
 * 24-digit name) fits the platform's limit, else the temporary directory.
 */
const parentOf = (lobbyPath: string): string =>
  fitsBeside(lobbyPath, Buffer.byteLength(prefixOf(lobbyPath))) ? Path.dirname(lobbyPath) : Os.tmpdir()

/** Whether "<beside>/<prefix>XXXXXX/<24 hex digits>" fits a socket path, for a prefix of `prefixBytes`. */
const fitsBeside = (lobbyPath: string, prefixBytes: number): boolean =>
  Buffer.byteLength(Path.dirname(lobbyPath)) + 1 + prefixBytes + 6 + 1 + 24 <= SocketPath.maxPathBytes

/** The longest prefix any listener makes: ".eipc-", the key, "-", the longest identity `DIRECTORY_NAME` takes, "-". */
const LONGEST_PREFIX = 6 + 8 + 1 + (10 + 1 + 10 + 1 + 10) + 1

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
  if (uid !== undefined && !entriesStay(parent, uid)) {
    throw refusal(
      `${parent} lets other users rename or replace what is in it (it is neither this user's nor root's, ` +
        "or others may write it and it is not sticky): the conversations' directory cannot be made there",
      "EACCES"
    )
  }
  const path = Fs.mkdtempSync(Path.join(parent, prefixOf(lobbyPath)))
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

/** The sticky bit (`S_ISVTX`): in such a directory only an entry's owner (or the directory's) may rename or remove it. */
const STICKY = 0o1000

const lstatIfAny = (path: string): Fs.Stats | undefined => {
  try {
    return Fs.lstatSync(path)
  } catch {
    return undefined
  }
}

/**
 * True when no other user can rename or replace the entries of `dir` (so a
 * directory of ours checked there stays the one checked): `dir` belongs to
 * `uid` or root, and only its owner may write it, or it is sticky (/tmp).
 */
const entriesStay = (dir: string, uid: number): boolean => {
  try {
    const stat = Fs.statSync(dir)
    return stat.isDirectory() && (stat.uid === uid || stat.uid === 0) &&
      ((stat.mode & 0o022) === 0 || (stat.mode & STICKY) !== 0)
  } catch {
    return false
  }
}

/**
 * Removes the conversations' directories that dead listeners at `lobbyPath`
 * left (killed before they could remove them), beside it and in the
 * temporary directory; returns the directories removed. A directory is
 * removed only when its name matches exactly, with the key of this path,
 * and names a process that is dead (`Process.liveness`: a live one, or one of
 * another pid namespace, is left alone); when it is a directory (not a link)
 * of this user that no other user may write; and when its parent lets no
 * other user replace it meanwhile. In it, only conversation sockets (24 hex
 * digits) of this user are removed; the directory then goes only if that
 * left it empty. Run it holding the lobby path's lock, after the lobby
 * listens. Never throws.
 */
export const sweep = (lobbyPath: string): ReadonlyArray<string> => {
  const uid = RuntimeDir.userId()
  if (uid === undefined) return []
  const key = keyOf(lobbyPath)
  const removed: Array<string> = []
  // the temporary directory only when some listener's directory would not have fitted beside the lobby
  const parents = fitsBeside(lobbyPath, LONGEST_PREFIX)
    ? [Path.dirname(lobbyPath)]
    : [Path.dirname(lobbyPath), Os.tmpdir()]
  for (const parent of new Set(parents)) {
    if (!entriesStay(parent, uid)) continue
    let names: Array<string>
    try {
      names = Fs.readdirSync(parent)
    } catch {
      continue
    }
    for (const name of names) {
      const match = DIRECTORY_NAME.exec(name)
      if (match === null || match[1] !== key) continue
      const owner = Process.decode(match[2]!)
      if (owner === undefined) continue
      const dir = Path.join(parent, name)
      const stat = lstatIfAny(dir)
      if (stat === undefined || !stat.isDirectory() || stat.uid !== uid || (stat.mode & 0o022) !== 0) continue
      // the listener made it before its last change: a later process with its pid is not the listener
      if (Process.liveness(owner, stat.mtimeMs) !== "dead") continue
      try {
        for (const entry of Fs.readdirSync(dir)) {
          if (!SOCKET_NAME.test(entry)) continue
          const socket = Path.join(dir, entry)
          const found = lstatIfAny(socket)
          if (found !== undefined && found.isSocket() && found.uid === uid) Fs.unlinkSync(socket)
        }
        // only when nothing else is left in it
        Fs.rmdirSync(dir)
        removed.push(dir)
      } catch {
        // something else inside, or gone meanwhile: left as it is
      }
    }
  }
  return removed
}
