/**
 * The conformance suite as a third-party transport author gets it: core,
 * testing and transport-pipe are packed, the tarballs installed into a fresh
 * project beside the repository's effect, @effect/vitest, vitest and
 * @effect/platform-node (no workspace, no source condition), and the README's
 * example runs there under vitest on plain Node 24: an in-memory transport of
 * the project's own, and child-process pipes, whose peer-process cases spawn
 * the packed `dist/peer.js` and `dist/rawPeer.js`.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")
const packages = ["core", "testing", "transport-pipe"]
const work = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-testing-pack-"))
const tarballs = Path.join(work, "tarballs")
const app = Path.join(work, "app")
const node24 = Path.join(root, "node_modules", ".bin", "node")

/** Runs a command to completion; fails with its output when it exits non-zero. */
const run = (command: string, args: ReadonlyArray<string>, options: ChildProcess.ExecFileSyncOptions = {}) => {
  try {
    return ChildProcess.execFileSync(command, args, { encoding: "utf8", stdio: "pipe", ...options }).toString()
  } catch (cause) {
    const error = cause as { stdout?: string; stderr?: string; message: string }
    throw new Error(
      `${command} ${args.join(" ")} failed: ${error.message}\n${error.stdout ?? ""}\n${error.stderr ?? ""}`,
      { cause }
    )
  }
}

/** The manifest of a packed tarball. */
const manifestOf = (tarball: string) =>
  JSON.parse(run("tar", ["xzf", tarball, "-O", "package/package.json"])) as {
    readonly name: string
    readonly dependencies?: Record<string, string>
    readonly peerDependencies?: Record<string, string>
    readonly peerDependenciesMeta?: Record<string, unknown>
  }

const tarballOf = (name: string) => Path.join(tarballs, Fs.readdirSync(tarballs).find((f) => f.includes(name))!)

interface Report {
  readonly numPassedTests: number
  readonly numFailedTests: number
  readonly numPendingTests: number
  readonly testResults: ReadonlyArray<{
    readonly assertionResults: ReadonlyArray<{
      readonly ancestorTitles: ReadonlyArray<string>
      readonly title: string
      readonly status: string
      readonly failureMessages: ReadonlyArray<string>
    }>
  }>
}

let report: Report
let vitestOutput = ""

beforeAll(() => {
  Fs.mkdirSync(tarballs, { recursive: true })
  for (const name of packages) {
    const dir = Path.join(root, "packages", name)
    const built = Path.join(dir, "dist", name === "testing" ? "Conformance.js" : "index.js")
    assert.isTrue(Fs.existsSync(built), `packages/${name} is not built (tsc -b)`)
    run("npm", ["pack", "--silent", "--pack-destination", tarballs], { cwd: dir })
  }
  // the versions the repository itself is built and tested with
  const manifest = JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8")) as {
    readonly dependencies: Record<string, string>
    readonly devDependencies: Record<string, string>
  }
  const versions = { ...manifest.dependencies, ...manifest.devDependencies }
  Fs.mkdirSync(app)
  Fs.writeFileSync(
    Path.join(app, "package.json"),
    JSON.stringify({ name: "my-transport", private: true, type: "module" })
  )
  run("npm", [
    "install",
    "--no-audit",
    "--no-fund",
    "--prefer-offline",
    "--loglevel=error",
    ...packages.map(tarballOf),
    ...["effect", "@effect/vitest", "vitest", "@effect/platform-node"].map((name) => `${name}@${versions[name]}`)
  ], { cwd: app, timeout: 300_000 })
  // the README's example, as an author pastes it into a test file
  const readme = Fs.readFileSync(Path.join(root, "packages", "testing", "README.md"), "utf8")
  Fs.writeFileSync(
    Path.join(app, "conformance.test.ts"),
    /## Example \(runnable\)\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)![1]!
  )
  // plain Node 24: no source condition (the workspace's vitest config is not in reach of the app)
  const env = { ...process.env, NODE_OPTIONS: "" }
  const vitest = Path.join(app, "node_modules", "vitest", "vitest.mjs")
  const result = ChildProcess.spawnSync(
    node24,
    [vitest, "run", "--reporter=default", "--reporter=json", "--outputFile.json=report.json"],
    { cwd: app, env, encoding: "utf8", timeout: 600_000 }
  )
  vitestOutput = `${result.stdout}\n${result.stderr}`
  assert.isTrue(Fs.existsSync(Path.join(app, "report.json")), `vitest wrote no report:\n${vitestOutput}`)
  report = JSON.parse(Fs.readFileSync(Path.join(app, "report.json"), "utf8")) as Report
}, 900_000)

afterAll(() => Fs.rmSync(work, { recursive: true, force: true }))

const cases = () => report.testResults.flatMap((file) => file.assertionResults)
const casesOf = (suite: string) => cases().filter((c) => c.ancestorTitles.includes(`conformance: ${suite}`))

describe("@effect-ipc/testing from its tarball", () => {
  it("ships the suite and the peer scripts it spawns, built, and declares what it runs on", () => {
    const tarball = tarballOf("testing")
    const listing = run("tar", ["tzf", tarball]).split("\n")
    for (const file of ["Conformance", "ConformanceApi", "peer", "rawPeer"]) {
      assert.include(listing, `package/dist/${file}.js`)
      assert.include(listing, `package/dist/${file}.d.ts`)
    }
    assert.includeMembers(listing, ["package/LICENSE", "package/README.md"])
    assert.isFalse(listing.some((entry) => entry.endsWith(".tsbuildinfo")))
    const manifest = manifestOf(tarball)
    assert.deepStrictEqual(manifest.peerDependencies, {
      "@effect/platform-node": "^4.0.0",
      "@effect/vitest": "^4.0.5",
      effect: "^4.0.0",
      vitest: ">=5.0.0 <6.0.0"
    })
    assert.deepStrictEqual(manifest.dependencies, { "@effect-ipc/core": "0.1.0" })
    // core no longer carries the suite nor asks for its test runner
    const core = manifestOf(tarballOf("core"))
    assert.deepStrictEqual(core.peerDependencies, { effect: "^4.0.0" })
    assert.isUndefined(core.peerDependenciesMeta)
    assert.isFalse(run("tar", ["tzf", tarballOf("core")]).includes("testing/"))
  })

  it("runs the README's suites on plain Node: every case passes or is skipped with its reason", () => {
    const failed = cases().filter((c) => c.status === "failed")
    assert.deepStrictEqual(
      failed.map((c) => `${c.title}: ${c.failureMessages.join("\n")}`),
      [],
      vitestOutput
    )
    // mine: 22 run, 8 skipped (peer-process 6, raw-stream 2); child-process pipes: 26 run, 4 skipped
    // (shared-address, in-process 3)
    assert.strictEqual(report.numPassedTests, 48, vitestOutput)
    assert.strictEqual(report.numPendingTests, 12, vitestOutput)
    assert.strictEqual(report.numFailedTests, 0, vitestOutput)
    const skipped = casesOf("mine").filter((c) => c.status !== "passed").map((c) => c.title)
    assert.strictEqual(skipped.length, 8)
    for (const title of skipped) {
      assert.match(
        title,
        / — not applicable: (peer-process \(both ends live in one process\)|raw-stream \(messages are handed over, not bytes\))$/
      )
    }
  })

  it("runs the peer-process and raw-stream cases through the packed dist/peer.js and dist/rawPeer.js", () => {
    const child = casesOf("child-process pipes")
    const passed = (prefix: string) => child.filter((c) => c.title.startsWith(prefix) && c.status === "passed").length
    // each starts the suite's peer (or raw peer) as a child: from the tarball only dist/*.js can run
    assert.strictEqual(passed("reports a peer process killed"), 2)
    assert.strictEqual(passed("a peer process that sends, closes and exits"), 1)
    assert.strictEqual(passed("reconnects RPC after a server restart"), 1)
    assert.strictEqual(passed("drops a connection that sends garbage"), 1)
    assert.strictEqual(passed("reports a frame cut off by a disconnect"), 1)
    // descriptors are counted on Linux (/proc/self/fd)
    assert.isFalse(cases().some((c) => c.title.includes("descriptors not counted")))
  })
})
