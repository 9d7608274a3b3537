/**
 * Where a `ws://` server keeps its token for local clients, as Jupyter does:
 * one file per address, mode 0600, in this user's private runtime directory
 * (`$XDG_RUNTIME_DIR/effect-ipc`, else `<tmp>/effect-ipc-<uid>`, mode 0700).
 * A client in Node run by the same user finds the token there; other users
 * cannot read it. The server removes its file when it closes. Node only.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type * as WsAddress from "./WsAddress.ts"

/** A fresh token: 32 random bytes, base64url (43 characters). */
export const generate = (): string => Crypto.randomBytes(32).toString("base64url")

const uid = (): number | undefined => process.getuid?.()

const privateDirectory = (): string => {
  const base = process.env["XDG_RUNTIME_DIR"]
  const dir = base !== undefined && base.length > 0
    ? Path.join(base, "effect-ipc")
    : Path.join(Os.tmpdir(), `effect-ipc-${uid() ?? "user"}`)
  Fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const stat = Fs.lstatSync(dir)
  const me = uid()
  if (!stat.isDirectory() || (me !== undefined && stat.uid !== me) || (stat.mode & 0o077) !== 0) {
    throw Object.assign(new Error(`${dir} is not a private directory of this user`), { code: "EACCES" })
  }
  return dir
}

/**
 * This user's private directory for token files: `$XDG_RUNTIME_DIR/effect-ipc`
 * or `<tmp>/effect-ipc-<uid>`, created with mode 0700. An existing directory
 * that another user owns, or that others can enter, is refused (`PermissionDenied`).
 */
export const directory = (): Effect.Effect<string, IpcError.IpcError> =>
  Effect.try({
    try: privateDirectory,
    catch: (cause) => IpcError.fromSystemError(cause, "PermissionDenied", "no private runtime directory")
  })

const escape = (text: string): string => text.replace(/[^A-Za-z0-9._-]/g, (c) => `~${c.charCodeAt(0).toString(16)}`)

/** The name of the token file of `address` in `dir`: `ws-<host>-<port><path>.token`, escaped. */
export const pathIn = (dir: string, address: WsAddress.WsAddress): string =>
  Path.join(dir, `ws-${escape(address.host)}-${address.port}${escape(address.path)}.token`)

/** The token file of `address` in this user's runtime directory. */
export const pathOf = (address: WsAddress.WsAddress): Effect.Effect<string, IpcError.IpcError> =>
  Effect.map(directory(), (dir) => pathIn(dir, address))

/** Writes `token` to `file` with mode 0600, atomically (a reader sees the old file or the new one). */
export const write = (file: string, token: string): Effect.Effect<void, IpcError.IpcError> =>
  Effect.try({
    try: () => {
      const staging = `${file}.${process.pid}.${Crypto.randomBytes(4).toString("hex")}`
      try {
        Fs.writeFileSync(staging, `${token}\n`, { mode: 0o600, flag: "wx" })
        Fs.renameSync(staging, file)
      } finally {
        Fs.rmSync(staging, { force: true })
      }
    },
    catch: (cause) => IpcError.fromSystemError(cause, "Open", `cannot write the token file ${file}`)
  })

/**
 * The token in `file`, if the file is there, is this user's and no one else
 * can read it (mode 0600 or stricter); `undefined` otherwise.
 */
export const readIfPrivate = (file: string): string | undefined => {
  try {
    const fd = Fs.openSync(file, Fs.constants.O_RDONLY | Fs.constants.O_NOFOLLOW)
    try {
      const stat = Fs.fstatSync(fd)
      const me = uid()
      if (!stat.isFile() || (me !== undefined && stat.uid !== me) || (stat.mode & 0o077) !== 0) return undefined
      const token = Fs.readFileSync(fd, "utf8").trim()
      return token.length > 0 ? token : undefined
    } finally {
      Fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}

/** Finds the token of `address` in this user's runtime directory (the client's default `tokenLookup`). */
export const lookup = (address: WsAddress.WsAddress): string | undefined => {
  let dir: string
  try {
    dir = privateDirectory()
  } catch {
    return undefined
  }
  return readIfPrivate(pathIn(dir, address))
}

/** Removes `file` if it still holds `token` (a successor's file is left alone). */
export const removeIfOurs = (file: string, token: string): void => {
  if (readIfPrivate(file) === token) Fs.rmSync(file, { force: true })
}
