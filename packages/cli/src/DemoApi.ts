/**
 * The demo service: a typed RPC group that the demo, the CLI's `call`
 * command and the benchmarks serve and call over any transport.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"

/** The typed error of `Divide`. */
export class DivisionByZero extends Schema.TaggedError<DivisionByZero>()("DivisionByZero", {
  dividend: Schema.Number
}) {}

/** The demo procedures. */
export class DemoApi extends RpcGroup.make(
  Rpc.make("Greet", { payload: { name: Schema.String }, success: Schema.String }),
  Rpc.make("Add", { payload: { a: Schema.Number, b: Schema.Number }, success: Schema.Number }),
  Rpc.make("Divide", {
    payload: { a: Schema.Number, b: Schema.Number },
    success: Schema.Number,
    error: DivisionByZero
  }),
  Rpc.make("Countdown", { payload: { from: Schema.Int }, success: Schema.Int, stream: true }),
  Rpc.make("Echo", { payload: { data: Schema.Uint8Array }, success: Schema.Uint8Array }),
  Rpc.make("Record", { payload: { note: Schema.String } }),
  Rpc.make("Notes", { success: Schema.Array(Schema.String) })
) {}

/** The demo handlers. */
export const DemoHandlers = DemoApi.toLayer(Effect.sync(() => {
  const notes: Array<string> = []
  return {
    Greet: ({ name }) => Effect.succeed(`Hello, ${name}! (from pid ${process.pid})`),
    Add: ({ a, b }) => Effect.succeed(a + b),
    Divide: ({ a, b }) => b === 0 ? Effect.fail(new DivisionByZero({ dividend: a })) : Effect.succeed(a / b),
    Countdown: ({ from }) => Stream.range(0, from - 1).pipe(Stream.map((i) => from - i)),
    Echo: ({ data }) => Effect.succeed(data),
    Record: ({ note }) => Effect.sync(() => void notes.push(note)),
    Notes: () => Effect.sync(() => [...notes])
  }
}))
