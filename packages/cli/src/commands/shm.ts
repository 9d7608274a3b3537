/**
 * `effect-ipc shm`: the shared-memory segments of effect-ipc on this machine.
 * `shm ls` lists them (kind, size, references, holders, creator, age, TTL,
 * and why the collector would remove one); `shm gc` removes the orphans
 * (links whose holders all died or whose TTL has passed, channel segments
 * of dead processes). Both take `--prefix`, and the root's `--json` (one JSON
 * object on one line); `gc` takes `--dry-run`.
 *
 * @since 0.1.0
 */
import { SegmentGc } from "@effect-ipc/transport-shm"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Path from "node:path"
import * as Format from "../Format.ts"
import * as Output from "../Output.ts"

const prefixFlag = Flag.String("prefix").pipe(
  Flag.withDescription("Only segments whose names start with this"),
  Flag.optional
)

const duration = (ms: number): string =>
  ms >= 86_400_000
    ? `${(ms / 86_400_000).toFixed(1)}d`
    : ms >= 3_600_000
    ? `${(ms / 3_600_000).toFixed(1)}h`
    : ms >= 60_000
    ? `${(ms / 60_000).toFixed(1)}m`
    : `${(ms / 1000).toFixed(1)}s`

const pid = (p: { readonly pid: number; readonly alive: boolean }): string => `${p.pid}${p.alive ? "" : " (dead)"}`

/** Renders rows as aligned columns. */
const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

const ls = Command.make(
  "ls",
  { prefix: prefixFlag },
  ({ prefix }) => Output.guard((s) => list(s.json, prefix))
).pipe(Command.withDescription("List effect-ipc's shared-memory segments: size, references, holders, creator, age"))

const list = Effect.fn(function*(json: boolean, prefix: Option.Option<string>) {
  const listing = yield* SegmentGc.listMatching({ prefix: Option.getOrUndefined(prefix) })
  if (json) return yield* Output.event({ event: "segments", ...listing })
  if (listing.segments.length === 0) {
    yield* Console.log("no effect-ipc segments")
  } else {
    yield* Console.log(table(
      ["NAME", "KIND", "STATE", "SIZE", "REFS", "HOLDERS", "CREATOR", "AGE", "TTL", "ORPHAN"],
      listing.segments.map((s) => [
        s.name,
        s.kind,
        s.state,
        Format.bytes(s.size),
        String(s.refcount),
        s.holders.map((h) => `${pid(h)}${h.count > 1 ? ` x${h.count}` : ""}`).join(", ") || "-",
        pid(s.creator),
        duration(s.ageMillis),
        s.ttlMillis > 0 ? duration(s.ttlMillis) : "-",
        s.orphan ?? "-"
      ])
    ))
  }
  if (listing.others > 0) yield* Console.log(`(${listing.others} other segments in /dev/shm are not effect-ipc's)`)
})

const gc = Command.make(
  "gc",
  {
    prefix: prefixFlag,
    dryRun: Flag.Boolean("dry-run").pipe(
      Flag.withDescription("Say what would be removed, remove nothing"),
      Flag.withDefault(false)
    ),
    dir: Flag.String("dir").pipe(
      Flag.withDescription("The rendezvous directory of the listeners' sockets (the transport's `directory` option)"),
      Flag.optional
    )
  },
  ({ dir, dryRun, prefix }) => Output.guard((s) => collect(s.json, dryRun, prefix, dir))
).pipe(Command.withDescription("Remove orphaned segments (dead holders, TTL passed, dead channel creators)"))

const collect = Effect.fn(function*(
  json: boolean,
  dryRun: boolean,
  prefix: Option.Option<string>,
  dir: Option.Option<string>
) {
  const report = yield* SegmentGc.collect({
    dryRun,
    prefix: Option.getOrUndefined(prefix),
    // a path typed on the command line is the working directory's (the library takes absolute ones only)
    directory: Option.getOrUndefined(Option.map(dir, (given) => Path.resolve(given)))
  })
  if (json) return yield* Output.event({ event: "gc", dryRun, ...report })
  const verb = dryRun ? "would remove" : "removed"
  for (const r of report.removed) yield* Console.log(`${verb} ${r.kind} ${r.name}: ${r.reason}`)
  yield* Console.log(`${verb} ${report.removed.length}, kept ${report.kept}`)
})

/** `effect-ipc shm ls | gc`. */
export const command = Command.make("shm").pipe(
  Command.withDescription("Inspect and clean up effect-ipc's shared-memory segments (Linux: /dev/shm)"),
  Command.withSubcommands([ls, gc])
)
