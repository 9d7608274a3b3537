/**
 * Looking at paths in directories others may write, without being fooled:
 * `lstat` (no link followed), names for what was found, and reads that open
 * no-follow and non-blocking and check what they opened.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Fs from "node:fs"

/** What kind of file `stat` describes, in words for error messages. */
export const kindOf = (stat: Fs.Stats): string =>
  stat.isFile()
    ? "regular file"
    : stat.isDirectory()
    ? "directory"
    : stat.isSymbolicLink()
    ? "symbolic link"
    : stat.isFIFO()
    ? "FIFO"
    : stat.isSocket()
    ? "socket"
    : stat.isCharacterDevice()
    ? "character device"
    : stat.isBlockDevice()
    ? "block device"
    : "file"

/** `lstat`, or undefined when nothing is at `path`; other errors throw. */
export const lstatIfAny = (path: string): Fs.Stats | undefined => {
  try {
    return Fs.lstatSync(path)
  } catch (cause) {
    if (IpcError.errnoOf(cause) === "ENOENT") return undefined
    throw cause
  }
}

/** `lstat`, or undefined when nothing is at `path` or it cannot be looked at. */
export const lstatIfAnyQuiet = (path: string): Fs.Stats | undefined => {
  try {
    return Fs.lstatSync(path)
  } catch {
    return undefined
  }
}

/** "a regular file owned by uid 1000", for what is at a path. */
export const describe = (stat: Fs.Stats): string => `a ${kindOf(stat)} owned by uid ${stat.uid}`

/** True when `a` and `b` are the same file (device and inode). */
export const sameFile = (a: FileIdentity, b: FileIdentity): boolean => a.dev === b.dev && a.ino === b.ino

const { O_NOFOLLOW, O_NONBLOCK, O_RDONLY } = Fs.constants

/**
 * Reads a small regular file without following a link or blocking on a FIFO;
 * returns its text and owner, or undefined when it is absent or not a regular file.
 */
export const readSmall = (path: string): { readonly text: string; readonly stat: Fs.Stats } | undefined => {
  let fd: number
  try {
    fd = Fs.openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
  } catch {
    return undefined
  }
  try {
    const stat = Fs.fstatSync(fd)
    if (!stat.isFile()) return undefined
    const buffer = Buffer.alloc(256)
    const n = Fs.readSync(fd, buffer, 0, buffer.length, 0)
    return { text: buffer.subarray(0, n).toString("utf8"), stat }
  } finally {
    Fs.closeSync(fd)
  }
}

/** A file's identity: device and inode. */
export interface FileIdentity {
  readonly dev: number
  readonly ino: number
}
