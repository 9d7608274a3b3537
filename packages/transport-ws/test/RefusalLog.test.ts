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
        for (let i = 0; i < 25; i++) {
          const refused = yield* Effect.flip(Effect.scoped(Ws.WsClient.dial(address, { token: "wrong-token" })))
          assert.strictEqual(refused.reason._tag, "PeerRejected")
        }
        assert.strictEqual(yield* refusals, 25)
        assert.strictEqual(lines.filter((line) => line.startsWith("refused a connection")).length, 10, lines.join("\n"))
      }))
      // closing the listener says how many more there were
      assert.isTrue(lines.some((line) => line.startsWith("15 more refused in the last minute")), lines.join("\n"))
    }))
})
