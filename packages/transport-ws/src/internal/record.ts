/**
 * What a token file holds, as `TokenFile` judges it (a record of this user, or a damaged one), and the
 * removal of a file only while it is still what was judged: the file is first taken away under a name of
 * its own and judged again there, so a file a server wrote under the name meanwhile (a daemon restarted at
 * a fixed port) is put back, never removed. Node only.
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Process from "@effect-ipc/core/Process"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"

/** A token file's record: its token, the server that wrote it, and the file's mode and mtime. */
export interface TokenRecord {
  readonly token: string
  readonly server: Process.Identity
  readonly mode: number
  readonly writtenAt: number
}

/**
 * A token file as read: `Foreign` (absent, unreadable, not a regular file of this user: not ours to judge),
 * `Damaged` (this user's, but not a token and an identity; `server` when the identity line still reads) or
 * `Record`.
 */
export type State =
  | { readonly _tag: "Foreign" }
  | {
    readonly _tag: "Damaged"
    readonly why: string
    readonly server: Process.Identity | undefined
    readonly mode: number
    readonly writtenAt: number
  }
  | { readonly _tag: "Record"; readonly record: TokenRecord }

// a token file is a token and an identity: more is not one, and is not read
const RECORD_MAX_BYTES = 64 * 1024

// what a token is (WsAddress's rule for a token given): written by `TokenFile.write` as it is
const tokenPattern = /^[A-Za-z0-9._~-]{1,512}$/

const foreign: State = { _tag: "Foreign" }

/** Judges a token file's text: two lines, a token and `Process.encode`'s identity (or an older file's bare pid). */
const parse = (text: string, mode: number, writtenAt: number): State => {
  const lines = text.split("\n").map((line) => line.trim())
  if (lines.at(-1) === "") lines.pop()
  const server = lines.length >= 2 ? Process.decode(lines[1]!) : undefined
  const damaged = (why: string): State => ({ _tag: "Damaged", why, server, mode, writtenAt })
  if (lines.length !== 2) return damaged(`it holds ${lines.length} lines, not a token and its server's identity`)
  if (!tokenPattern.test(lines[0]!)) return damaged("its first line is not a token")
  if (server === undefined) return damaged("its second line is not its server's identity (pid@start.namespace)")
  return { _tag: "Record", record: { token: lines[0]!, server, mode, writtenAt } }
}

/**
 * Reads the token file at `file` if it is a regular file of this user (opened without following a link and
 * without blocking on a FIFO), and judges what it holds.
 */
export const inspect = (file: string): State => {
  try {
    const flags = Fs.constants.O_RDONLY | Fs.constants.O_NOFOLLOW | Fs.constants.O_NONBLOCK
    const fd = Fs.openSync(file, flags)
    try {
      const stat = Fs.fstatSync(fd)
      const me = RuntimeDir.userId()
      if (!stat.isFile() || (me !== undefined && stat.uid !== me)) return foreign
      if (stat.size > RECORD_MAX_BYTES) {
        return {
          _tag: "Damaged",
          why: "it is larger than 64 KiB",
          server: undefined,
          mode: stat.mode,
          writtenAt: stat.mtimeMs
        }
      }
      return parse(Fs.readFileSync(fd, "utf8"), stat.mode, stat.mtimeMs)
    } finally {
      Fs.closeSync(fd)
    }
  } catch {
    return foreign
  }
}

/**
 * Removes `file` if it is still `doomed`: taken away first (renamed to a name of its own, atomically) and
 * judged again there; a file written under the name since the caller judged it is put back, unless a newer
 * one took the name meanwhile. `taking` runs just before (a test's interleaving). What it removed, if it did.
 */
export const removeIf = (
  file: string,
  doomed: (state: State) => boolean,
  taking?: () => void
): State | undefined => {
  taking?.()
  // a short name of its own, not the file's name with more after it: a name `write` could still stage (up to 238
  // bytes) was too long with `.removing` too, and such a file was never removed (ENAMETOOLONG)
  const aside = Path.join(
    Path.dirname(file),
    `ws-.token.${process.pid}.${Crypto.randomBytes(4).toString("hex")}.removing`
  )
  try {
    Fs.renameSync(file, aside)
  } catch {
    // gone meanwhile, or not ours to move: left alone
    return undefined
  }
  const state = inspect(aside)
  if (doomed(state)) {
    removeQuietly(aside)
    return state
  }
  try {
    // written since it was judged: put back without replacing a newer one (which supersedes it anyway)
    Fs.linkSync(aside, file)
  } catch (cause) {
    // not one a link can name (a directory made there meanwhile; a file system without hard links): moved back
    // whole while the name is free, else left aside as it is (a directory's removal threw out of the sweep)
    if (IpcError.errnoOf(cause) !== "EEXIST") {
      // nothing is moved where it cannot be told that nothing is
      if (!taken(file, true)) renameQuietly(aside, file)
      return undefined
    }
  }
  removeQuietly(aside)
  return undefined
}

/** Whether something (a link included) is at `path`; `unknown` when that cannot be told. */
export const taken = (path: string, unknown: boolean): boolean => {
  try {
    return Fs.lstatSync(path, { throwIfNoEntry: false }) !== undefined
  } catch {
    return unknown
  }
}

/** Removes the file at `path` (never a directory), if it can. */
const removeQuietly = (path: string): void => {
  try {
    Fs.rmSync(path, { force: true })
  } catch {
    // a directory, or gone meanwhile: left
  }
}

/** Renames `from` to `to`, if it can. */
const renameQuietly = (from: string, to: string): void => {
  try {
    Fs.renameSync(from, to)
  } catch {
    // left where it is
  }
}

/**
 * False when the server is known to be dead (`Process.liveness`: its pid is not running, or runs another
 * process since); a server of another pid namespace (a container sharing the directory) is taken as alive.
 */
export const serverRuns = (server: Process.Identity, writtenAt: number): boolean => Process.isAlive(server, writtenAt)

/**
 * How long a damaged token file of a server that may still run is left to its writer before a sweep removes
 * it: `TokenFile.write` renames a whole file into place, so this is for any other writer (an edit by hand).
 */
export const DAMAGED_GRACE_MS = 60_000

/**
 * Whether a sweep removes a token file in this state: a record of a dead server, a damaged file whose identity
 * line names a dead server, or one whose writer cannot be told that was written `DAMAGED_GRACE_MS` ago or more
 * (no client uses it: `TokenFile.read` fails on it).
 */
export const sweepable = (state: State, now: number): boolean =>
  state._tag === "Record"
    ? !serverRuns(state.record.server, state.record.writtenAt)
    : state._tag === "Damaged" &&
      ((state.server !== undefined && !serverRuns(state.server, state.writtenAt)) ||
        now - state.writtenAt >= DAMAGED_GRACE_MS)

// a token file being written (`TokenFile.write`'s staging name) or set aside to be removed (`removeIf`)
const leftover = /^ws-.*\.token\.\d+\.[0-9a-f]{8}(\.removing)?$/

/**
 * Removes a staging or set-aside file of this user a killed process left (the kill came between its write and
 * its rename, or its rename and its removal): one `DAMAGED_GRACE_MS` old or more, which no live writer still
 * holds (each takes microseconds). It may hold a token: it is private (0600), and goes.
 */
const removeLeftover = (file: string): void => {
  try {
    const stat = Fs.lstatSync(file)
    const me = RuntimeDir.userId()
    if (!stat.isFile() || (me !== undefined && stat.uid !== me)) return
    if (Date.now() - stat.mtimeMs < DAMAGED_GRACE_MS) return
    Fs.rmSync(file, { force: true })
  } catch {
    // gone meanwhile
  }
}

/**
 * Removes from `dir` this user's token files (`ws-*.token`) that `sweepable` says go; the damaged ones
 * removed are named (for a warning). `taking` runs before each removal (a test's interleaving).
 */
export const sweep = (
  dir: string,
  taking?: (file: string) => void
): { readonly removed: number; readonly damaged: ReadonlyArray<string> } => {
  let entries: ReadonlyArray<string>
  try {
    entries = Fs.readdirSync(dir)
  } catch {
    return { removed: 0, damaged: [] }
  }
  let removed = 0
  const damaged: Array<string> = []
  for (const name of entries) {
    if (leftover.test(name)) {
      removeLeftover(Path.join(dir, name))
      continue
    }
    if (!name.startsWith("ws-") || !name.endsWith(".token")) continue
    const file = Path.join(dir, name)
    const now = Date.now()
    if (!sweepable(inspect(file), now)) continue
    const was = removeIf(file, (state) => sweepable(state, now), taking === undefined ? undefined : () => taking(file))
    if (was === undefined) continue
    removed++
    if (was._tag === "Damaged") damaged.push(`${file} (${was.why})`)
  }
  return { removed, damaged }
}
