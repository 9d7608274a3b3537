/**
 * scripts/summary.mjs: the closing line of `npm test`, from a real vitest JSON report.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { root } from "./helpers.ts"

const summary = Path.join(root, "scripts", "summary.mjs")
const vitest = Path.join(root, "node_modules", "vitest", "vitest.mjs")

const run = (command: string, args: ReadonlyArray<string>, cwd: string) =>
  ChildProcess.spawnSync(command, args, { cwd, encoding: "utf8", timeout: 120_000 })

/** Runs vitest on `files` in `dir` and returns its JSON report's path (`name.json`) and vitest's exit status. */
const report = (dir: string, name: string, files: Record<string, string>) => {
  for (const [file, text] of Object.entries(files)) Fs.writeFileSync(Path.join(dir, file), text)
  // no imports in the fixtures: they live outside the repository, so globals stand in for them
  Fs.writeFileSync(Path.join(dir, "vitest.config.mjs"), `export default { test: { globals: true } }\n`)
  const out = Path.join(dir, `${name}.json`)
  const result = run(process.execPath, [vitest, "run", "--reporter=json", `--outputFile.json=${out}`], dir)
  assert.isTrue(Fs.existsSync(out), result.stderr)
  return { out, status: result.status ?? 1 }
}

const closing = (args: ReadonlyArray<string>, cwd: string) => {
  const result = run(process.execPath, [summary, ...args], cwd)
  return { line: result.stdout.trim().split("\n").at(-1), status: result.status }
}

const output = (args: ReadonlyArray<string>, cwd: string) => run(process.execPath, [summary, ...args], cwd).stdout

describe("scripts/summary.mjs", () => {
  it("counts passed, failed and skipped, and fails the run when a suite cannot load", () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-summary-"))
    try {
      const passing = {
        "ok.test.ts": `it("passes", () => {})\nit.skip("a case — not applicable: raw-stream (why)", () => {})\n`
      }
      const good = report(dir, "good", passing)
      assert.strictEqual(good.status, 0)
      assert.deepStrictEqual(closing([good.out, "0", "0"], dir), { line: "1 passed, 0 failed, 1 skipped", status: 0 })
      // what was skipped is listed by title before the closing line
      assert.strictEqual(
        output([good.out, "0", "0"], dir),
        "skipped:\n  a case — not applicable: raw-stream (why)\n1 passed, 0 failed, 1 skipped\n"
      )

      const broken = report(dir, "broken", { ...passing, "broken.test.ts": `throw new Error("cannot load")\n` })
      assert.notStrictEqual(broken.status, 0)
      assert.deepStrictEqual(closing([broken.out, "0", String(broken.status)], dir), {
        line: "1 passed, 1 failed, 1 skipped",
        status: 1
      })

      // a failed build step, a missing report, a vitest that failed without saying why
      assert.deepStrictEqual(closing([good.out, "2", "0"], dir), { line: "1 passed, 2 failed, 1 skipped", status: 1 })
      assert.deepStrictEqual(closing([Path.join(dir, "none.json"), "0", "1"], dir), {
        line: "0 passed, 1 failed, 0 skipped",
        status: 1
      })
      assert.deepStrictEqual(closing([good.out, "0", "1"], dir), { line: "1 passed, 1 failed, 1 skipped", status: 1 })
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
