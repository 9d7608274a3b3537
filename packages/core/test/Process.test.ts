/**
 * Liveness across pid reuse, with real processes: a `sleep` child stands for
 * a process that took over a dead process's pid, so a record of its pid with
 * another start time names a dead process.
 */
import * as Process from "@effect-ipc/core/Process"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"

const sleeper = ChildProcess.spawn("sleep", ["300"], { stdio: "ignore" })
afterAll(() => void sleeper.kill("SIGKILL"))
const pid = sleeper.pid!

/** A pid that no process has: a child that has exited and been reaped. */
const deadPid = (): number => {
  const child = ChildProcess.spawnSync("true")
  return child.pid
}

describe.runIf(process.platform === "linux")("Process", () => {
  it("identifies a live process by pid, start time and pid namespace", () => {
    const found = Process.identify(pid)
    assert.isDefined(found)
    assert.isAbove(found!.startTime, 0)
    assert.strictEqual(found!.pidNamespace, Process.self().pidNamespace)
    assert.strictEqual(Process.liveness(found!), "alive")
    assert.isUndefined(Process.identify(deadPid()))
  })

  it("a live pid with another start time is a recycled pid: the recorded process is dead", () => {
    const found = Process.identify(pid)!
    assert.strictEqual(Process.liveness({ ...found, startTime: found.startTime + 1 }), "dead")
    assert.strictEqual(Process.liveness({ ...Process.self(), startTime: Process.self().startTime + 1 }), "dead")
    assert.strictEqual(Process.liveness(Process.self()), "alive")
  })

  it("a record without a start time falls back to the pid, and to when it was written", () => {
    assert.strictEqual(Process.liveness(Process.fromPid(pid)), "alive")
    assert.strictEqual(Process.liveness(Process.fromPid(deadPid())), "dead")
    // written before the process that has the pid now had started: not its writer
    assert.strictEqual(Process.liveness(Process.fromPid(pid), Date.now() - 3_600_000), "dead")
    assert.strictEqual(Process.liveness(Process.fromPid(pid), Date.now()), "alive")
  })

  it("a process of another pid namespace is unknown, not dead", () => {
    const found = Process.identify(pid)!
    assert.strictEqual(Process.liveness({ ...found, startTime: 1, pidNamespace: found.pidNamespace + 1 }), "unknown")
    assert.isTrue(Process.isAlive({ ...found, pidNamespace: found.pidNamespace + 1 }))
  })

  it("encodes identities as text and still reads a bare pid", () => {
    const me = Process.self()
    assert.deepStrictEqual(Process.decode(Process.encode(me)), me)
    assert.deepStrictEqual(Process.decode("1234"), Process.fromPid(1234))
    for (const bad of ["", "0", "-1", "12a", "1@2", "1@2.3.4", "1@.3"]) assert.isUndefined(Process.decode(bad), bad)
  })
})
