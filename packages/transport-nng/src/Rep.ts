/**
 * The replying side of nng's request/reply pattern. A `Replier` listens (or
 * dials) and receives requests from any number of requesters (`Req`, or any
 * nng req0 peer such as `nngcat --req`); each request carries its own `reply`,
 * and requests may be answered concurrently and in any order: the socket is
 * nng's raw rep0, which routes each reply back to the requester by its header.
 *
 * A request that is never answered (a handler that fails) leaves its
 * requester waiting until its timeout: request/reply has no error channel, so
 * typed errors belong in the reply (as `NngRpc` does).
 *
 * `run` and `serve` read up to `concurrency` requests ahead of busy handlers
 * and drop those whose requester left before their turn: nng reads nothing
 * more from a connection whose request waits in its queue, so a requester
 * that left held its descriptor there (and got its handler run) until then.
 * They read no further request while those read and not yet answered hold
 * `maxHeldBytes` (default 4 × `maxMessageSize`) or more.
 *
 * @since 0.1.0
 */
import * as Framing from "@effect-ipc/core/Framing"
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Endpoints from "./Endpoints.ts"
import * as Opening from "./internal/endpoints.ts"
import * as ReadAhead from "./internal/readAhead.ts"

/** One request, and the way to answer it. */
export interface Request {
  /** The request's body. */
  readonly body: Uint8Array
  /** Sends the reply to the requester (once; later replies are dropped by the requester). */
  readonly reply: (body: Uint8Array) => Effect.Effect<void, IpcError.IpcError>
}

/** The replying side. */
export interface Replier {
  /** Where it listens and dials (ports as bound). */
  readonly bound: Endpoints.Bound
  /** Receives the next request. */
  readonly receive: Effect.Effect<Request, IpcError.IpcError>
  /** The requests, as they arrive. */
  readonly requests: Stream.Stream<Request, IpcError.IpcError>
}

/** The `maxMessageSize` of each replier `make` opened. */
const messageLimits = new WeakMap<Replier, number>()

/** Opens a replier (nng `rep0`, raw); it closes with the scope. */
export const make = (options: Endpoints.EndpointsOptions): Effect.Effect<Replier, IpcError.IpcError, Scope.Scope> =>
  Effect.map(Opening.open("rep-raw", options), ({ bound, socket }) => {
    const receive = Effect.map(socket.receive, (received): Request => {
      const request: Request = {
        body: received.body,
        reply: (body) => socket.send(body, undefined, received.header)
      }
      ReadAhead.requesterLeft.set(request, () => !socket.nng.pipeAlive(received.pipe))
      return request
    })
    const replier: Replier = { bound, receive, requests: Stream.fromEffectRepeat(receive) }
    messageLimits.set(replier, options.maxMessageSize ?? Framing.DEFAULT_MAX_FRAME_SIZE)
    return replier
  })

/** The bounds of `run` and `serve`. */
export interface Bounds {
  /** Requests handled at once (default 64); as many more are read ahead, further ones wait in nng's queues. */
  readonly concurrency?: number | undefined
  /**
   * No further request is read while the bodies of those read and not yet answered (handled or read ahead)
   * total this many bytes or more (default 4 × `maxMessageSize`); so they stay under it plus one message.
   */
  readonly maxHeldBytes?: number | undefined
}

/** Options of `serve`. */
export interface ServeOptions extends Endpoints.EndpointsOptions, Bounds {}

/**
 * Answers `replier`'s requests with `handler` until interrupted: each
 * request's reply is what the handler returns. A failing handler is logged
 * and its request gets no reply; a request whose requester left before its
 * turn is dropped unhandled.
 */
export const run = <E, R>(
  replier: Replier,
  handler: (request: Uint8Array) => Effect.Effect<Uint8Array, E, R>,
  options: Bounds = {}
): Effect.Effect<never, IpcError.IpcError, R> =>
  Effect.flatMap(
    ReadAhead.boundsOf(options, messageLimits.get(replier)),
    (bounds) =>
      ReadAhead.answer(replier.receive, ReadAhead.hasLeft, (request) =>
        handler(request.body).pipe(
          Effect.flatMap(request.reply),
          Effect.catchCause((cause) =>
            Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logWarning("a request was not answered", cause)
          )
        ), bounds)
  )

/**
 * Serves requests with `handler` in the background until the scope closes;
 * completes once listening. Requests are answered as `run` does.
 */
export const serve = <E, R>(
  options: ServeOptions,
  handler: (request: Uint8Array) => Effect.Effect<Uint8Array, E, R>
): Effect.Effect<Endpoints.Bound, IpcError.IpcError, R | Scope.Scope> =>
  Effect.gen(function*() {
    yield* ReadAhead.boundsOf(options)
    const replier = yield* make(options)
    yield* Effect.forkScoped(
      run(replier, handler, options).pipe(
        Effect.catch((error) => error.reason._tag === "Closed" ? Effect.void : Effect.logWarning("Rep.serve", error))
      )
    )
    return replier.bound
  })
