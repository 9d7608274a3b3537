/**
 * Summarises V8 CPU profiles (`.cpuprofile`, written by `node --cpu-prof`)
 * of a bench run: where the sampled time went, by layer (effect-ipc's core
 * and transports, effect's runtime, Node's own JavaScript, native code
 * outside JavaScript, the garbage collector, idle) and by function (top
 * self-time frames). With `--per=N` it also divides each figure by N (the
 * round trips in the profile) to give microseconds per round trip.
 *
 *   node bench/profile.ts [--top=25] [--per=N] [--window=RESULTS.json] FILE.cpuprofile...
 *
 * `--window=bench/results/latest.json` counts only the samples taken while
 * the run's first phase ran (the bench records when each phase began and
 * ended on the monotonic clock the profiles use; peers' profiles share it),
 * so start-up, module loading and the report stay out. See README.md for how
 * the bench's profiles are taken.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { argValue } from "./shared.ts"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** The layer a frame belongs to, from its script URL. */
export const layerOf = (frame: CallFrame): string => {
  const { functionName, url } = frame
  if (url === "") {
    if (functionName === "(idle)") return "idle (waiting in epoll)"
    if (functionName === "(garbage collector)") return "garbage collector"
    if (functionName === "(program)") return "native (V8, libuv, syscalls)"
    return `native: ${functionName}`
  }
  if (url.includes("/packages/core/")) return "effect-ipc core"
  const transport = /\/packages\/(transport-[a-z]+)\//.exec(url)
  if (transport !== null) return `effect-ipc ${transport[1]}`
  if (url.includes("/node_modules/effect/")) return "effect runtime"
  if (url.includes("/node_modules/@effect/")) return "effect platform"
  if (url.includes("/node_modules/koffi/")) return "koffi"
  if (url.includes("/node_modules/zeromq/")) return "zeromq binding"
  if (url.includes("/bench/")) return "bench harness"
  if (url.startsWith("node:")) return "node (JavaScript)"
  return "other JavaScript"
}

const where = (frame: CallFrame): string => {
  if (frame.url === "") return ""
  const url = frame.url.replace(/^file:\/\//, "")
  const short = url.includes("/node_modules/")
    ? url.slice(url.lastIndexOf("/node_modules/") + 14)
    : url.includes("/packages/")
    ? url.slice(url.indexOf("/packages/") + 1)
    : url.includes("/bench/")
    ? url.slice(url.indexOf("/bench/") + 1)
    : Path.basename(url)
  return `${short}:${frame.lineNumber + 1}`
}

/** A span of the monotonic clock, in µs. */
interface Window {
  readonly startUs: number
  readonly endUs: number
}

/** Self time (µs) per node id, counting only samples inside `window`. */
const selfTimes = (profile: CpuProfile, window: Window): Map<number, number> => {
  const out = new Map<number, number>()
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    // a sample's delta is the time since the previous one: charge it to this sample's frame
    const delta = profile.timeDeltas[i] ?? 0
    t += delta
    if (t < window.startUs || t > window.endUs) continue
    const id = profile.samples[i]!
    out.set(id, (out.get(id) ?? 0) + delta)
  }
  return out
}

/** One profile's summary as Markdown. */
export const summarise = (file: string, top: number, per: number | undefined, window: Window): string => {
  const profile = JSON.parse(Fs.readFileSync(file, "utf8")) as CpuProfile
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = selfTimes(profile, window)
  let total = 0
  const byLayer = new Map<string, number>()
  const byFrame = new Map<string, { frame: CallFrame; us: number }>()
  for (const [id, us] of self) {
    const node = nodes.get(id)
    if (node === undefined) continue
    total += us
    const layer = layerOf(node.callFrame)
    byLayer.set(layer, (byLayer.get(layer) ?? 0) + us)
    const key = `${node.callFrame.functionName}@${node.callFrame.url}:${node.callFrame.lineNumber}`
    const entry = byFrame.get(key)
    if (entry === undefined) byFrame.set(key, { frame: node.callFrame, us })
    else entry.us += us
  }
  const idle = byLayer.get("idle (waiting in epoll)") ?? 0
  const busy = total - idle
  const pct = (us: number) => `${((100 * us) / busy).toFixed(1)}%`
  const perRt = (us: number) => per === undefined ? "" : ` | ${(us / per).toFixed(2)}`
  const perHead = per === undefined ? "" : " | µs per round trip"
  const perRule = per === undefined ? "" : " | ---:"
  const lines = [
    `#### ${Path.basename(file)}`,
    "",
    `${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy (${
      ((100 * busy) / total).toFixed(0)
    }%), idle ${(idle / 1e6).toFixed(2)} s${per === undefined ? "" : `; ${per} round trips`}.`,
    "",
    `| layer | share of busy time${perHead} |`,
    `| --- | ---:${perRule} |`,
    ...[...byLayer]
      .filter(([layer]) => !layer.startsWith("idle"))
      .toSorted((a, b) => b[1] - a[1])
      .map(([layer, us]) => `| ${layer} | ${pct(us)}${perRt(us)} |`),
    ...(per === undefined ? [] : [`| busy in all | 100%${perRt(busy)} |`]),
    "",
    `| self time${perHead} | function | where |`,
    `| ---:${perRule} | --- | --- |`,
    ...[...byFrame.values()]
      .filter((e) => e.frame.functionName !== "(idle)")
      .toSorted((a, b) => b.us - a.us)
      .slice(0, top)
      .map((e) => `| ${pct(e.us)}${perRt(e.us)} | ${e.frame.functionName || "(anonymous)"} | ${where(e.frame)} |`)
  ]
  return lines.join("\n")
}

const files = process.argv.slice(2).filter((a) => !a.startsWith("--"))
if (files.length === 0) {
  console.error("usage: profile.ts [--top=25] [--per=N] [--window=RESULTS.json] FILE.cpuprofile...")
  process.exit(2)
}
const top = Number(argValue("top") ?? "25")
const perArg = argValue("per")
const per = perArg === undefined ? undefined : Number(perArg)
const windowFile = argValue("window")
const window: Window = windowFile === undefined
  ? { startUs: 0, endUs: Infinity }
  : (JSON.parse(Fs.readFileSync(windowFile, "utf8")) as { readonly windows: ReadonlyArray<Window> }).windows[0] ??
    { startUs: 0, endUs: Infinity }
for (const file of files) console.log(`${summarise(file, top, per, window)}\n`)
