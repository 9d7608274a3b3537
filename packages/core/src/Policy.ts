/**
 * Retry, reconnect and heartbeat policies shared by every transport, as
 * Effect `Schedule`s and durations. Transports and the RPC layers take these
 * as defaults; users pass their own where they need other numbers.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as TransportOptions from "./TransportOptions.ts"

/** Reconnect backoff: 20 ms doubling up to 1 s, jittered (0.8 to 1.2 times each delay, so up to 1.2 s apart); forever. */
export const reconnect: Schedule.Schedule<unknown> = Schedule.min([
  Schedule.exponential("20 millis", 2),
  Schedule.spaced("1 second")
]).pipe(Schedule.jittered)

/**
 * Retry backoff for one operation: 10 ms doubling with jitter, at most `times` retries (default 5;
 * `Infinity`: no limit). A `times` that is not a whole number of at least 0 (`"x"`, `NaN`, `-1`, `2.5`) meant
 * no retries, unseen: a Schedule cannot fail typed, so the schedule dies (a defect naming `times`) when it runs.
 */
export const retry = (times = 5): Schedule.Schedule<unknown> =>
  (typeof times === "number" && times >= 0 && (Number.isSafeInteger(times) || times === Infinity))
    ? Schedule.exponential("10 millis", 2).pipe(Schedule.jittered, Schedule.upTo({ times }))
    : Schedule.fromStep(Effect.die(
      new TypeError(
        `Policy.retry: times ${
          typeof times === "string"
            ? JSON.stringify(times)
            : typeof times === "number"
            ? String(times)
            : TransportOptions.kindOf(times)
        } is not a whole number of retries (at least 0, or Infinity)`
      )
    ))

/** Default heartbeat: ping every 5 s of silence, give the peer up after 15 s without a frame. */
export const heartbeat: { readonly interval: Duration.Duration; readonly timeout: Duration.Duration } = {
  interval: Duration.seconds(5),
  timeout: Duration.seconds(15)
}
