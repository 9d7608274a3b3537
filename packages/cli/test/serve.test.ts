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
