/**
 * A full disk where the token file goes: listening fails with `NoSpace` (not a
 * listener whose clients cannot find its token), the port is let go, and no
 * half-written token file is left behind. The runtime directory is a tmpfs
 * with no page free, in a mount namespace of the child's own.
 */
import * as Tmpfs from "@effect-ipc/testing/Tmpfs"
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { freshAddress } from "./helpers.ts"

const root = Path.resolve(import.meta.dirname, "../../..")

/** Runs the full-disk fixture with its runtime directory on a tmpfs of one page (`full`: filled up first). */
const listenOn = (full: boolean) => {
  const runtime = Fs.mkdtempSync(Path.join(Os.tmpdir(), "ws-full-"))
  try {
    const [command, ...args] = [
      ...Tmpfs.at(runtime, { size: "4k", mode: "0700", full }),
      "bash",
      "scripts/node.sh",
      "packages/transport-ws/test/fixtures/full-disk.ts",
      freshAddress("full")
    ]
    const ran = ChildProcess.spawnSync(command!, args, {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, XDG_RUNTIME_DIR: runtime },
      timeout: 60_000
    })
    assert.strictEqual(ran.status, 0, ran.stderr)
    return JSON.parse(ran.stdout.trim().split("\n").at(-1)!) as {
      outcome: string
      left: Array<string>
      portFree: boolean
    }
  } finally {
    Fs.rmSync(runtime, { recursive: true, force: true })
  }
}

// mounting a tmpfs in a mount namespace of its own needs root, as CI runs
describe.runIf(process.getuid?.() === 0)("a listener whose token directory is on a full disk", () => {
  it("fails with NoSpace, lets the port go, and leaves no token file", () => {
    const said = listenOn(true)
    assert.match(said.outcome, /^NoSpace: .*cannot write the token file /)
    assert.deepStrictEqual(said.left, [], "nothing left in the token directory")
    assert.isTrue(said.portFree, "the port is free again")
  }, 90_000)

  it(
    "with a page free it listens, and removes its token file when it closes (the full disk is what failed above)",
    () => {
      assert.deepStrictEqual(listenOn(false), { outcome: "ok", left: [], portFree: true })
    },
    90_000
  )
})
