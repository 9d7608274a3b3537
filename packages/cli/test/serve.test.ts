/**
 * `effect-ipc serve --module`: a user's own RpcGroup and handlers, served by
 * one CLI process and called by others (`call --module`) with typed results,
 * typed errors and streams; the errors of a module that cannot be served; and
 * transport options from the environment (`IPC_OPTIONS_<NAME>`) in the CLI.
 */
import { assert, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { bin, cli, fixtures, flags, node, root, runCli, socketDir } from "./helpers.ts"

const { socket } = socketDir("serve")

/** The modules as a user types them: paths relative to where the CLI runs (the repository's root). */
const service = Path.relative(root, Path.join(fixtures, "inventory-service.ts"))
const api = Path.relative(root, Path.join(fixtures, "inventory-api.ts"))
const partial = Path.relative(root, Path.join(fixtures, "inventory-partial.ts"))
const needs = Path.relative(root, Path.join(fixtures, "inventory-needs.ts"))

it.live(
  "serve --module serves a user's RpcGroup with its handlers; call --module in other processes gets typed results, a typed error and a stream",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const server = yield* cli("serve", address, "--module", service)
      yield* server.ready(`serving Inventory on ${address}`)

      const lookup = yield* runCli(["call", address, "Lookup", `{"item":"apples"}`, "--module", api])
      assert.deepStrictEqual(lookup, { code: 0, stdout: `{"item":"apples","count":3}\n`, stderr: "" })
      const take = yield* runCli(["call", address, "Take", `{"item":"apples","count":2}`, "--module", service])
      assert.deepStrictEqual(take, { code: 0, stdout: "1\n", stderr: "" })
      const short = yield* runCli(["call", address, "Take", `{"item":"apples","count":5}`, "--module", api])
      assert.deepStrictEqual(short, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: Take failed: OutOfStock {"item":"apples","left":1}\n`
      })
      const shortJson = yield* runCli([
        "call",
        address,
        "Take",
        `{"item":"apples","count":5}`,
        "--module",
        api,
        "--json"
      ])
      assert.deepStrictEqual(shortJson, {
        code: 1,
        stdout:
          `{"event":"error","reason":"OutOfStock","detail":"Take failed: OutOfStock {\\"item\\":\\"apples\\",\\"left\\":1}","error":{"_tag":"OutOfStock","item":"apples","left":1}}\n`,
        stderr: ""
      })
      const restocks = yield* runCli(["call", address, "Restocks", `{"item":"pears"}`, "--module", api, "--json"])
      assert.deepStrictEqual(restocks, {
        code: 0,
        stdout: `{"event":"result","method":"Restocks","value":"pears: monday"}\n` +
          `{"event":"result","method":"Restocks","value":"pears: thursday"}\n`,
        stderr: ""
      })
      // the demo's procedures are not served
      const demo = yield* runCli(["call", address, "Add", `{"a":1,"b":2}`])
      assert.strictEqual(demo.code, 1)
      yield* server.stop
      // nothing but the ready line: no warning or failure on the server's side
      assert.strictEqual(server.stderr(), `effect-ipc: serving Inventory on ${address}\n`)
    }).pipe(Effect.scoped),
  240_000
)

it.live(
  "serve --module names what is wrong with a module it cannot serve",
  () =>
    Effect.gen(function*() {
      const noHandlers = yield* runCli(["serve", socket(), "--module", api])
      assert.deepStrictEqual(noHandlers, {
        code: 1,
        stdout: "",
        stderr:
          `effect-ipc: NotFound: module ${api} exports no layer of handlers: export Inventory.toLayer({ ... }) beside Inventory\n`
      })
      const unhandled = yield* runCli(["serve", socket(), "--module", partial])
      assert.deepStrictEqual(unhandled, {
        code: 1,
        stdout: "",
        stderr:
          `effect-ipc: NotFound: the layer SmallHandlers of module ${partial} does not handle Take, Restocks of Inventory\n`
      })
      const needsService = yield* runCli(["serve", socket(), "--module", needs])
      assert.strictEqual(needsService.code, 1)
      assert.match(
        needsService.stderr,
        new RegExp(
          `^effect-ipc: NotFound: cannot build the handlers InventoryHandlers of module ${needs}: .*fixtures/Warehouse.* \\(serve --module provides no services: the layer must provide what its handlers need\\)\n$`
        )
      )
      const badHandlers = yield* runCli(["serve", socket(), "--module", service, "--handlers", "Nope", "--json"])
      assert.deepStrictEqual(badHandlers, {
        code: 1,
        stdout:
          `{"event":"error","reason":"NotFound","detail":"module ${service} exports no layer named Nope (its layers: InventoryHandlers)"}\n`,
        stderr: ""
      })
      const badGroup = yield* runCli(["serve", socket(), "--module", service, "--group", "Api"])
      assert.deepStrictEqual(badGroup, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: NotFound: module ${service} exports no RpcGroup named Api (it exports Inventory)\n`
      })
      const groupAlone = yield* runCli(["serve", socket(), "--group", "Inventory"])
      assert.deepStrictEqual(groupAlone, {
        code: 1,
        stdout: "",
        stderr: "effect-ipc: NotFound: --group and --handlers name exports of --module: give --module PATH too\n"
      })
      const missing = yield* runCli(["serve", socket(), "--module", "no/such/module.ts"])
      assert.deepStrictEqual(missing, {
        code: 1,
        stdout: "",
        stderr: "effect-ipc: NotFound: no module at no/such/module.ts\n"
      })
    }),
  240_000
)

it.live(
  "IPC_OPTIONS_<NAME> in the environment reaches the transport of the address a command is given; a bad one is refused by name",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const listener = yield* cli("listen", address, "--count", "1")
      yield* listener.ready("listening on")
      const tooLarge = yield* runCli(["send", address, "hello"], undefined, { IPC_OPTIONS_MAX_MESSAGE_SIZE: "4" })
      assert.deepStrictEqual(tooLarge, {
        code: 1,
        stdout: "",
        stderr: `effect-ipc: FrameTooLarge: message of 5 bytes exceeds the limit of 4 (${address})\n`
      })
      const fits = yield* runCli(["send", address, "hello"], undefined, { IPC_OPTIONS: `{"maxMessageSize": 5}` })
      assert.deepStrictEqual(fits, { code: 0, stdout: "", stderr: "" })
      assert.strictEqual(yield* listener.exit, 0, listener.stderr())
      assert.strictEqual(listener.stdout(), "hello\n")

      const bad = yield* runCli(["send", address, "hello"], undefined, { IPC_OPTIONS_RING_SIZE: "1 MiB" })
      assert.strictEqual(bad.code, 1)
      assert.strictEqual(
        bad.stderr,
        `effect-ipc: InvalidOption: transport "pipe": IPC_OPTIONS_RING_SIZE is not an option of this transport (its options: ${
          [
            "maxFrameSize",
            "highWaterMark",
            "writeTimeout",
            "frameTimeout",
            "maxBufferedMessages",
            "maxBufferedBytes",
            "heartbeat",
            "lingerTimeout",
            "maxMessageSize",
            "mode",
            "pipeSize",
            "helloTimeout"
          ].join(", ")
        })\n`
      )
    }).pipe(Effect.scoped),
  240_000
)

// the CLI README: "`IPC_TRANSPORT` and `IPC_ADDRESS` are ignored, the address given wins"
it.live(
  "IPC_TRANSPORT and IPC_ADDRESS in the environment are ignored: send reaches the address it is given",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const listener = yield* cli("listen", address, "--count", "1")
      yield* listener.ready("listening on")
      const sent = yield* runCli(["send", address, "hello"], undefined, {
        IPC_TRANSPORT: "memory",
        IPC_ADDRESS: "unix:///no-such-dir-of-the-cli/elsewhere.sock"
      })
      assert.deepStrictEqual(sent, { code: 0, stdout: "", stderr: "" })
      assert.strictEqual(yield* listener.exit, 0, listener.stderr())
      assert.strictEqual(listener.stdout(), "hello\n")
    }).pipe(Effect.scoped),
  240_000
)

it.live(
  "a client killed mid-call is routine for serve: no warning (it said 'connection handler failed' with no reason)",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const server = yield* cli("serve", address)
      yield* server.ready(`serving DemoApi on ${address}`)
      const client = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.spawn(node, [...flags, bin, "call", address, "Countdown", `{"from":100000000}`], {
            cwd: root,
            stdio: ["ignore", "pipe", "ignore"]
          })
        ),
        (c) => Effect.sync(() => void (c.exitCode === null && c.signalCode === null && c.kill("SIGKILL")))
      )
      // killed as its results stream in: the connection is lost, without a goodbye
      yield* Effect.callback<void>((resume) => {
        client.stdout.once("data", () => resume(Effect.void))
      })
      client.kill("SIGKILL")
      yield* Effect.sleep("1 second")
      const ok = yield* runCli(["call", address, "Add", `{"a":1,"b":2}`])
      assert.deepStrictEqual(ok, { code: 0, stdout: "3\n", stderr: "" })
      yield* server.stop
      assert.strictEqual(server.stderr(), `effect-ipc: serving DemoApi on ${address}\n`)
    }).pipe(Effect.scoped),
  60_000
)

// --timeout ("give up after this many seconds without a result") covered the whole call: a stream of one
// result a second was cut after 10 s, or after two results with --timeout 3, as "no answer"
it.live(
  "call --timeout is the time without a result: a stream slower in all than the timeout runs to its end",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const clock = Path.relative(root, Path.join(fixtures, "clock-service.ts"))
      const server = yield* cli("serve", address, "--module", clock)
      yield* server.ready("serving Clock")
      const ticks = yield* runCli([
        "call",
        address,
        "Ticks",
        `{"n":5,"ms":600}`,
        "--module",
        clock,
        "--timeout",
        "2"
      ])
      assert.deepStrictEqual(ticks, { code: 0, stdout: "0\n1\n2\n3\n4\n", stderr: "" })
      // a result that does not come within it is still a Timeout
      const slow = yield* runCli(["call", address, "Ticks", `{"n":2,"ms":3000}`, "--module", clock, "--timeout", "1"])
      assert.strictEqual(slow.code, 1)
      assert.match(slow.stderr, /Timeout: no answer to Ticks within 1 s/)
      yield* server.stop
    }).pipe(Effect.scoped),
  60_000
)

/** The secret of the ws:// addresses below, which nothing may print. */
const TOKEN = "q7Zp2LmX9vR4tY8wK3nB6cD1fG5hJ0sA"
/** A port for a ws:// listener (and the next one), picked at random. */
const wsPort = () => 20_000 + Math.floor(Math.random() * 20_000)

// the token of a ws:// address was printed by the CLI's own lines: serve's ready line and event, send's
// `sent` event, call's Timeout and Protocol errors (the transports' own errors had it removed)
it.live("a ws:// address's token is never printed: serve, send --json, call's errors", () =>
  Effect.gen(function*() {
    const port = wsPort()
    const served = `ws://127.0.0.1:${port}/app?token=${TOKEN}`
    const server = yield* cli("--json", "serve", served, "--serialization", "json")
    yield* server.ready("serving DemoApi")
    const listened = `ws://127.0.0.1:${port + 1}/app?token=${TOKEN}`
    const listener = yield* cli("listen", listened)
    yield* listener.ready("listening on")
    const outputs = [
      yield* runCli(["send", listened, "hi", "--json"]),
      yield* runCli(["call", listened, "Add", `{"a":1,"b":2}`, "--timeout", "1"]),
      yield* runCli(["call", listened, "Add", `{"a":1,"b":2}`, "--timeout", "1", "--json"]),
      yield* runCli(["call", served, "Add", `{"a":1,"b":2}`])
    ]
    assert.deepStrictEqual(outputs.map((o) => o.code), [0, 1, 1, 1], JSON.stringify(outputs))
    yield* server.stop
    yield* listener.stop
    const printed = [
      server.stdout(),
      server.stderr(),
      listener.stderr(),
      ...outputs.flatMap((o) => [o.stdout, o.stderr])
    ]
    assert.isTrue(printed.some((text) => text.includes(`ws://127.0.0.1:${port}/app`)), printed.join("\n"))
    for (const text of printed) assert.notInclude(text, TOKEN)
  }).pipe(Effect.scoped), 60_000)

// (Output.problem printed errors unredacted): call's own ConnectionLost (callFailed) names the address as
// given, so only problem's redaction keeps the token out. A server that answers frames with what cannot be
// decoded (here an echo) gives that error.
it.live(
  "a ws:// address's token is never printed by call's failure to decode what a server sent",
  () =>
    Effect.gen(function*() {
      const port = wsPort()
      const address = `ws://127.0.0.1:${port}/app?token=${TOKEN}`
      const echo = yield* cli("echo", address)
      yield* echo.ready("echoing on")
      const args = ["call", address, "Add", `{"a":1,"b":2}`, "--serialization", "json", "--timeout", "3"]
      const plain = yield* runCli(args)
      const json = yield* runCli([...args, "--json"])
      assert.deepStrictEqual([plain.code, json.code], [1, 1], JSON.stringify([plain, json]))
      assert.match(plain.stderr, /ConnectionLost: Add: .*decod/i)
      assert.include(plain.stderr, `ws://127.0.0.1:${port}/app`)
      for (const text of [plain.stdout, plain.stderr, json.stdout, json.stderr]) assert.notInclude(text, TOKEN)
    }).pipe(Effect.scoped),
  60_000
)

// each reply's message event named the address as given, its token with it
it.live("a ws:// address's token is never printed by send --replies --json", () =>
  Effect.gen(function*() {
    const port = wsPort()
    const address = `ws://127.0.0.1:${port}/app?token=${TOKEN}`
    const echo = yield* cli("echo", address, "--count", "1")
    yield* echo.ready("echoing on")
    const sent = yield* runCli(["send", address, "hi", "--replies", "1", "--json"])
    assert.strictEqual(sent.code, 0, sent.stderr)
    assert.deepStrictEqual(sent.stdout.trim().split("\n").map((l) => (JSON.parse(l) as { event: string }).event), [
      "sent",
      "message"
    ])
    assert.notInclude(sent.stdout, TOKEN)
  }).pipe(Effect.scoped), 60_000)

// serve at port 0 said "serving DemoApi on ws://127.0.0.1:0/app", the address asked for: nothing it printed
// named the port it bound
it.live(
  "serve at port 0 names the port it bound, where a client reaches it (ws:// and nng+tcp://)",
  () =>
    Effect.gen(function*() {
      for (const asked of ["ws://127.0.0.1:0/app", "nng+tcp://127.0.0.1:0"]) {
        const server = yield* cli("serve", asked, "--json")
        yield* server.ready("serving DemoApi on ")
        const line = server.stderr().split("\n")[0]!
        const bound = /^effect-ipc: serving DemoApi on (\S+)$/.exec(line)?.[1]
        assert.isDefined(bound, line)
        const port = Number(new URL(bound!).port)
        assert.isAbove(port, 0, bound)
        assert.strictEqual(bound, asked.replace(":0", `:${port}`))
        // the JSON event names it too (stdout may come a moment after stderr)
        for (let i = 0; i < 250 && !server.stdout().includes(`"event":"ready"`); i++) yield* Effect.sleep("20 millis")
        assert.include(server.stdout(), `"address":"${bound}"`)
        const sum = yield* runCli(["call", bound!, "Add", `{"a":1,"b":2}`])
        assert.deepStrictEqual(sum, { code: 0, stdout: "3\n", stderr: "" }, asked)
        yield* server.stop
      }
    }).pipe(Effect.scoped),
  60_000
)

// `both` is the older name of `all`: it served one serialization named "both", which no client's hello names
it.live("serve --serialization both serves packed and JSON clients, as all does", () =>
  Effect.gen(function*() {
    const address = socket()
    const server = yield* cli("serve", address, "--serialization", "both")
    yield* server.ready("serving DemoApi")
    for (const serialization of ["packed", "json"]) {
      const add = yield* runCli(["call", address, "Add", `{"a":1,"b":2}`, "--serialization", serialization])
      assert.deepStrictEqual([add.code, add.stdout], [0, "3\n"], add.stderr)
    }
    yield* server.stop
  }).pipe(Effect.scoped), 60_000)

it.live("call --timeout 0 is refused before anything is called", () =>
  Effect.gen(function*() {
    const zero = yield* runCli(["call", socket(), "Add", `{"a":1,"b":2}`, "--timeout", "0"])
    assert.strictEqual(zero.code, 1, zero.stderr)
    assert.include(zero.stderr, "--timeout must be at least 1 (got 0)")
  }).pipe(Effect.scoped), 60_000)

it.live(
  "call of a server that serves another serialization: a Protocol error saying to give --serialization",
  () =>
    Effect.gen(function*() {
      const address = socket()
      const server = yield* cli("serve", address, "--serialization", "json")
      yield* server.ready("serving DemoApi")
      const packed = yield* runCli(["call", address, "Add", `{"a":1,"b":2}`])
      assert.strictEqual(packed.code, 1, packed.stderr)
      assert.match(
        packed.stderr,
        /^effect-ipc: Protocol: Add: .*speaks json serialization.*give --serialization to match/m
      )
      yield* server.stop
    }).pipe(Effect.scoped),
  60_000
)
