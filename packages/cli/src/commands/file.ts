/**
 * `effect-ipc file`: look into the directories of the file transport.
 * `file tail DIR` prints each message written to a channel, listener or
 * ipckit directory as it arrives (from now on, or `--from-start`);
 * `file inspect DIR` shows who holds each end, each stream's segments and
 * size, and each reader's cursor and lag (`--verify` checks every record
 * and exits non-zero on damage, showing its progress on stderr when that is a
 * terminal or with `--progress`; `--json` prints the report as one JSON
 * event). `tail -n N` counts messages only: a writer's close record is shown
 * but not counted. With `--out raw` each message's bytes are written
 * unchanged, with nothing between them (no source, no close records). Neither moves a cursor or holds
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
import * as Output from "../Output.ts"

const dirArg = Argument.String("dir").pipe(
  Argument.withDescription("A channel directory, a listener's directory (file:///dir), or an ipckit channel directory"),
  // an empty argument (an unset variable in a script) is no directory, not the current one
  Argument.filter((dir) => dir.length > 0, () => "the directory is empty: give a path")
)

const textDecoder = new TextDecoder()

/** One record as one line: where it was written, its offset, and its payload in `format`. */
const line = (format: Format.Format, seen: Inspect.Seen): Effect.Effect<string> => {
  const where = `${seen.source}@${seen.offset}`
  if (seen.kind === "close") return Effect.succeed(`${where} (closed by its writer)`)
  const ipckit = seen.source.endsWith(".json")
  const payload = ipckit && format !== "hex"
    // an ipckit element is pretty JSON over several lines: print it on one (one that JSON.stringify
    // cannot write, nested too deeply for the stack, or that is not JSON: compact, or unreadable)
    ? Effect.suspend(() => {
      try {
        return Effect.succeed(JSON.stringify(JSON.parse(textDecoder.decode(seen.payload))))
      } catch {
        return Format.decode("json", seen.payload)
      }
    })
    : Format.decode(format, seen.payload)
  return payload.pipe(
    Effect.catch((error: IpcError.IpcError) => Effect.succeed(`(unreadable as ${format}: ${error.detail})`)),
    Effect.map((text) => `${where} ${text}`)
  )
}

/** One record as a JSON event: a `message` (its source, offset and data) or a `close`. */
const jsonEvent = (format: Format.Format, seen: Inspect.Seen): Effect.Effect<void> => {
  const where = { source: seen.source, offset: seen.offset }
  if (seen.kind === "close") return Output.event({ event: "close", ...where })
  return Output.messageEvent(format, seen.payload, where)
}

/** Ends `stream` after its `n`th data record (close records pass, uncounted). */
const messagesUpTo = (n: number) => <E, R>(stream: Stream.Stream<Inspect.Seen, E, R>) => {
  let messages = 0
  return Stream.takeUntil(stream, (seen) => seen.kind === "data" && ++messages >= n)
}

const tail = Command.make(
  "tail",
  {
    dir: dirArg,
    fromStart: Flag.Boolean("from-start").pipe(
      Flag.withDescription("Begin with the oldest message still held, not with the next one written"),
      Flag.withDefault(false)
    ),
    count: Flag.Int("count").pipe(
      Flag.withAlias("n"),
      Flag.withDescription("Exit after this many messages (a writer's close record is shown, not counted)"),
      Flag.filter((n) => n > 0, (n) => `--count must be at least 1 (got ${n})`),
      Flag.optional
    )
  },
  ({ count, dir, fromStart }) =>
    Output.guard((s) =>
      Effect.suspend(() => {
        const where = Path.resolve(dir)
        const seen = Inspect.tail(where, {
          from: fromStart ? "start" : "end",
          onReady: Effect.andThen(
            Console.error(`effect-ipc: following ${where}`),
            s.json ? Output.event({ event: "ready", command: "following", address: where }) : Effect.void
          )
        })
        return (Option.isSome(count) ? messagesUpTo(count.value)(seen) : seen).pipe(
          Stream.runForEach((r) =>
            s.json
              ? jsonEvent(s.output, r)
              : s.output === "raw"
              // the bytes unchanged, nothing between messages (a close record is not a message: nothing)
              ? r.kind === "data" ? Output.message(s, r.payload) : Effect.void
              : Effect.flatMap(line(s.output, r), Console.log)
          )
        )
      })
    )
).pipe(Command.withDescription("Print each message written to DIR as it arrives (nothing is consumed)"))

/**
 * Shows how far `--verify` is, on stderr: on a terminal one line rewritten in
 * place, otherwise (`--progress` into a pipe or file) one line per step.
 * Steps are streams: `Log.verify` checks a stream in one synchronous call.
 */
const progressTo = (streams: ReadonlyArray<Log.Stats>, base: string) => {
  const total = streams.reduce((sum, s) => sum + s.bytes, 0)
  const tty = process.stderr.isTTY === true
  const show = (text: string, last: boolean) =>
    tty
      ? Effect.sync(() => void process.stderr.write(`\r\x1b[2Keffect-ipc: ${text}${last ? "\n" : ""}`))
      : Console.error(`effect-ipc: ${text}`)
  let done = 0
  return {
    before: (i: number) =>
      show(
        `verifying stream ${i + 1}/${streams.length} ${Path.relative(base, streams[i]!.dir) || "."} (${
          Format.bytes(done)
        } of ${Format.bytes(total)} checked)`,
        false
      ),
    after: (i: number) => Effect.sync(() => void (done += streams[i]!.bytes)),
    end: Effect.suspend(() => show(`verified ${streams.length} streams, ${Format.bytes(total)}`, true))
  }
}

const inspect = Command.make(
  "inspect",
  {
    dir: dirArg,
    verify: Flag.Boolean("verify").pipe(
      Flag.withDescription("Also read and check every record held (lengths, checksums, segment chain)"),
      Flag.withDefault(false)
    ),
    progress: Flag.Boolean("progress").pipe(
      Flag.withDescription("Show --verify's progress on stderr even when it is not a terminal"),
      Flag.withDefault(false)
    )
  },
  ({ dir, progress, verify }) => Output.guard((s) => inspectDir(dir, s.json, verify, progress))
).pipe(Command.withDescription("Show DIR's ends, streams, sizes, readers and cursors (--verify checks every record)"))

const inspectDir = Effect.fn(function*(dir: string, json: boolean, verify: boolean, progress: boolean) {
  const report = yield* Inspect.describe(Path.resolve(dir))
  const streams: ReadonlyArray<Log.Stats> = report._tag === "Channel"
    ? report.channel.streams
    : report._tag === "Listener"
    ? report.connections.flatMap((c) => c.streams)
    : report._tag === "Stream"
    ? [report.stream]
    : []
  const shown = progress || process.stderr.isTTY === true ? progressTo(streams, Path.resolve(dir)) : undefined
  const checks = verify
    ? yield* Effect.forEach(streams, (s, i) =>
      Effect.map(
        Effect.result(
          shown === undefined
            ? Log.verify(s.dir)
            : Effect.andThen(shown.before(i), Log.verify(s.dir)).pipe(Effect.ensuring(shown.after(i)))
        ),
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
  if (verify && shown !== undefined) yield* shown.end
  const bad = checks.find((c) => c.error !== undefined)?.error
  if (json) {
    const verified = checks.map(({ detail, ok, stream }) => ({ stream, ok, detail }))
    yield* Output.event({ event: "inspect", ...report, ...(verify ? { verify: verified } : {}) })
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

/** The `file` command: `tail` and `inspect`. */
export const command = Command.make("file").pipe(
  Command.withDescription("Look into the directories of the file transport (file://) and ipckit's file channels"),
  Command.withSubcommands([tail, inspect])
)
