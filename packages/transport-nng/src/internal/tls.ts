/**
 * Reads the files of `NngTls.TlsOptions` into what `nng.ts` configures an
 * endpoint with, with each side's defaults.
 *
 * @internal
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import type * as NngAddress from "../NngAddress.ts"
import type * as NngTls from "../NngTls.ts"
import type * as Nng from "./nng.ts"

const authModes = { none: 0, optional: 1, required: 2 } as const

const readPem = (file: string | undefined, what: string, address: string) =>
  file === undefined ? Effect.succeed(undefined) : Effect.try({
    try: () => Fs.readFileSync(file, "utf8"),
    catch: (cause) =>
      // a directory named for a file is a bad option, as a file nng cannot use is
      IpcError.errnoOf(cause) === "EISDIR"
        ? IpcError.make("InvalidOption", `the TLS ${what} ${file} is a directory, not a PEM file`, address)
        : IpcError.fromSystemError(cause, "Open", `cannot read the TLS ${what} ${file}`, address)
  })

/**
 * The TLS settings of an endpoint at `target` (a `tls+tcp` or `wss` address):
 * a listener must have a certificate; a dialer verifies the host it dials
 * unless told another name.
 */
export const settings = (
  options: NngTls.TlsOptions | undefined,
  side: "listen" | "dial",
  target: NngAddress.NngAddress
): Effect.Effect<Nng.TlsSettings, IpcError.IpcError> =>
  Effect.gen(function*() {
    const tls = options ?? {}
    if (side === "listen" && tls.certFile === undefined) {
      return yield* IpcError.make(
        "InvalidOption",
        "a TLS listener needs a certificate: set the tls option certFile (IPC_OPTIONS_TLS_CERT_FILE)",
        target.raw
      )
    }
    const cert = yield* readPem(tls.certFile, "certificate", target.raw)
    const key = yield* readPem(tls.keyFile, "key", target.raw)
    const ca = yield* readPem(tls.caFile, "CA certificates", target.raw)
    const mode = tls.authMode ?? (side === "dial" || ca !== undefined ? "required" : "none")
    const host = target.host?.replace(/^\[|\]$/g, "")
    const serverName = side === "listen" ? undefined : tls.serverName ?? (host === "" ? undefined : host)
    return { cert, key, ca, authMode: authModes[mode], serverName }
  })
