/**
 * The effect-ipc side of the peers: a channel handler that echoes every
 * message, and one that counts messages (a sink) and answers each end marker
 * with its counts. Used by the child-process peers and by the in-process
 * `memory://` measurements alike.
 */
import type { IpcChannel, IpcError } from "@effect-ipc/core"
import * as Effect from "effect/Effect"
import { SinkCounter } from "./shared.ts"

const untilClosed = (effect: Effect.Effect<void, IpcError.IpcError>): Effect.Effect<void, IpcError.IpcError> =>
  Effect.catch(effect, (error) => error.reason._tag === "Closed" ? Effect.void : Effect.fail(error))

/** Sends every message back, until the peer closes. */
export const echo = (channel: IpcChannel.IpcChannel): Effect.Effect<void, IpcError.IpcError> =>
  untilClosed(Effect.gen(function*() {
    while (true) {
      const batch = yield* channel.receiveAll
      for (const message of batch) yield* channel.send(message)
    }
  }))

/** Counts messages until each end marker, answers it with the counts, until the peer closes. */
export const sink = (channel: IpcChannel.IpcChannel): Effect.Effect<void, IpcError.IpcError> =>
  untilClosed(Effect.gen(function*() {
    const counter = new SinkCounter()
    while (true) {
      const batch = yield* channel.receiveAll
      counter.batch()
      for (const message of batch) {
        const report = counter.count(message.byteLength)
        if (report !== undefined) yield* channel.send(report)
      }
    }
  }))
