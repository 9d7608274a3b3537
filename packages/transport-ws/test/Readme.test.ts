/**
 * The README's promises that are not tested elsewhere: its example runs as a
 * user pastes it, every TypeScript snippet in it type-checks as pasted (the
 * page's `WsClient` snippet also bundles for the browser), and its options
 * table is exactly what the descriptor declares, its shell lines decoding for
 * `IPC_TRANSPORT=ws`.
 */
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Ws from "@effect-ipc/transport-ws"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Esbuild from "esbuild"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")
const readme = Fs.readFileSync(Path.join(import.meta.dirname, "..", "README.md"), "utf8")

/** The section of the README under `heading`. */
const section = (heading: string): string => {
  const start = readme.indexOf(`## ${heading}`)
  assert.isAbove(start, -1, heading)
  const end = readme.indexOf("\n## ", start + 1)
  return readme.slice(start, end === -1 ? undefined : end)
}

/** The README's TypeScript snippets, in order. */
const tsBlocks = (): ReadonlyArray<string> => [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!)

describe("the README", () => {
  it("its example runs and prints hello, leaving no token file", () => {
    const code = /```ts\n([\s\S]*?)```/.exec(section("Example (runnable)"))![1]!
    // beside the package, so that its imports resolve as in a user's project; removed after
    const file = Path.join(import.meta.dirname, `.readme-example-${process.pid}.ts`)
    const tokenDir = Effect.runSync(Ws.TokenFile.directory())
    const tokenFiles = () => Fs.readdirSync(tokenDir).filter((name) => name.endsWith("~2fapp.token"))
    const before = tokenFiles()
    Fs.writeFileSync(file, code)
    try {
      const run = ChildProcess.spawnSync("bash", ["scripts/node.sh", file], {
        cwd: root,
        encoding: "utf8",
        timeout: 60_000
      })
      assert.strictEqual(run.status, 0, run.stderr)
      assert.strictEqual(run.stdout, "hello\n")
      // none added (a listen removes the files of killed servers, so some that were there may be gone)
      assert.deepStrictEqual(tokenFiles().filter((name) => !before.includes(name)), [])
    } finally {
      Fs.rmSync(file, { force: true })
    }
  }, 90_000)

  it("every TypeScript snippet type-checks as pasted (tsc, the repository's strict settings)", () => {
    const blocks = tsBlocks()
    assert.isAtLeast(blocks.length, 2)
    // beside the package, so that imports resolve as in a user's project; removed after
    const dir = Fs.mkdtempSync(Path.join(import.meta.dirname, ".readme-snippets-"))
    try {
      const files = blocks.map((code, i) => {
        const file = `snippet-${i}.ts`
        Fs.writeFileSync(Path.join(dir, file), code)
        return file
      })
      Fs.writeFileSync(
        Path.join(dir, "tsconfig.json"),
        JSON.stringify({
          extends: Path.join(root, "tsconfig.base.json"),
          compilerOptions: {
            composite: false,
            incremental: false,
            declaration: false,
            declarationMap: false,
            noEmit: true,
            // a snippet may declare what the reader goes on to use
            noUnusedLocals: false,
            customConditions: ["@effect-ipc/source"]
          },
          files
        })
      )
      const check = ChildProcess.spawnSync(
        process.execPath,
        [Path.join(root, "node_modules", "typescript", "bin", "tsc"), "-p", dir],
        { cwd: root, encoding: "utf8", timeout: 150_000 }
      )
      assert.strictEqual(check.status, 0, `${check.stdout}${check.stderr}`)
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 180_000)

  it("the page's WsClient snippet bundles for the browser, with no node: imports", async () => {
    const code = /```ts\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf("In a page, the client is `WsClient`")))![1]!
    assert.include(code, "@effect-ipc/transport-ws/WsClient")
    const result = await Esbuild.build({
      stdin: { contents: code, resolveDir: Path.join(import.meta.dirname, ".."), loader: "ts", sourcefile: "page.ts" },
      bundle: true,
      platform: "browser",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
      conditions: ["@effect-ipc/source"]
    })
    const inputs = Object.keys(result.metafile.inputs)
    assert.isTrue(inputs.some((input) => input.endsWith("transport-ws/src/WsClient.ts")), inputs.join("\n"))
    assert.deepStrictEqual(inputs.filter((input) => input.startsWith("node:")), [])
  }, 60_000)

  it.effect("its options table is the descriptor's options, and its shell lines decode", () =>
    Effect.gen(function*() {
      const text = section("Options from configuration")
      const rows = [...text.matchAll(/^\| `([\w.]+)`\s*\| `\w+`\s*\| `(IPC_OPTIONS_\w+)`/gm)]
      assert.deepStrictEqual(
        rows.map((row) => [row[1], row[2]]).toSorted(),
        (Ws.descriptor.options?.names ?? []).map((name) => [name.path.join("."), name.variable]).toSorted()
      )
      const lines = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split("\n"))
      let decoded = 0
      for (const line of lines) {
        const env: Record<string, string> = {}
        for (const m of line.matchAll(/(IPC_OPTIONS(?:_[A-Z_]+)?)=(?:'([^']*)'|"([^"]*)"|(\S+))/g)) {
          env[m[1]!] = m[2] ?? m[3] ?? m[4]!
        }
        if (Object.keys(env).length === 0) continue
        const options = yield* TransportOptions.read("ws", Ws.descriptor.options).pipe(
          Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))
        )
        assert.isDefined(options, line)
        assert.isAbove(Object.keys(options!).length, 0, line)
        decoded++
      }
      assert.strictEqual(decoded, 2)
    }))
})
