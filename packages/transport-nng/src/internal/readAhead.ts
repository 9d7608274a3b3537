/**
 * How a replier (`Rep.run`, `NngRpc`'s server) takes requests off its socket:
 * ahead of busy handlers, so that a requester that left is seen gone (nng
 * reads nothing more from a connection whose request waits in its queue),
 * and within bounds: at most `concurrency` requests handled at once and as
 * many read ahead, and no further request read while the bodies of those
 * read and not yet answered total `maxHeldBytes` or more.
 *
 * @internal
 */
import * as Framing from "@effect-ipc/core/Framing"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Latch from "effect/Latch"
import * as Semaphore from "effect/Semaphore"

/** A request as read. */
export interface Held {
  readonly body: Uint8Array
}

/** The bounds of a replier's requests. */
export interface Bounds {
  /** Requests handled at once; as many more are read ahead. */
  readonly concurrency: number
  /** No further request is read while those read and not yet answered hold this many bytes or more. */
  readonly maxHeldBytes: number
}

/** Whether the requester of a request `Rep.make` received has left (its connection is gone). */
export const requesterLeft = new WeakMap<object, () => boolean>()

/** True when the requester of `request` has left; false when that cannot be told (a replier not of `Rep.make`). */
export const hasLeft = (request: object): boolean => requesterLeft.get(request)?.() ?? false

/** How many times the largest message the default `maxHeldBytes` is. */
export const HELD_MESSAGES = 4

/** How often the read-ahead, while full, is looked over for requesters that left (nng tells of no departure). */
const LOOK_OVER_MS = 50

/** `concurrency` (default 64) and `maxHeldBytes` (default `HELD_MESSAGES` × the replier's `maxMessageSize`), or `InvalidOption`. */
export const boundsOf = (
  options: {
    readonly concurrency?: number | undefined
    readonly maxHeldBytes?: number | undefined
    readonly maxMessageSize?: number | undefined
  },
  replierLimit?: number
): Effect.Effect<Bounds, IpcError.IpcError> => {
  const notObject = TransportOptions.notAnObject(options, "the replier's options")
  if (notObject !== undefined) return Effect.fail(notObject)
  const maxMessageSize = replierLimit ?? options.maxMessageSize ?? Framing.DEFAULT_MAX_FRAME_SIZE
  const concurrency = options.concurrency ?? 64
  if (!(Number.isSafeInteger(concurrency) && concurrency >= 1)) {
    // none, a fraction or NaN would never answer a request
    return Effect.fail(
      IpcError.make("InvalidOption", `concurrency ${String(concurrency)} is not a whole number of requests, at least 1`)
    )
  }
  const maxHeldBytes = options.maxHeldBytes ?? HELD_MESSAGES * Math.max(1, maxMessageSize)
  if (!(maxHeldBytes === Infinity || (Number.isSafeInteger(maxHeldBytes) && maxHeldBytes >= 1))) {
    return Effect.fail(
      IpcError.make("InvalidOption", `maxHeldBytes ${String(maxHeldBytes)} is not a whole number of bytes, at least 1`)
    )
  }
  return Effect.succeed({ concurrency, maxHeldBytes })
}

/**
 * Takes requests from `receive` and runs `handle` on each until interrupted
 * (or `receive` fails), within `bounds`; a request whose requester left
 * (`left`) before its turn is dropped unhandled. With `interruptLeft`, while
 * every handler is busy, those whose requester left are interrupted (looked
 * over every `LOOK_OVER_MS`), so that handlers that never end for callers
 * gone cannot hold the server for good.
 */
export const answer = <A extends Held, R>(
  receive: Effect.Effect<A, IpcError.IpcError>,
  left: (request: A) => boolean,
  handle: (request: A) => Effect.Effect<void, never, R>,
  bounds: Bounds,
  interruptLeft = false
): Effect.Effect<never, IpcError.IpcError, R> =>
  Effect.scoped(Effect.gen(function*() {
    const { concurrency, maxHeldBytes } = bounds
    const permits = Semaphore.makeUnsafe(concurrency)
    const running = yield* FiberSet.make<void, never>()
    // the requests being handled, and their fibers (set once forked): looked over while all handlers are busy
    const handling = new Set<{ readonly request: A; fiber?: Fiber.Fiber<void> }>()
    const saturated = Latch.makeUnsafe(false)
    const evictLeft: Effect.Effect<never> = Effect.forever(Effect.gen(function*() {
      yield* saturated.await
      yield* Effect.sleep(LOOK_OVER_MS)
      if (handling.size < concurrency) return saturated.closeUnsafe()
      const gone = [...handling].flatMap((entry) =>
        entry.fiber !== undefined && left(entry.request) ? [entry.fiber] : []
      )
      yield* Effect.forEach(gone, (fiber) => FiberSet.run(running, Fiber.interrupt(fiber)), { discard: true })
    }))
    // requests read ahead of busy handlers, oldest first: taken from nng's queues, their connections are read
    // again, so a requester that left is seen gone (and its descriptor closed) at once
    const ahead: Array<A> = []
    // bytes of the requests read and not yet answered or dropped (ahead and running)
    let held = 0
    const filled = Latch.makeUnsafe(false)
    const room = Latch.makeUnsafe(true)
    const full = () => ahead.length >= concurrency || held >= maxHeldBytes
    const release = (request: A) => {
      held -= request.body.byteLength
      room.openUnsafe()
    }
    const dropLeft = () => {
      const staying = ahead.filter((request) => !left(request))
      if (staying.length === ahead.length) return
      for (const request of ahead) if (!staying.includes(request)) release(request)
      ahead.splice(0, ahead.length, ...staying)
    }
    // reads while there is room; while full, wakes when a handler takes or finishes a request, and looks the
    // read-ahead over for requesters that left every LOOK_OVER_MS
    const readAhead = Effect.forever(Effect.suspend(() => {
      if (full()) dropLeft()
      if (full()) {
        room.closeUnsafe()
        return Effect.raceFirst(room.await, Effect.sleep(LOOK_OVER_MS))
      }
      return Effect.map(receive, (request) => {
        held += request.body.byteLength
        ahead.push(request)
        filled.openUnsafe()
      })
    }))
    // the oldest request read ahead whose requester is still there, waiting for one
    const next: Effect.Effect<A> = Effect.suspend(() => {
      for (let request = ahead.shift(); request !== undefined; request = ahead.shift()) {
        room.openUnsafe()
        if (!left(request)) return Effect.succeed(request)
        release(request)
      }
      filled.closeUnsafe()
      return Effect.andThen(filled.await, next)
    })
    const answering = Effect.forever(
      Effect.gen(function*() {
        yield* Semaphore.take(permits, 1)
        const request = yield* next
        const entry: { readonly request: A; fiber?: Fiber.Fiber<void> } = { request }
        handling.add(entry)
        if (interruptLeft && handling.size >= concurrency) saturated.openUnsafe()
        entry.fiber = yield* FiberSet.run(
          running,
          handle(request).pipe(
            Effect.ensuring(Effect.sync(() => {
              handling.delete(entry)
              release(request)
            })),
            Effect.ensuring(Semaphore.release(permits, 1))
          )
        )
      })
    )
    return yield* Effect.raceFirst(readAhead, Effect.raceFirst(answering, evictLeft))
  }))
