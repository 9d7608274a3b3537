/**
 * What belongs to a channel directory (the fixed roles): the marker, the two
 * role locks and the two log streams, with the files a stream holds and the
 * temporary names each is written under before it is renamed into place.
 * Anything else in it is the user's (a directory becomes a channel's only
 * when it is new or empty: `Layout.claim`). `listOwn` tells the channel's own
 * entries from foreign ones, so that removing a channel (`remove`) never
 * touches a file that is not its own.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as LogFormat from "../LogFormat.ts"
import * as Endpoint from "./endpoint.ts"
import * as Layout from "./layout.ts"
import * as Lock from "./lock.ts"
import * as Stream from "./stream.ts"
import * as Sys from "./sys.ts"

/** What an entry of a directory must be to be the channel's: a regular file, or a directory holding such entries. */
type Shape = "file" | { readonly entries: (name: string) => Shape | undefined }

/** `name`, or the name it is written for when it is a temporary one (`Sys.tmpOf`). */
const written = (name: string): string => Sys.tmpFor(name) ?? name

const readers: Shape = {
  entries: (name) => {
    if (name === Stream.REGISTRY) return "file"
    const reader = Stream.readerOf(written(name))
    return reader !== undefined && LogFormat.isReaderName(reader) ? "file" : undefined
  }
}

const stream: Shape = {
  entries: (name) =>
    name === Stream.WRITER_LOCK || LogFormat.parseSegmentName(written(name)) !== undefined
      ? "file"
      : name === Stream.READERS
      ? readers
      : undefined
}

const STREAMS: ReadonlyArray<string> = Endpoint.ROLES.map(Endpoint.outgoing)
const LOCKS: ReadonlyArray<string> = Endpoint.ROLES.map(Endpoint.lockName)

const channel: Shape = {
  entries: (name) =>
    written(name) === Layout.MARKER || LOCKS.includes(name)
      ? "file"
      : STREAMS.includes(written(name))
      ? stream
      : undefined
}

/** The entries of a channel directory: its own (files, and directories listed after what they hold) and foreign ones. */
export interface Entries {
  /** The channel's own regular files, as absolute paths. */
  readonly files: ReadonlyArray<string>
  /** The channel's own directories below the channel directory, each after everything in it. */
  readonly dirs: ReadonlyArray<string>
  /** What is not the channel's (relative to the channel directory): another name, kind, or a link. */
  readonly foreign: ReadonlyArray<string>
}

/** Lists what the channel directory `dir` holds, telling the channel's own entries from anything else. */
export const listOwn = (dir: string): Entries | IpcError.IpcError =>
  Sys.attempt(
    () => {
      const files: Array<string> = []
      const dirs: Array<string> = []
      const foreign: Array<string> = []
      const walk = (path: string, relative: string, shape: Exclude<Shape, "file">) => {
        for (const name of Fs.readdirSync(path)) {
          const child = Path.join(path, name)
          const expected = shape.entries(name)
          let stat: Fs.Stats
          try {
            stat = Fs.lstatSync(child)
          } catch (cause) {
            if (IpcError.errnoOf(cause) === "ENOENT") continue // gone meanwhile (a reclaimed segment)
            throw cause
          }
          if (expected === "file" && stat.isFile()) {
            files.push(child)
          } else if (expected !== undefined && expected !== "file" && stat.isDirectory()) {
            walk(child, Path.join(relative, name), expected)
            dirs.push(child)
          } else {
            foreign.push(Path.join(relative, name))
          }
        }
      }
      walk(dir, "", channel)
      return { files, dirs, foreign }
    },
    "Open",
    `cannot list the channel directory ${dir}`,
    dir
  )

// ---- removing a channel ----------------------------------------------------------------------

/** The part of a channel directory's name that the name it is removed under starts with (`NAME_MAX` allowing). */
const stem = (abs: string): string => `.${Path.basename(abs).slice(0, 200)}.`

/** The name, beside `abs`, that a removal renames it to before deleting what it holds. */
const asideOf = (abs: string): string => Path.join(Path.dirname(abs), `${stem(abs)}${Sys.randomId()}.removing`)

/** True for `name` in the directory above `abs` when it is a removal of `abs` left unfinished. */
const isAsideOf = (abs: string, name: string): boolean => {
  const prefix = stem(abs)
  return name.startsWith(prefix) && /^[0-9a-f]{16}\.removing$/.test(name.slice(prefix.length))
}

/** Unlinks `path` (a file already gone is fine); throws other system errors. */
const unlink = (path: string): void => {
  try {
    Fs.unlinkSync(path)
  } catch (cause) {
    if (IpcError.errnoOf(cause) !== "ENOENT") throw cause
  }
}

/** Removes the empty directory `path` (one already gone is fine): false when something is (still) in it. */
const rmdir = (path: string): boolean => {
  try {
    Fs.rmdirSync(path)
    return true
  } catch (cause) {
    const code = IpcError.errnoOf(cause)
    if (code === "ENOTEMPTY" || code === "EEXIST") return false
    if (code === "ENOENT") return true
    throw cause
  }
}

/**
 * Deletes `dir`, renamed aside with both role locks held (no end can open in
 * it), and the channel's own entries in it, starting from `entries` (what
 * `listOwn` found in it): files, then directories (each after what it
 * holds), the marker last, then `dir`. A system call that looked up the
 * channel's path just before the rename (a process creating or opening the
 * channel) may still add an entry of the channel's: `dir` is listed again
 * and it goes in the next round. Throws; anything that is not the channel's
 * stays, and `dir` with it (`AddressInUse` naming it).
 */
const deleteOwn = (dir: string, address: string, entries: Entries): void => {
  const marker = Path.join(dir, Layout.MARKER)
  let own = entries
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      const again = listOwn(dir)
      if (Sys.failed(again)) throw again
      own = again
    }
    if (own.foreign.length > 0) {
      throw IpcError.make(
        "AddressInUse",
        `${
          Layout.listing(own.foreign)
        } appeared while the channel was being removed: it is left there, in ${dir}; move it out and remove again`,
        address
      )
    }
    for (const file of own.files) if (file !== marker) unlink(file)
    let empty = true
    for (const sub of own.dirs) empty = rmdir(sub) && empty
    if (!empty) continue
    unlink(marker)
    if (rmdir(dir)) return
  }
  throw IpcError.make("AddressInUse", `${dir} keeps filling while it is being removed: it is left there`, address)
}

/**
 * Finishes the removals of `abs` that were interrupted after their rename
 * (`.<name>.<16 hex digits>.removing` beside it): each one that passes the
 * directory checks, is marked as a channel (or no longer marked: only the
 * directory was left), holds nothing but the channel's own entries and has
 * no end open is deleted; any other is left alone. How many were finished.
 */
const finishAside = (abs: string): number => {
  const parent = Path.dirname(abs)
  let names: Array<string>
  try {
    names = Fs.readdirSync(parent)
  } catch {
    return 0
  }
  let finished = 0
  for (const name of names) {
    if (!isAsideOf(abs, name)) continue
    const path = Path.join(parent, name)
    if (Layout.checkSubdir(path) !== undefined) continue
    const marker = Layout.loadMarker(path)
    if (Sys.failed(marker) || (marker !== undefined && marker.kind !== "channel")) continue
    const entries = listOwn(path)
    if (Sys.failed(entries) || entries.foreign.length > 0) continue
    const paths = Endpoint.channelPaths(path)
    const open = Endpoint.ROLES.some((role) => {
      const state = Lock.probe(paths.lock(role))
      return Sys.failed(state) || state === "held"
    })
    if (open) continue
    const deleted = Stream.attemptTyped(() => deleteOwn(path, path, entries), "Write", `cannot remove ${path}`, path)
    if (!Sys.failed(deleted)) finished++
  }
  return finished
}

/** A role lock a removal holds, and whether the removal made its file. */
interface RoleLock {
  readonly lock: Lock.HeldLock
  readonly made: boolean
}

/**
 * Lets go of `held`; a lock file the removal made goes again if its path
 * still names it (never another process's lock file made there since).
 */
const letGo = (held: ReadonlyArray<RoleLock>): void => {
  for (const { lock, made } of held) {
    if (made) Sys.unlinkIfStill(lock.path, lock.fd)
    Lock.release(lock)
  }
}

/**
 * Takes both role locks of the channel directory `abs`, so that no end can
 * open while it is removed: `AddressInUse` when an end holds one. A lock
 * that is busy but not held by an end (a peer probing it, for microseconds)
 * is tried again for up to 200 ms.
 */
const takeRoles = (abs: string, address: string): Effect.Effect<ReadonlyArray<RoleLock>, IpcError.IpcError> => {
  const paths = Endpoint.channelPaths(abs)
  const attempt = Effect.suspend(() => {
    const held: Array<RoleLock> = []
    const giveBack = () => letGo(held)
    for (const role of Endpoint.ROLES) {
      const path = paths.lock(role)
      const made = !Sys.exists(path)
      const taken = Lock.tryTake(path, Stream.defaults.fileMode, `${process.pid} ${Lock.REMOVER}`, address)
      if (Sys.failed(taken)) {
        giveBack()
        return Effect.fail(taken)
      }
      if (taken === "busy") {
        giveBack()
        // an end holds its lock exclusively; a prober shares it: only the end's is "held" to a second prober
        const open = Lock.probe(path) === "held"
        return Effect.fail(
          IpcError.make(
            open ? "AddressInUse" : "Timeout",
            `the ${role} end of ${address} is still open`,
            address
          )
        )
      }
      held.push({ lock: taken, made })
    }
    return Effect.succeed(held as ReadonlyArray<RoleLock>)
  })
  return attempt.pipe(
    Effect.retry({
      schedule: Schedule.spaced("5 millis").pipe(Schedule.upTo({ duration: "200 millis" })),
      while: (error) => error.reason._tag === "Timeout"
    }),
    Effect.mapError((error) =>
      error.reason._tag === "Timeout" ? IpcError.make("AddressInUse", error.detail, address) : error
    )
  )
}

/**
 * Removes the channel directory `dir` (see `FileChannel.remove`): checked
 * once (not a link, the directory checks, marked as a channel, nothing but
 * the channel's own entries), then, with both role locks held, renamed aside
 * and emptied of what it holds then. Removals of `dir` interrupted earlier
 * are finished too.
 */
export const remove = (dir: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.gen(function*() {
    const abs = Path.resolve(dir)
    let stat: Fs.Stats | undefined
    try {
      stat = Fs.lstatSync(abs)
    } catch {
      stat = undefined
    }
    if (stat?.isSymbolicLink() === true) {
      let target = "?"
      try {
        target = Fs.realpathSync(abs)
      } catch {
        // a dangling link
      }
      return yield* IpcError.make(
        "InvalidAddress",
        `${dir} is a symbolic link (to ${target}): nothing removed; remove the channel directory by its own path`,
        dir
      )
    }
    if (stat !== undefined && !stat.isDirectory()) {
      return yield* IpcError.make(
        "NotFound",
        `${dir} is not a channel directory (${stat.isFile() ? "a file" : "not a directory"}): nothing removed`,
        dir
      )
    }
    // the directory checks of every component, `dir` itself included once it exists
    const path = Layout.checkPathTo(abs, dir)
    if (Sys.failed(path)) return yield* path
    if (path === "missing") {
      // renamed aside by a removal that did not finish: finished now
      if (finishAside(abs) > 0) return
      return yield* IpcError.make("NotFound", `${dir} does not exist: nothing removed`, dir)
    }
    const marker = Layout.loadMarker(abs)
    if (Sys.failed(marker)) return yield* marker
    if (marker?.kind === "listener") {
      return yield* IpcError.make("AddressInUse", `${dir} is a listener directory: nothing removed`, dir)
    }
    if (marker?.kind !== "channel") {
      return yield* IpcError.make(
        "NotFound",
        `${dir} is not a channel directory (no ${Layout.MARKER} marker): nothing removed`,
        dir
      )
    }
    const foreignIn = (entries: Entries) =>
      IpcError.make(
        "AddressInUse",
        `${dir} holds files that are not the channel's (${
          Layout.listing(entries.foreign)
        }): nothing removed; move them out of the channel directory first`,
        dir
      )
    // before the locks, whose files taking them would write
    const before = listOwn(abs)
    if (Sys.failed(before)) return yield* before
    if (before.foreign.length > 0) return yield* foreignIn(before)
    const held = yield* takeRoles(abs, dir)
    const removed = Stream.attemptTyped(
      () => {
        // from here the channel is gone from `dir`: an end opening it now makes a new one
        const aside = asideOf(abs)
        Fs.renameSync(abs, aside)
        // what is deleted is what it holds now: the check above may have changed before the locks were ours
        const inside = listOwn(aside)
        if (Sys.failed(inside)) throw inside
        if (inside.foreign.length > 0) {
          // put there since the check: everything goes back, unless the path was taken meanwhile (a rename
          // would replace an empty directory there)
          try {
            if (Sys.exists(abs)) throw new Error("taken")
            Fs.renameSync(aside, abs)
          } catch {
            throw IpcError.make(
              "AddressInUse",
              `${
                Layout.listing(inside.foreign)
              } appeared while the channel was being removed: nothing of it removed, it is in ${aside}`,
              dir
            )
          }
          throw foreignIn(inside)
        }
        deleteOwn(aside, dir, inside)
      },
      "Write",
      `cannot remove the channel directory ${dir}`,
      dir
    )
    // their files are gone with the directory (or stay with it, on failure: those made here go)
    letGo(held)
    if (Sys.failed(removed)) return yield* removed
    finishAside(abs)
  })
