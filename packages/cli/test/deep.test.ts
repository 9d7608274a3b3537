/**
 * A peer's JSON nested far deeper than `JSON.stringify` can write (100 000 levels): `listen` and
 * `file tail` print such a message as base64 and carry on with the next, and `call` ends with one
 * line naming what it could not print, never `Unknown: RangeError` (which killed each of them,
 * and removed a listener's socket).
 */
import { FileChannel, Ipckit } from "@effect-ipc/transport-file"
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { cli, fixtures, flags, node, root, runCli, socketDir, start } from "./helpers.ts"

const { dir, socket } = socketDir("deep")

/** JSON arrays nested `depth` deep. */
const nested = (depth: number): string => "[".repeat(depth) + "]".repeat(depth)
const deep = nested(100_000)
const base64 = (text: string): string => Buffer.from(text).toString("base64")

/** Each line of `stdout` as a JSON event. */
const events = (stdout: string): ReadonlyArray<Record<string, unknown>> =>
  stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>)

it.live(
  "--json --out json listen prints a message nested deeper than 1000 as base64 and carries on with the next",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const listener = yield* cli("--json", "--out", "json", "listen", address, "--count", "4")
      yield* listener.ready("listening on")
      // one message a line, on one connection: 100 000 deep, 1001 deep, 1000 deep (the last that is JSON), then plain
      const file = Path.join(dir, "messages.txt")
      Fs.writeFileSync(file, [deep, nested(1001), nested(1000), `{"after":1}`].join("\n"))
      const sent = yield* runCli(["send", address, "--file", file])
      assert.deepStrictEqual([sent.code, sent.stderr], [0, ""])
      assert.strictEqual(yield* listener.exit, 0, listener.stdout().slice(0, 2000))
      const printed = events(listener.stdout())
      assert.deepStrictEqual(printed.slice(1).map((e) => [e["event"], e["encoding"]]), [
        ["message", "base64"],
        ["message", "base64"],
        ["message", "json"],
        ["message", "json"]
      ])
      assert.strictEqual(printed[1]!["data"], base64(deep))
      assert.strictEqual(printed[2]!["data"], base64(nested(1001)))
      assert.strictEqual(JSON.stringify(printed[3]!["data"]), nested(1000))
      assert.deepStrictEqual(printed[4]!["data"], { after: 1 })
    }).pipe(Effect.scoped),
  60_000
)

it.live(
  "file tail --json --out json prints a record nested 100 000 deep as base64, then the next",
  () =>
    Effect.gen(function*() {
      const channel = Path.join(dir, "channel")
      const backend = yield* FileChannel.backend(channel)
      yield* backend.send(new TextEncoder().encode(deep))
      yield* backend.send(new TextEncoder().encode(`{"after":1}`))
      const ran = yield* runCli(["file", "tail", channel, "--from-start", "-n", "2", "--json", "--out", "json"])
      assert.strictEqual(ran.code, 0, ran.stdout.slice(0, 2000))
      const printed = events(ran.stdout)
      assert.deepStrictEqual(printed.map((e) => [e["event"], e["encoding"]]), [
        ["ready", undefined],
        ["message", "base64"],
        ["message", "json"]
      ])
      assert.strictEqual(printed[1]!["data"], base64(deep))
      assert.deepStrictEqual(printed[2]!["data"], { after: 1 })
    }).pipe(Effect.scoped),
  60_000
)

it.live(
  "file tail prints an ipckit element nested 100 000 deep on one line, then the next",
  () =>
    Effect.gen(function*() {
      const channel = Path.join(dir, "ipckit")
      yield* Effect.scoped(Effect.flatMap(Ipckit.backend(channel), (c) => c.sendEvent("ready", { n: 1 })))
      // ipckit's file: a pretty JSON array; a peer's element before the event
      const messages = Path.join(channel, "backend_to_frontend.json")
      const written = Fs.readFileSync(messages, "utf8").trim()
      Fs.writeFileSync(messages, `[\n  ${deep},\n${written.slice(1)}`)
      const ran = yield* runCli(["file", "tail", channel, "--from-start", "-n", "2"])
      assert.strictEqual(ran.code, 0, ran.stderr)
      const lines = ran.stdout.split("\n")
      assert.strictEqual(lines[0], `backend_to_frontend.json@0 ${deep}`)
      assert.match(lines[1]!, /^backend_to_frontend\.json@1 \{"id":"[^"]+",.*"payload":\{"n":1\}\}$/)
      assert.deepStrictEqual(lines.slice(2), [""])
    }),
  60_000
)

it.live(
  "call --module ends with one line for a result, a typed error or a defect nested 100 000 deep (refused as it is read)",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const server = yield* start(node, [...flags, Path.join(fixtures, "deep-json-server.ts"), address])
      yield* server.ready("ready")
      const api = Path.relative(root, Path.join(fixtures, "unknown-api.ts"))
      const call = (mode: string, ...json: ReadonlyArray<string>) =>
        runCli([...json, "call", address, "Get", `{"v":"${mode}"}`, "--module", api, "--serialization", "json"])
      // the JSON client refuses a reply nested deeper than 1000 levels before parsing it (IpcRpc): the call
      // ends with one line naming the failure, as any reply that does not decode (it died with a RangeError)
      for (const mode of ["value", "fail", "die"]) {
        const plain = yield* call(mode)
        assert.strictEqual(plain.code, 1, mode)
        assert.strictEqual(plain.stdout, "", mode)
        assert.notMatch(plain.stderr, /--serialization/, mode)
        assert.match(
          plain.stderr,
          /^effect-ipc: ConnectionLost: Get: RpcClientDefect: Error decoding message \(the reply: JSON nested deeper than 1000 levels\) \(unix:[^\n]*\)\n$/,
          mode
        )
        const json = yield* call(mode, "--json")
        assert.strictEqual(json.code, 1, mode)
        assert.strictEqual(json.stderr, "", mode)
        const lines = json.stdout.split("\n").filter((line) => line !== "")
        assert.strictEqual(lines.length, 1, json.stdout)
        assert.deepInclude(JSON.parse(lines[0]!), { event: "error", reason: "ConnectionLost" })
        assert.notMatch(lines[0]!, /--serialization/, mode)
      }
    }).pipe(Effect.scoped),
  120_000
)
