/**
 * What the command line prints, and how: the root command's shared flags
 * (`--format`, `--in`, `--out`, `--json`), messages in the output format or as
 * JSON events (one object per line on stdout), and failures as one line that
 * names what the user gave and why, never a temporary name, a stack trace or
 * a nested cause.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Cause from "effect/Cause"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Runtime from "effect/Runtime"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Util from "node:util"
import * as Format from "./Format.ts"

/** A failure that has already been printed: exit code 1, nothing more to log. */
export class Reported extends Data.TaggedError("Reported")<{}> {
  override readonly [Runtime.errorReported] = false
}

const formatFlag = (name: string, description: string) =>
  Flag.Literals(name, Format.formats).pipe(Flag.withDescription(description))

/** The root command `effect-ipc`, whose shared flags say how data is read and printed. */
export const root = Command.make("effect-ipc").pipe(
  Command.withSharedFlags({
    format: formatFlag("format", "How data is read and messages are printed: text (UTF-8), json, hex or raw").pipe(
      Flag.withAlias("f"),
      Flag.withDefault("text")
    ),
    in: formatFlag("in", "How data sent is read (default: --format)").pipe(Flag.optional),
    out: formatFlag("out", "How messages received are printed (default: --format)").pipe(Flag.optional),
    json: Flag.Boolean("json").pipe(
      Flag.withDescription("Print JSON events, one object per line on stdout (messages, results and errors)"),
      Flag.withDefault(false)
    )
  }),
  Command.withDescription("Send, receive, echo and call over effect-ipc transports")
)

/** How this run reads and prints. */
export interface Settings {
  /** How data sent is read. */
  readonly input: Format.Format
  /** How messages received are printed. */
  readonly output: Format.Format
  /** JSON events on stdout instead of plain lines. */
  readonly json: boolean
}

/** The settings of this run, from the root command's shared flags. */
export const settings: Effect.Effect<Settings, never, Command.CommandContext<"effect-ipc">> = Effect.map(
  root,
  (flags) => ({
    input: Option.getOrElse(flags.in, () => flags.format),
    output: Option.getOrElse(flags.out, () => flags.format),
    json: flags.json
  })
)

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, " ").trim()

/** A status line for a human, on stderr: `effect-ipc: ...`. */
export const status = (message: string): Effect.Effect<void> => Console.error(`effect-ipc: ${oneLine(message)}`)

/**
 * One JSON event on stdout (binary values as base64; an `address` without its secret, whoever
 * passed it), or, when its fields cannot be written as JSON (a peer's value nested too deeply for
 * the stack), a `Decode` failure naming `what` (by default the event) and nothing printed.
 */
export const tryEvent = (
  fields: Record<string, unknown>,
  what = `the ${String(fields["event"])} event`
): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const line = Format.stringify(
      typeof fields["address"] === "string" ? { ...fields, address: Address.redact(fields["address"]) } : fields,
      what
    )
    return Result.isFailure(line) ? Effect.fail(line.failure) : Console.log(line.success ?? "null")
  })

/**
 * One JSON event on stdout, as `tryEvent`; one that cannot be written is an `error` event saying
 * so (reason `Decode`), and the command carries on.
 */
export const event = (fields: Record<string, unknown>): Effect.Effect<void> =>
  tryEvent(fields).pipe(
    Effect.catch((error) =>
      Console.log(JSON.stringify({ event: "error", reason: error.reason._tag, detail: oneLine(error.detail) }))
    )
  )

/**
 * A received message as a `message` event with `fields` (such as where it came from) and its data
 * by `format` (`Format.toJsonData`); should that not print, its bytes as base64.
 */
export const messageEvent = (
  format: Format.Format,
  bytes: Uint8Array,
  fields: Record<string, unknown> = {}
): Effect.Effect<void> =>
  tryEvent({ event: "message", ...fields, ...Format.toJsonData(format, bytes) }).pipe(
    Effect.catch(() =>
      event({ event: "message", ...fields, data: Buffer.from(bytes).toString("base64"), encoding: "base64" })
    )
  )

/** Writes `bytes` to stdout unchanged. */
const writeRaw = (bytes: Uint8Array): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    process.stdout.write(bytes, () => resume(Effect.void))
  })

/**
 * Prints one received message: a `message` event with `--json` (and `fields`,
 * such as where it came from), its bytes with `--out raw`, else one line.
 */
export const message = (
  s: Settings,
  bytes: Uint8Array,
  fields: Record<string, unknown> = {}
): Effect.Effect<void> => {
  if (s.json) return messageEvent(s.output, bytes, fields)
  if (s.output === "raw") return writeRaw(bytes)
  return Format.decode(s.output, bytes).pipe(
    Effect.flatMap(Console.log),
    Effect.catch((error) => problem(s, error, "unreadable message"))
  )
}

/** Reads all of `path` (`-`: stdin) as bytes. */
export const readInput = (path: string): Effect.Effect<Uint8Array, IpcError.IpcError> =>
  Effect.tryPromise({
    try: async () => {
      if (path !== "-") return new Uint8Array(await Fs.promises.readFile(path))
      const chunks: Array<Uint8Array> = []
      for await (const chunk of process.stdin) chunks.push(chunk as Uint8Array)
      return new Uint8Array(Buffer.concat(chunks))
    },
    catch: (cause) =>
      path === "-"
        ? IpcError.make("Read", "cannot read stdin")
        : new IpcError.IpcError({
          reason: IpcError.errnoReason(IpcError.errnoOf(cause), "Read"),
          detail: `cannot read ${path}: ${
            IpcError.errnoOf(cause) === undefined ? "unreadable" : errnoText(IpcError.errnoOf(cause)!)
          }`
        })
  })

// --- failures ----------------------------------------------------------------------

/** nng's URL schemes, which this command line spells with an `nng+` prefix. */
const nngSchemes = ["tcp", "tcp4", "tcp6", "ipc", "ws", "wss", "tls+tcp", "inproc", "abstract"]

/** `nng+tcp://...` for an nng URL given without the prefix (`tcp://...`). */
export const nngHint = (address: string): string | undefined => {
  const scheme = /^([a-z0-9+]+):\/\//i.exec(address)?.[1]?.toLowerCase()
  return scheme !== undefined && nngSchemes.includes(scheme) ? `nng+${address}` : undefined
}

/** The path of a filesystem address (`unix:///tmp/a.sock`, `file:///dir`, `fifo://...`), if it has one. */
const pathOf = (address: string): string | undefined => {
  const match = /^(?:unix|file|fifo|nng\+ipc):\/\/(\/.*)$/.exec(address)
  if (match === null) return undefined
  try {
    return decodeURIComponent(match[1]!)
  } catch {
    return match[1]
  }
}

/** The system's words for an errno code (`ENOENT`: "no such file or directory"). */
export const errnoText = (errno: string): string => {
  const n = (Os.constants.errno as Record<string, number | undefined>)[errno]
  if (n === undefined) return errno
  return Util.getSystemErrorMessage(-n).toLowerCase()
}

/** Why a system call failed, in the terms of what the user gave (`address`). */
const why = (errno: string, address: string | undefined): string => {
  const path = address === undefined ? undefined : pathOf(address)
  if (path !== undefined && (errno === "ENOENT" || errno === "ENOTDIR")) {
    const dir = Path.dirname(path)
    if (!Fs.existsSync(dir)) return `directory ${dir} does not exist`
  }
  if (errno === "ECONNREFUSED") {
    const kind = path === undefined ? undefined : notSocket(path)
    return kind === undefined ? "nothing is listening there (connection refused)" : `${path} is ${kind}, not a socket`
  }
  return errnoText(errno)
}

/** What is at `path` when it is there and is not a socket ("a regular file"), for a refused connect. */
const notSocket = (path: string): string | undefined => {
  try {
    const stat = Fs.statSync(path)
    if (stat.isSocket()) return undefined
    if (stat.isFile()) return "a regular file"
    if (stat.isDirectory()) return "a directory"
    if (stat.isFIFO()) return "a FIFO"
    return "a device"
  } catch {
    return undefined
  }
}

/**
 * What a system's message adds that a user did not give: stack frames, the
 * names of temporary files the transports make (`.eipc-XXXXXX`), and Node's
 * `syscall ECODE path` wording with its `[ECODE]` tag. The wordings with a code
 * are taken out only when the code is an errno (`write EPIPE`, not a user's
 * "write EVENTS.log").
 */
const internals: ReadonlyArray<readonly [RegExp, string?]> = [
  // a stack frame (`at fn (file:1:2)`, `at async Promise.all (index 0)`), not "at unix:///x.sock (pid 7)"
  [/\s*\bat [^\s(]+ \((?:[^)]*:\d+:\d+|index \d+|native|<anonymous>)\)/g],
  [/:? ?(E[A-Z]+): [^,]+, \w+ '[^']*'/g, "errno"],
  [
    /:? ?\b(?:connect|bind|listen|open|mkdtemp|rename|unlink|mkdir|stat|lstat|read|write|writev|shutdown) (E[A-Z]+)\b(?: \S+)?/g,
    "errno"
  ],
  [/'[^']*\.eipc-[^']*'/g],
  [/\S*\/\.eipc-\S*/g],
  [/ \[(E[A-Z]+)\]/g, "errno"]
]

const isErrno = (code: string): boolean =>
  (Os.constants.errno as Record<string, number | undefined>)[code] !== undefined

/** `text` without internals (see `internals`), on one line. */
export const scrub = (text: string): string => {
  let out = text
  for (const [pattern, kind] of internals) {
    out = kind === undefined
      ? out.replace(pattern, "")
      : out.replace(pattern, (found: string, code: string) => isErrno(code) ? "" : found)
  }
  return oneLine(out)
}

/**
 * A failure's detail on one line: what was being done, the address the user
 * gave and why, with the system's own message (which names internal paths and
 * calls, such as `mkdtemp '/dir/.eipc-XXXXXX'`) left out, and for an nng URL
 * given without our prefix, the address to write instead.
 */
export const detailOf = (error: IpcError.IpcError): string => {
  let detail = error.detail
  let reason: string | undefined
  const cause: unknown = error.cause
  if (error.errno !== undefined) {
    // only a system call's own message (Node's `syscall ECODE path` wording); a library's explanation stays
    const system = cause instanceof Error && "syscall" in cause ? cause.message : undefined
    if (system !== undefined && detail.endsWith(`: ${system}`)) {
      detail = detail.slice(0, -(system.length + 2))
      reason = why(error.errno, error.address)
    } else if (detail.endsWith(`: ${error.errno}`)) {
      detail = detail.slice(0, -(error.errno.length + 2))
      reason = why(error.errno, error.address)
    }
  }
  detail = scrub(detail)
  const hint = error.address === undefined ? undefined : nngHint(error.address)
  // a detail that names the address already (`no peer connected to tcp://...`) is not followed by it again
  const where = error.address === undefined || (reason === undefined && detail.includes(error.address))
    ? ""
    : reason === undefined
    ? ` (${error.address})`
    : ` ${error.address}`
  const because = reason === undefined ? "" : `: ${reason}`
  const nng = error.reason._tag === "UnsupportedScheme" && hint !== undefined
    ? `; for nng, write ${hint}`
    : ""
  return `${detail}${where}${because}${nng}`
}

/** A failure as one line: its reason and `detailOf`. */
export const describe = (error: IpcError.IpcError): string => `${error.reason._tag}: ${detailOf(error)}`

/**
 * Prints a failure that the command carries on after: an `error` event with
 * `--json`, else one line on stderr. `context` says what it concerns.
 */
export const problem = (s: Settings, given: IpcError.IpcError, context?: string): Effect.Effect<void> => {
  // an address's secret (`ws://...?token=`) is never printed, whoever made the error
  const error = Address.redactError(given, given.address)
  const line = describe(error)
  return s.json
    ? event({
      event: "error",
      reason: error.reason._tag,
      detail: context === undefined ? detailOf(error) : `${context}: ${detailOf(error)}`,
      ...(error.address === undefined ? {} : { address: error.address })
    })
    : status(context === undefined ? line : `${context}: ${line}`)
}

/** Prints a failure that ends the command (exit code 1): as `problem`, then fails with `Reported`. */
export const fail = (s: Settings, error: IpcError.IpcError): Effect.Effect<never, Reported> =>
  Effect.andThen(problem(s, error), Effect.fail(new Reported()))

/**
 * `String(value)` (a plain object as JSON), which never throws: a value that `String` cannot write (an array from a peer
 * nested too deeply for the stack, an object without a way to be a string) is named by its kind.
 */
export const textOf = (value: unknown): string => {
  try {
    const text = String(value)
    // a plain object (a peer's defect such as `{"code":7}`) as JSON, not "[object Object]"
    return text === "[object Object]" ? JSON.stringify(value) ?? text : text
  } catch {
    return Array.isArray(value)
      ? "an array nested too deeply to show"
      : `a value that cannot be shown (${typeof value})`
  }
}

/** A defect (a bug or an exception from below) as an `Unknown` failure with its first line only. */
export const fromDefect = (defect: unknown): IpcError.IpcError =>
  IpcError.make(
    "Unknown",
    IpcError.isIpcError(defect)
      ? describe(defect)
      : (defect instanceof Error ? `${defect.name}: ${defect.message}` : textOf(defect)).split("\n")[0]!
  )

/**
 * The command line's logger: a log line (such as a client's "waiting for a
 * server at ...") as one `effect-ipc:` line on stderr without internals, or
 * with `--json` a `log` event on stdout.
 */
export const logger = (s: Settings) =>
  Logger.make<unknown, void>((options) => {
    const { logLevel } = options
    const parts: ReadonlyArray<unknown> = Array.isArray(options.message) ? options.message : [options.message]
    // the failure a line is about (`Effect.logWarning("...", cause)`), as its reason: an IpcError described, else its first line
    const failure = options.cause.reasons.length === 0 ? undefined : Cause.squash(options.cause)
    const reason = failure === undefined
      ? ""
      : `: ${IpcError.isIpcError(failure) ? describe(failure) : textOf(failure).split("\n")[0]!}`
    const text = scrub(
      parts.map((part: unknown) =>
        IpcError.isIpcError(part) ? describe(part) : typeof part === "string" ? part : Util.inspect(part)
      ).join(" ") + reason
    )
    if (s.json) {
      process.stdout.write(`${JSON.stringify({ event: "log", level: logLevel.toLowerCase(), message: text })}\n`)
    } else {
      process.stderr.write(`effect-ipc: ${text}\n`)
    }
  })

/**
 * Runs a command's work with this run's settings: an `IpcError` or a defect is
 * printed once (`--json`: as an `error` event) and becomes `Reported`.
 */
export const guard = <A, E, R>(
  work: (s: Settings) => Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, IpcError.IpcError> | Reported, R | Command.CommandContext<"effect-ipc">> =>
  Effect.gen(function*() {
    const s = yield* settings
    return yield* work(s).pipe(
      Effect.catch((error): Effect.Effect<never, Reported | Exclude<E, IpcError.IpcError>> =>
        IpcError.isIpcError(error) ? fail(s, error) : Effect.fail(error as Exclude<E, IpcError.IpcError>)
      ),
      Effect.catchDefect((defect) => fail(s, fromDefect(defect))),
      Effect.provide(Logger.layer([logger(s)]))
    )
  })
