/**
 * An `nng+ipc://` listener where the file system has no room left: with no
 * inode for its socket file, or one for the socket but none for its
 * conversations' directory, listening fails with `NoSpace` and leaves nothing
 * behind (the socket file it made is removed). The directory is a tmpfs with
 * 1 or 2 inodes (its root takes one), in a mount namespace of the child's own.
 */
import * as Tmpfs from "@effect-ipc/testing/Tmpfs"
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Child from "./fixtures/process.ts"

const listenIn = (inodes: number) => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "nng-full-"))
  try {
    const [command, ...args] = [
      ...Tmpfs.at(dir, { inodes, mode: "0700" }),
      process.execPath,
      ...Child.nodeArgs("full-disk.ts", [dir])
    ]
    const ran = ChildProcess.spawnSync(command!, args, { encoding: "utf8", timeout: 60_000 })
    assert.strictEqual(ran.status, 0, ran.stderr)
    return JSON.parse(ran.stdout.trim().split("\n").at(-1)!) as { outcome: string; left: Array<string> }
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

// mounting a tmpfs in a mount namespace of its own needs root, as CI runs
describe.runIf(process.getuid?.() === 0)("an nng+ipc:// listener on a full file system", () => {
  it("no inode for the socket file: NoSpace, nothing left", () => {
    const said = listenIn(1)
    assert.match(said.outcome, /^NoSpace: .*cannot listen/)
    assert.deepStrictEqual(said.left, [])
  }, 90_000)

  it("room for the socket file but not for the conversations' directory: NoSpace, and the socket file removed", () => {
    const said = listenIn(2)
    assert.match(said.outcome, /^NoSpace: .*cannot make the conversations' directory/)
    assert.deepStrictEqual(said.left, [])
  }, 90_000)

  it("with room: it listens (the limits above are what failed)", () => {
    assert.deepStrictEqual(listenIn(3), { outcome: "ok", left: [] })
  }, 90_000)
})
