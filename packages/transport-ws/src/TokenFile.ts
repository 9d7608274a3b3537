/**
 * Where a `ws://` server keeps its token for local clients, as Jupyter does:
 * one file per address, mode 0600, in this user's private runtime directory
 * (`$XDG_RUNTIME_DIR/effect-ipc` when `$XDG_RUNTIME_DIR` is a directory of this
 * user that no other user can write, else `<tmp>/effect-ipc-<uid>`, mode 0700:
 * core's `RuntimeDir`, the rule `pipe://` sockets follow too).
 * When that directory is not this user's private one (another user created
 * `<tmp>/effect-ipc-<uid>` first), it is refused and the file goes to
 * `~/.cache/effect-ipc` (mode 0700) instead, with a warning naming the
 * refused directory; a client looks in both. A client in Node run by the same
 * user finds the token there; other users cannot read it. The file also
 * records the server (`Process.Identity`: its pid, start time and pid
 * namespace): a file whose server no longer runs is ignored, and one written
 * in another pid namespace (a container sharing the directory) is taken as
 * live, its pid meaning nothing here; a damaged one (not a token and an
 * identity) fails a client with `Corrupt` naming it (`read`), unless the
 * other directory holds a valid token for the address (`find`).
 * The server removes its file when it closes, and as it listens, the files
 * there of servers that no longer run and damaged ones a minute old
 * (`sweepDead`), each judged again once taken away, so a file rewritten
 * meanwhile is kept. Node only.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Process from "@effect-ipc/core/Process"
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Record from "./internal/record.ts"
import type * as WsAddress from "./WsAddress.ts"

/** A fresh token: 32 random bytes, base64url (43 characters). */
export const generate = (): string => Crypto.randomBytes(32).toString("base64url")

/** The fallback under this user's home: `~/.cache/effect-ipc`. */
const homeDirectory = (): string => Path.join(Os.homedir(), ".cache", "effect-ipc")

/** This user's private directory, and the directory refused on the way to it (if any). */
const privateDirectory = (): Effect.Effect<
  { readonly dir: string; readonly refused: string | undefined },
  IpcError.IpcError
> =>
  Effect.suspend(() => {
    const first = RuntimeDir.directoryOn(RuntimeDir.currentHost(), { sockets: false })
    return Effect.catch(
      Effect.map(RuntimeDir.ensurePrivate(first), (dir) => ({ dir, refused: undefined })),
      // another user may have created it first (<tmp> is shared by all): fall back to the home directory
      (error) =>
        RuntimeDir.ensurePrivate(homeDirectory()).pipe(
          Effect.map((dir) => ({ dir, refused: first })),
          Effect.mapError(() => error)
        )
    )
  })

/**
 * This user's private directory for token files: `$XDG_RUNTIME_DIR/effect-ipc`
 * (when `$XDG_RUNTIME_DIR` is a directory of this user that no other user can
 * write) or `<tmp>/effect-ipc-<uid>`, created with mode 0700. An existing directory
 * that another user owns, or that others can enter, is refused: then
 * `~/.cache/effect-ipc` (mode 0700) is used, with a warning naming the refused
 * directory; `PermissionDenied` when neither is private.
 */
export const directory = (): Effect.Effect<string, IpcError.IpcError> =>
  privateDirectory().pipe(
    Effect.tap(({ refused }) =>
      refused === undefined
        ? Effect.void
        : Effect.logWarning(
          `${refused} is not a private directory of this user (another user may have created it): ` +
            `token files go to ${homeDirectory()}`
        )
    ),
    Effect.map(({ dir }) => dir)
  )

const escape = (text: string): string => text.replace(/[^A-Za-z0-9._-]/g, (c) => `~${c.charCodeAt(0).toString(16)}`)

/** The name of the token file of `address` in `dir`: `ws-<host>-<port><path>.token`, escaped. */
export const pathIn = (dir: string, address: WsAddress.WsAddress): string =>
  Path.join(dir, `ws-${escape(address.host)}-${address.port}${escape(address.path)}.token`)

/** The token file of `address` in this user's runtime directory. */
export const pathOf = (address: WsAddress.WsAddress): Effect.Effect<string, IpcError.IpcError> =>
  Effect.map(directory(), (dir) => pathIn(dir, address))

/**
 * Writes `token` and this process's identity (`Process.encode`: pid, start
 * time and pid namespace) to `file` (two lines) with mode 0600, atomically (a
 * reader sees the old file or the new one).
 */
export const write = (file: string, token: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.try({
    try: () => {
      const staging = `${file}.${process.pid}.${Crypto.randomBytes(4).toString("hex")}`
      try {
        Fs.writeFileSync(staging, `${token}\n${Process.encode(Process.self())}\n`, { mode: 0o600, flag: "wx" })
        Fs.renameSync(staging, file)
      } finally {
        Fs.rmSync(staging, { force: true })
      }
    },
    catch: (cause) => IpcError.fromSystemError(cause, "Open", `cannot write the token file ${file}`)
  })

/**
 * `AlreadyExists` when something other than a token file of this user is at `file` (a user's own file, a link, a
 * directory, a FIFO, a damaged token file): a given `tokenFile` replaces and later removes only a token file.
 */
export const refuseOther = (file: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    // nothing there, or nothing this user can see there (the write says why it cannot write)
    if (!Record.taken(file, false)) return Effect.void
    const state = Record.inspect(file)
    if (state._tag === "Record") return Effect.void
    const what = state._tag === "Damaged" ? `not a token file: ${state.why}` : "not a regular file of this user"
    return Effect.fail(IpcError.make(
      "AlreadyExists",
      `${file} exists and is ${what}: the token file is not written over it (remove it if it is an old token file)`
    ))
  })

/**
 * The token in `file`: `undefined` when the file is not there, is not this user's, others can read it (its mode
 * is not 0600 or stricter) or the server it records no longer runs; fails with `Corrupt` naming the file when it
 * is this user's but not a token and its server's identity (damaged: whether its server runs cannot be told).
 */
export const read = (file: string): Effect.Effect<string | undefined, IpcError.IpcError> =>
  Effect.suspend(() => {
    const token = readNow(file)
    return token instanceof Error ? Effect.fail(token) : Effect.succeed(token)
  })

/** `read`, done now: the token, `undefined`, or the `Corrupt` error. */
const readNow = (file: string): string | undefined | IpcError.IpcError => {
  const state = Record.inspect(file)
  if (state._tag === "Foreign") return undefined
  if (state._tag === "Record") {
    const { record } = state
    const trusted = (record.mode & 0o077) === 0 && Record.serverRuns(record.server, record.writtenAt)
    return trusted ? record.token : undefined
  }
  // one others can read is ignored, damaged or not; one whose identity line still names a dead server is only
  // a dead server's file
  if ((state.mode & 0o077) !== 0 || (state.server !== undefined && !Record.serverRuns(state.server, state.writtenAt))) {
    return undefined
  }
  return IpcError.make(
    "Corrupt",
    `the token file ${file} is damaged (${state.why}): remove it, or restart the listener that writes it`
  )
}

/**
 * The token of `address` in this user's token directories, `find`'s order, done now: the first valid one; else
 * the `Corrupt` error of the first damaged file (a damaged file is passed over when another directory holds a
 * valid token); else `undefined`.
 */
const findNow = (address: WsAddress.WsAddress): string | undefined | IpcError.IpcError => {
  let damaged: IpcError.IpcError | undefined
  for (const dir of [RuntimeDir.directoryOn(RuntimeDir.currentHost(), { sockets: false }), homeDirectory()]) {
    if (!RuntimeDir.ownedDirectory(dir, true)) continue
    const token = readNow(pathIn(dir, address))
    if (token instanceof Error) damaged ??= token
    else if (token !== undefined) return token
  }
  return damaged
}

/** `read`, with a damaged file taken as no token (for a synchronous `tokenLookup`). */
export const readIfPrivate = (file: string): string | undefined => {
  const token = readNow(file)
  return token instanceof Error ? undefined : token
}

/**
 * Finds the token of `address` in this user's token directories, the runtime one then `~/.cache/effect-ipc`,
 * reading only private ones (`read`): a valid token in either wins; `Corrupt`, naming the damaged file, only when
 * neither holds one and a file there is damaged.
 */
export const find = (address: WsAddress.WsAddress): Effect.Effect<string | undefined, IpcError.IpcError> =>
  Effect.suspend(() => {
    const token = findNow(address)
    return token instanceof Error ? Effect.fail(token) : Effect.succeed(token)
  })

/** `find`, with a damaged file taken as no token (for a synchronous `tokenLookup`). */
export const lookup = (address: WsAddress.WsAddress): string | undefined => {
  const token = findNow(address)
  return token instanceof Error ? undefined : token
}

/**
 * Removes from `dir` the token files of this user whose server (the process
 * they record) no longer runs: what killed servers left behind, which no
 * listener at the same address would replace (one at port 0 gets a fresh port
 * each time); and damaged ones (not a token and an identity) a minute old,
 * or whose identity line names a dead server. Returns how many it removed; a
 * file it cannot read, another user's, and one of a server in another pid
 * namespace are left alone, and so is a file a server writes under the same
 * name meanwhile (each is judged again once taken away).
 */
export const sweepDead = (dir: string): number => Record.sweep(dir).removed

/** Removes `file` if it still holds `token` (a successor's file, even one written meanwhile, is left alone). */
export const removeIfOurs = (file: string, token: string): void => {
  const ours = (state: Record.State) => state._tag === "Record" && state.record.token === token
  if (ours(Record.inspect(file))) Record.removeIf(file, ours)
}
