/**
 * Who is alive, safely across pid reuse. A process is recorded as an
 * `Identity`: its pid, its start time and its pid namespace. A pid alone is
 * not enough: once its process dies the kernel hands the number to the next
 * process, and `kill(pid, 0)` then answers for a stranger. The start time
 * (Linux: field 22 of `/proc/<pid>/stat`) tells the recorded process from
 * whoever holds its pid now; the namespace (`/proc/self/ns/pid`) keeps a
 * process of another pid namespace (a container sharing a directory or
 * `/dev/shm`) from being judged by a pid that means something else here.
 *
 * Both are small positive integers ("tags", 31 bits, fit for a 32-bit word
 * of a shared header), or 0 where they are unknown: on a system without
 * procfs (macOS), or in a record written by an older version that kept only
 * the pid. A record without a start time falls back to `kill(pid, 0)`; if it
 * says when it was written (`recordedAt`, e.g. the file's mtime), a process
 * that started later than that is not its writer either.
 *
 * A process in another time namespace (Linux 5.6+: `unshare --time`, a
 * restored checkpoint) reads its start time on another clock, so from here a
 * live writer may seem to have started at another time: a running pid whose
 * start time differs is `unknown`, not `dead`, when that process's time
 * namespace differs from ours or cannot be read (`seesOtherClock`).
 *
 * Every read is of procfs, which is memory-backed: nothing here waits on a
 * disk, and nothing throws.
 *
 * @since 0.1.0
 */
import * as IpcError from "./IpcError.ts"
import * as RuntimeDir from "./RuntimeDir.ts"

// node:fs is looked up when first used, not imported: core also bundles and loads in a browser page
const Fs = {
  readFileSync: (path: string, encoding: "latin1"): string =>
    process.getBuiltinModule("node:fs").readFileSync(path, encoding),
  readlinkSync: (path: string): string => process.getBuiltinModule("node:fs").readlinkSync(path),
  ownerOf: (path: string): number => process.getBuiltinModule("node:fs").statSync(path).uid
}

/** A process as recorded by whoever must later ask whether it still runs. */
export interface Identity {
  readonly pid: number
  /** The process's start time as a tag (clock ticks since boot, reduced to 31 bits, plus 1); 0 when unknown. */
  readonly startTime: number
  /** The pid namespace as a tag (the inode of `/proc/self/ns/pid`, reduced to 31 bits, plus 1); 0 when unknown. */
  readonly pidNamespace: number
}

/**
 * What can be said of a recorded process from here: a process of another pid
 * namespace, or a running pid seen through another clock, is `unknown`.
 */
export type Liveness = "alive" | "dead" | "unknown"

const hasProc = globalThis.process?.platform === "linux"

/** Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on every Linux that Node runs on). */
const USER_HZ = 100

/** Reduces a counter to a non-zero 31-bit tag (0 stays for "unknown"). */
const tag = (n: number): number => (n % 0x7fff_ffff) + 1

/** The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and parentheses). */
const statFields = (pid: number): ReadonlyArray<string> | undefined => {
  if (!hasProc) return undefined
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  } catch {
    return undefined
  }
}

/**
 * How `pid` ended, while it is a zombie (it has exited and its parent has not yet collected it): its
 * exit code, or the signal that killed it (field 52 of `/proc/<pid>/stat`, Linux 3.5 on); `undefined`
 * while it runs, once it is collected, or without procfs.
 */
export const exitStatus = (
  pid: number
): { readonly code: number | null; readonly signal: string | null } | undefined => {
  const fields = statFields(pid)
  if (fields === undefined || fields[0] !== "Z" || fields.length < 50) return undefined
  const status = Number(fields[49])
  if (!Number.isInteger(status)) return undefined
  const signal = status & 0x7f
  if (signal === 0) return { code: (status >> 8) & 0xff, signal: null }
  const signals: Record<string, number> = process.getBuiltinModule("node:os").constants.signals
  const name = Object.entries(signals).find(([, n]) => n === signal)?.[0]
  return { code: null, signal: name ?? `signal ${signal}` }
}

/** Field 22 of `/proc/<pid>/stat`: when `pid` started, in clock ticks since boot. */
const startTicks = (pid: number): number | undefined => {
  const ticks = Number(statFields(pid)?.[19])
  return Number.isFinite(ticks) ? ticks : undefined
}

/** The start time tag of `pid` (see `Identity.startTime`), 0 where unknown (no procfs, no such process). */
export const startTime = (pid: number): number => {
  const ticks = startTicks(pid)
  return ticks === undefined ? 0 : tag(ticks)
}

const namespaceTag = (): number => {
  if (!hasProc) return 0
  try {
    const inode = Number(/\[(\d+)\]/.exec(Fs.readlinkSync("/proc/self/ns/pid"))?.[1])
    return Number.isFinite(inode) ? tag(inode) : 0
  } catch {
    return 0
  }
}

let me: Identity | undefined

/** This process. */
export const self = (): Identity => {
  if (me === undefined || me.pid !== process.pid) {
    me = { pid: process.pid, startTime: startTime(process.pid), pidNamespace: namespaceTag() }
  }
  return me
}

/** `kill(pid, 0)`: true when a process has the pid (EPERM: one of another user's). */
const exists = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return typeof cause === "object" && cause !== null && "code" in cause && cause.code === "EPERM"
  }
}

/** The identity of the process that has `pid` now, in this process's namespace; undefined when there is none. */
export const identify = (pid: number): Identity | undefined => {
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  if (pid === process.pid) return self()
  if (!exists(pid)) return undefined
  return { pid, startTime: startTime(pid), pidNamespace: self().pidNamespace }
}

/** When `pid` started, in milliseconds since the epoch (to 10 ms, as the system clock says now). */
const startedAt = (pid: number): number | undefined => {
  const ticks = startTicks(pid)
  if (ticks === undefined) return undefined
  try {
    const uptime = Number(Fs.readFileSync("/proc/uptime", "latin1").split(" ")[0])
    return Number.isFinite(uptime) ? Date.now() - uptime * 1000 + (ticks * 1000) / USER_HZ : undefined
  } catch {
    return undefined
  }
}

/** `/proc/<pid>/ns/time`; `undefined` when it does not exist (no such process, or no time namespaces). */
const timeNamespace = (pid: number | "self"): string | undefined | "unreadable" => {
  try {
    return Fs.readlinkSync(`/proc/${pid}/ns/time`)
  } catch (cause) {
    const code = IpcError.errnoOf(cause)
    return code === "ENOENT" || code === "ESRCH" ? undefined : "unreadable"
  }
}

let myClock: { readonly pid: number; readonly ns: string | undefined | "unreadable" } | undefined

/**
 * Whether running process `pid` is another user's while we are not root (`/proc/<pid>` is owned by
 * its effective uid). False when it is gone. (A process of ours made non-dumpable shows as root's.)
 */
const otherUser = (pid: number): boolean => {
  const euid = RuntimeDir.userId()
  if (euid === undefined || euid === 0) return false
  try {
    return Fs.ownerOf(`/proc/${pid}`) !== euid
  } catch {
    return false
  }
}

/**
 * Whether running process `pid` may read time on another clock than ours:
 * `/proc/<pid>/stat` gives start times on the reader's clock, so a process of
 * another time namespace seems to have started at another time than it
 * recorded. True when its time namespace differs from ours or cannot be read;
 * false when it is ours, when it is gone, without time namespaces (no procfs,
 * Linux before 5.6), and for another user's process unless we are root (its
 * namespace is never readable to us; records are kept where only their user
 * writes, so such a process has a dead writer's recycled pid).
 */
export const seesOtherClock = (pid: number): boolean => {
  if (!hasProc) return false
  if (myClock === undefined || myClock.pid !== process.pid) {
    myClock = { pid: process.pid, ns: timeNamespace("self") }
  }
  if (myClock.ns === undefined) return false
  if (otherUser(pid)) return false
  const theirs = timeNamespace(pid)
  if (theirs === undefined) return false
  return theirs === "unreadable" || myClock.ns === "unreadable" || theirs !== myClock.ns
}

/** How far `startedAt` may be off (uptime and ticks are read at 10 ms, the clock may be slewed). */
const CLOCK_SLACK_MS = 1000

/**
 * Whether the recorded process still runs: `dead` when no process has its
 * pid, or the one that has it started at another time (a recycled pid)
 * unless it reads time on another clock (`seesOtherClock`: then `unknown`);
 * `unknown` for a process of another pid namespace (callers treat it as
 * alive). A record without a start time is judged by the pid alone, unless
 * `recordedAt` (milliseconds since the epoch) says when its writer was alive:
 * a process that started after that is not the writer.
 */
export const liveness = (recorded: Identity, recordedAt?: number): Liveness => {
  if (!Number.isInteger(recorded.pid) || recorded.pid <= 0) return "dead"
  const here = self()
  if (recorded.pidNamespace !== 0 && here.pidNamespace !== 0 && recorded.pidNamespace !== here.pidNamespace) {
    return "unknown"
  }
  if (recorded.pid === here.pid) {
    return recorded.startTime === 0 || here.startTime === 0 || recorded.startTime === here.startTime ? "alive" : "dead"
  }
  if (!exists(recorded.pid)) return "dead"
  if (recorded.startTime !== 0) {
    const now = startTime(recorded.pid)
    // unreadable (procfs mounted hidepid, or the process just exited): the pid is all we know
    if (now === 0 || now === recorded.startTime) return "alive"
    return seesOtherClock(recorded.pid) ? "unknown" : "dead"
  }
  if (recordedAt !== undefined) {
    const started = startedAt(recorded.pid)
    if (started !== undefined && started > recordedAt + CLOCK_SLACK_MS) return "dead"
  }
  return "alive"
}

/** True unless the recorded process is known to be dead (see `liveness`). */
export const isAlive = (recorded: Identity, recordedAt?: number): boolean => liveness(recorded, recordedAt) !== "dead"

/** An identity that only knows a pid (an old record): judged by `kill(pid, 0)` and, if given, `recordedAt`. */
export const fromPid = (pid: number): Identity => ({ pid, startTime: 0, pidNamespace: 0 })

/** The text form of an identity for records in files: `pid@startTime.pidNamespace`. */
export const encode = (identity: Identity): string => `${identity.pid}@${identity.startTime}.${identity.pidNamespace}`

const encoded = /^([1-9][0-9]{0,9})(?:@([0-9]{1,10})\.([0-9]{1,10}))?$/

/** Reads `encode`'s text, or a bare pid (an older record: start time and namespace unknown). */
export const decode = (text: string): Identity | undefined => {
  const match = encoded.exec(text)
  if (match === null) return undefined
  return { pid: Number(match[1]), startTime: Number(match[2] ?? 0), pidNamespace: Number(match[3] ?? 0) }
}
