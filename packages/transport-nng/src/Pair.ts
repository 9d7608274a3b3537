/**
 * nng's pair pattern, as nng has it: one socket connected to one peer,
 * messages both ways, back-pressured. Messages are nng's, unframed, so any
 * nng pair1 peer (`nngcat --pair1`) can be the other end. Like nng's, the
 * connection reconnects by itself after a loss and does not report it;
 * for a channel that reports a lost peer and a graceful end, use the
 * effect-ipc transport (`NngTransport`), which runs on pair sockets too.
 *
 * @since 0.1.0
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Endpoints from "./Endpoints.ts"
import * as Opening from "./internal/endpoints.ts"

/** A pair socket. */
export interface PairSocket {
  /** Where it listens and dials (ports as bound). */
  readonly bound: Endpoints.Bound
  /** Sends one message to the peer; waits while there is none or it does not keep up. */
  readonly send: (message: Uint8Array) => Effect.Effect<void, IpcError.IpcError>
  /** Receives the next message. */
  readonly receive: Effect.Effect<Uint8Array, IpcError.IpcError>
  /** The messages, as they arrive; ends when the socket closes. */
  readonly messages: Stream.Stream<Uint8Array, IpcError.IpcError>
}

/** Opens a pair socket (nng `pair1`); it closes with the scope. */
export const make = (options: Endpoints.EndpointsOptions): Effect.Effect<PairSocket, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const { bound, socket } = yield* Opening.open("pair", options)
    const inbox = yield* Opening.inbox(socket, options)
    return {
      bound,
      send: (message) => socket.send(message),
      receive: inbox.take,
      messages: Stream.fromPull(Effect.succeed(inbox.next))
    }
  })
