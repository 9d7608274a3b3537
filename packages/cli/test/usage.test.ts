/**
 * A usage error without `--json` (a bad flag value, a missing argument, an
 * unknown flag) is one line on stderr naming it and where the help is, exit
 * code 1: not the whole help on stdout with the error after it.
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { runCli } from "./helpers.ts"

it.live("a usage error is one line on stderr, nothing on stdout", () =>
  Effect.gen(function*() {
    const timeout = yield* runCli(["call", "unix:///tmp/x.sock", "Add", `{"a":1,"b":2}`, "--timeout", "0"])
    assert.deepStrictEqual(timeout, {
      code: 1,
      stdout: "",
      stderr:
        `effect-ipc: Usage: Invalid value for flag --timeout: "0". Expected: --timeout must be at least 1 (got 0) (effect-ipc call --help for more)\n`
    })
    const missing = yield* runCli(["call"])
    assert.deepStrictEqual(missing, {
      code: 1,
      stdout: "",
      stderr: "effect-ipc: Usage: Missing required argument: address (effect-ipc call --help for more)\n"
    })
    const unknown = yield* runCli(["shm", "ls", "--nope"])
    assert.deepStrictEqual(unknown, {
      code: 1,
      stdout: "",
      stderr:
        "effect-ipc: Usage: Unrecognized flag: --nope in command effect-ipc shm ls (effect-ipc shm ls --help for more)\n"
    })
  }), 60_000)
