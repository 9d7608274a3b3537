/**
 * The private directories a listener makes beside its socket path: a
 * `unix://` listener's staging directory (where its socket is bound before it
 * is linked into place), an `nng+ipc://` listener's conversations. Their
 * name says whose they are, `.eipc-<key>-<identity>-XXXXXX`: `key` the first
 * 8 hex digits of a SHA-256 of the socket's absolute path, `identity` the
 * listener's process as core's `Process.encode` writes it (pid, start time,
 * pid namespace), `XXXXXX` `mkdtemp`'s random suffix. A listener removes its
 * own; one that was killed cannot, and the next listener at the same path
 * removes what it left (`sweep`).
 *
 * @since 0.1.0
 */
import * as Process from "@effect-ipc/core/Process"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"

/** A listener's directory: `.eipc-<key>-<pid@start.ns>-<mkdtemp's 6 characters>`, nothing more. */
const DIRECTORY_NAME = /^\.eipc-([0-9a-f]{8})-([1-9][0-9]{0,9}@[0-9]{1,10}\.[0-9]{1,10})-[A-Za-z0-9]{6}$/

/** What a listener leaves in its directory: a staging socket (`s`) or conversation sockets (24 hex digits). */
const LEFTOVER = /^(s|[0-9a-f]{24})$/

/** The part of a directory's name that names the socket path: 8 hex digits of a SHA-256 of its absolute path. */
const keyOf = (socketPath: string): string =>
  Crypto.createHash("sha256").update(Path.resolve(socketPath)).digest("hex").slice(0, 8)

/** What `mkdtemp` is given (without the directory): the name of this process's directory for `socketPath`, without the random suffix. */
export const prefixOf = (socketPath: string): string => `.eipc-${keyOf(socketPath)}-${Process.encode(Process.self())}-`

/** The longest prefix any process makes: ".eipc-", the key, "-", the longest identity a name holds, "-". */
export const LONGEST_PREFIX = 6 + 8 + 1 + (10 + 1 + 10 + 1 + 10) + 1

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
export const entriesStay = (dir: string, uid: number): boolean => {
  try {
    const stat = Fs.statSync(dir)
    return stat.isDirectory() && (stat.uid === uid || stat.uid === 0) &&
      ((stat.mode & 0o022) === 0 || (stat.mode & STICKY) !== 0)
  } catch {
    return false
  }
}

/**
 * Removes the directories that dead listeners at `socketPath` left in
 * `parents` (killed before they could remove them); returns the directories
 * removed. A directory is removed only when its name matches exactly, with
 * the key of this path, and names a process that is dead (`Process.liveness`:
 * a live one, or one of another pid namespace, is left alone); when it is a
 * directory (not a link) of this user that no other user may write; and when
 * its parent lets no other user replace it meanwhile. In it, only sockets of
 * this user named as a listener names them are removed; the directory then
 * goes only if that left it empty. Never throws.
 */
export const sweep = (socketPath: string, parents: ReadonlyArray<string>): ReadonlyArray<string> => {
  const uid = RuntimeDir.userId()
  if (uid === undefined) return []
  const key = keyOf(socketPath)
  const removed: Array<string> = []
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
          if (!LEFTOVER.test(entry)) continue
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
