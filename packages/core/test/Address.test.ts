import { Address, IpcError } from "@effect-ipc/core"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import fc from "fast-check"

/** Runs `effect` and returns its value or its typed error; a defect (a throw) fails the test. */
const settle = <A>(effect: Effect.Effect<A, IpcError.IpcError>) => {
  const exit = Effect.runSyncExit(Effect.result(effect))
  if (exit._tag === "Failure") throw new Error(`not a typed error: ${Cause.pretty(exit.cause)}`)
  return exit.value
}

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
        assert.strictEqual(error.reason._tag, "InvalidAddress", bad)
      }
      const other = yield* Effect.flip(Address.parseFor("shm://x", ["unix"]))
      assert.strictEqual(other.reason._tag, "UnsupportedScheme")
      const relative = yield* Effect.flip(Effect.flatMap(Address.parse("unix://relative/x"), Address.path))
      assert.strictEqual(relative.reason._tag, "InvalidAddress")
      // a NUL passed the address and failed later as Open (the system call's refusal)
      const nul = yield* Effect.flip(Address.parse("unix:///tmp/a\0b.sock"))
      assert.strictEqual(nul.detail, "an address holds no NUL character")
      const escaped = yield* Effect.flip(Effect.flatMap(Address.parse("unix:///tmp/a%00b.sock"), Address.path))
      assert.strictEqual(escaped.detail, "a path holds no NUL character (%00)")
      // "unix:///tmp/x.sock?x=1" was the file "x.sock?x=1" (where "%20" was decoded): a bare ? or # is refused,
      // a path's own are %3F and %23 (as fromPath writes them)
      for (const bare of ["unix:///tmp/x.sock?x=1", "unix:///tmp/x.sock#frag", "fifo:///tmp/a?", "nng+ipc:///t/a#b"]) {
        const error = yield* Effect.flip(Effect.flatMap(Address.parse(bare), Address.path))
        assert.strictEqual(error.reason._tag, "InvalidAddress", bare)
        assert.match(error.detail, /takes no query or fragment/, bare)
      }
      const own = yield* Effect.flatMap(Address.fromPath("unix", "/tmp/a?b#c.sock"), Address.parse)
      assert.strictEqual(yield* Address.path(own), "/tmp/a?b#c.sock")
    }))
})

describe("Address: malformed percent-escapes", () => {
  it.effect("are InvalidAddress for every scheme, never a URIError", () =>
    Effect.gen(function*() {
      for (
        const bad of [
          "unix:///some/dir/a%zz.sock",
          "file:///d/%E0%A4%A",
          "fifo:///d/%",
          "pipe://a%2",
          "shm://x%zz",
          "memory://m%G0",
          "nng+ipc:///tmp/%zz.ipc",
          "child:%5B%22x%22%5D%",
          "unix:@name%ff%zz",
          "file:///d/%ED%A0%80"
        ]
      ) {
        const exit = yield* Effect.exit(Effect.flatMap(Address.parse(bad), Address.path))
        assert.isTrue(exit._tag === "Failure", bad)
        const error = yield* Effect.flip(Effect.flatMap(Address.parse(bad), Address.path))
        assert.strictEqual(error.reason._tag, "InvalidAddress", bad)
      }
    }))
})

describe("Address: properties (fast-check, fixed seed)", () => {
  const runs = { seed: 20261129, numRuns: 2000 }

  // strings made of the pieces that matter to the parser, and any UTF-16 at all
  const piece = fc.oneof(
    fc.constantFrom("%", "%2", "%zz", "%E0%A4%A", "%ED%A0%80", "%C3%A9", "%25", "%2F", "%00", "?", "#", "/", "//", "@"),
    fc.constantFrom("unix:", "unix://", "file:///", "shm://", "nng+tcp://", "child:", "A+b.c-d:", "1x:", ":"),
    fc.string({ unit: "binary", maxLength: 6 }),
    fc.string({ unit: "grapheme-ascii", maxLength: 6 })
  )
  const anyAddress = fc.oneof(
    fc.array(piece, { maxLength: 8 }).map((parts) => parts.join("")),
    fc.string({ unit: "binary" })
  )

  it("never throws on any string: a typed InvalidAddress or a parsed address whose path decodes", () => {
    fc.assert(
      fc.property(anyAddress, (raw) => {
        const parsed = settle(Address.parse(raw))
        if (parsed._tag === "Failure") {
          assert.strictEqual(parsed.failure.reason._tag, "InvalidAddress", raw)
          return
        }
        assert.strictEqual(parsed.success.raw, raw)
        const path = settle(Address.path(parsed.success))
        if (path._tag === "Failure") assert.strictEqual(path.failure.reason._tag, "InvalidAddress", raw)
        for (const part of parsed.success.rest.split("?")) settle(Address.decode(part))
      }),
      runs
    )
  })

  const schemes = fc.tuple(
    fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz"),
    fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789+.-"), maxLength: 8 })
  ).map(([first, rest]) => first + rest)
  // a location as a writer would put it: any well-formed text, escaped
  const text = fc.string({ unit: "grapheme", minLength: 1, maxLength: 24 })

  it("format and parse round-trip for every valid address", () => {
    fc.assert(
      fc.property(schemes, fc.boolean(), text, fc.boolean(), (scheme, hierarchical, location, escape) => {
        const written = escape ? encodeURIComponent(location) : location.replaceAll("%", "%25")
        const rest = !hierarchical && written.startsWith("//") ? `.${written}` : written
        const raw = Address.format({ scheme, hierarchical, rest })
        const parsed = settle(Address.parse(raw))
        if (parsed._tag === "Failure") throw new Error(`${raw}: ${parsed.failure.message}`)
        assert.deepStrictEqual(parsed.success, { raw, scheme, hierarchical, rest })
        assert.strictEqual(Address.format(parsed.success), raw)
        const decoded = settle(Address.decode(rest))
        assert.deepStrictEqual(decoded, Result.succeed(decodeURIComponent(rest)))
      }),
      runs
    )
  })

  it.effect("a relative path is refused with an example of the address's own scheme", () =>
    Effect.gen(function*() {
      for (const scheme of ["unix", "file", "fifo"]) {
        const error = yield* Effect.flip(Effect.flatMap(Address.parse(`${scheme}://relative/name`), Address.path))
        assert.strictEqual(error.reason._tag, "InvalidAddress")
        assert.strictEqual(error.detail, `expected an absolute path, e.g. ${scheme}:///tmp/app`)
      }
    }))

  it("fromPath and path round-trip for every absolute path", () => {
    const paths = fc.array(fc.string({ unit: "grapheme", maxLength: 12 }), { minLength: 1, maxLength: 5 })
      .map((parts) => `/${parts.join("/")}`)
    fc.assert(
      fc.property(paths, fc.constantFrom("unix", "file", "fifo", "nng+ipc"), (path, scheme) => {
        const address = settle(Address.fromPath(scheme, path))
        if (address._tag === "Failure") throw new Error(address.failure.message)
        const back = settle(Effect.flatMap(Address.parse(address.success), Address.path))
        assert.deepStrictEqual(back, Result.succeed(path), address.success)
      }),
      runs
    )
    const lone = settle(Address.fromPath("unix", "/tmp/\ud800.sock"))
    assert.strictEqual(lone._tag === "Failure" ? lone.failure.reason._tag : "parsed", "InvalidAddress")
  })
})
