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
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import type * as Endpoints from "./Endpoints.ts"
import * as Opening from "./internal/endpoints.ts"

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

/** Opens a replier (nng `rep0`, raw); it closes with the scope. */
export const make = (options: Endpoints.EndpointsOptions): Effect.Effect<Replier, IpcError.IpcError, Scope.Scope> =>
  Effect.map(Opening.open("rep-raw", options), ({ bound, socket }) => {
    const receive = Effect.map(socket.receive, (request): Request => ({
      body: request.body,
      reply: (body) => socket.send(body, undefined, request.header)
    }))
    return { bound, receive, requests: Stream.fromEffectRepeat(receive) }
  })

/** Options of `serve`. */
export interface ServeOptions extends Endpoints.EndpointsOptions {
  /** Requests handled at once (default 64); further requests wait in nng's queues. */
  readonly concurrency?: number | undefined
}

/** `concurrency` (default 64), or `InvalidOption`: none, a fraction or NaN would never answer a request. */
const concurrencyOf = (
  options: { readonly concurrency?: number | undefined }
): Effect.Effect<number, IpcError.IpcError> => {
  const notObject = TransportOptions.notAnObject(options, "the replier's options")
  if (notObject !== undefined) return Effect.fail(notObject)
  const concurrency = options.concurrency ?? 64
  return Number.isSafeInteger(concurrency) && concurrency >= 1
    ? Effect.succeed(concurrency)
    : Effect.fail(
      IpcError.make("InvalidOption", `concurrency ${String(concurrency)} is not a whole number of requests, at least 1`)
    )
}

/**
 * Answers `replier`'s requests with `handler` until interrupted: each
 * request's reply is what the handler returns. A failing handler is logged
 * and its request gets no reply.
 */
export const run = <E, R>(
  replier: Replier,
  handler: (request: Uint8Array) => Effect.Effect<Uint8Array, E, R>,
  options: { readonly concurrency?: number | undefined } = {}
): Effect.Effect<never, IpcError.IpcError, R> =>
  Effect.scoped(Effect.gen(function*() {
    const permits = Semaphore.makeUnsafe(yield* concurrencyOf(options))
    const running = yield* FiberSet.make<void, never>()
    return yield* Effect.forever(
      Effect.gen(function*() {
        yield* Semaphore.take(permits, 1)
        const request = yield* Effect.onError(replier.receive, () => Semaphore.release(permits, 1))
        yield* FiberSet.run(
          running,
          handler(request.body).pipe(
            Effect.flatMap(request.reply),
            Effect.catchCause((cause) =>
              Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logWarning("a request was not answered", cause)
            ),
            Effect.ensuring(Semaphore.release(permits, 1))
          )
        )
      })
    )
  }))

/**
 * Serves requests with `handler` in the background until the scope closes;
 * completes once listening. Requests are answered as `run` does.
 */
export const serve = <E, R>(
  options: ServeOptions,
  handler: (request: Uint8Array) => Effect.Effect<Uint8Array, E, R>
): Effect.Effect<Endpoints.Bound, IpcError.IpcError, R | Scope.Scope> =>
  Effect.gen(function*() {
    yield* concurrencyOf(options)
    const replier = yield* make(options)
    yield* Effect.forkScoped(
      run(replier, handler, options).pipe(
        Effect.catch((error) => error.reason._tag === "Closed" ? Effect.void : Effect.logWarning("Rep.serve", error))
      )
    )
    return replier.bound
  })
