/** Test helpers: child processes that do not block the event loop (the servers under test share it). */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** The Python peer written from the README's wire-format section. */
export const pythonPeer = Path.join(import.meta.dirname, "fixtures/peer.py")

/** A hostile peer in Python: squats socket paths, abstract names and FIFO pairs, counts what it receives. */
export const squatter = Path.join(import.meta.dirname, "fixtures/squatter.py")

/** The system's Python, reachable by every uid (a pyenv shim under /root is not). */
export const python = "/usr/bin/python3"

/** The project's Node, with the flags that run TypeScript sources. */
export const node = Path.resolve(import.meta.dirname, "../../../node_modules/.bin/node")

/** Arguments that make `node` run a TypeScript fixture of this package. */
export const nodeFixture = (name: string): Array<string> => [
  "--conditions=@effect-ipc/source",
  "--disable-warning=ExperimentalWarning",
  Path.join(import.meta.dirname, "fixtures", name)
]

/** The uid other tests run the attacker as. */
export const nobody = 65534

/** True when this process may switch to another uid (CI runs as root). */
export const isRoot = process.getuid?.() === 0

/** `command args` as run by `uid` (via setpriv), or as is. */
const asUser = (uid: number | undefined, command: string, args: ReadonlyArray<string>) =>
  uid === undefined ? [command, args] as const : [
    "setpriv",
    [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", command, ...args]
  ] as const

/** What a finished child left behind. */
export interface Finished {
  readonly status: number | null
  readonly stdout: Buffer
  readonly stderr: string
}

/** Runs `command` to completion (killed if the fiber is interrupted), feeding it `input`. */
export const run = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly input?: Uint8Array; readonly uid?: number } = {}
): Effect.Effect<Finished> =>
  Effect.callback<Finished>((resume) => {
    const [cmd, argv] = asUser(options.uid, command, args)
    const child = ChildProcess.spawn(cmd, argv, { stdio: ["pipe", "pipe", "pipe"] })
    const out: Array<Buffer> = []
    let err = ""
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()))
    child.on("close", (status) => resume(Effect.succeed({ status, stdout: Buffer.concat(out), stderr: err })))
    child.stdin.end(options.input)
    return Effect.sync(() => void child.kill("SIGKILL"))
  }).pipe(Effect.timeout("30 seconds"), Effect.orDie)

/** A running child that talks in lines. */
export interface Running {
  readonly pid: number
  /** Every stdout line so far. */
  readonly lines: ReadonlyArray<string>
  /** Waits (at most 30 s: a hang guard) for a stdout line matching `pattern`; returns it. */
  readonly line: (pattern: RegExp) => Effect.Effect<string>
  /** Writes one line to the child's stdin. */
  readonly say: (text: string) => Effect.Effect<void>
  /** Closes its stdin and waits for it to exit; returns its stdout lines. */
  readonly finish: Effect.Effect<ReadonlyArray<string>>
}

/** Starts `command` (as `uid` if given); it is killed when the scope closes. */
export const start = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly uid?: number } = {}
): Effect.Effect<Running, never, Scope.Scope> =>
  Effect.gen(function*() {
    const [cmd, argv] = asUser(options.uid, command, args)
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => ChildProcess.spawn(cmd, argv, { stdio: ["pipe", "pipe", "pipe"] })),
      (c) => Effect.sync(() => void (c.exitCode === null && c.signalCode === null && c.kill("SIGKILL")))
    )
    const lines: Array<string> = []
    const watchers = new Set<() => void>()
    let stderr = ""
    let partial = ""
    let exited = false
    child.stdout.on("data", (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split("\n")
      partial = parts.pop()!
      lines.push(...parts)
      for (const wake of watchers) wake()
    })
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.once("close", () => {
      exited = true
      for (const wake of watchers) wake()
    })
    const waitUntil = <A>(found: () => A | undefined, what: string) =>
      Effect.callback<A>((resume) => {
        const check = () => {
          const value = found()
          if (value !== undefined) {
            watchers.delete(check)
            resume(Effect.succeed(value))
          } else if (exited) {
            watchers.delete(check)
            resume(Effect.die(new Error(`${command} exited before ${what}; stdout ${lines} stderr ${stderr}`)))
          }
        }
        watchers.add(check)
        check()
        return Effect.sync(() => void watchers.delete(check))
      }).pipe(
        Effect.timeoutOrElse({
          duration: "30 seconds",
          orElse: () => Effect.die(new Error(`hang guard: ${command} never printed ${what}; stderr ${stderr}`))
        })
      )
    return {
      pid: child.pid!,
      lines,
      line: (pattern) => waitUntil(() => lines.find((l) => pattern.test(l)), String(pattern)),
      say: (text) => Effect.sync(() => void child.stdin.write(`${text}\n`)),
      finish: Effect.andThen(
        Effect.sync(() => child.stdin.end()),
        waitUntil(() => (exited ? lines : undefined), "its exit")
      )
    }
  })

/** A fresh directory under the temp directory with `mode`, removed when the scope closes. */
export const tempDir = (prefix: string, mode = 0o755): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), prefix))
      Fs.chmodSync(dir, mode)
      return dir
    }),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

/** Open descriptors of this process. */
export const openFds = (): number => Fs.readdirSync("/proc/self/fd").length

/** Resident set size of this process, in bytes. */
export const rss = (): number => process.memoryUsage.rss()

/** Waits (at most `millis`, a hang guard) until `check` holds; returns whether it does. */
export const waitFor = (check: () => boolean, millis: number): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (!check() && Date.now() < deadline) yield* Effect.sleep("10 millis")
    return check()
  })

/** `effect`, or a defect naming `what` if it has not completed within 10 s (a hang guard). */
export const hangGuard = <A, E, R>(effect: Effect.Effect<A, E, R>, what: string): Effect.Effect<A, E, R> =>
  Effect.timeoutOrElse(effect, {
    duration: "10 seconds",
    orElse: () => Effect.die(new Error(`hang guard: ${what} never completed`))
  })
