/**
 * Addresses name an endpoint by scheme: `unix:///run/app.sock`, `unix:@name`,
 * `pipe://name`, `fifo:///dir/base`, `file:///dir`, `shm://name`,
 * `nng+ipc:///tmp/x.ipc`, `nng+tcp://host:port`, `memory://name`.
 * The scheme picks the transport; the rest is the transport's to read.
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

/** Parses `scheme://rest`; fails with `InvalidAddress` when there is no scheme or nothing after it. */
export const parse = (raw: string): Effect.Effect<Address, IpcError.IpcError> =>
  Effect.suspend(() => {
    const match = schemePattern.exec(raw)
    if (match === null) {
      return Effect.fail(
        IpcError.make("InvalidAddress", "an address is scheme://location, e.g. unix:///tmp/app.sock", raw)
      )
    }
    const rest = match[3] ?? ""
    if (rest.length === 0) {
      return Effect.fail(IpcError.make("InvalidAddress", "the address names no location after its scheme", raw))
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
        IpcError.make("UnsupportedScheme", `this transport serves ${schemes.map((s) => `${s}://`).join(", ")}`, raw)
      ))

/** The file-system path of a `scheme:///abs/path` address; fails unless it is absolute. */
export const path = (address: Address): Effect.Effect<string, IpcError.IpcError> =>
  address.rest.startsWith("/")
    ? Effect.succeed(decodeURIComponent(address.rest))
    : Effect.fail(IpcError.make("InvalidAddress", "expected an absolute path, e.g. unix:///tmp/app.sock", address.raw))
