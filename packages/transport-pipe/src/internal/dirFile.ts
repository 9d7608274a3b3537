/**
 * A listener's file reached through one descriptor of its directory, opened
 * at `listen` and closed with the listener: on Linux `/proc/self/fd/N/name`,
 * so that every look at, creation, link, rename and removal of it lands in the
 * directory opened, even when a user who may rename a directory on the path
 * swaps a link to another in between (a removal by path removed a file of
 * that name there, of root's); elsewhere, or where the directory cannot be
 * opened, the path. Used by `unix://` and `fifo://` listeners.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as SocketPath from "../SocketPath.ts"

/** A file's path as given, and where this process reaches it. */
export interface DirFile {
  /** The path as given (what messages name). */
  readonly path: string
  /** Its directory: `/proc/self/fd/N`, or the path's. */
  readonly dir: string
  /** The file through `dir`. */
  readonly at: string
}

/** `path` (a file in the directory `fd` was opened on, or anywhere when `fd` is undefined) as a `DirFile`. */
export const fileAt = (path: string, fd: number | undefined): DirFile =>
  fd === undefined
    ? { path, dir: Path.dirname(path), at: path }
    : { path, dir: `/proc/self/fd/${fd}`, at: `/proc/self/fd/${fd}/${Path.basename(path)}` }

const closeDirectory = (fd: number | undefined) =>
  Effect.sync(() => {
    if (fd !== undefined) Fs.closeSync(fd)
  })

/** A descriptor of the directory of `path` (see `SocketPath.openDirectory`), closed with the scope. */
export const directory = (path: string): Effect.Effect<number | undefined, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.sync(() => SocketPath.openDirectory(path)), closeDirectory)

/**
 * Runs `listen` in a scope of its own, a child of the caller's: closed as soon as it fails or is interrupted, so a
 * refused listen returns its directory's descriptor at once (held until the caller's scope closed, a listen retried
 * in one scope held one more each time), after the finalizers that reach files through it; else closed with the
 * caller's.
 */
export const releasedOnFailure = <A, E, R>(
  listen: Effect.Effect<A, E, R>
): Effect.Effect<A, E, Exclude<R, Scope.Scope> | Scope.Scope> =>
  Effect.flatMap(Effect.scope, (parent) =>
    Effect.flatMap(Scope.fork(parent), (scope) =>
      listen.pipe(
        Scope.provide(scope),
        Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, exit))
      )))

/** `path` as a `DirFile`, its directory's descriptor closed with the scope. */
export const scoped = (path: string): Effect.Effect<DirFile, never, Scope.Scope> =>
  Effect.map(directory(path), (fd) => fileAt(path, fd))

/** Runs `use` with `path` as a `DirFile`, its directory's descriptor closed after. */
export const withFile = <A, E, R>(path: string, use: (file: DirFile) => Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => SocketPath.openDirectory(path)),
    (fd) => use(fileAt(path, fd)),
    closeDirectory
  )

/** `IpcError.fromSystemError` for a call on `file`, its message naming the real directory, not `/proc/self/fd/N`. */
export const errorAt = (
  file: DirFile,
  cause: unknown,
  reason: IpcError.IpcErrorReason,
  detail: string,
  raw: string
): IpcError.IpcError => {
  const parent = Path.dirname(file.path)
  if (!(cause instanceof Error) || file.dir === parent) return IpcError.fromSystemError(cause, reason, detail, raw)
  const named = Object.assign(new Error(cause.message.split(`${file.dir}/`).join(`${parent}/`)), {
    code: IpcError.errnoOf(cause)
  })
  return IpcError.fromSystemError(named, reason, detail, raw)
}

/** `Effect.try` of a call on `file`, failing with `errorAt`. */
export const trySyncAt = <A>(
  file: DirFile,
  f: () => A,
  reason: IpcError.IpcErrorReason,
  detail: string,
  raw: string
): Effect.Effect<A, IpcError.IpcError> =>
  Effect.try({ try: f, catch: (cause) => errorAt(file, cause, reason, detail, raw) })
