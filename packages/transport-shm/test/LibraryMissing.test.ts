/**
 * `LibraryMissing` (the README's Errors): koffi is required on first use, so a process where it cannot load
 * imports the package and gets a typed `LibraryMissing` naming koffi from each call that needs it. The process is
 * real: Node's permission model without `--allow-addons` refuses to load any native addon, koffi included.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { leftovers, spawnChildWith } from "./helpers.ts"

const noAddons = ["--permission", "--allow-fs-read=*", "--allow-fs-write=*"]

describe("shm without koffi", () => {
  it.live(
    "a process that cannot load koffi imports the package; links, segments, listen and dial are LibraryMissing",
    () =>
      Effect.gen(function*() {
        const name = `library-missing-test-${process.pid}`
        const child = yield* spawnChildWith({ nodeFlags: noAddons }, "no-addons", `shm://${name}`, name)
        const outcomes = JSON.parse(child.said) as Record<string, { reason: string; detail: string } | "ok">
        assert.deepStrictEqual(Object.keys(outcomes), ["create", "acquire", "segment", "listen", "dial"])
        for (const [call, outcome] of Object.entries(outcomes)) {
          assert.notStrictEqual(outcome, "ok", call)
          if (outcome === "ok") continue
          assert.strictEqual(outcome.reason, "LibraryMissing", `${call}: ${outcome.detail}`)
          assert.match(outcome.detail, /^cannot load koffi: /, call)
        }
        yield* child.kill
        assert.deepStrictEqual(leftovers(name), [])
      }).pipe(Effect.scoped),
    60_000
  )
})
