/**
 * The nng contenders of the benchmark, measured by the same harness and in
 * the same run as the raw Unix socket baseline:
 *
 * - `nng`: an effect-ipc `IpcChannel` over `nng+ipc://` (`NngTransport`:
 *   nng's pair protocol and ipc transport through koffi, driven by libuv),
 *   to echo and sink peers in child processes (`nng.ts peer echo|sink ADDRESS`);
 * - `nng-c`: the same ping-pong and one-way runs written in C against the same
 *   libnng (`bench/nng.c`: pair1 over ipc, blocking `nng_send` / `nng_recv`),
 *   compiled here with gcc (no nng headers needed: it declares the few
 *   prototypes and links against libnng.so.1). Its echo and sink are C
 *   servers, and one C client (`nng-bench client`) runs every measurement,
 *   each a command on its stdin; all three are started with the contender,
 *   so that the driver starts no process while contenders take turns.
 *
 * The report holds the channel's p50 round trip against C's, its msgs/s at
 * 64 B and GB/s at 1 MiB against the targets, and every row against the raw
 * baseline.
 */
import { type IpcChannel, type IpcError, Transport } from "@effect-ipc/core"
import { NngTransport } from "@effect-ipc/transport-nng"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { type Contender, openChannels, readyProcess } from "./contenders.ts"
import { echo, sink } from "./handlers.ts"
import type { OneWayRun, Row } from "./report.ts"
import {
  makeTempDir,
  nodeScript,
  type PeerProcess,
  READY,
  removeTempDir,
  runPeerUntilStdinEnds,
  spawnReady
} from "./shared.ts"

const script = fileURLToPath(import.meta.url)
const cSource = Path.join(import.meta.dirname, "nng.c")
let contenders = 0

/** A fresh directory for one contender's ipc sockets, removed when the scope closes. */
const socketDir = Effect.acquireRelease(
  Effect.sync(() => makeTempDir("effect-ipc-bench-nng-")),
  (dir) => Effect.sync(() => removeTempDir(dir))
)

/**
 * Starts a process and waits until it says `ready`; it ends with the scope: its
 * stdin closed (or, with `terminate`, for a C server that never reads it, SIGTERM),
 * then SIGKILL after 2 s.
 */
const startProcess = (
  command: string,
  args: ReadonlyArray<string>,
  what: string,
  terminate = false
): Effect.Effect<PeerProcess, Error, Scope.Scope> =>
  Effect.map(readyProcess(command, args, what, { terminate }), (started) => started.child)

/** Starts a server process (`startProcess`). */
const startServer = (
  command: string,
  args: ReadonlyArray<string>,
  what: string,
  terminate = false
): Effect.Effect<void, Error, Scope.Scope> => Effect.asVoid(startProcess(command, args, what, terminate))

// ---- the effect-ipc channel over nng ----------------------------------------------------

/** The nng contender: fresh echo and sink peers, and our channels to them over `nng+ipc://`. */
export const openNng = (row: Row): Promise<Contender> => {
  const transport = NngTransport.make()
  return openChannels(
    row,
    Effect.gen(function*() {
      const dir = yield* socketDir
      const address = (role: string) => `nng+ipc://${Path.join(dir, `${role}.ipc`)}`
      yield* Effect.all([
        startServer(process.execPath, [...process.execArgv, script, "peer", "echo", address("echo")], "nng echo peer"),
        startServer(process.execPath, [...process.execArgv, script, "peer", "sink", address("sink")], "nng sink peer")
      ], { concurrency: 2 })
      return yield* Effect.all({ echo: transport.dial(address("echo")), sink: transport.dial(address("sink")) })
    })
  )
}

// ---- the same in C -----------------------------------------------------------------------

/** How the C contender links the libnng our channels load: `EFFECT_IPC_LIBNNG` (path and rpath), else the system's. */
const linkLibnng = (): Array<string> => {
  const library = process.env["EFFECT_IPC_LIBNNG"]
  return library !== undefined && library.includes("/")
    ? [library, `-Wl,-rpath,${Path.dirname(library)}`]
    : ["-l:libnng.so.1"]
}

/** Compiles `nng.c` into `dir` (once per contender); fails with gcc's own words. */
const compile = (dir: string): Effect.Effect<string, Error> =>
  Effect.callback<string, Error>((resume) => {
    const binary = Path.join(dir, "nng-bench")
    ChildProcess.execFile(
      "gcc",
      ["-O2", "-o", binary, cSource, ...linkLibnng()],
      (error, _stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(binary)
            : Effect.fail(
              new Error(`cannot build the C contender (gcc and libnng1 are needed): ${stderr || error.message}`)
            )
        )
    )
  })

/** The persistent C client: asks one command at a time and reads its answer, the lines before "done". */
interface CClient {
  readonly pid: number | undefined
  /** Runs `command`; refused while an earlier one is unanswered, or once the client has gone. */
  readonly ask: (command: string) => Promise<ReadonlyArray<string>>
  /** Ends a client still answering (a step the driver gave up on would wait for ever on a closed server). */
  readonly kill: () => void
}

/**
 * Starts `nng-bench client` once, dialled to both servers, before any
 * measurement: the driver forks no process while contenders take turns (a
 * fork write-protects every page of the driver, and the next round paid for
 * it). It ends (stdin closed, then SIGKILL) with the scope.
 */
const startClient = (binary: string, echoUrl: string, sinkUrl: string): Effect.Effect<CClient, Error, Scope.Scope> =>
  Effect.map(
    startProcess(binary, ["client", echoUrl, sinkUrl], "C client"),
    (child): CClient => {
      let partial = ""
      let answer: Array<string> = []
      let waiting:
        | { readonly resolve: (lines: ReadonlyArray<string>) => void; readonly reject: (e: Error) => void }
        | undefined
      let gone: Error | undefined
      child.stdout.on("data", (chunk: string) => {
        const lines = (partial + chunk).split("\n")
        partial = lines.pop()!
        for (const line of lines) {
          if (line !== "done") {
            answer.push(line)
            continue
          }
          const answered = answer
          answer = []
          const asked = waiting
          waiting = undefined
          asked?.resolve(answered)
        }
      })
      const end = (error: Error): void => {
        gone ??= error
        waiting?.reject(gone)
        waiting = undefined
      }
      child.once("exit", (code, signal) => end(new Error(`the C client exited (${signal ?? code})`)))
      // a client that died while idle: the next command's write fails (EPIPE) before its exit is seen
      child.stdin.on("error", (error) => end(new Error(`the C client's stdin: ${error.message}`)))
      return {
        pid: child.pid,
        ask: (command) =>
          new Promise((resolve, reject) => {
            if (gone !== undefined) return reject(gone)
            if (waiting !== undefined) return reject(new Error(`the C client is still running a command: ${command}`))
            waiting = { resolve, reject }
            child.stdin.write(`${command}\n`)
          }),
        kill: () => {
          if (waiting !== undefined) child.kill("SIGKILL")
        }
      }
    }
  )

/** The C contender: the echo and sink as C servers, and one C client that runs every measurement. */
export const openNngC = async (row: Row): Promise<Contender> => {
  const scope = Scope.makeUnsafe()
  const setup = Effect.gen(function*() {
    const dir = yield* socketDir
    const binary = yield* compile(dir)
    const url = (role: string) => `ipc://${Path.join(dir, `${role}-${contenders++}.ipc`)}`
    const echoUrl = url("echo")
    const sinkUrl = url("sink")
    yield* Effect.all([
      startServer(binary, ["echo", echoUrl], "C echo", true),
      startServer(binary, ["sink", sinkUrl], "C sink", true)
    ], { concurrency: 2 })
    return yield* startClient(binary, echoUrl, sinkUrl)
  })
  const client = await Effect.runPromise(Scope.provide(scope)(setup)).catch(
    async (error: unknown) => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      throw error
    }
  )
  return {
    row,
    countBytes: true,
    pingPong: async (n, warmup) => {
      const lines = await client.ask(`pingpong ${row.size} ${n} ${warmup}`)
      if (lines.length !== n) throw new Error(`the C client answered ${lines.length} round trips, not ${n}`)
      return Float64Array.from(lines, (line) => Number(line) / 1e6)
    },
    oneWay: async (seconds): Promise<OneWayRun> => {
      const lines = await client.ask(`oneway ${row.size} ${seconds}`)
      const figures = lines.length === 1 ? lines[0]!.trim().split(" ").map(Number) : []
      if (figures.length !== 4 || !figures.every(Number.isFinite)) {
        throw new Error(`the C client answered a one-way run with ${JSON.stringify(lines)}`)
      }
      const [sent, received, bytes, elapsed] = figures
      return { sent: sent!, received: received!, bytes: bytes!, seconds: elapsed! }
    },
    driverSide: client.pid === undefined ? [] : [client.pid],
    close: () => {
      client.kill()
      return Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }
}

// ---- the effect-ipc peer process ------------------------------------------------------------

const runPeer = (role: string, address: string) =>
  Effect.gen(function*() {
    const listener = yield* NngTransport.make().listen(address)
    // the address bound (a port 0 made real), then ready
    process.stdout.write(`at ${listener.address}\n${READY}\n`)
    const handler: (channel: IpcChannel.IpcChannel) => Effect.Effect<void, IpcError.IpcError> = role === "echo"
      ? echo
      : sink
    yield* Transport.serve(listener, handler)
  }).pipe(Effect.scoped)

// ---- how soon a killed peer is noticed ------------------------------------------------------

/** Starts an echo peer at `address`; resolves with it and the address it bound once it is ready. */
const spawnPeer = async (address: string): Promise<{ readonly child: PeerProcess; readonly address: string }> => {
  const started = await spawnReady(...nodeScript(script, ["peer", "echo", address]), "nng echo peer").ready
  const bound = /^at (.*)$/m.exec(started.printed)
  if (bound === null) {
    await started.stop()
    throw new Error("the nng echo peer did not say where it listens")
  }
  return { child: started.child, address: bound[1]! }
}

/**
 * The README's figure, measured: a channel to a peer process, the peer
 * SIGKILLed, and the time until the channel's `receive` fails with
 * `ConnectionLost`; `rounds` times per address kind, printed as percentiles.
 */
const lostPeer = async (rounds: number) => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-bench-nng-lost-"))
  const transport = NngTransport.make()
  try {
    for (const kind of ["ipc", "tcp"] as const) {
      const samples: Array<number> = []
      for (let i = 0; i < rounds; i++) {
        const address = kind === "ipc" ? `nng+ipc://${Path.join(dir, `lost-${i}.ipc`)}` : "nng+tcp://127.0.0.1:0"
        const ms = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
          const peer = yield* Effect.promise(() => spawnPeer(address))
          const channel = yield* transport.dial(peer.address)
          yield* channel.send(new Uint8Array([1]))
          yield* channel.receive
          const waiting = yield* Effect.forkChild(Effect.flip(channel.receive))
          const killedAt = performance.now()
          peer.child.kill("SIGKILL")
          const error = yield* Fiber.join(waiting)
          if (error.reason._tag !== "ConnectionLost") return yield* Effect.die(error)
          return performance.now() - killedAt
        })))
        samples.push(ms)
      }
      samples.sort((a, b) => a - b)
      const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!.toFixed(1)
      console.log(
        `nng+${kind}: a killed peer noticed in p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms (${rounds} rounds)`
      )
    }
  } finally {
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] === script && process.argv[2] === "lost-peer") {
  lostPeer(Number(process.argv[3] ?? 30)).catch((error: unknown) => {
    console.error("lost-peer failed:", error)
    process.exit(1)
  })
}

if (process.argv[1] === script && process.argv[2] === "peer") {
  const [role, address] = process.argv.slice(3)
  // the contender ends us by closing our stdin: the sockets are closed (an ipc:// listener's file goes), then we exit
  runPeerUntilStdinEnds(runPeer(role!, address!), `nng peer ${role}`)
}
