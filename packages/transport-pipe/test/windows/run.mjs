// The Windows test runner, run by Node for Windows under Wine (see scripts/wine.sh and
// ../Windows.test.ts): `node run.mjs OUT MODULE...` imports each test module with `vitest` and
// `@effect/vitest` replaced by ./vitest-shim.mjs, then runs its cases one at a time and appends
// one JSON line per case to OUT: { title, status: "passed" | "failed" | "skipped", error }.
// `node run.mjs --list OUT MODULE...` only registers the cases and writes their titles (status "listed").
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Module from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as Util from "node:util"

// the hooks (./hooks.mjs) are loaded with --import through NODE_OPTIONS, so that the peers the
// cases start get them too
const shim = new URL("./vitest-shim.mjs", import.meta.url).href
if (!(process.env["NODE_OPTIONS"] ?? "").includes("hooks.mjs")) {
  throw new Error("run.mjs: start it with NODE_OPTIONS=--import=<file URL of hooks.mjs> (see scripts/wine.sh)")
}

// --list: only list the cases; --grep REGEX: run only the cases whose title matches (for debugging)
let args = process.argv.slice(2)
const listOnly = args[0] === "--list"
if (listOnly) args = args.slice(1)
const grep = args[0] === "--grep" ? new RegExp(args[1]) : undefined
if (grep !== undefined) args = args.slice(2)
const [out, ...modules] = args
const { registry } = await import(shim)
const record = (entry) => Fs.appendFileSync(out, `${JSON.stringify(entry)}\n`)
Fs.writeFileSync(out, "")

for (const module of modules) await import(pathToFileURL(module).href)
if (listOnly) {
  for (const c of registry.cases) record({ title: c.title, status: c.skip ? "skipped" : "listed" })
  process.exit(0)
}

const messageOf = (cause) => cause instanceof Error ? (cause.stack ?? cause.message) : Util.inspect(cause, { depth: 6 })
const withTimeout = (promise, millis, title) => {
  let timer
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${millis} ms: ${title}`)), millis)
    })
  ]).finally(() => clearTimeout(timer))
}

// a first peer process, started and ended before the cases: it fills Node's compile cache
// (NODE_COMPILE_CACHE, see scripts/wine-env.sh), so that the peers the cases start load in time
const warmUp = () =>
  new Promise((resolve) => {
    const peer = new URL("../../../testing/src/peer.ts", import.meta.url)
    const child = ChildProcess.spawn(
      process.execPath,
      [fileURLToPath(peer), "@effect-ipc/transport-pipe", "descriptor", "echo-server", `pipe://warm-up-${process.pid}`],
      { stdio: ["ignore", "pipe", "ignore"] }
    )
    const timer = setTimeout(() => child.kill(), 120_000)
    child.stdout.on("data", (chunk) => {
      if (String(chunk).includes("ready")) child.kill()
    })
    child.once("exit", () => {
      clearTimeout(timer)
      Module.flushCompileCache?.()
      resolve()
    })
  })
await warmUp()

let hooksFailed
for (const hook of registry.beforeAll) {
  try {
    await hook()
  } catch (cause) {
    hooksFailed = `beforeAll failed: ${messageOf(cause)}`
  }
}
for (const c of registry.cases) {
  if (grep !== undefined && !grep.test(c.title)) continue
  if (c.skip) {
    record({ title: c.title, status: "skipped" })
    continue
  }
  if (hooksFailed !== undefined) {
    record({ title: c.title, status: "failed", error: hooksFailed })
    continue
  }
  const started = Date.now()
  try {
    await withTimeout(c.run(), c.timeout, c.title)
    record({ title: c.title, status: "passed", ms: Date.now() - started })
  } catch (cause) {
    record({ title: c.title, status: "failed", error: messageOf(cause), ms: Date.now() - started })
  }
}
for (const hook of registry.afterAll) {
  try {
    await hook()
  } catch (cause) {
    record({ title: "afterAll", status: "failed", error: messageOf(cause) })
  }
}
process.exit(0)
