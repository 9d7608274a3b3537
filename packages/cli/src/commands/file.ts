/**
 * `effect-ipc file`: look into the directories of the file transport.
 * `file tail DIR` prints each message written to a channel, listener or
 * ipckit directory as it arrives (from now on, or `--from-start`);
 * `file inspect DIR` shows who holds each end, each stream's segments and
 * size, and each reader's cursor and lag (`--verify` checks every record
 * and exits non-zero on damage, `--json` prints the report as JSON). Neither moves a cursor or holds
 * space back, and both trust what a channel trusts: a directory or file another user controls, a
 * planted link or a FIFO where a file is expected is refused (`PermissionDenied`, exit status 1).
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import { Inspect, Log } from "@effect-ipc/transport-file"
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Path from "node:path"
import * as Format from "../Format.ts"

const dirArg = Argument.String("dir").pipe(
  Argument.withDescription("A channel directory, a listener's directory (file:///dir), or an ipckit channel directory")
)

const textDecoder = new TextDecoder()

/** One record as one line: where it was written, its offset, and its payload in `format`. */
const line = (format: Format.Format, seen: Inspect.Seen): Effect.Effect<string> => {
  const where = `${seen.source}@${seen.offset}`
  if (seen.kind === "close") return Effect.succeed(`${where} (closed by its writer)`)
  const ipckit = seen.source.endsWith(".json")
  const payload = ipckit && format !== "hex"
    // an ipckit element is pretty JSON over several lines: print it on one
    ? Effect.sync(() => JSON.stringify(JSON.parse(textDecoder.decode(seen.payload))))
    : Format.decode(format, seen.payload)
  return payload.pipe(
    Effect.catch((error: IpcError.IpcError) => Effect.succeed(`(unreadable as ${format}: ${error.detail})`)),
    Effect.map((text) => `${where} ${text}`)
  )
}

const tail = Command.make(
  "tail",
  {
    dir: dirArg,
    fromStart: Flag.Boolean("from-start").pipe(
      Flag.withDescription("Begin with the oldest message still held, not with the next one written"),
      Flag.withDefault(false)
    ),
    format: Flag.Literals("format", Format.formats).pipe(
      Flag.withAlias("f"),
      Flag.withDescription("How payloads are printed: text (UTF-8), json or hex"),
      Flag.withDefault("text")
    ),
    count: Flag.Int("count").pipe(
      Flag.withAlias("n"),
      Flag.withDescription("Exit after this many messages"),
      Flag.filter((n) => n > 0, (n) => `--count must be at least 1 (got ${n})`),
      Flag.optional
    )
  },
  Effect.fn(function*({ count, dir, format, fromStart }) {
    const where = Path.resolve(dir)
    const seen = Inspect.tail(where, {
      from: fromStart ? "start" : "end",
      onReady: Console.error(`effect-ipc: following ${where}`)
    })
    yield* (Option.isSome(count) ? Stream.take(seen, count.value) : seen).pipe(
      Stream.runForEach((s) => Effect.flatMap(line(format, s), Console.log))
    )
  })
).pipe(Command.withDescription("Print each message written to DIR as it arrives (nothing is consumed)"))

const inspect = Command.make(
  "inspect",
  {
    dir: dirArg,
    json: Flag.Boolean("json").pipe(Flag.withDescription("Print the report as JSON"), Flag.withDefault(false)),
    verify: Flag.Boolean("verify").pipe(
      Flag.withDescription("Also read and check every record held (lengths, checksums, segment chain)"),
      Flag.withDefault(false)
    )
  },
  Effect.fn(function*({ dir, json, verify }) {
    const report = yield* Inspect.describe(Path.resolve(dir))
    const streams: ReadonlyArray<Log.Stats> = report._tag === "Channel"
      ? report.channel.streams
      : report._tag === "Listener"
      ? report.connections.flatMap((c) => c.streams)
      : report._tag === "Stream"
      ? [report.stream]
      : []
    const checks = verify
      ? yield* Effect.forEach(streams, (s) =>
        Effect.map(
          Effect.result(Log.verify(s.dir)),
          (r) => ({
            stream: s.dir,
            ok: r._tag === "Success",
            detail: r._tag === "Success"
              ? `${r.success.records} records, all whole${
                r.success.torn > 0 ? `; ${r.success.torn} bytes of an unfinished record after them` : ""
              }`
              : r.failure.detail,
            error: r._tag === "Failure" ? r.failure : undefined
          })
        ))
      : []
    const bad = checks.find((c) => c.error !== undefined)?.error
    if (json) {
      const shown = checks.map(({ detail, ok, stream }) => ({ stream, ok, detail }))
      yield* Console.log(JSON.stringify({ ...report, ...(verify ? { verify: shown } : {}) }, null, 2))
    } else {
      yield* Console.log(Inspect.render(report))
      for (const check of checks) {
        yield* Console.log(
          `${check.ok ? "ok" : "BAD"} ${Path.relative(Path.resolve(dir), check.stream)}: ${check.detail}`
        )
      }
    }
    // damage found: a non-zero exit status
    if (bad !== undefined) return yield* bad
  })
).pipe(Command.withDescription("Show DIR's ends, streams, sizes, readers and cursors (--verify checks every record)"))

/** The `file` command: `tail` and `inspect`. */
export const command = Command.make("file").pipe(
  Command.withDescription("Look into the directories of the file transport (file://) and ipckit's file channels"),
  Command.withSubcommands([tail, inspect])
)
