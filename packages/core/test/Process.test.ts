/**
 * Liveness across pid reuse, with real processes: a `sleep` child stands for
 * a process that took over a dead process's pid, so a record of its pid with
 * another start time names a dead process.
 */
import * as Process from "@effect-ipc/core/Process"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"

const sleeper = ChildProcess.spawn("sleep", ["300"], { stdio: "ignore" })
afterAll(() => void sleeper.kill("SIGKILL"))
const pid = sleeper.pid!

/** A pid that no process has: a child that has exited and been reaped. */
const deadPid = (): number => {
  const child = ChildProcess.spawnSync("true")
  return child.pid
}

/** Pids of zombies: children of a Python process that exited (by `code`, or killed by `signal`) and are not collected. */
const zombies = (): {
  readonly exited: number
  readonly killed: number
  readonly parent: ChildProcess.ChildProcess
} => {
  const file = `${Os.tmpdir()}/effect-ipc-zombies-${process.pid}`
  Fs.rmSync(file, { force: true })
  const parent = ChildProcess.spawn("python3", [
    "-c",
    "import os, signal, sys, time\n" +
    "a = os.fork()\n" +
    "if a == 0: os._exit(3)\n" +
    "b = os.fork()\n" +
    "if b == 0: os.kill(os.getpid(), signal.SIGKILL)\n" +
    "time.sleep(0.2)\n" +
    "open(sys.argv[1] + '.tmp', 'w').write('%d %d' % (a, b))\n" +
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n" +
    "time.sleep(60)\n",
    file
  ], { stdio: "ignore" })
  const nap = new Int32Array(new SharedArrayBuffer(4))
  for (let waited = 0; !Fs.existsSync(file) && waited < 10_000; waited += 20) Atomics.wait(nap, 0, 0, 20)
  const [exited, killed] = Fs.readFileSync(file, "utf8").split(" ").map(Number)
  Fs.rmSync(file, { force: true })
  return { exited: exited!, killed: killed!, parent }
}

describe.runIf(process.platform === "linux")("Process", () => {
  it("exitStatus: how a zombie ended (its exit code, or the signal), nothing for a running or collected process", () => {
    const { exited, killed, parent } = zombies()
    try {
      assert.deepStrictEqual(Process.exitStatus(exited), { code: 3, signal: null })
      assert.deepStrictEqual(Process.exitStatus(killed), { code: null, signal: "SIGKILL" })
      assert.isUndefined(Process.exitStatus(pid))
      assert.isUndefined(Process.exitStatus(process.pid))
      assert.isUndefined(Process.exitStatus(deadPid()))
    } finally {
      parent.kill("SIGKILL")
    }
  })

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

  // a process of another time namespace reads its start time on its own clock (here: boot a day earlier)
  it.runIf(Fs.existsSync("/proc/self/ns/time"))(
    "a live process of another time namespace is not taken for a recycled pid; once gone it is dead",
    async () => {
      const child = ChildProcess.spawn(
        "unshare",
        [
          "--time",
          "--fork",
          "--boottime",
          "86400",
          "--kill-child",
          process.execPath,
          "--conditions=@effect-ipc/source",
          "-e",
          `import("@effect-ipc/core/Process").then((P) => { console.log(JSON.stringify(P.self())); setInterval(() => {}, 1000) })`
        ],
        { stdio: ["ignore", "pipe", "inherit"] }
      )
      try {
        const line = await new Promise<string>((resolve, reject) => {
          let out = ""
          child.stdout.on("data", (chunk: Buffer) => {
            out += chunk.toString()
            if (out.includes("\n")) resolve(out.split("\n")[0]!)
          })
          child.on("exit", (code) => reject(new Error(`the child exited (${code}) before it said who it is`)))
        })
        const recorded: Process.Identity = JSON.parse(line)
        // what it recorded is on its clock: from here the same pid started a day later
        const seen = Process.identify(recorded.pid)!
        assert.notStrictEqual(seen.startTime, recorded.startTime)
        assert.isTrue(Process.seesOtherClock(recorded.pid))
        assert.strictEqual(Process.liveness(recorded), "unknown")
        assert.isTrue(Process.isAlive(recorded))
        // a process of our own clock whose start differs is still a recycled pid
        assert.isFalse(Process.seesOtherClock(pid))
        assert.strictEqual(Process.liveness({ ...Process.identify(pid)!, startTime: recorded.startTime }), "dead")
        child.kill("SIGKILL")
        await new Promise((resolve) => child.once("exit", resolve))
        for (let i = 0; i < 100 && Process.identify(recorded.pid) !== undefined; i++) {
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
        assert.strictEqual(Process.liveness(recorded), "dead")
      } finally {
        child.kill("SIGKILL")
      }
    }
  )

  it("encodes identities as text and still reads a bare pid", () => {
    const me = Process.self()
    assert.deepStrictEqual(Process.decode(Process.encode(me)), me)
    assert.deepStrictEqual(Process.decode("1234"), Process.fromPid(1234))
    for (const bad of ["", "0", "-1", "12a", "1@2", "1@2.3.4", "1@.3"]) assert.isUndefined(Process.decode(bad), bad)
  })
})
