/**
 * Transport options from configuration. Each transport's descriptor
 * (`Registry.TransportDescriptor.options`) declares the options its `make`
 * accepts as a schema, built from the kinds below (`Bytes`, `Count`,
 * `Duration`, `Mode`, `Flag`, `Choice`, `Text`); `Registry.layerConfig`
 * reads them for the chosen transport from the current `ConfigProvider`:
 *
 * - `IPC_OPTIONS`: a JSON object (`{"maxMessageSize": "64 KiB"}`), or, from a
 *   structured provider (`ConfigProvider.fromUnknown`), an object;
 * - `IPC_OPTIONS_<NAME>`: one option, its name in CONSTANT_CASE
 *   (`IPC_OPTIONS_MAX_MESSAGE_SIZE=65536`, `IPC_OPTIONS_HEARTBEAT_INTERVAL=1 second`
 *   with `IPC_OPTIONS_HEARTBEAT_TIMEOUT`: a nested option needs all its fields);
 *   it wins over the same option in `IPC_OPTIONS` (still checked). An empty variable counts as unset.
 *
 * Nothing is ignored: an option the transport does not have, a value of the
 * wrong kind or `IPC_OPTIONS` that is not a JSON object fails the layer's
 * build with an `IpcError` of reason `InvalidOption` naming the transport,
 * the option and where it was set.
 *
 * @since 0.1.0
 */
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration_ from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as SchemaGetter from "effect/SchemaGetter"
import * as SchemaIssue from "effect/SchemaIssue"
import type * as Scope from "effect/Scope"
import * as Address from "./Address.ts"
import * as Timer from "./internal/timer.ts"
import * as IpcError from "./IpcError.ts"
import type * as Transport from "./Transport.ts"

/** The variable (and, from a structured provider, the key) holding the options as one JSON object. */
export const OPTIONS = "IPC_OPTIONS"

const show = (u: unknown): string => {
  // JSON has no text for what is not finite (1e400 in IPC_OPTIONS reads as Infinity): shown as it is, not as null
  if (typeof u === "number" && !Number.isFinite(u)) return String(u)
  try {
    return JSON.stringify(u) ?? String(u)
  } catch {
    return String(u)
  }
}

/** A schema decoding configuration values (JSON values, or the strings of an environment) with `parse`. */
const kind = <A>(
  expected: string,
  parse: (input: unknown) => A | undefined,
  shown: (input: unknown) => string = show
): Schema.Codec<A, unknown> =>
  Schema.Unknown.pipe(Schema.decodeTo(Schema.Any as Schema.Codec<A>, {
    decode: SchemaGetter.transformEffect((input: unknown) => {
      const value = parse(input)
      return value === undefined
        ? Effect.fail(new SchemaIssue.InvalidValue({ message: `expected ${expected}, got ${shown(input)}` }, input))
        : Effect.succeed(value)
    }),
    encode: SchemaGetter.transform((value: A): unknown => value)
  }))

const units: Record<string, number> = { "": 1, b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 }
const sizePattern = /^\s*(\d+)\s*(b|kib|mib|gib)?\s*$/i

/** A size in bytes: a whole number, or a string such as `"65536"`, `"64 KiB"`, `"4 MiB"`, `"1 GiB"`. */
export const Bytes: Schema.Codec<number, unknown> = kind(
  `a size in bytes (65536, "64 KiB", "4 MiB")`,
  (input) => {
    if (typeof input === "number") return Number.isSafeInteger(input) && input >= 0 ? input : undefined
    if (typeof input !== "string") return undefined
    const match = sizePattern.exec(input)
    if (match === null) return undefined
    const value = Number(match[1]) * units[(match[2] ?? "").toLowerCase()]!
    return Number.isSafeInteger(value) ? value : undefined
  }
)

/** A count of at least 1: a whole number, or its digits as a string. */
export const Count: Schema.Codec<number, unknown> = kind("a whole number of at least 1", (input) => {
  const value = typeof input === "string" && /^\s*\d+\s*$/.test(input) ? Number(input) : input
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 1 ? value : undefined
})

/** A duration: milliseconds as a number, or a string such as `"250 millis"`, `"5 seconds"`, `"1 minute"`. */
export const Duration: Schema.Codec<Duration_.Duration, unknown> = kind(
  `a duration (milliseconds, or "250 millis", "5 seconds")`,
  (input) => {
    if (typeof input === "number") return input >= 0 && Number.isFinite(input) ? Duration_.millis(input) : undefined
    if (typeof input !== "string") return undefined
    const trimmed = input.trim()
    if (/^\d+(\.\d+)?$/.test(trimmed)) return Duration_.millis(Number(trimmed))
    const parsed = Duration_.fromInput(trimmed as Duration_.Input)
    return parsed._tag === "Some" ? parsed.value : undefined
  }
)

/**
 * Permission bits: an octal string (`"0600"`, `"0o660"`, `"600"`) or a number
 * (`384`, up to `0o777`: a JSON `600` is decimal, 0o1130, and is refused).
 */
export const Mode: Schema.Codec<number, unknown> = kind(
  `permission bits: octal digits in a string ("0600", "0o660"), or a JSON number, which is decimal (0o600 is 384) and at most 511`,
  (input) => {
    const value = typeof input === "number"
      ? input <= 0o777 ? input : undefined
      : typeof input === "string" && /^\s*(0o?)?[0-7]{1,4}\s*$/i.test(input)
      ? Number.parseInt(input.trim().replace(/^0o/i, ""), 8)
      : undefined
    return value !== undefined && Number.isInteger(value) && value >= 0 && value <= 0o777 ? value : undefined
  }
)

/**
 * A mode as an error about it shows it: a whole number in octal, another number or a string as it is, anything else
 * by its kind (`String` throws for an object without a prototype, or whose `toString` throws).
 */
export const modeShown = (mode: unknown): string =>
  typeof mode === "number"
    ? Number.isInteger(mode) && mode >= 0 ? `0o${mode.toString(8)}` : String(mode)
    : typeof mode === "string"
    ? mode
    : `(${kindOf(mode)})`

/**
 * `InvalidOption` for a `mode` given in code that is not permission bits (an
 * integer from 0 to 0o777): a decimal `600` would be 0o1130, sticky and group
 * writable, where 0o600 was meant. Undefined for one that is.
 */
export const invalidMode = (mode: unknown, address?: string): IpcError.IpcError | undefined =>
  typeof mode === "number" && Number.isInteger(mode) && mode >= 0 && mode <= 0o777
    ? undefined
    : IpcError.make(
      "InvalidOption",
      `mode ${
        modeShown(mode)
      } is not permission bits (an integer from 0 to 0o777; a decimal 600 is 0o1130: write 0o600)`,
      address
    )

/** The duration options that are nonsense at zero: a handshake or a frame timed out at once, a busy poll, a dial that always fails. */
const ABOVE_ZERO: ReadonlySet<string> = new Set([
  "timeout",
  "connectTimeout",
  "handshakeTimeout",
  "helloTimeout",
  "frameTimeout",
  "livenessInterval",
  "pollInterval",
  "writeTimeout",
  "heartbeat.interval",
  "heartbeat.timeout",
  "pingInterval",
  "pingTimeout"
])

/** The longest a timer can wait (2^31 - 1 ms, about 24.8 days): Node fires a longer one after 1 ms. */
export const MAX_TIMER_MILLIS = Timer.MAX_TIMER_MILLIS

/** The duration options for which `Infinity` means no limit (the others take a finite duration). */
const NO_LIMIT: ReadonlySet<string> = new Set([
  "lingerTimeout",
  "writeTimeout",
  "fullTimeout",
  "lockTimeout",
  "timeout"
])

/** The duration options of effect-ipc's transports, as `checkDurations` knows them (`heartbeat.*`: inside `heartbeat`). */
const DURATION_OPTIONS = [
  "connectTimeout",
  "closeTimeout",
  "handshakeTimeout",
  "helloTimeout",
  "frameTimeout",
  "lingerTimeout",
  "writeTimeout",
  "fullTimeout",
  "lockTimeout",
  "livenessInterval",
  "pollInterval",
  "staleAge",
  "exitTimeout",
  "killTimeout",
  "timeout",
  "linger",
  "reconnect.min",
  "reconnect.max",
  "spin",
  "poll",
  "heartbeat.interval",
  "heartbeat.timeout",
  "pingInterval",
  "pingTimeout"
] as const

/** `value` as an option's detail shows it: strings quoted, the rest as `String` gives them. */
const shown = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value)
  if (Duration_.isDuration(value)) return Duration_.format(value)
  try {
    return String(value)
  } catch {
    return Object.prototype.toString.call(value) // an object without a prototype
  }
}

/**
 * `InvalidOption` naming the first duration option given in code (see
 * `DURATION_OPTIONS`: `lingerTimeout`, `heartbeat.interval`, ...) that is not
 * one: what `Duration.fromInput` refuses (`"x"`, `{}`), a negative or NaN
 * one, zero for a timeout or interval that must pass (`ABOVE_ZERO`:
 * `handshakeTimeout`, `connectTimeout`, `livenessInterval`, ...), a finite
 * one longer than a timer can wait (`MAX_TIMER_MILLIS`: Node fires it after
 * 1 ms), or `Infinity` where it is not "no limit" (only `lingerTimeout`,
 * `writeTimeout`, `fullTimeout`, `lockTimeout` and nng's `Req` `timeout`
 * take it). Undefined when each given is. `listen` and `dial` check their options
 * with it first: such a value was a defect, or, read in an event handler,
 * an exception that ended the process.
 */
export const checkDurations = (options: object, address?: string): IpcError.IpcError | undefined => {
  for (const name of DURATION_OPTIONS) {
    const value = valueAt(options, name)
    if (value === undefined) continue
    const millis = millisOf(value)
    if (millis === 0 && ABOVE_ZERO.has(name)) {
      return IpcError.make(
        "InvalidOption",
        `${name} ${shown(value)} is not above zero (it would time out, or poll, at once)`,
        address
      )
    }
    if (millis === undefined) {
      return IpcError.make(
        "InvalidOption",
        `${name} ${shown(value)} is not a duration (milliseconds, "250 millis", "5 seconds", or a Duration)`,
        address
      )
    }
    if (millis === Infinity && !NO_LIMIT.has(name)) {
      return IpcError.make("InvalidOption", `${name} ${shown(value)} is not a finite duration`, address)
    }
    if (millis > MAX_TIMER_MILLIS && millis !== Infinity) {
      return IpcError.make(
        "InvalidOption",
        `${name} ${shown(value)} is longer than a timer can wait (2^31 - 1 ms, about 24.8 days)${
          NO_LIMIT.has(name) ? "; Infinity waits without limit" : ""
        }`,
        address
      )
    }
  }
  const min = valueAt(options, "reconnect.min")
  const max = valueAt(options, "reconnect.max")
  if (min !== undefined && max !== undefined && millisOf(min)! > millisOf(max)!) {
    return IpcError.make(
      "InvalidOption",
      `reconnect.min ${shown(min)} is longer than reconnect.max ${shown(max)} (the backoff goes from min up to max)`,
      address
    )
  }
  return undefined
}

/**
 * The size and count options of effect-ipc's transports, as `checkSizes` knows them, with the least each may be,
 * and `false` for one that may not be `Infinity`.
 */
const SIZE_OPTIONS: ReadonlyArray<readonly [string, number, boolean?]> = [
  ["maxMessageSize", 0],
  ["maxFrameSize", 0],
  ["highWaterMark", 0],
  ["maxBufferedMessages", 1],
  ["maxMessages", 1],
  ["maxBufferedBytes", 1],
  ["maxPendingHandshakes", 1],
  ["maxConnections", 1],
  ["sendBuffer", 0],
  ["recvBuffer", 0],
  ["ringSize", 1],
  ["maxBytes", 1],
  ["segmentBytes", 1],
  ["pipeSize", 1],
  ["keep", 1],
  // the sockets a pool opens at once, before any request: Infinity never ended opening them
  ["pool.min", 1, false],
  ["pool.max", 1],
  ["inPlaceThreshold", 0]
]

/**
 * `InvalidOption` naming the first size or count option given in code (see
 * `SIZE_OPTIONS`: `maxMessageSize`, `highWaterMark`, ...) that is not a whole
 * number of at least its least (0 or 1), or `Infinity` (no limit, asked for; not a `pool.min`):
 * a `NaN` limit was no limit at all, a negative one refused every message, a
 * `NaN` mark hung the sender.
 */
export const checkSizes = (options: object, address?: string): IpcError.IpcError | undefined => {
  for (const [name, least, infinite = true] of SIZE_OPTIONS) {
    const value = valueAt(options, name)
    if (value === undefined) continue
    if (
      typeof value === "number" && value >= least && (Number.isSafeInteger(value) || (infinite && value === Infinity))
    ) continue
    return IpcError.make(
      "InvalidOption",
      `${name} ${shown(value)} is not a whole number of at least ${least}${infinite ? " (or Infinity: no limit)" : ""}`,
      address
    )
  }
  return undefined
}

const isTextList = (value: unknown): boolean => Array.isArray(value) && value.every((item) => typeof item === "string")

/** The options that are one of a few words, as `checkShapes` knows them, with their words. */
const CHOICE_OPTIONS: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
  ["durability", ["os", "fsync"]],
  ["onCorrupt", ["fail", "skip"]],
  ["peerLoss", ["fail", "wait"]],
  ["whenFull", ["wait", "fail"]],
  ["watch", ["auto", "poll"]],
  ["via", ["fd", "stdio"]],
  ["tls.authMode", ["none", "optional", "required"]]
]

/** The value of option `name` in `options` (`tls.authMode`: `authMode` inside `tls`), if given. */
const valueAt = (options: object, name: string): unknown => {
  const [outer, inner] = name.split(".") as [string, string | undefined]
  const holder: unknown = inner === undefined ? options : Reflect.get(options, outer)
  if (typeof holder !== "object" || holder === null) return undefined
  return Reflect.get(holder, inner ?? outer)
}

/**
 * `InvalidOption` naming the first option given in code whose value has the
 * wrong shape: an `authorize` that is not a function, an `allowedOrigins`
 * that is neither a list of strings nor a function, an `allowedHosts` that is
 * not a list of strings, a `directory` that is not a path, a `tls` that is not an object of paths, `headers` that
 * are not an object of strings, a word that is not one of its option's
 * (`durability: "fsnyc"` was the default, `os`, without a word). They were
 * defects at `listen`, a listener that refused everyone without saying why,
 * or a setting other than the one asked for.
 */
export const checkShapes = (options: object, address?: string): IpcError.IpcError | undefined => {
  for (const [name, words] of CHOICE_OPTIONS) {
    const value = valueAt(options, name)
    if (value !== undefined && !words.includes(value as string)) {
      return IpcError.make("InvalidOption", `${name} ${shown(value)} is not one of ${words.join(", ")}`, address)
    }
  }
  const authorize: unknown = Reflect.get(options, "authorize")
  if (authorize !== undefined && typeof authorize !== "function") {
    return IpcError.make("InvalidOption", `authorize ${shown(authorize)} is not a function (peer) => boolean`, address)
  }
  const origins: unknown = Reflect.get(options, "allowedOrigins")
  if (origins !== undefined && typeof origins !== "function" && !isTextList(origins)) {
    return IpcError.make(
      "InvalidOption",
      `allowedOrigins ${shown(origins)} is not a list of origins (strings) nor a function (origin) => boolean`,
      address
    )
  }
  const directory: unknown = Reflect.get(options, "directory")
  if (directory !== undefined && (typeof directory !== "string" || directory === "" || directory.includes("\0"))) {
    return IpcError.make("InvalidOption", `directory ${shown(directory)} is not a path (a non-empty string)`, address)
  }
  const hosts: unknown = Reflect.get(options, "allowedHosts")
  if (hosts !== undefined && !isTextList(hosts)) {
    return IpcError.make("InvalidOption", `allowedHosts ${shown(hosts)} is not a list of host names (strings)`, address)
  }
  // ws://'s hooks and token: a defect at dial, a wrong reason (`connect: 42` was InvalidAddress), or a file
  // named `true` (`tokenFile: true` was Open)
  for (const name of ["tokenLookup", "connect"]) {
    const hook: unknown = Reflect.get(options, name)
    if (hook !== undefined && typeof hook !== "function") {
      return IpcError.make("InvalidOption", `${name} ${shown(hook)} is not a function`, address)
    }
  }
  const tokenFile: unknown = Reflect.get(options, "tokenFile")
  if (
    tokenFile !== undefined && tokenFile !== false &&
    (typeof tokenFile !== "string" || tokenFile === "" || tokenFile.includes("\0"))
  ) {
    return IpcError.make(
      "InvalidOption",
      `tokenFile ${shown(tokenFile)} is not a path (a non-empty string) nor false`,
      address
    )
  }
  const token: unknown = Reflect.get(options, "token")
  if (token !== undefined && typeof token !== "string") {
    // never shown: a number, or a Buffer read from a token file, is the token itself
    return IpcError.make("InvalidOption", `token (${kindOf(token)}) is not a string`, address)
  }
  // ws://'s extra handshake headers: anything but an object of strings was dropped unseen (`headers: 5`)
  const headers: unknown = Reflect.get(options, "headers")
  if (
    headers !== undefined &&
    (typeof headers !== "object" || headers === null || Array.isArray(headers) ||
      !Object.values(headers).every((value) => typeof value === "string"))
  ) {
    // never shown: a header may carry a credential
    return IpcError.make(
      "InvalidOption",
      `headers (${kindOf(headers)}) is not an object of header names to strings`,
      address
    )
  }
  return checkTls(Reflect.get(options, "tls"), address) ?? checkHeartbeat(Reflect.get(options, "heartbeat"), address)
}

/**
 * `tls`, if given, is an object whose `certFile`, `keyFile` and `caFile` are
 * paths and `serverName` a name, where given (`authMode`: `CHOICE_OPTIONS`):
 * `"x"` or `null` was no TLS options at all, unseen (nng+ipc:// has no TLS to
 * need them), and a file that is not a path was an `Open` error.
 */
const checkTls = (tls: unknown, address?: string): IpcError.IpcError | undefined => {
  if (tls === undefined) return undefined
  // never shown: a string or a buffer given here may be a key itself
  if (typeof tls !== "object" || tls === null || Array.isArray(tls)) {
    return IpcError.make(
      "InvalidOption",
      `tls (${kindOf(tls)}) is not { certFile, keyFile, caFile, authMode, serverName }`,
      address
    )
  }
  for (const name of ["certFile", "keyFile", "caFile", "serverName"]) {
    const value: unknown = Reflect.get(tls, name)
    if (value !== undefined && (typeof value !== "string" || value === "" || value.includes("\0"))) {
      return IpcError.make(
        "InvalidOption",
        `tls.${name} (${typeof value === "string" ? shown(value) : kindOf(value)}) is not ${
          name === "serverName" ? "a host name" : "a path"
        } (a non-empty string)`,
        address
      )
    }
  }
  return undefined
}

/** An option's value as `shown`, but a plain object as JSON where it can be (`{}`, `{"interval":1000}`). */
const shownObject = (value: unknown): string => {
  if (typeof value !== "object" || value === null || Duration_.isDuration(value)) return shown(value)
  try {
    return JSON.stringify(value) ?? shown(value)
  } catch {
    return shown(value)
  }
}

/**
 * `heartbeat`, if given, is `{ interval, timeout }` with both durations (each
 * checked by `checkDurations`) and the timeout longer than the interval: an
 * idle peer's answer to a ping comes an interval after the last, so a timeout
 * no longer than the interval drops a healthy peer.
 */
const checkHeartbeat = (heartbeat: unknown, address?: string): IpcError.IpcError | undefined => {
  if (heartbeat === undefined) return undefined
  const given = typeof heartbeat === "object" && heartbeat !== null ? heartbeat : {}
  const interval = millisOf(Reflect.get(given, "interval"))
  const timeout = millisOf(Reflect.get(given, "timeout"))
  if (interval === undefined || timeout === undefined) {
    return IpcError.make(
      "InvalidOption",
      `heartbeat ${
        shownObject(heartbeat)
      } is not { interval, timeout } with both durations (such as { interval: "5 seconds", timeout: "15 seconds" })`,
      address
    )
  }
  if (timeout <= interval) {
    return IpcError.make(
      "InvalidOption",
      `heartbeat.timeout ${shown(Reflect.get(given, "timeout"))} is not longer than heartbeat.interval ${
        shown(Reflect.get(given, "interval"))
      }: an idle peer answers a ping an interval after the last, so it would be dropped (give it two or three intervals)`,
      address
    )
  }
  return undefined
}

/** What a value is, as errors about it name it (never the value: it may hold a secret): `null`, `a list`, `a number`. */
export const kindOf = (value: unknown): string =>
  value === null
    ? "null"
    : Array.isArray(value)
    ? "a list"
    : typeof value === "object"
    ? "an object"
    : `a ${typeof value}`

/**
 * `InvalidOption` for options given in code that are not an object (`null`,
 * a string, a number, a list, a function), naming `what` they are the
 * options of: reading them was a `TypeError` defect, or they were dropped
 * unseen. Undefined for an object, or for none (`undefined`).
 */
export const notAnObject = (options: unknown, what = "the options", address?: string): IpcError.IpcError | undefined =>
  options === undefined || (typeof options === "object" && options !== null && !Array.isArray(options))
    ? undefined
    : IpcError.make("InvalidOption", `${what} are not an object (got ${kindOf(options)})`, address)

/**
 * For a transport's `make` given options that are not an object
 * (`notAnObject`): a transport of `schemes` whose `listen` and `dial` fail
 * with that `InvalidOption`, naming the address. Undefined for an object, or none.
 */
export const refusedIfNotAnObject = (
  schemes: ReadonlyArray<string>,
  options: unknown
): Transport.TransportShape | undefined => {
  if (notAnObject(options) === undefined) return undefined
  const refuse = (address: unknown) =>
    Effect.suspend(() =>
      Effect.fail(
        typeof address === "string" ? notAnObject(options, "the options", address)! : Address.notAString(address)
      )
    )
  return { schemes, listen: refuse, dial: refuse }
}

/**
 * `InvalidOption` for options given in code that no `listen` or `dial` would
 * take: not an object (`notAnObject`), a duration, size or count that is not
 * one (`checkDurations`, `checkSizes`), a value of the wrong shape
 * (`checkShapes`), or a `mode` that is not permission bits (`invalidMode`).
 * Undefined when they would. `optionsOk` (each `listen` and `dial`) and
 * `layerOptionsOk` (each transport's `layer`, as it is built) check with it.
 */
export const checkOptions = (options: unknown, address?: string): IpcError.IpcError | undefined => {
  const notObject = notAnObject(options, "the options", address)
  if (notObject !== undefined) return notObject
  const given: object = typeof options === "object" && options !== null ? options : {}
  const mode: unknown = Reflect.get(given, "mode")
  return checkDurations(given, address) ?? checkSizes(given, address) ?? checkShapes(given, address) ??
    (mode === undefined ? undefined : invalidMode(mode, address))
}

/**
 * Fails with `checkOptions`' `InvalidOption`, else nothing: a transport's
 * `layer(options)` checks its options with it as it is built, as
 * configuration's are (`Registry.layerConfig`), not at the first `listen`.
 */
export const layerOptionsOk = (options: unknown): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const invalid = checkOptions(options)
    return invalid === undefined ? Effect.void : Effect.fail(invalid)
  })

/**
 * Fails with `InvalidAddress` when `address` is not a string, and with
 * `InvalidOption` when `checkOptions` refuses `options`; else nothing.
 * Every transport's `listen` and `dial` start with it.
 */
export const optionsOk = (options: unknown, address: unknown): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    // only what cannot hold a secret is shown (a URL object would show its token)
    if (typeof address !== "string") return Effect.fail(Address.notAString(address))
    const invalid = checkOptions(options, address)
    return invalid === undefined ? Effect.void : Effect.fail(invalid)
  })

/** The units of a duration given as an object (`{ minutes: 10 }`). */
const DURATION_UNITS: ReadonlySet<string> = new Set([
  "weeks",
  "days",
  "hours",
  "minutes",
  "seconds",
  "milliseconds",
  "microseconds",
  "nanoseconds"
])

/**
 * A duration as an object: one or more of `DURATION_UNITS`, each a finite
 * number of at least zero (a unit given as `undefined` is left out, as
 * `Duration.DurationObject` allows), and nothing else.
 */
const isDurationObject = (value: object): boolean => {
  const entries = Object.entries(value).filter(([, amount]) => amount !== undefined)
  return entries.length > 0 &&
    entries.every(([unit, amount]) =>
      DURATION_UNITS.has(unit) && typeof amount === "number" && Number.isFinite(amount) && amount >= 0
    )
}

/** `value` as milliseconds when it is a duration (not negative, not NaN; infinite allowed), else undefined; never throws. */
export const millisOf = (value: unknown): number | undefined => {
  // what fromInput takes for 0 (an empty object, NaN): not a duration
  if (typeof value === "number" && Number.isNaN(value)) return undefined
  let parsed: ReturnType<typeof Duration_.fromInput>
  try {
    // (inside: an object whose getter throws is not a duration either)
    if (
      typeof value === "object" && value !== null && !Array.isArray(value) && !Duration_.isDuration(value) &&
      !isDurationObject(value)
    ) {
      return undefined
    }
    parsed = Duration_.fromInput(value as Duration_.Input)
  } catch {
    return undefined
  }
  if (parsed._tag === "None") return undefined
  const millis = Duration_.toMillis(parsed.value)
  return Number.isNaN(millis) || millis < 0 ? undefined : millis
}

/** A yes or no: `true` / `false`, as JSON or as a string. */
export const Flag: Schema.Codec<boolean, unknown> = kind("true or false", (input) => {
  if (typeof input === "boolean") return input
  if (input === "true") return true
  if (input === "false") return false
  return undefined
})

/** One of a few words (`"os"` or `"fsync"`). */
export const Choice = <const L extends ReadonlyArray<string>>(choices: L): Schema.Codec<L[number], unknown> =>
  kind(
    `one of ${choices.map((c) => `"${c}"`).join(", ")}`,
    (input) => typeof input === "string" && choices.includes(input) ? input as L[number] : undefined
  )

/** Any non-empty string (a directory, ...). */
export const Text: Schema.Codec<string, unknown> = kind(
  "a non-empty string",
  (input) => typeof input === "string" && input.length > 0 ? input : undefined
)

/** A secret (a token): a non-empty string, never shown in an error (what was given is named by its kind only). */
export const Secret: Schema.Codec<string, unknown> = kind(
  "a non-empty string",
  (input) => typeof input === "string" && input.length > 0 ? input : undefined,
  (input) => Array.isArray(input) ? "an array" : input === null ? "null" : `a value of type ${typeof input}`
)

/** The heartbeat of a stream channel: `{"interval": "1 second", "timeout": "3 seconds"}`. */
export const Heartbeat = Schema.Struct({ interval: Duration, timeout: Duration })

/** The options of a stream channel (`StreamChannel.StreamChannelOptions`), shared by the byte-stream transports. */
export const streamChannelFields = {
  maxFrameSize: Bytes,
  highWaterMark: Bytes,
  writeTimeout: Duration,
  frameTimeout: Duration,
  maxBufferedMessages: Count,
  maxBufferedBytes: Bytes,
  heartbeat: Heartbeat,
  lingerTimeout: Duration
} as const

/** The option schemas of an options type `O`: for each option a schema decoding to its type. */
export type Fields<O> = {
  readonly [K in keyof O]?: Schema.Codec<Exclude<O[K], undefined>, unknown>
}

/** An option as configuration names it: its path (`["heartbeat", "interval"]`) and its variable. */
export interface OptionName {
  /** The path in `IPC_OPTIONS` (one key, or two for a nested option). */
  readonly path: ReadonlyArray<string>
  /** The variable that sets it alone (`IPC_OPTIONS_HEARTBEAT_INTERVAL`). */
  readonly variable: string
}

/** What a descriptor declares: the options schema and how to build the transport with decoded options. */
export interface Declaration {
  /** The options, a struct of optional fields. */
  readonly schema: Schema.Codec<Readonly<Record<string, unknown>>, unknown>
  /** Every option's name in configuration, nested options by their leaves. */
  readonly names: ReadonlyArray<OptionName>
  /** Builds the transport with decoded options. */
  readonly make: (
    options: Readonly<Record<string, unknown>>
  ) => Effect.Effect<Transport.TransportShape, IpcError.IpcError, Scope.Scope>
}

/** `maxMessageSize` -> `MAX_MESSAGE_SIZE`. */
export const constantCase = (name: string): string =>
  name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/([A-Z])([A-Z][a-z])/g, "$1_$2").toUpperCase()

/** The variable that sets the option at `path` alone. */
export const variableOf = (path: ReadonlyArray<string>): string => [OPTIONS, ...path.map(constantCase)].join("_")

const isStruct = (schema: unknown): schema is Schema.Struct<Schema.Struct.Fields> =>
  Schema.isSchema(schema) && "fields" in schema && typeof schema.fields === "object" && schema.fields !== null

/**
 * Declares the options a transport's `make` accepts (type `O`): one schema
 * per option, of the kinds of this module. Only options of `O` can be named,
 * each decoding to its type.
 */
export const declare = <O extends object>() =>
(
  fields: Fields<O>,
  make: (options: O) => Effect.Effect<Transport.TransportShape, IpcError.IpcError, Scope.Scope>
): Declaration => {
  const entries = Object.entries(fields as Record<string, Schema.Codec<unknown, unknown>>)
  const names: Array<OptionName> = []
  for (const [key, schema] of entries) {
    if (isStruct(schema)) {
      for (const inner of Object.keys(schema.fields)) {
        names.push({ path: [key, inner], variable: variableOf([key, inner]) })
      }
    } else {
      names.push({ path: [key], variable: variableOf([key]) })
    }
  }
  const schema = Schema.Struct(Object.fromEntries(entries.map(([key, s]) => [key, Schema.optionalKey(s)])))
  return {
    schema: schema as unknown as Schema.Codec<Readonly<Record<string, unknown>>, unknown>,
    names,
    // the schema decodes each option of O to its type (Fields<O>)
    make: (options) => make(options as O)
  }
}

/** Options as found in configuration, before decoding, and where each was set. */
interface Found {
  readonly value: Record<string, unknown>
  /** Where each option (by dotted path) was set: `IPC_OPTIONS` or its own variable. */
  readonly source: Map<string, string>
  /** Values of `IPC_OPTIONS` that a variable won over, by dotted path: checked all the same. */
  readonly shadowed: Map<string, unknown>
  /** Dotted paths whose value a structured provider gave as text: a number there arrives as its digits. */
  readonly textual: Set<string>
  /** Dotted paths of `shadowed` whose value a structured provider gave as text. */
  readonly shadowedTextual: Set<string>
}

const invalid = (transport: string, detail: string): IpcError.IpcError =>
  IpcError.make("InvalidOption", `transport "${transport}": ${detail}`)

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** A provider's node at `path` as a plain value: strings at the leaves, objects and arrays above. */
const plain = (
  provider: ConfigProvider.ConfigProvider,
  path: ReadonlyArray<string | number>,
  node: ConfigProvider.Node
): Effect.Effect<unknown, ConfigProvider.SourceError> =>
  Effect.gen(function*() {
    switch (node._tag) {
      case "Value":
        return node.value
      case "Record": {
        const out: Record<string, unknown> = {}
        for (const key of node.keys) {
          const child = yield* provider.load([...path, key])
          if (child !== undefined) out[key] = yield* plain(provider, [...path, key], child)
        }
        return out
      }
      case "Array": {
        const out: Array<unknown> = []
        for (let i = 0; i < node.length; i++) {
          const child = yield* provider.load([...path, i])
          out.push(child === undefined ? undefined : yield* plain(provider, [...path, i], child))
        }
        return out
      }
    }
  })

/** The variables under `IPC_OPTIONS_` an environment-style provider holds (it splits names on `_`). */
const variables = (
  provider: ConfigProvider.ConfigProvider,
  path: ReadonlyArray<string>,
  node: ConfigProvider.Node,
  out: Array<string>
): Effect.Effect<void, ConfigProvider.SourceError> =>
  Effect.gen(function*() {
    if (node._tag === "Value") return void out.push(path.join("_"))
    if (node._tag === "Record" && node.value !== undefined && path.length > 2) out.push(path.join("_"))
    const keys = node._tag === "Record" ? [...node.keys] : node._tag === "Array" ? [...Array(node.length).keys()] : []
    for (const key of keys) {
      const child = yield* provider.load([...path, String(key)])
      if (child !== undefined) yield* variables(provider, [...path, String(key)], child, out)
    }
  })

const sourceError = (transport: string) => (error: ConfigProvider.SourceError) =>
  invalid(transport, `cannot read ${OPTIONS}: ${error.message}`)

/** Reads `IPC_OPTIONS` and `IPC_OPTIONS_<NAME>` from the current `ConfigProvider`, undecoded. */
const find = (transport: string, declaration: Declaration | undefined): Effect.Effect<Found, IpcError.IpcError> =>
  Effect.gen(function*() {
    const provider = yield* ConfigProvider.ConfigProvider
    const value: Record<string, unknown> = {}
    const source = new Map<string, string>()
    const shadowed = new Map<string, unknown>()
    const textual = new Set<string>()
    const shadowedTextual = new Set<string>()
    const known = declaration?.names ?? []
    const have = () =>
      known.length === 0
        ? "it declares no options"
        : `its options: ${[...new Set(known.map((n) => n.path[0]))].join(", ")}`

    const whole = yield* provider.load([OPTIONS])
    if (whole !== undefined) {
      const raw = yield* plain(provider, [OPTIONS], whole)
      let parsed: unknown = raw
      if (typeof raw === "string") {
        try {
          parsed = JSON.parse(raw)
        } catch (cause) {
          // where the parser stopped, never the text around it: V8 quotes it, and it may hold a token
          const at = cause instanceof Error ? /at position (\d+)/.exec(cause.message)?.[1] : undefined
          const unexpected = cause instanceof Error && cause.message.startsWith("Unexpected token")
            ? "an unexpected character"
            : "malformed"
          return yield* invalid(
            transport,
            `${OPTIONS} is not JSON (${
              at === undefined ? unexpected : `at character ${at}`
            }): write a JSON object, e.g. {"maxMessageSize": "1 MiB"}`
          )
        }
      }
      if (!isRecord(parsed)) {
        // named by its kind, never shown: a string or a list there may hold a token
        return yield* invalid(transport, `${OPTIONS} must be a JSON object of options, not ${kindOf(parsed)}`)
      }
      for (const [key, option] of Object.entries(parsed)) {
        const entry = known.filter((n) => n.path[0] === key)
        if (entry.length === 0) {
          return yield* invalid(transport, `"${key}" (in ${OPTIONS}) is not an option of this transport (${have()})`)
        }
        if (entry.length > 1 || entry[0]!.path.length > 1) {
          // a nested option: its own keys must be known too
          if (isRecord(option)) {
            for (const inner of Object.keys(option)) {
              if (!entry.some((n) => n.path[1] === inner)) {
                return yield* invalid(
                  transport,
                  `"${key}.${inner}" (in ${OPTIONS}) is not an option of this transport (${key} has ${
                    entry.map((n) => n.path[1]).join(", ")
                  })`
                )
              }
              source.set(`${key}.${inner}`, `${OPTIONS}.${key}.${inner}`)
            }
          }
        }
        source.set(key, `${OPTIONS}.${key}`)
        value[key] = option
        if (typeof raw !== "string") {
          // a structured provider's object: its leaves are text, a number among them its digits
          if (isRecord(option)) { for (const inner of Object.keys(option)) textual.add(`${key}.${inner}`) }
          else textual.add(key)
        }
      }
    }

    // one variable per option, winning over IPC_OPTIONS
    for (const name of known) {
      const node = yield* provider.load([name.variable])
      if (node === undefined || node._tag !== "Value") continue
      const [key, inner] = name.path as [string, string | undefined]
      // an environment-style provider finds a variable split on `_` too; a structured one (`fromUnknown`)
      // holds it as a key of its own, where a number arrives as its digits
      const split = yield* Effect.orElseSucceed(provider.load(name.variable.split("_")), () => undefined)
      const path = name.path.join(".")
      // the IPC_OPTIONS value it wins over keeps its own kind of text (checked all the same)
      if (textual.has(path)) shadowedTextual.add(path)
      if (split === undefined) textual.add(path)
      else textual.delete(path)
      if (inner === undefined) {
        if (key in value) shadowed.set(key, value[key])
        value[key] = node.value
        source.set(key, name.variable)
      } else {
        const nested = isRecord(value[key]) ? { ...value[key] } : {}
        if (inner in nested) shadowed.set(`${key}.${inner}`, nested[inner])
        nested[inner] = node.value
        value[key] = nested
        source.set(`${key}.${inner}`, name.variable)
        if (!source.has(key) || source.get(key)!.startsWith(OPTIONS + ".")) source.set(key, name.variable)
      }
    }

    // an IPC_OPTIONS_<NAME> variable that names no option is a mistake, not something to skip: an
    // environment-style provider holds it split on `_` (under IPC, OPTIONS), a structured one (`fromUnknown`)
    // as a key of its own at the top (a provider that cannot list its top keys has none to check there)
    const [first, second] = OPTIONS.split("_") as [string, string]
    const found: Array<string> = []
    const tree = yield* provider.load([first, second])
    if (tree !== undefined) yield* variables(provider, [first, second], tree, found)
    const top = yield* Effect.orElseSucceed(provider.load([]), () => undefined)
    if (top?._tag === "Record") {
      for (const key of top.keys) {
        if (key.startsWith(`${OPTIONS}_`) && (yield* provider.load([key])) !== undefined) found.push(key)
      }
    }
    const allowed = new Set(known.map((n) => n.variable))
    for (const variable of found) {
      if (variable !== OPTIONS && !allowed.has(variable)) {
        return yield* invalid(transport, `${variable} is not an option of this transport (${have()})`)
      }
    }
    return { value, source, shadowed, textual, shadowedTextual }
  }).pipe(Effect.catchTag("SourceError", (error) => Effect.fail(sourceError(transport)(error))))

/** The option paths of a schema issue's message (`at ["heartbeat"]["interval"]` -> `heartbeat.interval`). */
const pathOf = (message: string): string | undefined => {
  const at = /\n\s*at ((?:\["[^"]*"\])+)/.exec(message)
  if (at === null) return undefined
  return [...at[1]!.matchAll(/\["([^"]*)"\]/g)].map((m) => m[1]).join(".")
}

/** The number whose own text `text` is ("416", "0.5"), if it is one: what a structured provider makes of a number. */
const numberOfText = (text: string): number | undefined => {
  const number = Number(text)
  return text !== "" && Number.isFinite(number) && String(number) === text ? number : undefined
}

/**
 * How a structured provider's leaf reads (option `key`, or `inner` of it in `whole`): a number's text is the
 * number where only the number fits its kind, text where only text does; `ambiguous` where both fit and mean
 * different things (`{ mode: 0o640 }` arrives as "416", which as octal text would be 0o416).
 */
const untextLeaf = (
  declaration: Declaration,
  key: string,
  inner: string | undefined,
  whole: unknown,
  leaf: unknown
): { readonly value: unknown } | { readonly ambiguous: number } => {
  const number = typeof leaf === "string" ? numberOfText(leaf) : undefined
  if (number === undefined) return { value: leaf }
  const put = (leafValue: unknown) => inner === undefined ? leafValue : { ...(whole as object), [inner]: leafValue }
  const pick = (decoded: Readonly<Record<string, unknown>>) =>
    inner === undefined ? decoded[key] : (decoded[key] as Record<string, unknown> | undefined)?.[inner]
  const asText = Schema.decodeUnknownExit(declaration.schema)({ [key]: put(leaf) })
  const asNumber = Schema.decodeUnknownExit(declaration.schema)({ [key]: put(number) })
  if (Exit.isFailure(asNumber)) return { value: leaf }
  if (Exit.isFailure(asText)) return { value: number }
  return Equal.equals(pick(asText.value), pick(asNumber.value)) ? { value: leaf } : { ambiguous: number }
}

/** The problem of a leaf that reads two ways (`untextLeaf`), set `where`. */
const ambiguity = (path: string, where: string, leaf: unknown, number: number): string =>
  `option ${path} (${where}): ${
    JSON.stringify(leaf)
  } from a structured provider may be the number ${number} or the text ${
    JSON.stringify(leaf)
  }, which mean different things here: write it as text that reads one way (permission bits: octal with its leading 0, "0640")`

/** The options as configuration meant them: each leaf a structured provider gave as text read as `untextLeaf` says. */
const untext = (
  declaration: Declaration,
  found: Found,
  problems: Array<string>
): Record<string, unknown> => {
  const values: Record<string, unknown> = { ...found.value }
  for (const path of found.textual) {
    const [key, inner] = path.split(".") as [string, string | undefined]
    const whole = values[key]
    const leaf = inner === undefined ? whole : isRecord(whole) ? whole[inner] : undefined
    const reading = untextLeaf(declaration, key, inner, whole, leaf)
    if ("ambiguous" in reading) {
      problems.push(
        ambiguity(path, found.source.get(path) ?? found.source.get(key) ?? OPTIONS, leaf, reading.ambiguous)
      )
    } else if (reading.value !== leaf) {
      values[key] = inner === undefined ? reading.value : { ...(whole as object), [inner]: reading.value }
    }
  }
  return values
}

/**
 * The options that configuration sets for `transport`, decoded with its
 * declaration's schema; `undefined` when none are set. Fails with reason
 * `InvalidOption` (naming the transport, the option and where it was set)
 * on an unknown option, a value of the wrong kind or a malformed `IPC_OPTIONS`.
 */
export const read = (
  transport: string,
  declaration: Declaration | undefined
): Effect.Effect<Readonly<Record<string, unknown>> | undefined, IpcError.IpcError> =>
  Effect.map(readWithSources(transport, declaration), (withSources) => withSources?.options)

/** Options as `read` decodes them, with where each (by dotted path, and by its top key) was set. */
interface Read {
  readonly options: Readonly<Record<string, unknown>>
  readonly source: ReadonlyMap<string, string>
}

/** `read`, keeping where each option was set (for the transport's own refusals, in `make`). */
const readWithSources = (
  transport: string,
  declaration: Declaration | undefined
): Effect.Effect<Read | undefined, IpcError.IpcError> =>
  Effect.gen(function*() {
    const found = yield* find(transport, declaration)
    const keys = Object.keys(found.value)
    if (keys.length === 0) return undefined
    if (declaration === undefined) return yield* invalid(transport, `it declares no options (${keys.join(", ")} set)`)
    const problems: Array<string> = []
    const decoded: Record<string, unknown> = {}
    const values = untext(declaration, found, problems)
    for (const key of keys) {
      const exit = Schema.decodeUnknownExit(declaration.schema)({ [key]: values[key] })
      if (Exit.isSuccess(exit)) {
        decoded[key] = exit.value[key]
        continue
      }
      const error = exit.cause.reasons.find((r) => r._tag === "Fail")
      const message = error !== undefined && Schema.isSchemaError(error.error)
        ? error.error.message
        : String(exit.cause)
      const path = pathOf(message) ?? key
      const set = found.source.get(path)
      if (set === undefined && path !== key && message.startsWith("Missing key")) {
        // a nested option given in part: name what is missing and where the rest was set
        const given = found.source.get(key) ?? OPTIONS
        problems.push(
          `option ${path} is missing: ${key} needs it too (${key} is set in ${given}; set ${
            variableOf(path.split("."))
          } or ${OPTIONS}.${path})`
        )
        continue
      }
      problems.push(`option ${path} (${set ?? found.source.get(key) ?? OPTIONS}): ${message.split("\n")[0]}`)
    }
    // a value in IPC_OPTIONS that a variable won over is a mistake all the same: decoded in the variable's place
    for (const [path, shadowedValue] of found.shadowed) {
      const [key, inner] = path.split(".") as [string, string | undefined]
      const where = `${OPTIONS}.${path}, which ${found.source.get(path)} wins over`
      // as it would read had no variable won over it
      const reading = found.shadowedTextual.has(path)
        ? untextLeaf(declaration, key, inner, values[key], shadowedValue)
        : { value: shadowedValue }
      if ("ambiguous" in reading) {
        problems.push(ambiguity(path, where, shadowedValue, reading.ambiguous))
        continue
      }
      const given = reading.value
      const tried = inner === undefined ? given : { ...(values[key] as Record<string, unknown>), [inner]: given }
      const exit = Schema.decodeUnknownExit(declaration.schema)({ [key]: tried })
      if (Exit.isSuccess(exit)) continue
      const error = exit.cause.reasons.find((r) => r._tag === "Fail")
      const message = error !== undefined && Schema.isSchemaError(error.error)
        ? error.error.message
        : String(exit.cause)
      problems.push(`option ${path} (${where}): ${message.split("\n")[0]}`)
    }
    if (problems.length > 0) return yield* invalid(transport, problems.join("; "))
    // values of the right kind that no listen or dial would take (zero for a timeout that must pass, a
    // duration past what a timer can wait): refused here, before anything listens or dials
    const refused = checkDurations(decoded) ?? checkSizes(decoded) ?? checkShapes(decoded)
    if (refused !== undefined) {
      const name = refused.detail.split(" ")[0]!
      const set = found.source.get(name) ?? found.source.get(name.split(".")[0]!) ?? OPTIONS
      return yield* invalid(transport, `option ${name} (${set}): ${refused.detail.slice(name.length + 1)}`)
    }
    return { options: decoded, source: found.source }
  })

/**
 * A transport's own refusal of configured options (`fileMode 0o0 does not ...`,
 * `ringSize ... is beyond the largest ring`) as `read`'s are: naming the
 * transport, and the option its detail starts with and where that was set
 * (or, when its detail does not start with an option set, where each set
 * option it names was).
 */
const refusal = (transport: string, source: ReadonlyMap<string, string>, detail: string): string => {
  const name = /^[\w.]+/.exec(detail)?.[0] ?? ""
  const set = source.get(name)
  if (set !== undefined) {
    return `transport "${transport}": option ${name} (${set}): ${detail.slice(name.length).trimStart()}`
  }
  const named = [...source.keys()].filter((path) => new RegExp(`\\b${path.replaceAll(".", "\\.")}\\b`).test(detail))
  return named.length === 0
    ? `transport "${transport}": ${detail}`
    : `transport "${transport}": ${detail} (${named.map((path) => `${path} is set in ${source.get(path)}`).join(", ")})`
}

/**
 * Builds a transport from its declaration with the options configuration
 * sets, or with `fallback` (the descriptor's `make`) when none are set. An
 * option the transport itself refuses (its values together, or a value the
 * schema lets through) is `InvalidOption` naming the transport, and the option
 * and where it was set, too.
 */
export const make = (
  transport: string,
  declaration: Declaration | undefined,
  fallback: Effect.Effect<Transport.TransportShape, IpcError.IpcError, Scope.Scope>
): Effect.Effect<Transport.TransportShape, IpcError.IpcError, Scope.Scope> =>
  Effect.flatMap(
    readWithSources(transport, declaration),
    (given) =>
      given === undefined || declaration === undefined ? fallback : Effect.mapError(
        declaration.make(given.options),
        (error) =>
          error.reason._tag === "InvalidOption" && !error.detail.startsWith(`transport "`)
            ? new IpcError.IpcError({
              reason: error.reason,
              detail: refusal(transport, given.source, error.detail),
              address: error.address,
              errno: error.errno,
              cause: error.cause
            })
            : error
      )
  )
