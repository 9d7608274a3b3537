/**
 * The API both processes share: a plain call, a typed error, a streamed
 * response and a slow call a client can cancel.
 */
import { Schema } from "effect"
import { Rpc, RpcGroup } from "effect/rpc"

/** The typed error of `Withdraw`. */
export class Overdrawn extends Schema.TaggedError<Overdrawn>()("Overdrawn", { balance: Schema.Number }) {}

/** The calculator's procedures. */
export class Api extends RpcGroup.make(
  Rpc.make("Add", { payload: { a: Schema.Number, b: Schema.Number }, success: Schema.Number }),
  Rpc.make("Withdraw", { payload: { amount: Schema.Number }, success: Schema.Number, error: Overdrawn }),
  Rpc.make("Countdown", { payload: { from: Schema.Int }, success: Schema.Int, stream: true }),
  Rpc.make("Slow", { payload: { millis: Schema.Int }, success: Schema.String })
) {}
