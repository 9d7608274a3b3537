/**
 * Who is alive, as segment headers record it: (pid, start tag, pid namespace
 * tag), three 32-bit words. This is core's `Process` identity under the
 * header's field names; `Process` owns the one liveness check (start time
 * against pid reuse, namespace against pids of other containers). Where the
 * OS does not tell (macOS), both tags are 0 and the pid alone is checked.
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
 * Whether a recorded process still runs. A process of another pid namespace is
 * `unknown` (callers treat it as alive); a live pid whose start tag differs is
 * a recycled pid, so the recorded process is `dead`.
 */
export const liveness = (recorded: ProcessId): Liveness =>
  Process.liveness({ pid: recorded.pid, startTime: recorded.start, pidNamespace: recorded.ns })
