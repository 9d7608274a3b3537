/**
 * koffi is loaded on first use only: importing any transport package loads
 * none of it, and a module or library that cannot be loaded is a typed
 * `LibraryMissing`, kept for every later call.
 */
import * as IpcError from "@effect-ipc/core/IpcError"
import * as Native from "@effect-ipc/core/Native"
import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"

const node = Path.resolve(import.meta.dirname, "../../../node_modules/.bin/node")

/** What of koffi a fresh Node process has loaded after importing `pkg`: its JS modules and shared objects. */
const koffiAfterImport = (pkg: string): ReadonlyArray<string> => {
  const script = [
    `await import(${JSON.stringify(pkg)})`,
    `const { createRequire } = await import("node:module")`,
    `const cached = Object.keys(createRequire(import.meta.url).cache)`,
    `const shared = process.report.getReport().sharedObjects`,
    `console.log(JSON.stringify([...cached, ...shared].filter((m) => m.includes("koffi"))))`
  ].join("\n")
  const run = ChildProcess.spawnSync(
    node,
    ["--conditions=@effect-ipc/source", "--disable-warning=ExperimentalWarning", "--input-type=module", "-e", script],
    { cwd: Path.resolve(import.meta.dirname, "../../.."), encoding: "utf8" }
  )
  assert.strictEqual(run.status, 0, run.stderr)
  return JSON.parse(run.stdout) as ReadonlyArray<string>
}

describe("Native", () => {
  for (const pkg of ["transport-pipe", "transport-file", "transport-shm", "transport-nng"]) {
    it(`importing @effect-ipc/${pkg} loads no koffi`, () => {
      assert.deepStrictEqual(koffiAfterImport(`@effect-ipc/${pkg}`), [])
    }, 60_000)
  }

  it("a module that is not installed is LibraryMissing, for the module and for its bindings, every time", () => {
    const loader = Native.loader<unknown>(import.meta.url, "effect-ipc-no-such-module")
    let builds = 0
    const bindings = loader.bindings("cannot bind", () => ++builds)
    for (const outcome of [loader.module(), bindings(), bindings()]) {
      assert.isTrue(IpcError.isIpcError(outcome))
      assert.strictEqual((outcome as IpcError.IpcError).reason._tag, "LibraryMissing")
      assert.include((outcome as IpcError.IpcError).detail, "effect-ipc-no-such-module")
    }
    assert.strictEqual(builds, 0)
  })

  it("bindings are built once; a throw while building is LibraryMissing, kept", () => {
    const loader = Native.loader<typeof import("node:path")>(import.meta.url, "node:path")
    let builds = 0
    const good = loader.bindings("path", (path) => (builds++, path.sep))
    assert.deepStrictEqual([good(), good(), builds], ["/", "/", 1])
    const bad = loader.bindings("cannot load libnothing.so", () => {
      builds++
      throw new Error("libnothing.so: cannot open shared object file")
    })
    const first = bad()
    assert.isTrue(IpcError.isIpcError(first))
    assert.strictEqual((first as IpcError.IpcError).reason._tag, "LibraryMissing")
    assert.include((first as IpcError.IpcError).detail, "cannot load libnothing.so: libnothing.so")
    assert.strictEqual(bad(), first)
    assert.strictEqual(builds, 2)
  })

  it("names errno numbers and maps them to reasons with the one errno table", () => {
    const eexist = Native.errnoNumber("EEXIST")!
    assert.strictEqual(Native.errnoName(eexist), "EEXIST")
    assert.strictEqual(Native.errnoName(Native.errnoNumber("EWOULDBLOCK")!), "EAGAIN")
    assert.strictEqual(Native.errnoName(99_999), "errno 99999")
    const error = Native.errnoError(eexist, "Open", "cannot create x", "shm://x")
    assert.deepStrictEqual([error.reason._tag, error.errno, error.address], ["AlreadyExists", "EEXIST", "shm://x"])
    assert.strictEqual(Native.errnoError(Native.errnoNumber("EIO")!, "Write", "cannot write").reason._tag, "Write")
  })
})
