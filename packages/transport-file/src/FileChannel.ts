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
 *   `ConnectionLost` once it had been seen, holding its lock, by a message,
 *   or by the token it left in its lock file (open the role again to go on
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
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ChannelDir from "./internal/channelDir.ts"
import * as Endpoint from "./internal/endpoint.ts"
import * as Layout from "./internal/layout.ts"
import * as Sys from "./internal/sys.ts"
import * as Log from "./Log.ts"

/** A role: `backend` or `frontend`. */
export type Role = Endpoint.Role

/** Options of a file channel: the log's limits and the channel's buffers (all optional). */
export interface FileChannelOptions extends Endpoint.EndpointOptions {}

/** The stream a role writes (`backend_to_frontend` / `frontend_to_backend`). */
export const streamOf = Endpoint.outgoing

/**
 * Creates the channel directory `dir` if needed (both streams, both readers
 * registered); idempotent. An existing directory is used only if it is
 * marked as a channel or is empty: a listener's directory, or one holding
 * anything else (your project folder), is `AddressInUse` naming what is
 * there, and nothing in it is touched.
 */
export const create = (dir: string, options: FileChannelOptions = {}): Effect.Effect<void, IpcError.IpcError> =>
  createAt(dir, options, 0)

/** `create`, the `attempt`th time (a directory removed meanwhile by an open that failed is made again, a few times). */
const createAt = (dir: string, options: FileChannelOptions, attempt: number): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const invalid = Layout.invalidDir(dir) ?? Sys.invalidModes(options, dir)
    if (invalid !== undefined) return Effect.fail(invalid)
    const fileMode = options.fileMode ?? Log.defaults.fileMode
    const dirMode = options.dirMode ?? Log.defaults.dirMode
    const made = Layout.ensureDir(dir, dirMode, dir)
    if (Sys.failed(made)) return Effect.fail(made)
    // marked before anything else is made in it: nothing of ours is ever in an unmarked directory
    const claimed = Layout.claim(dir, "channel", fileMode, dir)
    if (Sys.failed(claimed)) {
      // not marked (a full disk: `NoSpace`): the directories made on the way go again, while empty
      Layout.unmakeDirs(made)
      // removed meanwhile by a process whose open failed so: made again
      if (claimed.reason._tag === "NotFound" && attempt < 3 && !Sys.exists(dir)) {
        return createAt(dir, options, attempt + 1)
      }
      return Effect.fail(claimed)
    }
    const paths = Endpoint.channelPaths(dir)
    const check = (role: Role) =>
      Effect.suspend(() => {
        const unsafe = Layout.checkStream(paths.stream(role), dir)
        return unsafe === undefined ? Effect.void : Effect.fail(unsafe)
      })
    return Effect.gen(function*() {
      for (const role of Endpoint.ROLES) {
        yield* check(role)
        yield* Log.create(paths.stream(role), { readers: [Endpoint.peerOf(role)], fileMode, dirMode })
        yield* check(role)
      }
    })
  })

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
 * offsets and are committed with `commit` (used by `Messages`). Its options
 * are checked first, as `open`'s are: nothing is made for a bad one.
 */
export const openEndpoint = (
  dir: string,
  role: Role,
  options: FileChannelOptions = {},
  address = `file://${dir}?role=${role}`
): Effect.Effect<Endpoint.Endpoint, IpcError.IpcError, Scope.Scope> =>
  Effect.suspend(() => {
    // what the types rule out (JavaScript, or a cast, can pass anything), before anything is made
    const invalid = Layout.invalidEnd(dir, role)
    return invalid === undefined ? Effect.void : Effect.fail(invalid)
  }).pipe(
    Effect.andThen(TransportOptions.optionsOk(options, address)),
    Effect.andThen(Endpoint.optionsFit(options, address)),
    Effect.andThen(create(dir, options))
  ).pipe(Effect.andThen(
    Effect.acquireRelease(
      Endpoint.open({ address, dir, role, peerStatus: Endpoint.rolePeer(dir, role), durable: true }, options),
      (endpoint) => endpoint.channel.close
    )
  ))

/**
 * Deletes the channel directory `dir` with the channel's own entries in it,
 * unsent or unread messages included. Only a directory marked as a channel
 * that passes the directory checks and holds nothing but the channel's own
 * files goes: otherwise `NotFound` (missing, or not a channel),
 * `AddressInUse` (a listener's, one holding other files, named in the
 * error, or one with an end open), `InvalidAddress` (`dir` is a symbolic
 * link: name the channel directory itself) or `PermissionDenied`, and
 * nothing is touched.
 *
 * While it runs it holds both role locks, so no end can open meanwhile, and
 * it first renames the directory aside (`.<name>.<16 hex digits>.removing`,
 * beside it): from that instant the channel is gone, and a process opening
 * `dir` makes a new one. A removal interrupted after the rename is finished
 * by the next `remove` of `dir`.
 */
export const remove = (dir: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const invalid = Layout.invalidDir(dir)
    return invalid === undefined ? ChannelDir.remove(dir) : Effect.fail(invalid)
  })
