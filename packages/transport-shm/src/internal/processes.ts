/**
 * Who is alive, as segment headers record it: (pid, start tag, pid namespace
 * tag), three 32-bit words. This is core's `Process` identity under the
 * header's field names; `Process` owns the liveness check (start time
 * against pid reuse, namespace against pids of other containers), which this
 * module only widens for processes in another time namespace (whose start
 * times `/proc` shifts). Where the OS does not tell (macOS), both tags are 0
 * and the pid alone is checked.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Process from "@effect-ipc/core/Process"
import * as Fs from "node:fs"

/** A process as recorded in a segment header. */
export interface ProcessId {
  readonly pid: number
  readonly start: number
  readonly ns: number
}

/** The start tag of `pid` (its start time in clock ticks, 31 bits, plus 1), 0 where unknown. */
export const startTag: (pid: number) => number = Process.startTime

let self: ProcessId | undefined

/** This process. */
export const current = (): ProcessId => {
  if (self === undefined || self.pid !== process.pid) {
    const me = Process.self()
    self = { pid: me.pid, start: me.startTime, ns: me.pidNamespace }
  }
  return self
}

/** What can be said of a recorded process from here. */
export type Liveness = Process.Liveness

/**
 * Whether a recorded process still runs: core's `Process.liveness` (a process
 * of another pid namespace is `unknown`, which callers treat as alive; a
 * running pid whose start tag differs is a recycled pid, so `dead`), except
 * that a running pid whose start tag differs is `alive` when it may only be
 * seen through another clock (see `otherClock`; never a process of another user).
 */
export const liveness = (recorded: ProcessId): Liveness => {
  const judged = Process.liveness({ pid: recorded.pid, startTime: recorded.start, pidNamespace: recorded.ns })
  if (judged !== "dead" || recorded.start === 0 || recorded.pid === process.pid) return judged
  return Process.identify(recorded.pid) !== undefined && otherClock(recorded.pid) ? "alive" : "dead"
}

/** A start tag cut to the 10 bits a lock word has for it: 1..1023, 0 when unknown. */
export const shortStart = (start: number): number => start === 0 ? 0 : (start % 1023) + 1

/**
 * Whether the holder of a header lock still runs. The lock word records its
 * pid, its start tag cut to 10 bits (`shortStart`) and its pid namespace.
 *
 * - In another pid namespace (or where either side's is not known but the
 *   other's is), its pid means nothing here: `unknown`, always (callers treat
 *   it as alive, and never take its lock). Nothing here looks for it: if it
 *   died in its critical section, its lock stays until the name is removed.
 * - In ours: `dead` when no process has the pid; `alive` when the one that
 *   has it started when the word says; otherwise `dead` (a recycled pid)
 *   unless it is a process of this user (or we are root) that runs in another
 *   time namespace, or whose time namespace cannot be read (`otherClock`):
 *   then `alive`. Our own pid with our own start is `alive`
 *   (a lock is only held within one synchronous step, but another thread of
 *   this process could hold it); with another start, a process before us.
 */
export const lockHolderLiveness = (holder: ProcessId): Liveness => {
  const me = current()
  if (holder.ns !== me.ns) return "unknown"
  if (holder.pid <= 0) return "dead"
  if (holder.pid === me.pid) {
    return holder.start === 0 || me.start === 0 || holder.start === shortStart(me.start) ? "alive" : "dead"
  }
  const now = Process.identify(holder.pid)
  if (now === undefined) return "dead"
  // unreadable start (procfs mounted hidepid, or the process just exited): the pid is all we know
  if (holder.start === 0 || now.startTime === 0 || holder.start === shortStart(now.startTime)) return "alive"
  return otherClock(holder.pid) ? "alive" : "dead"
}

const gone = (cause: unknown): boolean => {
  const errno = IpcError.errnoOf(cause)
  return errno === "ENOENT" || errno === "ESRCH"
}

/** `/proc/<pid>/ns/time`; `undefined` when it does not exist (no such process, or no time namespaces). */
const timeNamespace = (pid: number | "self"): string | undefined | "unreadable" => {
  try {
    return Fs.readlinkSync(`/proc/${pid}/ns/time`)
  } catch (cause) {
    return gone(cause) ? undefined : "unreadable"
  }
}

let myClock: { readonly pid: number; readonly ns: string | undefined | "unreadable" } | undefined

/**
 * Whether running process `pid` is another user's while we are not root (`/proc/<pid>` is owned by
 * its effective uid): it cannot be the holder of a segment of ours (mode 0600, owner checked), so
 * it is a process that got a recorded pid after the holder died. False when it is gone. (A process
 * of ours made non-dumpable shows as root's, and so counts as another user's.)
 */
const otherUser = (pid: number): boolean => {
  const me = process.geteuid?.()
  if (me === undefined || me === 0) return false
  try {
    return Fs.statSync(`/proc/${pid}`).uid !== me
  } catch {
    return false
  }
}

/**
 * Whether running process `pid` may see another clock than ours: `/proc/<pid>/stat` gives start
 * times in the reader's time namespace, so one started in another time namespace seems to have
 * started at another time than it recorded. True when its time namespace differs from ours, or
 * cannot be read; false when it is ours, when it is gone, on a system without time namespaces
 * (before Linux 5.6; or no procfs), and for another user's process unless we are root
 * (`otherUser`: it cannot hold our segments, and its time namespace is never readable to us).
 */
const otherClock = (pid: number): boolean => {
  if (myClock === undefined || myClock.pid !== process.pid) {
    myClock = { pid: process.pid, ns: timeNamespace("self") }
  }
  if (myClock.ns === undefined) return false
  if (otherUser(pid)) return false
  const theirs = timeNamespace(pid)
  if (theirs === undefined) return false
  return theirs === "unreadable" || myClock.ns === "unreadable" || theirs !== myClock.ns
}
