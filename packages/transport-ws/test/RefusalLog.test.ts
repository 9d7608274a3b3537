/**
 * A flood of refused clients is counted exactly but not logged line by line:
 * the first 10 refusals of a minute are warned one by one, the rest summed
 * up in one line (a minute later, or when the listener closes).
 */
import * as Observed from "@effect-ipc/testing/Observed"
import * as Ws from "@effect-ipc/transport-ws"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { freshAddress, sweepTokenFiles } from "./helpers.ts"

afterAll(sweepTokenFiles)

describe("ws:// refusal warnings", () => {
  it.live("25 refused clients: 25 counted, 10 warned one by one, then one line for the 15 more", () =>
    Effect.gen(function*() {
      const { lines, refusals, services } = Observed.make()
      const address = freshAddress("refusal-log")
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Ws.WsServer.listen(address, { tokenFile: false }).pipe(Effect.provide(services))
        // at once: each refused dial takes about 2 s here
        const refused = yield* Effect.forEach(
          Array.from(
            { length: 25 },
            () => Effect.flip(Effect.scoped(Ws.WsClient.dial(address, { token: "wrong-token" })))
          ),
          (dial) => dial,
          { concurrency: "unbounded" }
        )
        for (const error of refused) assert.strictEqual(error.reason._tag, "PeerRejected")
        assert.strictEqual(yield* refusals, 25)
        assert.strictEqual(lines.filter((line) => line.startsWith("refused a connection")).length, 10, lines.join("\n"))
      }))
      // closing the listener says how many more there were
      assert.isTrue(lines.some((line) => line.startsWith("15 more refused in the last minute")), lines.join("\n"))
    }))

  // the summary named ws://127.0.0.1:0/app, the address asked for, not the port bound
  it.live("a listener of port 0: the summary names the port it bound", () =>
    Effect.gen(function*() {
      const { lines, services } = Observed.make()
      let bound = ""
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* Ws.WsServer.listen("ws://127.0.0.1:0/app", { tokenFile: false }).pipe(
          Effect.provide(services)
        )
        bound = listener.address
        // at once: each refused dial takes about 2 s here
        yield* Effect.forEach(
          Array.from(
            { length: 12 },
            () => Effect.flip(Effect.scoped(Ws.WsClient.dial(bound, { token: "wrong-token" })))
          ),
          (dial) => dial,
          { concurrency: "unbounded", discard: true }
        )
      }))
      assert.notMatch(bound, /:0\//)
      const summary = lines.find((line) => line.startsWith("2 more refused in the last minute"))
      assert.isDefined(summary, lines.join("\n"))
      assert.include(summary, `at ${bound} `)
    }))
})
