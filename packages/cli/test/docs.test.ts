import { assert, describe, it } from "@effect/vitest"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../../..")

const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}, cwd: string = root) =>
  ChildProcess.spawnSync(process.execPath, [
    "--conditions=@effect-ipc/source",
    "--disable-warning=ExperimentalWarning",
    ...args
  ], {
    cwd,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 60_000
  })

/** The first TypeScript example of `readme` (after the heading `section`, when given). */
const firstTsBlock = (readme: string, section?: string) => {
  const text = Fs.readFileSync(Path.join(root, readme), "utf8")
  const from = section === undefined ? 0 : text.indexOf(`\n${section}\n`)
  assert.isAtLeast(from, 0, `${readme} has a section ${section}`)
  const match = /```ts\n([\s\S]*?)```/.exec(text.slice(from))
  assert.isNotNull(match, `${readme} has a ts example`)
  return match![1]!
}

let run_ = 0

/**
 * Each example runs from its own temp directory (linked to the repository's
 * node_modules so its imports resolve), with every fixed name it uses
 * replaced by one of this run: parallel runs and other tests never meet.
 */
const examples: ReadonlyArray<{
  readonly readme: string
  readonly section?: string
  readonly expected: string
  readonly rename?: (dir: string, unique: string) => ReadonlyArray<readonly [string, string]>
  readonly env?: (dir: string) => Record<string, string>
}> = [
  // the default address would be pipe://effect-ipc-calc, shared by every run
  { readme: "README.md", expected: "42", env: (dir) => ({ IPC_ADDRESS: `unix://${dir}/calc.sock` }) },
  { readme: "packages/core/README.md", expected: "{ x: 1, y: 2 }" },
  {
    readme: "packages/transport-pipe/README.md",
    expected: "hello",
    rename: (dir) => [["unix:///tmp/example.sock", `unix://${dir}/example.sock`]]
  },
  {
    readme: "packages/transport-shm/README.md",
    expected: "1048576 bytes in place",
    rename: (_, unique) => [["shm://example", `shm://${unique}`], [`"example-frame"`, `"${unique}-frame"`]]
  },
  {
    readme: "packages/transport-pipe/README.md",
    section: "## Child processes",
    expected: "job",
    rename: () => {
      const peer = "packages/transport-pipe/test/fixtures/peer.py"
      return [[peer, Path.join(root, peer)]]
    }
  },
  { readme: "packages/transport-file/README.md", expected: "hello, later" },
  { readme: "packages/transport-nng/README.md", expected: "weather.oslo 3C" }
]

describe("documentation", () => {
  for (const { env, expected, readme, rename, section } of examples) {
    it(`the example in ${readme}${section === undefined ? "" : ` (${section})`} runs and prints ${expected}`, () => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-example-"))
      const unique = `example-${process.pid}-${++run_}`
      try {
        Fs.symlinkSync(Path.join(root, "node_modules"), Path.join(dir, "node_modules"))
        let source = firstTsBlock(readme, section)
        for (const [from, to] of rename?.(dir, unique) ?? []) {
          assert.include(source, from, `${readme}'s example still uses ${from}`)
          source = source.replaceAll(from, to)
        }
        const file = Path.join(dir, "example.ts")
        Fs.writeFileSync(file, source)
        const result = run([file], env?.(dir) ?? {}, dir)
        assert.strictEqual(result.status, 0, result.stderr)
        assert.include(result.stdout, expected)
      } finally {
        Fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  }
})

/** `text` with each run of white space (line breaks too) made one space. */
const flat = (text: string): string => text.replace(/\s+/g, " ")

/** Every `.ts` file under `dir`, recursively. */
const tsFiles = (dir: string): ReadonlyArray<string> =>
  Fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = Path.join(dir, entry.name)
    return entry.isDirectory() ? tsFiles(path) : entry.name.endsWith(".ts") ? [path] : []
  })

/**
 * Whether `text` begins some instance of a template literal whose literal parts are `chunks`, each `${…}` between
 * them standing for at most `budget` characters in all (a word such as "before"), `text` ending in a literal part.
 */
const beginsInstance = (text: string, chunks: ReadonlyArray<string>, budget = 24): boolean => {
  const [first = "", ...rest] = chunks
  if (text.length <= first.length) return text.length > 0 && first.startsWith(text)
  if (!text.startsWith(first) || rest.length === 0) return false
  for (let i = first.length + 1; i < text.length && i - first.length <= budget; i++) {
    if (beginsInstance(text.slice(i), rest, budget - (i - first.length))) return true
  }
  return false
}

/** Whether `text` is part of some instance of a template literal whose literal parts are `chunks` (see `beginsInstance`). */
const inInstance = (text: string, chunks: ReadonlyArray<string>): boolean =>
  chunks.some((chunk, k) =>
    Array.from({ length: chunk.length }, (_, j) => j).some((j) =>
      beginsInstance(text, [chunk.slice(j), ...chunks.slice(k + 1)])
    )
  )

describe("SECURITY.md", () => {
  // "every statement here is backed by a test named beside it": a renamed or removed test left a name behind
  it("every test it names exists, as written (\"...\" for words left out)", () => {
    const doc = flat(Fs.readFileSync(Path.join(root, "SECURITY.md"), "utf8"))
      .replaceAll(`{"v":1}`, "")
      .replace(/"[^"\s]{1,11}"|"[A-Za-z]+ [A-Za-z]+"/g, "") // quoted words ("busy", "this user"), not a test's name
    const names = [...doc.matchAll(/"([^"]{12,})"/g)].map((m) => m[1]!)
    assert.isAtLeast(names.length, 80)
    const sources = Fs.readdirSync(Path.join(root, "packages")).flatMap((pkg) => {
      const dir = Path.join(root, "packages", pkg, "test")
      return Fs.existsSync(dir) ? tsFiles(dir) : []
    }).map((file) => {
      const text = flat(Fs.readFileSync(file, "utf8"))
      const templates = [...text.matchAll(/`((?:[^`\\]|\\.)*\$\{(?:[^`\\]|\\.)*)`/g)]
        .map((m) => m[1]!.split(/\$\{[^}]*\}/))
      return { text, templates }
    })
    const missing = names.filter((name) => {
      const parts = name.split(/\.\.\.|…/).map((part) => part.trim()).filter((part) => part.length > 0)
      return !sources.some(({ templates, text }) =>
        parts.every((part) => text.includes(part) || templates.some((chunks) => inInstance(part, chunks)))
      )
    })
    assert.deepStrictEqual(missing, [], "tests SECURITY.md names that no test file has")
  })
})

describe("demo", () => {
  for (
    const env of [
      {},
      { IPC_TRANSPORT: "pipe" },
      { IPC_TRANSPORT: "memory" },
      { IPC_TRANSPORT: "shm" },
      {
        IPC_TRANSPORT: "file"
      },
      { IPC_TRANSPORT: "nng" },
      { IPC_TRANSPORT: "", IPC_ADDRESS: "" }
    ]
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

  // the root README: "`IPC_ADDRESS=unix:///tmp/mine.sock npm run demo` picks the address"; what the demo made
  // there (a socket file, a file:// directory, an nng+ipc:// socket file) is gone once it has finished
  it("runs at the address IPC_ADDRESS picks, and leaves nothing there once it has finished", () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-demo-address-"))
    try {
      for (const address of [`unix://${dir}/mine.sock`, `file://${dir}/calc`, `nng+ipc://${dir}/calc.ipc`]) {
        const result = run(["packages/cli/src/demo.ts"], { IPC_TRANSPORT: "", IPC_ADDRESS: address })
        assert.strictEqual(result.status, 0, result.stderr)
        assert.include(result.stdout, ` over ${address} (packed serialization)\n`)
        assert.match(result.stdout, /Add\(\{ a: 2, b: 40 \}\)\s+-> 42/)
        assert.deepStrictEqual(Fs.readdirSync(dir), [], `the demo over ${address} left files behind`)
      }
    } finally {
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("says why it failed as the commands do: no temporary name, no system call's wording", () => {
    const result = run(["packages/cli/src/demo.ts"], { IPC_ADDRESS: "unix:///no-such-dir-of-the-demo/d.sock" })
    assert.strictEqual(result.status, 1)
    // the old demo printed the library's message: mkdtemp '/no-such-dir-of-the-demo/.eipc-...-XXXXXX'
    assert.include(
      result.stderr,
      "demo failed: NotFound: cannot bind unix:///no-such-dir-of-the-demo/d.sock: directory /no-such-dir-of-the-demo does not exist\n"
    )
    assert.notMatch(result.stderr, /\.eipc-|mkdtemp|ENOENT/)
  })

  // `npm run demo | head -n 1` crashed the demo on EPIPE (its finalizers never ran) and left its server process
  // running, holding the address (the next run with that IPC_ADDRESS failed AddressInUse); a demo killed outright
  // left it too
  for (const how of ["its output closed (| head -n 1)", "killed (SIGKILL)"] as const) {
    it(`ends its server process when it is ${how}`, async () => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-ipc-demo-"))
      const child = ChildProcess.spawn(
        process.execPath,
        ["--conditions=@effect-ipc/source", "--disable-warning=ExperimentalWarning", "packages/cli/src/demo.ts"],
        { cwd: root, env: { ...process.env, IPC_ADDRESS: `unix://${dir}/d.sock` }, stdio: ["ignore", "pipe", "pipe"] }
      )
      let stderr = ""
      child.stderr.setEncoding("utf8").on("data", (text: string) => void (stderr += text))
      // "exit", not "close": a server left running holds the stderr it inherited open
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
      const first = await new Promise<string>((resolve) => child.stdout.setEncoding("utf8").once("data", resolve))
      const serverPid = Number(/server pid (\d+)/.exec(first)?.[1])
      assert.isAbove(serverPid, 0, first)
      if (how === "killed (SIGKILL)") child.kill("SIGKILL")
      else child.stdout.destroy() // as head does once it has its line: the demo's next write finds no reader
      const code = await exited
      const alive = () => {
        try {
          process.kill(serverPid, 0)
          return true
        } catch {
          return false
        }
      }
      for (let i = 0; i < 400 && alive(); i++) await new Promise((resolve) => setTimeout(resolve, 50))
      const left = alive()
      if (left) process.kill(serverPid, "SIGKILL")
      Fs.rmSync(dir, { recursive: true, force: true })
      assert.isFalse(left, `the demo's server (pid ${serverPid}) outlived it`)
      if (how !== "killed (SIGKILL)") {
        // as the commands do: a reader that has gone ends the demo quietly, exit code 0
        assert.strictEqual(code, 0, stderr)
        assert.notMatch(stderr, /EPIPE|\n\s+at /, stderr)
      }
    }, 60_000)
  }

  it("fails with one clear line for an unknown transport", () => {
    const result = run(["packages/cli/src/demo.ts"], { IPC_TRANSPORT: "carrier-pigeon" })
    assert.strictEqual(result.status, 1)
    assert.include(result.stderr, `unknown transport "carrier-pigeon"`)
  })
})
