/**
 * Finding and removing orphaned segments: `list` shows every segment this
 * package made (`effect-ipc shm ls`), `collect` removes the orphans once
 * (`effect-ipc shm gc`), `run` / `layer` do it on a `Schedule` in a fiber.
 * `collect` also removes the socket files that `shm://` listeners killed
 * with `kill -9` left in the rendezvous directory.
 *
 * An orphan is a resource link whose holders all died (a `kill -9`ed
 * producer's frames), a link nobody holds past its TTL (or without one), or
 * a channel segment whose creator died while its name still showed (even one
 * it died before writing a header into: channel segment names carry the
 * creator's pid). Each
 * verdict is taken under the segment's header lock, so a segment a live
 * process holds is never removed, and two processes collecting at once do
 * not fight: one removes, the other finds it gone.
 *
 * Linux only: other systems do not list their POSIX segments
 * (`UnsupportedPlatform`).
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Header from "./internal/header.ts"
import * as Processes from "./internal/processes.ts"
import * as Reclaim from "./internal/reclaim.ts"
import * as Rendezvous from "./internal/rendezvous.ts"
import * as Segments from "./internal/segments.ts"

/** One of this package's segments, as `effect-ipc shm ls` shows it. */
export interface SegmentInfo {
  readonly name: string
  /** `link` (ResourceLink), `ring` (a channel ring being set up), `message` (a large channel message in flight). */
  readonly kind: string
  /** `initialising`, `ready` or `deleted`. */
  readonly state: string
  /** Bytes of the segment, header included. */
  readonly size: number
  readonly payloadLength: number
  readonly refcount: number
  readonly holders: ReadonlyArray<{ readonly pid: number; readonly count: number; readonly alive: boolean }>
  readonly creator: { readonly pid: number; readonly alive: boolean }
  /** Owner uid. */
  readonly uid: number
  readonly createdAt: number
  readonly ageMillis: number
  /** 0 when it has none. */
  readonly ttlMillis: number
  /** Why `collect` would remove it now, if it would. */
  readonly orphan: string | undefined
}

/** What `list` found. */
export interface Listing {
  readonly segments: ReadonlyArray<SegmentInfo>
  /** Segments in `/dev/shm` that are not ours, or that this user cannot read. */
  readonly others: number
}

const stateNames = ["initialising", "ready", "deleted"]

const alive = (p: Processes.ProcessId): boolean => Processes.liveness(p) !== "dead"

/**
 * `verdict`, unless a process maps the segment `ino` (past `ours`, this process's own views of it), as `mappedBy`
 * (`Reclaim.mappings`, one per collection) says: then kept.
 */
const unlessMapped = (
  mappedBy: (ino: number, ours: number) => boolean,
  verdict: Reclaim.Verdict,
  ino: number,
  ours: number
): Reclaim.Verdict => verdict !== undefined && mappedBy(ino, ours) ? undefined : verdict

/** Opens a listed segment's header, or `undefined` when it is not one of ours (or not readable). */
const openHeader = (entry: Segments.Listed) =>
  Effect.option(Segments.openWithHeader(entry.name, undefined, undefined, { headerOnly: true, retry: false }))

/** Which segments `list` and `collect` look at. */
export interface ScopeOptions {
  /** Only segments whose names start with this (default: every segment of this user). */
  readonly prefix?: string | undefined
}

/**
 * `InvalidOption` for options of `what` that are not an object
 * (`notAnObject`), or whose `prefix` is not a string, `dryRun` not a boolean
 * (`"true"` removed for real) or `directory` not a path (`checkShapes`).
 */
const invalidOptions = (options: CollectOptions, what: string): IpcError.IpcError | undefined => {
  const notObject = TransportOptions.notAnObject(options, `the options of ${what}`)
  if (notObject !== undefined || options === undefined) return notObject
  const prefix: unknown = options.prefix
  if (prefix !== undefined && typeof prefix !== "string") {
    return IpcError.make("InvalidOption", `prefix ${String(prefix)} is not a string`)
  }
  const dryRun: unknown = options.dryRun
  if (dryRun !== undefined && typeof dryRun !== "boolean") {
    return IpcError.make(
      "InvalidOption",
      `dryRun ${typeof dryRun === "string" ? JSON.stringify(dryRun) : String(dryRun)} is not a boolean (true or false)`
    )
  }
  return TransportOptions.checkShapes(options)
}

const entriesIn = (options: ScopeOptions, staging = false) =>
  Effect.map(
    Segments.list,
    (entries) =>
      options.prefix === undefined
        ? entries
        : entries.filter((e) =>
          e.name.startsWith(options.prefix!) || (staging && Segments.stagingNamePattern.test(e.name))
        )
  )

/** `list`, limited to the names that start with `prefix`. */
export const listMatching = (options: ScopeOptions = {}): Effect.Effect<Listing, IpcError.IpcError> =>
  Effect.gen(function*() {
    const mappedBy = Reclaim.mappings()
    const invalid = invalidOptions(options, "SegmentGc.listMatching")
    if (invalid !== undefined) return yield* invalid
    const entries = yield* entriesIn(options)
    const segments: Array<SegmentInfo> = []
    let others = 0
    for (const entry of entries) {
      const opened = yield* openHeader(entry)
      if (opened._tag === "None") {
        others++
        continue
      }
      const { header, mapped } = opened.value
      const s = Header.snapshot(header)
      mapped.mapping.release()
      const now = Date.now()
      segments.push({
        name: entry.name,
        kind: Header.kindName(s.kind),
        state: stateNames[s.state] ?? `state ${s.state}`,
        size: mapped.size,
        payloadLength: s.payloadLength,
        refcount: s.refcount,
        holders: s.holders.map((h) => ({ pid: h.pid, count: h.count, alive: alive(h) })),
        creator: { pid: s.creator.pid, alive: alive(s.creator) },
        uid: mapped.uid,
        createdAt: s.createdAt,
        ageMillis: Math.max(0, now - s.createdAt),
        ttlMillis: s.ttlMillis,
        orphan: unlessMapped(
          mappedBy,
          Segments.stagingNamePattern.test(entry.name)
            ? Reclaim.stagingVerdict(entry, now, s.creator)
            : Reclaim.verdict(s, now),
          entry.ino,
          0
        )
      })
    }
    return { segments, others }
  })

/** Every segment of this user that this package made, with its header's fields, in `/dev/shm` order. */
export const list: Effect.Effect<Listing, IpcError.IpcError> = listMatching()

/** A segment (or a dead listener's socket file, kind `socket`) `collect` removed, and why. */
export interface Removed {
  readonly name: string
  readonly kind: string
  readonly reason: string
}

/** What one `collect` did. */
export interface Report {
  readonly removed: ReadonlyArray<Removed>
  /** Our segments left in place (held, within their TTL, or their creator alive). */
  readonly kept: number
  /** Segments that are not ours or that this user cannot read. */
  readonly others: number
}

/** Options of `collect`. */
export interface CollectOptions extends ScopeOptions {
  /** Report what would be removed without removing it (nor clearing dead holders). */
  readonly dryRun?: boolean | undefined
  /** The rendezvous directory whose dead listeners' socket files are removed (default: the default one). */
  readonly directory?: string | undefined
}

/**
 * Sweeps `/dev/shm` once (the names that start with `prefix`, if given, and
 * the staging names of resource links, whatever the prefix) and removes the
 * orphans (see the module comment for the rules). Segments of
 * other users are never touched, even by root. A `directory` given that is
 * missing fails with `NotFound`, one that is not this user's private
 * directory with `PermissionDenied`, before anything is removed.
 */
export const collect = (options: CollectOptions = {}): Effect.Effect<Report, IpcError.IpcError> =>
  Effect.suspend(() => {
    const invalid = invalidOptions(options, "SegmentGc.collect")
    return invalid === undefined ? sweep(options, true) : Effect.fail(invalid)
  })

/**
 * One sweep; `strict`: a `directory` given that cannot be swept fails it (an
 * explicit collection), else it has no sockets to sweep (the scheduled one,
 * whose transport makes the directory only when it first listens or dials).
 */
const sweep = (options: CollectOptions, strict: boolean): Effect.Effect<Report, IpcError.IpcError> =>
  Effect.gen(function*() {
    const mappedBy = Reclaim.mappings()
    // the rendezvous directory first: one given that cannot be swept fails the collection before it removes anything
    const staleSockets = yield* Rendezvous.staleSockets(options.prefix, options.directory).pipe(
      Effect.catch((error) => strict ? Effect.fail(error) : Effect.succeed([]))
    )
    const entries = yield* entriesIn(options, true)
    const removed: Array<Removed> = []
    let kept = 0
    let others = 0
    for (const entry of entries) {
      const opened = yield* openHeader(entry)
      // a link's staging name: only the name goes (the link may have taken its own name too)
      if (Segments.stagingNamePattern.test(entry.name)) {
        const creator = opened._tag === "Some" ? Header.snapshot(opened.value.header).creator : undefined
        if (opened._tag === "Some") opened.value.mapped.mapping.release()
        const staged = unlessMapped(mappedBy, Reclaim.stagingVerdict(entry, Date.now(), creator), entry.ino, 0)
        if (staged === undefined) kept++
        else if (options.dryRun === true || Reclaim.removeUnlocked(entry.name, entry.ino)) {
          removed.push({ name: entry.name, kind: "link", reason: staged })
        }
        continue
      }
      if (opened._tag === "None") {
        const blank = unlessMapped(mappedBy, Reclaim.blankVerdict(entry, Date.now()), entry.ino, 0)
        if (blank !== undefined && (options.dryRun === true || Reclaim.removeUnlocked(entry.name, entry.ino))) {
          removed.push({ name: entry.name, kind: entry.name.startsWith("eipc-r-") ? "ring" : "message", reason: blank })
        } else {
          others++
        }
        continue
      }
      const { header, mapped } = opened.value
      const kind = Header.kindName(Header.snapshot(header).kind)
      const reason = yield* (options.dryRun === true
        ? Effect.sync(() => unlessMapped(mappedBy, Reclaim.verdict(Header.snapshot(header), Date.now()), mapped.ino, 1))
        : Header.withLock(header, entry.name, () => {
          // a header's word is not enough: its slots may be damaged while their holders live and map it
          const verdict = unlessMapped(mappedBy, Reclaim.judge(header, Date.now()), mapped.ino, 1)
          return verdict !== undefined && Reclaim.removeLocked(header, entry.name, mapped.ino) ? verdict : undefined
        })).pipe(
          Effect.catch((error) => Effect.as(Effect.logDebug(`gc: left ${entry.name}`, error), undefined)),
          Effect.ensuring(Effect.sync(() => mapped.mapping.release()))
        )
      if (reason === undefined) kept++
      else removed.push({ name: entry.name, kind, reason })
    }
    // the socket files of `shm://` listeners that died without closing (kill -9)
    for (const stale of staleSockets) {
      if (options.dryRun === true || (yield* Rendezvous.removeStale(stale))) {
        removed.push({ name: stale.file, kind: "socket", reason: "its shm:// listener is gone" })
      }
    }
    return { removed, kept, others }
  })

/** Options of the scheduled collector. */
export interface RunOptions extends ScopeOptions {
  /** The rendezvous directory whose dead listeners' socket files are removed (default: the default one). */
  readonly directory?: string | undefined
  /** When to sweep after the first sweep (default: every 60 s). */
  readonly schedule?: Schedule.Schedule<unknown> | undefined
  /** How long to wait before the first sweep (default: none, sweep at once). */
  readonly delay?: Duration.Input | undefined
}

/** The default schedule of `run`: every 60 s. */
export const defaultSchedule: Schedule.Schedule<unknown> = Schedule.spaced("60 seconds")

const bad = (detail: string) => IpcError.make("InvalidOption", `collector: ${detail}`)

/**
 * `InvalidOption` for `run` options that are not what they say: a `delay`
 * that is not a finite duration, a `schedule` that is not a `Schedule`, a
 * `prefix` that is not a string, a `directory` that is not an absolute path
 * (the collector would fail out of sight, or never run).
 */
export const invalidRunOptions = (options: unknown): IpcError.IpcError | undefined => {
  if (typeof options !== "object" || options === null) return bad(`${String(options)} is not collector options`)
  const { delay, directory, prefix, schedule } = options as Record<string, unknown>
  if (delay !== undefined) {
    const millis = TransportOptions.millisOf(delay)
    if (millis === undefined || millis === Infinity) return bad(`delay ${String(delay)} is not a finite duration`)
  }
  if (schedule !== undefined && !Schedule.isSchedule(schedule)) {
    return bad(`schedule ${String(schedule)} is not a Schedule`)
  }
  if (prefix !== undefined && typeof prefix !== "string") return bad(`prefix ${String(prefix)} is not a string`)
  const shape = TransportOptions.checkShapes({ directory })
  if (shape !== undefined) return bad(shape.detail)
  // relative, it would fail at every sweep, out of sight
  if (typeof directory === "string" && Rendezvous.resolved(directory) === undefined) {
    return bad(`directory ${directory} is not an absolute path`)
  }
  return undefined
}

/**
 * Sweeps now and then on `schedule`, in a fiber that lives as long as the
 * scope. Failures (such as `UnsupportedPlatform`) are logged at debug level
 * and end nothing; each removal is logged at info level. A `directory` that
 * is missing (or not private) has no sockets to sweep: the segments are swept
 * all the same. Options that are not what they say fail with `InvalidOption`
 * (`invalidRunOptions`), before anything runs.
 */
export const run = (options: RunOptions = {}): Effect.Effect<void, IpcError.IpcError, Scope.Scope> =>
  Effect.suspend(() => {
    const invalid = invalidRunOptions(options)
    return invalid === undefined ? schedule(options) : Effect.fail(invalid)
  })

const schedule = (options: RunOptions): Effect.Effect<void, never, Scope.Scope> =>
  sweep({ prefix: options.prefix, directory: options.directory }, false).pipe(
    Effect.tap((report) =>
      Effect.forEach(
        report.removed,
        (r) => Effect.logInfo(`shm gc: removed ${r.kind} ${r.name}: ${r.reason}`),
        { discard: true }
      )
    ),
    Effect.catch((error) => Effect.logDebug("shm gc: sweep failed", error)),
    Effect.repeat(options.schedule ?? defaultSchedule),
    Effect.delay(options.delay ?? Duration.zero),
    Effect.forkScoped,
    Effect.asVoid
  )

/** A layer that runs the collector while it is alive. */
export const layer = (options?: RunOptions): Layer.Layer<never, IpcError.IpcError> => Layer.effectDiscard(run(options))
