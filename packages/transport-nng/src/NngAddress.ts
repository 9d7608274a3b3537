/**
 * nng addresses. effect-ipc names them `nng+ipc:///path`, `nng+tcp://host:port`,
 * `nng+inproc://name`, `nng+ws://host:port/path`, over TLS `nng+tls+tcp://host:port`
 * and `nng+wss://host:port/path`, and, on Linux,
 * `nng+abstract://name`, so that the scheme picks this transport; the part after
 * `nng+` is nng's own URL. The messaging-pattern APIs (`Req`, `Pub`, ...) take
 * nng's plain URLs too (`tcp://127.0.0.1:5555`, as `nngcat` writes them).
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"

/** nng's transports that this package speaks. */
export type NngTransport = "ipc" | "tcp" | "inproc" | "ws" | "abstract" | "tls+tcp" | "wss"

/** The schemes of the effect-ipc transport (`nng+ipc`, ...). */
export const schemes: ReadonlyArray<string> = [
  "nng+ipc",
  "nng+tcp",
  "nng+inproc",
  "nng+ws",
  "nng+abstract",
  "nng+tls+tcp",
  "nng+wss"
]

const transports: ReadonlyArray<NngTransport> = ["ipc", "tcp", "inproc", "ws", "abstract", "tls+tcp", "wss"]

/** True for the transports that run over TLS (`tls+tcp`, `wss`). */
export const isTls = (transport: NngTransport): boolean => transport === "tls+tcp" || transport === "wss"

/** True for the transports over TCP, with a host and a port (`tcp`, `ws`, `tls+tcp`, `wss`). */
export const isNetwork = (transport: NngTransport): boolean =>
  transport === "tcp" || transport === "ws" || transport === "tls+tcp" || transport === "wss"

/** True for the transports whose addresses have an HTTP path (`ws`, `wss`). */
const isWeb = (transport: NngTransport): boolean => transport === "ws" || transport === "wss"

/** A parsed nng address. */
export interface NngAddress {
  /** The address as written. */
  readonly raw: string
  /** Which nng transport carries it. */
  readonly transport: NngTransport
  /** nng's URL for it (`tcp://127.0.0.1:5555`). */
  readonly url: string
  /** For `tcp`, `ws`, `tls+tcp`, `wss`: the host as written (`127.0.0.1`, `[::1]`, `*` or empty for every interface). */
  readonly host: string | undefined
  /** For `tcp`, `ws`, `tls+tcp`, `wss`: the port (0: any free port, chosen when listening). */
  readonly port: number | undefined
  /** For `ipc`: the socket file's path; for `ws`, `wss`: the HTTP path; for `inproc` and `abstract`: the name. */
  readonly path: string
}

const isTransport = (name: string): name is NngTransport => transports.some((t) => t === name)

const hostPort = /^(\[[^\]]*\]|[^:/]*)(?::(\d+))?(\/.*)?$/
/**
 * A ws or wss path nng can both listen and dial at: `/` and RFC 3986's path characters, unescaped. nng
 * listened at a path with `?`, `#`, a `%` escape or a space, which no dial could then reach.
 */
const webPath = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/

/**
 * Parses `nng+tcp://host:port` (or, with `plain`, nng's own `tcp://host:port`),
 * failing with `InvalidAddress` or `UnsupportedScheme`.
 */
export const parse = (raw: string, options: { readonly plain?: boolean } = {}): Effect.Effect<
  NngAddress,
  IpcError.IpcError
> =>
  Effect.flatMap(Address.parse(raw), (address): Effect.Effect<NngAddress, IpcError.IpcError> => {
    const name = address.scheme.startsWith("nng+")
      ? address.scheme.slice(4)
      : options.plain === true
      ? address.scheme
      : ""
    if (!isTransport(name)) {
      return Effect.fail(
        IpcError.make(
          "UnsupportedScheme",
          `nng addresses are ${
            (options.plain === true ? [...schemes, ...transports] : schemes).map((s) => `${s}://`).join(", ")
          }`,
          raw
        )
      )
    }
    if (!address.hierarchical) {
      return Effect.fail(
        IpcError.make(
          "InvalidAddress",
          address.scheme === "nng+ipc"
            // what the descriptor's `defaultAddress` gives for a service name it refuses (see index.ts)
            ? "expected nng+ipc:///path; nng+ipc:<name> is the default address of a service whose name " +
              "is not 1-200 of A-Z a-z 0-9 . _ - (or is . or ..), where no one can listen or dial"
            : `expected ${address.scheme}://...`,
          raw
        )
      )
    }
    const url = `${name}://${address.rest}`
    switch (name) {
      case "ipc":
        // a path is percent-decoded (a literal `%` is `%25`), as every path scheme's; nng takes it as it is
        return address.rest.startsWith("/")
          ? Effect.map(Address.path(address), (path) => ({
            raw,
            transport: name,
            url: `ipc://${path}`,
            host: undefined,
            port: undefined,
            path
          }))
          : Effect.fail(IpcError.make("InvalidAddress", "expected an absolute path, e.g. nng+ipc:///tmp/app.ipc", raw))
      case "inproc":
      case "abstract":
        return Effect.succeed({ raw, transport: name, url, host: undefined, port: undefined, path: address.rest })
      case "tcp":
      case "ws":
      case "tls+tcp":
      case "wss": {
        const match = hostPort.exec(address.rest)
        const port = match?.[2] === undefined ? undefined : Number(match[2])
        if (match === null || port === undefined || port > 65535 || (!isWeb(name) && match[3] !== undefined)) {
          return Effect.fail(
            IpcError.make(
              "InvalidAddress",
              `expected ${address.scheme}://host:port${isWeb(name) ? "/path" : ""}`,
              raw
            )
          )
        }
        if (match[3] !== undefined && !webPath.test(match[3])) {
          return Effect.fail(
            IpcError.make(
              "InvalidAddress",
              `a ${name} path is / and letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @ / ` +
                "(no ?, #, % escape or space)",
              raw
            )
          )
        }
        return Effect.succeed({ raw, transport: name, url, host: match[1]!, port, path: match[3] ?? "" })
      }
    }
  })

/** Fails with `InvalidAddress` for port 0, which asks `listen` for a free port and names nothing to dial. */
export const dialable = (address: NngAddress): Effect.Effect<NngAddress, IpcError.IpcError> =>
  Effect.as(Address.dialablePort(address.port, address.raw), address)

/** The same address with another port (tcp, ws, tls+tcp, wss), written in the scheme of `address.raw`. */
export const withPort = (address: NngAddress, port: number): string =>
  address.raw.replace(/^([^:]+:\/\/(?:\[[^\]]*\]|[^:/]*)):\d+/, `$1:${port}`)

/** The raw address with its scheme's `nng+` kept, for a `url` that nng reports. */
export const fromUrl = (address: NngAddress, url: string): string => address.raw.startsWith("nng+") ? `nng+${url}` : url
