/**
 * Small synchronous file-system helpers for the log: each maps Node's
 * exceptions to an `IpcError` value (never thrown). They are used on open
 * descriptors of regular files with bounded sizes, where a system call is a
 * page-cache copy of a few microseconds; anything large goes through libuv's
 * threadpool in the callers.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Fs from "node:fs"

/** Runs `f`, turning a thrown system error into an `IpcError` with `fallback` as its reason. */
export const attempt = <A>(
  f: () => A,
  fallback: IpcError.IpcErrorReason,
  detail: string,
  address?: string
): A | IpcError.IpcError => {
  try {
    return f()
  } catch (cause) {
    return IpcError.fromSystemError(cause, fallback, detail, address)
  }
}

/** True for an `IpcError` value (the failure side of `attempt`). */
export const failed = (u: unknown): u is IpcError.IpcError => u instanceof IpcError.IpcError

/** Reads exactly `length` bytes at `position` (fewer only at end of file). */
export const readAt = (fd: number, length: number, position: number): Buffer => {
  const out = Buffer.allocUnsafe(length)
  let got = 0
  while (got < length) {
    const n = Fs.readSync(fd, out, got, length - got, position + got)
    if (n === 0) break
    got += n
  }
  return got === length ? out : out.subarray(0, got)
}

/** Writes all of `buffers` at `position`. */
export const writeAllAt = (fd: number, buffers: ReadonlyArray<Uint8Array>, position: number): void => {
  let pending = buffers.filter((b) => b.byteLength > 0)
  let at = position
  while (pending.length > 0) {
    let n = Fs.writevSync(fd, pending as Array<NodeJS.ArrayBufferView>, at)
    at += n
    const rest: Array<Uint8Array> = []
    for (const b of pending) {
      if (n >= b.byteLength) {
        n -= b.byteLength
      } else {
        rest.push(n === 0 ? b : b.subarray(n))
        n = 0
      }
    }
    pending = rest
  }
}

/** Closes `fd`, ignoring errors (it is being let go). */
export const closeQuietly = (fd: number | undefined): void => {
  if (fd === undefined) return
  try {
    Fs.closeSync(fd)
  } catch {
    // already closed
  }
}

/** True when `path` exists (any kind of file). */
export const exists = (path: string): boolean => {
  try {
    Fs.lstatSync(path)
    return true
  } catch {
    return false
  }
}

/** Whether a process with `pid` exists (EPERM: it exists, owned by someone else). */
export const isAlive = (pid: number): boolean => {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return IpcError.errnoOf(cause) === "EPERM"
  }
}

/** A random identifier: 16 hex digits. */
export const randomId = (): string => {
  const bytes = new Uint8Array(8)
  crypto.getRandomValues(bytes)
  let out = ""
  for (const b of bytes) out += b.toString(16).padStart(2, "0")
  return out
}
