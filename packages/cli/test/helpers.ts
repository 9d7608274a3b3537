/** Test helpers: the CLI and other commands as real child processes. */
import { afterAll } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

/** The repository's root. */
export const root = fileURLToPath(new URL("../../..", import.meta.url))
/** The CLI tests' fixtures (user modules, Python peers). */
export const fixtures = Path.join(root, "packages", "cli", "test", "fixtures")

/**
 * A private directory for one test file (`<tmp>/effect-ipc-cli-<name>-*`,
 * removed after its last test) and a maker of fresh `unix://` addresses in it.
 */
export const socketDir = (name: string): { readonly dir: string; readonly socket: () => string } => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), `effect-ipc-cli-${name}-`))
  afterAll(() => Fs.rmSync(dir, { recursive: true, force: true }))
  let n = 0
  return { dir, socket: () => `unix://${Path.join(dir, `s${n++}.sock`)}` }
}

/** The project's Node. */
export const node = process.execPath
/** The CLI's entry point. */
export const bin = Path.join(root, "packages", "cli", "src", "bin.ts")
/** Node flags that run the TypeScript sources. */
export const flags = ["--conditions=@effect-ipc/source", "--disable-warning=ExperimentalWarning"]

/** A running child process and what it has written. */
export interface Proc {
  /** Its process id. */
  readonly pid: number | undefined
  /** Everything written to stdout so far. */
  readonly stdout: () => string
  /** Everything written to stderr so far. */
  readonly stderr: () => string
  /** The exit code, once the process has exited and its output is read (128 + n for signal n). */
  readonly exit: Effect.Effect<number>
  /** Waits until stderr contains `text` (the CLI says "listening on ..." there when ready). */
  readonly ready: (text: string) => Effect.Effect<void>
  /** Asks the process to stop (SIGTERM) and returns its exit code, as `exit` does. */
  readonly stop: Effect.Effect<number>
}

/** Starts `command`; the process is killed (SIGTERM, then SIGKILL) when the scope closes. */
export const start = (
  command: string,
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>> = {}
): Effect.Effect<Proc, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = ChildProcess.spawn(command, args, {
        cwd: root,
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      let code: number | undefined
      const waiters: Array<(code: number) => void> = []
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => void (stdout += chunk))
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      child.on("error", (error) => void (stderr += `spawn failed: ${error.message}`))
      child.on("close", (exitCode, signal) => {
        code = exitCode ?? 128 + (signal === null ? 0 : Os.constants.signals[signal])
        for (const waiter of waiters.splice(0)) waiter(code)
      })
      const exit = Effect.callback<number>((resume) => {
        if (code !== undefined) return resume(Effect.succeed(code))
        const waiter = (c: number) => resume(Effect.succeed(c))
        waiters.push(waiter)
        return Effect.sync(() => {
          const i = waiters.indexOf(waiter)
          if (i >= 0) waiters.splice(i, 1)
        })
      })
      const ready = (text: string): Effect.Effect<void> =>
        Effect.gen(function*() {
          while (!stderr.includes(text)) {
            if (code !== undefined) return yield* Effect.die(`exited (${code}) before "${text}": ${stderr}`)
            yield* Effect.sleep("20 millis")
          }
        }).pipe(
          Effect.timeoutOrElse({
            duration: Duration.seconds(20),
            orElse: () => Effect.die(`timed out waiting for "${text}"; stderr: ${stderr}`)
          })
        )
      const stop = Effect.andThen(Effect.sync(() => child.kill("SIGTERM")), exit)
      return { child, handle: { pid: child.pid, stdout: () => stdout, stderr: () => stderr, exit, ready, stop } }
    }),
    ({ child, handle }) =>
      Effect.gen(function*() {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill("SIGTERM")
        yield* handle.exit.pipe(
          Effect.timeoutOrElse({
            duration: Duration.seconds(5),
            orElse: () => Effect.sync(() => child.kill("SIGKILL"))
          })
        )
      })
  ).pipe(Effect.map(({ handle }) => handle))

/** Starts `effect-ipc ...args`. */
export const cli = (...args: ReadonlyArray<string>): Effect.Effect<Proc, never, Scope.Scope> =>
  start(node, [...flags, bin, ...args])

/** `cli`, with `env` added to this process's environment. */
export const cliWith = (
  env: Readonly<Record<string, string>>,
  ...args: ReadonlyArray<string>
): Effect.Effect<Proc, never, Scope.Scope> => start(node, [...flags, bin, ...args], env)

/** What a finished run of the CLI printed, and its exit code. */
export interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs `effect-ipc ...args` to completion, with `input` on its stdin (none:
 * stdin closed at once) and `env` added to this process's environment.
 */
export const runCli = (
  args: ReadonlyArray<string>,
  input?: string | Uint8Array,
  env: Readonly<Record<string, string>> = {}
): Effect.Effect<Ran> =>
  Effect.callback<Ran>((resume) => {
    const child = ChildProcess.spawn(node, [...flags, bin, ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["pipe", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (t: string) => void (stdout += t))
    child.stderr.setEncoding("utf8").on("data", (t: string) => void (stderr += t))
    child.on("error", (error) => void (stderr += `spawn failed: ${error.message}`))
    child.on("close", (code, signal) =>
      resume(Effect.succeed({
        code: code ?? 128 + (signal === null ? 0 : Os.constants.signals[signal]),
        stdout,
        stderr
      })))
    child.stdin.end(input)
    return Effect.sync(() => void child.kill("SIGKILL"))
  }).pipe(
    Effect.timeoutOrElse({
      duration: Duration.seconds(45),
      orElse: () => Effect.die(`effect-ipc ${args.join(" ")} did not exit`)
    })
  )

/** The Python the tests run: Debian's, else the one on the PATH. */
export const python = Fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"

/** Runs `python ...args` to completion (cwd: `cwd`, default the repository) within `within` (120 s by default). */
export const runPython = (
  args: ReadonlyArray<string>,
  options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv; readonly within?: Duration.Input } = {}
): Effect.Effect<Ran> =>
  Effect.callback<Ran>((resume) => {
    const child = ChildProcess.spawn(python, [...args], {
      cwd: options.cwd ?? root,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (t: string) => void (stdout += t))
    child.stderr.setEncoding("utf8").on("data", (t: string) => void (stderr += t))
    child.on("close", (code) => resume(Effect.succeed({ code: code ?? 1, stdout, stderr })))
    return Effect.sync(() => void child.kill("SIGKILL"))
  }).pipe(
    Effect.timeoutOrElse({
      duration: options.within ?? "120 seconds",
      orElse: () => Effect.die(`python ${args.join(" ")} did not exit`)
    })
  )
