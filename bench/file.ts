/**
 * The file-channel contender of the benchmark: an effect-ipc `IpcChannel`
 * over `file://` (`@effect-ipc/transport-file`: two append-only logs per
 * connection in a directory, woken by inotify), measured by the same harness
 * and in the same run as the raw Unix-socket baseline.
 *
 * Each contender starts its own echo and sink peers in child processes
 * (`file.ts peer <echo|sink> <address>`) listening on directories under a
 * fresh temporary directory, which is removed when the contender closes.
 */
import { Transport } from "@effect-ipc/core"
import * as File from "@effect-ipc/transport-file"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { fileURLToPath } from "node:url"
import { type Contender, openChannels, startScriptPeer } from "./contenders.ts"
import { echo, sink } from "./handlers.ts"
import type { Row } from "./report.ts"
import { makeTempDir, READY, removeTempDir, runPeerUntilStdinEnds } from "./shared.ts"

const script = fileURLToPath(import.meta.url)

/** Starts `file.ts peer ROLE ADDRESS` and waits until it listens; it ends when the scope closes. */
const startPeer = (role: "echo" | "sink", address: string): Effect.Effect<void, Error, Scope.Scope> =>
  startScriptPeer(script, [role, address], `file peer ${role}`)

/** The file contender: fresh echo and sink peers on directories of their own, and our channels to them. */
export const openFile = (row: Row): Promise<Contender> => {
  const transport = File.FileTransport.make()
  return openChannels(
    row,
    Effect.gen(function*() {
      const root = yield* Effect.acquireRelease(
        Effect.sync(() => makeTempDir("effect-ipc-bench-file-")),
        (dir) => Effect.sync(() => removeTempDir(dir))
      )
      const echoAddress = `file://${root}/echo`
      const sinkAddress = `file://${root}/sink`
      yield* Effect.all([startPeer("echo", echoAddress), startPeer("sink", sinkAddress)], { concurrency: 2 })
      return yield* Effect.all({ echo: transport.dial(echoAddress), sink: transport.dial(sinkAddress) })
    })
  )
}

// ---- the peer process ------------------------------------------------------------------

const runPeer = (role: string, address: string) =>
  Effect.gen(function*() {
    const listener = yield* File.FileTransport.make().listen(address)
    process.stdout.write(`${READY}\n`)
    yield* Transport.serve(listener, role === "echo" ? echo : sink)
  }).pipe(Effect.scoped)

if (process.argv[1] === script && process.argv[2] === "peer") {
  const [role, address] = process.argv.slice(3)
  // the contender ends us by closing our stdin: the listener is closed (its files go with it), then we exit
  runPeerUntilStdinEnds(runPeer(role!, address!), `file peer ${role}`)
}
