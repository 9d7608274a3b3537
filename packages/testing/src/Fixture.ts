/**
 * The end of a fixture script that a test runs as a child process and reads
 * one JSON line from: what the program returned, or `{ "error": ... }` when
 * it failed, then exit status 0 either way (a crash is another status, with
 * its stack on stderr).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** Runs `program` in a scope, prints its result (or `{ error }`) as one JSON line and exits. */
export const reportJson = <A, E>(program: Effect.Effect<A, E, Scope.Scope>): Promise<void> =>
  Effect.runPromise(Effect.scoped(program)).then(
    (said) => {
      process.stdout.write(`${JSON.stringify(said)}\n`, () => process.exit(0))
    },
    (error: unknown) => {
      process.stdout.write(`${JSON.stringify({ error: String(error) })}\n`, () => process.exit(0))
    }
  )
