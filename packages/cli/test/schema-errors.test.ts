/**
 * Schema failures as a user reads them: a `call` payload, a reply that does not
 * fit the procedure's schema and a request `serve` cannot decode name the field,
 * what was expected there (the schema's type, not its JSON codec's
 * `"Infinity" | "-Infinity" | "NaN"`) and what was given, plain and `--json`.
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Path from "node:path"
import { cli, fixtures, root, runCli, socketDir } from "./helpers.ts"

const { socket } = socketDir("schema-errors")
const mismatch = Path.relative(root, Path.join(fixtures, "demo-mismatch.ts"))

it.live("call names the field, what its schema expects and what was given", () =>
  Effect.gen(function*() {
    // the payload is decoded before dialing: no server is needed
    const address = socket()
    const plain = yield* runCli(["call", address, "Add", `{"a":"x"}`])
    assert.deepStrictEqual(plain, {
      code: 1,
      stdout: "",
      stderr: `effect-ipc: Encode: bad payload for Add: a: expected a number, got "x"; b: missing, expected a number\n`
    })
    const json = yield* runCli(["call", address, "Add", `{"a":"x","b":2}`, "--json"])
    assert.deepStrictEqual(json, {
      code: 1,
      stdout: `{"event":"error","reason":"Encode","detail":"bad payload for Add: a: expected a number, got \\"x\\""}\n`,
      stderr: ""
    })
    const notObject = yield* runCli(["call", address, "Add", "[1,2]"])
    assert.strictEqual(notObject.stderr, "effect-ipc: Encode: bad payload for Add: expected an object, got [1,2]\n")
    const notInt = yield* runCli(["call", address, "Countdown", `{"from":1.5}`])
    assert.strictEqual(
      notInt.stderr,
      "effect-ipc: Encode: bad payload for Countdown: from: expected an integer, got 1.5\n"
    )
  }), 60_000)

it.live(
  "a reply that does not fit the procedure's schema names the field and what was expected",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const server = yield* cli("serve", address)
      yield* server.ready(`serving DemoApi on ${address}`)
      const plain = yield* runCli(["call", address, "Greet", `{"name":"Maya"}`, "--module", mismatch])
      assert.deepStrictEqual(plain, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: Decode: Greet: the reply does not fit its schema: value: expected a number (${address})\n`
      })
      const json = yield* runCli(["call", address, "Greet", `{"name":"Maya"}`, "--module", mismatch, "--json"])
      assert.deepStrictEqual(json, {
        code: 1,
        stdout:
          `{"event":"error","reason":"Decode","detail":"Greet: the reply does not fit its schema: value: expected a number (${address})","address":"${address}"}\n`,
        stderr: ""
      })
    }).pipe(Effect.scoped),
  60_000
)

it.live(
  "serve refuses a request it cannot decode naming the procedure, the field and what was expected",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const server = yield* cli("serve", address)
      yield* server.ready(`serving DemoApi on ${address}`)
      // a client whose Add sends a string where the demo's schema wants a number; over JSON, as a Python peer's
      const json = yield* runCli([
        "call",
        address,
        "Add",
        `{"a":"x","b":1}`,
        "--module",
        mismatch,
        "--serialization",
        "json",
        "--json"
      ])
      assert.deepStrictEqual(json, {
        code: 1,
        stdout: `{"event":"error","reason":"Unknown","detail":"Add: a: expected a number"}\n`,
        stderr: ""
      })
      // packed decodes the payload's type directly (effect's own text), shown whole: the field is not cut off
      const packed = yield* runCli(["call", address, "Add", `{"a":"x","b":1}`, "--module", mismatch])
      assert.deepStrictEqual(packed, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: Unknown: Add: Expected number at ["a"]\n`
      })
      // and goes on serving
      const add = yield* runCli(["call", address, "Add", `{"a":1,"b":2}`])
      assert.deepStrictEqual(add, { code: 0, stdout: "3\n", stderr: "" })
    }).pipe(Effect.scoped),
  60_000
)
