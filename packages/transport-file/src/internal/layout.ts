/**
 * The directories this package makes, and the marker file that says what a
 * directory is (`.effect-ipc`, JSON): a `channel` directory (two fixed
 * roles) or a `listener` directory (a listener and its connections, each a
 * channel directory under `connections/`).
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Sys from "./sys.ts"

/** The marker's file name. */
export const MARKER = ".effect-ipc"

/** What a marker says. */
export interface Marker {
  readonly format: "effect-ipc-file"
  readonly version: 1
  readonly kind: "channel" | "listener"
  /** True when a listener created the directory: the last listener to close removes it. */
  readonly ownsDirectory?: boolean | undefined
}

/** The marker of `dir`, if it has one. */
export const readMarker = (dir: string): Marker | undefined => {
  try {
    const value: unknown = JSON.parse(Fs.readFileSync(Path.join(dir, MARKER), "utf8"))
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

/** Writes the marker of `dir` (atomically: written aside, renamed into place). */
export const writeMarker = (dir: string, marker: Marker, mode: number): IpcError.IpcError | undefined => {
  const result = Sys.attempt(
    () => {
      const path = Path.join(dir, MARKER)
      const tmp = `${path}.${Sys.randomId()}.tmp`
      try {
        Fs.writeFileSync(tmp, `${JSON.stringify(marker)}\n`, { mode, flag: "wx" })
        Fs.renameSync(tmp, path)
      } finally {
        Fs.rmSync(tmp, { force: true })
      }
    },
    "Write",
    "cannot write the directory marker",
    dir
  )
  return Sys.failed(result) ? result : undefined
}

/** Creates `dir` (and missing parents) with `mode`; true when this call created it. */
export const ensureDir = (dir: string, mode: number, address?: string): boolean | IpcError.IpcError =>
  Sys.attempt(
    () => {
      if (Sys.exists(dir)) {
        if (!Fs.statSync(dir).isDirectory()) {
          throw Object.assign(new Error(`${dir} is not a directory`), { code: "ENOTDIR" })
        }
        // anyone could replace our files in a directory that anyone may write to
        if ((Fs.statSync(dir).mode & 0o002) !== 0) {
          throw Object.assign(new Error(`${dir} is writable by every user: not a safe place for a channel`), {
            code: "EACCES"
          })
        }
        // fail now, with the reason, when we cannot create files in it
        Fs.accessSync(dir, Fs.constants.W_OK | Fs.constants.X_OK)
        return false
      }
      Fs.mkdirSync(dir, { recursive: true, mode })
      return true
    },
    "Open",
    `cannot use the directory ${dir}`,
    address
  )

/** The paths of a listener directory. */
export const listenerPaths = (dir: string) => ({
  dir,
  lock: Path.join(dir, "listener.lock"),
  connections: Path.join(dir, "connections"),
  connection: (id: string) => Path.join(dir, "connections", id),
  info: (id: string) => Path.join(dir, "connections", id, "connection.json")
})
