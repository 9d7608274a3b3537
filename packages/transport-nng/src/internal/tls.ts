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

/**
 * `NNG_TLS_AUTH_MODE_OPTIONAL`, which only a listener is configured with:
 * nng then completes every handshake, whatever the check of the client's
 * certificate found, and the socket checks each such pipe itself
 * (`internal/socket.ts`).
 */
export const OPTIONAL = authModes.optional

/** The most a PEM file may hold (a chain of CA certificates is some KiB). */
const MAX_PEM_BYTES = 1024 * 1024

/**
 * A PEM file that could not be opened or read: the reason and errno as the
 * system gave them, the detail naming the file and why in words (the file,
 * not the address, is what the system's message was about: a command line
 * that put the address before the system's words named the wrong thing).
 */
const unreadable = (cause: unknown, what: string, file: string, address: string): IpcError.IpcError => {
  const error = IpcError.fromSystemError(cause, "Open", `cannot read the TLS ${what} ${file}`, address)
  const words = cause instanceof Error ? cause.message.replace(/^E[A-Z]+: /, "").replace(/, \w+ '.*'$/, "") : ""
  return new IpcError.IpcError({
    reason: error.reason,
    detail: `cannot read the TLS ${what} ${file}: ${words || String(cause)}`,
    address,
    ...(error.errno === undefined ? {} : { errno: error.errno }),
    cause
  })
}

const readPem = (file: string | undefined, what: string, address: string) =>
  file === undefined ? Effect.succeed(undefined) : Effect.suspend(() => {
    // opened without blocking (a FIFO nobody writes), and read only if it is a regular file of a sane size
    let fd: number
    try {
      fd = Fs.openSync(file, Fs.constants.O_RDONLY | Fs.constants.O_NONBLOCK)
    } catch (cause) {
      return Effect.fail(unreadable(cause, what, file, address))
    }
    try {
      const stat = Fs.fstatSync(fd)
      // a directory, a FIFO or a device named for a file is a bad option, as a file nng cannot use is
      if (!stat.isFile()) {
        const kind = stat.isDirectory() ? "a directory" : stat.isFIFO() ? "a FIFO" : "not a regular file"
        return Effect.fail(
          IpcError.make("InvalidOption", `the TLS ${what} ${file} is ${kind}, not a PEM file`, address)
        )
      }
      if (stat.size > MAX_PEM_BYTES) {
        return Effect.fail(
          IpcError.make(
            "InvalidOption",
            `the TLS ${what} ${file} is ${stat.size} bytes, over the 1 MiB a PEM file may have`,
            address
          )
        )
      }
      return Effect.succeed(Fs.readFileSync(fd, "utf8"))
    } catch (cause) {
      return Effect.fail(unreadable(cause, what, file, address))
    } finally {
      Fs.closeSync(fd)
    }
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
    // a server always presents a certificate: for a dialer "checked when presented" is "always checked"
    // (nng's optional mode would complete the handshake whatever the check found)
    const authMode = side === "dial" && mode === "optional" ? authModes.required : authModes[mode]
    return { cert, key, ca, authMode, serverName }
  })
