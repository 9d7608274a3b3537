// The Windows cases of this package, run for real: Node 22 for Windows under Wine (set up by
// scripts/wine-setup.sh) runs the modules in ./windows with ./windows/run.mjs, and each of their
// cases is reported here as a case of its own, passed, failed (with the Windows-side error) or
// skipped as the Windows side registered it (a conformance case that does not apply says why in
// its title). Wine gets a hard time limit and every Wine process is ended afterwards.
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")
const runner = "packages/transport-pipe/test/windows/run.mjs"
const modules = ["conformance.win.ts", "NamedPipe.win.ts", "ChildPipe.win.ts"].map((name) =>
  `packages/transport-pipe/test/windows/${name}`
)
/** The hard limit of the whole Windows run, in seconds (it takes 3 to 6 minutes on 2 loaded cores). */
const limit = 1800

interface Entry {
  readonly title: string
  readonly status: "listed" | "passed" | "failed" | "skipped"
  readonly error?: string
}

// EFFECT_IPC_WINE=0 leaves the Windows cases out (a machine without the set-up of scripts/setup.sh)
const enabled = process.env["EFFECT_IPC_WINE"] !== "0"
const work = enabled ? Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-wine-")) : ""
afterAll(() => {
  if (enabled) Fs.rmSync(work, { recursive: true, force: true })
})

/** Runs the Windows runner under Wine (scripts/wine.sh: time limit, then every Wine process ended). */
const wine = (name: string, args: ReadonlyArray<string>, seconds: number) =>
  new Promise<{ readonly entries: ReadonlyArray<Entry>; readonly log: string; readonly status: number | null }>(
    (resolve) => {
      const out = Path.join(work, `${name}.jsonl`)
      const logFile = Path.join(work, `${name}.log`)
      const log = Fs.openSync(logFile, "w")
      const child = ChildProcess.spawn("bash", ["scripts/wine.sh", String(seconds), runner, ...args, out, ...modules], {
        cwd: root,
        stdio: ["ignore", log, log]
      })
      child.once("close", (status) => {
        Fs.closeSync(log)
        const text = Fs.existsSync(out) ? Fs.readFileSync(out, "utf8") : ""
        const entries = text.split("\n").filter((line) => line.length > 0).map((line) => JSON.parse(line) as Entry)
        resolve({ entries, log: Fs.readFileSync(logFile, "utf8").slice(-4000), status })
      })
    }
  )

describe("Wine's environment (scripts/wine-env.sh)", () => {
  it("changes nothing for a Linux node: it writes nothing where it runs (its compile cache is Windows')", () => {
    const cwd = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-wine-env-"))
    try {
      // as scripts/wine-setup.sh does (from the repository's root): source the environment, then run node
      const ran = ChildProcess.spawnSync(
        "bash",
        [
          "-c",
          `source ${JSON.stringify(Path.join(root, "scripts/wine-env.sh"))} && "$0" -e "process.exit(0)"`,
          process.execPath
        ],
        { cwd, encoding: "utf8" }
      )
      assert.strictEqual(ran.status, 0, ran.stderr)
      assert.deepStrictEqual(Fs.readdirSync(cwd), [])
    } finally {
      Fs.rmSync(cwd, { recursive: true, force: true })
    }
  })
})

const listed = enabled ? await wine("list", ["--list"], 300) : { entries: [], log: "", status: 0 }

describe("Windows (Node 22 for Windows under Wine)", () => {
  if (!enabled) {
    it.skip("the Windows cases — not run: EFFECT_IPC_WINE=0", () => {})
    return
  }
  if (listed.entries.length === 0) {
    it("lists the Windows cases", () => {
      assert.fail(`the Windows runner listed nothing (exit ${listed.status}; run scripts/setup.sh): ${listed.log}`)
    })
    return
  }
  const results = new Map<string, Entry>()
  let ran = { log: "", status: null as number | null }
  beforeAll(async () => {
    const run = await wine("run", [], limit)
    for (const entry of run.entries) results.set(entry.title, entry)
    ran = run
  }, (limit + 60) * 1000)
  for (const entry of listed.entries) {
    if (entry.status === "skipped") {
      it.skip(entry.title, () => {})
      continue
    }
    it(entry.title, () => {
      const result = results.get(entry.title)
      if (result === undefined) {
        assert.fail(`did not run: the Windows run ended first (exit ${ran.status}): ${ran.log}`)
      }
      if (result.status === "failed") assert.fail(result.error)
      assert.strictEqual(result.status, "passed")
    })
  }
})
