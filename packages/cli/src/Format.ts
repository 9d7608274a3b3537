/**
 * How the command line reads the data it sends and prints the messages it
 * receives: `text` (UTF-8), `json` (validated JSON, one line per message),
 * `hex` (the bytes as hexadecimal digits) or `raw` (the bytes unchanged: read
 * whole, written with no separator).
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"

/** The names of the formats, for `--format`, `--in` and `--out`. */
export const formats = ["text", "json", "hex", "raw"] as const

/** A data format: `text`, `json`, `hex` or `raw`. */
export type Format = typeof formats[number]

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder("utf-8")
const strictDecoder = new TextDecoder("utf-8", { fatal: true })

/** The bytes as lower-case hexadecimal digits, two per byte (`68690a`). */
export const toHex = (bytes: Uint8Array): string => {
  let out = ""
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0")
  return out
}

/** Reads hexadecimal digits (an optional `0x`; spaces, `:` and `-` between bytes are ignored). */
export const fromHex = (input: string): Effect.Effect<Uint8Array, IpcError.IpcError> =>
  Effect.suspend(() => {
    const digits = input.trim().replace(/^0x/i, "").replace(/[\s:-]/g, "")
    if (!/^[0-9a-f]*$/i.test(digits)) {
      return Effect.fail(IpcError.make("Encode", `not hexadecimal: "${input}"`))
    }
    if (digits.length % 2 !== 0) {
      return Effect.fail(IpcError.make("Encode", `odd number of hexadecimal digits in "${input}"`))
    }
    const bytes = new Uint8Array(digits.length / 2)
    for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(digits.slice(2 * i, 2 * i + 2), 16)
    return Effect.succeed(bytes)
  })

const parseJson = (
  text: string,
  what: string,
  reason: IpcError.IpcErrorReason
): Effect.Effect<unknown, IpcError.IpcError> =>
  Effect.try({
    try: (): unknown => JSON.parse(text),
    catch: (cause) =>
      new IpcError.IpcError({
        reason,
        detail: `${what} is not JSON: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
  })

/** Parses a JSON text given on the command line; `what` names it in the error (reason `Encode`). */
export const readJson = (text: string, what: string): Effect.Effect<unknown, IpcError.IpcError> =>
  parseJson(text, what, "Encode")

/**
 * Valid JSON `text` without the white space between its tokens: its numbers and keys exactly as
 * written (a parse and a stringify would round 12345678901234567890 and drop a repeated key).
 */
const compact = (text: string): string => {
  let out = ""
  let from = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // an escape: the next unit is part of it
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) {
      out += text.slice(from, i)
      from = i + 1
    }
  }
  return out + text.slice(from)
}

/** Turns the DATA argument into the bytes of one message (`json` is validated and sent compact, as written). */
export const encode = (format: Format, data: string): Effect.Effect<Uint8Array, IpcError.IpcError> => {
  switch (format) {
    case "text":
    case "raw":
      return Effect.succeed(textEncoder.encode(data))
    case "json":
      return Effect.map(readJson(data, "DATA"), () => textEncoder.encode(compact(data)))
    case "hex":
      return fromHex(data)
  }
}

/** Renders one received message as one line (`json` must be UTF-8 JSON; it is printed compact, as written). */
export const decode = (format: Format, bytes: Uint8Array): Effect.Effect<string, IpcError.IpcError> => {
  switch (format) {
    case "text":
    case "raw":
      return Effect.succeed(textDecoder.decode(bytes))
    case "hex":
      return Effect.succeed(toHex(bytes))
    case "json":
      return Effect.try({
        try: () => strictDecoder.decode(bytes),
        catch: (cause) => new IpcError.IpcError({ reason: "Decode", detail: "message is not UTF-8 text", cause })
      }).pipe(
        Effect.flatMap((text) => Effect.as(parseJson(text, "message", "Decode"), compact(text)))
      )
  }
}

/** Turns the bytes of an input (a file, stdin) into the bytes of one message, read as `format`. */
export const encodeBytes = (format: Format, input: Uint8Array): Effect.Effect<Uint8Array, IpcError.IpcError> =>
  format === "raw" || format === "text" ? Effect.succeed(input) : encode(format, textDecoder.decode(input))

const binaryAsBase64 = (_key: string, v: unknown): unknown =>
  v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v

/**
 * `value` as JSON text, binary values as base64 (`undefined` where `JSON.stringify` gives none: a
 * function, a symbol), or, when it cannot be written, a `Decode` failure naming `what`: a value
 * nested too deeply for the stack (a peer's), a bigint, a cycle. It never throws.
 */
export const stringify = (value: unknown, what: string): Result.Result<string | undefined, IpcError.IpcError> => {
  try {
    return Result.succeed(JSON.stringify(value, binaryAsBase64) as string | undefined)
  } catch (cause) {
    const why = cause instanceof RangeError
      ? "nested too deeply"
      : cause instanceof Error
      ? cause.message
      : "it is not JSON"
    return Result.fail(new IpcError.IpcError({ reason: "Decode", detail: `${what} cannot be printed as JSON: ${why}` }))
  }
}

/**
 * A received message as the fields of a JSON event: `data` and its
 * `encoding`. `text` gives `utf8` (or `base64` when the bytes are not UTF-8),
 * `hex` gives `hex`, `json` gives the parsed value (`json`, or `base64` when
 * it is not JSON or nests deeper than `IpcRpc.MAX_JSON_DEPTH`, which an event could not
 * print) and `raw` gives `base64`.
 */
export const toJsonData = (
  format: Format,
  bytes: Uint8Array
): { readonly data: unknown; readonly encoding: "utf8" | "base64" | "hex" | "json" } => {
  const base64 = { data: Buffer.from(bytes).toString("base64"), encoding: "base64" } as const
  switch (format) {
    case "hex":
      return { data: toHex(bytes), encoding: "hex" }
    case "raw":
      return base64
    case "text":
    case "json": {
      let text: string
      try {
        text = strictDecoder.decode(bytes)
      } catch {
        return base64
      }
      if (format === "text") return { data: text, encoding: "utf8" }
      if (IpcRpc.jsonNestsDeeper(text)) return base64
      try {
        return { data: JSON.parse(text) as unknown, encoding: "json" }
      } catch {
        return base64
      }
    }
  }
}

/**
 * Renders a decoded value (an RPC result) as one line: text as is, bytes by the format, the rest as
 * JSON, or a `Decode` failure naming `what` when that cannot be written (see `stringify`).
 */
export const show = (format: Format, value: unknown, what: string): Effect.Effect<string, IpcError.IpcError> => {
  if (value instanceof Uint8Array) {
    return Effect.succeed(
      format === "hex"
        ? toHex(value)
        : format === "json" || format === "raw"
        ? JSON.stringify(Buffer.from(value).toString("base64"))
        : textDecoder.decode(value)
    )
  }
  if (typeof value === "string") {
    return Effect.succeed(
      format === "json" ? JSON.stringify(value) : format === "hex" ? toHex(textEncoder.encode(value)) : value
    )
  }
  if (value === undefined) return Effect.succeed("")
  // JSON has no Infinity or NaN (JSON.stringify writes null): a number is shown as it is
  if (typeof value === "number" && !Number.isFinite(value)) return Effect.succeed(String(value))
  const json = stringify(value, what)
  return Result.isFailure(json) ? Effect.fail(json.failure) : Effect.succeed(json.success ?? String(value))
}

/** A byte count for people: `512 B`, `1.5 KiB`, `12.0 MiB`, `2.1 GiB`. */
export const bytes = (n: number): string =>
  n >= 1024 * 1024 * 1024
    ? `${(n / 1024 / 1024 / 1024).toFixed(1)} GiB`
    : n >= 1024 * 1024
    ? `${(n / 1024 / 1024).toFixed(1)} MiB`
    : n >= 1024
    ? `${(n / 1024).toFixed(1)} KiB`
    : `${n} B`
