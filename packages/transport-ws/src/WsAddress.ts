/**
 * `ws://host:port/path` addresses. The port is required (a local daemon picks
 * one), the path defaults to `/`, and `?token=...` may carry the server's
 * secret: the client moves it into the handshake's subprotocol list and never
 * puts it on the request line, and every address shown in an error or on a
 * channel has it removed (`redacted`). Runs in the browser (no `node:` imports).
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Effect from "effect/Effect"

/** The schemes of this transport. */
export const schemes: ReadonlyArray<string> = ["ws"]

/** A parsed `ws://` address. */
export interface WsAddress {
  /** The address as parsed, `ws://host:port/path`, without its token (safe to show). */
  readonly redacted: string
  /** The host as written (`127.0.0.1`, `localhost`, `[::1]`, ...), lower case. */
  readonly host: string
  /** The host to bind or connect to: brackets removed, `localhost` as `127.0.0.1`. */
  readonly bindHost: string
  /** The TCP port. */
  readonly port: number
  /** The path, starting with `/`. */
  readonly path: string
  /** The token of `?token=...`, if the address carries one. */
  readonly token: string | undefined
  /** True when the host is a loopback address (`127.0.0.0/8`, `::1`, `localhost`). */
  readonly loopback: boolean
  /** The URL the client opens: `ws://host:port/path`, without the token. */
  readonly url: string
}

/** What a token may be made of: the characters of an HTTP token that base64url uses, and `.` `~`. */
const tokenPattern = /^[A-Za-z0-9._~-]{1,512}$/

/** True when `token` can travel in a `Sec-WebSocket-Protocol` header. */
export const isValidToken = (token: unknown): token is string => typeof token === "string" && tokenPattern.test(token)

/**
 * The error for a token that is not 1-512 of A-Z a-z 0-9 . _ ~ - (it travels
 * in a subprotocol name): `InvalidOption` when it was the `token` option,
 * `InvalidAddress` when it came with the address (or a lookup).
 */
export const invalidToken = (fromOption: boolean, shown: string): IpcError.IpcError =>
  IpcError.make(
    fromOption ? "InvalidOption" : "InvalidAddress",
    `${fromOption ? "the token option" : "a token"} is 1-512 of A-Z a-z 0-9 . _ ~ - ` +
      "(it travels in a WebSocket subprotocol): join a phrase's words with - or _, or use base64url, not base64",
    shown
  )

/** True for `localhost`, an IPv4 address in 127.0.0.0/8 and `::1` (brackets allowed). */
export const isLoopbackHost = (host: string): boolean => {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1")
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true
  const v4 = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h)
  return v4 !== null && v4.slice(1).every((part) => Number(part) <= 255)
}

/**
 * Removes every `token` query parameter (however its name is escaped) from
 * `raw`, so the address can be shown (core's `Address.redact`).
 */
export const redact = (raw: string): string => Address.redact(raw)

/** The yes-or-no options: anything but `true` was taken as `false` (`allowRemote: "true"`, then `PermissionDenied`). */
const FLAG_OPTIONS: ReadonlyArray<string> = ["allowRemote", "allowWeakToken"]

/**
 * `TransportOptions.optionsOk` for `options` and `address`, whose errors show
 * the address without its token; a flag that is not a boolean is `InvalidOption` too.
 */
export const optionsOk = (options: object, address: unknown): Effect.Effect<void, IpcError.IpcError> =>
  Effect.andThen(
    TransportOptions.optionsOk(options, typeof address === "string" ? redact(address) : address),
    flagsOk(options, address)
  )

/** `TransportOptions.layerOptionsOk` and the flags `optionsOk` checks: what `WsTransport.layer` checks as it is built. */
export const layerOptionsOk = (options: unknown): Effect.Effect<void, IpcError.IpcError> =>
  Effect.andThen(TransportOptions.layerOptionsOk(options), flagsOk(options ?? {}, undefined))

/** `InvalidOption` for a flag option (`FLAG_OPTIONS`) given as anything but `true` or `false`. */
const flagsOk = (options: unknown, address: unknown): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const given: object = typeof options === "object" && options !== null ? options : {}
    const name = FLAG_OPTIONS.find((flag) => {
      const value: unknown = Reflect.get(given, flag)
      return value !== undefined && typeof value !== "boolean"
    })
    return name === undefined ? Effect.void : Effect.fail(IpcError.make(
      "InvalidOption",
      `${name} (${typeof Reflect.get(given, name)}) is not true or false`,
      typeof address === "string" ? redact(address) : undefined
    ))
  })

/** Parses a `ws://host:port/path[?token=...]` address. */
export const parse = (raw: string): Effect.Effect<WsAddress, IpcError.IpcError> =>
  Effect.gen(function*() {
    // until it is parsed, the address as written without anything that could name a token
    const shown = redact(raw)
    const parsed = yield* Address.parseFor(raw, schemes).pipe(
      Effect.mapError((error) => IpcError.make(error.reason, error.detail, shown))
    )
    if (!parsed.hierarchical) {
      return yield* IpcError.make("InvalidAddress", "a WebSocket address is ws://host:port/path", shown)
    }
    let url: URL
    try {
      url = new URL(`ws://${parsed.rest}`)
    } catch {
      return yield* IpcError.make("InvalidAddress", "a WebSocket address is ws://host:port/path", shown)
    }
    // URL drops a port that is the scheme's default: an explicit :80 is a port all the same
    const authority = parsed.rest.split(/[/?#]/, 1)[0] ?? ""
    const port = url.port !== "" ? Number(url.port) : /:0*80$/.test(authority) ? 80 : undefined
    if (port === undefined) {
      return yield* IpcError.make("InvalidAddress", "a ws:// address needs a port, e.g. ws://127.0.0.1:8765/app", shown)
    }
    if (url.username !== "" || url.password !== "") {
      return yield* IpcError.make("InvalidAddress", "a ws:// address carries no user or password", shown)
    }
    if (url.hash !== "") {
      return yield* IpcError.make("InvalidAddress", "a ws:// address has no #fragment", shown)
    }
    if (url.searchParams.getAll("token").length > 1) {
      return yield* IpcError.make("InvalidAddress", "a ws:// address carries one token, not several", shown)
    }
    const token = url.searchParams.get("token") ?? undefined
    if (token !== undefined && !isValidToken(token)) return yield* invalidToken(false, shown)
    const others = [...url.searchParams.keys()].filter((key) => key !== "token")
    if (others.length > 0) {
      return yield* IpcError.make("InvalidAddress", `unknown query parameter ${others[0]} (only token)`, shown)
    }
    // the path as the server will see it on the request line (percent-escapes kept as written)
    const path = url.pathname === "" ? "/" : url.pathname
    const host = url.hostname.toLowerCase()
    const bare = host.replace(/^\[(.*)\]$/, "$1")
    return {
      // the shown form is built from what was parsed: nothing the parser read as the token can stay in it
      redacted: format({ host, port, path }),
      host,
      bindHost: bare === "localhost" ? "127.0.0.1" : bare,
      port,
      path,
      token,
      loopback: isLoopbackHost(host),
      url: `ws://${host}:${port}${path}`
    }
  })

/** Fails with `InvalidAddress` for port 0, which asks `listen` for a free port and names nothing to dial. */
export const dialable = (address: WsAddress): Effect.Effect<WsAddress, IpcError.IpcError> =>
  Effect.as(Address.dialablePort(address.port, address.redacted), address)

/** Writes an address back: `ws://host:port/path`, with `?token=...` when `token` is given. */
export const format = (
  address: { readonly host: string; readonly port: number; readonly path: string },
  token?: string
): string => `ws://${address.host}:${address.port}${address.path}${token === undefined ? "" : `?token=${token}`}`
