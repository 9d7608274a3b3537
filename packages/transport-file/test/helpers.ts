/**
 * Test helpers: a temporary root per test file (removed afterwards, and
 * checked to be gone), and child processes (Node fixtures, the Python ipckit
 * port) whose output lines a test can wait for.
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import { afterAll, assert } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Endpoint from "../src/internal/endpoint.ts"
import * as Log from "../src/Log.ts"

/** A fresh temporary directory for this test file; removed (and checked gone) after its tests. */
export const tempRoot = (prefix: string): string => {
  const root = Fs.mkdtempSync(Path.join(Os.tmpdir(), `effect-ipc-file-${prefix}-`))
  afterAll(() => {
    Fs.rmSync(root, { recursive: true, force: true })
    assert.isFalse(Fs.existsSync(root), "the test left files behind")
  })
  return root
}

let counter = 0
/** A path under `root` that does not exist yet. */
export const fresh = (root: string, name = "d"): string => Path.join(root, `${name}${counter++}`)

/**
 * A tmpfs of `size` (`"256k"`) and, if given, `inodes` files (its root included) mounted for the scope at a fresh
 * directory under `root` (needs root), whose path it gives; unmounted as the scope closes (retried briefly: a read
 * in flight keeps a file open a moment).
 */
export const tmpfs = (root: string, size: string, inodes?: number): Effect.Effect<string, never, Scope.Scope> =>
  Effect.suspend(() => {
    const mount = fresh(root, "tmpfs")
    Fs.mkdirSync(mount, { mode: 0o700 })
    return Effect.as(
      Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.execFileSync("mount", [
            "-t",
            "tmpfs",
            "-o",
            `size=${size},mode=0700${inodes === undefined ? "" : `,nr_inodes=${inodes}`}`,
            "tmpfs",
            mount
          ])
        ),
        () =>
          Effect.try(() => ChildProcess.execFileSync("umount", [mount], { stdio: "ignore" })).pipe(
            Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.upTo({ duration: "5 seconds" }))),
            Effect.orDie
          )
      ),
      mount
    )
  })

/** A fresh log stream under `root` with the given readers (default: one named "r"). */
export const newStream = (root: string, readers: ReadonlyArray<string> = ["r"]) =>
  Effect.suspend(() => {
    const dir = fresh(root, "s")
    return Effect.as(Log.create(dir, { readers }), dir)
  })

/** Every whole record available now, in order (large ones too), committed as read; fails on damage. */
export const readAll = (reader: Log.Reader) =>
  Effect.gen(function*() {
    const out: Array<Uint8Array> = []
    while (true) {
      const poll = reader.poll(8 << 20)
      if (IpcError.isIpcError(poll)) return yield* poll
      for (const entry of poll.entries) {
        out.push(entry.payload)
        reader.commit(entry.end)
      }
      if (poll._tag === "Corrupt" || poll._tag === "Short") return yield* poll.error
      if (poll._tag === "Idle") return out
      if (poll._tag === "Large") {
        const entry = yield* Effect.callback<Log.Entry | undefined, IpcError.IpcError>((resume) =>
          reader.readLarge((result) =>
            resume(IpcError.isIpcError(result) ? Effect.fail(result) : Effect.succeed(result))
          )
        )
        if (entry === undefined) return out
        out.push(entry.payload)
        reader.commit(entry.end)
      }
    }
  })

/** The files of a channel that are `flock`ed: role and listener locks, `writer.lock`, readers' cursors. */
export const isLocked = (path: string): boolean =>
  /(^|\/)(backend|frontend|listener|writer)\.lock$|(^|\/)readers\/[^/]+\.cursor$/.test(path)

/** The mode a file of a channel gets for `fileMode`: a locked one (`isLocked`) only ever its owner's. */
export const modeFor = (path: string, fileMode: number): number => isLocked(path) ? fileMode & 0o600 : fileMode

/** The Node fixture script (`fixtures/child.ts`). */
export const childScript = Path.join(import.meta.dirname, "fixtures", "child.ts")
/** The Python port of ipckit's FileChannel. */
export const ipckitScript = Path.join(import.meta.dirname, "fixtures", "ipckit_file_channel.py")

/** A running child process. */
export interface Child {
  readonly pid: number
  /** Every line printed on stdout so far. */
  readonly lines: () => ReadonlyArray<string>
  /** Waits for a stdout line matching `test` (fails after 20 s or if the child exits first). */
  readonly waitFor: (test: (line: string) => boolean, what?: string) => Effect.Effect<string>
  /** Waits for the child to exit; its code, or 128 + signal number. */
  readonly exit: Effect.Effect<number>
  /** Sends `signal` to the child. */
  readonly signal: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** What it printed on stderr. */
  readonly stderr: () => string
}

/** Starts `command` with `args`; it is killed (SIGKILL) when the scope closes. */
export const spawn = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly uid?: number; readonly env?: Record<string, string> } = {}
): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = ChildProcess.spawn(command, args, {
        stdio: ["ignore", "pipe", "pipe"],
        ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
        env: { ...process.env, ...options.env }
      })
      const lines: Array<string> = []
      let partial = ""
      let stderr = ""
      let code: number | undefined
      const listeners = new Set<() => void>()
      const notify = () => {
        for (const l of listeners) l()
      }
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        partial += chunk
        const parts = partial.split("\n")
        partial = parts.pop()!
        lines.push(...parts)
        notify()
      })
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => void (stderr += chunk))
      child.on("close", (exitCode, signal) => {
        code = exitCode ?? 128 + (signal === null ? 0 : Os.constants.signals[signal])
        notify()
      })
      const waitFor = (test: (line: string) => boolean, what = "a line") =>
        Effect.callback<string>((resume) => {
          const check = () => {
            const found = lines.find(test)
            if (found !== undefined) {
              listeners.delete(check)
              resume(Effect.succeed(found))
            } else if (code !== undefined) {
              listeners.delete(check)
              resume(Effect.die(new Error(`child exited (${code}) before ${what}; stderr: ${stderr}`)))
            }
          }
          listeners.add(check)
          check()
          return Effect.sync(() => listeners.delete(check))
        }).pipe(
          Effect.timeoutOrElse({
            duration: Duration.seconds(20),
            orElse: () =>
              Effect.die(new Error(`timed out waiting for ${what}; stdout: ${lines.join("|")}; stderr: ${stderr}`))
          })
        )
      const exit = Effect.callback<number>((resume) => {
        const check = () => {
          if (code !== undefined) {
            listeners.delete(check)
            resume(Effect.succeed(code))
          }
        }
        listeners.add(check)
        check()
        return Effect.sync(() => listeners.delete(check))
      })
      return {
        child,
        handle: {
          pid: child.pid!,
          lines: () => lines,
          waitFor,
          exit,
          signal: (signal: NodeJS.Signals) => Effect.sync(() => void child.kill(signal)),
          stderr: () => stderr
        } satisfies Child
      }
    }),
    ({ child, handle }) =>
      Effect.gen(function*() {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill("SIGKILL")
        yield* handle.exit
      })
  ).pipe(Effect.map(({ handle }) => handle))

/** The arguments of Node that run the fixture (`fixtures/child.ts`), before the fixture's own. */
const fixtureArgs = ["--conditions=@effect-ipc/source", "--disable-warning=ExperimentalWarning", childScript]

/** Starts the Node fixture (`fixtures/child.ts`) with `args`. */
export const node = (
  args: ReadonlyArray<string>,
  options?: { readonly uid?: number; readonly env?: Record<string, string> }
) => spawn(process.execPath, [...fixtureArgs, ...args], options)

/** Starts the Node fixture with `args` under strace (`-f -qq`, then `straceArgs`: strace's own arguments). */
export const underStrace = (
  straceArgs: ReadonlyArray<string>,
  args: ReadonlyArray<string>,
  options?: { readonly env?: Record<string, string> }
) => spawn("/usr/bin/strace", ["-f", "-qq", ...straceArgs, process.execPath, ...fixtureArgs, ...args], options)

/** Starts the Python ipckit port with `args`. */
export const python = (args: ReadonlyArray<string>) => spawn("python3", [ipckitScript, ...args])

/**
 * Runs a child to completion (killed if the fiber is interrupted); its exit code and output lines.
 * `within` (default 30 s) only guards against a hang: give work that a loaded machine may stretch a generous one.
 */
export const run = (
  child: Effect.Effect<Child, never, Scope.Scope>,
  options: { readonly within?: Duration.Input | undefined } = {}
) =>
  Effect.scoped(Effect.gen(function*() {
    const c = yield* child
    const within = options.within ?? Duration.seconds(30)
    const code = yield* c.exit.pipe(
      Effect.timeoutOrElse({
        duration: within,
        orElse: () =>
          Effect.die(new Error(`child hung: not done within ${Duration.format(Duration.fromInputUnsafe(within))}`))
      })
    )
    return { code, lines: c.lines(), stderr: c.stderr() }
  }))

/** A look at the frontend's lock as the fixed roles' backend takes it (`Endpoint.rolePeer`). */
export type Look = ReturnType<typeof Endpoint.rolePeer>
/**
 * The fixed roles' backend endpoint at `dir`, its liveness checks counted (`look` takes each look at the frontend's
 * lock, given the real one); `moreChecks` waits for six more checks (a check looks at most twice) or the channel's
 * end (checks stop), dying with `what` after 20 s, and says whether the channel ended.
 */
export const countedBackend = (
  dir: string,
  options: Parameters<typeof Endpoint.open>[1],
  look: (status: Look, seen: boolean) => ReturnType<Look> = (status, seen) => status(seen)
) =>
  Effect.gen(function*() {
    let checks = 0
    const status = Endpoint.rolePeer(dir, "backend")
    const endpoint = yield* Effect.acquireRelease(
      Endpoint.open({
        address: `file://${dir}?role=backend`,
        dir,
        role: "backend",
        durable: true,
        peerStatus: (seen) => {
          checks++
          return look(status, seen)
        }
      }, options),
      (opened) => opened.channel.close
    )
    let ended = false
    yield* Effect.forkScoped(Effect.andThen(endpoint.channel.closed, Effect.sync(() => ended = true)))
    const moreChecks = (what: string) =>
      Effect.gen(function*() {
        const after = checks
        yield* Effect.sleep("10 millis").pipe(
          Effect.repeat({ until: () => ended || checks >= after + 6 }),
          Effect.timeoutOrElse({ duration: "20 seconds", orElse: () => Effect.die(new Error(what)) })
        )
        return ended
      })
    return { channel: endpoint.channel, moreChecks }
  })
