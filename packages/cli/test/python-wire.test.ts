/**
 * `docs/wire.md` read by a stranger: `fixtures/python/wire_stranger.py`, a client and a server
 * written from that page alone (raw socket, struct, json; nothing of python/effect_ipc), in both
 * serializations, against `effect-ipc serve` and `effect-ipc call`. Each claim the client checks
 * is one JSON line; a line with `"ok": false` is a place where the page and the code differ.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { cli, cliWith, fixtures, python, type Ran, root, runCli, runPython, socketDir, start } from "./helpers.ts"

const stranger = Path.join(fixtures, "python", "wire_stranger.py")
const service = Path.join(fixtures, "wire-service.ts")
const { dir, socket } = socketDir("wire")

/** Runs the stranger's script to completion with `env` added. */
const runStranger = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) =>
  runPython([stranger, ...args], { env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1", ...env } })

const failed = (ran: Ran, least: number) => {
  const lines = ran.stdout.trim().split("\n").filter((l) => l !== "").map((l) =>
    JSON.parse(l) as { check: string; ok: boolean; why?: string }
  )
  assert.isAtLeast(lines.length, least, `${ran.stdout}\n${ran.stderr}`)
  return lines.filter((l) => !l.ok)
}

/** Waits until `done()` holds. */
const waitFor = (done: () => boolean) =>
  Effect.promise(async () => {
    while (!done()) await new Promise((resolve) => setTimeout(resolve, 20))
  })

// what the stranger's checks rely on, as docs/wire.md says it: the page may not drift from them either
const claims = [
  "A handler that dies (throws, `Effect.die`) is not answered with an `Exit`: as effect's server does, the Node server sends a `Defect` whose `defect` is that `{\"name\", \"message\"}`",
  "`{\"_tag\":\"Success\",\"value\":null}` (in packed, `undefined`, tag 0) as soon as the handler starts",
  "a packed client gets effect's text",
  "A defect that is an exception travels as tag 12 wrapping `{name, message}`"
]

describe("docs/wire.md, as a stranger reads it", () => {
  it("says what the stranger's checks rely on", () => {
    const page = Fs.readFileSync(Path.join(root, "docs", "wire.md"), "utf8").replace(/\s+/g, " ")
    for (const claim of claims) assert.include(page, claim)
  })

  it.live("a client written from the page: JSON and packed, against effect-ipc serve", () =>
    Effect.gen(function*() {
      const address = socket()
      const server = yield* cli("serve", address, "--module", service)
      yield* server.ready("serving Wire")
      const ran = yield* runStranger(["client", address])
      assert.deepStrictEqual(failed(ran, 60), [], ran.stderr)
      assert.strictEqual(ran.code, 0, ran.stderr)
    }).pipe(Effect.scoped), 120_000)

  it.live("a client of a serialization the server does not speak gets the page's Defect", () =>
    Effect.gen(function*() {
      for (const [speaks, client] of [["packed", "json"], ["json", "packed"]] as const) {
        const address = socket()
        const server = yield* cli("serve", address, "--module", service, "--serialization", speaks)
        yield* server.ready("serving Wire")
        const ran = yield* runStranger(["mismatch", address, speaks, client])
        assert.deepStrictEqual(failed(ran, 2), [], ran.stderr)
        yield* server.stop
        assert.include(server.stderr(), `this RPC server speaks ${speaks} serialization, not "${client}"`)
      }
    }).pipe(Effect.scoped), 120_000)

  it.live("a server written from the page answers effect-ipc call in JSON and packed", () =>
    Effect.gen(function*() {
      const address = socket()
      const server = yield* start(python, [stranger, "server", address])
      yield* waitFor(() => server.stdout().includes("ready"))
      for (const serialization of ["json", "packed"]) {
        const call = (method: string, payload: string) =>
          runCli(["call", address, method, payload, "--module", service, "--serialization", serialization])
        const add = yield* call("Add", `{"a":1,"b":2}`)
        assert.deepStrictEqual([add.code, add.stdout], [0, "3\n"], add.stderr)
        const divide = yield* call("Divide", `{"a":1,"b":0}`)
        assert.include(divide.stderr, `Divide failed: DivisionByZero {"dividend":1}`)
        const boom = yield* call("Boom", `{"message":"kaput"}`)
        assert.include(boom.stderr, "Unknown: Error: kaput", serialization)
        const weird = yield* call("Weird", "null")
        assert.include(weird.stderr, `Unknown: {"code":7}`, serialization)
        const count = yield* call("Count", `{"to":3}`)
        assert.deepStrictEqual([count.code, count.stdout], [0, "1\n2\n3\n"], count.stderr)
      }
    }).pipe(Effect.scoped), 120_000)

  it.live("a Node client pings a quiet server and drops one that answers no Ping", () =>
    Effect.gen(function*() {
      for (const pong of [true, false]) {
        const address = socket()
        const server = yield* start(python, [stranger, "server", address], pong ? {} : { WIRE_NO_PONG: "1" })
        yield* waitFor(() => server.stdout().includes("ready"))
        const ran = yield* runCli([
          "call",
          address,
          "Forever",
          "--module",
          service,
          "--serialization",
          "json",
          "--timeout",
          pong ? "7" : "30"
        ])
        assert.include(server.stdout(), "ping")
        assert.strictEqual(ran.code, 1)
        if (pong) assert.include(ran.stderr, "Timeout: no answer to Forever within 7 s")
        else assert.include(ran.stderr, "answered no ping for 5s")
      }
    }).pipe(Effect.scoped), 120_000)

  it.live("pipe:// is name.sock in the runtime directory the page describes", () =>
    Effect.gen(function*() {
      const good = Path.join(dir, "xdg")
      const groupWritable = Path.join(dir, "xdg-gw")
      const tmp = Path.join(dir, "tmp")
      Fs.mkdirSync(good, { mode: 0o700 })
      Fs.mkdirSync(groupWritable)
      Fs.chmodSync(groupWritable, 0o770)
      Fs.mkdirSync(tmp)
      Fs.symlinkSync(good, Path.join(dir, "xdg-link"))
      const uid = process.getuid!()
      const cases = [
        [{ XDG_RUNTIME_DIR: good }, Path.join(good, "effect-ipc")],
        [{ XDG_RUNTIME_DIR: groupWritable, TMPDIR: tmp }, Path.join(tmp, `effect-ipc-${uid}`)],
        [{ XDG_RUNTIME_DIR: Path.join(dir, "xdg-link"), TMPDIR: tmp }, Path.join(tmp, `effect-ipc-${uid}`)],
        [{ XDG_RUNTIME_DIR: "relative/xdg", TMPDIR: tmp }, Path.join(tmp, `effect-ipc-${uid}`)]
      ] as const
      let n = 0
      for (const [env, runtime] of cases) {
        const address = `pipe://wire-${n++}`
        yield* Effect.scoped(Effect.gen(function*() {
          const server = yield* cliWith(env, "serve", address, "--module", service)
          yield* server.ready("serving Wire")
          const ran = yield* runStranger(["connect", address], env)
          assert.strictEqual(ran.code, 0, ran.stderr)
          const said = JSON.parse(ran.stdout) as { path: string; reply: unknown }
          assert.strictEqual(said.path, Path.join(runtime, `${address.slice("pipe://".length)}.sock`))
          assert.deepStrictEqual(said.reply, {
            _tag: "Exit",
            requestId: "1",
            exit: { _tag: "Success", value: 3 }
          })
          assert.strictEqual(Fs.statSync(runtime).mode & 0o777, 0o700)
        }))
      }
    }), 120_000)
})
