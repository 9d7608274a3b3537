import { Address } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"

describe("Address", () => {
  it.effect("parses scheme and location", () =>
    Effect.gen(function*() {
      const unix = yield* Address.parse("unix:///run/app.sock")
      assert.deepStrictEqual(unix, {
        raw: "unix:///run/app.sock",
        scheme: "unix",
        rest: "/run/app.sock",
        hierarchical: true
      })
      const tcp = yield* Address.parse("nng+tcp://127.0.0.1:5555")
      assert.strictEqual(tcp.scheme, "nng+tcp")
      assert.strictEqual(tcp.rest, "127.0.0.1:5555")
      const abstract = yield* Address.parse("unix:@name")
      assert.deepStrictEqual([abstract.rest, abstract.hierarchical], ["@name", false])
      assert.strictEqual(yield* Address.path(yield* Address.parse("file:///a%20b/c")), "/a b/c")
    }))

  it.effect("fails with InvalidAddress or UnsupportedScheme", () =>
    Effect.gen(function*() {
      for (const bad of ["", "/tmp/x.sock", "unix://", "1unix:///x"]) {
        const error = yield* Effect.flip(Address.parse(bad))
        assert.strictEqual(error.reason, "InvalidAddress", bad)
      }
      const other = yield* Effect.flip(Address.parseFor("shm://x", ["unix"]))
      assert.strictEqual(other.reason, "UnsupportedScheme")
      const relative = yield* Effect.flip(Effect.flatMap(Address.parse("unix://relative/x"), Address.path))
      assert.strictEqual(relative.reason, "InvalidAddress")
    }))
})
