/**
 * The README's promises that are not tested elsewhere: its example runs as a
 * user pastes it, and its options table is exactly what the descriptor
 * declares, its shell lines decoding for `IPC_TRANSPORT=ws`.
 */
import * as TransportOptions from "@effect-ipc/core/TransportOptions"
import * as Ws from "@effect-ipc/transport-ws"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
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
      assert.deepStrictEqual(tokenFiles(), before)
    } finally {
      Fs.rmSync(file, { force: true })
    }
  }, 90_000)

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
