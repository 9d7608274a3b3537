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
 * live, its pid meaning nothing here.
 * The server removes its file when it closes, and as it listens, the files
 * there of servers that no longer run (`sweepDead`). Node only.
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

/** What a token file holds: its token, the server that wrote it (if recorded) and the file's mode and mtime. */
interface TokenRecord {
  readonly token: string
  readonly server: Process.Identity | undefined
  readonly mode: number
  readonly writtenAt: number
}

// a token file is a token and an identity: more is not one, and is not read
const RECORD_MAX_BYTES = 64 * 1024

/**
 * Reads the token file at `file` if it is a regular file of this user (opened without following a link and without
 * blocking on a FIFO): its token and the server it records (`Process.decode`: `pid@startTime.pidNamespace`, or an
 * older file's bare pid).
 */
const readRecord = (file: string): TokenRecord | undefined => {
  try {
    const flags = Fs.constants.O_RDONLY | Fs.constants.O_NOFOLLOW | Fs.constants.O_NONBLOCK
    const fd = Fs.openSync(file, flags)
    try {
      const stat = Fs.fstatSync(fd)
      const me = RuntimeDir.userId()
      if (!stat.isFile() || (me !== undefined && stat.uid !== me) || stat.size > RECORD_MAX_BYTES) return undefined
      const [token = "", server = ""] = Fs.readFileSync(fd, "utf8").split("\n").map((line) => line.trim())
      return { token, server: Process.decode(server), mode: stat.mode, writtenAt: stat.mtimeMs }
    } finally {
      Fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}

/**
 * False when the record's server is known to be dead (`Process.liveness`: its pid is not running, or runs another
 * process since); a server of another pid namespace (a container sharing the directory) is taken as alive.
 */
const serverRuns = (record: TokenRecord): boolean =>
  record.server === undefined || Process.isAlive(record.server, record.writtenAt)

/**
 * The token in `file`, if the file is there, is this user's, no one else can
 * read it (mode 0600 or stricter) and the server it records still runs;
 * `undefined` otherwise.
 */
export const readIfPrivate = (file: string): string | undefined => {
  const record = readRecord(file)
  if (record === undefined || (record.mode & 0o077) !== 0 || !serverRuns(record)) return undefined
  return record.token.length > 0 ? record.token : undefined
}

/**
 * Finds the token of `address` in this user's token directories, the runtime
 * one then `~/.cache/effect-ipc`, reading only private ones (the client's
 * default `tokenLookup`).
 */
export const lookup = (address: WsAddress.WsAddress): string | undefined => {
  for (const dir of [RuntimeDir.directoryOn(RuntimeDir.currentHost(), { sockets: false }), homeDirectory()]) {
    if (!RuntimeDir.ownedDirectory(dir, true)) continue
    const token = readIfPrivate(pathIn(dir, address))
    if (token !== undefined) return token
  }
  return undefined
}

/**
 * Removes from `dir` the token files of this user whose server (the process
 * they record) no longer runs: what killed servers left behind, which no
 * listener at the same address would replace (one at port 0 gets a fresh port
 * each time). Returns how many it removed; a file it cannot read, another
 * user's, and one of a server in another pid namespace are left alone.
 */
export const sweepDead = (dir: string): number => {
  let entries: ReadonlyArray<string>
  try {
    entries = Fs.readdirSync(dir)
  } catch {
    return 0
  }
  let removed = 0
  for (const name of entries) {
    if (!name.startsWith("ws-") || !name.endsWith(".token")) continue
    const record = readRecord(Path.join(dir, name))
    if (record === undefined || serverRuns(record)) continue
    try {
      Fs.rmSync(Path.join(dir, name))
      removed++
    } catch {
      // gone meanwhile, or not ours to remove: left alone
    }
  }
  return removed
}

/** Removes `file` if it still holds `token` (a successor's file is left alone). */
export const removeIfOurs = (file: string, token: string): void => {
  if (readIfPrivate(file) === token) Fs.rmSync(file, { force: true })
}
