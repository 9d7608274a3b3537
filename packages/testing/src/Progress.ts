/**
 * Waiting on progress in tests of back-pressure: a stall can only be seen as
 * the absence of progress, so a count is watched until it stops moving.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"

/** Options of `stalls`. */
export interface StallOptions {
  /** How long the count must stay unchanged, in ms (default 500). */
  readonly quiet?: number | undefined
  /** How long it may keep moving before `stalls` fails, in ms (default 30 000). */
  readonly limit?: number | undefined
  /** What is waited for, named in the failure. */
  readonly what?: string | undefined
}

/** Waits until `count()` is unchanged for `quiet` ms and returns it; fails after `limit` ms of steady progress. */
export const stalls = (count: () => number, options: StallOptions = {}): Effect.Effect<number, Error> =>
  Effect.gen(function*() {
    const quiet = options.quiet ?? 500
    const limit = options.limit ?? 30_000
    const deadline = Date.now() + limit
    let last = count()
    let since = Date.now()
    while (Date.now() - since < quiet) {
      if (Date.now() > deadline) {
        return yield* Effect.fail(
          new Error(`still moving after ${limit} ms (at ${count()}): ${options.what ?? "a count"}`)
        )
      }
      yield* Effect.sleep("50 millis")
      if (count() !== last) {
        last = count()
        since = Date.now()
      }
    }
    return last
  })
