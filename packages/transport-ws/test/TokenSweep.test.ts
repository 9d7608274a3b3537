/**
 * `TokenFile.sweepDead` against token files of other processes, all real:
 * another user's files in a directory both users can write, and servers in
 * another pid namespace (`unshare --pid`) sharing the token directory.
 */
import * as Ws from "@effect-ipc/transport-ws"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { freshAddress } from "./helpers.ts"

const root = Path.resolve(import.meta.dirname, "../../..")
const fixture = "packages/transport-ws/test/fixtures/token-peer.ts"
const node = ["bash", "scripts/node.sh", fixture] as const
const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] as const
const newPidNamespace = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"] as const

/** Runs the fixture to its end (`prefix` runs it as another user, or in another namespace); its output. */
const runPeer = (prefix: ReadonlyArray<string>, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): string => {
  const [command, ...rest] = [...prefix, ...node, ...args]
  const ran = ChildProcess.spawnSync(command!, rest, {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, ...env }
  })
  assert.strictEqual(ran.status, 0, ran.stderr)
  return ran.stdout.trim()
}

/** A listener in a process of its own (with its default token file), until the scope closes; its pid and file. */
const listenInPeer = (command: ReadonlyArray<string>, address: string, env: NodeJS.ProcessEnv) =>
  Effect.gen(function*() {
    const [program, ...rest] = [...command, "listen", address]
    let out = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.spawn(program!, rest, {
          cwd: root,
          env: { ...process.env, ...env },
          stdio: ["pipe", "pipe", "inherit"]
        })
      ),
      (peer) =>
        Effect.sync(() => {
          peer.stdin!.end()
          peer.kill("SIGKILL")
        })
    )
    child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()))
    const ready = yield* Effect.suspend(() => {
      const match = /^ready (\d+) (.+)$/m.exec(out)
      return match === null ? Effect.fail("not yet") : Effect.succeed({ pid: Number(match[1]), file: match[2]! })
    }).pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "30 seconds" }))))
    return ready
  })

/** Whether a process has `pid` in this process's pid namespace. */
const runs = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return (cause as NodeJS.ErrnoException).code !== "ESRCH"
  }
}

/** A pid that no process has here (high in the range, where the kernel comes last). */
const freePid = (): number => {
  const max = Number(Fs.readFileSync("/proc/sys/kernel/pid_max", "utf8"))
  for (let pid = max - 1 - Math.floor(Math.random() * 1000); pid > 300; pid--) if (!runs(pid)) return pid
  throw new Error("no free pid")
}

/** A fresh directory, removed with the scope. */
const tempDir = (mode: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-sweep-"))
      Fs.chmodSync(dir, mode)
      return dir
    }),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

// switching to another uid (setpriv) and making pid namespaces (unshare) need root, as CI runs
describe.runIf(process.getuid?.() === 0 && process.platform === "linux")("sweepDead and other processes' files", () => {
  it.live(
    "another user's token file is never removed, nor by that user this user's (a directory both write)",
    () =>
      Effect.gen(function*() {
        // no sticky bit: only the sweep's own check of the owner keeps each user's files from the other
        const dir = yield* tempDir(0o777)
        const theirs = Path.join(dir, "ws-127.0.0.1-1~2ftheirs.token")
        const ours = Path.join(dir, "ws-127.0.0.1-2~2fours.token")
        // each written by a process that has since exited: a dead server's file, for its own user
        runPeer(asNobody, ["write", theirs])
        runPeer([], ["write", ours])
        assert.strictEqual(Fs.statSync(theirs).uid, 65534)
        assert.strictEqual(Fs.statSync(ours).uid, 0)
        assert.strictEqual(Ws.TokenFile.sweepDead(dir), 1, "root's sweep removes its own dead file, and only it")
        assert.isFalse(Fs.existsSync(ours))
        assert.isTrue(Fs.existsSync(theirs), "uid 65534's file stays")
        runPeer([], ["write", ours])
        assert.strictEqual(
          runPeer(asNobody, ["sweep", dir]),
          "removed 1",
          "uid 65534's sweep removes its own, and only it"
        )
        assert.isFalse(Fs.existsSync(theirs))
        assert.isTrue(Fs.existsSync(ours), "root's file stays")
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "a live server's file in another pid namespace is kept, though its pid is not running here",
    () =>
      Effect.gen(function*() {
        const xdg = yield* tempDir(0o700)
        // the server gets a pid that no process has in this namespace (set through its namespace's ns_last_pid)
        const pid = freePid()
        const inNamespace = [
          ...newPidNamespace,
          "sh",
          "-c",
          `echo $0 > /proc/sys/kernel/ns_last_pid && "$@"; exit $?`,
          String(pid - 1),
          ...node
        ]
        const server = yield* listenInPeer(inNamespace, freshAddress("pidns"), { XDG_RUNTIME_DIR: xdg })
        assert.strictEqual(server.pid, pid)
        assert.isFalse(runs(pid), "its pid is not running in this namespace")
        const token = Fs.readFileSync(server.file, "utf8").split("\n")[0]
        assert.strictEqual(Ws.TokenFile.sweepDead(Path.dirname(server.file)), 0)
        assert.isTrue(Fs.existsSync(server.file), "the live server's token file stays")
        assert.strictEqual(Ws.TokenFile.readIfPrivate(server.file), token, "and a client here reads its token")
      }).pipe(Effect.scoped),
    120_000
  )

  it.live("a sweeper in another pid namespace keeps a live server's file of this one", () =>
    Effect.gen(function*() {
      const xdg = yield* tempDir(0o700)
      const server = yield* listenInPeer(node, freshAddress("pidns-sweeper"), { XDG_RUNTIME_DIR: xdg })
      assert.isTrue(runs(server.pid))
      // in a fresh pid namespace the sweeper is pid 1 and no other pid runs: the server's would seem dead
      assert.strictEqual(runPeer(newPidNamespace, ["sweep", Path.dirname(server.file)]), "removed 0")
      assert.isTrue(Fs.existsSync(server.file), "the live server's token file stays")
    }).pipe(Effect.scoped), 120_000)
})
