// What the Windows runner (run.mjs) gives test modules in place of `vitest` and `@effect/vitest`:
// describe / it (it.live, it.effect, it.skip) / beforeAll / afterAll register cases in `registry`,
// `assert` is chai's (as vitest's is). Only what the win32 test modules use is here; anything
// else throws, so a module that needs more fails loudly instead of passing by omission.
import * as Effect from "effect/Effect"
import { assert } from "chai"

export { assert }

/** Every case and hook registered so far, in order. */
export const registry = { cases: [], beforeAll: [], afterAll: [] }
const prefix = []

export const describe = (name, body) => {
  prefix.push(name)
  try {
    body()
  } finally {
    prefix.pop()
  }
}

// a case's time limit is a hang guard: under Wine, where a Node process takes 10 to 30 s to start on a
// loaded machine, it is three times what the case asks for
const SLOWER = 3
const add = (title, run, timeout, skip = false) =>
  void registry.cases.push({ title: [...prefix, title].join(" > "), run, timeout: (timeout ?? 60_000) * SLOWER, skip })

/** Runs an Effect test body in a scope, with the live clock. */
const effectCase = (body) => () => Effect.runPromise(Effect.scoped(Effect.suspend(() => body())))

export const it = (title, fn, timeout) => add(title, async () => await fn(), timeout)
it.live = (title, body, timeout) => add(title, effectCase(body), timeout)
it.effect = it.live
it.skip = (title) => add(title, async () => {}, 0, true)
export const test = it
export const beforeAll = (fn) => void registry.beforeAll.push(fn)
export const afterAll = (fn) => void registry.afterAll.push(fn)
export const expect = () => {
  throw new Error("expect is not available in the Windows runner: use assert")
}
