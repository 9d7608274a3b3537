/**
 * `npm ci`, as a CI pipeline installs the project, accepts its lock file: it
 * refuses one that lacks any package the manifests ask for, the optional ones
 * for other platforms included (dprint's binaries for macOS, Windows and
 * other Linux CPUs were missing, and `npm ci` failed on every machine). Run
 * as a dry run on a copy of the manifests, so nothing here is installed or
 * removed.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")

/** A directory holding the root's manifest and lock file and every workspace's manifest. */
const manifests = (): string => {
  const work = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-lock-"))
  for (const file of ["package.json", "package-lock.json"]) {
    Fs.copyFileSync(Path.join(root, file), Path.join(work, file))
  }
  for (const name of Fs.readdirSync(Path.join(root, "packages"))) {
    const manifest = Path.join(root, "packages", name, "package.json")
    if (!Fs.existsSync(manifest)) continue
    Fs.mkdirSync(Path.join(work, "packages", name), { recursive: true })
    Fs.copyFileSync(manifest, Path.join(work, "packages", name, "package.json"))
  }
  return work
}

describe("the lock file", () => {
  it("is in sync with the manifests: npm ci takes it", () => {
    const work = manifests()
    try {
      const result = ChildProcess.spawnSync(
        "npm",
        ["ci", "--dry-run", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        { cwd: work, encoding: "utf8", timeout: 120_000 }
      )
      assert.strictEqual(result.status, 0, `npm ci refused the lock file:\n${result.stdout}\n${result.stderr}`)
    } finally {
      Fs.rmSync(work, { recursive: true, force: true })
    }
  })

  it("names every optional platform package of a locked package", () => {
    const lock = JSON.parse(Fs.readFileSync(Path.join(root, "package-lock.json"), "utf8")) as {
      packages: Record<string, { optionalDependencies?: Record<string, string> }>
    }
    const missing: Array<string> = []
    for (const [path, entry] of Object.entries(lock.packages)) {
      for (const name of Object.keys(entry.optionalDependencies ?? {})) {
        // npm looks beside the package first, then at the top
        const nested = `${path}/node_modules/${name}`
        if (lock.packages[nested] === undefined && lock.packages[`node_modules/${name}`] === undefined) {
          missing.push(`${name} (for ${path || "the root"})`)
        }
      }
    }
    assert.deepStrictEqual(missing, [])
  })
})
