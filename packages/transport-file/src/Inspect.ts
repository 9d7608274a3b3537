/**
 * Looking into a directory without disturbing it: `describe` reports what a
 * channel, listener, ipckit or bare stream directory holds (its ends and
 * who holds them, each stream's segments, size and writer, each reader's
 * cursor and lag); `tail` follows the messages written to it from now on
 * (or from the oldest held). Neither registers a reader, takes a lock for
 * more than a probe, or moves a cursor: inspecting never holds space back
 * nor makes anything look read. Like the channels themselves, they trust
 * only directories and files of this user or root, never follow a planted
 * link, and never block on a planted FIFO: anything else is refused with a
 * typed `PermissionDenied` and a hint. Used by `effect-ipc file inspect|tail`.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Endpoint from "./internal/endpoint.ts"
import * as JsonArray from "./internal/jsonArray.ts"
import * as Layout from "./internal/layout.ts"
import * as Lock from "./internal/lock.ts"
import * as Sys from "./internal/sys.ts"
import * as Verify from "./internal/verify.ts"
import * as Wake from "./internal/wake.ts"
import * as Ipckit from "./Ipckit.ts"
import * as Log from "./Log.ts"
import * as LogFormat from "./LogFormat.ts"

/** Who holds one end (role) of a channel. */
export interface End {
  readonly role: Endpoint.Role
  /** True while a process has this end open. */
  readonly open: boolean
  /** The pid that holds (or last held) it. */
  readonly pid: number | undefined
}

/** A channel directory: its two ends and two streams. */
export interface ChannelReport {
  readonly dir: string
  readonly ends: ReadonlyArray<End>
  readonly streams: ReadonlyArray<Log.Stats>
}

/** What a directory holds. */
export type Report =
  | { readonly _tag: "Channel"; readonly channel: ChannelReport }
  | {
    readonly _tag: "Listener"
    readonly dir: string
    readonly listening: boolean
    readonly pid: number | undefined
    readonly connections: ReadonlyArray<ChannelReport & { readonly id: string; readonly dialer: number | undefined }>
  }
  | {
    readonly _tag: "Ipckit"
    readonly dir: string
    readonly created: number | undefined
    readonly files: ReadonlyArray<{
      readonly name: string
      readonly bytes: number
      /** Messages in the file, or why it cannot be read. */
      readonly messages: number | string
      /** The holder of its `.lock`, if one exists. */
      readonly lock: { readonly pid: number | undefined; readonly alive: boolean } | undefined
    }>
    readonly cursors: ReadonlyArray<{ readonly reader: string; readonly id: string; readonly timestamp: number }>
  }
  | { readonly _tag: "Stream"; readonly stream: Log.Stats }

const isStream = (dir: string) => Sys.exists(Path.join(dir, "writer.lock")) && Sys.exists(Path.join(dir, "readers"))

/** The names in `dir` (none when it is gone). */
const list = (dir: string): ReadonlyArray<string> | IpcError.IpcError => {
  const names = Sys.attempt(() => Fs.readdirSync(dir), "Read", `cannot list ${dir}`, dir)
  return Sys.failed(names) && names.reason._tag === "NotFound" ? [] : names
}

/** Opens (and closes) each file of `names` in `dir` as a channel does (`Sys.openFile`): refused unless a regular file of this user or root. */
const checkFiles = (dir: string, names: ReadonlyArray<string>): IpcError.IpcError | undefined => {
  for (const name of names) {
    const path = Path.join(dir, name)
    const opened = Sys.attempt(
      () => Sys.closeQuietly(Sys.openFile(path, Fs.constants.O_RDONLY)),
      "Open",
      `cannot open ${path}`,
      dir
    )
    if (Sys.failed(opened) && opened.reason._tag !== "NotFound") return opened
  }
  return undefined
}

/** Checks a stream directory, its `readers/` and every file in them (segments, writer lock, cursors). */
const checkStream = (stream: string): IpcError.IpcError | undefined => {
  const unsafe = Layout.checkStream(stream)
  if (unsafe !== undefined || !Sys.exists(stream)) return unsafe
  const names = list(stream)
  if (Sys.failed(names)) return names
  const readers = Path.join(stream, "readers")
  const cursors = list(readers)
  if (Sys.failed(cursors)) return cursors
  return checkFiles(stream, names.filter((name) => name !== "readers")) ?? checkFiles(readers, cursors)
}

/** A read that found no descriptor free: tried again, not damage. */
const short = (error: IpcError.IpcError) => error.reason._tag === "NoSpace"

/**
 * Reads a small file of a channel (`Sys.readFile`, at most `limit` bytes); `undefined` when it is missing or
 * unreadable, an error when refused.
 */
const readSmall = (path: string, limit?: number): string | undefined | IpcError.IpcError => {
  const read = Sys.attempt(() => Sys.readFile(path, limit).toString("utf8"), "Read", `cannot read ${path}`)
  if (!Sys.failed(read)) return read
  return read.reason._tag === "PermissionDenied" || short(read) ? read : undefined
}

/**
 * The pid a role or listener lock file names: only from what a holder writes in it (`pid token` and a newline, a
 * pid from 1 to 2^31 - 1), read as a small file (at most `Layout.SMALL_FILE_MAX_BYTES`); none for anything else
 * (garbage, a holder's text with more after it, a file too large to be one), nor when it is missing or unreadable.
 */
const holderPid = (path: string): number | undefined => {
  const text = readSmall(path, Layout.SMALL_FILE_MAX_BYTES)
  if (text === undefined || Sys.failed(text)) return undefined
  const match = /^([1-9][0-9]{0,9}) [0-9a-z-]{1,64}\n$/.exec(text)
  const pid = match === null ? undefined : Number(match[1])
  return pid !== undefined && pid <= 2 ** 31 - 1 ? pid : undefined
}

/** When a file was last written (ms since the epoch), `undefined` when it cannot be read. */
const modifiedAt = (path: string): number | undefined => {
  try {
    return Fs.statSync(path).mtimeMs
  } catch {
    return undefined
  }
}

/** Parses JSON text, `undefined` when it is not JSON. */
const parseJson = (text: string | undefined): unknown => {
  if (text === undefined) return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** A number field of a parsed JSON object. */
const numberField = (value: unknown, field: string): number | undefined => {
  if (typeof value !== "object" || value === null || !(field in value)) return undefined
  const n: unknown = (value as Record<string, unknown>)[field]
  return typeof n === "number" ? n : undefined
}

/** The ids of a listener's connections, once `connections/` is checked (none while it does not exist). */
const connectionIds = (connections: string): ReadonlyArray<string> | IpcError.IpcError => {
  if (!Sys.exists(connections)) return []
  const unsafe = Layout.checkSubdir(connections, connections)
  if (unsafe !== undefined) return unsafe.reason._tag === "NotFound" ? [] : unsafe
  const ids = list(connections)
  return Sys.failed(ids) ? ids : ids.filter((id) => !id.startsWith("."))
}

/** Checks a connection's directory (`checkSubdir`): `"gone"` when it vanished while we looked. */
const checkConnection = (connection: string): IpcError.IpcError | "gone" | undefined => {
  const unsafe = Layout.checkSubdir(connection, connection)
  return unsafe?.reason._tag === "NotFound" ? "gone" : unsafe
}

const channelReport = (dir: string): ChannelReport | IpcError.IpcError => {
  const paths = Endpoint.channelPaths(dir)
  const unsafe = checkFiles(dir, [paths.lock("backend"), paths.lock("frontend")].map((p) => Path.basename(p)))
  if (unsafe !== undefined) return unsafe
  const ends: Array<End> = []
  for (const role of ["backend", "frontend"] as const) {
    const state = Lock.probe(paths.lock(role))
    if (Sys.failed(state)) return state
    ends.push({ role, open: state === "held", pid: holderPid(paths.lock(role)) })
  }
  const streams: Array<Log.Stats> = []
  for (const role of ["backend", "frontend"] as const) {
    const refused = checkStream(paths.stream(role))
    if (refused !== undefined) return refused
    if (!isStream(paths.stream(role))) continue
    const stats = Verify.stats(paths.stream(role))
    if (Sys.failed(stats)) return stats
    streams.push(stats)
  }
  return { dir, ends, streams }
}

/** Reports what `dir` holds; `NotFound` when it is none of the known kinds. */
export const describe = (dir: string): Effect.Effect<Report, IpcError.IpcError> =>
  Effect.suspend((): Effect.Effect<Report, IpcError.IpcError> => {
    const invalid = Layout.invalidDir(dir, "a directory")
    if (invalid !== undefined) return Effect.fail(invalid)
    if (!Sys.exists(dir)) return Effect.fail(IpcError.make("NotFound", "no such directory", dir))
    const untrusted = Layout.checkDir(dir, dir)
    if (untrusted !== undefined) return Effect.fail(untrusted)
    const marker = Layout.loadMarker(dir)
    if (Sys.failed(marker)) return Effect.fail(marker)
    if (marker?.kind === "listener") {
      const paths = Layout.listenerPaths(dir)
      const connections: Array<ChannelReport & { id: string; dialer: number | undefined }> = []
      const ids = connectionIds(paths.connections)
      if (Sys.failed(ids)) return Effect.fail(ids)
      for (const id of ids.toSorted()) {
        const unsafe = checkConnection(paths.connection(id))
        if (unsafe === "gone") continue
        if (unsafe !== undefined) return Effect.fail(unsafe)
        const report = channelReport(paths.connection(id))
        if (Sys.failed(report) && report.reason._tag === "NotFound") continue
        if (Sys.failed(report)) return Effect.fail(report)
        const info = readSmall(paths.info(id), Layout.SMALL_FILE_MAX_BYTES)
        if (Sys.failed(info)) return Effect.fail(info)
        connections.push({ ...report, id, dialer: numberField(parseJson(info), "pid") })
      }
      return Effect.succeed({
        _tag: "Listener",
        dir,
        listening: Lock.probe(paths.lock) === "held",
        pid: holderPid(paths.lock),
        connections
      })
    }
    if (marker?.kind === "channel" || isStream(Endpoint.channelPaths(dir).stream("backend"))) {
      const report = channelReport(dir)
      return Sys.failed(report) ? Effect.fail(report) : Effect.succeed({ _tag: "Channel", channel: report })
    }
    const ipckit = Ipckit.paths(dir)
    if (Sys.exists(ipckit.messages("backend")) || Sys.exists(ipckit.info)) {
      const info = readSmall(ipckit.info)
      if (Sys.failed(info)) return Effect.fail(info)
      const files: Array<Extract<Report, { _tag: "Ipckit" }>["files"][number]> = []
      for (const from of ["backend", "frontend"] as const) {
        const path = ipckit.messages(from)
        const read = Sys.attempt(() => Sys.readFile(path).toString("utf8"), "Read", `cannot read ${path}`)
        if (Sys.failed(read) && read.reason._tag === "PermissionDenied") return Effect.fail(read)
        let bytes = 0
        let messages: number | string
        if (Sys.failed(read)) {
          messages = read.detail
        } else {
          bytes = Buffer.byteLength(read)
          try {
            JSON.parse(read.trim().length === 0 ? "[]" : read)
            const items = JsonArray.elements(read)
            messages = Array.isArray(items) ? items.length : (items as JsonArray.NotAnArray).why
          } catch (cause) {
            messages = cause instanceof Error ? cause.message : String(cause)
          }
        }
        const holder = readSmall(ipckit.lock(from), Layout.SMALL_FILE_MAX_BYTES)
        if (Sys.failed(holder)) return Effect.fail(holder)
        const text = holder?.trim()
        const pid = text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined
        const writtenAt = text === undefined ? undefined : modifiedAt(ipckit.lock(from))
        const lock = text === undefined ? undefined : { pid, alive: pid !== undefined && Sys.isAlive(pid, writtenAt) }
        files.push({ name: Path.basename(path), bytes, messages, lock })
      }
      const cursors: Array<{ reader: string; id: string; timestamp: number }> = []
      for (const reader of ["backend", "frontend"] as const) {
        const text = readSmall(ipckit.cursor(reader))
        if (Sys.failed(text)) return Effect.fail(text)
        const value = parseJson(text)
        const timestamp = numberField(value, "timestamp")
        const id = typeof value === "object" && value !== null && "id" in value ? value.id : undefined
        // no cursor kept for this side when absent or unreadable
        if (typeof id === "string" && timestamp !== undefined) cursors.push({ reader, id, timestamp })
      }
      return Effect.succeed({ _tag: "Ipckit", dir, created: numberField(parseJson(info), "created"), files, cursors })
    }
    if (isStream(dir)) {
      const refused = checkStream(dir)
      if (refused !== undefined) return Effect.fail(refused)
      return Effect.map(Log.stats(dir), (stream) => ({ _tag: "Stream", stream }))
    }
    return Effect.fail(
      IpcError.make("NotFound", "not an effect-ipc channel, listener or stream directory, nor an ipckit one", dir)
    )
  })

const bytes = (n: number): string =>
  n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`

const renderChannel = (report: ChannelReport, indent: string): Array<string> => {
  const lines: Array<string> = []
  for (const end of report.ends) {
    const who = end.pid === undefined ? "" : end.open ? `, pid ${end.pid}` : ` (last pid ${end.pid})`
    lines.push(`${indent}${end.role.padEnd(9)} ${end.open ? "open" : "closed"}${who}`)
  }
  for (const stream of report.streams) {
    const writer = stream.writer === undefined
      ? "no writer state"
      : `writer pid ${stream.writer.pid}${stream.writer.active ? " (appending)" : ""}${
        stream.writer.clean || stream.writer.active ? "" : " (died mid-append: the next writer repairs the tail)"
      }`
    lines.push(
      `${indent}${Path.basename(stream.dir)}: ${stream.segments.length} segment(s), ${
        bytes(stream.bytes)
      }, end ${stream.end}, ${writer}`
    )
    for (const r of stream.readers) {
      lines.push(
        `${indent}  reader ${r.name}: offset ${r.offset}, ${r.lag === 0 ? "up to date" : `${bytes(r.lag)} unread`}${
          r.active ? `, reading (pid ${r.pid})` : ", idle"
        }`
      )
    }
  }
  return lines
}

/** A report as lines of text for a terminal. */
export const render = (report: Report): string => {
  switch (report._tag) {
    case "Channel":
      return [`channel ${report.channel.dir}`, ...renderChannel(report.channel, "  ")].join("\n")
    case "Listener":
      return [
        `listener ${report.dir}: ${
          report.listening ? `listening, pid ${report.pid}` : "nobody listening"
        }, ${report.connections.length} connection(s)`,
        ...report.connections.flatMap((c) => [
          `  connection ${c.id}${c.dialer === undefined ? "" : ` (dialled by pid ${c.dialer})`}`,
          ...renderChannel(c, "    ")
        ])
      ].join("\n")
    case "Ipckit":
      return [
        `ipckit channel ${report.dir}${
          report.created === undefined ? "" : `, created ${new Date(report.created).toISOString()}`
        }`,
        ...report.files.map((f) =>
          `  ${f.name}: ${
            typeof f.messages === "number" ? `${f.messages} message(s)` : `unreadable (${f.messages})`
          }, ${bytes(f.bytes)}${
            f.lock === undefined
              ? ""
              : `, locked by ${f.lock.pid === undefined ? "an unknown writer" : `pid ${f.lock.pid}`}${
                f.lock.alive ? "" : " (dead: stale lock)"
              }`
          }`
        ),
        ...report.cursors.map((c) => `  ${c.reader} has read up to ${c.id} (${new Date(c.timestamp).toISOString()})`)
      ].join("\n")
    case "Stream":
      return [
        `stream ${report.stream.dir}`,
        ...renderChannel({ dir: report.stream.dir, ends: [], streams: [report.stream] }, "  ")
      ]
        .join("\n")
  }
}

/** One record seen by `tail`. */
export interface Seen {
  /** Where it was written, relative to the directory (`backend_to_frontend`, `connections/<id>/...`). */
  readonly source: string
  /** Its offset in the stream (for ipckit files: its index in the array). */
  readonly offset: number
  /** `data`, or `close` when a writer closed its end. */
  readonly kind: "data" | "close"
  readonly payload: Uint8Array
}

const textEncoder = new TextEncoder()

/** A call of `f` 250 ms from now, asked for by the function it returns (asked again meanwhile: one call); none after the scope closes. */
const soon = (f: () => void) =>
  Effect.gen(function*() {
    let timer: ReturnType<typeof setTimeout> | undefined
    yield* Effect.addFinalizer(() => Effect.sync(() => clearTimeout(timer)))
    return (): void => {
      timer ??= setTimeout(() => {
        timer = undefined
        f()
      }, 250)
    }
  })

/**
 * Follows every stream in `dir` (a channel, a listener and each connection
 * as it appears, a bare stream, or ipckit's files) and emits each record
 * written from now on (`from: "start"`: from the oldest held). Runs until
 * interrupted; it only reads.
 */
export const tail = (
  dir: string,
  options: {
    readonly from?: "start" | "end" | undefined
    /** Runs once every stream is being followed (records written after it are seen). */
    readonly onReady?: Effect.Effect<void> | undefined
  } & Wake.WatchOptions = {}
) =>
  Stream.callback<Seen, IpcError.IpcError>((queue) =>
    Effect.gen(function*() {
      const report = yield* describe(dir)
      const from = options.from ?? "end"
      const scope = yield* Effect.scope
      const followed = new Set<string>()

      const follow = (streamDir: string, start: "start" | "end") =>
        Effect.gen(function*() {
          if (followed.has(streamDir)) return
          // checked before it counts as followed: a check that found no descriptor free is made again by the
          // next scan
          const unsafe = checkStream(streamDir)
          if (unsafe !== undefined) return yield* unsafe
          followed.add(streamDir)
          const source = Path.relative(dir, streamDir) || Path.basename(streamDir)
          // followed again by a later scan if its reader cannot be opened now (no descriptor free)
          const reader = yield* Log.openReader(streamDir, { from: start }).pipe(
            Effect.tapError(() => Effect.sync(() => void followed.delete(streamDir)))
          )
          let largePending = false
          // where the last corrupt record shown was
          let shownCorrupt = -1
          // a read that found no descriptor free (a segment to open) is tried again a moment later: not damage
          const later = yield* soon(() => pump())
          const pump = (): void => {
            if (largePending) return
            while (true) {
              const result = reader.poll(1024 * 1024)
              if (Sys.failed(result)) {
                return short(result) ? later() : void Queue.failCauseUnsafe(queue, Cause.fail(result))
              }
              for (const e of result.entries) {
                Queue.offerUnsafe(queue, {
                  source,
                  offset: e.end - LogFormat.RECORD_HEADER - e.payload.byteLength,
                  kind: e.kind === LogFormat.Kind.close ? "close" : "data",
                  payload: new Uint8Array(e.payload)
                })
              }
              if (result._tag === "Idle") return
              if (result._tag === "Short") return later()
              if (result._tag === "Corrupt") {
                // shown once for each place (a reader that waits there meets it again on each change)
                if (reader.position() !== shownCorrupt) {
                  shownCorrupt = reader.position()
                  Queue.offerUnsafe(queue, {
                    source,
                    offset: shownCorrupt,
                    kind: "data",
                    payload: textEncoder.encode(`(corrupt record: ${result.error.detail})`)
                  })
                }
                const skipped = reader.skipCorrupt()
                if (Sys.failed(skipped)) {
                  return short(skipped) ? later() : void Queue.failCauseUnsafe(queue, Cause.fail(skipped))
                }
                // nothing valid after it yet: read again on the next change
                if (skipped === 0) return
              }
              if (result._tag === "Large") {
                largePending = true
                return reader.readLarge((entry) => {
                  largePending = false
                  if (Sys.failed(entry) && short(entry)) return later()
                  if (entry !== undefined && !Sys.failed(entry)) {
                    Queue.offerUnsafe(queue, {
                      source,
                      offset: entry.end - LogFormat.RECORD_HEADER - entry.payload.byteLength,
                      kind: entry.kind === LogFormat.Kind.close ? "close" : "data",
                      payload: entry.payload
                    })
                  }
                  pump()
                })
              }
            }
          }
          yield* Wake.watch(streamDir, pump, options)
          pump()
        }).pipe(
          Scope.provide(scope),
          // a connection that vanished while we looked: nothing to follow
          Effect.catch((error) => error.reason._tag === "NotFound" ? Effect.void : Effect.fail(error))
        )

      const followChannel = (channelDir: string, start: "start" | "end") =>
        Effect.forEach(
          ["backend", "frontend"] as const,
          (role) => follow(Endpoint.channelPaths(channelDir).stream(role), start),
          { discard: true }
        )

      switch (report._tag) {
        case "Channel":
          yield* followChannel(dir, from)
          break
        case "Stream":
          yield* follow(dir, from)
          break
        case "Listener": {
          const paths = Layout.listenerPaths(dir)
          const scan = (start: "start" | "end") =>
            Effect.gen(function*() {
              const ids = connectionIds(paths.connections)
              if (Sys.failed(ids)) return yield* ids
              for (const id of ids) {
                const unsafe = checkConnection(paths.connection(id))
                if (unsafe === "gone") continue
                if (unsafe !== undefined) return yield* unsafe
                yield* followChannel(paths.connection(id), start)
              }
            })
          // connections made later are followed from their start: each change asks for a scan
          const changes = yield* Queue.unbounded<void>()
          // a scan that found no descriptor free (to list connections/ or open a reader) asks for another a
          // moment later: not the end of the tail
          const rescan = yield* soon(() => void Queue.offerUnsafe(changes, undefined))
          const scanOrLater = Effect.catchIf(scan("start"), short, () => Effect.sync(rescan))
          yield* scan(from)
          yield* Effect.forkIn(
            Effect.forever(Effect.andThen(Queue.take(changes), scanOrLater)).pipe(
              Effect.catchCause((cause) => Effect.sync(() => void Queue.failCauseUnsafe(queue, cause)))
            ),
            scope
          )
          yield* Wake.watch(paths.connections, () => void Queue.offerUnsafe(changes, undefined), options)
          break
        }
        case "Ipckit": {
          const ipckit = Ipckit.paths(dir)
          const seen = new Map<string, Set<string>>()
          const look = (skipExisting: boolean): IpcError.IpcError | undefined => {
            for (const role of ["backend", "frontend"] as const) {
              const path = ipckit.messages(role)
              const name = Path.basename(path)
              const text = readSmall(path)
              if (Sys.failed(text)) return text
              let items: ReadonlyArray<string> = []
              try {
                if (text === undefined) continue
                JSON.parse(text.trim().length === 0 ? "[]" : text)
                const parsed = JsonArray.elements(text)
                if (!Array.isArray(parsed)) continue
                items = parsed
              } catch {
                continue
              }
              const known = seen.get(name) ?? new Set<string>()
              seen.set(name, known)
              items.forEach((item, index) => {
                if (known.has(item)) return
                known.add(item)
                if (!skipExisting) {
                  Queue.offerUnsafe(queue, {
                    source: name,
                    offset: index,
                    kind: "data",
                    payload: textEncoder.encode(item)
                  })
                }
              })
            }
            return undefined
          }
          const refused = look(from === "end")
          if (refused !== undefined) return yield* refused
          // a look that found no descriptor free is taken again a moment later (the change it was for may be the
          // last one for a while)
          const again = yield* soon(() => changed())
          const changed = (): void => {
            const error = look(false)
            if (error !== undefined && short(error)) return again()
            if (error !== undefined) Queue.failCauseUnsafe(queue, Cause.fail(error))
          }
          yield* Wake.watch(dir, changed, options)
          break
        }
      }
      if (options.onReady !== undefined) yield* options.onReady
    })
  )
