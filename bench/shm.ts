/**
 * The shared-memory contenders of the benchmark: an effect-ipc `IpcChannel`
 * over `shm://` (`@effect-ipc/transport-shm`), measured by the same harness
 * and in the same run as the raw baseline and `unix://`:
 *
 * - `shm`: blocking mode (no spin, the defaults): a receiver with nothing to
 *   read polls the ring once per event-loop turn for up to 200 µs (adaptive),
 *   then sleeps on the doorbell (one socket wake-up per direction when idle);
 * - `shm-spin`: the receiver (and a sender facing a full ring) busy-waits up
 *   to 200 µs before it sleeps, on both sides;
 * - `shm-view`: blocking mode, the sink reads large messages in place
 *   (`receiveView`, no copy into the JS heap) instead of `receiveAll`.
 *
 * Each contender starts its own echo and sink peers in child processes
 * (`shm.ts peer <echo|sink|sink-view> <address> <spin µs>`), ended with it.
 */
import { type IpcChannel, type IpcError, Transport } from "@effect-ipc/core"
import * as Shm from "@effect-ipc/transport-shm"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { fileURLToPath } from "node:url"
import { type Contender, openChannels, startScriptPeer } from "./contenders.ts"
import { echo, sink } from "./handlers.ts"
import type { Row, RowKey } from "./report.ts"
import { READY, runPeerUntilStdinEnds, SinkCounter } from "./shared.ts"

/** One way of running the shm channel. */
export interface ShmMode {
  readonly key: Extract<RowKey, "shm" | "shm-spin" | "shm-view">
  readonly label: string
  /** Busy-wait budget of both ends, in µs (0: sleep at once). */
  readonly spinMicros: number
  /** The sink's way of reading. */
  readonly sink: "sink" | "sink-view"
}

/** The modes the benchmark measures. */
export const shmModes: ReadonlyArray<ShmMode> = [
  { key: "shm", label: "effect-ipc Channel shm:// (blocking)", spinMicros: 0, sink: "sink" },
  { key: "shm-spin", label: "effect-ipc Channel shm:// (spin 200 µs)", spinMicros: 200, sink: "sink" },
  {
    key: "shm-view",
    label: "effect-ipc Channel shm:// (blocking, sink reads in place)",
    spinMicros: 0,
    sink: "sink-view"
  }
]

const script = fileURLToPath(import.meta.url)
let addresses = 0

const transportOf = (spinMicros: number) =>
  Shm.ShmTransport.make(spinMicros > 0 ? { spin: `${spinMicros} micros` } : {})

/** Starts `shm.ts peer ROLE ADDRESS SPIN` and waits until it listens; it ends when the scope closes. */
const startPeer = (
  role: "echo" | "sink" | "sink-view",
  address: string,
  spinMicros: number
): Effect.Effect<void, Error, Scope.Scope> =>
  startScriptPeer(script, [role, address, String(spinMicros)], `shm peer ${role}`)

/** The shm contender in `mode`: fresh echo and sink peers, and our channels to them. */
export const openShm = (row: Row, mode: ShmMode): Promise<Contender> => {
  const base = `shm://effect-ipc-bench-${process.pid}-${addresses++}`
  const transport = transportOf(mode.spinMicros)
  return openChannels(
    row,
    Effect.gen(function*() {
      yield* Effect.all([
        startPeer("echo", `${base}-echo`, mode.spinMicros),
        startPeer(mode.sink, `${base}-sink`, mode.spinMicros)
      ], { concurrency: 2 })
      return yield* Effect.all({ echo: transport.dial(`${base}-echo`), sink: transport.dial(`${base}-sink`) })
    })
  )
}

// ---- the peer process ------------------------------------------------------------------

/** A sink that reads every message in place (`receiveView`) and releases it at once. */
const sinkInPlace = (channel: IpcChannel.IpcChannel): Effect.Effect<void, IpcError.IpcError> =>
  Effect.gen(function*() {
    const counter = new SinkCounter()
    while (true) {
      const length = yield* Effect.scoped(Effect.map(Shm.ShmChannel.receiveView(channel), (view) => view.byteLength))
      counter.batch()
      const report = counter.count(length)
      if (report !== undefined) yield* channel.send(report)
    }
  }).pipe(Effect.catch((error) => error.reason._tag === "Closed" ? Effect.void : Effect.fail(error)))

const runPeer = (role: string, address: string, spinMicros: number) =>
  Effect.gen(function*() {
    const listener = yield* transportOf(spinMicros).listen(address)
    process.stdout.write(`${READY}\n`)
    yield* Transport.serve(listener, role === "echo" ? echo : role === "sink-view" ? sinkInPlace : sink)
  }).pipe(Effect.scoped)

if (process.argv[1] === script && process.argv[2] === "peer") {
  const [role, address, spin] = process.argv.slice(3)
  // the contender ends us by closing our stdin: the listener is closed (its socket file goes with it), then we exit
  runPeerUntilStdinEnds(runPeer(role!, address!, Number(spin)), `shm peer ${role}`)
}
