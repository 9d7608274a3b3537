/**
 * The API reference (`npm run docs`, typedoc over every public module) builds,
 * and fails on an export without documentation.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")
const typedoc = Path.join(root, "node_modules", "typedoc", "bin", "typedoc")
const work = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-docs-"))
afterAll(() => Fs.rmSync(work, { recursive: true, force: true }))

/** Runs typedoc with the project's configuration and `args`, writing into the scratch directory. */
const run = (args: ReadonlyArray<string>) =>
  ChildProcess.spawnSync(process.execPath, [typedoc, "--out", Path.join(work, "api"), ...args], {
    cwd: root,
    encoding: "utf8",
    timeout: 240_000
  })

describe("the API reference", () => {
  it("builds from every public module with no warning", () => {
    const result = run([])
    assert.strictEqual(result.status, 0, `${result.stdout}\n${result.stderr}`)
    assert.isTrue(Fs.existsSync(Path.join(work, "api", "index.html")))
    assert.isTrue(Fs.existsSync(Path.join(work, "api", "modules")), "no module pages")
  }, 300_000)

  it("fails on an export without documentation", () => {
    // a module of a package that must be documented, with one export left bare, checked with the
    // project's typedoc options (its own program and entry point)
    const pkg = Path.join(work, "probe")
    Fs.mkdirSync(Path.join(pkg, "src"), { recursive: true })
    Fs.writeFileSync(Path.join(pkg, "package.json"), JSON.stringify({ name: "@effect-ipc/core", type: "module" }))
    Fs.writeFileSync(
      Path.join(pkg, "src", "Probe.ts"),
      "/** Documented. */\nexport const documented = 1\nexport const bare = 2\n"
    )
    Fs.writeFileSync(
      Path.join(pkg, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { strict: true, module: "nodenext", moduleResolution: "nodenext", types: [], noEmit: true },
        include: ["src"]
      })
    )
    const options = JSON.parse(Fs.readFileSync(Path.join(root, "typedoc.json"), "utf8"))
    delete options.$schema
    Fs.writeFileSync(
      Path.join(pkg, "typedoc.json"),
      JSON.stringify({
        ...options,
        tsconfig: Path.join(pkg, "tsconfig.json"),
        entryPoints: [Path.join(pkg, "src", "Probe.ts")],
        exclude: []
      })
    )
    const result = run(["--options", Path.join(pkg, "typedoc.json")])
    const output = result.stdout + result.stderr
    assert.notStrictEqual(result.status, 0, output)
    assert.include(output, "bare (Variable), defined in @effect-ipc/core/src/Probe.ts, does not have any documentation")
    assert.notInclude(output, "documented (Variable)")
  }, 300_000)
})
