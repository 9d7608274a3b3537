/**
 * The benchmark's results and their presentation: one row per transport and
 * payload size, the targets the numbers are held against, and the Markdown
 * tables and JSON document that `run.ts` prints and writes.
 */
import * as Os from "node:os"

export const KiB = 1024
export const MiB = 1024 * KiB

/** Which measurement a row holds. */
export type RowKey =
  | "raw"
  | "unix"
  | "memory"
  | "fifo"
  | "file"
  | "child"
  | "shm"
  | "shm-spin"
  | "shm-view"
  | "nng"
  | "nng-c"
  | "rpc-add"
  | "rpc-echo"

/** Round-trip statistics in microseconds. */
export interface Rtt {
  readonly n: number
  readonly p50: number
  readonly p99: number
  readonly mean: number
  readonly min: number
  readonly max: number
  /** p50 of each round, in order (a spread here is noise from the machine). */
  readonly roundP50s?: ReadonlyArray<number> | undefined
}

/** One-way (for RPC: completed calls) throughput over all rounds. */
export interface Throughput {
  readonly messages: number
  readonly seconds: number
  readonly msgsPerSec: number
  /** Payload bytes per second / 1e6 (NaN where a call has no payload). */
  readonly mbPerSec: number
  /** msgs/s of each round, in order. */
  readonly rounds: ReadonlyArray<number>
  /** Messages per batch at the receiver (per `receiveAll`; raw: per `data` chunk), where known. */
  readonly messagesPerBatch?: number | undefined
}

/** One transport at one payload size. */
export interface Row {
  readonly size: number
  readonly key: RowKey
  readonly transport: string
  rtt?: Rtt | undefined
  throughput?: Throughput | undefined
  readonly errors: Array<string>
  readonly warnings: Array<string>
}

/** What a one-way run (or a run of concurrent calls) reports. */
export interface OneWayRun {
  readonly sent: number
  readonly received: number
  readonly bytes: number
  readonly seconds: number
  /** How many batches (`receiveAll` results, raw `data` chunks) the receiver got them in, where known. */
  readonly batches?: number | undefined
}

export const sizeLabel = (size: number): string =>
  size >= MiB ? `${size / MiB} MiB` : size >= KiB ? `${size / KiB} KiB` : `${size} B`

/** Microsecond statistics of millisecond samples. */
export const rttStats = (samplesMs: Float64Array): Rtt => {
  const sorted = samplesMs.toSorted()
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 1000
  let sum = 0
  for (const s of sorted) sum += s
  return {
    n: sorted.length,
    p50: at(0.5),
    p99: at(0.99),
    mean: (sum / sorted.length) * 1000,
    min: sorted[0]! * 1000,
    max: sorted[sorted.length - 1]! * 1000
  }
}

/** Pools the rounds of a row's one-way runs; `countBytes` false for calls without a payload. */
export const throughputStats = (
  row: Row,
  runs: ReadonlyArray<OneWayRun>,
  countBytes: boolean
): Throughput => {
  let messages = 0
  let seconds = 0
  let batches = 0
  for (const run of runs) {
    batches += run.batches ?? Number.NaN
    if (run.received !== run.sent) row.warnings.push(`sent ${run.sent} messages, the receiver counted ${run.received}`)
    if (countBytes && run.bytes !== run.received * row.size) {
      row.warnings.push(`the receiver counted ${run.bytes} bytes, expected ${run.received * row.size}`)
    }
    messages += run.received
    seconds += run.seconds
  }
  const msgsPerSec = messages / seconds
  return {
    messages,
    seconds,
    msgsPerSec,
    mbPerSec: countBytes ? (msgsPerSec * row.size) / 1e6 : Number.NaN,
    rounds: runs.map((r) => r.received / r.seconds),
    messagesPerBatch: Number.isNaN(batches) ? undefined : messages / batches
  }
}

// ---- targets ------------------------------------------------------------------

interface Target {
  readonly label: string
  readonly size: number
  readonly key: RowKey
  readonly limit: number
  readonly atMost: boolean
  readonly measure: (rows: ReadonlyArray<Row>) => number | undefined
  readonly format: (n: number) => string
}

/** The outcome of one target. */
export interface TargetResult {
  readonly label: string
  readonly limit: number
  readonly measured: number | undefined
  readonly met: boolean | undefined
}

const findRow = (rows: ReadonlyArray<Row>, size: number, key: RowKey): Row | undefined =>
  rows.find((r) => r.size === size && r.key === key)

const p50Ratio = (rows: ReadonlyArray<Row>, size: number, key: RowKey, against: RowKey): number | undefined => {
  const a = findRow(rows, size, key)?.rtt?.p50
  const b = findRow(rows, size, against)?.rtt?.p50
  return a === undefined || b === undefined ? undefined : a / b
}

const times = (n: number) => `${n.toFixed(2)}x`
const timesExact = (n: number) => `${n.toFixed(3)}x`

/** The FIFO and child-pipe rows, held to the same targets. */
const pipeTransports = [["fifo", "FIFO"], ["child", "child pipe"]] as const

const targets: ReadonlyArray<Target> = [
  {
    label: "Channel p50 RTT at 64 B ≤ 1.2x raw net",
    size: 64,
    key: "unix",
    limit: 1.2,
    atMost: true,
    measure: (rows) => p50Ratio(rows, 64, "unix", "raw"),
    format: timesExact
  },
  {
    label: "Channel ≥ 1M msgs/s one-way at 64 B",
    size: 64,
    key: "unix",
    limit: 1e6,
    atMost: false,
    measure: (rows) => findRow(rows, 64, "unix")?.throughput?.msgsPerSec,
    format: (n) => `${(n / 1e6).toFixed(3)}M msgs/s`
  },
  {
    label: "Channel ≥ 1.4 GB/s one-way at 1 MiB",
    size: MiB,
    key: "unix",
    limit: 1400,
    atMost: false,
    measure: (rows) => findRow(rows, MiB, "unix")?.throughput?.mbPerSec,
    format: (n) => `${(n / 1000).toFixed(2)} GB/s`
  },
  ...pipeTransports.map(([key, name]): Target => ({
    label: `${name} p50 RTT at 64 B ≤ 1.2x raw net`,
    size: 64,
    key,
    limit: 1.2,
    atMost: true,
    measure: (rows) => p50Ratio(rows, 64, key, "raw"),
    format: timesExact
  })),
  ...pipeTransports.map(([key, name]): Target => ({
    label: `${name} ≥ 1 GB/s at 1 MiB`,
    size: MiB,
    key,
    limit: 1000,
    atMost: false,
    measure: (rows) => findRow(rows, MiB, key)?.throughput?.mbPerSec,
    format: (n) => `${(n / 1000).toFixed(2)} GB/s`
  })),
  {
    label: "file:// p50 RTT at 64 B ≤ 500 µs (a round trip: two deliveries)",
    size: 64,
    key: "file",
    limit: 500,
    atMost: true,
    measure: (rows) => findRow(rows, 64, "file")?.rtt?.p50,
    format: (n) => `${n.toFixed(0)} µs`
  },
  {
    label: "file:// ≥ 50k msgs/s one-way at 64 B",
    size: 64,
    key: "file",
    limit: 50_000,
    atMost: false,
    measure: (rows) => findRow(rows, 64, "file")?.throughput?.msgsPerSec,
    format: (n) => `${(n / 1000).toFixed(1)}k msgs/s`
  },
  // shm:// (issue 5): a C shared-memory ring here does ~0.5 µs spinning, ~10 µs with a futex
  {
    label: "shm:// spin p50 RTT at 64 B ≤ 2 µs",
    size: 64,
    key: "shm-spin",
    limit: 2,
    atMost: true,
    measure: (rows) => findRow(rows, 64, "shm-spin")?.rtt?.p50,
    format: (n) => `${n.toFixed(2)} µs`
  },
  {
    label: "shm:// blocking p50 RTT at 64 B ≤ 20 µs",
    size: 64,
    key: "shm",
    limit: 20,
    atMost: true,
    measure: (rows) => findRow(rows, 64, "shm")?.rtt?.p50,
    format: (n) => `${n.toFixed(2)} µs`
  },
  {
    label: "shm:// ≥ 3M msgs/s one-way at 64 B",
    size: 64,
    key: "shm",
    limit: 3e6,
    atMost: false,
    measure: (rows) => findRow(rows, 64, "shm")?.throughput?.msgsPerSec,
    format: (n) => `${(n / 1e6).toFixed(3)}M msgs/s`
  },
  ...(["shm", "shm-view"] as const).map((key): Target => ({
    label: `shm:// ≥ 5 GB/s one-way at 1 MiB (${key === "shm" ? "receive: a copy" : "receiveView: in place"})`,
    size: MiB,
    key,
    limit: 5000,
    atMost: false,
    measure: (rows) => findRow(rows, MiB, key)?.throughput?.mbPerSec,
    format: (n) => `${(n / 1000).toFixed(2)} GB/s`
  })),
  // nng (issue 6): held against the same ping-pong written in C on the same libnng (bench/nng.c)
  {
    label: "nng Channel p50 RTT at 64 B ≤ 1.3x C on the same libnng",
    size: 64,
    key: "nng",
    limit: 1.3,
    atMost: true,
    measure: (rows) => p50Ratio(rows, 64, "nng", "nng-c"),
    format: timesExact
  },
  {
    label: "nng Channel ≥ 100k msgs/s one-way at 64 B",
    size: 64,
    key: "nng",
    limit: 100_000,
    atMost: false,
    measure: (rows) => findRow(rows, 64, "nng")?.throughput?.msgsPerSec,
    format: (n) => `${(n / 1000).toFixed(1)}k msgs/s`
  },
  {
    label: "nng Channel ≥ 1.5 GB/s one-way at 1 MiB",
    size: MiB,
    key: "nng",
    limit: 1500,
    atMost: false,
    measure: (rows) => findRow(rows, MiB, "nng")?.throughput?.mbPerSec,
    format: (n) => `${(n / 1000).toFixed(2)} GB/s`
  },
  {
    label: "RPC Add p50 RTT ≤ 2x Channel p50 RTT (64 B)",
    size: 64,
    key: "rpc-add",
    limit: 2,
    atMost: true,
    measure: (rows) => p50Ratio(rows, 64, "rpc-add", "unix"),
    format: timesExact
  },
  ...[64, 4 * KiB, MiB].map((size): Target => ({
    label: `RPC Echo p50 RTT ≤ 2x Channel p50 RTT (${sizeLabel(size)})`,
    size,
    key: "rpc-echo",
    limit: 2,
    atMost: true,
    measure: (rows) => p50Ratio(rows, size, "rpc-echo", "unix"),
    format: timesExact
  }))
]

const evaluate = (rows: ReadonlyArray<Row>, target: Target): TargetResult => {
  const measured = target.measure(rows)
  const met = measured === undefined || Number.isNaN(measured)
    ? undefined
    : target.atMost
    ? measured <= target.limit
    : measured >= target.limit
  return { label: target.label, limit: target.limit, measured, met }
}

const mark = (met: boolean | undefined): string => met === undefined ? "n/a" : met ? "✓ met" : "✗ missed"

// ---- tables ---------------------------------------------------------------------

const fmtUs = (us: number | undefined): string =>
  us === undefined ? "–" : us < 10 ? us.toFixed(2) : us < 1000 ? us.toFixed(1) : Math.round(us).toLocaleString("en-US")

const fmtRate = (n: number | undefined): string =>
  n === undefined || Number.isNaN(n) ? "–" : Math.round(n).toLocaleString("en-US")

const fmtMB = (n: number | undefined): string =>
  n === undefined || Number.isNaN(n) ? "–" : n < 100 ? n.toFixed(2) : Math.round(n).toLocaleString("en-US")

const isRpc = (key: RowKey) => key === "rpc-add" || key === "rpc-echo"

/** RTT p50 and msgs/s over the baseline's, or for RPC its p50 over the Channel's. */
const ratios = (rows: ReadonlyArray<Row>, row: Row) => {
  if (isRpc(row.key)) return { rpcP50VsChannel: p50Ratio(rows, row.size, row.key, "unix") }
  const base = findRow(rows, row.size, "raw")
  return {
    rttP50: row.rtt !== undefined && base?.rtt !== undefined ? row.rtt.p50 / base.rtt.p50 : undefined,
    msgsPerSec: row.throughput !== undefined && base?.throughput !== undefined
      ? row.throughput.msgsPerSec / base.throughput.msgsPerSec
      : undefined
  }
}

const ratioCell = (rows: ReadonlyArray<Row>, row: Row): string => {
  const r = ratios(rows, row)
  const parts = [
    r.rpcP50VsChannel === undefined ? undefined : `p50 ${times(r.rpcP50VsChannel)} Channel`,
    r.rttP50 === undefined ? undefined : `RTT ${times(r.rttP50)}`,
    r.msgsPerSec === undefined ? undefined : `msgs/s ${times(r.msgsPerSec)}`
  ].filter((p) => p !== undefined)
  return parts.length === 0 ? "–" : parts.join(", ")
}

const targetCell = (rows: ReadonlyArray<Row>, row: Row): string =>
  targets
    .filter((t) => t.size === row.size && t.key === row.key)
    .map((t) => {
      const r = evaluate(rows, t)
      const limit = `${t.atMost ? "≤" : "≥"} ${t.format(t.limit)}`
      return `${limit}: ${r.measured === undefined ? "n/a" : t.format(r.measured)} ${mark(r.met)}`
    })
    .join("; ")

const table = (rows: ReadonlyArray<Row>, size: number): string => {
  const lines = [
    `### ${sizeLabel(size)} payload`,
    "",
    "| transport | p50 RTT µs | p99 RTT µs | msgs/s | MB/s | ratio to baseline | target |",
    "| --- | ---: | ---: | ---: | ---: | --- | --- |"
  ]
  const notes: Array<string> = []
  for (const row of rows.filter((r) => r.size === size)) {
    const failed = row.errors.length > 0 ? " (failed)" : ""
    lines.push(
      `| ${row.transport}${failed} | ${fmtUs(row.rtt?.p50)} | ${fmtUs(row.rtt?.p99)} | ${
        fmtRate(row.throughput?.msgsPerSec)
      } | ${fmtMB(row.throughput?.mbPerSec)} | ${ratioCell(rows, row)} | ${targetCell(rows, row)} |`
    )
    for (const e of row.errors) notes.push(`- ${row.transport}: error: ${e}`)
    for (const w of new Set(row.warnings)) notes.push(`- ${row.transport}: warning: ${w}`)
  }
  const batching = rows
    .filter((r) => r.size === size && r.throughput?.messagesPerBatch !== undefined)
    .map((r) => `${r.key} ${r.throughput!.messagesPerBatch!.toFixed(1)}`)
  if (batching.length > 0) {
    lines.push(
      "",
      `Messages per receiver batch, one-way (raw: per \`data\` chunk; effect-ipc: per \`receiveAll\`): ${
        batching.join(", ")
      }.`
    )
  }
  if (notes.length > 0) lines.push("", ...notes)
  return lines.join("\n")
}

/** How the run was set up, for the report's header and the JSON document. */
export interface RunInfo {
  readonly sizes: ReadonlyArray<number>
  readonly seconds: number
  readonly rounds: number
  readonly rttRounds: number
  readonly config: Record<string, unknown>
  readonly loadBefore: ReadonlyArray<number>
  readonly loadAfter: ReadonlyArray<number>
  readonly elapsedSeconds: number
}

const load = (l: ReadonlyArray<number>) => l.map((x) => x.toFixed(2)).join(" ")

/** The Markdown report and the JSON document of a run. */
export const render = (
  rows: ReadonlyArray<Row>,
  info: RunInfo
): { readonly markdown: string; readonly json: string } => {
  const cpus = Os.cpus()
  const targetResults = targets.filter((t) => info.sizes.includes(t.size)).map((t) => evaluate(rows, t))
  const date = new Date().toISOString()
  const markdown = [
    "## effect-ipc benchmark",
    "",
    `Node ${process.version}, ${process.platform}/${process.arch}, ${cpus.length} x ${cpus[0]?.model ?? "?"}; ` +
    `${date}; load average ${load(info.loadBefore)} before, ${load(info.loadAfter)} after; ` +
    `${info.elapsedSeconds.toFixed(0)} s.`,
    "",
    `RTT: ping-pong, one message in flight, the echo peer in a child process (memory:// in-process). ` +
    `msgs/s: one-way, one send per message, counted by the receiving peer; RPC: completed calls/s with ` +
    `concurrent callers. MB/s = payload bytes / 1e6 per second. Transports take turns, in rotating order: ` +
    `${info.rttRounds} rounds of round trips and ${info.rounds} of one-way traffic (${info.seconds} s per transport ` +
    `and size in all); the machine's load average is shown above because neighbours skew latencies.`,
    "",
    ...info.sizes.flatMap((size) => [table(rows, size), ""]),
    "### Targets",
    "",
    "| target | measured | |",
    "| --- | ---: | --- |",
    ...targetResults.map((r) => {
      const t = targets.find((x) => x.label === r.label)!
      return `| ${r.label} | ${r.measured === undefined ? "n/a" : t.format(r.measured)} | ${mark(r.met)} |`
    }),
    ""
  ].join("\n")
  const json = JSON.stringify(
    {
      date,
      node: process.version,
      platform: `${process.platform}/${process.arch}`,
      cpus: { count: cpus.length, model: cpus[0]?.model },
      loadAverage: { before: info.loadBefore, after: info.loadAfter },
      elapsedSeconds: info.elapsedSeconds,
      config: info.config,
      units: { rtt: "µs", msgsPerSec: "messages (RPC: calls) per second", mbPerSec: "payload bytes / 1e6 per second" },
      results: rows.map((row) => ({ ...row, ratios: ratios(rows, row) })),
      targets: targetResults
    },
    null,
    2
  )
  return { markdown, json: `${json}\n` }
}
