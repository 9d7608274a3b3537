/**
 * nng's pipeline pattern: a `Pusher` hands each message to one connected
 * puller (round robin over those ready to take it), a `Puller` takes them
 * from every pusher it is connected to (fairly). No message is dropped: a
 * push waits while no puller can take it, so a slow puller slows the
 * pushers. The way to spread work over workers.
 *
 * @since 0.1.0
 */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Endpoints from "./Endpoints.ts"
import * as Opening from "./internal/endpoints.ts"

/** The pushing side. */
export interface Pusher {
  /** Where it listens and dials (ports as bound). */
  readonly bound: Endpoints.Bound
  /** Pushes one message to one puller; waits while none can take it. */
  readonly push: (message: Uint8Array) => Effect.Effect<void, IpcError.IpcError>
}

/** Opens a pusher (nng `push0`); it closes with the scope. */
export const pusher = (options: Endpoints.EndpointsOptions): Effect.Effect<Pusher, IpcError.IpcError, Scope.Scope> =>
  Effect.map(Opening.open("push", options), ({ bound, socket }) => ({ bound, push: (message) => socket.send(message) }))

/** The pulling side. */
export interface Puller {
  /** Where it listens and dials (ports as bound). */
  readonly bound: Endpoints.Bound
  /** Receives the next message. */
  readonly pull: Effect.Effect<Uint8Array, IpcError.IpcError>
  /** The messages, as they arrive; ends when the puller closes. */
  readonly messages: Stream.Stream<Uint8Array, IpcError.IpcError>
}

/** Opens a puller (nng `pull0`); it closes with the scope. */
export const puller = (options: Endpoints.EndpointsOptions): Effect.Effect<Puller, IpcError.IpcError, Scope.Scope> =>
  Effect.gen(function*() {
    const { bound, socket } = yield* Opening.open("pull", options)
    const inbox = yield* Opening.inbox(socket, options)
    return { bound, pull: inbox.take, messages: Stream.fromPull(Effect.succeed(inbox.next)) }
  })
