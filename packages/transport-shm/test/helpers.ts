/** Test helpers: child processes, what the tests leave in `/dev/shm`, and descriptors made by hand. */
import type * as IpcError from "@effect-ipc/core/IpcError"
import * as Tmpfs from "@effect-ipc/testing/Tmpfs"
import * as Shm from "@effect-ipc/transport-shm"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Libc from "../src/internal/libc.ts"

const childScript = Path.join(import.meta.dirname, "fixtures/child.ts")

/** The uid the tests run other users' processes as. */
export const NOBODY = 65534
/** The command prefix that runs the rest as uid 65534, without our groups. */
export const AS_NOBODY = ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups"] as const

/** A running child and the words after `ready` on its first line. */
export interface Child {
  readonly process: ChildProcess.ChildProcess
  readonly pid: number
  readonly said: string
  /** Everything the child has printed so far (stdout). */
  readonly output: () => string
  /** SIGKILLs the child and waits until it is gone. */
  readonly kill: Effect.Effect<void>
  /** Waits for the child to exit on its own. */
  readonly exited: Effect.Effect<number | null>
}

const exitOf = (child: ChildProcess.ChildProcess): Effect.Effect<number | null> =>
  Effect.callback<number | null>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.succeed(child.exitCode))
    child.once("exit", (code) => resume(Effect.succeed(code)))
  })

const killChild = (child: ChildProcess.ChildProcess): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    return Effect.asVoid(exitOf(child))
  })

/** Starts `fixtures/child.ts MODE ...ARGS` and waits for its `ready` line; it is killed when the scope closes. */
export const spawnChild = (...args: ReadonlyArray<string>): Effect.Effect<Child, Error, Scope.Scope> =>
  spawnChildWith({}, ...args)

/**
 * `spawnChild` run through a command (`wrap`, e.g. `unshare ...`), or with Node's own flags (`nodeFlags`), its
 * `ready` line waited for up to `readyWithin` (20 s by default; more for a child with much to do before it).
 */
export const spawnChildWith = (
  options: {
    readonly wrap?: ReadonlyArray<string>
    readonly nodeFlags?: ReadonlyArray<string>
    readonly readyWithin?: Duration.Input
  },
  ...args: ReadonlyArray<string>
): Effect.Effect<Child, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Child, Error>((resume) => {
      const argv = [
        ...(options.nodeFlags ?? []),
        "--conditions=@effect-ipc/source",
        "--disable-warning=ExperimentalWarning",
        childScript,
        ...args
      ]
      const wrap = options.wrap ?? []
      const child = wrap.length > 0
        ? ChildProcess.spawn(wrap[0]!, [...wrap.slice(1), process.execPath, ...argv], {
          stdio: ["ignore", "pipe", "pipe"]
        })
        : ChildProcess.spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      let err = ""
      child.stderr!.on("data", (chunk: Buffer) => void (err += chunk.toString()))
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString()
        const line = /^ready ?(.*)\n/m.exec(out)
        if (line !== null) {
          resume(Effect.succeed({
            process: child,
            pid: child.pid!,
            said: line[1]!,
            output: () => out,
            kill: killChild(child),
            exited: exitOf(child)
          }))
        }
      })
      child.once("exit", (code) => resume(Effect.fail(new Error(`child ${args[0]} exited early (${code}): ${err}`))))
      return Effect.sync(() => child.kill("SIGKILL"))
    }).pipe(Effect.timeout(options.readyWithin ?? "20 seconds")),
    // a child killed with its listener open leaves the listener's socket file in the rendezvous directory (the
    // user's home): swept once it is gone, as `shm gc` would
    (child) => Effect.andThen(child.kill, sweepAfter(args))
  )

/** Removes what dead listeners at the `shm://` addresses among `args` left in the default rendezvous directory. */
const sweepAfter = (args: ReadonlyArray<string>): Effect.Effect<void> =>
  Effect.forEach(
    args.filter((arg) => arg.startsWith("shm://")),
    (address) => Effect.ignore(Shm.SegmentGc.collect({ prefix: address.slice("shm://".length).split("?")[0]! })),
    { discard: true }
  )

/** Names in `/dev/shm` that contain any of `markers`. */
export const leftovers = (...markers: ReadonlyArray<string>): ReadonlyArray<string> =>
  Fs.readdirSync("/dev/shm").filter((name) => markers.some((marker) => name.includes(marker)))

/** The marker in the names of channel segments made by process `pid`. */
export const pidMarker = (pid: number): string => `-${pid.toString(36)}-`

/**
 * A `spawnChildWith` wrap that runs the child in a mount namespace of its own (root only) whose `/dev/shm` is a
 * tmpfs of `kib` KiB, `full`: filled to the last page by a file named `filler` (the host's `/dev/shm` is untouched).
 */
export const smallShm = (kib: number, options: { readonly full?: boolean } = {}): ReadonlyArray<string> =>
  Tmpfs.at("/dev/shm", { size: `${kib}k`, full: options.full })

/** Polls `output` until `line` matches it (at most 20 s, however loaded the machine); whether it did. */
export const untilSaid = (output: () => string, line: RegExp): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    while (!line.test(output()) && Date.now() < deadline) yield* Effect.sleep("20 millis")
    return line.test(output())
  })

/** A sealed memory file of `size` bytes, its pages not allocated (as a channel's ring): its descriptor. */
export const memfdSealed = (label: string, size: number): Effect.Effect<number, IpcError.IpcError> =>
  Libc.fromNow(() => Libc.memfdSealedNow(label, size, false))

/** Sets the size of the segment `fd` (`ftruncate`), as a hostile or half-done creator would. */
export const fdTruncate = (fd: number, size: number): Effect.Effect<void, IpcError.IpcError> =>
  Libc.fromNow(() => Libc.fdTruncateNow(fd, size))
