/**
 * Where the benchmark's processes run: the driver on one CPU, every process
 * it started (peers and their threads) on another, the same for every
 * contender. Left to the scheduler, a peer and the driver sometimes share a
 * CPU and sometimes not (a Unix socket's wake-up asks the kernel to run the
 * reader where the writer ran), and on the 2-vCPU VMs measured here one vCPU
 * ran the same loop 1.5x to 1.8x slower than the other (2 December), so a
 * ratio moved with the placement its two rows happened to get. Only the main
 * thread of each process is pinned (threads it starts later inherit its CPU):
 * V8's garbage-collector helpers, started with the process, run anywhere, as
 * in an application. `--pin` pins, `--pin=off` does not; without either, the
 * caller's default. Linux only, through `taskset` (util-linux); elsewhere, or
 * with one CPU, nothing is pinned.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import { argValue } from "./shared.ts"

/** The CPUs of the driver and of its peers, when pinning. */
export interface Placement {
  readonly driver: number
  readonly peers: number
}

const taskset = (cpu: number, pid: number): boolean => {
  try {
    ChildProcess.execFileSync("taskset", ["-p", "-c", String(cpu), String(pid)], { stdio: "ignore" })
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

/** Pins this process (the driver) to the first CPU when asked (`--pin`, else `byDefault`); `undefined` when not pinning. */
export const pinDriver = (byDefault: boolean): Placement | undefined => {
  const asked = process.argv.includes("--pin") || (byDefault && argValue("pin") !== "off")
  if (!asked || process.platform !== "linux" || Os.availableParallelism() < 2) return undefined
  const placement = { driver: 0, peers: 1 }
  return taskset(placement.driver, process.pid) ? placement : undefined
}

/** Moves every process the driver started (and theirs) to the peers' CPU. */
export const pinPeers = (placement: Placement | undefined): void => {
  if (placement === undefined) return
  for (const pid of descendants(process.pid)) taskset(placement.peers, pid)
}
