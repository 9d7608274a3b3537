/**
 * Who is alive. Segment headers record processes as (pid, start tag, pid
 * namespace tag): the start tag (Linux: the process's start time, from
 * `/proc/<pid>/stat`) tells a recycled pid from the process that held it, and
 * the namespace tag keeps a process in another pid namespace (a container
 * sharing `/dev/shm`) from being judged dead by a pid that means something
 * else here. Where the OS does not tell (macOS), both tags are 0 and the pid
 * alone is checked.
 *
 * These reads are of procfs, which is memory-backed: they never wait on a disk.
 *
 * @internal
 */
import * as Fs from "node:fs"

/** A process as recorded in a segment header. */
export interface ProcessId {
  readonly pid: number
  readonly start: number
  readonly ns: number
}

const isLinux = process.platform === "linux"

/** The start tag of `pid` (its start time in clock ticks, low 31 bits), 0 where unknown. */
export const startTag = (pid: number): number => {
  if (!isLinux) return 0
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    // fields after the command name, which may itself hold spaces and parentheses
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const ticks = Number(fields[19])
    return Number.isFinite(ticks) ? (ticks % 0x7fff_ffff) + 1 : 0
  } catch {
    return 0
  }
}

const namespaceTag = (): number => {
  if (!isLinux) return 0
  try {
    const link = Fs.readlinkSync("/proc/self/ns/pid")
    const inode = Number(/\[(\d+)\]/.exec(link)?.[1])
    return Number.isFinite(inode) ? (inode % 0x7fff_ffff) + 1 : 0
  } catch {
    return 0
  }
}

let self: ProcessId | undefined

/** This process. */
export const current = (): ProcessId => {
  if (self === undefined || self.pid !== process.pid) {
    self = { pid: process.pid, start: startTag(process.pid), ns: namespaceTag() }
  }
  return self
}

/** What can be said of a recorded process from here. */
export type Liveness = "alive" | "dead" | "unknown"

/**
 * Whether a recorded process still runs. A process of another pid namespace is
 * `unknown` (callers treat it as alive); a live pid whose start tag differs is
 * a recycled pid, so the recorded process is `dead`.
 */
export const liveness = (recorded: ProcessId): Liveness => {
  if (recorded.pid <= 0) return "dead"
  const here = current()
  if (recorded.ns !== here.ns) return "unknown"
  if (recorded.pid === here.pid) return recorded.start === here.start ? "alive" : "dead"
  try {
    process.kill(recorded.pid, 0)
  } catch (cause) {
    const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined
    if (code !== "EPERM") return "dead"
  }
  if (recorded.start === 0) return "alive"
  const start = startTag(recorded.pid)
  return start === 0 || start === recorded.start ? "alive" : "dead"
}
