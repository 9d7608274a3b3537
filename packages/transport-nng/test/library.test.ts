/**
 * libnng itself: loaded only when first used, a typed error naming it when
 * it is missing, and a process that used it always exits cleanly.
 */
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
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
