/**
 * An append-only, segmented, crash-safe log in a directory (the format is
 * in `LogFormat`). One log is one direction of a channel; any number of
 * processes may append to it and any number of named readers may read it,
 * each from its own durable cursor.
 *
 * - **Appends** take the stream's writer lock (`flock`, released by the
 *   kernel if the holder dies), write one record with one system call and
 *   return once the record is in the file: a `send` that succeeded is in the
 *   log. A writer keeps the lock for the rest of the event-loop turn, so a
 *   burst of appends costs one lock; several writer processes interleave
 *   whole records, never bytes.
 * - **Crash safety**: every record carries its length and a CRC-32, and a
 *   reader delivers only whole, valid records; a writer killed mid-write
 *   leaves a dirty writer state, and the next writer cuts the torn tail off
 *   before appending.
 * - **Damage** is never a gap: the writer state records the committed end; a
 *   record before it that is not whole and valid stops readers with reason
 *   `Corrupt` (segment and offset), and a writer never cuts committed
 *   records (its append fails with `Corrupt` instead).
 * - **Cursors** are per reader name and survive restarts; a reader commits
 *   after each delivery, so a restarted reader neither skips nor repeats.
 * - **Space** is reclaimed segment by segment once every registered reader
 *   is past it. A stream never holds more than `maxBytes`: an append that
 *   would pass it waits for readers (`whenFull: "wait"`, with an optional
 *   `fullTimeout`) or fails with reason `Full` (`whenFull: "fail"`). Nothing
 *   is ever dropped to make room.
 *
 * Records and system calls up to 256 KiB are made synchronously on open
 * descriptors (page-cache copies of a few microseconds, which is what lets a
 * successful `append` mean "in the file"); larger ones go through libuv's
 * threadpool, one request at a time, so a 16 MiB message never stalls the
 * event loop.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Layout from "./internal/layout.ts"
import * as LogReader from "./internal/reader.ts"
import * as Stream from "./internal/stream.ts"
import * as Verify from "./internal/verify.ts"
import * as LogWriter from "./internal/writer.ts"

/** Options of a log stream. */
export type LogOptions = Stream.LogOptions

/** The defaults of `LogOptions`. */
export const defaults = Stream.defaults

/** The paths of a stream directory. */
export const paths = Stream.paths

/**
 * `run(dir)`, or `InvalidAddress` when `dir` is not a path (JavaScript can
 * pass `null` or a number: that was an `Open` or `Read` error, or a defect).
 */
const atDir = <A, R>(
  dir: string,
  run: () => Effect.Effect<A, IpcError.IpcError, R>
): Effect.Effect<A, IpcError.IpcError, R> =>
  Effect.suspend(() => {
    const invalid = Layout.invalidDir(dir, "a stream directory")
    return invalid === undefined ? run() : Effect.fail(invalid)
  })

/** The base offsets of a stream's segments, oldest first. */
export const segments = (dir: string): Effect.Effect<ReadonlyArray<number>, IpcError.IpcError> =>
  atDir(dir, () => Stream.lift(Stream.segments(dir)))

/**
 * Creates the stream directory `dir` if it does not exist, atomically (it is
 * built aside and renamed into place), and registers `readers` (each starts
 * at the oldest record still held). Safe to race: one creator wins, the
 * others use its stream.
 */
export const create = (
  dir: string,
  options: { readonly readers?: ReadonlyArray<string> | undefined } & Pick<LogOptions, "fileMode" | "dirMode"> = {}
): Effect.Effect<void, IpcError.IpcError> => atDir(dir, () => Stream.lift(Stream.create(dir, options)))

/** Registers reader `name` at the `start` (oldest record held) or the `end` of `dir`, unless it exists. */
export const register = (
  dir: string,
  name: string,
  from: "start" | "end",
  options: Pick<LogOptions, "fileMode"> = {}
): Effect.Effect<void, IpcError.IpcError> => atDir(dir, () => Stream.lift(Stream.register(dir, name, from, options)))

/** Removes reader `name`: its cursor no longer holds space back. */
export const unregister = (dir: string, name: string): Effect.Effect<void, IpcError.IpcError> =>
  atDir(dir, () => Stream.lift(Stream.unregister(dir, name)))

/**
 * `f()` once `dir` could be listed: a missing stream directory is `NotFound`, as for `segments`, never
 * an empty answer; an exception `f` throws is an `IpcError` with reason `fallback`.
 */
const inListedDir = <A>(
  dir: string,
  f: () => A,
  fallback: IpcError.IpcErrorReason,
  detail: string
): Effect.Effect<A, IpcError.IpcError> =>
  atDir(dir, () =>
    Effect.flatMap(
      Stream.lift(Stream.segments(dir)),
      () => Stream.lift(Stream.attemptTyped(f, fallback, detail, dir))
    ))

/** The registered readers of `dir` and their committed offsets (`NotFound` when `dir` does not exist). */
export const cursors = (
  dir: string
): Effect.Effect<ReadonlyArray<{ readonly name: string; readonly offset: number }>, IpcError.IpcError> =>
  inListedDir(dir, () => Stream.cursors(dir), "Read", "cannot read the cursors")

/**
 * Deletes the segments every registered reader is past (never the last one).
 * With no registered reader nothing is deleted. Succeeds with the bytes freed
 * (`NotFound` when `dir` does not exist).
 */
export const reclaim = (dir: string): Effect.Effect<number, IpcError.IpcError> =>
  inListedDir(dir, () => Stream.reclaim(dir), "Write", "cannot reclaim")

/** The `Corrupt` error for damage at logical `offset` of segment `base` of the stream `dir`. */
export { corruptAt } from "./internal/scan.ts"

/** The writing end of a stream. */
export type Writer = LogWriter.Writer

/** The kinds of record `Writer.append` takes: data, or close (anything else is `InvalidOption`). */
export type AppendKind = LogWriter.AppendKind

/**
 * Opens the writing end of the stream `dir` (which must exist: see
 * `create`). It holds no lock between appends; it is closed with the scope.
 */
export const openWriter = LogWriter.openWriter

/** One record read from a stream. */
export type Entry = LogReader.Entry

/** What one `poll` found. */
export type Poll = LogReader.Poll

/**
 * The reading end of a stream. Its methods are synchronous (the channel
 * endpoint calls them from the event loop): they return an `IpcError` rather
 * than fail an Effect.
 */
export type Reader = LogReader.Reader

/**
 * Opens reader `name` of the stream `dir` at its committed cursor
 * (registering it at `from` if it is new). One process at a time may use a
 * reader name: a second gets `AddressInUse`. Without a name, opens an
 * observer, which keeps no cursor, holds no space back and starts at `from`.
 */
export const openReader: typeof LogReader.openReader = (dir, options) =>
  atDir(dir, () => LogReader.openReader(dir, options))

/** What `verify` found in a sound stream. */
export type Verified = Verify.Verified

/**
 * Reads every record still held and checks it (header, length, checksum,
 * segment chain) against the committed end the writer state records. Fails
 * with reason `Corrupt`, naming the segment and the offset, at the first
 * damaged record or where committed records are missing; every record
 * before it is whole. An unfinished record past the committed end is not
 * damage: it is counted in `torn`.
 */
export const verify = (dir: string): Effect.Effect<Verified, IpcError.IpcError> => atDir(dir, () => Verify.verify(dir))

/** A summary of a stream, for `inspect`. */
export type Stats = Verify.Stats

/** Reads a stream's segments, writer state and readers (nothing is modified). */
export const stats = (dir: string): Effect.Effect<Stats, IpcError.IpcError> =>
  atDir(dir, () => Stream.lift(Verify.stats(dir)))
