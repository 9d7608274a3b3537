/**
 * A per-path lock that other users cannot hold: a lock file in this user's
 * private lock directory (see `SocketPath.lockDir`), named by a hash of
 * the path it guards. Locking the directory that holds the path (such as
 * /tmp) would let anyone who can open that directory block us forever.
 *
 * @internal
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import * as SocketPath from "../SocketPath.ts"
import * as Libc from "./libc.ts"

/** Runs `body` holding this user's exclusive lock for `path` (every process of the user shares it). */
export const withPathLock = <A, E, R>(
  path: string,
  raw: string,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E | IpcError.IpcError, R> =>
  Effect.flatMap(SocketPath.lockDir(raw), (dir) => {
    const key = Crypto.createHash("sha256").update(Path.resolve(path)).digest("hex").slice(0, 32)
    return Libc.withLockFile(Path.join(dir, `.lock-${key}`), raw, body)
  })
