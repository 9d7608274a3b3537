/**
 * From the npm tarballs to a working app, as a new user gets them: every
 * package is packed, the tarballs are installed into a fresh project beside
 * the lowest and the newest supported effect (no workspace, no source
 * condition), the README example and examples/rpc are type-checked there with
 * `tsc --strict` (library types included), compiled, and run as plain
 * JavaScript: the README example in one process, examples/rpc as a server and
 * a client in two, on the project's Node 24 and on the machine's Node 20.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")
const packages = ["core", "transport-pipe", "transport-file", "transport-shm", "transport-nng", "transport-ws", "cli"]
/** The first stable effect 4 (below it are betas and release candidates, whose APIs differed). */
const LOWEST = "4.0.0"
const work = Fs.mkdtempSync(Path.join(Os.tmpdir(), "eipc-pack-"))
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

/** Orders `x.y.z` versions by their numbers (the ranges asked for here hold no pre-releases). */
const byVersion = (a: string, b: string): number => {
  const [x, y] = [a, b].map((version) => version.split(/[.-]/).slice(0, 3).map(Number))
  return x![0]! - y![0]! || x![1]! - y![1]! || x![2]! - y![2]!
}

/** The newest published version matching `range` (npm lists them in the order they were published). */
const newest = (name: string, range: string): string => {
  const versions = JSON.parse(run("npm", ["view", `${name}@${range}`, "version", "--json"])) as string | Array<string>
  return Array.isArray(versions) ? versions.toSorted(byVersion).at(-1)! : versions
}

/** The machine's own Node 20 (the one the README says a fresh machine has), if it is there. */
const node20 = ["/usr/bin/node", "/usr/local/bin/node", "/bin/node"].find((candidate) => {
  try {
    return run(candidate, ["--version"]).startsWith("v20.")
  } catch {
    return false
  }
})

const tarballs = Path.join(work, "tarballs")

/** A program that counts 3 messages of 5 bytes each way over memory:// and prints what the metrics say. */
const metricsProgram = `import { Memory, Observability, Transport } from "@effect-ipc/core"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"

const count = (snapshots: ReadonlyArray<Metric.Metric.Snapshot>, name: string): number =>
  snapshots.filter((s) => s.id === name).reduce((sum, s) => sum + Number((s.state as Metric.CounterState<number>).count), 0)

const program = Effect.gen(function*() {
  const transport = Transport.instrument(Memory.make())
  const listener = yield* transport.listen("memory://metrics")
  const client = yield* transport.dial("memory://metrics")
  const server = yield* listener.accept
  for (let i = 0; i < 3; i++) yield* client.send(new Uint8Array(5))
  for (let i = 0; i < 3; i++) yield* server.receive
  yield* Effect.sleep("10 millis")
  const snapshots = yield* Metric.snapshot
  const names = Observability.MetricNames
  console.log([names.messagesOut, names.bytesOut, names.messagesIn, names.bytesIn].map((name) => count(snapshots, name)).join(" "))
})

Effect.runPromise(Effect.scoped(program))
`

beforeAll(() => {
  Fs.mkdirSync(tarballs)
  for (const name of packages) {
    const dir = Path.join(root, "packages", name)
    assert.isTrue(Fs.existsSync(Path.join(dir, "dist", "index.js")), `packages/${name} is not built (tsc -b)`)
    run("npm", ["pack", "--silent", "--pack-destination", tarballs], { cwd: dir })
  }
}, 120_000)

afterAll(() => Fs.rmSync(work, { recursive: true, force: true }))

describe("the packed tarballs", () => {
  it("hold the build, the sources, the README and the LICENSE, and no build state", () => {
    for (const file of Fs.readdirSync(tarballs)) {
      const listing = run("tar", ["tzf", Path.join(tarballs, file)]).split("\n")
      assert.include(listing, "package/LICENSE", file)
      assert.include(listing, "package/README.md", file)
      assert.include(listing, "package/dist/index.js", file)
      assert.include(listing, "package/dist/index.d.ts", file)
      assert.isFalse(listing.some((entry) => entry.endsWith(".tsbuildinfo")), `${file} ships .tsbuildinfo`)
      const manifest = JSON.parse(run("tar", ["xzf", Path.join(tarballs, file), "-O", "package/package.json"]))
      // effect is the user's: a peer, never a pinned dependency that would nest a second copy
      assert.strictEqual(manifest.peerDependencies?.effect, "^4.0.0", file)
      assert.isUndefined(manifest.dependencies?.effect, file)
      assert.isUndefined(manifest.dependencies?.["@effect/platform-node"], file)
      assert.isString(manifest.repository?.url, file)
    }
  })

  for (const which of ["lowest", "newest"] as const) {
    describe(`installed beside the ${which} supported effect`, () => {
      const app = Path.join(work, which)
      let effectVersion = ""

      beforeAll(() => {
        effectVersion = which === "lowest" ? LOWEST : newest("effect", "^4.0.0")
        // effect and its platform packages are published one by one: the newest effect (4.1.5) may have no
        // platform-node of its own number yet, and takes the newest there is (4.1.0, whose peer is effect ^4.1.0)
        const platform = which === "lowest" ? LOWEST : newest("@effect/platform-node", "^4.0.0")
        Fs.mkdirSync(Path.join(app, "src"), { recursive: true })
        Fs.writeFileSync(Path.join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }))
        run("npm", [
          "install",
          "--no-audit",
          "--no-fund",
          // the newest versions come from the registry (`npm view`): a packument npm cached before they were
          // published would not know them (ETARGET), so that install asks the registry again
          which === "newest" ? "--prefer-online" : "--prefer-offline",
          "--loglevel=error",
          ...Fs.readdirSync(tarballs).map((file) => Path.join(tarballs, file)),
          `effect@${effectVersion}`,
          `@effect/platform-node@${platform}`,
          // @effect/platform-node 4.0.x asks for platform-node-shared ^4.0.x, which npm resolves to 4.1
          // (built for effect 4.1): with effect 4.0.x it must be pinned to the same version
          `@effect/platform-node-shared@${platform}`,
          "typescript@5.9.3",
          "@types/node@^24"
        ], { cwd: app, timeout: 300_000 })
        // the README's example, as a user pastes it, and examples/rpc
        const readme = Fs.readFileSync(Path.join(root, "README.md"), "utf8")
        const example = /## Example\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)![1]!
        Fs.writeFileSync(Path.join(app, "src", "readme.ts"), example)
        // transport-shm's README example (a view read in place, detached when its scope closes)
        const shmReadme = Fs.readFileSync(Path.join(root, "packages", "transport-shm", "README.md"), "utf8")
        Fs.writeFileSync(Path.join(app, "src", "shm-readme.ts"), /```ts\n([\s\S]*?)```/.exec(shmReadme)![1]!)
        // metrics counted and read as a user reads them (the counters are read through hooks where effect has
        // `Metric.registerUnsafe`, 4.0.6 on, and updated once per burst before that)
        Fs.writeFileSync(Path.join(app, "src", "metrics.ts"), metricsProgram)
        for (const file of Fs.readdirSync(Path.join(root, "examples", "rpc"))) {
          Fs.copyFileSync(Path.join(root, "examples", "rpc", file), Path.join(app, "src", file))
        }
        Fs.writeFileSync(
          Path.join(app, "tsconfig.json"),
          JSON.stringify({
            compilerOptions: {
              strict: true,
              skipLibCheck: false,
              module: "nodenext",
              moduleResolution: "nodenext",
              target: "es2023",
              types: ["node"],
              outDir: "out",
              rewriteRelativeImportExtensions: true
            },
            include: ["src"]
          })
        )
      }, 600_000)

      it("has exactly one effect, the one the app chose", () => {
        const copies = run("find", [
          "node_modules",
          "-name",
          "package.json",
          "-path",
          "*node_modules/effect/package.json"
        ], {
          cwd: app
        }).trim().split("\n")
        assert.deepStrictEqual(copies, ["node_modules/effect/package.json"])
        const installed = JSON.parse(Fs.readFileSync(Path.join(app, "node_modules", "effect", "package.json"), "utf8"))
        assert.strictEqual(installed.version, effectVersion)
      })

      it("type-checks with tsc --strict (library types included) and compiles", () => {
        run(node24, [Path.join(app, "node_modules", "typescript", "bin", "tsc"), "-p", "."], { cwd: app })
        assert.isTrue(Fs.existsSync(Path.join(app, "out", "client.js")))
      }, 120_000)

      const nodes = [["Node 24", node24], ["Node 20", node20]] as const
      for (const [label, nodePath] of nodes) {
        it(`runs the README example on ${label}`, () => {
          assert.isDefined(nodePath, "no Node 20 on this machine (the README's fresh machine has one)")
          const output = run(nodePath!, ["out/readme.js"], { cwd: app, timeout: 60_000 })
          assert.strictEqual(output, "42\n")
        }, 90_000)

        it(`counts messages and bytes in the metrics on ${label}`, () => {
          assert.isDefined(nodePath, "no Node 20 on this machine (the README's fresh machine has one)")
          const output = run(nodePath!, ["out/metrics.js"], { cwd: app, timeout: 60_000 })
          assert.strictEqual(output, "3 15 3 15\n")
        }, 90_000)

        it(`runs transport-shm's README example on ${label}`, () => {
          assert.isDefined(nodePath, "no Node 20 on this machine (the README's fresh machine has one)")
          const output = run(nodePath!, ["out/shm-readme.js"], { cwd: app, timeout: 60_000 })
          assert.strictEqual(output, "hello\n1048576 bytes in place\nframe byte 1, refcount 1\n")
        }, 90_000)

        // every transport with the newest effect on Node 24; the native ones (shm: koffi and ArrayBuffer
        // transfer) on Node 20 too; a Unix socket everywhere
        const transports = which === "lowest"
          ? ["pipe"]
          : label === "Node 24"
          ? ["pipe", "shm", "file", "nng"]
          : ["pipe", "shm"]
        for (const transport of transports) {
          it(`runs examples/rpc in two processes over ${transport} on ${label}`, async () => {
            assert.isDefined(nodePath, "no Node 20 on this machine (the README's fresh machine has one)")
            const scratch = Fs.mkdtempSync(Path.join(work, "run-"))
            const address = {
              pipe: `unix://${scratch}/calc.sock`,
              shm: `shm://eipc-pack-${Path.basename(scratch)}`,
              file: `file://${scratch}/calc`,
              nng: `nng+ipc://${scratch}/calc.nng`
            }[transport]!
            const env = { ...process.env, IPC_TRANSPORT: transport, IPC_ADDRESS: address }
            const server = ChildProcess.spawn(nodePath!, ["out/server.js"], {
              cwd: app,
              env,
              stdio: ["ignore", "pipe", "pipe"]
            })
            try {
              const printed = await new Promise<string>((resolve) => {
                let text = ""
                const timer = setTimeout(() => resolve(text), 30_000)
                const add = (chunk: Buffer) => {
                  text += chunk.toString()
                  if (text.includes("ready")) {
                    clearTimeout(timer)
                    resolve(text)
                  }
                }
                server.stdout.on("data", add)
                server.stderr.on("data", add)
                server.once("exit", () => resolve(text))
              })
              assert.include(printed, "ready", `the server did not start: ${printed}`)
              const output = run(nodePath!, ["out/client.js"], { cwd: app, env, timeout: 60_000 })
              assert.strictEqual(
                output,
                [
                  "Add 42",
                  "Withdraw 70",
                  "Withdraw refused, balance 70",
                  "Countdown [ 3, 2, 1, 0 ]",
                  "Slow cancelled",
                  ""
                ].join("\n")
              )
            } finally {
              server.kill("SIGTERM")
            }
          }, 120_000)
        }
      }
    })
  }
})
