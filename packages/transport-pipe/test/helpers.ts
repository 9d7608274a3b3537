/** Test helpers: run a child process without blocking the event loop (the servers under test share it). */
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"

/** The Python peer written from the README's wire-format section. */
export const pythonPeer = Path.join(import.meta.dirname, "fixtures/peer.py")

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
    const child = ChildProcess.spawn(command, args, {
      stdio: ["pipe", "pipe", "pipe"],
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid })
    })
    const out: Array<Buffer> = []
    let err = ""
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()))
    child.on("close", (status) => resume(Effect.succeed({ status, stdout: Buffer.concat(out), stderr: err })))
    child.stdin.end(options.input)
    return Effect.sync(() => void child.kill("SIGKILL"))
  }).pipe(Effect.timeout("20 seconds"), Effect.orDie)
