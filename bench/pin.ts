/**
 * Where the benchmark's processes run: the driver's main thread on one CPU,
 * the main thread of every process it has started (peers) on another, the
 * same for every contender. Left to the scheduler, a peer and the driver
 * sometimes share a CPU and sometimes not (a Unix socket's wake-up asks the
 * kernel to run the reader where the writer ran), and on the 2-vCPU VMs
 * measured here one vCPU ran the same loop 1.5x to 1.8x slower than the other
 * (2 December), so a ratio moved with the placement its two rows happened to
 * get. Only main threads are pinned: a peer's other threads (V8's
 * garbage-collector helpers, libnng's and libzmq's I/O threads) may run on
 * any CPU, as in an application. Threads the driver starts after pinning
 * inherit the driver's CPU; so does every thread of a process that measures
 * from the driver's side (the nng C client, whose libnng threads then share a
 * CPU as those of the driver's own nng Channel do). `--pin` pins, `--pin=off` does not; without
 * either, the caller's default. Linux only, through `taskset` (util-linux);
 * elsewhere, or with one CPU, nothing is pinned and `pinDriver` says why.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import { argValue } from "./shared.ts"

/** The CPUs of the driver's and of its peers' main threads, and the CPUs every other thread may use. */
export interface Placement {
  readonly driver: number
  readonly peers: number
  /** The CPUs this process was allowed before pinning (`taskset -c` form, from `/proc/self/status`). */
  readonly all: string
}

const taskset = (args: ReadonlyArray<string>): boolean => {
  try {
    ChildProcess.execFileSync("taskset", args, { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

/** The processes `pid` started, and theirs (from `/proc/PID/task/TID/children`). */
const descendants = (pid: number): Array<number> => {
  const found: Array<number> = []
  const visit = (parent: number): void => {
    let tasks: Array<string> = []
    try {
      tasks = Fs.readdirSync(`/proc/${parent}/task`)
    } catch {
      return
    }
    for (const task of tasks) {
      let text = ""
      try {
        text = Fs.readFileSync(`/proc/${parent}/task/${task}/children`, "utf8")
      } catch {
        continue
      }
      for (const child of text.split(" ").filter((s) => s.length > 0).map(Number)) {
        found.push(child)
        visit(child)
      }
    }
  }
  visit(pid)
  return found
}

/** Whether to pin: `--pin` (or `--pin=` anything but `off`) pins, `--pin=off` does not, else `byDefault`. */
const asked = (byDefault: boolean): boolean => {
  const value = argValue("pin")
  if (value !== undefined) return value !== "off"
  return process.argv.slice(2).includes("--pin") || byDefault
}

/**
 * Pins this process's main thread (the driver) to CPU 0 when asked; `undefined`
 * when not pinning, with `why` called when pinning was asked for and cannot be done.
 */
export const pinDriver = (byDefault: boolean, why: (reason: string) => void): Placement | undefined => {
  if (!asked(byDefault)) return undefined
  if (process.platform !== "linux" || Os.availableParallelism() < 2) {
    why("not pinned: that takes Linux and two CPUs")
    return undefined
  }
  let all: string | undefined
  try {
    all = /^Cpus_allowed_list:\s*(\S+)/m.exec(Fs.readFileSync("/proc/self/status", "utf8"))?.[1]
  } catch {
    all = undefined
  }
  if (all === undefined || !taskset(["-p", "-c", "0", String(process.pid)])) {
    why("not pinned: `taskset -p -c 0` failed (is util-linux installed? is CPU 0 allowed?)")
    return undefined
  }
  return { driver: 0, peers: 1, all }
}

/**
 * Puts the main thread of every process the driver started (and theirs) on the
 * peers' CPU, except those in `driverSide`, which go on the driver's; their
 * other threads on any CPU. Answers how many were placed and how many could not be.
 */
export const pinPeers = (
  placement: Placement | undefined,
  driverSide: ReadonlySet<number> = new Set()
): { readonly pinned: number; readonly failed: number } => {
  let pinned = 0
  let failed = 0
  if (placement === undefined) return { pinned, failed }
  for (const pid of descendants(process.pid)) {
    // a process on the driver's side goes where the driver's threads started after pinning are: all on its CPU
    // (libnng's threads in the driver's nng Channel among them)
    const placed = driverSide.has(pid)
      ? taskset(["-a", "-p", "-c", String(placement.driver), String(pid)])
      // a peer started after the driver was pinned inherited its CPU in every thread: all CPUs first, then the main one
      : taskset(["-a", "-p", "-c", placement.all, String(pid)]) &&
        taskset(["-p", "-c", String(placement.peers), String(pid)])
    if (placed) pinned++
    else failed++
  }
  return { pinned, failed }
}
