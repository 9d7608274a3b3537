/**
 * Who is alive, as segment headers record it: (pid, start tag, pid namespace
 * tag), three 32-bit words. This is core's `Process` identity under the
 * header's field names; `Process` owns the liveness check (start time
 * against pid reuse, namespace against pids of other containers, another
 * time namespace's clock). Where the OS does not tell (macOS), both tags are
 * 0 and the pid alone is checked.
 *
 * @internal
 */
import * as Process from "@effect-ipc/core/Process"

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
 * of another pid namespace, or a running pid seen through another clock, is
 * `unknown`, which callers treat as alive; a running pid whose start tag
 * differs is a recycled pid, so `dead`).
 */
export const liveness = (recorded: ProcessId): Liveness =>
  Process.liveness({ pid: recorded.pid, startTime: recorded.start, pidNamespace: recorded.ns })

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
 *   unless it may read time on another clock (`Process.seesOtherClock`: a
 *   process of this user, or any if we are root, in another time namespace or
 *   one that cannot be read): then `unknown`. Our own pid with our own start is `alive`
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
  return Process.seesOtherClock(holder.pid) ? "unknown" : "dead"
}
