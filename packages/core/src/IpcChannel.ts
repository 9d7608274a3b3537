/**
 * `IpcChannel`: a message-oriented, bidirectional connection between two
 * processes. One `send` is one message on the other side, whole and in order;
 * incoming messages are pulled with back-pressure (a consumer that stops
 * reading stops the sender once the buffers are full). A `TypedChannel` views a
 * channel through a Schema: send `A`, receive `A`, with decoding failures as
 * typed errors.
 *
 * (Named `IpcChannel` so that it sits beside effect's own `Channel` module
 * in a user's imports.)
 *
 * @since 0.1.0
 */
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as Inbox from "./Inbox.ts"
import * as Bytes from "./internal/bytes.ts"
import * as Taken from "./internal/taken.ts"
import * as IpcError from "./IpcError.ts"

/** Runtime marker of an `IpcChannel`. */
export const TypeId = "~@effect-ipc/core/IpcChannel"

/** What a transport knows of the process at the other end. */
export interface PeerInfo {
  /** Process id, where the transport can tell (Unix socket credentials, child pid). */
  readonly pid?: number | undefined
  /** User id of the peer process, where known. */
  readonly uid?: number | undefined
  /** Group id of the peer process, where known. */
  readonly gid?: number | undefined
  /** The peer process's Windows user, as a string SID (`S-1-5-21-...`), where known (named pipes). */
  readonly user?: string | undefined
  /** A human-readable description of the peer's endpoint. */
  readonly description?: string | undefined
}

/** A message-oriented, ordered, back-pressured connection to one peer. */
export interface IpcChannel {
  readonly [TypeId]: typeof TypeId
  /** The address this channel was dialled at or accepted on. */
  readonly address: string
  /** What is known of the peer process. */
  readonly peer: PeerInfo
  /** Sends one message; waits while the outgoing buffers are full. */
  readonly send: (message: Uint8Array) => Effect.Effect<void, IpcError.IpcError>
  /**
   * Sends messages in order as one operation, as `send` would one by one;
   * absent where a channel has no faster way. Call `IpcChannel.sendAll`, which
   * uses it only together with the `send` it was made for (`make`,
   * `pairSendAll`): a wrapper that replaces `send` gets one `send` per message.
   */
  readonly sendAll?: ((messages: ReadonlyArray<Uint8Array>) => Effect.Effect<void, IpcError.IpcError>) | undefined
  /** Receives the next message; fails with reason `Closed` once the peer has closed. */
  readonly receive: Effect.Effect<Uint8Array, IpcError.IpcError>
  /** Receives every buffered message (at least one); fails with reason `Closed` once the peer has closed. */
  readonly receiveAll: Effect.Effect<NonEmptyReadonlyArray<Uint8Array>, IpcError.IpcError>
  /** The incoming messages; ends when the peer closes, fails when the link is lost. */
  readonly messages: Stream.Stream<Uint8Array, IpcError.IpcError>
  /** Closes the channel after what was sent (the peer sees a graceful end; one that does not read within the linger loses the connection, with a warning logged here); idempotent. */
  readonly close: Effect.Effect<void>
  /** Completes when the channel is closed, by either side or by failure. */
  readonly closed: Effect.Effect<void>
}

/** The `IpcChannel` service: the channel a program talks over. */
export const IpcChannel: Context.Service<IpcChannel, IpcChannel> = Context.Service<IpcChannel>(
  "@effect-ipc/core/IpcChannel"
)

/** True for an `IpcChannel`. */
export const isIpcChannel = (u: unknown): u is IpcChannel => Predicate.hasProperty(u, TypeId)

/** The `send` each registered `sendAll` sends as, one message at a time. */
const pairedSend = new WeakMap<object, IpcChannel["send"]>()

/**
 * Registers `sendAll` as sending what `send` would, one message at a time,
 * and returns it: `IpcChannel.sendAll` uses a channel's `sendAll` only while
 * the channel's `send` is this `send` (for channel wrappers that replace both).
 */
export const pairSendAll = (
  send: IpcChannel["send"],
  sendAll: NonNullable<IpcChannel["sendAll"]>
): NonNullable<IpcChannel["sendAll"]> => {
  pairedSend.set(sendAll, send)
  return sendAll
}

/** Builds an `IpcChannel` from a transport's send, inbox and close (for transport authors). */
export const make = (options: {
  readonly address: string
  readonly peer?: PeerInfo | undefined
  readonly inbox: Inbox.Inbox
  readonly send: (message: Uint8Array) => Effect.Effect<void, IpcError.IpcError>
  readonly sendAll?: ((messages: ReadonlyArray<Uint8Array>) => Effect.Effect<void, IpcError.IpcError>) | undefined
  readonly close: Effect.Effect<void>
  /** How `IpcChannel.closeChecked` closes it (optional: without it, as `close`). */
  readonly checkedClose?: CheckedClose | undefined
  readonly closed: Effect.Effect<void>
}): IpcChannel => {
  const channel: IpcChannel = {
    [TypeId]: TypeId,
    address: options.address,
    peer: options.peer ?? {},
    send: options.send,
    sendAll: options.sendAll === undefined ? undefined : pairSendAll(options.send, options.sendAll),
    receive: options.inbox.take,
    receiveAll: Effect.catchTag(
      options.inbox.pull,
      "Done",
      () => Effect.fail(IpcError.closedByPeer(options.address))
    ),
    // one message per pull: a consumer that stops early leaves the rest for the next reader
    messages: Stream.fromPull(Effect.succeed(options.inbox.next)),
    close: options.close,
    closed: options.closed
  }
  // its receives are the inbox's own: the metrics count them there (see `internal/taken.ts`)
  Taken.registerChannel(channel, options.inbox)
  if (options.checkedClose !== undefined) checkedCloses.set(options.close, options.checkedClose)
  return channel
}

/**
 * A close as `IpcChannel.closeChecked` runs it: `quiet` closes as `close` does
 * but without the warning of a close that gave up (`outcome` says it), and
 * `outcome` waits for the channel's end and fails when it did not end well.
 */
export interface CheckedClose {
  readonly quiet: Effect.Effect<void>
  readonly outcome: Effect.Effect<void, IpcError.IpcError>
}

/** The checked form of each `close` that has one, by the `close` Effect (kept by wrappers that keep `close`). */
const checkedCloses = new WeakMap<Effect.Effect<void>, CheckedClose>()

/**
 * Returns `more(close)`, the `close` of a channel that adds to its inner
 * channel's `close` (releases, spans), keeping `IpcChannel.closeChecked`
 * working for it: `more` runs around the inner close there too. For
 * transport authors and channel wrappers.
 */
export const extendClose = (
  close: Effect.Effect<void>,
  more: (close: Effect.Effect<void>) => Effect.Effect<void>
): Effect.Effect<void> => {
  const extended = more(close)
  const checked = checkedCloses.get(close)
  if (checked !== undefined) checkedCloses.set(extended, { quiet: more(checked.quiet), outcome: checked.outcome })
  return extended
}

/**
 * Closes `channel` as `close` does, then waits for its end (up to the linger
 * once the goodbye left) and fails when it did not end well: `ConnectionLost`
 * when what was sent never left within the linger (no warning is logged, by
 * this or a later `close`; the error says it), when the peer dropped the
 * connection instead of answering the goodbye (a listener that refused a
 * message over its `maxMessageSize`), or, over nng, when it did not answer
 * within the linger; the channel's own failure when it had failed before. It
 * succeeds once the peer answered, and where the channel cannot tell: a peer
 * that closed first, a peer still silent over a socket when the linger ran
 * out (what was sent waits in the OS's buffers), separate pipes (FIFOs, a
 * child's stdio: once the goodbye left), pipes on Windows, or a channel whose
 * wrapper replaced `close` without `extendClose`.
 */
export const closeChecked = (channel: IpcChannel): Effect.Effect<void, IpcError.IpcError> => {
  const checked = checkedCloses.get(channel.close)
  return checked === undefined ? channel.close : Effect.andThen(checked.quiet, checked.outcome)
}

/**
 * Sends every message of `messages` in order, as one `send` each would: one
 * operation where the channel has a `sendAll` made for its `send` (every
 * transport built on the channel engine), else one `send` each. Not atomic:
 * while it waits (back-pressure), other fibers' sends may come between its
 * messages; a failure or interruption leaves some first messages sent. The
 * caller may reuse the buffers once it returns.
 */
export const sendAll = (
  channel: IpcChannel,
  messages: Iterable<Uint8Array>
): Effect.Effect<void, IpcError.IpcError> =>
  Effect.suspend(() => {
    const all = channel.sendAll
    return all !== undefined && pairedSend.get(all) === channel.send
      ? all(Array.isArray(messages) ? messages : Array.from(messages))
      : Effect.forEach(messages, channel.send, { discard: true })
  })

/** A channel seen through a Schema: values of `A` in, values of `A` out. */
export interface TypedChannel<A> {
  /** The underlying byte channel. */
  readonly channel: IpcChannel
  /** Encodes and sends one value; an encoding failure is reason `Encode`. */
  readonly send: (value: A) => Effect.Effect<void, IpcError.IpcError>
  /** Receives and decodes one value; a message that does not decode is reason `Decode`. */
  readonly receive: Effect.Effect<A, IpcError.IpcError>
  /** The decoded incoming values; the first undecodable message fails the stream with reason `Decode`. */
  readonly messages: Stream.Stream<A, IpcError.IpcError>
}

const textDecoder = new TextDecoder("utf-8", { fatal: true })

/**
 * Views a channel through `schema`, as JSON text on the wire (binary fields are
 * base64, through `Schema.toCodecJson`).
 */
export const typed = <S extends Schema.Top & { readonly DecodingServices: never; readonly EncodingServices: never }>(
  channel: IpcChannel,
  schema: S
): TypedChannel<S["Type"]> => {
  const codec = Schema.fromJsonString(Schema.toCodecJson(schema))
  const encode = Schema.encodeEffect(codec)
  const decode = Schema.decodeUnknownEffect(codec)
  const decodeMessage = (bytes: Uint8Array): Effect.Effect<S["Type"], IpcError.IpcError> =>
    Effect.suspend(() => {
      let text: string
      try {
        text = textDecoder.decode(bytes)
      } catch (cause) {
        return Effect.fail(
          new IpcError.IpcError({
            reason: "Decode",
            detail: "message is not UTF-8 text",
            address: channel.address,
            cause
          })
        )
      }
      return Effect.mapError(decode(text), (cause) =>
        new IpcError.IpcError({ reason: "Decode", detail: cause.message, address: channel.address, cause }))
    })
  return {
    channel,
    send: (value) =>
      encode(value).pipe(
        Effect.mapError((cause) =>
          new IpcError.IpcError({ reason: "Encode", detail: cause.message, address: channel.address, cause })
        ),
        Effect.flatMap((text) => channel.send(Bytes.utf8(text)))
      ),
    receive: Effect.flatMap(channel.receive, decodeMessage),
    messages: Stream.mapEffect(channel.messages, decodeMessage)
  }
}
