/**
 * `Tmpfs.at`: the words before a command that run it with a small tmpfs at a
 * directory (root only, as CI runs), whatever characters the directory's path holds.
 */
import * as Tmpfs from "@effect-ipc/testing/Tmpfs"
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = process.getuid?.() === 0

describe("Tmpfs.at", () => {
  it.skipIf(!root)("mounts at a directory whose path has shell characters in it, that one and no other", () => {
    const base = Fs.mkdtempSync(Path.join(Os.tmpdir(), "tmpfs-at-"))
    try {
      // were the path part of the script's text, `$HOME` would be expanded and the backquote start a command
      const dir = Path.join(base, "a $HOME `b` \"c\" 'd'")
      Fs.mkdirSync(dir)
      const run = ChildProcess.spawnSync(
        Tmpfs.at(dir, { size: "64k", full: true })[0]!,
        [...Tmpfs.at(dir, { size: "64k", full: true }).slice(1), "sh", "-c", "stat -f -c %T \"$0\" && ls \"$0\"", dir],
        { encoding: "utf8" }
      )
      assert.strictEqual(run.status, 0, run.stderr)
      assert.strictEqual(run.stdout, "tmpfs\nfiller\n")
      // the mount went with the namespace: the directory is as it was
      assert.deepStrictEqual(Fs.readdirSync(dir), [])
    } finally {
      Fs.rmSync(base, { recursive: true, force: true })
    }
  })
})
