import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")

const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  ChildProcess.spawnSync(process.execPath, [
    "--conditions=@effect-ipc/source",
    "--disable-warning=ExperimentalWarning",
    ...args
  ], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 60_000
  })

const firstTsBlock = (readme: string) => {
  const text = Fs.readFileSync(Path.join(root, readme), "utf8")
  const match = /```ts\n([\s\S]*?)```/.exec(text)
  assert.isNotNull(match, `${readme} has a ts example`)
  return match![1]!
}

describe("documentation", () => {
  for (
    const [readme, expected] of [
      ["README.md", "42"],
      ["packages/core/README.md", "{ x: 1, y: 2 }"],
      ["packages/transport-pipe/README.md", "hello"],
      ["packages/transport-shm/README.md", "1048576 bytes in place"],
      ["packages/transport-file/README.md", "hello, later"],
      ["packages/transport-nng/README.md", "weather.oslo 3C"]
    ] as const
  ) {
    it(`the example in ${readme} runs and prints ${expected}`, () => {
      const file = Path.join(root, "packages/cli", `.example-${readme.replace(/\W/g, "-")}.ts`)
      Fs.writeFileSync(file, firstTsBlock(readme))
      try {
        const result = run([file])
        assert.strictEqual(result.status, 0, result.stderr)
        assert.include(result.stdout, expected)
      } finally {
        Fs.rmSync(file, { force: true })
      }
    })
  }
})

describe("demo", () => {
  for (
    const env of [{}, { IPC_TRANSPORT: "pipe" }, { IPC_TRANSPORT: "memory" }, { IPC_TRANSPORT: "shm" }, {
      IPC_TRANSPORT: "file"
    }, { IPC_TRANSPORT: "nng" }]
  ) {
    it(`runs every kind of call with ${JSON.stringify(env)}`, () => {
      const result = run(["packages/cli/src/demo.ts"], env)
      assert.strictEqual(result.status, 0, result.stderr)
      const out = result.stdout
      assert.match(out, /Add\(\{ a: 2, b: 40 \}\)\s+-> 42/)
      assert.match(out, /typed error DivisionByZero/)
      assert.match(out, /Countdown.*-> \[5,4,3,2,1\]/)
      assert.match(out, /Notes\(\)\s+-> \["saved scene","exported mesh","closed file"\]/)
      assert.match(out, /1000 results, sum 500500/)
      if (env.IPC_TRANSPORT !== "memory") {
        // the server really is another process
        const [, serverPid, clientPid] = /server pid (\d+), client pid (\d+)/.exec(out) ?? []
        assert.notStrictEqual(serverPid, clientPid)
        assert.include(out, `from pid ${serverPid}`)
      }
    })
  }

  it("fails with one clear line for an unknown transport", () => {
    const result = run(["packages/cli/src/demo.ts"], { IPC_TRANSPORT: "carrier-pigeon" })
    assert.strictEqual(result.status, 1)
    assert.include(result.stderr, `unknown transport "carrier-pigeon"`)
  })
})
