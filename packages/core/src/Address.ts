/**
 * Addresses name an endpoint by scheme: `unix:///run/app.sock`, `unix:@name`,
 * `pipe://name`, `fifo:///dir/base`, `file:///dir`, `shm://name`,
 * `nng+ipc:///tmp/x.ipc`, `nng+tcp://host:port`, `memory://name`.
 * The scheme picks the transport; the rest is the transport's to read.
 * An address may carry a secret (`ws://...?token=...`): what core shows of
 * an address (spans, logs, error messages) goes through `redact` first.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as IpcError from "./IpcError.ts"

/** A parsed address: its scheme and everything after `scheme:`. */
export interface Address {
  /** The full address as written. */
  readonly raw: string
  /** The scheme, lower case, without `:` (`unix`, `nng+tcp`, ...). */
  readonly scheme: string
  /** What follows `scheme://` (or `scheme:` when there are no slashes). */
  readonly rest: string
  /** True when the address was written as `scheme://...`. */
  readonly hierarchical: boolean
}

const schemePattern = /^([a-z][a-z0-9+.-]*):(\/\/)?(.*)$/is

const strictUtf8 = new TextDecoder("utf-8", { fatal: true })
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** Where `text` has a `%` that does not start a `%XX` escape of UTF-8, described; undefined when it is well formed. */
const malformedEscape = (text: string): string | undefined => {
  const bad = /%(?![0-9a-f]{2})/i.exec(text)
  if (bad !== null) return `"${text.slice(bad.index, bad.index + 3)}" at ${bad.index} is not a %XX escape`
  const run = /(?:%[0-9a-f]{2})+/gi
  for (let match = run.exec(text); match !== null; match = run.exec(text)) {
    const bytes = Uint8Array.from(match[0].match(/[0-9a-f]{2}/gi)!, (hex) => Number.parseInt(hex, 16))
    try {
      strictUtf8.decode(bytes)
    } catch {
      return `"${match[0]}" at ${match.index} is not UTF-8`
    }
  }
  return undefined
}

/** Decodes the `%XX` escapes of `text`; fails with `InvalidAddress` on a malformed one. */
export const decode = (text: string, raw: string = text): Effect.Effect<string, IpcError.IpcError> =>
  Effect.suspend(() => {
    const malformed = malformedEscape(text)
    return malformed === undefined
      ? Effect.succeed(decodeURIComponent(text))
      : Effect.fail(IpcError.make("InvalidAddress", `malformed percent-escape: ${malformed}`, redact(raw)))
  })

/**
 * Parses `scheme://rest`; fails with `InvalidAddress` when there is no scheme,
 * nothing after it, a NUL character, or a `%` that is not a `%XX` escape of UTF-8.
 */
export const parse = (raw: string): Effect.Effect<Address, IpcError.IpcError> =>
  Effect.suspend(() => {
    if (typeof raw !== "string") return Effect.fail(notAString(raw))
    // no file, socket or host name holds one: a system call would refuse it later, as something else
    if (raw.includes("\0")) {
      return Effect.fail(IpcError.make("InvalidAddress", "an address holds no NUL character", redact(raw)))
    }
    const match = schemePattern.exec(raw)
    if (match === null) {
      return Effect.fail(
        IpcError.make("InvalidAddress", "an address is scheme://location, e.g. unix:///tmp/app.sock", redact(raw))
      )
    }
    const rest = match[3] ?? ""
    if (rest.length === 0) {
      return Effect.fail(IpcError.make("InvalidAddress", "the address names no location after its scheme", redact(raw)))
    }
    const malformed = malformedEscape(rest)
    if (malformed !== undefined) {
      return Effect.fail(IpcError.make("InvalidAddress", `malformed percent-escape: ${malformed}`, redact(raw)))
    }
    return Effect.succeed({ raw, scheme: match[1]!.toLowerCase(), rest, hierarchical: match[2] !== undefined })
  })

/** Parses an address and checks that its scheme is one of `schemes`. */
export const parseFor = (
  raw: string,
  schemes: ReadonlyArray<string>
): Effect.Effect<Address, IpcError.IpcError> =>
  Effect.flatMap(parse(raw), (address) =>
    schemes.includes(address.scheme)
      ? Effect.succeed(address)
      : Effect.fail(
        IpcError.make(
          "UnsupportedScheme",
          `this transport serves ${schemes.map((s) => `${s}://`).join(", ")}`,
          redact(raw)
        )
      ))

/**
 * The file-system path of a `scheme:///abs/path` address; fails unless it is
 * absolute, free of NUL (`%00`), and free of a bare `?` or `#` (which would
 * start a query or a fragment: a path's own are written `%3F` and `%23`, as
 * `fromPath` writes them).
 */
export const path = (address: Address): Effect.Effect<string, IpcError.IpcError> =>
  /[?#]/.test(address.rest)
    ? Effect.fail(
      IpcError.make(
        "InvalidAddress",
        `${address.scheme}:// takes no query or fragment: a path's own "?" and "#" are written %3F and %23`,
        redact(address.raw)
      )
    )
    : address.rest.startsWith("/")
    ? Effect.filterOrFail(
      decode(address.rest, address.raw),
      (decoded) => !decoded.includes("\0"),
      () => IpcError.make("InvalidAddress", "a path holds no NUL character (%00)", redact(address.raw))
    )
    : Effect.fail(
      IpcError.make(
        "InvalidAddress",
        `expected an absolute path, e.g. ${address.scheme}:///tmp/app`,
        redact(address.raw)
      )
    )

/** Writes an address back as text: `scheme://rest`, or `scheme:rest` when it is not hierarchical. */
export const format = (address: Omit<Address, "raw">): string =>
  `${address.scheme}:${address.hierarchical ? "//" : ""}${address.rest}`

/** An absolute file-system path as an address writes it: each segment percent-encoded (`path` decodes it back). */
export const encodePath = (absolutePath: string): string => absolutePath.split("/").map(encodeURIComponent).join("/")

/**
 * The `scheme:///abs/path` address of an absolute file-system path, with `%`,
 * `?`, `#` and other non-path characters escaped, so `path` gives it back exactly.
 */
export const fromPath = (scheme: string, absolutePath: string): Effect.Effect<string, IpcError.IpcError> =>
  Effect.suspend(() => {
    if (!absolutePath.startsWith("/")) {
      return Effect.fail(IpcError.make("InvalidAddress", "expected an absolute path", absolutePath))
    }
    if (loneSurrogate.test(absolutePath)) {
      return Effect.fail(
        IpcError.make("InvalidAddress", "the path is not valid Unicode (a lone surrogate)", absolutePath)
      )
    }
    return Effect.succeed(`${scheme}://${encodePath(absolutePath)}`)
  })

/** The query parameter names that carry a secret (compared after decoding, in lower case). */
const secretKeys: ReadonlySet<string> = new Set(["token"])

/** The name of one `key=value` item of a query, decoded as `URLSearchParams` decodes it. */
const queryKey = (item: string): string => {
  const equals = item.indexOf("=")
  const key = (equals < 0 ? item : item.slice(0, equals)).replace(/\+/g, " ")
  // URLSearchParams leaves a malformed escape as it is: decode what decodes, keep the rest
  const decoded = key.replace(/(?:%[0-9a-f]{2})+/gi, (run) => {
    try {
      return decodeURIComponent(run)
    } catch {
      return run
    }
  })
  // `token%3Dsecret` is a key holding the secret: judged by what comes before its own `=`
  return decoded.split("=")[0]!.trim().toLowerCase()
}

/** `a=1&token=x` without its secret items (`a=1`); undefined when it has none. */
const withoutSecrets = (part: string): string | undefined => {
  const items = part.split("&")
  const kept = items.filter((item) => !secretKeys.has(queryKey(item)))
  return kept.length === items.length ? undefined : kept.filter((item) => item.length > 0).join("&")
}

/** Fails with `InvalidAddress` for port 0, which asks `listen` for a free port and names nothing to dial. */
export const dialablePort = (port: number | undefined, shown: string): Effect.Effect<void, IpcError.IpcError> =>
  port === 0
    ? Effect.fail(
      IpcError.make(
        "InvalidAddress",
        "port 0 asks listen for a free port: dial the port the listener's address names",
        shown
      )
    )
    : Effect.void

/**
 * The address as it may be shown (in spans, metrics, logs and errors): every
 * `token` query parameter removed (however its name is escaped, however often
 * it appears, with tabs and newlines in it as a URL parser drops them, and
 * one written after `#` by mistake) and the password of a
 * `scheme://user:password@host` removed (also where a URL parser finds one
 * without the slashes). Tabs and newlines are not shown.
 * An address without a secret is returned as it is.
 */
export const redact = (raw: string): string => {
  // JavaScript callers may pass anything: what is not a string is never shown (it may hold a secret)
  if (typeof raw !== "string") return "(not a string)"
  // a URL parser (transport-ws reads addresses with one) drops tabs and newlines wherever they are, and so
  // reads `to<TAB>ken` as `token`: the shown form drops them too (a newline in a log line is no good either)
  let shown = raw.replace(/[\t\n\r]/g, "")
  const question = shown.indexOf("?")
  if (question >= 0) {
    const hash = shown.indexOf("#", question)
    const end = hash < 0 ? shown.length : hash
    const query = withoutSecrets(shown.slice(question + 1, end))
    if (query !== undefined) {
      shown = `${shown.slice(0, question)}${query.length > 0 ? `?${query}` : ""}${shown.slice(end)}`
    }
  }
  // a token put after # by mistake (`ws://host:1/x#token=...`) is a secret too
  const hash = shown.indexOf("#")
  if (hash >= 0) {
    const fragment = withoutSecrets(shown.slice(hash + 1))
    if (fragment !== undefined) shown = `${shown.slice(0, hash)}${fragment.length > 0 ? `#${fragment}` : ""}`
  }
  // scheme://user:password@host...: the authority ends at the first / \ ? or #. A URL parser also reads one
  // after leading spaces and controls, and for ws:, http: and their like after `scheme:`, `scheme:/` or
  // `scheme:\\` (a backslash is a slash there), so those are looked at too
  let lead = 0
  while (lead < shown.length && shown.charCodeAt(lead) <= 0x20) lead++
  const authority = /^([a-z][a-z0-9+.-]*:[/\\]*)([^/\\?#]*)/i.exec(shown.slice(lead))
  if (authority !== null) {
    const at = authority[2]!.lastIndexOf("@")
    const colon = at < 0 ? -1 : authority[2]!.indexOf(":")
    if (colon >= 0 && colon < at) {
      shown = `${shown.slice(0, lead)}${authority[1]}${authority[2]!.slice(0, colon)}${authority[2]!.slice(at)}${
        shown.slice(lead + authority[0].length)
      }`
    }
  }
  return shown
}

/**
 * The error for an address that is not a string (JavaScript callers may pass
 * anything): `InvalidAddress`, showing only what cannot hold a secret.
 */
export const notAString = (value: unknown): IpcError.IpcError => {
  const what = typeof value === "object" && value !== null
    ? "an object"
    : typeof value === "function"
    ? "a function"
    : typeof value === "symbol"
    ? "a symbol"
    : String(value)
  return IpcError.make("InvalidAddress", `an address is a string, not ${what}`)
}

/**
 * `error` as it may be shown: its `address` redacted, and `address` (the one
 * dialled or listened at) replaced by its redacted form in its detail.
 */
export const redactError = (error: IpcError.IpcError, address?: string): IpcError.IpcError => {
  const own = error.address === undefined ? undefined : redact(error.address)
  const given = typeof address !== "string" ? undefined : redact(address)
  const detail = typeof address !== "string" || given === address
    ? error.detail
    : error.detail.split(address).join(given)
  if (own === error.address && detail === error.detail) return error
  return new IpcError.IpcError({
    reason: error.reason,
    detail,
    address: own,
    errno: error.errno,
    cause: error.cause
  })
}
