/**
 * The effect-ipc benchmark (`npm run bench`). For 64 B, 4 KiB and 1 MiB
 * payloads it measures ping-pong round trips (p50/p99) and one-way throughput
 * (one send per message) of raw `node:net` over a Unix socket (the baseline),
 * an effect-ipc `IpcChannel` over `unix://`, `memory://`, a FIFO pair
 * (`fifo://`), a child-process pipe (`ChildPipe`), `shm://`, `file://` and
 * `nng+ipc://` (beside the same program in C on the same libnng), zeromq
 * (npm `zeromq` 6, a Pair socket over `ipc://`: the message library a Node
 * user would pick), and typed RPC (DemoApi `Add`/`Echo`): effect-ipc's
 * `IpcRpc` over `unix://` beside effect's own RPC over a Node Unix socket
 * (`RpcClient.layerProtocolSocket` + `NodeSocket`), each with SchemaBinary
 * and with JSON (effect's own: NDJSON) serialization. At 1 MiB it also times
 * a plain memory copy in this process, the reference for `shm://`'s `receive`.
 * Every cross-process peer runs in a child process (`peer.ts`, or the
 * contender's own module); `memory://` is in-process by nature.
 *
 * The transports take turns (several rounds of each measurement, in rotating
 * order) so that a noisy neighbour or a frequency change hits them alike.
 * stderr shows what is running and how far the run is (`progress.ts`); the
 * report (Markdown tables of the numbers, the ratios between them, and every
 * target with met/missed) goes to stdout and to `bench/results/latest.{json,md}`.
 * Benchmarks are not tests: no assertions; the exit code is 1 only when a
 * measurement could not be made.
 *
 * Options: `--seconds=N` (one-way traffic per transport and size, default 3),
 * `--rounds=N` (one-way rounds, default 3), `--rtt-rounds=N` (round-trip
 * rounds, default 10), `--scale=F` (multiplies round-trip counts),
 * `--only=raw,unix,memory,fifo,child,shm,file,nng,zmq,rpc`,
 * `--stacks=ipc-packed,ipc-binary,ipc-json,effect-binary,effect-ndjson` (the RPC stacks),
 * `--shm=shm,shm-spin,shm-view,shm-ring-js,shm-ring-fiber,shm-ring-fallible` (the shm modes and the rings' floors), `--nng=nng,nng-c,nng-node,nng-node-aio`, `--sizes=64,4096,1048576`,
 * `--phases=rtt,oneway`, `--batch=N` (channels send one-way traffic N messages per `sendAll`), `--pin` (the
 * driver on CPU 0, every peer on CPU 1: `pin.ts`). Node flags such as
 * `--cpu-prof` go before the script; the peers inherit them (see README.md).
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import {
  type Contender,
  openChild,
  openFifo,
  openFreshCopy,
  openMemcpy,
  openMemory,
  openRaw,
  openUnix,
  rpcContender
} from "./contenders.ts"
import { openFile } from "./file.ts"
import { openNngNode } from "./nng-node.ts"
import { openNng, openNngC } from "./nng.ts"
import { pinDriver, pinPeers, type Placement } from "./pin.ts"
import { Progress } from "./progress.ts"
import { openRawFiber } from "./raw-fiber.ts"
import {
  evaluateTargets,
  KiB,
  MiB,
  type OneWayRun,
  render,
  type Row,
  type RowKey,
  rpcRowKey,
  rttStats,
  sizeLabel,
  standing,
  throughputStats
} from "./report.ts"
import { connectStack, type DemoClient, stackAddress, stackLabel } from "./rpc.ts"
import {
  argValue,
  type ChildPeerMode,
  makeTempDir,
  nodeScript,
  type PeerMode,
  removeTempDir,
  rpcPeerMode,
  type RpcStack,
  rpcStacks,
  spawnReady,
  stackOfPeerMode
} from "./shared.ts"
import { openShmFloor } from "./shm-floor.ts"
import { openShm, shmModes } from "./shm.ts"
import { openZmq } from "./zmq.ts"

/** The peer modes that `startPeer` runs (the child-pipe peers are the contender's own children). */
type ServerPeerMode = Exclude<PeerMode, ChildPeerMode>

// ---- configuration ------------------------------------------------------------

/**
 * Timed round trips per payload size (channels and baseline; RPC), and untimed warm-up ones (channels;
 * RPC). At 1 MiB a fresh peer's first 20 to 40 round trips take 10 to 20 times the later ones, raw
 * node:net's too (memory the VM has not handed the process before: see bench/README.md, "1 MiB
 * messages"), so every contender warms up with 40 and is timed over 300.
 */
const plans: Record<
  number,
  { readonly rtt: number; readonly rpcRtt: number; readonly warmup: number; readonly rpcWarmup: number }
> = {
  [64]: { rtt: 30_000, rpcRtt: 6_000, warmup: 2_000, rpcWarmup: 600 },
  [4 * KiB]: { rtt: 15_000, rpcRtt: 3_000, warmup: 1_000, rpcWarmup: 300 },
  [MiB]: { rtt: 300, rpcRtt: 300, warmup: 40, rpcWarmup: 40 }
}

type Section = "raw" | "unix" | "memory" | "fifo" | "child" | "shm" | "file" | "nng" | "zmq" | "rpc"
const allSections: ReadonlyArray<Section> = [
  "raw",
  "unix",
  "memory",
  "fifo",
  "child",
  "shm",
  "file",
  "nng",
  "zmq",
  "rpc"
]
type Phase = "rtt" | "oneway"

const seconds = Number(argValue("seconds") ?? "3")
const rounds = Math.max(1, Math.round(Number(argValue("rounds") ?? "3")))
const rttRounds = Math.max(1, Math.round(Number(argValue("rtt-rounds") ?? "10")))
const scale = Number(argValue("scale") ?? "1")
const sections = new Set<Section>(
  (argValue("only")?.split(",") ?? allSections).filter((s): s is Section => allSections.some((a) => a === s))
)
const sizes = (argValue("sizes")?.split(",").map(Number) ?? [64, 4 * KiB, MiB]).filter((n) => plans[n] !== undefined)
const stacks = (argValue("stacks")?.split(",") ?? rpcStacks).filter((s): s is RpcStack =>
  rpcStacks.some((k) => k === s)
)
const shmKeys = new Set(
  argValue("shm")?.split(",") ?? [...shmModes.map((m) => m.key), "shm-ring-js", "shm-ring-fiber", "shm-ring-fallible"]
)
const nngKeys = new Set(argValue("nng")?.split(",") ?? ["nng", "nng-c", "nng-node", "nng-node-aio"])
const phases = new Set<Phase>(
  (argValue("phases")?.split(",") ?? ["rtt", "oneway"]).filter((p): p is Phase => p === "rtt" || p === "oneway")
)

/** The RPC rows at a payload size: every stack at 64 B (Add and Echo); ours (packed and SchemaBinary) and effect's SchemaBinary at every size (Echo). */
const rpcRows = (size: number): ReadonlyArray<{ readonly stack: RpcStack; readonly procedure: "add" | "echo" }> =>
  stacks.flatMap((stack) =>
    size === 64
      ? [{ stack, procedure: "add" as const }, { stack, procedure: "echo" as const }]
      : stack === "ipc-packed" || stack === "ipc-binary" || stack === "effect-binary"
      ? [{ stack, procedure: "echo" as const }]
      : []
  )

/** Concurrent callers in the RPC calls/s runs. */
const rpcConcurrency = (size: number): number => size >= MiB ? 8 : 64

/** Length of the warm-up one-way run before the measured ones. */
const WARMUP_SECONDS = 0.25

/** Longest a single step may take before it is abandoned. */
const STEP_TIMEOUT_MS = 90_000

const scaled = (n: number): number => Math.max(10, Math.round(n * scale))

const describe = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)

const display = new Progress()
const progress = (text: string): void => display.note(text)

const withTimeout = <A>(promise: Promise<A>, label: string): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${label}: no result after ${STEP_TIMEOUT_MS} ms`)),
      STEP_TIMEOUT_MS
    )
    void promise.then(
      (a) => {
        clearTimeout(timer)
        resolve(a)
      },
      (e: unknown) => {
        clearTimeout(timer)
        reject(e)
      }
    )
  })

// ---- peers ----------------------------------------------------------------------

interface Peer {
  readonly address: string
  readonly stop: () => Promise<void>
}

const peerScript = Path.join(import.meta.dirname, "peer.ts")
const socketDir = makeTempDir("effect-ipc-bench-")

// interrupted: exit, so that the temporary directories go (`makeTempDir`) and the peers, their stdin closed, end too
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    display.finish()
    process.exit(130)
  })
}

/** The peers run with our node flags (the source condition, and any `--cpu-prof`). */
const peerExecArgv = (): Array<string> => {
  const args = [...process.execArgv]
  if (!args.some((a) => a.startsWith("--conditions=@effect-ipc/source"))) args.push("--conditions=@effect-ipc/source")
  return args
}

/**
 * A socket path for `raw-*` and `rpc-effect-*`, `unix://` for `ipc-*` and `rpc-ipc-*`, `fifo://` (the listener
 * makes its FIFOs) for `fifo-*`.
 */
const peerAddress = (mode: ServerPeerMode): string => {
  const stack = stackOfPeerMode(mode)
  if (stack !== undefined) return stackAddress(stack, Path.join(socketDir, `${mode}.sock`))
  switch (mode) {
    case "raw-echo":
    case "raw-sink":
    case "raw-fiber-echo":
    case "raw-fiber-sink":
      return Path.join(socketDir, `${mode}.sock`)
    case "fifo-echo":
    case "fifo-sink":
      return `fifo://${Path.join(socketDir, mode)}`
    case "ipc-echo":
    case "ipc-sink":
      return `unix://${Path.join(socketDir, `${mode}.sock`)}`
  }
  return Path.join(socketDir, `${mode}.sock`)
}

const startPeer = async (mode: ServerPeerMode): Promise<Peer> => {
  const address = peerAddress(mode)
  const { child, ready } = spawnReady(...nodeScript(peerScript, [mode, address], peerExecArgv()), `peer ${mode}`, {
    graceMs: 5_000
  })
  // a peer given up on is not left running
  const started = await withTimeout(ready, `peer ${mode}`).catch((error: unknown): never => {
    child.kill("SIGKILL")
    throw error
  })
  return { address, stop: started.stop }
}

// ---- measuring -------------------------------------------------------------------------

const rows: Array<Row> = []

const newRow = (size: number, key: RowKey, transport: string): Row => {
  const row: Row = { size, key, transport, errors: [], warnings: [] }
  rows.push(row)
  return row
}

interface Entry {
  readonly contender: Contender
  readonly rttCount: number
  readonly warmup: number
  readonly samples: Array<Float64Array>
  readonly runs: Array<OneWayRun>
  failed: boolean
}

/** Runs one step of an entry; a failure is recorded and takes the entry out of the remaining steps. */
const step = async (entry: Entry, what: string, run: () => Promise<void>): Promise<void> => {
  if (entry.failed) return
  const row = entry.contender.row
  try {
    await withTimeout(run(), `${row.transport} ${what}`)
  } catch (error) {
    entry.failed = true
    row.errors.push(`${what}: ${describe(error)}`)
    progress(`  ${row.transport} ${what} failed: ${describe(error)}`)
  }
}

const concat = (parts: ReadonlyArray<Float64Array>): Float64Array => {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.length
  }
  return out
}

const rotate = <A>(items: ReadonlyArray<A>, by: number): ReadonlyArray<A> => {
  const k = items.length === 0 ? 0 : by % items.length
  return [...items.slice(k), ...items.slice(0, k)]
}

/** A contender to open at one payload size: its row, and how to open it. */
interface Spec {
  readonly row: Row
  readonly open: () => Promise<Contender>
  /** RPC: fewer round trips (a call costs more than a message). */
  readonly rpc: boolean
}

/** The contenders at `size`, in report order (rows are made now, opened later). */
const specsAt = (
  size: number,
  peers: ReadonlyMap<ServerPeerMode, Peer>,
  clients: ReadonlyMap<RpcStack, DemoClient>
): ReadonlyArray<Spec> => {
  const specs: Array<Spec> = []
  const add = (key: RowKey, transport: string, open: (row: Row) => Promise<Contender>, rpc = false) => {
    const row = newRow(size, key, transport)
    specs.push({ row, open: () => open(row), rpc })
  }
  const peer = (mode: ServerPeerMode) => peers.get(mode)?.address ?? ""
  if (sections.has("raw")) {
    add("raw", "raw node:net unix socket (baseline)", (row) => openRaw(row, peer("raw-echo"), peer("raw-sink")))
    add(
      "raw-fiber",
      "raw node:net driven by effect fibers (no channel)",
      (row) => openRawFiber(row, peer("raw-fiber-echo"), peer("raw-fiber-sink"))
    )
  }
  if (sections.has("unix")) {
    add("unix", "effect-ipc Channel unix://", (row) => openUnix(row, peer("ipc-echo"), peer("ipc-sink")))
  }
  if (sections.has("memory")) add("memory", "effect-ipc Channel memory:// (in-process)", openMemory)
  if (sections.has("fifo")) {
    add("fifo", "effect-ipc Channel fifo:// (FIFO pair)", (row) => openFifo(row, peer("fifo-echo"), peer("fifo-sink")))
  }
  if (sections.has("child")) {
    add(
      "child",
      "effect-ipc Channel child pipe (ChildPipe, fd 3)",
      (row) => openChild(row, process.execPath, [...peerExecArgv(), peerScript])
    )
  }
  if (sections.has("shm")) {
    for (const mode of shmModes.filter((m) => shmKeys.has(m.key) && (m.key !== "shm-view" || size === MiB))) {
      add(mode.key, mode.label, (row) => openShm(row, mode))
    }
    // the rings alone, spinning, from plain JavaScript and from effect fibers: the floors under shm:// spin; at
    // 1 MiB plain JavaScript only, the floor under shm:// `receive` (each message copied out of the ring)
    if (shmKeys.has("shm-ring-js")) {
      add(
        "shm-ring-js",
        "shm:// rings, spinning, plain JavaScript (no effect, no channel)",
        (row) => openShmFloor(row, "js")
      )
    }
    if (size < MiB) {
      if (shmKeys.has("shm-ring-fiber")) {
        add(
          "shm-ring-fiber",
          "shm:// rings, spinning, driven by effect fibers (no channel)",
          (row) => openShmFloor(row, "fiber")
        )
      }
      if (shmKeys.has("shm-ring-fallible")) {
        add(
          "shm-ring-fallible",
          "shm:// rings, spinning, effect fibers, each send able to fail (no channel)",
          (row) => openShmFloor(row, "fallible")
        )
      }
    }
    if (size === MiB) {
      add("memcpy", "memcpy in this process (Uint8Array.set, 1 MiB)", openMemcpy)
      add("fresh-copy", "a copy into fresh memory in this process (Buffer.allocUnsafe + set, 1 MiB)", openFreshCopy)
    }
  }
  if (sections.has("file")) add("file", "effect-ipc Channel file:// (two logs in a directory)", openFile)
  if (sections.has("nng")) {
    if (nngKeys.has("nng")) add("nng", "effect-ipc Channel nng+ipc:// (nng pair1 through koffi)", openNng)
    if (nngKeys.has("nng-c")) add("nng-c", "the same in C on the same libnng (pair1, ipc://)", openNngC)
    if (nngKeys.has("nng-node")) {
      add("nng-node", "the same from Node without effect-ipc (koffi, pair1, ipc://)", openNngNode)
    }
    if (nngKeys.has("nng-node-aio")) {
      add("nng-node-aio", "the same, woken by an aio callback, not recv-fd", (row) => openNngNode(row, "aio"))
    }
  }
  if (sections.has("zmq")) add("zmq", "zeromq 6 Pair over ipc:// (npm zeromq)", openZmq)
  for (const { stack, procedure } of rpcRows(size)) {
    const client = clients.get(stack)
    if (client === undefined) continue
    const name = procedure === "add" ? "Add" : "Echo"
    add(
      rpcRowKey(procedure, stack),
      `RPC ${name}: ${stackLabel(stack)} (${rpcConcurrency(size)} concurrent for calls/s)`,
      async (row) => rpcContender(row, client, name, rpcConcurrency(size)),
      true
    )
  }
  return specs
}

/** When each phase ran, in µs of the monotonic clock that `--cpu-prof` profiles use (see `profile.ts --window`). */
const windows: Array<
  { readonly size: number; readonly phase: Phase; readonly startUs: number; readonly endUs: number }
> = []

const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n)

/** Steps of one contender at one size: a warm-up, the round-trip rounds and the one-way rounds. */
const stepsPerContender = (): number => 1 + (phases.has("rtt") ? rttRounds : 0) + (phases.has("oneway") ? rounds : 0)

/** Where the processes run (`pin.ts`), once `main` has pinned the driver. */
let placement: Placement | undefined

const measureSize = async (size: number, specs: ReadonlyArray<Spec>): Promise<void> => {
  const plan = plans[size]!
  const label = sizeLabel(size)
  const entries: Array<Entry> = []
  let firstSpec = true
  for (const spec of specs) {
    const row = spec.row
    const logged = firstSpec
      ? `${label} · starting ${specs.length} contenders (their peers, then a connection)`
      : undefined
    firstSpec = false
    display.begin(`${label} · connect · ${row.transport}`, logged)
    try {
      const contender = await withTimeout(spec.open(), `${row.transport} connect`)
      entries.push({
        contender,
        rttCount: scaled(spec.rpc ? plan.rpcRtt : plan.rtt),
        warmup: scaled(spec.rpc ? plan.rpcWarmup : plan.warmup),
        samples: [],
        runs: [],
        failed: false
      })
    } catch (error) {
      row.errors.push(`connect: ${describe(error)}`)
      progress(`  ${row.transport} connect failed: ${describe(error)}`)
      // its steps will not run
      for (let i = 0; i < stepsPerContender(); i++) display.end()
    }
  }

  // the peers each contender started (child pipes) have started now
  const placed = pinPeers(placement, new Set(entries.flatMap((e) => e.contender.driverSide ?? [])))
  if (placed.failed > 0) progress(`${placed.failed} peer processes could not be pinned (see bench/pin.ts)`)
  for (const e of entries) {
    const text = `${label} · warm-up · ${e.contender.row.transport}`
    display.begin(text, text)
    await step(e, "warm-up", async () => {
      if (e.contender.pingPong !== undefined) await e.contender.pingPong(0, e.warmup)
      if (phases.has("oneway")) await e.contender.oneWay(WARMUP_SECONDS)
    })
    display.end()
  }
  if (phases.has("rtt")) {
    const startUs = monotonicUs()
    for (let r = 0; r < rttRounds; r++) {
      let first = true
      for (const e of rotate(entries, r)) {
        const round = `${label} · round trips ${r + 1}/${rttRounds}`
        display.begin(
          `${round} · ${e.contender.row.transport}`,
          first ? `${round} (${entries.length} contenders)` : undefined
        )
        first = false
        const pingPong = e.contender.pingPong
        if (pingPong !== undefined) {
          await step(e, "round trips", async () => {
            e.samples.push(await pingPong(Math.ceil(e.rttCount / rttRounds), 0))
          })
        }
        display.end()
      }
    }
    windows.push({ size, phase: "rtt", startUs, endUs: monotonicUs() })
  }
  if (phases.has("oneway")) {
    const startUs = monotonicUs()
    for (let r = 0; r < rounds; r++) {
      let first = true
      for (const e of rotate(entries, r)) {
        const round = `${label} · one-way ${r + 1}/${rounds}`
        display.begin(
          `${round} · ${e.contender.row.transport}`,
          first ? `${round} (${entries.length} contenders)` : undefined
        )
        first = false
        await step(e, "one-way", async () => {
          e.runs.push(await e.contender.oneWay(seconds / rounds))
        })
        display.end()
      }
    }
    windows.push({ size, phase: "oneway", startUs, endUs: monotonicUs() })
  }
  for (const e of entries) {
    const row = e.contender.row
    if (e.samples.length > 0) {
      row.rtt = {
        ...rttStats(concat(e.samples)),
        roundP50s: e.samples.map((s) => rttStats(s).p50)
      }
    }
    if (e.runs.length > 0) row.throughput = throughputStats(row, e.runs, e.contender.countBytes)
    await e.contender.close().catch((error: unknown) => row.warnings.push(`close: ${describe(error)}`))
  }
}

// ---- main ----------------------------------------------------------------------------

const main = async (): Promise<number> => {
  const started = performance.now()
  placement = pinDriver(false, progress)
  if (placement !== undefined) {
    progress(`pinned: the driver's main thread to CPU ${placement.driver}, each peer's to CPU ${placement.peers}`)
  }
  const loadBefore = Os.loadavg()
  const rpcModes = sections.has("rpc")
    ? [...new Set(sizes.flatMap((size) => rpcRows(size).map((r) => rpcPeerMode(r.stack))))]
    : []
  const modes: Array<ServerPeerMode> = [
    ...(sections.has("raw") ? (["raw-echo", "raw-sink", "raw-fiber-echo", "raw-fiber-sink"] as const) : []),
    ...(sections.has("unix") ? (["ipc-echo", "ipc-sink"] as const) : []),
    ...(sections.has("fifo") ? (["fifo-echo", "fifo-sink"] as const) : []),
    ...rpcModes
  ]
  progress(`starting peers: ${modes.join(", ")}`)
  const peers = new Map<ServerPeerMode, Peer>()
  const launched = await Promise.allSettled(modes.map(async (m) => [m, await startPeer(m)] as const))
  for (const s of launched) {
    if (s.status === "fulfilled") peers.set(s.value[0], s.value[1])
    else progress(`a peer did not start: ${describe(s.reason)}`)
  }
  const connections = new Map<RpcStack, { readonly client: DemoClient; readonly close: () => Promise<void> }>()
  let rpcFailed = false
  try {
    for (const mode of rpcModes) {
      const stack = stackOfPeerMode(mode)
      const peer = peers.get(mode)
      if (stack === undefined || peer === undefined) continue
      await withTimeout(connectStack(stack, peer.address), `RPC connect (${stack})`).then(
        (connection) => void connections.set(stack, connection),
        (error: unknown) => {
          rpcFailed = true
          progress(`RPC client ${stack} failed: ${describe(error)}`)
        }
      )
    }
    const clients = new Map([...connections].map(([stack, c]) => [stack, c.client] as const))
    const specs = sizes.map((size) => [size, specsAt(size, peers, clients)] as const)
    display.plan(specs.reduce((n, [, s]) => n + s.length, 0) * stepsPerContender())
    for (const [size, s] of specs) await measureSize(size, s)
  } finally {
    display.finish()
    await Promise.all([...connections.values()].map((c) => c.close().catch(() => undefined)))
    await Promise.all([...peers.values()].map((p) => p.stop()))
    removeTempDir(socketDir)
  }

  const { markdown, json } = render(rows, {
    sizes,
    seconds,
    rounds,
    rttRounds,
    config: {
      seconds,
      rounds,
      rttRounds,
      scale,
      sections: [...sections],
      stacks,
      phases: [...phases],
      sizes,
      plans,
      rpcConcurrency: sizes.map(rpcConcurrency)
    },
    windows,
    loadBefore,
    loadAfter: Os.loadavg(),
    elapsedSeconds: (performance.now() - started) / 1000,
    placement
  })
  console.log(markdown)
  const dir = Path.join(import.meta.dirname, "results")
  Fs.mkdirSync(dir, { recursive: true })
  Fs.writeFileSync(Path.join(dir, "latest.md"), markdown)
  Fs.writeFileSync(Path.join(dir, "latest.json"), json)
  const outcome = evaluateTargets(rows, sizes).filter((t) => t.group === "issue 12")
  const underFloors = outcome.filter((t) => standing(t) === "every floor misses").length
  progress(
    `issue 12 targets: ${outcome.filter((t) => t.met === true).length} met, ` +
      `${outcome.filter((t) => t.met === false).length} missed (${underFloors} missed by every floor beside them), ${
        outcome.filter((t) => t.met === undefined).length
      } not measured; wrote bench/results/latest.{json,md} (${((performance.now() - started) / 1000).toFixed(1)} s)`
  )
  const missing = modes.some((m) => !peers.has(m)) || rpcFailed
  return missing || rows.some((r) => r.errors.length > 0) ? 1 : 0
}

process.exit(await main())
