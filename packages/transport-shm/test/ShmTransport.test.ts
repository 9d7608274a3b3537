/**
 * One way to build the transport: `ShmTransport.layer` and the registry's
 * `descriptor` are both `ShmTransport.makeScoped`, so the layer runs the
 * orphan collector too (every 60 s from 60 s after start).
 */
import * as Transport from "@effect-ipc/core/Transport"
import * as Shm from "@effect-ipc/transport-shm"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/testing/TestClock"
import * as Fs from "node:fs"
import { spawnChild } from "./helpers.ts"

const prefix = `transport-test-${process.pid}`
let n = 0
const fresh = () => `${prefix}-${n++}`
const exists = (name: string) => Fs.existsSync(`/dev/shm/${name}`)

/** Waits (in real time, under the test clock) until `name` is gone from `/dev/shm`, for at most 20 s. */
const awaitGone = (name: string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    while (exists(name) && Date.now() < deadline) {
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))
    }
    return !exists(name)
  })

afterAll(() => Effect.runPromise(Effect.ignore(Shm.SegmentGc.collect({ prefix }))))

describe("ShmTransport.layer", () => {
  it.effect("runs the orphan collector, as the registry's descriptor does: a killed producer's link is removed", () =>
    Effect.gen(function*() {
      const name = fresh()
      const producer = yield* spawnChild("create", name, "1000", "3600000")
      yield* producer.kill
      assert.isTrue(exists(name), "the dead producer left its link behind")
      // the default collector, limited to this test's segment (others' tests leave orphans on purpose)
      const context = yield* Layer.build(Shm.ShmTransport.layer({ collector: { prefix: name } }))
      assert.deepStrictEqual(Context.get(context, Transport.Transport).schemes, ["shm"])
      // the first sweep comes 60 s after the transport is built
      yield* TestClock.adjust("61 seconds")
      assert.isTrue(yield* awaitGone(name), "the collector did not remove the orphan")
    }))
})
