/**
 * nng's error codes (`NNG_ECONNREFUSED`, ...) and the `IpcError` reason each
 * one maps to. Every failure of this package is an `IpcError` whose `errno`
 * is the nng name of the code (`"NNG_ECONNRESET"`), so callers match on the
 * reason and can still see exactly what nng said.
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"

/** nng's error codes (nng.h, `enum nng_errno_enum`). */
export const Code = {
  EINTR: 1,
  ENOMEM: 2,
  EINVAL: 3,
  EBUSY: 4,
  ETIMEDOUT: 5,
  ECONNREFUSED: 6,
  ECLOSED: 7,
  EAGAIN: 8,
  ENOTSUP: 9,
  EADDRINUSE: 10,
  ESTATE: 11,
  ENOENT: 12,
  EPROTO: 13,
  EUNREACHABLE: 14,
  EADDRINVAL: 15,
  EPERM: 16,
  EMSGSIZE: 17,
  ECONNABORTED: 18,
  ECONNRESET: 19,
  ECANCELED: 20,
  ENOFILES: 21,
  ENOSPC: 22,
  EEXIST: 23,
  EREADONLY: 24,
  EWRITEONLY: 25,
  ECRYPTO: 26,
  EPEERAUTH: 27,
  ENOARG: 28,
  EAMBIGUOUS: 29,
  EBADTYPE: 30,
  ECONNSHUT: 31,
  EINTERNAL: 1000
} as const

/** Bit set in codes that carry an operating-system errno (`NNG_ESYSERR | errno`). */
export const SYSERR = 0x1000_0000
/** Bit set in codes that carry a transport-specific error (`NNG_ETRANERR | code`). */
export const TRANERR = 0x2000_0000

const reasons: Record<number, IpcError.IpcErrorReason> = {
  [Code.EINTR]: "Unknown",
  [Code.ENOMEM]: "NoSpace",
  [Code.EINVAL]: "InvalidAddress",
  [Code.EBUSY]: "AddressInUse",
  [Code.ETIMEDOUT]: "Timeout",
  [Code.ECONNREFUSED]: "NotFound",
  [Code.ECLOSED]: "Closed",
  [Code.EAGAIN]: "Full",
  [Code.ENOTSUP]: "UnsupportedScheme",
  [Code.EADDRINUSE]: "AddressInUse",
  [Code.ESTATE]: "Protocol",
  [Code.ENOENT]: "NotFound",
  [Code.EPROTO]: "Protocol",
  [Code.EUNREACHABLE]: "NotFound",
  [Code.EADDRINVAL]: "InvalidAddress",
  [Code.EPERM]: "PermissionDenied",
  [Code.EMSGSIZE]: "FrameTooLarge",
  [Code.ECONNABORTED]: "ConnectionLost",
  [Code.ECONNRESET]: "ConnectionLost",
  [Code.ECANCELED]: "Closed",
  [Code.ENOFILES]: "NoSpace",
  [Code.ENOSPC]: "NoSpace",
  [Code.EEXIST]: "AlreadyExists",
  [Code.EREADONLY]: "Protocol",
  [Code.EWRITEONLY]: "Protocol",
  [Code.ECRYPTO]: "Protocol",
  [Code.EPEERAUTH]: "PeerRejected",
  [Code.ENOARG]: "InvalidAddress",
  [Code.EAMBIGUOUS]: "InvalidAddress",
  [Code.EBADTYPE]: "Unknown",
  [Code.ECONNSHUT]: "ConnectionLost",
  [Code.EINTERNAL]: "Unknown"
}

const names = new Map<number, string>(Object.entries(Code).map(([name, code]) => [code, `NNG_${name}`]))

/** The nng name of a code: `NNG_ECONNRESET`, `NNG_ESYSERR(EMFILE)`, `NNG_ETRANERR(3)`. */
export const nameOf = (code: number, errnoName?: (errno: number) => string): string => {
  if ((code & SYSERR) !== 0) {
    const errno = code & ~SYSERR
    return `NNG_ESYSERR(${errnoName?.(errno) ?? errno})`
  }
  if ((code & TRANERR) !== 0) return `NNG_ETRANERR(${code & ~TRANERR})`
  return names.get(code) ?? `NNG_E${code}`
}

/** The `IpcError` reason for an nng error code. */
export const reasonOf = (code: number): IpcError.IpcErrorReason => {
  if ((code & SYSERR) !== 0) return "Unknown"
  if ((code & TRANERR) !== 0) return "Protocol"
  return reasons[code] ?? "Unknown"
}

/**
 * Builds the `IpcError` for an nng error code: the reason from `reasonOf`
 * (or `reason` to override it where the context knows better), nng's own
 * message in the detail, the code's name in `errno`.
 */
export const make = (
  code: number,
  detail: string,
  options: {
    readonly address?: string | undefined
    readonly message?: string | undefined
    readonly reason?: IpcError.IpcErrorReason | undefined
    readonly errnoName?: ((errno: number) => string) | undefined
  } = {}
): IpcError.IpcError =>
  new IpcError.IpcError({
    reason: options.reason ?? reasonOf(code),
    detail: options.message === undefined ? detail : `${detail}: ${options.message}`,
    errno: nameOf(code, options.errnoName),
    ...(options.address === undefined ? {} : { address: options.address })
  })
