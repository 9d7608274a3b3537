/**
 * The RPC group the conformance suite serves and calls on every transport,
 * from the test process and from child processes alike.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"

/** The typed error of `Fail`. */
export class Refused extends Schema.TaggedError<Refused>()("Refused", { why: Schema.String }) {}

/** Procedures exercised by the suite. */
export class ConformanceApi extends RpcGroup.make(
  Rpc.make("Echo", { payload: { n: Schema.Number }, success: Schema.Number }),
  Rpc.make("Fail", { payload: { why: Schema.String }, error: Refused }),
  Rpc.make("Range", { payload: { n: Schema.Int }, success: Schema.Int, stream: true }),
  Rpc.make("Sleep", { payload: { millis: Schema.Int } }),
  Rpc.make("Calls", { success: Schema.Int })
) {}

/** Handlers: `Calls` counts every call this server has received (itself excluded). */
export const ConformanceHandlers = ConformanceApi.toLayer(Effect.sync(() => {
  let calls = 0
  const count = <A, E>(effect: Effect.Effect<A, E>) => Effect.suspend(() => (calls++, effect))
  return {
    Echo: ({ n }) => count(Effect.succeed(n)),
    Fail: ({ why }) => count(Effect.fail(new Refused({ why }))),
    Range: ({ n }) => Stream.unwrap(count(Effect.sync(() => Stream.range(1, n)))),
    Sleep: ({ millis }) => count(Effect.sleep(millis)),
    Calls: () => Effect.sync(() => calls)
  }
}))
