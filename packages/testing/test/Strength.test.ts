/**
 * The conformance suite can fail: run against `memory://` with a fault put in
 * on purpose (`fixtures/faulty/faults.ts`: a message dropped, duplicated,
 * reordered, damaged, read late from the sender's buffer, refused for its
 * size, or sends that never wait), the case meant to catch that fault fails,
 * and the same cases pass without a fault. A suite that passed a broken
 * transport would hide the gap it was written to show.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { Fault } from "./fixtures/faulty/faults.ts"

const root = Path.resolve(import.meta.dirname, "../../..")
const config = Path.join(import.meta.dirname, "fixtures/faulty/vitest.config.ts")
const vitest = Path.join(root, "node_modules/.bin/vitest")

/** Each fault, with the start of the title of the case that must fail for it. */
const catches: ReadonlyArray<readonly [Fault, string]> = [
  ["drop", "delivers 100k messages in order, none lost"],
  ["duplicate", "delivers 100k messages in order, none lost"],
  // the echo above it crosses twice: the same swap on both legs cancels out there
  ["reorder", "delivers 100k messages in order on one leg alone"],
  // a bit flipped on each leg of an echo cancels out: the case's one-leg part sees it
  ["corrupt", "carries messages of 0 B, 1 B, 64 KiB and 16 MiB whole"],
  ["cap", "carries messages of 0 B, 1 B, 64 KiB and 16 MiB whole"],
  ["alias", "a message is the sender's bytes at send time"],
  ["unbounded", "back-pressures a sender whose receiver does not read"]
]

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Runs the faulty suite's cases whose titles start with one of `titles`; the status of each case that ran. */
const runSuite = (fault: Fault, titles: ReadonlyArray<string>): Map<string, string> => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-strength-"))
  const report = Path.join(dir, "report.json")
  try {
    const pattern = `(${[...new Set(titles)].map(escape).join("|")})`
    ChildProcess.spawnSync(
      vitest,
      ["run", "--config", config, "-t", pattern, "--reporter=json", `--outputFile=${report}`],
      { cwd: root, env: { ...process.env, FAULT: fault }, stdio: "ignore", timeout: 240_000 }
    )
    const results = JSON.parse(Fs.readFileSync(report, "utf8")) as {
      readonly testResults: ReadonlyArray<
        { readonly assertionResults: ReadonlyArray<{ readonly title: string; readonly status: string }> }
      >
    }
    return new Map(results.testResults.flatMap((file) => file.assertionResults.map((r) => [r.title, r.status])))
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

const statusOf = (statuses: Map<string, string>, title: string): string =>
  [...statuses].find(([name]) => name.startsWith(title))?.[1] ?? "not run"

describe("the conformance suite fails a transport with a fault", () => {
  it("without a fault, the cases below pass", () => {
    const statuses = runSuite("none", catches.map(([, title]) => title))
    for (const [, title] of catches) assert.strictEqual(statusOf(statuses, title), "passed", title)
  }, 300_000)

  for (const [fault, title] of catches) {
    it(`${fault}: "${title}" fails`, () => {
      assert.strictEqual(statusOf(runSuite(fault, [title]), title), "failed")
    }, 300_000)
  }
})
