/**
 * Stamps of the system's monotonic clock (`process.hrtime`, comparable across
 * processes) at points of a round trip, for `latency.ts` and
 * `rpc-latency.ts`. A stamp costs about 0.1 µs (0.3 µs on a slow moment of
 * the VM), so segments are comparable between runs of one tool, not exact.
 */
import type * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"

/** Every stamp so far, by name, in order. */
export type Stamps = Record<string, Array<number>>

/** This process's stamps. */
export const stamps: Stamps = {}

/** Stamps `name` now. */
export const stamp = (name: string): void => {
  ;(stamps[name] ??= []).push(Number(process.hrtime.bigint()))
}

/** Forgets every stamp (after the warm-up). */
export const clearStamps = (): void => {
  for (const name in stamps) stamps[name] = []
}

/**
 * Makes every socket of this process stamp its writes (`write` as one starts,
 * `written` as it returns), each chunk it reads as Node takes it from the
 * kernel (`push`, whether the socket is read in flowing mode or through
 * `readable` and `read()`; unless `reads` is false) and each `data` event.
 */
export const stampSockets = (reads = true): void => {
  const write = Net.Socket.prototype.write
  Net.Socket.prototype.write = function(this: Net.Socket, ...args: Parameters<typeof write>) {
    stamp("write")
    const result = write.apply(this, args)
    stamp("written")
    return result
  } as typeof write
  const push = Net.Socket.prototype.push
  if (reads) {
    Net.Socket.prototype.push = function(this: Net.Socket, ...args: Parameters<typeof push>) {
      stamp("push")
      return push.apply(this, args)
    } as typeof push
  }
  const emit = Net.Socket.prototype.emit as (
    this: Net.Socket,
    event: string | symbol,
    ...args: Array<unknown>
  ) => boolean
  Net.Socket.prototype.emit = function(this: Net.Socket, event: string | symbol, ...args: Array<unknown>) {
    if (event === "data") stamp("data")
    return emit.call(this, event, ...args)
  } as typeof Net.Socket.prototype.emit
}

/** How many stamps of `sorted` come before `t` (`atOrBefore`: at or before it). */
const countBefore = (sorted: ReadonlyArray<number>, t: number, atOrBefore: boolean): number => {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (sorted[mid]! < t || (atOrBefore && sorted[mid] === t)) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** The first stamp in `sorted` after `t` (NaN if none, or if `t` is NaN). */
export const firstAfter = (sorted: ReadonlyArray<number> | undefined, t: number): number =>
  sorted === undefined || Number.isNaN(t) ? Number.NaN : sorted[countBefore(sorted, t, true)] ?? Number.NaN

/** The last stamp in `sorted` before `t` (NaN if none, or if `t` is NaN). */
export const lastBefore = (sorted: ReadonlyArray<number> | undefined, t: number): number =>
  sorted === undefined || Number.isNaN(t) ? Number.NaN : sorted[countBefore(sorted, t, false) - 1] ?? Number.NaN

/** The median of `values` (NaN ones left out). */
export const median = (values: ReadonlyArray<number>): number => {
  const sorted = values.filter((v) => !Number.isNaN(v)).toSorted((a, b) => a - b)
  return sorted[sorted.length >> 1] ?? Number.NaN
}

/** Makes this process (a measured peer) write its stamps to `out` and exit when sent SIGTERM. */
export const writeStampsOnTerm = (out: string): void => {
  process.on("SIGTERM", () => {
    Fs.writeFileSync(out, JSON.stringify(stamps))
    process.exit(0)
  })
}

/** Ends `peer` (which called `writeStampsOnTerm(out)`) and reads its stamps. */
export const peerStamps = async (peer: ChildProcess.ChildProcess, out: string): Promise<Stamps> => {
  peer.kill("SIGTERM")
  await new Promise((resolve) => peer.once("exit", resolve))
  return JSON.parse(Fs.readFileSync(out, "utf8")) as Stamps
}

/** Durations between stamps, by segment name: `add` takes the two stamps, `medians` gives µs. */
export class Segments {
  readonly #values: Record<string, Array<number>> = {}
  /** Records the segment `name` of one round trip, from stamp `from` to stamp `to`. */
  add(name: string, from: number, to: number): void {
    ;(this.#values[name] ??= []).push((to - from) / 1e3)
  }
  /** The median of each segment, in µs, in the order the segments were first added. */
  medians(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.#values).map(([name, values]) => [name, median(values)]))
  }
}
