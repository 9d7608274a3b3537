/**
 * libnng itself: loaded only when first used, a typed error naming it when
 * it is missing, and a process that used it always exits cleanly.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { nodeArgs } from "./fixtures/process.ts"

const run = (mode: string, env: Record<string, string> = {}, via: "descriptor" | "layer" = "descriptor") =>
  ChildProcess.spawnSync(process.execPath, nodeArgs("library.ts", [mode, via]), {
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: 30_000
  })

describe("libnng", () => {
  // the registry's descriptor and `NngTransport.layer` build the transport alike (`NngTransport.makeScoped`)
  describe.each(["descriptor", "layer"] as const)("building the transport through its %s", (via) => {
    it("loads libnng and starts nng's threads (the warm-up); importing the package loads nothing", () => {
      const result = run("lazy", {}, via)
      assert.strictEqual(result.status, 0, result.stderr)
      assert.strictEqual(result.stdout, "before no\nafter yes\nthreads yes\n")
    })

    it("with libnng missing, fails with a LibraryMissing error that names it and says how to install it", () => {
      const result = run("load", { EFFECT_IPC_LIBNNG: "libnng-not-installed.so.9" }, via)
      assert.strictEqual(result.status, 0, result.stderr)
      const outcome = JSON.parse(result.stdout)
      assert.strictEqual(outcome.reason, "LibraryMissing")
      assert.include(outcome.detail, "libnng-not-installed.so.9")
      assert.include(outcome.detail, "apt-get install libnng1")
    })

    it("with libnng present, succeeds", () => {
      const result = run("load", {}, via)
      assert.strictEqual(result.status, 0, result.stderr)
      const outcome = JSON.parse(result.stdout)
      assert.isTrue(outcome.ok)
      assert.match(outcome.version, /^1\.\d+\.\d+$/)
    })
  })

  // Debian 12's libnng 1.5.2 can abort the process in nng_close (vendor/README.md): a user on it is
  // told once, through their own Logger; the library the project's scripts build (1.12.0) draws no warning
  it("a libnng older than 1.6 draws one warning naming its version and the way out; 1.6 and later none", () => {
    const libraries = ["/usr/lib/x86_64-linux-gnu/libnng.so.1", process.env["EFFECT_IPC_LIBNNG"]].filter(
      (path): path is string => path !== undefined && Fs.existsSync(path)
    )
    const versions = new Set<string>()
    for (const library of libraries) {
      const result = run("warn", { EFFECT_IPC_LIBNNG: library })
      assert.strictEqual(result.status, 0, result.stderr)
      const { version, warnings } = JSON.parse(result.stdout) as { version: string; warnings: Array<string> }
      versions.add(version)
      const [major, minor] = version.split(".").map(Number)
      if (major === 1 && (minor ?? 0) < 6) {
        assert.strictEqual(warnings.length, 1, JSON.stringify(warnings))
        assert.include(warnings[0], `libnng ${version} is older than 1.6`)
        assert.include(warnings[0], "EFFECT_IPC_LIBNNG")
      } else {
        assert.deepStrictEqual(warnings, [])
      }
    }
    // on a machine set up by scripts/setup.sh both cases run: the system's old library and the built one
    const system = ChildProcess.spawnSync("dpkg-query", ["-W", "-f=${Version}", "libnng1"], { encoding: "utf8" })
    if (system.status === 0 && /^1\.[0-5]\./.test(system.stdout)) {
      assert.strictEqual(versions.size, 2, `versions seen: ${[...versions].join(", ")}`)
    }
  })

  it("a process that leaves sockets open still exits cleanly (libnng stays mapped under its threads)", () => {
    for (let i = 0; i < 6; i++) {
      for (const mode of ["exit", "idle"]) {
        const result = run(mode)
        assert.strictEqual(result.signal, null, `${mode} run ${i} died of ${result.signal}`)
        assert.strictEqual(result.status, 0, result.stderr)
        assert.strictEqual(result.stdout, "done\n")
      }
    }
    // twelve processes one after another (each bounded by its own 30 s): several seconds each on a
    // loaded machine
  }, 400_000)
})
