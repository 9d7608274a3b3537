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
 *
 * @since 0.1.0
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Latch from "effect/Latch"
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

/** Whether the requester of a request `make` received has left (its connection is gone). */
const requesterLeft = new WeakMap<Request, () => boolean>()

/** True when the requester of `request` has left; false when that cannot be told (a replier not of `make`). */
const hasLeft = (request: Request): boolean => requesterLeft.get(request)?.() ?? false

/** How often `run` looks over the requests it read ahead, while they fill its read-ahead, for requesters that left. */
const LOOK_OVER_MS = 50

/** Opens a replier (nng `rep0`, raw); it closes with the scope. */
export const make = (options: Endpoints.EndpointsOptions): Effect.Effect<Replier, IpcError.IpcError, Scope.Scope> =>
  Effect.map(Opening.open("rep-raw", options), ({ bound, socket }) => {
    const receive = Effect.map(socket.receive, (received): Request => {
      const request: Request = {
        body: received.body,
        reply: (body) => socket.send(body, undefined, received.header)
      }
      requesterLeft.set(request, () => !socket.nng.pipeAlive(received.pipe))
      return request
    })
    return { bound, receive, requests: Stream.fromEffectRepeat(receive) }
  })

/** Options of `serve`. */
export interface ServeOptions extends Endpoints.EndpointsOptions {
  /** Requests handled at once (default 64); as many more are read ahead, further ones wait in nng's queues. */
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
 * and its request gets no reply; a request whose requester left before its
 * turn is dropped unhandled.
 */
export const run = <E, R>(
  replier: Replier,
  handler: (request: Uint8Array) => Effect.Effect<Uint8Array, E, R>,
  options: { readonly concurrency?: number | undefined } = {}
): Effect.Effect<never, IpcError.IpcError, R> =>
  Effect.scoped(Effect.gen(function*() {
    const concurrency = yield* concurrencyOf(options)
    const permits = Semaphore.makeUnsafe(concurrency)
    const running = yield* FiberSet.make<void, never>()
    // requests read ahead of busy handlers (at most `concurrency`), oldest first: taken from nng's queues, their
    // connections are read again, so a requester that left is seen gone (and its descriptor closed) at once
    const ahead: Array<Request> = []
    const filled = Latch.makeUnsafe(false)
    const dropLeft = () => {
      const staying = ahead.filter((request) => !hasLeft(request))
      ahead.splice(0, ahead.length, ...staying)
    }
    // while the read-ahead is full, it is looked over for requesters that left, and read on when there is room
    const readAhead = Effect.forever(Effect.suspend(() => {
      if (ahead.length >= concurrency) dropLeft()
      if (ahead.length >= concurrency) return Effect.sleep(LOOK_OVER_MS)
      return Effect.map(replier.receive, (request) => {
        ahead.push(request)
        filled.openUnsafe()
      })
    }))
    // the oldest request read ahead whose requester is still there, waiting for one
    const next: Effect.Effect<Request> = Effect.suspend(() => {
      for (let request = ahead.shift(); request !== undefined; request = ahead.shift()) {
        if (!hasLeft(request)) return Effect.succeed(request)
      }
      filled.closeUnsafe()
      return Effect.andThen(filled.await, next)
    })
    const answer = Effect.forever(
      Effect.gen(function*() {
        yield* Semaphore.take(permits, 1)
        const request = yield* next
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
    return yield* Effect.raceFirst(readAhead, answer)
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
