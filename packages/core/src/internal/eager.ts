/**
 * Eager sends: a channel's `send` done as it is called, for adapters on the
 * hot path (`IpcRpc.toSocket`) that already run inside an effect of their own
 * and would otherwise pay for a second one (and for mapping its error) on
 * every message.
 *
 * An eager send is registered for the one `send` it does the work of, like
 * `IpcChannel.pairSendAll`: a wrapper that replaces a channel's `send` (to
 * count, or to refuse) has none unless it registers its own, so nothing it
 * adds is ever skipped.
 */
import type * as Effect from "effect/Effect"
import type * as IpcChannel from "../IpcChannel.ts"
import type * as IpcError from "../IpcError.ts"

/**
 * Starts sending `message` as it is called (call it only inside a running
 * effect) and returns what is left of the send: `Effect.void` itself once the
 * message is on its way, else the rest (the wait for room, the failure, or
 * for a link whose writes are effects, such as file://, the write itself),
 * which the caller runs before anything else is sent on the channel.
 */
export type EagerSend = (message: Uint8Array) => Effect.Effect<void, IpcError.IpcError>

/** As `EagerSend`, for a message given as text: its UTF-8 bytes are sent (encoded where they queue, where the link can). */
export type EagerSendText = (text: string) => Effect.Effect<void, IpcError.IpcError>

interface Registered {
  readonly send: EagerSend
  readonly text: EagerSendText | undefined
}

const eagerSends = new WeakMap<IpcChannel.IpcChannel["send"], Registered>()

/** Registers `eager` (and `text`, if given) as doing what `send` does, as it is called; returns `send`. */
export const register = (
  send: IpcChannel.IpcChannel["send"],
  eager: EagerSend,
  text?: EagerSendText
): IpcChannel.IpcChannel["send"] => {
  eagerSends.set(send, { send: eager, text })
  return send
}

/** The eager form of `channel`'s `send`, where it has one. */
export const of = (channel: IpcChannel.IpcChannel): EagerSend | undefined => eagerSends.get(channel.send)?.send

/** The eager form of `channel`'s `send` for text, where it has one. */
export const textOf = (channel: IpcChannel.IpcChannel): EagerSendText | undefined => eagerSends.get(channel.send)?.text
