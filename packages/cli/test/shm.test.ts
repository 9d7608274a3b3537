/**
 * `effect-ipc shm ls | gc`, and `shm://` addresses on the command line, as
 * real child processes.
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { bin, flags, node, root } from "./helpers.ts"

/** Runs `effect-ipc ...args` to completion. */
const run = (...args: ReadonlyArray<string>) =>
  ChildProcess.spawnSync(node, [...flags, bin, ...args], { cwd: root, encoding: "utf8", timeout: 30_000 })

/** A process that creates the resource link `name` (TTL 1 h), says `ready`, and waits to be killed. */
const producer = (name: string) =>
  Effect.acquireRelease(
    Effect.callback<ChildProcess.ChildProcess, Error>((resume) => {
      const script = `
        import * as Shm from "@effect-ipc/transport-shm"
        import * as Effect from "effect/Effect"
        Effect.runFork(Effect.scoped(Effect.gen(function*() {
          yield* Shm.ResourceLink.create(${JSON.stringify(name)}, 100000, { ttl: "1 hour" })
          console.log("ready")
          yield* Effect.never
        })))`
      const child = ChildProcess.spawn(node, [...flags, "--input-type=module", "-e", script], {
        cwd: root,
        stdio: ["ignore", "pipe", "inherit"]
      })
      child.stdout.once("data", () => resume(Effect.succeed(child)))
      child.once("exit", (code) => resume(Effect.fail(new Error(`the producer exited (${code})`))))
    }),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )

const killed = (child: ChildProcess.ChildProcess) =>
  Effect.callback<void>((resume) => {
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

it.live("shm ls shows a link and its creator; after a kill -9, gc removes it", () =>
  Effect.gen(function*() {
    const name = `cli-frame-${process.pid}`
    const child = yield* producer(name)
    const listed = run("shm", "ls")
    assert.strictEqual(listed.status, 0, listed.stderr)
    const line = listed.stdout.split("\n").find((l) => l.startsWith(name))
    assert.isDefined(line, listed.stdout)
    assert.match(line!, new RegExp(`^${name}\\s+link\\s+ready\\s+101\\.7 KiB\\s+1\\s+${child.pid}\\s+${child.pid}\\s`))
    assert.match(line!, /1\.0h\s+-$/)
    // a live producer's link is not an orphan
    const dry = run("shm", "gc", "--dry-run", "--json", "--prefix", name)
    assert.strictEqual(dry.status, 0, dry.stderr)
    assert.notInclude(dry.stdout, name)

    yield* killed(child)
    const listedJson = run("shm", "ls", "--json", "--prefix", name)
    assert.strictEqual(listedJson.status, 0, listedJson.stderr)
    const json = JSON.parse(listedJson.stdout) as {
      segments: Array<{ name: string; creator: { alive: boolean }; orphan?: string }>
    }
    const entry = json.segments.find((s) => s.name === name)
    assert.deepStrictEqual([entry?.creator.alive, entry?.orphan], [false, "every holder is dead"])
    const gc = run("shm", "gc", "--prefix", name)
    assert.strictEqual(gc.status, 0, gc.stderr)
    assert.strictEqual(gc.stdout, `removed link ${name}: every holder is dead\nremoved 1, kept 0\n`)
    assert.isFalse(Fs.existsSync(`/dev/shm/${name}`))
  }), 60_000)

it.live("send and listen work over shm://", () =>
  Effect.gen(function*() {
    const address = `shm://cli-${process.pid}`
    const listener = ChildProcess.spawn(node, [...flags, bin, "listen", address, "--count", "1"], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    listener.stdout.on("data", (chunk: Buffer) => void (stdout += chunk.toString()))
    yield* Effect.callback<void>((resume) => {
      let stderr = ""
      listener.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString()
        if (stderr.includes("listening on")) resume(Effect.void)
      })
    })
    const sent = run("send", address, "over shared memory")
    assert.strictEqual(sent.status, 0, sent.stderr)
    const code = yield* Effect.callback<number | null>((resume) => {
      if (listener.exitCode !== null) return resume(Effect.succeed(listener.exitCode))
      listener.once("exit", (c) => resume(Effect.succeed(c)))
    })
    assert.strictEqual(code, 0)
    assert.strictEqual(stdout, "over shared memory\n")
  }), 60_000)

// (shm gc --dry-run removed the orphans it said it would remove)
it.live("shm gc --dry-run names an orphan and removes nothing; gc then removes it", () =>
  Effect.gen(function*() {
    const name = `cli-dry-${process.pid}`
    const child = yield* producer(name)
    yield* killed(child)
    const dry = run("shm", "gc", "--dry-run", "--prefix", name)
    assert.strictEqual(dry.status, 0, dry.stderr)
    assert.strictEqual(dry.stdout, `would remove link ${name}: every holder is dead\nwould remove 1, kept 0\n`)
    assert.isTrue(Fs.existsSync(`/dev/shm/${name}`), "a dry run removed the segment")
    const gc = run("shm", "gc", "--prefix", name)
    assert.strictEqual(gc.stdout, `removed link ${name}: every holder is dead\nremoved 1, kept 0\n`)
    assert.isFalse(Fs.existsSync(`/dev/shm/${name}`))
  }), 60_000)
