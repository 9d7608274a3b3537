/**
 * The effect-ipc benchmark (`npm run bench`). For 64 B, 4 KiB and 1 MiB
 * payloads it measures ping-pong round trips (p50/p99) and one-way throughput
 * (one send per message) of raw `node:net` over a Unix socket (the baseline),
 * an effect-ipc `IpcChannel` over `unix://`, over `memory://`, over a FIFO
 * pair (`fifo://`) and over a child-process pipe (`ChildPipe`), and typed
 * RPC (`IpcRpc`, DemoApi `Add`/`Echo`) over `unix://`. Every cross-process
 * peer (echo server, sink, RPC server) is a child process running
 * `bench/peer.ts`: started once for the whole run, except the child-pipe
 * peers, which the contender spawns itself (`ChildPipe.spawn`) for each
 * payload size; `memory://` is in-process by nature.
 *
 * The transports take turns (several rounds of each measurement, in rotating
 * order) so that a noisy neighbour or a frequency change hits them alike.
 * Results are printed as Markdown tables with the targets beside them, and
 * written to `bench/results/latest.{json,md}`. Benchmarks are not tests: no
 * assertions; the exit code is 1 only when a measurement could not be made.
 *
 * Options: `--seconds=N` (one-way traffic per transport and size, default 3),
 * `--rounds=N` (one-way rounds, default 3), `--rtt-rounds=N` (round-trip
 * rounds, default 10), `--scale=F` (multiplies round-trip counts),
 * `--only=raw,unix,memory,fifo,child,shm,file,nng,rpc`, `--sizes=64,4096,1048576`. Node flags such as
 * `--cpu-prof` go before the script; the peers inherit them.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import {
  connectRpc,
  type Contender,
  type DemoClient,
  openChild,
  openFifo,
  openMemory,
  openRaw,
  openUnix,
  rpcContender
} from "./contenders.ts"
import { openFile } from "./file.ts"
import { openNng, openNngC } from "./nng.ts"
import {
  KiB,
  MiB,
  type OneWayRun,
  render,
  type Row,
  type RowKey,
  rttStats,
  sizeLabel,
  throughputStats
} from "./report.ts"
import { type ChildPeerMode, type PeerMode, READY } from "./shared.ts"
import { openShm, shmModes } from "./shm.ts"

/** The peer modes that `startPeer` runs (the child-pipe peers are the contender's own children). */
type ServerPeerMode = Exclude<PeerMode, ChildPeerMode>

// ---- configuration ------------------------------------------------------------

/** Timed round trips per payload size (channels and baseline; RPC), and untimed warm-up ones. */
const plans: Record<number, { readonly rtt: number; readonly rpcRtt: number; readonly warmup: number }> = {
  [64]: { rtt: 30_000, rpcRtt: 6_000, warmup: 2_000 },
  [4 * KiB]: { rtt: 15_000, rpcRtt: 3_000, warmup: 1_000 },
  [MiB]: { rtt: 300, rpcRtt: 45, warmup: 20 }
}

type Section = "raw" | "unix" | "memory" | "fifo" | "child" | "shm" | "file" | "nng" | "rpc"
const allSections: ReadonlyArray<Section> = ["raw", "unix", "memory", "fifo", "child", "shm", "file", "nng", "rpc"]

const argValue = (name: string): string | undefined => {
  const prefix = `--${name}=`
  return process.argv.slice(2).find((a) => a.startsWith(prefix))?.slice(prefix.length)
}

const seconds = Number(argValue("seconds") ?? "3")
const rounds = Math.max(1, Math.round(Number(argValue("rounds") ?? "3")))
const rttRounds = Math.max(1, Math.round(Number(argValue("rtt-rounds") ?? "10")))
const scale = Number(argValue("scale") ?? "1")
const sections = new Set<Section>(
  (argValue("only")?.split(",") ?? allSections).filter((s): s is Section => allSections.some((a) => a === s))
)
const sizes = (argValue("sizes")?.split(",").map(Number) ?? [64, 4 * KiB, MiB]).filter((n) => plans[n] !== undefined)

/** Concurrent callers in the RPC calls/s runs. */
const rpcConcurrency = (size: number): number => size >= MiB ? 8 : 64

/** Length of the warm-up one-way run before the measured ones. */
const WARMUP_SECONDS = 0.25

/** Longest a single step may take before it is abandoned. */
const STEP_TIMEOUT_MS = 90_000

const scaled = (n: number): number => Math.max(10, Math.round(n * scale))

const describe = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error)

const progress = (text: string): void => {
  process.stderr.write(`${text}\n`)
}

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
const socketDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-bench-"))

/** The peers run with our node flags (the source condition, and any `--cpu-prof`). */
const peerExecArgv = (): Array<string> => {
  const args = [...process.execArgv]
  if (!args.some((a) => a.startsWith("--conditions=@effect-ipc/source"))) args.push("--conditions=@effect-ipc/source")
  return args
}

/** A socket path for `raw-*`, `unix://` for `ipc-*` and `rpc`, `fifo://` (the listener makes its FIFOs) for `fifo-*`. */
const peerAddress = (mode: ServerPeerMode): string => {
  switch (mode) {
    case "raw-echo":
    case "raw-sink":
      return Path.join(socketDir, `${mode}.sock`)
    case "fifo-echo":
    case "fifo-sink":
      return `fifo://${Path.join(socketDir, mode)}`
    case "ipc-echo":
    case "ipc-sink":
    case "rpc":
      return `unix://${Path.join(socketDir, `${mode}.sock`)}`
  }
}

const startPeer = (mode: ServerPeerMode): Promise<Peer> => {
  const address = peerAddress(mode)
  const child = ChildProcess.spawn(process.execPath, [...peerExecArgv(), peerScript, mode, address], {
    stdio: ["pipe", "pipe", "inherit"]
  })
  let exited = false
  child.once("exit", () => {
    exited = true
  })
  const stop = () =>
    new Promise<void>((resolve) => {
      if (exited) return resolve()
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000)
      child.once("exit", () => {
        clearTimeout(timer)
        resolve()
      })
      child.stdin.end()
    })
  return withTimeout(
    new Promise<Peer>((resolve, reject) => {
      let out = ""
      const onExit = (code: number | null) => reject(new Error(`peer ${mode} exited (${code}) before it was ready`))
      child.once("exit", onExit)
      child.once("error", reject)
      child.stdout.setEncoding("utf8")
      child.stdout.on("data", (text: string) => {
        out += text
        if (out.includes(`${READY}\n`)) {
          child.off("exit", onExit)
          resolve({ address, stop })
        }
      })
    }),
    `peer ${mode}`
  )
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

const measureSize = async (
  size: number,
  peers: ReadonlyMap<ServerPeerMode, Peer>,
  rpc: DemoClient | undefined
): Promise<void> => {
  const plan = plans[size]!
  const entries: Array<Entry> = []
  const add = async (row: Row, open: () => Promise<Contender>, rpcCounts = false) => {
    try {
      const contender = await withTimeout(open(), `${row.transport} connect`)
      entries.push({
        contender,
        rttCount: scaled(rpcCounts ? plan.rpcRtt : plan.rtt),
        warmup: scaled(rpcCounts ? Math.ceil(plan.rpcRtt / 10) : plan.warmup),
        samples: [],
        runs: [],
        failed: false
      })
    } catch (error) {
      row.errors.push(`connect: ${describe(error)}`)
      progress(`  ${row.transport} connect failed: ${describe(error)}`)
    }
  }
  const peer = (mode: ServerPeerMode) => peers.get(mode)?.address ?? ""
  if (sections.has("raw")) {
    const row = newRow(size, "raw", "raw node:net unix socket (baseline)")
    await add(row, () => openRaw(row, peer("raw-echo"), peer("raw-sink")))
  }
  if (sections.has("unix")) {
    const row = newRow(size, "unix", "effect-ipc Channel unix://")
    await add(row, () => openUnix(row, peer("ipc-echo"), peer("ipc-sink")))
  }
  if (sections.has("memory")) {
    const row = newRow(size, "memory", "effect-ipc Channel memory:// (in-process)")
    await add(row, () => openMemory(row))
  }
  if (sections.has("fifo")) {
    const row = newRow(size, "fifo", "effect-ipc Channel fifo:// (FIFO pair)")
    await add(row, () => openFifo(row, peer("fifo-echo"), peer("fifo-sink")))
  }
  if (sections.has("shm")) {
    for (const mode of shmModes.filter((m) => m.key !== "shm-view" || size === MiB)) {
      const row = newRow(size, mode.key, mode.label)
      await add(row, () => openShm(row, mode))
    }
  }
  if (sections.has("file")) {
    const row = newRow(size, "file", "effect-ipc Channel file:// (two logs in a directory)")
    await add(row, () => openFile(row))
  }
  if (sections.has("nng")) {
    const row = newRow(size, "nng", "effect-ipc Channel nng+ipc:// (nng pair1 through koffi)")
    await add(row, () => openNng(row))
    const c = newRow(size, "nng-c", "the same in C on the same libnng (pair1, ipc://)")
    await add(c, () => openNngC(c))
  }
  if (sections.has("child")) {
    const row = newRow(size, "child", "effect-ipc Channel child pipe (ChildPipe, fd 3)")
    await add(row, () => openChild(row, process.execPath, [...peerExecArgv(), peerScript]))
  }
  if (rpc !== undefined) {
    const label = (name: string) => `RPC ${name} unix:// (${rpcConcurrency(size)} concurrent for calls/s)`
    if (size === 64) {
      const row = newRow(size, "rpc-add", label("Add"))
      await add(row, async () => rpcContender(row, rpc, "Add", rpcConcurrency(size)), true)
    }
    const row = newRow(size, "rpc-echo", label("Echo"))
    await add(row, async () => rpcContender(row, rpc, "Echo", rpcConcurrency(size)), true)
  }

  progress(`${sizeLabel(size)}: warm-up`)
  for (const e of entries) {
    await step(e, "warm-up", async () => {
      await e.contender.pingPong(0, e.warmup)
      await e.contender.oneWay(WARMUP_SECONDS)
    })
  }
  progress(`${sizeLabel(size)}: round trips, ${rttRounds} rounds`)
  for (let r = 0; r < rttRounds; r++) {
    for (const e of rotate(entries, r)) {
      await step(e, "round trips", async () => {
        e.samples.push(await e.contender.pingPong(Math.ceil(e.rttCount / rttRounds), 0))
      })
    }
  }
  for (let r = 0; r < rounds; r++) {
    progress(`${sizeLabel(size)}: one-way, round ${r + 1}/${rounds}`)
    for (const e of rotate(entries, r)) {
      await step(e, "one-way", async () => {
        e.runs.push(await e.contender.oneWay(seconds / rounds))
      })
    }
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
  const loadBefore = Os.loadavg()
  const modes: Array<ServerPeerMode> = [
    ...(sections.has("raw") ? (["raw-echo", "raw-sink"] as const) : []),
    ...(sections.has("unix") ? (["ipc-echo", "ipc-sink"] as const) : []),
    ...(sections.has("fifo") ? (["fifo-echo", "fifo-sink"] as const) : []),
    ...(sections.has("rpc") ? (["rpc"] as const) : [])
  ]
  progress(`starting peers: ${modes.join(", ")}`)
  const peers = new Map<ServerPeerMode, Peer>()
  const launched = await Promise.allSettled(modes.map(async (m) => [m, await startPeer(m)] as const))
  for (const s of launched) {
    if (s.status === "fulfilled") peers.set(s.value[0], s.value[1])
    else progress(`a peer did not start: ${describe(s.reason)}`)
  }
  let rpc: { readonly client: DemoClient; readonly close: () => Promise<void> } | undefined
  try {
    if (sections.has("rpc") && peers.has("rpc")) {
      rpc = await withTimeout(connectRpc(peers.get("rpc")!.address), "RPC connect").catch((error: unknown) => {
        progress(`RPC client failed: ${describe(error)}`)
        return undefined
      })
    }
    for (const size of sizes) await measureSize(size, peers, rpc?.client)
  } finally {
    await rpc?.close().catch(() => undefined)
    await Promise.all([...peers.values()].map((p) => p.stop()))
    Fs.rmSync(socketDir, { recursive: true, force: true })
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
      sizes,
      plans,
      rpcConcurrency: sizes.map(rpcConcurrency)
    },
    loadBefore,
    loadAfter: Os.loadavg(),
    elapsedSeconds: (performance.now() - started) / 1000
  })
  console.log(markdown)
  const dir = Path.join(import.meta.dirname, "results")
  Fs.mkdirSync(dir, { recursive: true })
  Fs.writeFileSync(Path.join(dir, "latest.md"), markdown)
  Fs.writeFileSync(Path.join(dir, "latest.json"), json)
  progress(`wrote bench/results/latest.{json,md} (${((performance.now() - started) / 1000).toFixed(1)} s)`)
  const missing = modes.some((m) => !peers.has(m)) || (sections.has("rpc") && rpc === undefined)
  return missing || rows.some((r) => r.errors.length > 0) ? 1 : 0
}

process.exit(await main())
