/**
 * The seed's model: one directory, two fixed roles. The `backend` writes
 * `backend_to_frontend` and reads `frontend_to_backend`; the `frontend` the
 * other way round. Unlike ipckit's FileChannel, both directions are
 * append-only logs (`Log`) and each side reads from a durable cursor:
 *
 * - nothing is dropped: messages wait in the log until the other side has
 *   read them, even if it is not running yet (the directory is created with
 *   both readers registered, so the first message is kept for a frontend
 *   that starts an hour later);
 * - a side that restarts carries on where it stopped, without gaps or
 *   repeats (the cursor is committed as each message is taken);
 * - the channel outlives the other side's sessions: a side that closes
 *   cleanly (or was never there) is waited for, and what is sent meanwhile
 *   waits in the log; a side whose process dies without closing is
 *   `ConnectionLost` once it had been seen (open the role again to go on
 *   from the cursor).
 *
 * ```ts no-run
 * const backend = yield* FileChannel.backend("/tmp/app-ipc")   // in one process
 * const frontend = yield* FileChannel.frontend("/tmp/app-ipc") // in another
 * ```
 *
 * Each end is an ordinary `IpcChannel`: typed views, `IpcRpc` (address
 * `file:///dir?role=backend`) and `Messages` (the seed's request, response
 * and event messages) all work on it.
 *
 * @since 0.1.0
 */
import type * as IpcChannel from "@effect-ipc/core/IpcChannel"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Endpoint from "./internal/endpoint.ts"
import * as Layout from "./internal/layout.ts"
import * as Lock from "./internal/lock.ts"
import * as Sys from "./internal/sys.ts"
import * as Log from "./Log.ts"

/** A role: `backend` or `frontend`. */
export type Role = Endpoint.Role

/** Options of a file channel: the log's limits and the channel's buffers (all optional). */
export interface FileChannelOptions extends Endpoint.EndpointOptions {}

/** The stream a role writes (`backend_to_frontend` / `frontend_to_backend`). */
export const streamOf = Endpoint.outgoing

/** Creates the channel directory `dir` if needed (both streams, both readers registered); idempotent. */
export const create = (dir: string, options: FileChannelOptions = {}): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const fileMode = options.fileMode ?? Log.defaults.fileMode
    const dirMode = options.dirMode ?? Log.defaults.dirMode
    const made = Layout.ensureDir(dir, dirMode, dir)
    if (Sys.failed(made)) return Effect.fail(made)
    const marker = Layout.loadMarker(dir)
    if (Sys.failed(marker)) return Effect.fail(marker)
    if (marker !== undefined && marker.kind !== "channel") {
      return Effect.fail(
        IpcError.make("AddressInUse", `${dir} is a listener directory, not a channel directory`, dir)
      )
    }
    const paths = Endpoint.channelPaths(dir)
    const check = (role: Role) =>
      Effect.suspend(() => {
        const unsafe = Layout.checkStream(paths.stream(role), dir)
        return unsafe === undefined ? Effect.void : Effect.fail(unsafe)
      })
    return Effect.gen(function*() {
      for (const role of ["backend", "frontend"] as const) {
        yield* check(role)
        yield* Log.create(paths.stream(role), { readers: [Endpoint.peerOf(role)], fileMode, dirMode })
        yield* check(role)
      }
      if (marker === undefined) {
        const error = Layout.writeMarker(dir, { format: "effect-ipc-file", version: 1, kind: "channel" }, fileMode)
        if (error !== undefined) return yield* error
      }
    })
  })

/** Where a role's peer stands: present while its lock is held; once seen and gone, absent. */
const rolePeer = (dir: string, role: Role) => (seenBefore: boolean): Endpoint.PeerStatus | IpcError.IpcError => {
  const state = Lock.probe(Endpoint.channelPaths(dir).lock(Endpoint.peerOf(role)))
  if (Sys.failed(state)) return state
  return state === "held" ? "present" : seenBefore ? "absent" : "pending"
}

/**
 * Opens the `role` end of the channel in `dir`, creating the directory if
 * needed. One process at a time may hold a role (`AddressInUse` otherwise).
 * The end is closed (with a close record for the other side) when the scope
 * closes.
 */
export const open = (
  dir: string,
  role: Role,
  options: FileChannelOptions = {},
  address = `file://${dir}?role=${role}`
): Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope> =>
  Effect.map(openEndpoint(dir, role, options, address), (endpoint) => endpoint.channel)

/** Opens the backend end of the channel in `dir` (see `open`). */
export const backend = (
  dir: string,
  options?: FileChannelOptions
): Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope> => open(dir, "backend", options)

/** Opens the frontend end of the channel in `dir` (see `open`). */
export const frontend = (
  dir: string,
  options?: FileChannelOptions
): Effect.Effect<IpcChannel.IpcChannel, IpcError.IpcError, Scope.Scope> => open(dir, "frontend", options)

/**
 * Opens the `role` end for use by hand: its deliveries carry their log
 * offsets and are committed with `commit` (used by `Messages`).
 */
export const openEndpoint = (
  dir: string,
  role: Role,
  options: FileChannelOptions = {},
  address = `file://${dir}?role=${role}`
): Effect.Effect<Endpoint.Endpoint, IpcError.IpcError, Scope.Scope> =>
  Effect.andThen(
    create(dir, options),
    Effect.acquireRelease(
      Endpoint.open({ address, dir, role, peerStatus: rolePeer(dir, role), durable: true }, options),
      (endpoint) => endpoint.channel.close
    )
  )

/**
 * Deletes the channel directory `dir` and everything in it, unsent or unread
 * messages included. Only a directory marked as a channel that passes the
 * directory checks goes: otherwise `NotFound` (missing, or not a channel),
 * `AddressInUse` (a listener's) or `PermissionDenied`, and nothing is
 * touched. Fails with `AddressInUse` while either end is open.
 */
export const remove = (dir: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const unsafe = Layout.checkDir(dir, dir)
    if (unsafe !== undefined) return Effect.fail(unsafe)
    const marker = Layout.loadMarker(dir)
    if (Sys.failed(marker)) return Effect.fail(marker)
    if (marker?.kind === "listener") {
      return Effect.fail(IpcError.make("AddressInUse", `${dir} is a listener directory: nothing removed`, dir))
    }
    if (marker?.kind !== "channel") {
      return Effect.fail(
        IpcError.make(
          "NotFound",
          `${dir} is not a channel directory (no ${Layout.MARKER} marker): nothing removed`,
          dir
        )
      )
    }
    const paths = Endpoint.channelPaths(dir)
    for (const role of ["backend", "frontend"] as const) {
      const state = Lock.probe(paths.lock(role))
      if (Sys.failed(state)) return Effect.fail(state)
      if (state === "held") {
        return Effect.fail(IpcError.make("AddressInUse", `the ${role} end of ${dir} is still open`, dir))
      }
    }
    const removed = Sys.attempt(() => Fs.rmSync(dir, { recursive: true, force: true }), "Write", "cannot remove", dir)
    return Sys.failed(removed) ? Effect.fail(removed) : Effect.void
  })
