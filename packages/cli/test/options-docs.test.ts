/**
 * The options tables of the READMEs (`## Options from configuration`) are the
 * options each descriptor declares, no more and no less, and every option
 * set in their shell examples decodes for that transport.
 */
import { Registry, TransportOptions } from "@effect-ipc/core"
import * as File from "@effect-ipc/transport-file"
import * as Nng from "@effect-ipc/transport-nng"
import * as Pipe from "@effect-ipc/transport-pipe"
import * as Shm from "@effect-ipc/transport-shm"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { root } from "./helpers.ts"

const documented: ReadonlyArray<readonly [string, Registry.TransportDescriptor]> = [
  ["packages/core/README.md", Registry.memory],
  ["packages/transport-pipe/README.md", Pipe.descriptor],
  ["packages/transport-file/README.md", File.descriptor],
  ["packages/transport-shm/README.md", Shm.descriptor],
  ["packages/transport-nng/README.md", Nng.descriptor]
]

/** The `## Options from configuration` section of a README. */
const section = (readme: string): string => {
  const text = Fs.readFileSync(Path.join(root, readme), "utf8")
  const start = text.indexOf("## Options from configuration")
  assert.isAbove(start, -1, `${readme} has an options section`)
  const end = text.indexOf("\n## ", start + 1)
  return text.slice(start, end === -1 ? undefined : end)
}

describe("the options tables in the READMEs", () => {
  for (const [readme, descriptor] of documented) {
    it.effect(`${readme} lists exactly the options of "${descriptor.name}", and its examples decode`, () =>
      Effect.gen(function*() {
        const text = section(readme)
        const rows = [...text.matchAll(/^\| `([\w.]+)`\s*\| `\w+`\s*\| `(IPC_OPTIONS_\w+)`/gm)]
        const declared = descriptor.options?.names ?? []
        assert.deepStrictEqual(
          rows.map((row) => [row[1], row[2]]).toSorted(),
          declared.map((name) => [name.path.join("."), name.variable]).toSorted()
        )
        const blocks = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!)
        for (const line of blocks.flatMap((block) => block.split("\n"))) {
          const env: Record<string, string> = {}
          for (const m of line.matchAll(/(IPC_OPTIONS(?:_[A-Z_]+)?)=(?:'([^']*)'|"([^"]*)"|(\S+))/g)) {
            env[m[1]!] = m[2] ?? m[3] ?? m[4]!
          }
          if (Object.keys(env).length === 0) continue
          const options = yield* TransportOptions.read(descriptor.name, descriptor.options).pipe(
            Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env }))
          )
          assert.isDefined(options, line)
          assert.strictEqual(Object.keys(options!).length > 0, true, line)
        }
      }))
  }
})
