/**
 * The demo: the `DemoApi` service in one process, a client in another, over
 * the transport named by `IPC_TRANSPORT` (default: Unix sockets) at
 * `IPC_ADDRESS` (default: a fresh address for this run). The client prints
 * each call and its result: plain calls, a typed error, a streamed response,
 * fire-and-forget calls and a burst of concurrent calls.
 *
 *   npm run demo
 *   npm run demo -- --serialization json   (the client speaks JSON; the server serves all three)
 *   IPC_TRANSPORT=memory npm run demo      (in-process: memory:// cannot cross processes)
 *
 * `demo.ts --serve` only serves (packed, schema-binary and JSON clients; `--serialization X`
 * serves only X), saying `ready` on stdout once it listens, until its stdin (the demo's pipe)
 * closes: the demo gone, however it ended.
 *
 * @since 0.1.0
 */
import * as Address from "@effect-ipc/core/Address"
import * as IpcError from "@effect-ipc/core/IpcError"
import * as IpcRpc from "@effect-ipc/core/IpcRpc"
import * as Registry from "@effect-ipc/core/Registry"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import * as Stream from "effect/Stream"
import * as ChildProcess from "node:child_process"
import { fileURLToPath } from "node:url"
import { DemoApi, DemoHandlers } from "./DemoApi.ts"
import * as Output from "./Output.ts"
import * as Transports from "./Transports.ts"

/** The `--serialization` given on the command line (`packed`, `binary` or `json`), if any. */
const serializationArg = ((): IpcRpc.SerializationName | undefined => {
  const value = process.argv[process.argv.indexOf("--serialization") + 1]
  return process.argv.includes("--serialization") && (value === "packed" || value === "binary" || value === "json")
    ? value
    : undefined
})()

const serverLayer = (address: string) =>
  IpcRpc.layerServerGroup(DemoApi, address, {
    serializations: serializationArg === undefined ? ["packed", "binary", "json"] : [serializationArg]
  }).pipe(Layer.provide(DemoHandlers))

const clientProtocol = (address: string) =>
  IpcRpc.layerClientProtocol(address).pipe(Layer.provide(IpcRpc.layerSerializationFor(serializationArg ?? "packed")))

/** Completes once stdin ends: the demo that started this server, holding the other end of the pipe, is gone. */
const parentGone = Effect.callback<void>((resume) => {
  const gone = () => resume(Effect.void)
  process.stdin.on("end", gone).on("close", gone).on("error", gone).resume()
  return Effect.sync(() => void process.stdin.off("end", gone).off("close", gone).off("error", gone).pause())
})

/** Serves the demo at the configured address and says `ready` on stdout, until the demo is gone. */
const serve = Effect.gen(function*() {
  const address = yield* Registry.IpcAddress
  yield* Layer.launch(serverLayer(address).pipe(Layer.tap(() => Effect.sync(() => process.stdout.write("ready\n")))))
}).pipe(Effect.raceFirst(parentGone))

/**
 * Completes once stdout's reader has gone (`npm run demo | head -n 1`): the write that finds it gone fails on a
 * later tick, as an `error` event that, unheard, crashed the demo before its finalizers stopped the server.
 * Any other failure to write is said on stderr, with exit code 1.
 */
const stdoutGone = Effect.callback<void>((resume) => {
  const gone = (cause: Error) => {
    if (IpcError.errnoOf(cause) !== "EPIPE") {
      process.stderr.write(`demo failed: cannot print to stdout: ${cause.message}\n`)
      process.exitCode = 1
    }
    resume(Effect.void)
  }
  process.stdout.on("error", gone)
  return Effect.sync(() => void process.stdout.off("error", gone))
})

/** Starts `demo.ts --serve` as a child process and waits until it listens. */
const spawnServer = (env: NodeJS.ProcessEnv) =>
  Effect.acquireRelease(
    Effect.callback<ChildProcess.ChildProcess, Error>((resume) => {
      const child = ChildProcess.spawn(
        process.execPath,
        [...process.execArgv, fileURLToPath(import.meta.url), "--serve"],
        // stdin: a pipe this process holds until it exits, however it ends (killed too): the server's cue to stop
        { env, stdio: ["pipe", "pipe", "inherit"] }
      )
      child.stdout!.once("data", () => resume(Effect.succeed(child)))
      child.once("exit", (code) => resume(Effect.fail(new Error(`the demo server exited with code ${code}`))))
      return Effect.sync(() => void child.kill())
    }).pipe(Effect.timeout("30 seconds")),
    (child) =>
      Effect.callback<void>((resume) => {
        if (child.exitCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill()
      })
  )

const show = (call: string, result: unknown) =>
  Console.log(`  ${call.padEnd(34)} -> ${typeof result === "string" ? result : JSON.stringify(result)}`)

/** The client's part: every kind of call, printed. */
const callAll = Effect.gen(function*() {
  const client = yield* RpcClient.make(DemoApi)
  yield* show(`Greet({ name: "Maya" })`, yield* client.Greet({ name: "Maya" }))
  yield* show(`Add({ a: 2, b: 40 })`, yield* client.Add({ a: 2, b: 40 }))
  yield* show(`Divide({ a: 1, b: 4 })`, yield* client.Divide({ a: 1, b: 4 }))
  const error = yield* Effect.flip(client.Divide({ a: 1, b: 0 }))
  yield* show(`Divide({ a: 1, b: 0 })`, `typed error ${error._tag} ${JSON.stringify(error)}`)
  const countdown = yield* Stream.runCollect(client.Countdown({ from: 5 }))
  yield* show(`Countdown({ from: 5 })  (stream)`, countdown)
  for (const note of ["saved scene", "exported mesh", "closed file"]) {
    yield* client.Record({ note }, { discard: true })
  }
  yield* show(`Record × 3  (fire-and-forget)`, "sent")
  yield* show(`Notes()`, yield* client.Notes())
  const started = Date.now()
  const sums = yield* Effect.forEach(
    Array.from({ length: 1000 }, (_, i) => i),
    (i) => client.Add({ a: i, b: 1 }),
    { concurrency: "unbounded" }
  )
  yield* show(
    `Add × 1000  (concurrent)`,
    `${sums.length} results, sum ${sums.reduce((a, b) => a + b, 0)}, ${Date.now() - started} ms`
  )
})

/** An environment variable; set to the empty string counts as unset, as for `Registry.layerConfig`. */
const setOrUndefined = (name: string): string | undefined => process.env[name] === "" ? undefined : process.env[name]

const main = Effect.gen(function*() {
  const selection = yield* Registry.resolve(Transports.descriptors, {
    transport: setOrUndefined("IPC_TRANSPORT"),
    address: setOrUndefined("IPC_ADDRESS"),
    service: `demo-${process.pid}`
  })
  const { address, descriptor } = selection
  const env = { ...process.env, IPC_TRANSPORT: descriptor.name, IPC_ADDRESS: address }
  const configured = Transports.layerAt(address)
  if (descriptor.name === "memory") {
    yield* Console.log(`effect-ipc demo over ${address} (in-process: memory:// does not cross processes)`)
    yield* Effect.gen(function*() {
      yield* Layer.build(serverLayer(address))
      yield* callAll.pipe(Effect.provide(clientProtocol(address)))
    }).pipe(Effect.scoped, Effect.provide(configured))
  } else {
    const child = yield* spawnServer(env)
    yield* Console.log(
      `effect-ipc demo: server pid ${child.pid}, client pid ${process.pid}, over ${address} (${
        serializationArg ?? "packed"
      } serialization)`
    )
    yield* callAll.pipe(Effect.provide(clientProtocol(address)), Effect.provide(configured))
  }
  yield* Console.log("demo finished: every call above crossed the transport")
}).pipe(Effect.scoped)

const program = process.argv.includes("--serialization") && serializationArg === undefined
  ? Effect.fail(new Error("--serialization takes packed, binary or json"))
  : process.argv.includes("--serve")
  ? serve.pipe(Effect.provide(Transports.layer))
  : main.pipe(Effect.raceFirst(stdoutGone))

NodeRuntime.runMain(
  program.pipe(
    Effect.catch((error) =>
      Effect.andThen(
        Console.error(`demo failed: ${
          // as the commands say it: no temporary name, no system call's wording, no secret of the address
          IpcError.isIpcError(error)
            ? Output.describe(Address.redactError(error, error.address))
            : error instanceof Error
            ? error.message
            : String(error)}`),
        Effect.sync(() => void (process.exitCode = 1))
      )
    )
  )
)
