/**
 * A flood of clients refused by the listener's `authorize` (over nng+ipc://)
 * is counted exactly but not logged line by line: the first 10 refusals of a
 * minute are warned one by one, the rest summed up in one line (a minute
 * later, or when the listener closes).
 */
import * as Observed from "@effect-ipc/testing/Observed"
import { NngTransport } from "@effect-ipc/transport-nng"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

describe("nng refusal warnings", () => {
  it.live("25 refused clients: 25 counted, 10 warned one by one, then one line for the 15 more", () =>
    Effect.gen(function*() {
      // each refused hello was logged, uncounted: a flood wrote megabytes of warnings
      const { lines, refusals, services } = Observed.make()
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-nng-refusals-"))),
        (made) => Effect.sync(() => Fs.rmSync(made, { recursive: true, force: true }))
      )
      const address = `nng+ipc://${Path.join(dir, "lobby.ipc")}`
      yield* Effect.scoped(Effect.gen(function*() {
        yield* NngTransport.make({ authorize: () => false }).listen(address).pipe(Effect.provide(services))
        for (let i = 0; i < 25; i++) {
          const refused = yield* Effect.flip(Effect.scoped(NngTransport.make().dial(address)))
          assert.strictEqual(refused.reason._tag, "PeerRejected", refused.message)
        }
        assert.strictEqual(yield* refusals, 25)
        assert.strictEqual(lines.filter((line) => line.startsWith("refused a connection")).length, 10, lines.join("\n"))
      }))
      // closing the listener says how many more there were
      assert.isTrue(lines.some((line) => line.startsWith("15 more refused in the last minute")), lines.join("\n"))
    }).pipe(Effect.scoped))
})
