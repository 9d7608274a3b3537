/**
 * The one error type of effect-ipc. Every failure a transport, channel or codec
 * can report is an `IpcError` whose `reason` says what went wrong; `errno` and
 * `cause` keep the operating system's word. It is a Schema class, so it can be
 * sent over the wire (RPC error channels) and decoded on the other side.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

const reasonTags = [
  "InvalidAddress",
  "UnsupportedScheme",
  "UnsupportedPlatform",
  "Open",
  "Read",
  "Write",
  "Closed",
  "ConnectionLost",
  "Timeout",
  "FrameTooLarge",
  "Protocol",
  "Decode",
  "Corrupt",
  "Encode",
  "PermissionDenied",
  "AddressInUse",
  "NotFound",
  "AlreadyExists",
  "NameTooLong",
  "NoSpace",
  "Full",
  "PeerRejected",
  "LibraryMissing",
  "InvalidOption",
  "Unknown"
] as const

/** Every reason an IPC operation can fail, by name: a closed set of literals. */
export const IpcErrorReason = Schema.Literals(reasonTags)

/** The name of a reason an IPC operation can fail (`"NotFound"`, ...). */
export type IpcErrorReason = typeof IpcErrorReason.Type

/**
 * A reason as a tagged value (`{ _tag: "NotFound" }`), as effect's own
 * errors carry theirs: `Effect.catchReason("IpcError", "NotFound", f)` and
 * `Effect.catchReasons("IpcError", { NotFound: f, ... })` catch by it.
 */
export type Reason<Tag extends IpcErrorReason = IpcErrorReason> = { readonly [K in Tag]: { readonly _tag: K } }[Tag]

/** The schema of `Reason`: one tagged struct per reason. */
export const Reason: Schema.Codec<Reason> = Schema.Union(
  reasonTags.map((tag) => Schema.TaggedStruct(tag, {}))
) as unknown as Schema.Codec<Reason>

/** The reason named `tag`, as a tagged value. */
export const toReason = <Tag extends IpcErrorReason>(tag: Tag): Reason<Tag> => ({ _tag: tag }) as Reason<Tag>

/** What `new IpcError(...)` takes: the reason by name or as a tagged value. */
export interface IpcErrorProps {
  readonly reason: IpcErrorReason | Reason
  readonly detail: string
  readonly address?: string | undefined
  readonly errno?: string | undefined
  readonly cause?: unknown
}

/**
 * The error of every effect-ipc operation. Catch it by reason with
 * `Effect.catchReason("IpcError", "NotFound", ...)`, or match on
 * `error.reason._tag`.
 */
export class IpcError extends Schema.TaggedError<IpcError>("@effect-ipc/core/IpcError")("IpcError", {
  reason: Reason,
  detail: Schema.String,
  address: Schema.optional(Schema.String),
  errno: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect())
}) {
  constructor(props: IpcErrorProps) {
    const { address, cause, errno, ...rest } = props
    super({
      ...rest,
      reason: typeof props.reason === "string" ? toReason(props.reason) : props.reason,
      ...(address === undefined ? {} : { address }),
      ...(errno === undefined ? {} : { errno }),
      ...(cause === undefined ? {} : { cause })
    })
  }
  override get message(): string {
    const where = this.address === undefined ? "" : ` (${this.address})`
    const code = this.errno === undefined ? "" : ` [${this.errno}]`
    return `${this.reason._tag}: ${this.detail}${where}${code}`
  }
}

/** True for an `IpcError`, whatever its reason. */
export const isIpcError = (u: unknown): u is IpcError => u instanceof IpcError

const errnoReasons: Record<string, IpcErrorReason> = {
  EADDRINUSE: "AddressInUse",
  ENOENT: "NotFound",
  ECONNREFUSED: "NotFound",
  EACCES: "PermissionDenied",
  EPERM: "PermissionDenied",
  EEXIST: "AlreadyExists",
  ENAMETOOLONG: "NameTooLong",
  ENOSPC: "NoSpace",
  EDQUOT: "NoSpace",
  EFBIG: "NoSpace",
  // out of descriptors (this process's, or the system's) or of kernel memory: a resource, as a full disk is
  EMFILE: "NoSpace",
  ENFILE: "NoSpace",
  ENOMEM: "NoSpace",
  ECONNRESET: "ConnectionLost",
  EPIPE: "ConnectionLost",
  ETIMEDOUT: "Timeout",
  ENOTSUP: "UnsupportedPlatform",
  EOPNOTSUPP: "UnsupportedPlatform"
}

/** The reason an errno code (`"ENOENT"` -> `NotFound`) stands for; `fallback` for codes without one. */
export const errnoReason = (errno: string | undefined, fallback: IpcErrorReason): IpcErrorReason =>
  (errno !== undefined ? errnoReasons[errno] : undefined) ?? fallback

/** The errno code (`"ENOENT"`) of a Node system error, if it has one. */
export const errnoOf = (cause: unknown): string | undefined => {
  if (typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string") {
    return cause.code
  }
  return undefined
}

/**
 * Builds an `IpcError` from a system error: its errno picks the reason
 * (`EADDRINUSE` -> `AddressInUse`, ...), `fallback` is used otherwise.
 */
export const fromSystemError = (
  cause: unknown,
  fallback: IpcErrorReason,
  detail: string,
  address?: string
): IpcError => {
  const errno = errnoOf(cause)
  const reason = errnoReason(errno, fallback)
  const message = cause instanceof Error ? cause.message : String(cause)
  return new IpcError({
    reason,
    detail: `${detail}: ${message}`,
    ...(address === undefined ? {} : { address }),
    ...(errno === undefined ? {} : { errno }),
    cause
  })
}

/**
 * Builds an `IpcError` from an errno code a native call reported (`"EEXIST"`,
 * see `Native.errnoError` for errno numbers): the code picks the reason as in
 * `fromSystemError`, `fallback` is used otherwise.
 */
export const fromErrno = (
  errno: string,
  fallback: IpcErrorReason,
  detail: string,
  address?: string
): IpcError =>
  new IpcError({
    reason: errnoReason(errno, fallback),
    detail: `${detail}: ${errno}`,
    ...(address === undefined ? {} : { address }),
    errno
  })

/** Shorthand for `new IpcError({ reason, detail, address })`. */
export const make = (reason: IpcErrorReason | Reason, detail: string, address?: string): IpcError =>
  new IpcError({ reason, detail, ...(address === undefined ? {} : { address }) })

/** The `Closed` error of a channel whose peer closed it. */
export const closedByPeer = (address?: string): IpcError =>
  make("Closed", "the channel was closed by its peer", address)

/** The `FrameTooLarge` error for a message of `size` bytes over `limit`. */
export const frameTooLarge = (size: number, limit: number, address?: string): IpcError =>
  make("FrameTooLarge", `message of ${size} bytes exceeds the limit of ${limit}`, address)
