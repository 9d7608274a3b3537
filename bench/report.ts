/**
 * The benchmark's results and their presentation: one row per transport and
 * payload size, the targets the numbers are held against, and the Markdown
 * tables and JSON document that `run.ts` prints and writes.
 */
import * as Os from "node:os"
import { oneWayBatch, type RpcStack, rpcStacks } from "./shared.ts"

export const KiB = 1024
export const MiB = 1024 * KiB

/** An RPC procedure of the DemoApi the bench calls. */
export type RpcProcedure = "add" | "echo"

/** The row of `procedure` called through `stack`. */
export type RpcRowKey = `rpc-${RpcProcedure}-${RpcStack}`

/** The row key of `procedure` called through `stack`. */
export const rpcRowKey = (procedure: RpcProcedure, stack: RpcStack): RpcRowKey => `rpc-${procedure}-${stack}`

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
  | "shm-ring-js"
  | "shm-ring-fiber"
  | "shm-ring-fallible"
  | "nng"
  | "nng-c"
  | "nng-node"
  | "nng-node-aio"
  | "raw-fiber"
  | "zmq"
  | "memcpy"
  | "fresh-copy"
  | RpcRowKey

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
  /** Issue 12's (performance) or one of an earlier issue that issue 12 did not replace. */
  readonly group: "issue 12" | "earlier"
  readonly label: string
  readonly size: number
  readonly key: RowKey
  readonly limit: number
  readonly atMost: boolean
  readonly measure: (rows: ReadonlyArray<Row>) => number | undefined
  readonly format: (n: number) => string
  /** The same measure taken on the rows beneath the measured one (no channel), lowest first. */
  readonly floors?: ReadonlyArray<Floor> | undefined
}

/** A floor under a target: its measure taken on a row with less of the stack (no channel, no engine). */
interface Floor {
  /** What the row is, for the report. */
  readonly what: string
  readonly measure: (rows: ReadonlyArray<Row>) => number | undefined
}

/** A floor's value in a run, and whether the floor itself meets the target. */
export interface FloorResult {
  readonly what: string
  readonly measured: number | undefined
  readonly met: boolean | undefined
}

/** The outcome of one target. */
export interface TargetResult {
  readonly group: "issue 12" | "earlier"
  readonly label: string
  readonly limit: number
  readonly measured: number | undefined
  readonly met: boolean | undefined
  /** The target's floors measured in the same run (none where the bench has no row beneath it). */
  readonly floors: ReadonlyArray<FloorResult>
}

const findRow = (rows: ReadonlyArray<Row>, size: number, key: RowKey): Row | undefined =>
  rows.find((r) => r.size === size && r.key === key)

const p50Ratio = (rows: ReadonlyArray<Row>, size: number, key: RowKey, against: RowKey): number | undefined => {
  const a = findRow(rows, size, key)?.rtt?.p50
  const b = findRow(rows, size, against)?.rtt?.p50
  return a === undefined || b === undefined ? undefined : a / b
}

/** Messages (RPC: calls) per second of `key` over those of `against`. */
const rateRatio = (rows: ReadonlyArray<Row>, size: number, key: RowKey, against: RowKey): number | undefined => {
  const a = findRow(rows, size, key)?.throughput?.msgsPerSec
  const b = findRow(rows, size, against)?.throughput?.msgsPerSec
  return a === undefined || b === undefined ? undefined : a / b
}

const times = (n: number) => `${n.toFixed(2)}x`
const timesExact = (n: number) => `${n.toFixed(3)}x`

/** The FIFO and child-pipe rows, held to the same targets. */
const pipeTransports = [["fifo", "FIFO"], ["child", "child pipe"]] as const

/** The Channels held against zeromq (issue 12). */
const channelsVsZmq = [
  ["unix", "unix://"],
  ["fifo", "fifo://"],
  ["child", "child pipe"],
  ["shm", "shm:// (blocking)"],
  ["nng", "nng+ipc://"]
] as const

/** The stacks whose calls the RPC targets compare: ours against effect's own, binary and JSON. */
const rpcPairs = [
  { ours: "ipc-binary", theirs: "effect-binary", name: "IpcRpc (SchemaBinary) vs effect RPC over NodeSocket" },
  { ours: "ipc-json", theirs: "effect-ndjson", name: "IpcRpc JSON vs effect RPC NDJSON" }
] as const

/** Raw node:net sockets driven by effect fibers (`raw-fiber.ts`): the floor under the stream Channels' round trips. */
const fibersOnRaw = (against: RowKey): Floor => ({
  what: "raw node:net driven by effect fibers",
  measure: (rows) => p50Ratio(rows, 64, "raw-fiber", against)
})

/** Node on the same libnng without effect-ipc, woken by its pollable and by an aio callback. */
const nodeOnNng = (
  ratio: (rows: ReadonlyArray<Row>, size: number, key: RowKey, against: RowKey) => number | undefined,
  size: number,
  against: RowKey
): ReadonlyArray<Floor> => [
  { what: "Node on libnng without effect-ipc", measure: (rows) => ratio(rows, size, "nng-node", against) },
  { what: "the same woken by an aio callback", measure: (rows) => ratio(rows, size, "nng-node-aio", against) }
]

/** The targets of issue 12 (performance), in its order; all ratios measured in one run. */
const issue12: ReadonlyArray<Omit<Target, "group">> = [
  {
    label: "unix:// Channel p50 RTT at 64 B ≤ 1.10x raw node:net",
    size: 64,
    key: "unix",
    limit: 1.1,
    atMost: true,
    measure: (rows) => p50Ratio(rows, 64, "unix", "raw"),
    format: timesExact,
    floors: [fibersOnRaw("raw")]
  },
  ...pipeTransports.map(([key, name]) => ({
    label: `${name} p50 RTT at 64 B ≤ 1.10x raw node:net`,
    size: 64,
    key,
    limit: 1.1,
    atMost: true,
    measure: (rows: ReadonlyArray<Row>) => p50Ratio(rows, 64, key, "raw"),
    format: timesExact,
    floors: [fibersOnRaw("raw")]
  })),
  {
    label: "shm:// blocking p50 RTT at 64 B ≤ 0.5x raw node:net",
    size: 64,
    key: "shm",
    limit: 0.5,
    atMost: true,
    measure: (rows) => p50Ratio(rows, 64, "shm", "raw"),
    format: timesExact
  },
  {
    label: "shm:// spin p50 RTT at 64 B ≤ 2 µs",
    size: 64,
    key: "shm-spin",
    limit: 2,
    atMost: true,
    measure: (rows) => findRow(rows, 64, "shm-spin")?.rtt?.p50,
    format: (n) => `${n.toFixed(2)} µs`,
    floors: [
      {
        what: "the rings spinning from plain JavaScript",
        measure: (rows) => findRow(rows, 64, "shm-ring-js")?.rtt?.p50
      },
      { what: "the rings driven by effect fibers", measure: (rows) => findRow(rows, 64, "shm-ring-fiber")?.rtt?.p50 },
      {
        what: "the same, each send able to fail (as a Channel's)",
        measure: (rows) => findRow(rows, 64, "shm-ring-fallible")?.rtt?.p50
      }
    ]
  },
  {
    label: "shm:// one-way msgs/s at 64 B ≥ 2x unix:// Channel",
    size: 64,
    key: "shm",
    limit: 2,
    atMost: false,
    measure: (rows) => rateRatio(rows, 64, "shm", "unix"),
    format: timesExact,
    floors: [
      {
        what: "the rings spinning from plain JavaScript",
        measure: (rows) => rateRatio(rows, 64, "shm-ring-js", "unix")
      },
      { what: "the rings driven by effect fibers", measure: (rows) => rateRatio(rows, 64, "shm-ring-fiber", "unix") },
      {
        what: "the same, each send able to fail (as a Channel's)",
        measure: (rows) => rateRatio(rows, 64, "shm-ring-fallible", "unix")
      }
    ]
  },
  {
    label: "shm:// receive (a copy) at 1 MiB ≥ 0.25x memcpy of 1 MiB (same run)",
    size: MiB,
    key: "shm",
    limit: 0.25,
    atMost: false,
    measure: (rows) => rateRatio(rows, MiB, "shm", "memcpy"),
    format: timesExact,
    floors: [
      { what: "a copy into fresh memory", measure: (rows) => rateRatio(rows, MiB, "fresh-copy", "memcpy") },
      {
        what: "the rings read from plain JavaScript, each message copied out",
        measure: (rows) => rateRatio(rows, MiB, "shm-ring-js", "memcpy")
      }
    ]
  },
  {
    label: "nng Channel p50 RTT at 64 B ≤ 1.3x C on the same libnng",
    size: 64,
    key: "nng",
    limit: 1.3,
    atMost: true,
    measure: (rows) => p50Ratio(rows, 64, "nng", "nng-c"),
    format: timesExact,
    floors: nodeOnNng(p50Ratio, 64, "nng-c")
  },
  {
    label: "nng Channel one-way at 1 MiB ≥ 0.8x C on the same libnng",
    size: MiB,
    key: "nng",
    limit: 0.8,
    atMost: false,
    measure: (rows) => rateRatio(rows, MiB, "nng", "nng-c"),
    format: timesExact,
    floors: nodeOnNng(rateRatio, MiB, "nng-c")
  },
  {
    label: "RPC Echo p50 RTT at 1 MiB ≤ 2x unix:// Channel",
    size: MiB,
    key: rpcRowKey("echo", "ipc-packed"),
    limit: 2,
    atMost: true,
    measure: (rows) => p50Ratio(rows, MiB, rpcRowKey("echo", "ipc-packed"), "unix"),
    format: timesExact
  },
  ...rpcPairs.flatMap(({ name, ours, theirs }) => {
    const key = rpcRowKey("echo", ours)
    const against = rpcRowKey("echo", theirs)
    // SchemaBinary must beat effect's own by 1.2x; JSON must reach parity
    const rate = ours === "ipc-binary" ? 1.2 : 1
    return [
      {
        label: `${name}: calls/s (Echo 64 B, 64 concurrent) ≥ ${rate.toFixed(1)}x`,
        size: 64,
        key,
        limit: rate,
        atMost: false,
        measure: (rows: ReadonlyArray<Row>) => rateRatio(rows, 64, key, against),
        format: timesExact
      },
      {
        label: `${name}: p50 RTT (Echo 64 B) ≤ 1.0x`,
        size: 64,
        key,
        limit: 1,
        atMost: true,
        measure: (rows: ReadonlyArray<Row>) => p50Ratio(rows, 64, key, against),
        format: timesExact
      }
    ]
  }),
  ...channelsVsZmq.flatMap(([key, name]) => [
    {
      label: `${name} Channel p50 RTT at 64 B ≤ 1.0x zeromq (ipc://)`,
      size: 64,
      key,
      limit: 1,
      atMost: true,
      measure: (rows: ReadonlyArray<Row>) => p50Ratio(rows, 64, key, "zmq"),
      format: timesExact,
      floors: key === "nng"
        ? [
          { what: "C on the same libnng", measure: (rows: ReadonlyArray<Row>) => p50Ratio(rows, 64, "nng-c", "zmq") },
          ...nodeOnNng(p50Ratio, 64, "zmq")
        ]
        : key === "shm"
        ? []
        : [fibersOnRaw("zmq")]
    },
    {
      label: `${name} Channel one-way msgs/s at 64 B ≥ 1.0x zeromq (ipc://)`,
      size: 64,
      key,
      limit: 1,
      atMost: false,
      measure: (rows: ReadonlyArray<Row>) => rateRatio(rows, 64, key, "zmq"),
      format: timesExact
    }
  ])
]

/** Targets of earlier issues that issue 12 did not replace (absolute rates, and RPC against the Channel). */
const earlier: ReadonlyArray<Omit<Target, "group">> = [
  {
    label: "unix:// Channel ≥ 1M msgs/s one-way at 64 B",
    size: 64,
    key: "unix",
    limit: 1e6,
    atMost: false,
    measure: (rows) => findRow(rows, 64, "unix")?.throughput?.msgsPerSec,
    format: (n) => `${(n / 1e6).toFixed(3)}M msgs/s`
  },
  {
    label: "unix:// Channel ≥ 1.4 GB/s one-way at 1 MiB",
    size: MiB,
    key: "unix",
    limit: 1400,
    atMost: false,
    measure: (rows) => findRow(rows, MiB, "unix")?.throughput?.mbPerSec,
    format: (n) => `${(n / 1000).toFixed(2)} GB/s`
  },
  ...pipeTransports.map(([key, name]): Omit<Target, "group"> => ({
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
  ...(["shm", "shm-view"] as const).map((key): Omit<Target, "group"> => ({
    label: `shm:// ≥ 5 GB/s one-way at 1 MiB (${key === "shm" ? "receive: a copy" : "receiveView: in place"})`,
    size: MiB,
    key,
    limit: 5000,
    atMost: false,
    measure: (rows) => findRow(rows, MiB, key)?.throughput?.mbPerSec,
    format: (n) => `${(n / 1000).toFixed(2)} GB/s`
  })),
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
    label: "RPC Add p50 RTT ≤ 2x unix:// Channel p50 RTT (64 B)",
    size: 64,
    key: rpcRowKey("add", "ipc-packed"),
    limit: 2,
    atMost: true,
    measure: (rows) => p50Ratio(rows, 64, rpcRowKey("add", "ipc-packed"), "unix"),
    format: timesExact
  },
  ...[64, 4 * KiB].map((size): Omit<Target, "group"> => ({
    label: `RPC Echo p50 RTT ≤ 2x unix:// Channel p50 RTT (${sizeLabel(size)})`,
    size,
    key: rpcRowKey("echo", "ipc-packed"),
    limit: 2,
    atMost: true,
    measure: (rows) => p50Ratio(rows, size, rpcRowKey("echo", "ipc-packed"), "unix"),
    format: timesExact
  }))
]

const targets: ReadonlyArray<Target> = [
  ...issue12.map((t): Target => ({ ...t, group: "issue 12" })),
  ...earlier.map((t): Target => ({ ...t, group: "earlier" }))
]

/** Whether `measured` meets `target` (undefined when not measured). */
const meets = (target: Target, measured: number | undefined): boolean | undefined =>
  measured === undefined || Number.isNaN(measured)
    ? undefined
    : target.atMost
    ? measured <= target.limit
    : measured >= target.limit

const evaluate = (rows: ReadonlyArray<Row>, target: Target): TargetResult => {
  const measured = target.measure(rows)
  const floors = (target.floors ?? []).flatMap((floor): ReadonlyArray<FloorResult> => {
    const value = floor.measure(rows)
    return value === undefined ? [] : [{ what: floor.what, measured: value, met: meets(target, value) }]
  })
  return {
    group: target.group,
    label: target.label,
    limit: target.limit,
    measured,
    met: meets(target, measured),
    floors
  }
}

const mark = (met: boolean | undefined): string => met === undefined ? "n/a" : met ? "✓ met" : "✗ missed"

/** A missed target's place against its floors: under every floor measured, under some, or above them all. */
export type Standing = "met" | "not measured" | "every floor misses" | "a floor misses" | "above its floors"

/** Where a target stands against its floors in the run. */
export const standing = (result: TargetResult): Standing => {
  if (result.met === undefined) return "not measured"
  if (result.met) return "met"
  const missed = result.floors.filter((f) => f.met === false).length
  if (missed > 0 && missed === result.floors.length) return "every floor misses"
  return missed > 0 ? "a floor misses" : "above its floors"
}

// ---- tables ---------------------------------------------------------------------

const fmtUs = (us: number | undefined): string =>
  us === undefined ? "–" : us < 10 ? us.toFixed(2) : us < 1000 ? us.toFixed(1) : Math.round(us).toLocaleString("en-US")

const fmtRate = (n: number | undefined): string =>
  n === undefined || Number.isNaN(n) ? "–" : Math.round(n).toLocaleString("en-US")

const fmtMB = (n: number | undefined): string =>
  n === undefined || Number.isNaN(n) ? "–" : n < 100 ? n.toFixed(2) : Math.round(n).toLocaleString("en-US")

/** The stack and procedure of an RPC row, or undefined for a channel row. */
const rpcOf = (key: RowKey): { readonly procedure: RpcProcedure; readonly stack: RpcStack } | undefined => {
  for (const stack of rpcStacks) {
    for (const procedure of ["add", "echo"] as const) {
      if (key === rpcRowKey(procedure, stack)) return { procedure, stack }
    }
  }
  return undefined
}

/** Effect's own stack that one of ours is compared with. */
const counterpart = (stack: RpcStack): RpcStack | undefined =>
  stack === "ipc-packed" || stack === "ipc-binary"
    ? "effect-binary"
    : stack === "ipc-json"
    ? "effect-ndjson"
    : undefined

/**
 * A row's ratios: a channel's p50 RTT and msgs/s over the raw baseline's and
 * zeromq's; an RPC row's p50 over the unix:// Channel's and, for ours, p50
 * and calls/s over effect's own with the matching serialization.
 */
const ratios = (rows: ReadonlyArray<Row>, row: Row) => {
  const rpc = rpcOf(row.key)
  if (rpc !== undefined) {
    const theirs = counterpart(rpc.stack)
    const against = theirs === undefined ? undefined : rpcRowKey(rpc.procedure, theirs)
    return {
      rpcP50VsChannel: p50Ratio(rows, row.size, row.key, "unix"),
      p50VsEffect: against === undefined ? undefined : p50Ratio(rows, row.size, row.key, against),
      callsVsEffect: against === undefined ? undefined : rateRatio(rows, row.size, row.key, against)
    }
  }
  if (row.key === "memcpy" || row.key === "fresh-copy") return {}
  const vs = (against: RowKey) =>
    row.key === against ? undefined : {
      rttP50: p50Ratio(rows, row.size, row.key, against),
      msgsPerSec: rateRatio(rows, row.size, row.key, against)
    }
  return { raw: vs("raw"), zmq: vs("zmq") }
}

const ratioPart = (name: string, n: number | undefined, against: string): string | undefined =>
  n === undefined ? undefined : `${name} ${times(n)} ${against}`

const ratioCell = (rows: ReadonlyArray<Row>, row: Row): string => {
  const r = ratios(rows, row)
  const part = ratioPart
  const parts = "rpcP50VsChannel" in r
    ? [
      part("p50", r.rpcP50VsChannel, "Channel"),
      part("p50", r.p50VsEffect, "effect"),
      part("calls/s", r.callsVsEffect, "effect")
    ]
    : [
      part("RTT", r.raw?.rttP50, "raw"),
      part("msgs/s", r.raw?.msgsPerSec, "raw"),
      part("RTT", r.zmq?.rttP50, "zmq"),
      part("msgs/s", r.zmq?.msgsPerSec, "zmq")
    ]
  const shown = parts.filter((p) => p !== undefined)
  return shown.length === 0 ? "–" : shown.join(", ")
}

const table = (rows: ReadonlyArray<Row>, size: number): string => {
  const lines = [
    `### ${sizeLabel(size)} payload`,
    "",
    "| transport | p50 RTT µs | p99 RTT µs | msgs/s | MB/s | ratios |",
    "| --- | ---: | ---: | ---: | ---: | --- |"
  ]
  const notes: Array<string> = []
  for (const row of rows.filter((r) => r.size === size)) {
    const failed = row.errors.length > 0 ? " (failed)" : ""
    lines.push(
      `| ${row.transport}${failed} | ${fmtUs(row.rtt?.p50)} | ${fmtUs(row.rtt?.p99)} | ${
        fmtRate(row.throughput?.msgsPerSec)
      } | ${fmtMB(row.throughput?.mbPerSec)} | ${ratioCell(rows, row)} |`
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
  const againstFresh = rows
    .filter((r) => r.size === size && r.key !== "fresh-copy" && r.key !== "memcpy" && r.throughput !== undefined)
    .flatMap((r) => {
      const ratio = rateRatio(rows, size, r.key, "fresh-copy")
      return ratio === undefined ? [] : [`${r.key} ${ratio.toFixed(2)}x`]
    })
  if (againstFresh.length > 0) {
    lines.push(
      "",
      `MB/s against a copy into fresh memory in this process (the floor of a receiver that keeps each message): ${
        againstFresh.join(", ")
      }.`
    )
  }
  const fiberFloor = p50Ratio(rows, size, "raw-fiber", "raw")
  const overFiber = (["unix", "fifo", "child"] as const).flatMap((key) => {
    const ratio = p50Ratio(rows, size, key, "raw-fiber")
    return ratio === undefined ? [] : [`${key} ${ratio.toFixed(2)}x`]
  })
  if (fiberFloor !== undefined) {
    lines.push(
      "",
      `raw node:net driven by effect fibers, the floor under the stream Channels: p50 RTT ${
        fiberFloor.toFixed(2)
      }x raw's${overFiber.length > 0 ? `; the Channels' p50 RTT against it: ${overFiber.join(", ")}` : ""}.`
    )
  }
  const spinP50 = (key: RowKey) => findRow(rows, size, key)?.rtt?.p50
  const ringFloor = [
    ["plain JavaScript", "shm-ring-js"],
    ["effect fibers", "shm-ring-fiber"],
    ["effect fibers with sends that can fail", "shm-ring-fallible"],
    ["the shm:// spin Channel", "shm-spin"]
  ] as const
  const ringParts = ringFloor.flatMap(([what, key]) => {
    const p50 = spinP50(key)
    return p50 === undefined ? [] : [`${what} ${p50.toFixed(2)} µs`]
  })
  const ringRates = (["shm-ring-js", "shm-ring-fiber", "shm-ring-fallible", "shm"] as const).flatMap((key) => {
    const ratio = rateRatio(rows, size, key, "unix")
    return ratio === undefined ? [] : [`${key} ${ratio.toFixed(2)}x`]
  })
  if (spinP50("shm-ring-js") !== undefined || spinP50("shm-ring-fiber") !== undefined) {
    lines.push(
      "",
      `shm:// rings without a channel, spinning, the floors under shm:// spin: p50 RTT ${ringParts.join(", ")}${
        ringRates.length > 0 ? `; one-way msgs/s against the unix:// Channel's: ${ringRates.join(", ")}` : ""
      }.`
    )
  }
  const nodeFloor = [
    ["p50 RTT", p50Ratio(rows, size, "nng", "nng-node"), p50Ratio(rows, size, "nng-node", "nng-c")],
    ["msgs/s", rateRatio(rows, size, "nng", "nng-node"), rateRatio(rows, size, "nng-node", "nng-c")]
  ] as const
  const floorParts = nodeFloor.flatMap(([what, channel, node]) =>
    channel === undefined || node === undefined
      ? []
      : [`${what}: the Channel ${channel.toFixed(2)}x Node's, Node's ${node.toFixed(2)}x C's`]
  )
  if (floorParts.length > 0) {
    lines.push("", `nng from Node without effect-ipc, the floor under the nng Channel: ${floorParts.join("; ")}.`)
  }
  const aioParts = (["p50 RTT", "msgs/s"] as const).flatMap((what) => {
    const ratio = (a: RowKey, b: RowKey) =>
      what === "p50 RTT" ? p50Ratio(rows, size, a, b) : rateRatio(rows, size, a, b)
    const poll = ratio("nng-node-aio", "nng-node")
    const c = ratio("nng-node-aio", "nng-c")
    return poll === undefined || c === undefined
      ? []
      : [`${what}: ${poll.toFixed(2)}x Node's woken by recv-fd, ${c.toFixed(2)}x C's`]
  })
  if (aioParts.length > 0) {
    lines.push("", `nng from Node woken by an aio callback instead of recv-fd: ${aioParts.join("; ")}.`)
  }
  if (notes.length > 0) lines.push("", ...notes)
  return lines.join("\n")
}

/** A Markdown table of target outcomes under `title`, with a count of those met. */
const targetTable = (title: string, results: ReadonlyArray<TargetResult>): string => {
  const met = results.filter((r) => r.met === true).length
  const known = results.filter((r) => r.met !== undefined).length
  const count = (s: Standing) => results.filter((r) => standing(r) === s).length
  const missed = known - met
  const withFloors = results.some((r) => r.floors.length > 0)
  return [
    title,
    "",
    `${met} of ${known} measured targets met${
      known < results.length ? ` (${results.length - known} not measured in this run)` : ""
    }.${
      withFloors && missed > 0
        ? ` Of the ${missed} missed, ${count("every floor misses")} are missed by every floor measured beside them ` +
          `(rows with less of the stack: no channel), ${count("a floor misses")} by one of their floors, ` +
          `and ${count("above its floors")} sit above floors that meet them or have no floor in the bench.`
        : ""
    }`,
    "",
    ...(withFloors
      ? ["| target | measured | | the floor, measured the same way in this run |", "| --- | ---: | --- | --- |"]
      : ["| target | measured | |", "| --- | ---: | --- |"]),
    ...results.map((r) => {
      const t = targets.find((x) => x.label === r.label)!
      const floors = r.floors.map((f) =>
        `${f.what} ${f.measured === undefined ? "n/a" : t.format(f.measured)} ${
          f.met === true ? "✓" : f.met === false ? "✗" : ""
        }`
          .trimEnd()
      )
      return `| ${r.label} | ${r.measured === undefined ? "n/a" : t.format(r.measured)} | ${mark(r.met)} |${
        withFloors ? ` ${floors.length === 0 ? "–" : floors.join("; ")} |` : ""
      }`
    })
  ].join("\n")
}

/** The outcome of every target the run's sizes cover (for the progress line and the exit summary). */
export const evaluateTargets = (rows: ReadonlyArray<Row>, sizes: ReadonlyArray<number>): ReadonlyArray<TargetResult> =>
  targets.filter((t) => sizes.includes(t.size)).map((t) => evaluate(rows, t))

/** How the run was set up, for the report's header and the JSON document. */
export interface RunInfo {
  readonly sizes: ReadonlyArray<number>
  readonly seconds: number
  readonly rounds: number
  readonly rttRounds: number
  readonly config: Record<string, unknown>
  /** When each phase ran, in µs of the monotonic clock (for `profile.ts --window`). */
  readonly windows: ReadonlyArray<
    { readonly size: number; readonly phase: string; readonly startUs: number; readonly endUs: number }
  >
  readonly loadBefore: ReadonlyArray<number>
  readonly loadAfter: ReadonlyArray<number>
  readonly elapsedSeconds: number
  /** The CPUs of the driver and of every peer (`pin.ts`), or undefined when the scheduler placed them. */
  readonly placement: { readonly driver: number; readonly peers: number; readonly all: string } | undefined
}

const load = (l: ReadonlyArray<number>) => l.map((x) => x.toFixed(2)).join(" ")

/** The Markdown report and the JSON document of a run. */
export const render = (
  rows: ReadonlyArray<Row>,
  info: RunInfo
): { readonly markdown: string; readonly json: string } => {
  const cpus = Os.cpus()
  const targetResults = evaluateTargets(rows, info.sizes)
  const date = new Date().toISOString()
  const markdown = [
    "## effect-ipc benchmark",
    "",
    `Node ${process.version}, ${process.platform}/${process.arch}, ${cpus.length} x ${cpus[0]?.model ?? "?"}; ` +
    `${date}; load average ${load(info.loadBefore)} before, ${load(info.loadAfter)} after; ` +
    `${info.elapsedSeconds.toFixed(0)} s; ${
      info.placement === undefined
        ? "processes placed by the scheduler"
        : `the driver's main thread on CPU ${info.placement.driver}, each peer's on CPU ${info.placement.peers}`
    }.`,
    "",
    `RTT: ping-pong, one message in flight, the echo peer in a child process (memory:// in-process). ` +
    `msgs/s: one-way, ${
      oneWayBatch > 1 ? `effect-ipc channels sending ${oneWayBatch} messages per \`sendAll\`, others` : ""
    } one send per message, counted by the receiving peer; RPC: completed calls/s with ` +
    `concurrent callers. MB/s = payload bytes / 1e6 per second. Ratios: a channel's p50 RTT and msgs/s over ` +
    `raw node:net's and zeromq's; an RPC row's p50 over the unix:// Channel's and, for IpcRpc, p50 and calls/s ` +
    `over effect's own RPC with the matching serialization. Transports take turns, in rotating order: ` +
    `${info.rttRounds} rounds of round trips and ${info.rounds} of one-way traffic (${info.seconds} s per transport ` +
    `and size in all); the machine's load average is shown above because neighbours skew latencies.`,
    "",
    ...info.sizes.flatMap((size) => [table(rows, size), ""]),
    targetTable("### Targets of issue 12 (performance)", targetResults.filter((r) => r.group === "issue 12")),
    "",
    targetTable("### Targets of earlier issues", targetResults.filter((r) => r.group === "earlier")),
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
      placement: info.placement ?? null,
      config: info.config,
      windows: info.windows,
      units: { rtt: "µs", msgsPerSec: "messages (RPC: calls) per second", mbPerSec: "payload bytes / 1e6 per second" },
      results: rows.map((row) => ({ ...row, ratios: ratios(rows, row) })),
      targets: targetResults
    },
    null,
    2
  )
  return { markdown, json: `${json}\n` }
}
