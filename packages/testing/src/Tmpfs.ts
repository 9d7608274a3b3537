/**
 * A small file system for a child process: the command line that runs a
 * command in a mount namespace of its own with a tmpfs at a directory, of a
 * few pages or inodes, filled up first if asked. For tests of what a
 * transport does when there is no room (`NoSpace`, nothing left behind).
 * Needs root (as CI runs); the mount goes with the namespace.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs"
import * as Path from "node:path"

/** The tmpfs: its size (`"4k"`), its number of inodes (the root takes one), its mode, and whether it starts full. */
export interface TmpfsOptions {
  /** `size=` of the tmpfs, as mount takes it (`"4k"`, `"1024k"`). */
  readonly size?: string | undefined
  /** `nr_inodes=` of the tmpfs: how many files and directories it holds, its root included. */
  readonly inodes?: number | undefined
  /** `mode=` of its root (`"0700"` for a private runtime directory). */
  readonly mode?: string | undefined
  /** Fill every page with a file named `filler` before the command runs. */
  readonly full?: boolean | undefined
}

/**
 * The words to put before a command (`[...at(dir, options), command, ...args]`)
 * to run it with a tmpfs of `options` at `dir`, in a mount namespace of its own.
 */
export const at = (dir: string, options: TmpfsOptions): ReadonlyArray<string> => {
  const settings = [
    options.size === undefined ? undefined : `size=${options.size}`,
    options.inodes === undefined ? undefined : `nr_inodes=${options.inodes}`,
    options.mode === undefined ? undefined : `mode=${options.mode}`
  ].filter((setting) => setting !== undefined)
  // the directory and the mount options are the script's arguments, never part of its text: a path with `$`, a
  // backquote or a quote in it is taken as it is (interpolated, `a$HOME` mounted the tmpfs over `a/root`)
  const fill = options.full === true ? `cat /dev/zero > "$1/filler" 2>/dev/null;` : ""
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    `mount -t tmpfs${settings.length === 0 ? "" : ` -o "$2"`} tmpfs "$1" && { ${fill} shift 2; exec "$@"; }`,
    "tmpfs-at",
    dir,
    settings.join(",")
  ]
}

/**
 * Takes every inode left in `dir`'s file system with empty files named
 * `filler-N` (a tmpfs of few inodes fills at once); their paths, to remove
 * when the room should come back.
 */
export const fillInodes = (dir: string): Array<string> => {
  const fillers: Array<string> = []
  for (;;) {
    const path = Path.join(dir, `filler-${fillers.length}`)
    try {
      Fs.writeFileSync(path, "")
    } catch {
      return fillers
    }
    fillers.push(path)
  }
}

/**
 * Takes every byte left in `dir`'s file system with one file named
 * `filler-bytes` (its inodes stay free: files can be made, not written); its
 * path, to remove when the room should come back.
 */
export const fillBytes = (dir: string): string => {
  const path = Path.join(dir, "filler-bytes")
  const fd = Fs.openSync(path, "w")
  const block = new Uint8Array(64 * 1024)
  try {
    for (;;) Fs.writeSync(fd, block)
  } catch {
    // full
  } finally {
    Fs.closeSync(fd)
  }
  // what a block too large for the rest left: byte by byte
  const tail = Fs.openSync(path, "a")
  try {
    for (;;) Fs.writeSync(tail, block, 0, 1)
  } catch {
    // full
  } finally {
    Fs.closeSync(tail)
  }
  return path
}
