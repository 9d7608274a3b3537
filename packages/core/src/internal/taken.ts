/**
 * What an inbox hands its takers, counted inside it for `Observability`: a
 * channel that `IpcChannel.make` made over an inbox of `Inbox.make`, its
 * receives and its `messages` the inbox's own, is counted as the inbox hands
 * messages over, with no effect of its own around each receive (two steps of
 * a receive's run loop, about 100 ns, on a round trip's critical path).
 *
 * An inbox takes one observer; a channel whose receives are anything else
 * (a transport that wraps them) has none, and is counted around them.
 */
import type * as IpcChannel from "../IpcChannel.ts"
import type * as IpcError from "../IpcError.ts"

/** Told of what takers got: messages with their bytes, or the failure a take ended with. */
export interface Observer {
  /** What it counts into (a channel's traffic totals): one instrumenting the channel again into the same counts is it. */
  readonly into: object
  readonly taken: (messages: number, bytes: number) => void
  readonly failed: (error: IpcError.IpcError) => void
}

/**
 * Sets the inbox's observer; `true` too where it has one already counting
 * into the same place (the caller's takes are counted), else `false` (the
 * caller counts around its own receives).
 */
export type Observe = (observer: Observer) => boolean

interface Registered {
  readonly receive: IpcChannel.IpcChannel["receive"]
  readonly messages: IpcChannel.IpcChannel["messages"]
  readonly observe: Observe
}

const inboxes = new WeakMap<object, Observe>()
const channels = new WeakMap<IpcChannel.IpcChannel["receiveAll"], Registered>()

/** Registers how `inbox` is observed (by `Inbox.make`). */
export const registerInbox = (inbox: object, observe: Observe): void => {
  inboxes.set(inbox, observe)
}

/** Registers `channel` as receiving from `inbox` as it is (by `IpcChannel.make`), where the inbox can be observed. */
export const registerChannel = (channel: IpcChannel.IpcChannel, inbox: object): void => {
  const observe = inboxes.get(inbox)
  if (observe === undefined) return
  channels.set(channel.receiveAll, { receive: channel.receive, messages: channel.messages, observe })
}

/** How to observe `channel`'s takes in its inbox, if its receives are its inbox's own. */
export const of = (channel: IpcChannel.IpcChannel): Observe | undefined => {
  const registered = channels.get(channel.receiveAll)
  return registered !== undefined && registered.receive === channel.receive && registered.messages === channel.messages
    ? registered.observe
    : undefined
}
