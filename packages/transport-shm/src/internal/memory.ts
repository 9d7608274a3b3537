/**
 * How much memory a segment's pages may still take. A tmpfs page is memory
 * (or swap), and a tmpfs may be sized past what is left of it (a `/dev/shm`
 * of 24 GB over 23 GB of RAM; a container's `/dev/shm` past its memory
 * limit): filling it ends with the OOM killer, where `NoSpace` is promised.
 * So a large segment takes its pages only while this leaves room for the
 * rest of them.
 *
 * What is left is the least of the machine's (`MemAvailable` and `SwapFree`
 * from /proc/meminfo) and, for each memory cgroup this process is in (v2:
 * `memory.max` less `memory.current`; v1: `memory.limit_in_bytes` less
 * `memory.usage_in_bytes`; page cache that can be dropped not counted as
 * used), its own, each less a margin: `MARGIN_BYTES`, or a sixteenth of the
 * total where that is less (a small machine or a small limit). What cannot be
 * read limits nothing.
 *
 * @internal
 */
import * as Fs from "node:fs"
import * as Path from "node:path"

/** Segments from this size on are checked (smaller ones are left to the tmpfs's own limit). */
export const CHECKED_BYTES = 16 * 1024 * 1024

/** The most memory kept free: a sixteenth of the total, at most this. */
export const MARGIN_BYTES = 256 * 1024 * 1024

/** Reads a small text file: its contents, or undefined when it cannot be read. */
export type Reader = (path: string) => string | undefined

const margin = (total: number): number => Math.min(MARGIN_BYTES, Math.floor(total / 16))

/** A `name value` line of a stat file (`memory.stat`), in bytes. */
const statField = (text: string | undefined, name: string): number => {
  const match = text === undefined ? null : new RegExp(`^${name} (\\d+)$`, "m").exec(text)
  return match === null ? 0 : Number(match[1])
}

/** What the machine leaves: available memory and free swap, less the margin. */
const machineLeft = (read: Reader): number => {
  const text = read("/proc/meminfo")
  if (text === undefined) return Infinity
  const kib = (field: string): number | undefined => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)
    return match === null ? undefined : Number(match[1]) * 1024
  }
  const available = kib("MemAvailable")
  if (available === undefined) return Infinity
  return available + (kib("SwapFree") ?? 0) - margin(kib("MemTotal") ?? available)
}

/** Limits of v1 at or above this (a page-rounded 2^63) mean none. */
const V1_UNLIMITED = 2 ** 60

/**
 * What one cgroup directory leaves, or Infinity when it sets no limit (or
 * its files cannot be read).
 */
const cgroupLeft = (read: Reader, dir: string, v2: boolean): number => {
  const limitText = read(Path.join(dir, v2 ? "memory.max" : "memory.limit_in_bytes"))?.trim()
  const usageText = read(Path.join(dir, v2 ? "memory.current" : "memory.usage_in_bytes"))?.trim()
  if (limitText === undefined || usageText === undefined || limitText === "max") return Infinity
  const limit = Number(limitText)
  const usage = Number(usageText)
  if (!Number.isFinite(limit) || !Number.isFinite(usage) || limit >= V1_UNLIMITED) return Infinity
  const stat = read(Path.join(dir, "memory.stat"))
  const droppable = v2 ? statField(stat, "inactive_file") : statField(stat, "total_inactive_file")
  return limit - Math.max(0, usage - droppable) - margin(limit)
}

/** The least that this process's memory cgroups leave (every level, from its own up to the hierarchy's root). */
const cgroupsLeft = (read: Reader): number => {
  const lines = read("/proc/self/cgroup")?.split("\n") ?? []
  let least = Infinity
  for (const line of lines) {
    const [id, controllers, ...rest] = line.split(":")
    const path = rest.join(":")
    if (id === undefined || controllers === undefined || !path.startsWith("/")) continue
    const v2 = id === "0" && controllers === ""
    if (!v2 && !controllers.split(",").includes("memory")) continue
    const base = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory"
    if (v2 && read(Path.join(base, "cgroup.controllers")) === undefined) continue
    for (let dir = Path.join(base, path); dir.startsWith(base); dir = Path.dirname(dir)) {
      least = Math.min(least, cgroupLeft(read, dir, v2))
      if (dir === base) break
    }
  }
  return least
}

const readText: Reader = (path) => {
  try {
    return Fs.readFileSync(path, "latin1")
  } catch {
    return undefined
  }
}

/** Bytes of memory a segment may still take (see the module's note); Infinity where nothing limits it that can be read. */
export const left = (read: Reader = readText): number => Math.max(0, Math.min(machineLeft(read), cgroupsLeft(read)))
