/**
 * How the command line reads the data it sends and prints the messages it
 * receives: `text` (UTF-8), `json` (validated JSON, one line per message) or
 * `hex` (the bytes as hexadecimal digits).
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"

/** The names of the formats, for `--format`. */
export const formats = ["text", "json", "hex"] as const

/** A data format: `text`, `json` or `hex`. */
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

/** Turns the DATA argument into the bytes of one message (`json` is validated and sent compact). */
export const encode = (format: Format, data: string): Effect.Effect<Uint8Array, IpcError.IpcError> => {
  switch (format) {
    case "text":
      return Effect.succeed(textEncoder.encode(data))
    case "json":
      return Effect.map(readJson(data, "DATA"), (value) => textEncoder.encode(JSON.stringify(value)))
    case "hex":
      return fromHex(data)
  }
}

/** Renders one received message as one line (`json` must be UTF-8 JSON; it is printed compact). */
export const decode = (format: Format, bytes: Uint8Array): Effect.Effect<string, IpcError.IpcError> => {
  switch (format) {
    case "text":
      return Effect.succeed(textDecoder.decode(bytes))
    case "hex":
      return Effect.succeed(toHex(bytes))
    case "json":
      return Effect.try({
        try: () => strictDecoder.decode(bytes),
        catch: (cause) => new IpcError.IpcError({ reason: "Decode", detail: "message is not UTF-8 text", cause })
      }).pipe(
        Effect.flatMap((text) => parseJson(text, "message", "Decode")),
        Effect.map((value) => JSON.stringify(value))
      )
  }
}

/** Renders a decoded value (an RPC result) as one line: text as is, bytes by the format, the rest as JSON. */
export const show = (format: Format, value: unknown): string => {
  if (value instanceof Uint8Array) {
    return format === "hex"
      ? toHex(value)
      : format === "json"
      ? JSON.stringify(Buffer.from(value).toString("base64"))
      : textDecoder.decode(value)
  }
  if (typeof value === "string") {
    return format === "json" ? JSON.stringify(value) : format === "hex" ? toHex(textEncoder.encode(value)) : value
  }
  if (value === undefined) return ""
  return JSON.stringify(value, (_key, v: unknown) => v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v) ??
    String(value)
}
