/**
 * The directories this package makes, and the marker file that says what a
 * directory is (`.effect-ipc`, JSON): a `channel` directory (two fixed
 * roles) or a `listener` directory (a listener and its connections, each a
 * channel directory under `connections/`).
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Lock from "./lock.ts"
import * as Sys from "./sys.ts"

/** The marker's file name. */
export const MARKER = ".effect-ipc"

/**
 * What a small file this package reads whole may hold (a marker: one line of JSON, some 80 bytes; a connection's
 * `connection.json`: some 100; an ipckit lock's holder): a larger one is not one, and is not read whole.
 */
export const SMALL_FILE_MAX_BYTES = 4096

/** Up to five of `names`, sorted, for an error saying what a directory holds. */
export const listing = (names: ReadonlyArray<string>): string =>
  names.toSorted().slice(0, 5).join(", ") + (names.length > 5 ? `, ... (${names.length} entries)` : "")

/** What a marker says. */
export interface Marker {
  readonly format: "effect-ipc-file"
  readonly version: 1
  readonly kind: "channel" | "listener"
  /** True when a listener created the directory: the last listener to close removes it. */
  readonly ownsDirectory?: boolean | undefined
}

/** The marker of `dir`: `undefined` when it has none (or not a valid one); an error when what is there is refused. */
export const loadMarker = (dir: string): Marker | undefined | IpcError.IpcError => {
  let text: string
  try {
    text = Sys.readFile(Path.join(dir, MARKER), SMALL_FILE_MAX_BYTES).toString("utf8")
  } catch (cause) {
    return IpcError.errnoOf(cause) === "ENOENT"
      ? undefined
      : IpcError.fromSystemError(cause, "Open", "cannot read the directory marker", dir)
  }
  return parseMarker(text)
}

/** The marker `text` says, `undefined` when it is not one. */
const parseMarker = (text: string): Marker | undefined => {
  try {
    const value: unknown = JSON.parse(text)
    if (
      typeof value === "object" && value !== null && "format" in value && value.format === "effect-ipc-file" &&
      "kind" in value && (value.kind === "channel" || value.kind === "listener")
    ) {
      return value as Marker
    }
    return undefined
  } catch {
    return undefined
  }
}

/**
 * Whether one of the markers being written in `dir` (`names`: `.effect-ipc.<16 hex digits>.tmp`) is a listener's
 * that made the directory: by a listener racing this one to create it (whose marker this one's may overtake), or
 * one killed before it linked it into place. The directory is then one a listener made, whichever listener serves
 * in it: the last to close removes it.
 */
const madeByListener = (dir: string, names: ReadonlyArray<string>): boolean =>
  names.some((name) => {
    if (Sys.tmpFor(name) !== MARKER) return false
    try {
      const marker = parseMarker(Sys.readFile(Path.join(dir, name), SMALL_FILE_MAX_BYTES).toString("utf8"))
      return marker?.kind === "listener" && marker.ownsDirectory === true
    } catch {
      return false // gone already, or not ours to read
    }
  })

/** The marker of `dir`, if it has one (and it can be read). */
export const readMarker = (dir: string): Marker | undefined => {
  const marker = loadMarker(dir)
  return Sys.failed(marker) ? undefined : marker
}

/** Removes the marker of `dir`, if it has one; one that cannot be removed stays. */
export const removeMarker = (dir: string): void => {
  Sys.attempt(() => Fs.rmSync(Path.join(dir, MARKER), { force: true }), "Write", "")
}

/**
 * Removes the markers that processes killed while writing them left in `dir` (`.effect-ipc.<16 hex digits>.tmp`).
 * Only while `dir` is marked: a process writes one only where it found no marker.
 */
export const removeMarkerLeftovers = (dir: string): void => {
  let names: Array<string>
  try {
    names = Fs.readdirSync(dir)
  } catch {
    return
  }
  for (const name of names) {
    if (Sys.tmpFor(name) !== MARKER) continue
    try {
      if (Fs.lstatSync(Path.join(dir, name)).isFile()) Fs.rmSync(Path.join(dir, name), { force: true })
    } catch {
      // gone already
    }
  }
}

/** A listener's lock file: `listenerPaths(dir).lock`. */
const LISTENER_LOCK = "listener.lock"

/**
 * Whether `dir`'s `listener.lock` is one a listener killed as it closed left behind, after it removed its marker:
 * nobody holds it, and it holds just what a listener writes in it (`pid token`: a pid and 16 hex digits), so that
 * a user's file of that name is never taken for one. Without this, every listener after it was refused.
 */
const leftoverLock = (dir: string): boolean => {
  const path = Path.join(dir, LISTENER_LOCK)
  try {
    return Lock.isOwnerText(Sys.readFile(path, 256).toString("utf8")) && Lock.probe(path) === "free"
  } catch {
    return false
  }
}

/**
 * Says in the listener marker of `dir`, if it has one, that a listener made the directory (`ownsDirectory`),
 * replacing it whole (written aside, renamed over it): done by a listener that made the directory when another,
 * racing it, published the marker first. Run under `Lock.guarding(dir)`, as a listener's close is, so that a marker
 * removed meanwhile is not written again.
 */
export const markOwned = (dir: string, mode: number): void => {
  const marker = readMarker(dir)
  if (marker?.kind !== "listener" || marker.ownsDirectory === true) return
  Sys.attempt(
    () => Sys.writeNewFile(Path.join(dir, MARKER), `${JSON.stringify({ ...marker, ownsDirectory: true })}\n`, mode),
    "Write",
    ""
  )
}

/**
 * Writes the marker of `dir` (atomically and exclusively: written aside, linked into place): `"taken"` when
 * another process published one first, which is then kept (a rename put the last one in place: a channel end and
 * a listener creating the same directory at once each went on, under the other's marker).
 */
export const writeMarker = (dir: string, marker: Marker, mode: number): IpcError.IpcError | "taken" | undefined => {
  const path = Path.join(dir, MARKER)
  const result = Sys.attempt(
    () => {
      const tmp = Sys.tmpOf(path)
      try {
        Sys.createFile(tmp, `${JSON.stringify(marker)}\n`, mode)
        try {
          Fs.linkSync(tmp, path)
          return undefined
        } catch (cause) {
          if (IpcError.errnoOf(cause) !== "EEXIST") throw cause
          return "taken" as const
        }
      } finally {
        Fs.rmSync(tmp, { force: true })
      }
    },
    "Write",
    "cannot write the directory marker",
    dir
  )
  return result
}

/**
 * Makes `dir` (which exists and passed the directory checks) a directory of
 * `kind`: one marked so already is used as it is (its marker is returned);
 * an unmarked one only if it holds nothing, and it is marked (`undefined`
 * is returned) before anything else is made in it. The two ends of a channel
 * may be creating it at once: the other's marker, being written or written
 * meanwhile, does not count; a listener's directory is one listener's, and
 * anything in it does. One marked as the other kind, or holding anything
 * else, is `AddressInUse` naming what is there, and nothing in it is touched.
 * A listener's marker says it owns the directory (`ownsDirectory`) when the
 * caller made it, or when a listener's marker being written there says so.
 */
export const claim = (
  dir: string,
  kind: Marker["kind"],
  fileMode: number,
  address: string,
  ownsDirectory?: boolean
): Marker | undefined | IpcError.IpcError => {
  const judge = (found: Marker) =>
    found.kind === kind
      ? found
      : IpcError.make("AddressInUse", `${dir} is a ${found.kind} directory, not a ${kind} directory`, address)
  const marker = loadMarker(dir)
  if (Sys.failed(marker)) return marker
  if (marker !== undefined) return judge(marker)
  const names = Sys.attempt(() => Fs.readdirSync(dir), "Open", `cannot list ${dir}`, address)
  if (Sys.failed(names)) return names
  if (names.includes(MARKER)) {
    // marked meanwhile by a process creating the same directory (or a file of that name that is not a marker)
    const again = loadMarker(dir)
    if (Sys.failed(again)) return again
    if (again !== undefined) return judge(again)
  }
  // a marker being written is `.effect-ipc.<16 hex digits>.tmp` (`Sys.tmpOf`): by a process creating the same
  // channel, or left by one killed before it renamed it into place (a listener's too: its successor was refused
  // for ever)
  const foreign = names.filter((name) =>
    Sys.tmpFor(name) !== MARKER && !(kind === "listener" && name === LISTENER_LOCK && leftoverLock(dir))
  )
  if (foreign.length > 0) {
    return IpcError.make(
      "AddressInUse",
      `${dir} is not a ${kind} directory and not empty (it holds ${
        listing(foreign)
      }): nothing in it was touched; use an empty or new directory for a ${kind}`,
      address
    )
  }
  const owns = ownsDirectory !== true && kind === "listener" && madeByListener(dir, names) ? true : ownsDirectory
  const written = writeMarker(dir, { format: "effect-ipc-file", version: 1, kind, ownsDirectory: owns }, fileMode)
  if (written !== "taken") return written
  // published meanwhile by a process creating the same directory (a channel's other end, another listener)
  const found = loadMarker(dir)
  if (Sys.failed(found)) return found
  return found === undefined
    ? IpcError.make("AddressInUse", `${dir} holds a ${MARKER} that is not a marker: nothing in it was touched`, address)
    : judge(found)
}

const STICKY = 0o1000

const isMissing = (cause: unknown) => {
  const code = IpcError.errnoOf(cause)
  return code === "ENOENT" || code === "ENOTDIR"
}

/** Why `stat` (of the channel directory itself when `last`, else of a directory above it) is not trusted. */
const distrust = (path: string, stat: Fs.Stats, last: boolean): Error | undefined => {
  if (!Sys.trustedOwner(stat.uid)) {
    return Sys.refusal(`${path} is owned by uid ${stat.uid}, not by this user or root`, Sys.HINT_OWNER)
  }
  const others = stat.mode & 0o022
  if (others === 0) return undefined
  const who = (others & 0o002) !== 0 ? "every user" : "its group"
  if (last) {
    return Sys.refusal(
      `${path} is writable by ${who}: not a safe place for a channel`,
      `chmod go-w ${path}, or use a directory only you can write`
    )
  }
  if ((stat.mode & STICKY) !== 0) return undefined // like /tmp: others cannot rename or remove what is ours
  return Sys.refusal(
    `${path} is writable by ${who} without the sticky bit: others could replace the channel directory in it`,
    `chmod go-w ${path} (or +t), or use a directory only you can write`
  )
}

/**
 * Checks every component of the absolute path `dir` that exists: a symbolic
 * link must belong to this user or root, a directory above `dir` must belong
 * to this user or root and be writable by nobody else (unless it has the
 * sticky bit, like /tmp), and `dir` itself must belong to this user or root
 * and be writable by nobody else. Throws a refusal; `"missing"` when a
 * component does not exist (yet).
 */
const checkPath = (dir: string): "missing" | undefined => {
  const parts = dir.split(Path.sep).filter((p) => p.length > 0)
  for (let i = 0; i <= parts.length; i++) {
    const path = Path.join(Path.sep, ...parts.slice(0, i))
    let stat: Fs.Stats
    try {
      stat = Fs.lstatSync(path)
    } catch (cause) {
      if (isMissing(cause)) return "missing"
      throw cause
    }
    checkComponent(path, stat, i === parts.length)
  }
  return undefined
}

/** The refusal of something that is not a directory (a file, a FIFO, ...) where one is expected: left as it is. */
const notADirectory = (path: string, stat: Fs.Stats): Error =>
  Sys.refusal(
    `${path} is ${
      stat.isFile() ? "a file" : stat.isFIFO() ? "a FIFO" : "not a directory"
    }, where a directory is expected`,
    "use another path: what is there is left as it is"
  )

/** Checks one component of a path (see `checkPath`); throws a refusal. */
const checkComponent = (path: string, stat: Fs.Stats, last: boolean): void => {
  if (stat.isSymbolicLink()) {
    if (!Sys.trustedOwner(stat.uid)) {
      throw Sys.refusal(`${path} is a symbolic link owned by uid ${stat.uid}`, Sys.HINT_OWNER)
    }
    return // where it leads is checked on the real path
  }
  if (!stat.isDirectory()) throw notADirectory(path, stat)
  const wrong = distrust(path, stat, last)
  if (wrong !== undefined) throw wrong
}

/**
 * Throws ENAMETOOLONG, before anything is made, for a path the kernel would
 * refuse part of the way down (a name past 255 bytes, or the whole past 4095):
 * making its directories one by one first left thousands of them behind.
 */
const tooLong = (abs: string): void => {
  const name = abs.split(Path.sep).find((part) => Buffer.byteLength(part) > 255)
  if (Buffer.byteLength(abs) > 4095 || name !== undefined) {
    throw Object.assign(
      new Error(
        name === undefined
          ? `the path is ${Buffer.byteLength(abs)} bytes, more than the 4095 a path may have`
          : `a name in the path is ${Buffer.byteLength(name)} bytes, more than the 255 a name may have`
      ),
      { code: "ENAMETOOLONG" }
    )
  }
}

/**
 * This user's runtime directories (core's `RuntimeDir`: the one `pipe://`
 * uses, and `<tmp>/effect-ipc-<uid>`, where the default address goes), which
 * other transports require to be 0700: made so on the way to a channel
 * directory whatever `dirMode` says (a 0750 one would refuse `pipe://` later).
 */
const runtimeDirs = (): ReadonlySet<string> => {
  const host = RuntimeDir.currentHost()
  return new Set([
    RuntimeDir.directoryOn(host),
    RuntimeDir.directoryOn({ ...host, env: {} }, { sockets: false })
  ])
}

/**
 * Creates the missing components of the absolute path `dir` one at a time
 * with `mode` (a runtime directory on the way: 0700, see `runtimeDirs`), never
 * following a link: each component (made here, or found there because someone
 * was quicker) is checked before the next is made in it. Returns the
 * components that were missing as it began (made here, or by a process racing
 * it: of two listeners creating one directory at once, the one that wins may
 * not be the one whose `mkdir` made it), outermost first, but for runtime
 * directories (shared with other transports, they stay).
 */
const makePath = (dir: string, mode: number): Array<string> => {
  const parts = dir.split(Path.sep).filter((p) => p.length > 0)
  const runtime = runtimeDirs()
  const made: Array<string> = []
  // the components missing as the walk begins (from the first missing one down): made by this call, or meanwhile
  // by a process racing it to the same path (a listener, a channel end), theirs as much as ours
  let absent = parts.length + 1
  for (let i = 0; i <= parts.length && absent > parts.length; i++) {
    try {
      Fs.lstatSync(Path.join(Path.sep, ...parts.slice(0, i)))
    } catch (cause) {
      if (!isMissing(cause)) throw cause
      absent = i
    }
  }
  let created = false
  // the components this call made itself
  const mine: Array<string> = []
  // a parent found there may be removed before the next component is made in it (a listener that made
  // it closing, say): the walk starts again from the top, a few times
  let restarts = 0
  try {
    for (let i = 0; i <= parts.length; i++) {
      const path = Path.join(Path.sep, ...parts.slice(0, i))
      let stat: Fs.Stats | undefined
      // what was there when mkdir said EEXIST may be gone again: a few tries, then someone is playing with it
      for (let attempt = 0; stat === undefined; attempt++) {
        if (attempt === 100) {
          throw Sys.refusal(`${path} keeps appearing and vanishing`, "use a directory only you can write")
        }
        created = false
        try {
          Sys.makeDir(path, i < parts.length && runtime.has(path) ? 0o700 : mode)
          created = true
        } catch (cause) {
          if (IpcError.errnoOf(cause) === "ENOENT" && i > 0 && restarts++ < 100) break
          if (IpcError.errnoOf(cause) !== "EEXIST") throw cause
        }
        try {
          stat = Fs.lstatSync(path)
        } catch (cause) {
          if (!isMissing(cause)) throw cause
        }
      }
      if (stat === undefined) {
        i = -1 // a parent vanished: from the top again
        continue
      }
      if (created && !runtime.has(path) && !mine.includes(path)) mine.push(path)
      checkComponent(path, stat, i === parts.length)
      if ((created || i >= absent) && !runtime.has(path) && !made.includes(path)) made.push(path)
    }
  } catch (cause) {
    // a walk that fails (no inode left for the next component: ENOSPC) takes back what it made, innermost first,
    // while empty: a listen out of inodes left the parents it had made behind
    for (const path of mine.toReversed()) {
      if (Sys.failed(Sys.attempt(() => Fs.rmdirSync(path), "Write", ""))) break
    }
    throw cause
  }
  return made
}

/** True when nothing is at `path` now (not even a link). */
const vanished = (path: string): boolean => {
  try {
    Fs.lstatSync(path)
    return false
  } catch (cause) {
    return isMissing(cause)
  }
}

/** Checks `dir` (absolute) as written and as it resolves (through links); throws a refusal. */
const checkTrusted = (dir: string): "missing" | undefined => {
  const missing = checkPath(dir)
  // the real path: through the links the walk above allowed
  let existing = dir
  if (missing !== undefined) {
    while (!Sys.exists(existing) && Path.dirname(existing) !== existing) existing = Path.dirname(existing)
  }
  let real: string
  try {
    real = Fs.realpathSync(existing)
  } catch (cause) {
    if (!isMissing(cause)) throw cause
    // every component was there, and a link among them leads nowhere: nothing is made where it points (unless it
    // is gone meanwhile, removed by another process: then it is missing, and made again)
    if (missing === undefined && !vanished(dir)) {
      throw Sys.refusal(
        `${dir} is a symbolic link that leads nowhere`,
        "use another path: what is there is left as it is"
      )
    }
    return "missing"
  }
  if (real !== existing) {
    const parts = real.split(Path.sep).filter((p) => p.length > 0)
    for (let i = 0; i <= parts.length; i++) {
      const path = Path.join(Path.sep, ...parts.slice(0, i))
      const stat = Fs.lstatSync(path)
      // a link to a file, a FIFO or a socket: refused as they are, never opened through
      if (!stat.isDirectory()) throw notADirectory(`${path} (where ${existing} leads)`, stat)
      const wrong = distrust(path, stat, missing === undefined && i === parts.length)
      if (wrong !== undefined) throw wrong
    }
  }
  return missing
}

/**
 * Creates `dir` (and missing parents) with `mode` (an option its caller
 * checked: `Sys.invalidModes`), or checks the one there: only a directory
 * that this user (or root) owns and that no other user can write, under
 * directories no other user can tamper with, is used (`PermissionDenied`,
 * with a hint, otherwise). Returns the directories that were missing as this
 * call began (made by it, or meanwhile by a process racing it), outermost
 * first (`dir` last, when it was missing; runtime directories are not listed).
 */
export const ensureDir = (dir: string, mode: number, address?: string): ReadonlyArray<string> | IpcError.IpcError =>
  Sys.attempt(
    () => {
      const abs = Path.resolve(dir)
      tooLong(abs)
      let created: ReadonlyArray<string> = []
      if (checkTrusted(abs) === "missing") {
        created = makePath(abs, mode)
        // the whole path again, through the links allowed on the way
        if (checkTrusted(abs) === "missing") {
          throw Object.assign(new Error(`${abs} vanished while being created`), { code: "ENOENT" })
        }
      }
      // fail now, with the reason, when we cannot create files in it
      try {
        Fs.accessSync(abs, Fs.constants.W_OK | Fs.constants.X_OK)
      } catch (cause) {
        if (IpcError.errnoOf(cause) !== "EACCES") throw cause
        throw Sys.refusal(`${abs} is not writable by this user`, "use a directory that you own")
      }
      return created
    },
    "Open",
    `cannot use the directory ${dir}`,
    address
  )

/** Removes the directories `ensureDir` returned, innermost first, while they are empty (anything put in one keeps it). */
export const unmakeDirs = (made: ReadonlyArray<string>): void => {
  for (const path of made.toReversed()) {
    if (Sys.failed(Sys.attempt(() => Fs.rmdirSync(path), "Write", ""))) break
  }
}

/** Checks an existing channel or listener directory as `ensureDir` does, creating nothing (`NotFound` if missing). */
export const checkDir = (dir: string, address?: string): IpcError.IpcError | undefined => {
  const result = Sys.attempt(
    () => {
      if (checkTrusted(Path.resolve(dir)) === "missing") {
        throw Object.assign(new Error(`${dir} does not exist`), { code: "ENOENT" })
      }
    },
    "Open",
    `cannot use the directory ${dir}`,
    address
  )
  return Sys.failed(result) ? result : undefined
}

/**
 * Checks the components of `dir` that exist as `checkDir` does, without
 * requiring `dir` itself: `"missing"` when it (or a directory above it) does
 * not exist, after the ones above it passed.
 */
export const checkPathTo = (dir: string, address?: string): "missing" | IpcError.IpcError | undefined =>
  Sys.attempt(() => checkTrusted(Path.resolve(dir)), "Open", `cannot use the directory ${dir}`, address)

/**
 * Checks a directory inside a checked one (a stream, `readers/`,
 * `connections/`, a connection): a real directory, not a link, owned by
 * this user or root and writable by nobody else.
 */
export const checkSubdir = (path: string, address?: string): IpcError.IpcError | undefined => {
  const result = Sys.attempt(
    () => {
      const stat = Fs.lstatSync(path)
      if (stat.isSymbolicLink()) {
        throw Sys.refusal(`${path} is a symbolic link`, "remove it: a channel never follows links inside itself")
      }
      if (!stat.isDirectory()) throw notADirectory(path, stat)
      const wrong = distrust(path, stat, true)
      if (wrong !== undefined) throw wrong
    },
    "Open",
    `cannot use the directory ${path}`,
    address
  )
  return Sys.failed(result) ? result : undefined
}

/** Checks a log's stream directory and its `readers/`, where they exist (see `checkSubdir`). */
export const checkStream = (stream: string, address?: string): IpcError.IpcError | undefined => {
  if (!Sys.exists(stream)) return undefined
  const readers = Path.join(stream, "readers")
  return checkSubdir(stream, address) ?? (Sys.exists(readers) ? checkSubdir(readers, address) : undefined)
}

/** The paths of a listener directory. */
export const listenerPaths = (dir: string) => ({
  dir,
  lock: Path.join(dir, LISTENER_LOCK),
  connections: Path.join(dir, "connections"),
  connection: (id: string) => Path.join(dir, "connections", id),
  info: (id: string) => Path.join(dir, "connections", id, "connection.json")
})

/** What a value given at run time is, for an error (JavaScript, or a cast, can pass anything). */
const kindOf = (value: unknown): string =>
  value === null || value === undefined
    ? String(value)
    : typeof value === "string"
    ? JSON.stringify(value)
    : `a ${typeof value}`

/** `InvalidAddress` for a directory (`what`: a channel directory) that is not a path (a non-empty string); undefined when it is one. */
export const invalidDir = (dir: unknown, what = "a channel directory"): IpcError.IpcError | undefined =>
  typeof dir === "string" && dir.length > 0
    ? undefined
    : IpcError.make("InvalidAddress", `${what} is a path, not ${kindOf(dir)}`)

/**
 * `invalidDir`, or `InvalidAddress` for a fixed role that is neither
 * "backend" nor "frontend" (as `?role=` in an address is); undefined when
 * both are right. A role of another name was taken as a third end: a lock of
 * its own beside the real one, and a reader of its own stream that nobody
 * moves, which held that stream's space for good.
 */
export const invalidEnd = (dir: unknown, role: unknown): IpcError.IpcError | undefined =>
  invalidDir(dir) ??
    (role === "backend" || role === "frontend"
      ? undefined
      : IpcError.make("InvalidAddress", `role must be backend or frontend (got ${kindOf(role)})`, String(dir)))
