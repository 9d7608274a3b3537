/**
 * The lock holder check across pid reuse. ipckit's lock file holds a bare pid
 * (its format is ipckit's and stays as it is); the file's mtime says when its
 * writer was alive, so a process that started after that has only inherited
 * the pid: the lock is stale.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Sys from "../src/internal/sys.ts"

const sleeper = ChildProcess.spawn("sleep", ["300"], { stdio: "ignore" })
afterAll(() => void sleeper.kill("SIGKILL"))

describe.runIf(process.platform === "linux")("lock holder liveness", () => {
  it("a pid whose process started after the lock was written is not the holder", () => {
    const pid = sleeper.pid!
    assert.isFalse(Sys.isAlive(pid, Date.now() - 3_600_000), "written an hour before this process started")
    assert.isTrue(Sys.isAlive(pid, Date.now()), "written while it ran")
    assert.isTrue(Sys.isAlive(pid), "no time recorded: the pid is all there is")
    assert.isFalse(Sys.isAlive(ChildProcess.spawnSync("true").pid))
  })
})
