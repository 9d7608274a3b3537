/**
 * Deciding that a segment is an orphan, and removing it, for `ResourceLink`
 * (last release) and `SegmentGc` (sweeps). Both run under the segment's
 * header lock, so two processes sweeping at once see each other's decisions:
 * the first marks the segment deleted and removes its name, the second finds
 * it deleted (and its name gone, or naming another segment) and leaves it.
 *
 * A name is removed only while it still names the segment that was judged
 * (same inode): a segment re-created under the same name in the meantime is
 * never touched.
 *
 * @internal
 */
import * as RuntimeDir from "@effect-ipc/core/RuntimeDir"
import * as Fs from "node:fs"
import * as Header from "./header.ts"
import * as Libc from "./libc.ts"
import * as Processes from "./processes.ts"
import * as Segments from "./segments.ts"

/** Marks the segment deleted and removes `name` if it still names it (call under the lock). */
export const removeLocked = (h: Header.HeaderView, name: string, ino: number): boolean => {
  Header.setState(h, Header.State.deleted)
  if (Libc.identityNow(name) !== ino) return false
  return Libc.shmUnlinkNow(name) === undefined
}

/** Why a segment is an orphan, or `undefined` when it is not. */
export type Verdict = string | undefined

/**
 * The rules, from a header snapshot:
 *
 * - a resource link whose recorded holders are all dead, whatever its TTL
 *   (a `kill -9`ed producer or consumer);
 * - a resource link nobody holds, without a TTL or past it;
 * - a ring or large-message segment whose creator is dead (their names only
 *   live while a connection is being set up or a message is in flight);
 * - a segment marked deleted whose name is still there, or one left half
 *   initialised by a creator that died.
 *
 * A holder or creator in another pid namespace counts as alive.
 */
export const verdict = (s: Header.Snapshot, now: number): Verdict => {
  const creatorDead = Processes.liveness(s.creator) === "dead"
  if (s.state === Header.State.deleted) return "marked deleted"
  if (s.state === Header.State.initialising) return creatorDead ? "its creator died while setting it up" : undefined
  if (s.kind !== Header.Kind.link) return creatorDead ? `its creator (pid ${s.creator.pid}) is dead` : undefined
  if (s.holders.length > 0) {
    return s.holders.every((h) => Processes.liveness(h) === "dead") ? "every holder is dead" : undefined
  }
  // a damaged clock (not a number) would keep an unheld link for good: it counts as past. An infinite TTL (made by an
  // earlier version, which took `Infinity`) keeps it, as it promised
  if (Number.isNaN(s.ttlMillis) || !Number.isFinite(s.createdAt)) {
    return "nobody holds it and its TTL or creation time is damaged"
  }
  if (s.ttlMillis === Infinity) return undefined
  if (s.ttlMillis <= 0) return "nobody holds it and it has no TTL"
  if (now - s.createdAt > s.ttlMillis) return "nobody holds it and its TTL has passed"
  // a creation time further ahead than the TTL (damaged, or a clock set back by more) would keep it as long
  if (s.createdAt - now > s.ttlMillis) return "nobody holds it and its creation time lies past its TTL ahead"
  return undefined
}

/**
 * Judges a segment under its lock: the verdict of `verdict`; a link that is
 * kept has the slots of its dead holders cleared (their references go with
 * them).
 */
export const judge = (h: Header.HeaderView, now: number): Verdict => {
  const found = verdict(Header.snapshot(h), now)
  if (found === undefined && Header.snapshot(h).kind === Header.Kind.link) Header.reapDead(h)
  return found
}

/**
 * The dead creator of `entry`, a name of `pattern` (whose first group is the
 * creator's pid in base 36) of this user and over a second old: `creator` (a
 * header's: pid, start time and pid namespace) if given, else the pid in the
 * name, in this pid namespace. Undefined when alive, young, or not such a name.
 */
const deadCreator = (
  pattern: RegExp,
  entry: Segments.Listed,
  now: number,
  creator?: Processes.ProcessId
): Processes.ProcessId | undefined => {
  const match = pattern.exec(entry.name)
  if (match === null || entry.uid !== RuntimeDir.userId() || now - entry.mtimeMs < 1000) return undefined
  const who = creator ?? { pid: Number.parseInt(match[1]!, 36), start: 0, ns: Processes.current().ns }
  return Processes.liveness(who) === "dead" ? who : undefined
}

/**
 * A channel segment without a valid header: its creator (the pid in its
 * name) died between creating it and writing the header. Only when that pid
 * is dead, the segment is this user's, and it is over a second old (a live
 * creator writes its header within microseconds of creating it).
 */
export const blankVerdict = (entry: Segments.Listed, now: number): Verdict => {
  const dead = deadCreator(Segments.channelNamePattern, entry, now)
  return dead === undefined ? undefined : `its creator (pid ${dead.pid}) died before writing its header`
}

/**
 * A resource link's staging name (`eipc-l-<pid>-…`, see `Segments.createReady`)
 * whose creator is dead and that is over a second old: the creator died before
 * the link took its name (the segment goes with this name), or just after (the
 * link keeps its own name: only this one goes). The creator is the header's
 * (`creator`: pid, start time and pid namespace) once written, else the pid in
 * the name.
 */
export const stagingVerdict = (
  entry: Segments.Listed,
  now: number,
  creator?: Processes.ProcessId
): Verdict => {
  const dead = deadCreator(Segments.stagingNamePattern, entry, now, creator)
  return dead === undefined ? undefined : `its creator (pid ${dead.pid}) died while making a resource link`
}

/** Removes `name` if it still names the segment listed as `ino` (a segment without a header has no lock). */
export const removeUnlocked = (name: string, ino: number): boolean =>
  Libc.identityNow(name) === ino && Libc.shmUnlinkNow(name) === undefined

/** The inodes of `/dev/shm` segments a `/proc/<pid>/maps` text maps, each with how many times. */
const shmInodes = (maps: string, into: Map<number, number>): Map<number, number> => {
  if (!maps.includes("/dev/shm/")) return into
  // "7f..-7f.. rw-s 00000000 00:1a 12345    /dev/shm/name (deleted)": inode, then path
  for (const line of maps.split("\n")) {
    if (!line.includes("/dev/shm/")) continue
    const fields = line.trim().split(/\s+/)
    const ino = Number(fields[4])
    if (fields[5]?.startsWith("/dev/shm/") === true && ino > 0) into.set(ino, (into.get(ino) ?? 0) + 1)
  }
  return into
}

const readMaps = (pid: string): string => {
  try {
    return Fs.readFileSync(`/proc/${pid}/maps`, "latin1")
  } catch {
    return ""
  }
}

/**
 * Whether a process maps a segment, as `/proc/<pid>/maps` says (Linux), for one collection: a verdict read from a
 * header (whose holder slots, state or TTL damage may have rewritten) is checked against it before a removal, since a
 * process that maps a segment still uses it. The other processes' maps are read once, at the first question (a
 * process that maps a segment later adds itself to its header under the lock first); this process's own are read at
 * each, and count past `ours` (the collector's own views of that segment). False where it cannot be told (no
 * `/proc`, another user's process).
 */
export const mappings = (): (ino: number, ours: number) => boolean => {
  let others: Map<number, number> | undefined
  const self = String(process.pid)
  return (ino, ours) => {
    if (others === undefined) {
      others = new Map()
      let pids: ReadonlyArray<string> = []
      try {
        pids = Fs.readdirSync("/proc")
      } catch {
        // no /proc: nothing can be told
      }
      for (const pid of pids) {
        if (pid !== self && /^[1-9][0-9]*$/.test(pid)) shmInodes(readMaps(pid), others)
      }
    }
    if ((others.get(ino) ?? 0) > 0) return true
    return (shmInodes(readMaps("self"), new Map()).get(ino) ?? 0) > ours
  }
}
